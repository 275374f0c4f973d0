"""Retrieval quality per signal and fused, on the public BEIR sets and the project's own questions.

Each query's three rankings (e5, USE, BM25 with CC-CEDICT expansion) are computed once; every
configuration below then fuses them its own way, so the table compares like with like. Prints a
table and writes it into docs/quality.md between the `bench/quality.py` markers.

    .venv/bin/python bench/quality.py                      # every set in ../shared/data
    .venv/bin/python bench/quality.py --sets xquad_en2zh_para --limit 300
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from doc_blocks import update_doc  # noqa: E402  (bench/ is on the path of a script run from it)

from rag.beir import index_in_memory, load_benchmark  # noqa: E402
from rag.cli import open_retriever  # noqa: E402
from rag.config import Settings  # noqa: E402
from rag.encoders import load_encoders  # noqa: E402
from rag.evaluate import load_questions, relevant_passages, score, squash  # noqa: E402
from rag.fusion import Ranking, rrf, zscore  # noqa: E402
from rag.index import embedding_units_by_role  # noqa: E402
from rag.retrieve import Retriever  # noqa: E402
from rag.tokenize import detect_language  # noqa: E402

DATA = ROOT.parent / "shared" / "data"
DOC = ROOT / "docs" / "quality.md"

Fuse = Callable[[list[Ranking], str], Ranking]
CONFIGS: dict[str, Fuse] = {
    "BM25+exp": lambda r, lang: r[2],
    "e5": lambda r, lang: r[0],
    "USE": lambda r, lang: r[1],
    "e5+BM25 (RRF)": lambda r, lang: rrf([r[0], r[2]]),
    "e5+USE (RRF)": lambda r, lang: rrf([r[0], r[1]]),
    "all three (RRF)": lambda r, lang: rrf(r),
}


def shipped(settings: Settings) -> Fuse:
    """The product's own fusion, as configured."""
    if settings.fusion == "rrf":
        return lambda r, lang: rrf(r, k=settings.rrf_k, weights=settings.weights(lang))
    return lambda r, lang: zscore(r, settings.weights(lang))


def run(retriever: Retriever, queries: dict[str, str], relevant: dict[str, set[str]], configs: dict[str, Fuse]) -> dict[str, dict]:
    """Metrics of every configuration over the same per-signal rankings."""
    index = retriever.index
    ranked: dict[str, dict[str, list[str]]] = {name: {} for name in configs}
    for qid, text in queries.items():
        rankings = retriever.rankings(text, index)
        lang = detect_language(text)
        for name, fuse in configs.items():
            ranked[name][qid] = [str(i) for i in fuse(rankings, lang).ids[:10].tolist()]
    ids = [q for q in queries if relevant.get(q)]
    return {name: score(ranked[name], relevant, ids, 10) for name in configs}


def beir_rows(settings: Settings, names: list[str], limit: int | None) -> list[tuple[str, int, int, dict[str, dict]]]:
    encoders = load_encoders(settings, progress=False)
    rows = []
    for name in names:
        started = time.perf_counter()
        bench = load_benchmark(DATA / name)
        memory = index_in_memory(bench.passages, encoders, embedding_units_by_role(settings), progress=False)
        retriever = Retriever(settings, encoders, memory)
        by_id = {p.doc_id: str(i) for i, p in enumerate(bench.passages)}
        queries = dict(list(bench.queries.items())[:limit]) if limit else bench.queries
        relevant = {q: {by_id[c] for c in bench.qrels[q] if c in by_id} for q in queries}
        results = run(retriever, queries, relevant, CONFIGS | {"shipped": shipped(settings)})
        rows.append((name, len(queries), len(bench.passages), results))
        print(f"{name}: {len(queries)} queries in {time.perf_counter() - started:.0f} s", file=sys.stderr)
    return rows


def own_rows(settings: Settings) -> list[tuple[str, int, int, dict[str, dict]]]:
    retriever = open_retriever(settings)
    texts = [squash(p.text) for p in retriever.index.passages]
    rows = []
    for path in (ROOT / "tests" / "data" / "questions.jsonl", ROOT / "bench" / "holdout" / "questions.jsonl"):
        for lang in ("zh", "en"):
            questions = [q for q in load_questions(path) if q.answers and q.lang == lang]
            relevant = {q.id: relevant_passages(q.answers, texts) for q in questions}
            results = run(retriever, {q.id: q.question for q in questions}, relevant, CONFIGS | {"shipped": shipped(settings)})
            rows.append((f"{path.parent.name}/{path.stem} ({lang})", len(questions), len(texts), results))
    return rows


def table(rows: list[tuple[str, int, int, dict[str, dict]]]) -> str:
    names = [*CONFIGS, "shipped"]
    lines = [
        "recall@5 / MRR@10 / nDCG@10 per configuration. `BM25+exp`: BM25 over jieba tokens, English words "
        "expanded with CC-CEDICT; RRF: equal weights, k=60; `shipped`: the product's fusion "
        "(weighted z-scores, weights by question language).",
        "",
        "| set | queries | passages | " + " | ".join(names) + " |",
        "|---|---|---|" + "---|" * len(names),
    ]
    for name, n_queries, n_passages, results in rows:
        cells = [f"{results[c]['recall@5']:.2f}/{results[c]['mrr@10']:.2f}/{results[c]['ndcg@10']:.2f}" for c in names]
        lines.append(f"| {name} | {n_queries} | {n_passages} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_doc(text: str) -> None:
    update_doc(DOC, "bench/quality.py", text, "Retrieval quality")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--sets", nargs="*", default=sorted(p.name for p in DATA.iterdir() if (p / "qrels.tsv").exists()) if DATA.exists() else []
    )
    parser.add_argument("--limit", type=int, help="score only the first N queries of each public set")
    parser.add_argument("--no-write", action="store_true", help="print only; leave docs/quality.md alone")
    args = parser.parse_args()
    settings = Settings.from_env()
    rows = own_rows(settings) + beir_rows(settings, args.sets, args.limit)
    text = table(rows)
    print(text)
    if not args.no_write:
        write_doc(text)


if __name__ == "__main__":
    main()
