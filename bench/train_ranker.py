"""Train the learned ranker (rag/rerank.py) on the public sets only, and measure it before vs after.

Each search of a public question against its own corpus (and, for the first --narrow-per-set, against
a narrow corpus cut from it, as in bench/confidence_rows.py) gives the fused top COLLECT candidates'
rag/rerank.FEATURES and which of them is relevant. With the English query adapter on, xquad's English
questions are embedded by the fold adapter that never saw their article (--adapter-folds). The model, per question language, is a linear
score fitted pairwise: every (relevant, other candidate) pair of a search whose top `depth` holds
the relevant passage, logistic loss, L2, Newton's method; each search weighs the same.

Rotation: for each corpus, a model trained on the other corpora's searches reorders this corpus's
(XQuAD's paragraph and XQuAD-R's sentence corpora hold the same articles and English questions;
they are only ever each other's training data, as in bench/train_confidence.py). The shipped model
is trained on every public search; the project's own set (tests/data/questions.jsonl) and the
held-out set (bench/holdout/) are only measured, never fitted or tuned on. Rows are cached in --cache.

    .venv/bin/python bench/train_ranker.py              # collect (cached), train, report, write the model and docs
    .venv/bin/python bench/train_ranker.py --no-write   # report only
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
from dataclasses import replace
from functools import lru_cache
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
from confidence_rows import CORPORA, NARROW_SIZES, SAME_ARTICLES, CachedEncoder, unseen_vectors, with_unseen  # noqa: E402
from doc_blocks import update_doc  # noqa: E402  (bench/ is on the path of a script run from it)
from row_cache import load_or_collect  # noqa: E402

from rag import beir  # noqa: E402
from rag.beir import index_in_memory, load_benchmark  # noqa: E402
from rag.cli import open_retriever  # noqa: E402
from rag.config import Settings  # noqa: E402
from rag.encoders import PRIMARY, Encoder, load_encoders  # noqa: E402
from rag.evaluate import load_questions, relevant_passages, squash  # noqa: E402
from rag.index import embedding_units_by_role  # noqa: E402
from rag.rerank import DEFAULT_MODEL, FEATURES, LinearRanker, features_of, save_model  # noqa: E402
from rag.retrieve import Retriever  # noqa: E402
from rag.tokenize import detect_language, tokenize  # noqa: E402

DATA = Path(os.environ.get("RAG_PUBLIC_DATA", ROOT.parent / "shared" / "data"))  # the public sets, beside the checkout
DOC = ROOT / "docs" / "quality.md"
OWN = ROOT / "tests" / "data" / "questions.jsonl"
HOLDOUT = ROOT / "bench" / "holdout" / "questions.jsonl"
COLLECT = 30  # candidates recorded per search; a model reorders its own depth <= this
VERSION = "ranker-v2"

Row = dict[str, Any]


def candidates(retriever: Retriever, question: str, relevant: set[int], vectors: dict[str, np.ndarray] | None = None) -> Row:
    """One search's candidate features (fusion's order) and relevance, as Retriever.answer computes them."""
    index = retriever.index
    lang = detect_language(question)
    keywords, units = retriever.keyword_query(question, index)
    vectors = retriever.query_vectors(question) if vectors is None else vectors
    rankings = retriever.rankings(question, index, keywords, vectors)
    weights = retriever.settings.weights(lang)
    fused = retriever.fuse(rankings, weights)
    x = features_of(retriever, index, question, lang, rankings, weights, fused, units, vectors, COLLECT)
    y = [int(pid in relevant) for pid in fused.ids[:COLLECT].tolist()]
    return {"lang": lang, "x": np.round(x, 5).tolist(), "y": y}


def collect_public(settings: Settings, per_set: int, narrow_per_set: int, seed: int, folds: Path | None) -> list[Row]:
    """Each sampled public question against its whole corpus, then (the first `narrow_per_set`) against a
    narrow corpus cut from it (bench/confidence_rows.py: its relevant passage and 40-160 nearest ones,
    one subject like the shipped corpus). xquad's English questions are embedded by the fold adapter
    that never saw their article."""
    encoders: dict[str, Encoder] = {role: CachedEncoder(e) for role, e in load_encoders(settings, progress=False).items()}
    beir.tokenize = lru_cache(maxsize=None)(tokenize)  # type: ignore[assignment]  # narrow corpora re-read the same passages
    unseen = unseen_vectors(settings, folds)
    units = embedding_units_by_role(settings)
    rng = random.Random(seed)
    rows: list[Row] = []
    for corpus, names in CORPORA.items():
        started = time.perf_counter()
        benches = {name: load_benchmark(DATA / name) for name in names}
        passages = benches[names[0]].passages
        memory = index_in_memory(passages, encoders, units, progress=False)
        retriever = Retriever(settings, encoders, memory)
        by_id = {p.doc_id: i for i, p in enumerate(passages)}
        e5 = memory.embeddings[PRIMARY][np.searchsorted(memory.owners[PRIMARY], np.arange(len(passages)))]
        for name, b in benches.items():
            sample = rng.sample(sorted(b.queries), min(per_set, len(b.queries)))
            vectors = {qid: with_unseen(retriever.query_vectors(b.queries[qid]), b, qid, unseen) for qid in sample}
            for qid in sample:
                relevant = {by_id[c] for c in b.qrels[qid] if c in by_id}
                rows.append(candidates(retriever, b.queries[qid], relevant, vectors[qid]) | {"corpus": corpus, "set": name, "qid": qid})
            for qid in sample[:narrow_per_set]:
                relevant = sorted({by_id[c] for c in b.qrels[qid] if c in by_id})
                if not relevant:
                    continue
                near = np.argsort(-(e5 @ e5[relevant[0]]), kind="stable")[: rng.choice(NARROW_SIZES) + len(relevant)]
                chosen = sorted(set(near.tolist()) | set(relevant))
                small = Retriever(settings, encoders, index_in_memory([passages[i] for i in chosen], encoders, units, progress=False))
                inside = {chosen.index(i) for i in relevant}
                row = candidates(small, b.queries[qid], inside, vectors[qid])
                rows.append(row | {"corpus": corpus, "set": name, "qid": qid, "narrow": len(chosen)})
        print(f"{corpus}: {sum(r['corpus'] == corpus for r in rows)} searches in {time.perf_counter() - started:.0f} s", file=sys.stderr)
    return rows


def collect_project(settings: Settings) -> list[Row]:
    """The own and held-out sets' answerable questions on the shipped corpus: measured, never trained on."""
    retriever = open_retriever(settings)
    texts = [squash(p.text) for p in retriever.index.passages]
    rows: list[Row] = []
    for path in (OWN, HOLDOUT):
        for q in load_questions(path):
            relevant = {int(i) for i in relevant_passages(q.answers, texts)} if q.answers else set()
            if relevant:
                row = candidates(retriever, q.question, relevant)
                rows.append(row | {"corpus": "project", "set": path.parent.name, "qid": q.id, "qlang": q.lang})
    return rows


# --- the model ------------------------------------------------------------------------------------


def arrays(row: Row, depth: int) -> tuple[np.ndarray, np.ndarray]:
    """A search's first `depth` candidates, as the retriever computes them for that depth (the best
    candidate's coverage and sentence cosine are the best among those)."""
    x = np.array(row["x"], dtype=np.float64)[:depth].reshape(-1, len(FEATURES))
    for value, below in (("coverage", "coverage_below"), ("sentence", "sentence_below")):
        column = x[:, FEATURES.index(value)]
        if np.isfinite(column).any():
            x[:, FEATURES.index(below)] = np.nanmax(column) - column
    return x, np.array(row["y"][:depth], dtype=bool)


def fit_language(
    rows: list[Row], depth: int, l2: float, features: tuple[str, ...], prior: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pairwise logistic regression around fusion: P(relevant above other) = sigmoid(prior * (fused_z_rel -
    fused_z_other) + w . (z_rel - z_other)), z the standardised features; L2 pulls w to 0, i.e. to fusion's order."""
    cols = [FEATURES.index(f) for f in features]
    fz = FEATURES.index("fused_z")
    stacked = np.vstack([arrays(r, depth)[0] for r in rows])[:, cols]
    with np.errstate(all="ignore"):
        mean, scale = np.nanmean(stacked, axis=0), np.nanstd(stacked, axis=0)
    mean = np.where(np.isfinite(mean), mean, 0.0)
    scale = np.where(np.isfinite(scale) & (scale > 1e-9), scale, 1.0)
    diffs, offsets, weights = [], [], []
    for r in rows:
        x, y = arrays(r, depth)
        if not y.any() or y.all():
            continue
        z = (np.where(np.isfinite(x[:, cols]), x[:, cols], mean) - mean) / scale
        diffs.append((z[y][:, None, :] - z[~y][None, :, :]).reshape(-1, len(cols)))
        offsets.append(prior * (x[y][:, None, fz] - x[~y][None, :, fz]).reshape(-1))
        weights.append(np.full(len(diffs[-1]), 1.0 / len(diffs[-1])))
    d, o, w = np.vstack(diffs), np.concatenate(offsets), np.concatenate(weights)
    coef = np.zeros(len(cols))
    for _ in range(50):
        p = 1 / (1 + np.exp(-np.clip(o + d @ coef, -60, 60)))
        grad = -d.T @ (w * (1 - p)) + l2 * coef
        hess = (d * (w * p * (1 - p))[:, None]).T @ d + l2 * np.eye(len(cols))
        step = np.linalg.solve(hess, grad)
        coef -= step
        if np.abs(step).max() < 1e-8:
            break
    coef[features.index("fused_z")] += prior * scale[features.index("fused_z")]  # the fusion prior, folded in
    return mean, scale, coef


def fit(
    rows: list[Row], depth: int, l2: float, prior: float = 1.0, features: tuple[str, ...] = FEATURES, shared: bool = True
) -> LinearRanker:
    """One model per question language, or one for both (`shared`, or when a language has no rows)."""
    langs = {lang: [r for r in rows if r["lang"] == lang] for lang in ("zh", "en")}
    if shared or not all(langs.values()):
        both = fit_language(rows, depth, l2, features, prior)
        return LinearRanker(VERSION, features, depth, {"zh": both, "en": both}, {"per_language": False})
    weights = {lang: fit_language(part, depth, l2, features, prior) for lang, part in langs.items()}
    return LinearRanker(VERSION, features, depth, weights, {"per_language": True})


def first_relevant(row: Row, model: LinearRanker | None) -> int:
    """1-based rank of the first relevant candidate after reordering (0: none in the recorded candidates)."""
    y = np.array(row["y"], dtype=bool)
    order = np.arange(len(y))
    if model is not None and len(y) > 1:
        x = arrays(row, model.depth)[0]
        order = np.concatenate([np.argsort(-model.scores(row["lang"], x), kind="stable"), order[len(x) :]])
    hits = np.flatnonzero(y[order])
    return int(hits[0]) + 1 if hits.size else 0


def metrics(rows: list[Row], model: LinearRanker | None) -> tuple[float, float]:
    """MRR@10 and recall@1 (every public question has one relevant passage; COLLECT >= 10)."""
    ranks = [first_relevant(r, model) for r in rows]
    return float(np.mean([1 / k if 0 < k <= 10 else 0.0 for k in ranks])), float(np.mean([k == 1 for k in ranks]))


# --- reporting ------------------------------------------------------------------------------------


def report_rows(public: list[Row], project: list[Row], **how: Any) -> list[tuple[str, str, int, tuple[float, float], tuple[float, float]]]:
    """(set, trained on, questions, before, after) per public set (held out) and per project set and language."""
    out = []
    for corpus, names in CORPORA.items():
        model = fit([r for r in public if r["corpus"] not in SAME_ARTICLES.get(corpus, {corpus})], **how)
        others = ", ".join(sorted(c for c in CORPORA if c not in SAME_ARTICLES.get(corpus, {corpus})))
        for name in names:
            for narrow in (False, True):
                rows = [r for r in public if r["set"] == name and ("narrow" in r) == narrow]
                label = f"{name}{', narrow corpora' if narrow else ''} (held out)"
                if rows:
                    out.append((label, others, len(rows), metrics(rows, None), metrics(rows, model)))
    model = fit(public, **how)
    for name, label in (("data", "own set"), ("holdout", "held-out set")):
        for lang in ("zh", "en", "mixed", None):
            rows = [r for r in project if r["set"] == name and (lang is None or r["qlang"] == lang)]
            if rows:
                out.append((f"{label} {lang or 'all'}", "all public", len(rows), metrics(rows, None), metrics(rows, model)))
    return out


def table(lines: list[tuple[str, str, int, tuple[float, float], tuple[float, float]]]) -> str:
    text = [
        "| set | ranker trained on | questions | MRR@10 fused | MRR@10 reranked | recall@1 fused | recall@1 reranked |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, trained, n, before, after in lines:
        mrr = f"{before[0]:.3f} | {after[0]:.3f} ({after[0] - before[0]:+.3f})"
        text.append(f"| {name} | {trained} | {n} | {mrr} | {before[1]:.3f} | {after[1]:.3f} |")
    return "\n".join(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--per-set", type=int, default=600, help="questions sampled from each public set")
    parser.add_argument("--depth", type=int, default=10, help="fused candidates the model reorders")
    parser.add_argument("--l2", type=float, default=10.0, help="pull towards fusion's order")
    parser.add_argument("--prior", type=float, default=1.0, help="weight of the fused score the model starts from")
    parser.add_argument("--per-language", action="store_true", help="one model per question language (default: one for both)")
    parser.add_argument("--narrow-per-set", type=int, default=300, help="of those, each also asked on a narrow corpus of its own")
    parser.add_argument(
        "--adapter-folds", type=Path, default=Path("/tmp/rag-adapter-folds"), help="train_adapter.py --report's fold adapters"
    )
    parser.add_argument("--cache", type=Path, default=Path("/tmp/rag-ranker2"), help="folder of cached rows")
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--no-write", action="store_true", help="print only; leave the model and docs/quality.md alone")
    args = parser.parse_args()
    settings = replace(Settings.from_env(), rerank=False)  # features of fusion's order, as the ranker sees them
    public = load_or_collect(
        args.cache / f"public-{args.per_set}-{args.narrow_per_set}-{args.seed}.jsonl",
        lambda: collect_public(settings, args.per_set, args.narrow_per_set, args.seed, args.adapter_folds),
    )
    project = load_or_collect(args.cache / "project.jsonl", lambda: collect_project(settings))
    how = {"depth": args.depth, "l2": args.l2, "prior": args.prior, "shared": not args.per_language}
    text = table(report_rows(public, project, **how))
    model = fit(public, **how)
    sizes = {name: sum(r["set"] == name for r in public) for names in CORPORA.values() for name in names}
    model = model._replace(
        meta=model.meta | {"trained_on": sizes, "l2": args.l2, "prior": args.prior, "pairs": "relevant vs each other of the top depth"}
    )
    shown = {lang: w for lang, w in model.weights.items() if lang == "zh" or w is not model.weights["zh"]}
    text += (
        "\n\nCoefficients (standardised features; "
        + ("one model per language" if model.meta["per_language"] else "one model for both languages")
        + "): "
        + "; ".join(
            f"{lang}: " + ", ".join(f"{f} {c:+.2f}" for f, c in zip(model.features, w[2], strict=True)) for lang, w in shown.items()
        )
    )
    print(text)
    if not args.no_write:
        save_model(model, DEFAULT_MODEL)
        update_doc(DOC, "bench/train_ranker.py", text, "Retrieval quality")
        print(f"wrote {DEFAULT_MODEL.relative_to(ROOT)} and {DOC.relative_to(ROOT)}", file=sys.stderr)


if __name__ == "__main__":
    main()
