"""Fast re-measurement of retrieval changes: every encoder call is memoised on disk.

Changes to query expansion, keyword scoring or fusion leave the embeddings alone, so after a
first run (which embeds everything) a whole pass over the own set, the held-out set and the five
public sets costs only the searches. Vectors are keyed by (role, kind, text) and kept in
`--cache` (default /tmp/rag-eng-cache); the index of the shipped corpus is read from RAG_INDEX_DIR.

    .venv/bin/python bench/eng_harness.py                    # own set + every public set
    .venv/bin/python bench/eng_harness.py --sets own --misses # the own set's English misses, one by one
    .venv/bin/python bench/eng_harness.py --sets holdout      # the check set (never used to choose)
    .venv/bin/python bench/eng_harness.py --sets xquadr_zh2zh_sent  # Chinese questions -> Chinese sentences
"""

from __future__ import annotations

import argparse
import hashlib
import os
import pickle
import sys
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from rag.beir import Benchmark, index_in_memory, load_benchmark  # noqa: E402
from rag.config import Settings  # noqa: E402
from rag.encoders import Encoder, load_encoders  # noqa: E402
from rag.evaluate import evaluate_benchmark, load_questions, mrr_at, relevant_passages, squash  # noqa: E402
from rag.index import embedding_units_by_role, load_index  # noqa: E402
from rag.retrieve import Retriever  # noqa: E402

DATA = ROOT.parent / "shared" / "data"
PUBLIC = ("xquad_en2zh_para", "xquadr_en2zh_sent", "xquad_zh2zh_para", "cmrc2018_trial_para", "toyhom_title_public")


class Memo:
    """An encoder whose vectors are remembered (and saved) by text."""

    def __init__(self, inner: Encoder, role: str, cache: Path):
        self.inner, self.name, self.dim = inner, inner.name, inner.dim
        key = inner.name + getattr(inner, "adapter", "")  # English query vectors differ with the query adapter on
        self.path = cache / f"{role}-{hashlib.sha1(key.encode()).hexdigest()[:8]}.pkl"
        self.vectors: dict[tuple[str, str], np.ndarray] = pickle.loads(self.path.read_bytes()) if self.path.exists() else {}
        self.dirty = False

    def _get(self, kind: str, texts: list[str], **kw: Any) -> np.ndarray:
        missing = list(dict.fromkeys(t for t in texts if (kind, t) not in self.vectors))
        if missing:
            encode = self.inner.encode_queries if kind == "q" else self.inner.encode_passages
            out = encode(missing, **kw)
            self.vectors.update({(kind, t): v for t, v in zip(missing, out, strict=True)})
            self.dirty = True
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.stack([self.vectors[(kind, t)] for t in texts])

    def encode_queries(self, texts: list[str]) -> np.ndarray:
        return self._get("q", texts)

    def __getattr__(self, name: str) -> Any:  # count_tokens, encode_words (USE's words, never mapped), has_tokens, projection
        if name == "inner":  # not set yet (unpickling, or __init__ failed): no recursion
            raise AttributeError(name)
        return getattr(self.inner, name)

    def _with_tokens(self, kind: str, texts: list[str], **kw: Any) -> tuple[np.ndarray, list[np.ndarray]]:
        """Vectors and token rows (rag/late.py), remembered together under kind + "t"."""
        missing = list(dict.fromkeys(t for t in texts if (kind + "t", t) not in self.vectors))
        if missing:
            if kind == "q":
                out, rows = self.inner.queries_with_tokens(missing)  # type: ignore[attr-defined]
            else:
                out, rows = self.inner.passage_tokens(missing, **kw)  # type: ignore[attr-defined]
            self.vectors.update({(kind + "t", t): (v, r) for t, v, r in zip(missing, out, rows, strict=True)})  # type: ignore[misc]
            self.dirty = True
        pairs = [self.vectors[(kind + "t", t)] for t in texts]
        return (np.stack([p[0] for p in pairs]) if pairs else np.zeros((0, self.dim), dtype=np.float32)), [p[1] for p in pairs]

    def queries_with_tokens(self, texts: list[str]) -> tuple[np.ndarray, list[np.ndarray]]:
        return self._with_tokens("q", texts)

    def passage_tokens(self, texts: list[str], projection: Any = None, progress: bool = False) -> tuple[np.ndarray, list[np.ndarray]]:
        return self._with_tokens("p", texts, projection=projection, progress=progress)

    def encode_passages(self, texts: list[str], progress: bool = False) -> np.ndarray:
        return self._get("p", texts, progress=progress)

    def save(self) -> None:
        if self.dirty:  # merged with what another run saved meanwhile, written aside and renamed
            if self.path.exists():
                self.vectors = pickle.loads(self.path.read_bytes()) | self.vectors
            tmp = self.path.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_bytes(pickle.dumps(self.vectors))
            tmp.replace(self.path)
            self.dirty = False


def own_set(retriever: Retriever, path: Path, misses: bool = False) -> dict[str, float]:
    """MRR@10 per language (the file's `lang`) on the shipped corpus, as `rag eval` scores it."""
    questions = load_questions(path)
    texts = [squash(p.text) for p in retriever.index.passages]
    by_lang: dict[str, list[float]] = {}
    position = {id(p): i for i, p in enumerate(retriever.index.passages)}
    for q in questions:
        relevant = relevant_passages(q.answers, texts) if q.answers else set()
        if not relevant:
            continue
        hits = retriever.answer(q.question, 10).hits
        ranked = [str(position[id(h.passage)]) for h in hits]
        rr = mrr_at(ranked, relevant)
        by_lang.setdefault(q.lang, []).append(rr)
        if misses and q.lang == "en" and rr < 1.0:
            first = hits[0].passage
            want = sorted(int(r) for r in relevant)
            print(f"\n{q.id} rr={rr:.2f} {q.question}")
            print(f"   keywords: {retriever.keyword_tokens(q.question, retriever.index)}")
            rankings = retriever.rankings(q.question, retriever.index)

            def ranks(pid: int, rankings: list = rankings) -> str:
                where = [np.flatnonzero(r.ids == pid) for r in rankings]
                return "/".join(str(int(w[0]) + 1) if w.size else "-" for w in where)

            where = ", ".join(f"#{r} {ranks(int(r))}" for r in sorted(relevant, key=int))
            print(f"   signal ranks e5/USE/BM25: top1 {ranks(int(ranked[0]))}; relevant {where}")
            print(f"   top1 #{ranked[0]} {' > '.join(first.section)}: {first.text[:90]!r}")
            for r in want[:2]:
                p = retriever.index.passages[r]
                print(f"   want #{r} {' > '.join(p.section)}: {p.text[:90]!r}")
    return {lang: float(np.mean(v)) for lang, v in sorted(by_lang.items())}


def chinese_sentences() -> Benchmark:
    """XQuAD-R's Chinese sentences searched with XQuAD's Chinese questions (they share ids): zh -> zh,
    one sentence holding the answer, the hardest Chinese set here and the nearest to unseen sentence-level data."""
    sentences, chinese = load_benchmark(DATA / "xquadr_en2zh_sent"), load_benchmark(DATA / "xquad_zh2zh_para")
    queries = {q: chinese.queries[q] for q in sentences.queries if q in chinese.queries}
    return Benchmark("xquadr_zh2zh_sent", sentences.passages, queries, {q: sentences.qrels[q] for q in queries})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--sets", default="own," + ",".join(PUBLIC))
    ap.add_argument("--cache", type=Path, default=Path("/tmp/rag-eng-cache"))
    ap.add_argument("--misses", action="store_true")
    args = ap.parse_args()
    args.cache.mkdir(parents=True, exist_ok=True)
    settings = Settings.from_env()
    memo = {role: Memo(enc, role, args.cache) for role, enc in load_encoders(settings, progress=False).items()}
    encoders: dict[str, Encoder] = dict(memo)  # type: ignore[arg-type]
    try:
        for name in args.sets.split(","):
            if name in ("own", "holdout"):
                path = ROOT / ("tests/data/questions.jsonl" if name == "own" else "bench/holdout/questions.jsonl")
                retriever = Retriever(settings, encoders, load_index(settings))
                result = own_set(retriever, path, args.misses)
                print(name, " ".join(f"{lang} {v:.4f}" for lang, v in result.items()), flush=True)
            else:
                bench = load_benchmark(DATA / name) if name != "xquadr_zh2zh_sent" else chinese_sentences()
                index = index_in_memory(bench.passages, encoders, embedding_units_by_role(settings), progress=False)
                retriever = Retriever(settings, encoders, index)
                report = evaluate_benchmark(retriever, bench.queries, bench.qrels)
                o = report["overall"]
                print(name, f"MRR@10 {o['mrr@10']:.4f} nDCG@10 {o['ndcg@10']:.4f}", flush=True)
            for m in memo.values():
                m.save()
    finally:
        for m in memo.values():
            m.save()


if __name__ == "__main__":
    main()
