"""Labelled searches for bench/train_confidence.py: each a row of rag/confidence.FEATURES and a label
"a returned passage answers" (a relevant passage in the top 5). Public sets only, for training:

- *own*: a public set's questions against its own corpus (label 1 when the top 5 holds the
  relevant passage, else 0);
- *loo*: the same questions with their relevant passages masked out of every signal's ranking
  before fusion (on-topic but unanswerable; label 0);
- *off*: another set's questions against this corpus (off-topic; label 0). The xquad paragraph
  and xquadr sentence corpora hold the same articles, so their questions are never each other's
  negatives;
- the same three kinds on *narrow* corpora: a question's relevant passage and its 40-160 nearest
  passages (by e5) of the same public corpus, a small index on one subject like the shipped one.
  On a narrow corpus every passage looks alike, so z-scores and gaps are smaller for every kind of
  question than on a whole public corpus; without these rows a model learns the wide corpora's
  scale and calls most of a small corpus's answered questions unanswerable.

And, never trained on: the own and held-out sets on the shipped corpus (own, loo, and their
no-answer questions as `unanswered`), with public questions and tests/data/off_topic.jsonl as off-topic ones.
"""

from __future__ import annotations

import random
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from train_adapter import SETS as ADAPTER_SETS  # English sets the query adapter learnt from
from train_adapter import article

from rag import beir
from rag.beir import Benchmark, index_in_memory, load_benchmark
from rag.cli import open_retriever
from rag.config import Settings
from rag.encoders import PRIMARY, SECOND, TOKENS, Encoder, adapter, load_encoders
from rag.evaluate import load_questions, relevant_passages, squash
from rag.index import embedding_units_by_role
from rag.retrieve import Retriever
from rag.tokenize import detect_language, tokenize

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data"
OWN = ROOT / "tests" / "data" / "questions.jsonl"
OFF_TOPIC = ROOT / "tests" / "data" / "off_topic.jsonl"
HOLDOUT = ROOT / "bench" / "holdout" / "questions.jsonl"
# corpus -> the sets whose questions it answers (the first names the corpus folder)
CORPORA = {
    "xquad": ["xquad_zh2zh_para", "xquad_en2zh_para"],
    "xquadr": ["xquadr_en2zh_sent"],
    "cmrc": ["cmrc2018_trial_para"],
    "toyhom": ["toyhom_title_public"],
}
SAME_ARTICLES = {"xquad": {"xquad", "xquadr"}, "xquadr": {"xquad", "xquadr"}}
NARROW_SIZES = (40, 80, 160)  # passages of a narrow corpus besides the relevant ones (the shipped corpus has 74)

Row = dict[str, Any]


class CachedEncoder:
    """An encoder that embeds each passage text once: narrow corpora reuse the whole corpus's passages."""

    def __init__(self, encoder: Encoder) -> None:
        self.encoder, self.name, self.dim = encoder, encoder.name, encoder.dim
        self.memo: dict[str, np.ndarray] = {}
        self.token_memo: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    def encode_queries(self, texts: list[str]) -> np.ndarray:
        return self.encoder.encode_queries(texts)

    def encode_passages(self, texts: list[str], progress: bool = False) -> np.ndarray:
        missing = [t for t in dict.fromkeys(texts) if t not in self.memo]
        if missing:
            self.memo.update(zip(missing, self.encoder.encode_passages(missing, progress=progress), strict=True))
        return np.stack([self.memo[t] for t in texts]) if texts else np.zeros((0, self.dim), dtype=np.float32)

    def passage_tokens(self, texts: list[str], projection: Any = None, progress: bool = False) -> tuple[np.ndarray, list[np.ndarray]]:
        """Vectors and token rows (rag/late.py), each text's computed once."""
        missing = [t for t in dict.fromkeys(texts) if t not in self.token_memo]
        if missing:
            vectors, rows = self.encoder.passage_tokens(missing, projection, progress)  # type: ignore[attr-defined]
            self.token_memo.update(zip(missing, zip(vectors, rows, strict=True), strict=True))
        pairs = [self.token_memo[t] for t in texts]
        return (np.stack([p[0] for p in pairs]) if pairs else np.zeros((0, self.dim), dtype=np.float32)), [p[1] for p in pairs]

    def __getattr__(self, name: str) -> Any:  # count_tokens, has_tokens and the like
        return getattr(self.encoder, name)


def searched(retriever: Retriever, question: str, vectors: dict[str, np.ndarray], relevant: set[int], kind: str) -> Row:
    exclude = np.array(sorted(relevant), dtype=np.int64) if kind == "loo" else None
    answer = retriever.answer(question, 5, vectors=vectors, exclude=exclude)
    positions = {id(p): i for i, p in enumerate(retriever.index.passages)}
    found = kind == "own" and any(positions[id(h.passage)] in relevant for h in answer.hits)
    return {"kind": kind, "lang": detect_language(question), "label": int(found), "features": answer.confidence.features or {}}


Unseen = Callable[[Benchmark, str], dict[str, np.ndarray]]  # (benchmark, question id) -> its vectors by role


def unseen_vectors(settings: Settings, folds: Path | None) -> Unseen | None:
    """With the English query adapter on: the vectors of an xquad English question from the adapter fitted on
    the *other* half of xquad's articles (bench/train_adapter.py --report writes fold0.npz and fold1.npz to
    `folds`): e5's, and USE's through that fold's map, so no training row is searched with an adapter that
    learnt its question."""
    shipped = settings.query_adapter_file()
    if shipped is None:
        return None
    if folds is None or not all((folds / f"fold{p}.npz").is_file() for p in (0, 1)):
        raise SystemExit("the English query adapter is on: --adapter-folds DIR needs fold0.npz and fold1.npz (train_adapter.py --report)")
    files = {p: folds / f"fold{p}.npz" for p in (0, 1)}
    from rag.encoders.sentence import SentenceEncoder
    from rag.encoders.use import USEEncoder

    encoders = {p: SentenceEncoder.from_settings(replace(settings, query_adapter=str(f)), progress=False) for p, f in files.items()}
    maps = {p: e.query_adapter.second if e.query_adapter is not None else None for p, e in encoders.items()}
    if settings.second_model and adapter.load(shipped).second is not None and any(m is None for m in maps.values()):
        raise SystemExit("the shipped adapter maps USE's English queries, the fold adapters do not: run train_adapter.py --report again")
    plain = USEEncoder(cache_dir=settings.cache_dir) if settings.second_model and all(m is not None for m in maps.values()) else None

    def vector(bench: Benchmark, qid: str) -> dict[str, np.ndarray]:
        fold = 1 - min(article(c) for c in bench.qrels[qid]) % 2
        text = bench.queries[qid]
        vectors, rows = encoders[fold].queries_with_tokens([text])
        out = {PRIMARY: vectors[0], TOKENS: rows[0]}
        second = maps[fold]
        if plain is not None and second is not None:
            out[SECOND] = adapter.mapped(plain.encode_queries([text]), second)[0]
        return out

    return vector


def with_unseen(vectors: dict[str, np.ndarray], bench: Benchmark, qid: str, unseen: Unseen | None) -> dict[str, np.ndarray]:
    """`vectors` with the adapted ones replaced by the unseen adapter's, for a question the shipped adapter was trained on."""
    if unseen is None or bench.name not in ADAPTER_SETS:
        return vectors
    return vectors | unseen(bench, qid)


def collect_public(
    settings: Settings, per_set: int, off_per_set: int, narrow_per_set: int, seed: int, folds: Path | None = None
) -> list[Row]:
    """Every public row: own, loo and off searches on each whole corpus, then on narrow ones."""
    encoders: dict[str, Encoder] = {role: CachedEncoder(e) for role, e in load_encoders(settings, progress=False).items()}
    beir.tokenize = lru_cache(maxsize=None)(tokenize)  # type: ignore[assignment]  # narrow corpora re-read the same passages
    benches = {name: load_benchmark(DATA / name) for names in CORPORA.values() for name in names}
    rng = random.Random(seed)
    sample = {name: rng.sample(sorted(b.queries), min(per_set, len(b.queries))) for name, b in benches.items()}
    probe = Retriever(settings, encoders, index_in_memory(benches["cmrc2018_trial_para"].passages[:3], encoders, {}, progress=False))
    unseen = unseen_vectors(settings, folds)
    vectors = {
        (name, qid): with_unseen(probe.query_vectors(benches[name].queries[qid], tokens=True), benches[name], qid, unseen)
        for name, ids in sample.items()
        for qid in ids
    }
    units = embedding_units_by_role(settings)
    rows: list[Row] = []
    for corpus, names in CORPORA.items():
        started, before = time.perf_counter(), len(rows)
        bench = benches[names[0]]
        memory = index_in_memory(bench.passages, encoders, units, progress=False)
        retriever = Retriever(settings, encoders, memory)
        by_id = {p.doc_id: i for i, p in enumerate(bench.passages)}
        offs = [
            (n, q)
            for other, others in CORPORA.items()
            if other not in SAME_ARTICLES.get(corpus, {corpus})
            for n in others
            for q in sample[n][:off_per_set]
        ]
        for name in names:
            b = benches[name]
            for qid in sample[name]:
                relevant = {by_id[c] for c in b.qrels[qid] if c in by_id}
                for kind in ("own", "loo"):
                    rows.append(
                        searched(retriever, b.queries[qid], vectors[name, qid], relevant, kind)
                        | {"corpus": corpus, "set": name, "qid": qid}
                    )
        for name, qid in offs:
            row = searched(retriever, benches[name].queries[qid], vectors[name, qid], set(), "off")
            rows.append(row | {"corpus": corpus, "set": name, "qid": qid})
        whole = len(rows)
        e5 = memory.embeddings[PRIMARY][np.searchsorted(memory.owners[PRIMARY], np.arange(len(bench.passages)))]
        for name in names:
            b = benches[name]
            for qid in sample[name][:narrow_per_set]:
                relevant = sorted({by_id[c] for c in b.qrels[qid] if c in by_id})
                if not relevant:
                    continue
                near = np.argsort(-(e5 @ e5[relevant[0]]), kind="stable")[: rng.choice(NARROW_SIZES) + len(relevant)]
                chosen = sorted(set(near.tolist()) | set(relevant))
                small = Retriever(settings, encoders, index_in_memory([bench.passages[i] for i in chosen], encoders, units, progress=False))
                inside = {chosen.index(i) for i in relevant}
                meta = {"corpus": corpus, "set": name, "qid": qid, "narrow": len(chosen)}
                for kind in ("own", "loo"):
                    rows.append(searched(small, b.queries[qid], vectors[name, qid], inside, kind) | meta)
                other, other_qid = rng.choice(offs)
                rows.append(
                    searched(small, benches[other].queries[other_qid], vectors[other, other_qid], set(), "off")
                    | meta
                    | {"set": other, "qid": other_qid}
                )
        print(
            f"{corpus}: {whole - before} searches, {len(rows) - whole} on narrow corpora, {time.perf_counter() - started:.0f} s",
            file=sys.stderr,
        )
    return rows


def collect_project(settings: Settings, off_per_set: int, seed: int, folds: Path | None = None) -> list[Row]:
    """The own and held-out sets on the shipped corpus, and public questions as off-topic ones."""
    retriever = open_retriever(settings)
    unseen = unseen_vectors(settings, folds)
    texts = [squash(p.text) for p in retriever.index.passages]
    rows: list[Row] = []
    for path in (OWN, HOLDOUT):
        for q in load_questions(path):
            vectors = retriever.query_vectors(q.question, tokens=True)
            relevant = {int(i) for i in relevant_passages(q.answers, texts)}
            kinds = ("own", "loo") if relevant else ("unanswered",)
            for kind in kinds:
                row = searched(retriever, q.question, vectors, relevant, "own" if kind == "unanswered" else kind)
                rows.append(row | {"corpus": "project", "set": path.parent.name, "qid": q.id, "kind": kind, "answers": bool(q.answers)})
    rng = random.Random(seed)
    for name in ("cmrc2018_trial_para", "toyhom_title_public", "xquad_zh2zh_para", "xquad_en2zh_para"):
        bench: Benchmark = load_benchmark(DATA / name)
        for qid in rng.sample(sorted(bench.queries), off_per_set):
            text = bench.queries[qid]
            row = searched(retriever, text, with_unseen(retriever.query_vectors(text, tokens=True), bench, qid, unseen), set(), "off")
            rows.append(row | {"corpus": "project", "set": name, "qid": qid, "answers": False})
    return rows


def collect_off_topic(settings: Settings) -> list[Row]:
    """The project's off-topic questions of many kinds (greetings, emoji, one word, other subjects) on the shipped corpus."""
    retriever = open_retriever(settings)
    rows = []
    for q in load_questions(OFF_TOPIC):
        row = searched(retriever, q.question, retriever.query_vectors(q.question, tokens=True), set(), "off")
        rows.append(row | {"corpus": "project", "set": "off_topic", "qid": q.id, "answers": False, "text": q.question})
    return rows
