"""Ray Data embedding (`rag index --ray`) next to the local paths, side by side in one run.

The same passages (bench/perf_embed.py's: the shipped corpus plus a generated one) are embedded,
in interleaved rounds so a busy machine slows all of them alike, by:
- fp32: sentence-transformers' `encode` of the model folder (`RAG_PASSAGE_ENGINE=sentence-transformers`);
- fast: the shipped int8 ONNX path in this process, one run per core;
- Ray: `RayEncoder` over a local Ray cluster with one one-CPU actor per core (what `rag index --ray`
  starts), each call a fresh actor pool, as in a build: its time includes starting the actors and
  loading the model in each; its CPU-seconds are the actors' own, so passages per CPU-second
  compares the embedding work itself.
Then `rag index --full` end to end, local and `--ray`, in fresh processes, alternating.

    .venv/bin/python bench/perf_ray.py [--documents 250] [--rounds 2] [--builds 1] [--write]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
from doc_blocks import update_doc
from perf_common import DOC, load_line, table
from perf_embed import OUT, count_passages, passages, timed_build

Embed = Callable[[list[str]], np.ndarray]


def speed(texts: list[str], rounds: int) -> tuple[list[list[str]], int]:
    """Rows of passages/s per path (median of rounds), ratios within each round, cosine to the fast path."""
    from rag.config import Settings
    from rag.encoders import PRIMARY
    from rag.encoders.ray_pool import ray_encoders, ray_session
    from rag.encoders.sentence import SentenceEncoder

    settings = Settings.from_env()
    fast = SentenceEncoder.from_settings(replace(settings, passage_engine="onnx-int8"), progress=False)
    fp32 = SentenceEncoder.from_settings(replace(settings, passage_engine="sentence-transformers"), progress=False)
    started = time.perf_counter()
    with ray_session(None) as resources:
        ray_enc = ray_encoders(settings, {PRIMARY: fast}, resources)[PRIMARY]
        ray_enc.encode_passages(texts[:8])  # warms the cluster's worker processes once, as a long-lived cluster would be
        warm_s = time.perf_counter() - started
        paths: dict[str, Embed] = {"fp32": fp32.encode_passages, "fast": fast.encode_passages, "ray": ray_enc.encode_passages}
        fast.encode_passages(texts[:8])
        fp32.encode_passages(texts[:8])
        wall: dict[str, list[float]] = {n: [] for n in paths}
        cpu: dict[str, list[float]] = {n: [] for n in paths}
        vectors: dict[str, np.ndarray] = {}
        for r in range(rounds):
            for name, embed in paths.items():
                t, c = time.perf_counter(), time.process_time()
                vectors.setdefault(name, np.asarray(embed(texts), dtype=np.float32))
                wall[name].append(time.perf_counter() - t)
                cpu[name].append(time.process_time() - c if name != "ray" else ray_enc.timings["worker_cpu_s"])
                print(f"round {r + 1}: {name}: {len(texts) / wall[name][-1]:.1f} passages/s", flush=True)
    rows = []
    for name in paths:
        vs_fp32 = statistics.median(wall["fp32"][i] / wall[name][i] for i in range(rounds))
        vs_fast = statistics.median(wall["fast"][i] / wall[name][i] for i in range(rounds))
        cos = (vectors[name] * vectors["fast"]).sum(1)
        label = {"fp32": "fp32 (sentence-transformers)", "fast": "fast path (int8 ONNX, in process)"}.get(
            name, f"Ray, {ray_enc.workers} local workers (fresh actor pool per call)"
        )
        per_cpu = f"{len(texts) / statistics.median(cpu[name]):.1f}"
        rows.append(
            [label, f"{len(texts) / statistics.median(wall[name]):.1f}", per_cpu, f"{vs_fp32:.2f}x", f"{vs_fast:.2f}x", f"{cos.min():.6f}"]
        )
    rows.append([f"Ray cluster start and a first 8-passage call (once per build): {warm_s:.1f} s", "", "", "", "", ""])
    return rows, ray_enc.workers


def build_once(corpus: Path, ray: bool) -> tuple[float, float]:
    """(whole build s, e5 embedding stage s) of one `rag index --full [--ray]` in a fresh process."""
    index = Path(tempfile.mkdtemp(prefix="ray-index-", dir=OUT))
    args = ["--corpus", str(corpus), "--index", str(index), *(["--ray"] if ray else [])]
    return timed_build(args, os.environ | {"HF_HUB_OFFLINE": "1"}, index)


def builds(corpus: Path, n: int, repeats: int) -> list[list[str]]:
    runs: dict[str, list[tuple[float, float]]] = {"local": [], "ray": []}
    for _ in range(repeats):
        for name in runs:
            runs[name].append(build_once(corpus, name == "ray"))
            print(f"full build, {name}: {runs[name][-1][0]:.1f} s (e5 stage {runs[name][-1][1]:.1f} s)", flush=True)
    rows = []
    for name, rs in runs.items():
        total, stage = statistics.median(r[0] for r in rs), statistics.median(r[1] for r in rs)
        label = "`rag index --full` (fast path)" if name == "local" else "`rag index --full --ray` (local cluster)"
        rows.append([label, str(n), f"{total:.1f} ({' / '.join(f'{r[0]:.1f}' for r in rs)})", f"{stage:.1f}", f"{n / stage:.1f}"])
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--documents", type=int, default=250, help="generated documents added to the shipped corpus")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--builds", type=int, default=1, help="full builds per path (0 = skip)")
    parser.add_argument("--write", action="store_true", help="write the tables into docs/performance.md")
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    before = load_line()
    texts = passages(args.documents)
    rows, workers = speed(texts, args.rounds)
    header = [
        "path",
        "passages/s (wall, median)",
        "passages per CPU-second",
        "vs fp32 (per round)",
        "vs fast path",
        "min cosine to the fast path",
    ]
    text = (
        f"e5 passage embedding of {len(texts)} passages (the shipped corpus plus {args.documents} generated documents), "
        f"{args.rounds} interleaved rounds, {workers} one-CPU Ray actors on this machine's {os.cpu_count()} cores. "
        "Ray's CPU-seconds are the actors' own while embedding (the driver only waits; starting the actors and "
        f"loading their models are left out). Before: {before}; after the embedding rounds: {load_line()}.\n\n" + table(header, rows) + "\n"
    )
    if args.builds:
        corpus = OUT / f"embed-corpus-{args.documents}"
        build_rows = builds(corpus, count_passages(corpus), args.builds)
        text += (
            f"\nEnd to end over the generated corpus ({args.builds} run(s) per path in fresh processes, alternating; the e5 "
            "stage, timed from the build's stage lines, includes loading the encoders, and with `--ray` starting the "
            f"actors; the Ray cluster itself starts before it). After: {load_line()}.\n\n"
            + table(["build", "passages", "whole build s (runs)", "e5 stage s", "e5 passages/s"], build_rows)
            + "\n"
        )
    print(text)
    if args.write:
        update_doc(DOC, "bench/perf_ray", f"### Measured (`bench/perf_ray.py`)\n\n{text}", "Performance")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
