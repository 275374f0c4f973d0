"""Scale benchmark for rag.dense: synthetic clustered vectors at 10k / 100k / 1M passages.

For each size: exact IndexFlatIP and the IVF index that `rag.dense.build` chooses above EXACT_MAX,
with an nprobe sweep: build time, index memory, single-query search time (k=10, one thread of
queries, FAISS's own threads as configured) and recall@10 against exact search.

Vectors are synthetic (e5-small has 384 dimensions): a Gaussian mixture of unit vectors around
`centers` random directions, so neighbourhoods look like clustered text embeddings rather than
uniform noise (on which every ANN index does badly and which no real corpus resembles). Queries
are held-out points from the same mixture.

    .venv/bin/python bench/perf_scale.py [--sizes 10000,100000,1000000] [--queries 200] [--write]
"""

from __future__ import annotations

import argparse
import gc
import resource
import statistics
import sys
import time
from pathlib import Path

import faiss
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from perf_common import load_line, rss_mb, write_section

from rag import dense

DIM = 384


def synthetic(n: int, rng: np.random.Generator, centers: np.ndarray, noise: float = 0.9) -> np.ndarray:
    """n unit vectors around the given centres, written in chunks (1M x 384 float32 = 1.5 GB)."""
    out = np.empty((n, DIM), dtype=np.float32)
    step = 100_000
    for a in range(0, n, step):
        b = min(n, a + step)
        which = rng.integers(0, len(centers), b - a)
        chunk = centers[which] + noise * rng.standard_normal((b - a, DIM), dtype=np.float32) / np.sqrt(DIM)
        chunk /= np.linalg.norm(chunk, axis=1, keepdims=True)
        out[a:b] = chunk
    return out


def time_queries(index: faiss.Index, queries: np.ndarray, k: int = 10) -> tuple[float, float, np.ndarray]:
    """Median and p95 ms per single-vector search, and the ids found."""
    times, found = [], []
    for q in queries:
        t = time.perf_counter()
        _, ids = index.search(q.reshape(1, -1), k)
        times.append((time.perf_counter() - t) * 1000)
        found.append(ids[0])
    times.sort()
    return statistics.median(times), times[int(0.95 * (len(times) - 1))], np.array(found)


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(f.tolist()) & set(t.tolist())) / len(t) for f, t in zip(found, truth, strict=True)]))


def run(sizes: list[int], n_queries: int, seed: int) -> list[list[str]]:
    rng = np.random.default_rng(seed)
    rows = []
    for n in sizes:
        centers = rng.standard_normal((max(64, n // 100), DIM), dtype=np.float32)
        centers /= np.linalg.norm(centers, axis=1, keepdims=True)
        t = time.perf_counter()
        x = synthetic(n, rng, centers)
        queries = synthetic(n_queries, rng, centers)
        gen_s = time.perf_counter() - t
        print(f"[{n}] generated in {gen_s:.1f} s; rss {rss_mb():.0f} MB", file=sys.stderr)

        before = rss_mb()
        t = time.perf_counter()
        flat = dense.build(x, exact_max=n)
        flat_build = time.perf_counter() - t
        flat_mem = rss_mb() - before
        p50, p95, truth = time_queries(flat, queries)
        rows.append([f"{n:,}", "IndexFlatIP (exact)", "-", f"{flat_build:.2f}", f"{flat_mem:.0f}", f"{p50:.2f}", f"{p95:.2f}", "1.000"])
        print(rows[-1], file=sys.stderr)
        if n > 20_000:
            del flat
            gc.collect()
            before = rss_mb()
            t = time.perf_counter()
            ivf = dense.build(x, exact_max=0)
            ivf_build = time.perf_counter() - t
            ivf_mem = rss_mb() - before
            desc = dense.describe(ivf)
            default_nprobe = desc["nprobe"]
            for nprobe in sorted({8, 16, 32, 64, default_nprobe}):
                if nprobe > desc["nlist"]:
                    continue
                ivf.nprobe = nprobe
                p50, p95, found = time_queries(ivf, queries)
                mark = " (default)" if nprobe == default_nprobe else ""
                rows.append(
                    [
                        f"{n:,}",
                        f"IVFFlat nlist={desc['nlist']}",
                        f"{nprobe}{mark}",
                        f"{ivf_build:.2f}",
                        f"{ivf_mem:.0f}",
                        f"{p50:.2f}",
                        f"{p95:.2f}",
                        f"{recall(found, truth):.3f}",
                    ]
                )
                print(rows[-1], file=sys.stderr)
            del ivf
        else:
            del flat
        del x
        gc.collect()
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--write", action="store_true", help="replace the scale section of docs/performance.md")
    args = parser.parse_args()
    load = load_line()
    started = time.perf_counter()
    rows = run([int(s) for s in args.sizes.split(",")], args.queries, args.seed)
    header = ["passages", "index", "nprobe", "build s", "index MB (RSS delta)", "search p50 ms", "search p95 ms", "recall@10 vs exact"]
    table = "| " + " | ".join(header) + " |\n|" + "---|" * len(header) + "\n" + "\n".join("| " + " | ".join(r) + " |" for r in rows)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    text = (
        f"Synthetic clustered unit vectors, {DIM} dimensions, {args.queries} held-out queries, k=10, one query per search call; "
        f"FAISS threads {faiss.omp_get_max_threads()}. {load}; whole run {time.perf_counter() - started:.0f} s, "
        f"process peak RSS {peak:.0f} MB.\n\n{table}\n"
    )
    print(text)
    if args.write:
        write_section("scale", "Scale: dense index type by corpus size (`bench/perf_scale.py`)", text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
