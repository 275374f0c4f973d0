"""Store scale on real vectors: local FAISS vs Milvus (milvus-lite) over 100,000 e5 passage vectors.

Why: the 1M figures in docs/performance.md are synthetic clustered vectors; this measures both stores
on real text. The passages are 100,000 real Chinese passages assembled by bench/scale_corpus.py from
public data (its docstring lists sources, licences and the mix: all the Wikipedia and medical prose
there is, packed into 150-300 character passages, the rest classical poems one per passage), embedded
with the project's passage path (int8 ONNX e5, primary role); ~1,000 real questions (cmrc2018, DRCD,
XQuAD zh, Toyhom titles) embedded with the query path are the queries. Vectors are cached outside the
repository (~/.cache/rag-bench/), so only the first run embeds.

Each index is built in a fresh child process (so memory is its own): build time, resident memory
added by the index (RSS after build minus before, vectors already loaded; and the peak), then the same
queries one at a time, k=10: p50/p99 ms per search call and recall@10 against exact search (FAISS
IndexFlatIP on the same vectors). Local FAISS is `rag.dense.build` as the project builds it (IVF above
EXACT_MAX); Milvus mirrors rag/store/milvus.py's collection (int64 id, text, float vector; FLAT up to
dense.EXACT_MAX rows, IVF_FLAT with dense.ivf_params(n) above; 1,000-row inserts; search asks for the
id only), plus HNSW, which milvus-lite also offers (`--faiss-hnsw` adds FAISS's own HNSW beside it).

    .venv/bin/python bench/perf_store_scale.py [--n 100000] [--queries 1000] [--write]
"""

from __future__ import annotations

import argparse
import gc
import multiprocessing
import os
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import faiss
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import scale_corpus
from perf_common import hwm_mb, load_line, pct, rss_mb, table, write_section
from scale_corpus import CACHE, Rows, embed_cached

from rag import dense

K = 10
WARMUP = 20
#: HNSW build parameters: efConstruction 64 as in the project's earlier HNSW trial (docs/performance.md, findings), not
#: milvus-lite's default 200: construction cost grows about linearly with it, and the shared 2-core machine is slow.
HNSW_M, HNSW_EF_CONSTRUCTION = 16, 64
#: Each config: (store, index label, build kind, list of (search label, search params)).
Config = tuple[str, str, str, list[tuple[str, dict[str, Any]]]]


def recall_at_k(found: np.ndarray, truth: np.ndarray) -> float:
    """Mean share of each query's exact top-k ids that the index also returned (-1 = no hit)."""
    shares = [len(set(f[f >= 0].tolist()) & set(t.tolist())) / len(t) for f, t in zip(found, truth, strict=True)]
    return float(np.mean(shares)) if shares else float("nan")


def exact_ids(x: np.ndarray, q: np.ndarray, k: int = K) -> np.ndarray:
    index = faiss.IndexFlatIP(x.shape[1])
    index.add(np.ascontiguousarray(x, dtype=np.float32))
    return np.asarray(index.search(np.ascontiguousarray(q, dtype=np.float32), k)[1])


def time_queries(search: Callable[[np.ndarray], np.ndarray], q: np.ndarray) -> tuple[list[float], np.ndarray]:
    """ms per single-query call and the ids returned, after a few untimed warm-up calls."""
    for v in q[:WARMUP]:
        search(v)
    times, found = [], []
    for v in q:
        t = time.perf_counter()
        ids = search(v)
        times.append((time.perf_counter() - t) * 1000)
        found.append(np.pad(ids, (0, K - len(ids)), constant_values=-1))
    return times, np.array(found)


# --- local FAISS --------------------------------------------------------------------------------------


def faiss_index(x: np.ndarray, kind: str) -> tuple[Any, dict[str, Any]]:
    """`exact`, `project` (rag.dense.build: IVF above EXACT_MAX) or `hnsw`; returns (index, description)."""
    if kind == "exact":
        index: Any = dense.build(x, exact_max=len(x))
    elif kind == "project":
        index = dense.build(x)
    else:
        index = faiss.IndexHNSWFlat(x.shape[1], HNSW_M, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
        index.add(np.ascontiguousarray(x, dtype=np.float32))
    return index, dense.describe(index)


def faiss_searcher(index: Any, params: dict[str, Any]) -> Callable[[np.ndarray], np.ndarray]:
    if "nprobe" in params:
        index.nprobe = params["nprobe"]
    if "ef" in params:
        index.hnsw.efSearch = params["ef"]
    return lambda v: np.asarray(index.search(v.reshape(1, -1), K)[1][0])


# --- Milvus (milvus-lite file, or a server URI) ---------------------------------------------------------


def milvus_index_params(milvus: Any, index_type: str, n: int) -> tuple[Any, dict[str, Any]]:
    """rag/store/milvus.py's rule for `auto` (FLAT up to EXACT_MAX, else IVF_FLAT dense.ivf_params), or HNSW."""
    params = milvus.prepare_index_params()
    if index_type == "HNSW":
        params.add_index("vector", index_type="HNSW", metric_type="IP", params={"M": HNSW_M, "efConstruction": HNSW_EF_CONSTRUCTION})
        return params, {"type": "HNSW", "M": HNSW_M, "efConstruction": HNSW_EF_CONSTRUCTION}
    if n <= dense.EXACT_MAX or index_type == "FLAT":
        params.add_index("vector", index_type="FLAT", metric_type="IP")
        return params, {"type": "FLAT"}
    nlist, nprobe = dense.ivf_params(n)
    params.add_index("vector", index_type="IVF_FLAT", metric_type="IP", params={"nlist": nlist})
    return params, {"type": "IVF_FLAT", "nlist": nlist, "nprobe": nprobe}


def milvus_build(milvus: Any, x: np.ndarray, texts: Sequence[str], index_type: str, name: str = "bench") -> dict[str, Any]:
    """A collection laid out like the store's passages (id, text, vector), filled and loaded."""
    from pymilvus import DataType

    schema = milvus.create_schema(auto_id=False, enable_dynamic_field=False)
    schema.add_field("id", DataType.INT64, is_primary=True)
    schema.add_field("text", DataType.VARCHAR, max_length=65_535)
    schema.add_field("vector", DataType.FLOAT_VECTOR, dim=int(x.shape[1]))
    params, desc = milvus_index_params(milvus, index_type, len(x))
    milvus.create_collection(name, schema=schema, index_params=params)
    for a in range(0, len(x), 1000):
        milvus.insert(name, [{"id": i, "text": texts[i], "vector": x[i].tolist()} for i in range(a, min(len(x), a + 1000))])
    milvus.flush(name)
    milvus.load_collection(name)
    return desc


def wait_indexed(folder: Path, timeout_s: float = 3600, settle_s: float = 3.0) -> int:
    """Wait until every data segment of the milvus-lite folder has its vector index file, unchanged for
    settle_s (compaction may still merge segments); return the number of segments. Why: milvus-lite
    builds segment indexes on a background thread after flush and load, and describe_index reports
    every row indexed before that; until then a segment is searched exactly."""
    deadline = time.monotonic() + timeout_s
    last: tuple[set[str], set[str]] | None = None
    stable_since = time.monotonic()
    while time.monotonic() < deadline:
        data = {p.stem for p in folder.rglob("data_*.parquet")}
        indexed = {p.name.split(".")[0] for p in folder.rglob("indexes/*.vector.*")}
        state = (data, indexed)
        if state != last:
            last, stable_since = state, time.monotonic()
        elif data and data <= indexed and time.monotonic() - stable_since >= settle_s:
            return len(data)
        time.sleep(0.25)
    raise TimeoutError(f"milvus-lite did not index {folder} in {timeout_s:.0f} s")


def milvus_searcher(milvus: Any, params: dict[str, Any], name: str = "bench") -> Callable[[np.ndarray], np.ndarray]:
    search = {"metric_type": "IP", "params": params}

    def one(v: np.ndarray) -> np.ndarray:
        hits = milvus.search(name, [v.tolist()], anns_field="vector", limit=K, search_params=search, output_fields=["id"])
        return np.array([int(h["id"]) for h in hits[0]], dtype=np.int64)

    return one


def _dir_mb(path: Path) -> float:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 2**20


# --- one config, in a child process ----------------------------------------------------------------------


def measure(config: Config, x: np.ndarray, q: np.ndarray, truth: np.ndarray, texts: Sequence[str]) -> list[dict[str, Any]]:
    """Build one index, then time each of its search settings; one result row per setting."""
    store, _label, kind, searches = config
    with tempfile.TemporaryDirectory(prefix="rag-store-scale-") as tmp:
        server_mb = 0.0
        if store == "milvus":  # the client and milvus-lite's in-process server are not the index: started first
            from pymilvus import MilvusClient

            gc.collect()
            before = rss_mb()
            index = MilvusClient(uri=str(Path(tmp) / "milvus.db"))
            server_mb = rss_mb() - before
        gc.collect()
        before = rss_mb()
        t = time.perf_counter()
        if store == "faiss":
            index, desc = faiss_index(x, kind)
            dense.save(index, Path(tmp) / "dense.faiss")
        else:
            desc = milvus_build(index, x, texts, kind)
            desc["segments"] = wait_indexed(Path(tmp))  # milvus-lite indexes each segment apart
        disk = _dir_mb(Path(tmp))
        build_s = time.perf_counter() - t
        gc.collect()
        memory = rss_mb() - before
        out = []
        for search_label, params in searches:
            searcher = faiss_searcher(index, params) if store == "faiss" else milvus_searcher(index, params)
            times, found = time_queries(searcher, q)
            out.append({
                "search": search_label, "desc": desc, "build_s": build_s, "rss_mb": memory, "disk_mb": disk, "server_mb": server_mb,
                "p50": pct(times, 50), "p99": pct(times, 99), "recall": recall_at_k(found, truth),
            })  # fmt: skip
            print(config[:2], out[-1], file=sys.stderr, flush=True)
        if store == "milvus":
            index.close()
        for row in out:
            row["peak_mb"] = hwm_mb()
    return out


def _child(config: Config, paths: tuple[str, str, str], texts: list[str], pipe: Any) -> None:
    x, q, truth = (np.load(p) for p in paths)
    pipe.send(measure(config, x, q, truth, texts))


#: Thread variables a child starts with: OpenMP (FAISS, in both stores) and BLAS (milvus-lite's FLAT is numpy).
THREAD_ENV = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def run_isolated(config: Config, paths: tuple[str, str, str], texts: list[str], threads: int) -> list[dict[str, Any]]:
    """`measure` in a fresh process started with `threads` compute threads (set before its libraries load:
    milvus-lite searches on its gRPC server's threads, which a call in this process could not reach)."""
    ctx = multiprocessing.get_context("spawn")
    ours, theirs = ctx.Pipe()
    proc = ctx.Process(target=_child, args=(config, paths, texts, theirs))
    saved = {k: os.environ.get(k) for k in THREAD_ENV}
    os.environ.update({k: str(threads) for k in THREAD_ENV})
    try:
        proc.start()
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    result: list[dict[str, Any]] = ours.recv()
    proc.join()
    return result


def configs(n: int, faiss_hnsw: bool = False) -> list[Config]:
    nlist, nprobe = dense.ivf_params(n)
    ivf_name = f"IVF_FLAT nlist={nlist}" if n > dense.EXACT_MAX else "FLAT (exact)"
    probes = [(f"nprobe={p}" + (" (default)" if p == nprobe else ""), {"nprobe": p}) for p in sorted({16, 32, nprobe})]
    ivf = probes if n > dense.EXACT_MAX else [("-", {})]
    efs = [(f"ef={ef}", {"ef": ef}) for ef in (64, 128)]
    hnsw = f"HNSW M={HNSW_M} efConstruction={HNSW_EF_CONSTRUCTION}"
    out: list[Config] = [
        ("faiss", "IndexFlatIP (exact)", "exact", [("-", {})]),
        ("faiss", f"IVFFlat nlist={nlist} (rag.dense.build)" if n > dense.EXACT_MAX else "IndexFlatIP (exact)", "project", ivf),
        ("faiss", hnsw, "hnsw", efs),
        ("milvus", ivf_name + " (the store's rule)", "auto", ivf),
        ("milvus", hnsw, "HNSW", efs),
        ("milvus", "FLAT (exact)", "FLAT", [("-", {})]),
    ]
    return out if faiss_hnsw else [c for c in out if c[2] != "hnsw"]


def ratios(defaults: dict[tuple[str, str], dict[str, Any]], text_mb: float) -> str:
    """One paragraph: Milvus against local FAISS at each store's shipped setting, as ratios."""
    lines = []
    for fa, mi, what in ((("faiss", "exact"), ("milvus", "FLAT"), "exact"), (("faiss", "project"), ("milvus", "auto"), "as built")):
        if fa in defaults and mi in defaults:
            f, m = defaults[fa], defaults[mi]
            lines.append(
                f"{what} ({f['desc']['type']} vs {m['desc']['type']}): Milvus p50 {m['p50'] / f['p50']:.1f}x, "
                f"p99 {m['p99'] / f['p99']:.1f}x "
                f"of local FAISS, recall@10 {m['recall']:.3f} vs {f['recall']:.3f}, build {m['build_s'] / max(f['build_s'], 1e-9):.0f}x"
            )
    return (
        "Milvus vs local FAISS, same vectors and queries: " + "; ".join(lines) + ". "
        f"The Milvus collection also holds the passage text ({text_mb:.0f} MB as UTF-8), which the local store keeps in "
        "passages.jsonl (not counted for FAISS)."
        if lines
        else ""
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--only", default="", help="comma-separated index kinds to run (exact,project,FLAT,auto,HNSW)")
    parser.add_argument("--faiss-hnsw", action="store_true", help="also FAISS's own HNSW (what milvus-lite's HNSW wraps)")
    parser.add_argument("--threads", type=int, default=1, help="compute threads of each child (build and search)")
    parser.add_argument("--cache", type=Path, default=None, help="where passages and vectors are cached (~/.cache/rag-bench)")
    parser.add_argument("--write", action="store_true", help="replace the store-scale section of docs/performance.md")
    args = parser.parse_args()
    x, q, rows, qs = embed_cached(args.n, args.cache or CACHE)
    q = q[: args.queries]
    load_before = load_line()
    started = time.perf_counter()
    truth = exact_ids(x, q)
    work = Path(tempfile.mkdtemp(prefix="rag-store-scale-"))
    paths = (str(work / "x.npy"), str(work / "q.npy"), str(work / "truth.npy"))
    for path, array in zip(paths, (x, q, truth), strict=True):
        np.save(path, array)
    texts = [r["text"] for r in rows]
    todo = [c for c in configs(args.n, args.faiss_hnsw) if not args.only or c[2] in args.only.split(",")]
    table_rows: list[list[str]] = []
    defaults: dict[tuple[str, str], dict[str, Any]] = {}
    server_mb = 0.0
    for done, config in enumerate(todo, 1):
        for r in run_isolated(config, paths, texts, args.threads):
            store = "local FAISS" if config[0] == "faiss" else "Milvus (milvus-lite)"
            if r["search"].endswith("(default)") or config[2] in ("exact", "FLAT"):
                defaults[(config[0], config[2])] = r
            segments = r["desc"].get("segments")
            label = config[1] + (f", {segments} segment{'s' if segments != 1 else ''}" if segments else "")
            server_mb = max(server_mb, r["server_mb"])
            table_rows.append([store, label, r["search"], f"{r['build_s']:.1f}", f"{r['rss_mb']:.0f}", f"{r['peak_mb']:.0f}",
                               f"{r['disk_mb']:.0f}", f"{r['p50']:.2f}", f"{r['p99']:.2f}", f"{r['recall']:.3f}"])  # fmt: skip
        partial = "" if done == len(todo) else f" (partial: {done} of {len(todo)} indexes so far)"
        text = report(args, rows, qs, len(q), x.nbytes, table_rows, defaults, server_mb, load_before + partial, started)
        print(text, flush=True)
        if args.write:  # after each index, so a run cut short still leaves what it measured
            write_section("store_scale", "Store scale on real vectors: local FAISS vs Milvus (`bench/perf_store_scale.py`)", text)
    return 0


def report(
    args: argparse.Namespace, rows: Rows, qs: Rows, n_queries: int, vector_bytes: int, table_rows: list[list[str]],
    defaults: dict[tuple[str, str], dict[str, Any]], server_mb: float, load_before: str, started: float,
) -> str:  # fmt: skip
    """The doc section: how the data was made, how it was measured, the table and the ratios."""
    import milvus_lite
    import pymilvus

    header = ["store", "index", "search", "build s", "RSS added MB", "process peak MB", "on disk MB", "p50 ms", "p99 ms"]
    header.append("recall@10 vs exact")
    asked = Counter(row["source"] for row in qs[:n_queries])
    text = (
        f"{args.n:,} real passages, {scale_corpus.HOW}. Mix: {scale_corpus.mix(rows)}. Embedded by the int8 ONNX e5 passage path "
        f"(384 dimensions); {n_queries:,} real questions ({', '.join(f'{s} {c}' for s, c in asked.items())}) "
        f"embedded by the query path. One query per search call, k={K}; recall@10 against exact search (FAISS IndexFlatIP). "
        f"Each index built in a fresh process: RSS added = resident memory after the build minus before it (vectors already loaded, "
        f"{vector_bytes / 2**20:.0f} MB); on disk = the saved FAISS index, or the milvus-lite folder. "
        f"milvus-lite {milvus_lite.__version__} runs its server in the client's process (gRPC on threads, FAISS or numpy "
        f"per segment); the client and server take {server_mb:.0f} MB before any collection, not counted above. Each process ran with "
        f"{args.threads} compute thread(s) (OpenMP and BLAS), building and searching; "
        f"pymilvus {pymilvus.__version__}. "
        f"Before: {load_before}; after: {load_line()}; whole run {time.perf_counter() - started:.0f} s.\n\n"
        f"{table(header, table_rows)}\n"
    )
    texts_mb = sum(len(r["text"].encode("utf-8")) for r in rows) / 2**20
    return text + "\n" + ratios(defaults, texts_mb)


if __name__ == "__main__":
    raise SystemExit(main())
