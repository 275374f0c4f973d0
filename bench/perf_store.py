"""The Milvus store (milvus-lite) against the local one (FAISS + bm25s), side by side in one process.

    .venv/bin/python bench/perf_store.py --set xquad_zh2zh_para   # one BEIR set -> bench/out/store-<set>.json
    .venv/bin/python bench/perf_store.py --shipped                # query p50/p99 on the shipped corpus -> bench/out/store-shipped.json
    .venv/bin/python bench/perf_store.py --bm25-function          # Milvus's own BM25 function vs the project's sparse vectors
    .venv/bin/python bench/perf_store.py --write                  # the tables into docs/performance.md ("Milvus store")

A BEIR set is evaluated as `rag eval --beir DIR` does it (rag.beir.index_in_memory, then
rag.evaluate.evaluate_benchmark), once with RAG_STORE=local and once with RAG_STORE=milvus. The
passages are embedded once and both stores are built from the same vectors, and each query is
embedded once for both (a shared cache), so the only difference measured is the store.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
from doc_blocks import update_doc  # noqa: E402
from perf_common import load_line, pct  # noqa: E402

from rag.beir import index_in_memory, load_benchmark  # noqa: E402
from rag.config import Settings  # noqa: E402
from rag.encoders import load_encoders  # noqa: E402
from rag.evaluate import evaluate_benchmark, load_questions  # noqa: E402
from rag.index import Index, build_index, embedding_units_by_role, load_index  # noqa: E402
from rag.retrieve import Retriever  # noqa: E402
from rag.store import milvus  # noqa: E402

DATA = Path(os.environ.get("RAG_SHARED_DATA", ROOT.parent / "shared" / "data"))  # a worktree under /work/wt/ sets /work/shared/data
OUT = ROOT / "bench" / "out"
DOC = ROOT / "docs" / "performance.md"
METRICS = ("recall@1", "recall@5", "recall@10", "mrr@10", "ndcg@10", "flagged_true")


def _shared_query_cache(*retrievers: Retriever) -> None:
    """Each question embedded once for all retrievers (same encoders), so the stores see the same vectors."""
    cache: dict[str, dict[str, np.ndarray]] = {}
    embed = retrievers[0].query_vectors

    def cached(question: str) -> dict[str, np.ndarray]:
        if question not in cache:
            cache[question] = embed(question)
        return cache[question]

    for r in retrievers:
        r.query_vectors = cached  # type: ignore[method-assign]


def milvus_twin(settings: Settings, local: Index, name: str) -> Index:
    """The same in-memory index with its searches in a temporary Milvus collection."""
    built = milvus.build(settings, name, local.embeddings, local.owners, local.passages, local.keyword)
    store = milvus.MilvusStore.open(settings, built["store"], local.keyword, built["dense_index"])
    return replace(local, store=store, manifest=local.manifest | built)


def run_set(name: str, workdir: Path, limit: int | None) -> dict[str, Any]:
    settings = replace(Settings.from_env(), index_dir=workdir, store="milvus")
    bench = load_benchmark(DATA / name)
    if limit:  # the first `limit` queries (file order), for a run on a busy machine
        bench = bench._replace(queries=dict(list(bench.queries.items())[:limit]))
    encoders = load_encoders(settings, progress=False)
    started = time.perf_counter()
    local = index_in_memory(bench.passages, encoders, embedding_units_by_role(settings), progress=False)
    embedded = time.perf_counter() - started
    started = time.perf_counter()
    twin = milvus_twin(settings, local, f"bench-{name}")
    written = time.perf_counter() - started
    retrievers = {"local": Retriever(replace(settings, store="local"), encoders, local), "milvus": Retriever(settings, encoders, twin)}
    _shared_query_cache(*retrievers.values())
    reports = {store: evaluate_benchmark(r, bench.queries, bench.qrels) for store, r in retrievers.items()}
    milvus.drop(settings, twin.manifest["store"])
    return {
        "set": name,
        "passages": len(bench.passages),
        "queries": len(bench.queries),
        "all_queries": limit is None,
        "rows": {role: len(m) for role, m in local.embeddings.items()},
        "embed_s": round(embedded, 1),
        "milvus_write_s": round(written, 2),
        "reports": {store: {m: r["overall"][m] for m in METRICS if m in r["overall"]} for store, r in reports.items()},
        "load": load_line(),
    }


def run_shipped(workdir: Path, rounds: int) -> dict[str, Any]:
    """Search latency over tests/data/questions.jsonl: the question embedded once, then `answer` timed per store, alternating."""
    base = Settings.from_env()
    encoders = load_encoders(base, progress=False)
    retrievers = {}
    for store in ("local", "milvus"):
        s = replace(base, index_dir=workdir / store, store=store)
        build_index(s, encoders, progress=False)
        retrievers[store] = Retriever(s, encoders, load_index(s))
    questions = [q.question for q in load_questions(ROOT / "tests" / "data" / "questions.jsonl")]
    vectors = [retrievers["local"].query_vectors(q) for q in questions]
    times: dict[str, list[float]] = {store: [] for store in retrievers}
    same = 0
    for _ in range(rounds):
        for q, v in zip(questions, vectors, strict=True):
            hits = {}
            for store, r in retrievers.items():
                t = time.perf_counter()
                hits[store] = [h.passage for h in r.answer(q, 5, vectors=v).hits]
                times[store].append((time.perf_counter() - t) * 1000)
            same += hits["local"] == hits["milvus"]
    return {
        "questions": len(questions),
        "rounds": rounds,
        "same_top5": same / (rounds * len(questions)),
        "ms": {s: {"p50": pct(t, 50), "p99": pct(t, 99)} for s, t in times.items()},
        "load": load_line(),
    }


def run_bm25_function(workdir: Path) -> dict[str, Any]:
    """Milvus's own BM25 (milvus-lite's `jieba` analyzer on the passage text) against the project's BM25
    sparse vectors, on the shipped corpus: top-10 overlap and the keyword signal's recall@5 alone."""
    from pymilvus import DataType, Function, FunctionType

    from rag.chunk import keyword_text
    from rag.evaluate import relevant_passages, squash

    base = replace(Settings.from_env(), index_dir=workdir / "bm25fn", store="milvus")
    encoders = load_encoders(base, progress=False)
    build_index(base, encoders, progress=False)
    index = load_index(base)
    retriever = Retriever(base, encoders, index)
    client = milvus.client(base)
    name = "bench_bm25_function"
    if client.has_collection(name):
        client.drop_collection(name)
    schema = client.create_schema(auto_id=False)
    schema.add_field("id", DataType.INT64, is_primary=True)
    schema.add_field("text", DataType.VARCHAR, max_length=65535, enable_analyzer=True, analyzer_params={"tokenizer": "jieba"})
    schema.add_field("sparse", DataType.SPARSE_FLOAT_VECTOR)
    schema.add_function(Function(name="bm25", function_type=FunctionType.BM25, input_field_names=["text"], output_field_names=["sparse"]))
    params = client.prepare_index_params()
    params.add_index("sparse", index_type="SPARSE_INVERTED_INDEX", metric_type="BM25")
    client.create_collection(name, schema=schema, index_params=params)
    client.insert(name, [{"id": i, "text": keyword_text(p)} for i, p in enumerate(index.passages)])
    client.flush(name)
    questions = [q for q in load_questions(ROOT / "tests" / "data" / "questions.jsonl") if q.answers]
    overlap: dict[str, list[float]] = {"zh": [], "en": []}
    found: dict[str, dict[str, int]] = {lang: {"project": 0, "milvus_bm25": 0} for lang in overlap}
    texts = [squash(p.text) for p in index.passages]
    for q in questions:
        ours = index.store.keyword(retriever.keyword_tokens(q.question, index), 10).ids.tolist()
        hits = client.search(name, [q.question], anns_field="sparse", limit=10, search_params={"metric_type": "BM25"}, output_fields=["id"])
        theirs = [int(h["id"]) for h in hits[0]]
        overlap[q.lang].append(len(set(ours) & set(theirs)) / 10)
        relevant = {int(i) for i in relevant_passages(q.answers, texts)}
        found[q.lang]["project"] += bool(relevant & set(ours[:5]))
        found[q.lang]["milvus_bm25"] += bool(relevant & set(theirs[:5]))
    client.drop_collection(name)
    return {
        "questions": {lang: len(v) for lang, v in overlap.items()},
        "overlap@10": {lang: float(np.mean(v)) for lang, v in overlap.items()},
        "keyword_recall@5": {lang: {k: n / len(overlap[lang]) for k, n in f.items()} for lang, f in found.items()},
        "load": load_line(),
    }


def write_doc() -> None:
    sets = sorted(OUT.glob("store-*.json"))
    rows = [json.loads(p.read_text()) for p in sets if p.stem not in ("store-shipped", "store-bm25fn")]
    lines = [
        "`rag eval --beir` on every public set with RAG_STORE=local and RAG_STORE=milvus (milvus-lite), side by side in one",
        "process (bench/perf_store.py: same passage and query vectors for both, so only the store differs). Overall metrics;",
        "Δ = the largest |milvus − local| over the row's metrics.",
        "",
        "| set | passages | rows (primary / second) | queries | store | " + " | ".join(METRICS) + " | Δ max |",
        "|---|---|---|---|---|" + "---|" * (len(METRICS) + 1),
    ]
    for row in rows:
        r = row["reports"]
        delta = max(abs(r["milvus"][m] - r["local"][m]) for m in r["local"])
        units = f"{row['rows'].get('primary')} / {row['rows'].get('second', '-')}"
        for store in ("local", "milvus"):
            cells = " | ".join(f"{r[store].get(m, float('nan')):.4f}" for m in METRICS)
            tail = f"{delta:.4f}" if store == "milvus" else ""
            queries = f"{row['queries']}" + ("" if row.get("all_queries", True) else " (first)")
            lines.append(f"| {row['set']} | {row['passages']} | {units} | {queries} | {store} | {cells} | {tail} |")
    writes = ", ".join(f"{row['set']} {row['milvus_write_s']:.1f} s" for row in rows)
    lines += ["", f"Writing each set's two collections (rows above, inserts + index creation, milvus-lite): {writes}."]
    loads = sorted(float(row["load"].split(")")[1].split()[0]) for row in rows)
    lines += [
        "",
        f"Load average (1 min) {loads[0]:.1f}-{loads[-1]:.1f} on the 2 cores while measuring (other builds and test suites ran). A set",
        "marked (first) was scored on its first queries only, for time on that loaded machine; `bench/perf_store.py --set SET`",
        "without `--limit` scores them all.",
    ]
    shipped = OUT / "store-shipped.json"
    if shipped.exists():
        s = json.loads(shipped.read_text())
        lo, mi = s["ms"]["local"], s["ms"]["milvus"]
        lines += [
            "",
            f"Search latency on the shipped corpus ({s['questions']} questions x {s['rounds']} rounds, the question embedded once,",
            "then `Retriever.answer` timed per store, alternating; embedding the question costs the same in both):",
            "",
            "| store | p50 ms | p99 ms | p50 ratio |",
            "|---|---|---|---|",
            f"| local | {lo['p50']:.1f} | {lo['p99']:.1f} | 1.00 |",
            f"| milvus (lite, in process) | {mi['p50']:.1f} | {mi['p99']:.1f} | {mi['p50'] / lo['p50']:.2f} |",
            "",
            f"Same top 5 passages in {s['same_top5']:.1%} of the searches. {s['load']}.",
        ]
    bm25fn = OUT / "store-bm25fn.json"
    if bm25fn.exists():
        b = json.loads(bm25fn.read_text())
        lines += [
            "",
            "Keyword side: Milvus's own BM25 function (milvus-lite, its `jieba` analyzer on the passage text and the raw question)",
            "against the project's sparse vectors (jieba search-mode tokens, English words with their CC-CEDICT translations, bm25s",
            "weights), on the answerable questions of tests/data/questions.jsonl, the keyword signal alone:",
            "",
            "| questions | n | top-10 overlap | recall@5 project BM25 | recall@5 Milvus BM25 |",
            "|---|---|---|---|---|",
        ]
        for lang in ("zh", "en"):
            k = b["keyword_recall@5"][lang]
            lines.append(f"| {lang} | {b['questions'][lang]} | {b['overlap@10'][lang]:.2f} | {k['project']:.3f} | {k['milvus_bm25']:.3f} |")
        lines += ["", f"{b['load']}."]
    update_doc(DOC, "bench/perf_store", "\n".join(lines), "Performance")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--set", help="one BEIR set of ../shared/data")
    parser.add_argument("--shipped", action="store_true")
    parser.add_argument("--bm25-function", action="store_true")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--limit", type=int, help="with --set: only the first N queries")
    parser.add_argument("--write", action="store_true")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/rag-perf-store"))
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    workdir = args.workdir / f"{os.getpid()}"
    if args.set:
        result = run_set(args.set, workdir, args.limit)
        (OUT / f"store-{args.set}.json").write_text(json.dumps(result, indent=2))
        print(json.dumps(result, indent=2))
    if args.shipped:
        result = run_shipped(workdir, args.rounds)
        (OUT / "store-shipped.json").write_text(json.dumps(result, indent=2))
        print(json.dumps(result, indent=2))
    if args.bm25_function:
        result = run_bm25_function(workdir)
        (OUT / "store-bm25fn.json").write_text(json.dumps(result, indent=2))
        print(json.dumps(result, indent=2))
    if args.write:
        write_doc()


if __name__ == "__main__":
    main()
