"""Full index build: passages per second and memory peak, whole and per stage.

Generates a corpus with bench/corpus.py, then (1) times `rag index --full` in a fresh process
(imports, model load, chunking, both encoders, jieba, BM25, FAISS and the atomic write included)
and reads its peak RSS from the kernel, and (2) times each stage in this process on the same
passages, so the total can be explained.

    .venv/bin/python bench/perf_build.py [--documents 150] [--repeats 3] [--write]
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from perf_common import ROOT, load_line, median, table, write_section

from corpus import generate

OUT = ROOT / "bench" / "out"


def full_build(corpus: Path, index: Path) -> tuple[float, float, str]:
    """Seconds, peak RSS (MB) and the report line of one `rag index --full` in a fresh process."""
    shutil.rmtree(index, ignore_errors=True)
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "rag.cli", "index", "--full", "--quiet", "--corpus", str(corpus), "--index", str(index)],
        capture_output=True, text=True, env=os.environ | {"HF_HUB_OFFLINE": "1"}, check=True,
    )  # fmt: skip
    seconds = time.perf_counter() - started
    # ru_maxrss of waited-for children is the largest of them; each build is the largest so far or equal.
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return seconds, peak_mb, done.stdout.splitlines()[0]


def stages(corpus: Path) -> tuple[int, list[list[str]]]:
    """Per-stage seconds and passages/s in this process, over the same corpus."""
    from rag.chunk import chunk_document, embedding_units, keyword_text
    from rag.config import Settings
    from rag.encoders import PRIMARY, SECOND, load_encoders
    from rag.index import embedding_units_by_role
    from rag.ingest import load_corpus
    from rag.tokenize import tokenize

    settings = Settings.from_env()
    timings: list[tuple[str, float]] = []

    def timed(name: str, fn):  # type: ignore[no-untyped-def]
        t = time.perf_counter()
        out = fn()
        timings.append((name, time.perf_counter() - t))
        return out

    label = "load encoders (numpy e5, USE; sentence-transformers loads in the e5 stage)"
    encoders = timed(label, lambda: load_encoders(settings, progress=False))
    docs, _ = timed("read corpus", lambda: load_corpus(corpus))
    passages = timed("chunk", lambda: [p for d in docs for p in chunk_document(d.id, d.text, settings.max_chars)])
    units = embedding_units_by_role(settings)  # what a build embeds: e5 passages, USE sentences (as shipped)
    texts = {role: embedding_units(passages, unit)[0] for role, unit in units.items()}
    e5, use = encoders[PRIMARY], encoders[SECOND]
    timed(f"embed e5 (sentence-transformers; {len(texts[PRIMARY])} {units[PRIMARY]}s)", lambda: e5.encode_passages(texts[PRIMARY]))
    timed(f"embed USE ({len(texts[SECOND])} {units[SECOND]}s)", lambda: use.encode_passages(texts[SECOND]))
    timed("jieba tokens", lambda: [tokenize(keyword_text(p)) for p in passages])
    n = len(passages)
    rows = [[name, f"{s:.1f}", f"{n / s:.0f}" if not name.startswith("load") else "-"] for name, s in timings]
    return n, rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--documents", type=int, default=150)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args()
    corpus, index = OUT / f"build-corpus-{args.documents}", OUT / f"build-index-{args.documents}"
    generate(corpus, args.documents)
    before = load_line()
    n, stage_rows = stages(corpus)
    print(table(["stage", "seconds", "passages/s"], stage_rows), flush=True)
    runs = []
    for _ in range(args.repeats):
        runs.append(full_build(corpus, index))
        print(f"full build: {runs[-1][0]:.1f} s, peak RSS {runs[-1][1]:.0f} MB: {runs[-1][2]}", flush=True)
    seconds = median([r[0] for r in runs])
    text = (
        f"`rag index --full` over {args.documents} generated documents (bench/corpus.py), {args.repeats} runs in fresh "
        f"processes; median shown. Before: {before}; after: {load_line()}.\n\n"
        + table(
            ["passages", "full build s (median)", "runs s", "passages/s", "peak RSS MB", "rag index said"],
            [
                [
                    str(n),
                    f"{seconds:.1f}",
                    " / ".join(f"{r[0]:.1f}" for r in runs),
                    f"{n / seconds:.1f}",
                    f"{max(r[1] for r in runs):.0f}",
                    runs[0][2],
                ]
            ],
        )
        + "\n\nWhere a build's time goes (the same passages, stage by stage in one process):\n\n"
        + table(["stage", "seconds", "passages/s"], stage_rows)
        + "\n"
    )
    print(text)
    if args.write:
        write_section("build", "Full build: passages per second and memory (`bench/perf_build.py`)", text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
