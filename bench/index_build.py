"""Benchmark: a full index build against incremental ones on a generated corpus of 1,000 documents.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/index_build.py [--documents 1000] [--no-write]

Every build is `rag index` run as a user runs it (a fresh process: Python start, imports, model
load when something must be embedded), timed by the wall clock. It prints a table and writes it
to docs/performance.md under its own heading, replacing only that section.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import shutil
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from doc_blocks import update_doc

from corpus import generate

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out"
REPORT = ROOT / "docs" / "performance.md"
HEADING = "## Index builds: full vs incremental"


Row = tuple[str, float, str, float]  # build, wall seconds, what rag index reported, 1-minute load average


def rag_index(corpus: Path, index: Path, *extra: str) -> tuple[float, str, float]:
    """Run `rag index`: its wall time, its first output line (what it did), the load average after."""
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "rag.cli", "index", "--quiet", "--corpus", str(corpus), "--index", str(index), *extra],
        capture_output=True,
        text=True,
        env=os.environ | {"HF_HUB_OFFLINE": "1"},
        check=False,
    )
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"rag index failed:\n{done.stderr}")
    lines = done.stdout.splitlines()
    load = os.getloadavg()[0]
    print(f"  {seconds:7.1f} s  {lines[0]}\n           {lines[1]}  (load average {load:.1f})", flush=True)
    return seconds, lines[0], load


def edit_one_sentence(path: Path) -> None:
    """Change one sentence, as a maintainer fixing a detail would: one passage gets new text."""
    text = path.read_text(encoding="utf-8")
    path.write_text(re.sub(r"以当地(\d{4})年规定为准", "以当地最新规定为准", text, count=1), encoding="utf-8")


def run(documents: int) -> list[Row]:
    corpus, index = OUT / f"corpus-{documents}", OUT / f"index-{documents}"
    print(f"{documents} documents in {corpus}; index in {index}", flush=True)
    shutil.rmtree(index, ignore_errors=True)
    files = generate(corpus, documents)
    rows = []

    def step(name: str, *extra: str) -> None:
        print(name, flush=True)
        rows.append((name, *rag_index(corpus, index, *extra)))

    step("full build (`rag index --full`)", "--full")
    edit_one_sentence(files[len(files) // 2])
    step("one document changed")
    step("nothing changed")
    files[0].unlink()
    (corpus / "doc-new.txt").write_text(files[1].read_text(encoding="utf-8").replace("(第1号)", "(新增)"), encoding="utf-8")
    step("one document added, one deleted")
    for path in files[len(files) // 10 : len(files) // 10 + 10]:
        edit_one_sentence(path)
    step("ten documents changed")
    return rows


def table(rows: list[Row]) -> str:
    full = rows[0][1]
    lines = ["| build | wall time | share of full build | what `rag index` reported | load average |", "|---|---|---|---|---|"]
    for name, seconds, what, load in rows:
        lines.append(f"| {name} | {seconds:.1f} s | {100 * seconds / full:.1f}% | {what} | {load:.1f} |")
    return "\n".join(lines)


def section(rows: list[Row], documents: int) -> str:
    cpu = f"{os.cpu_count()} CPU cores, {platform.machine()}, Python {platform.python_version()}"
    one = next(row[1] for row in rows if row[0] == "one document changed")
    return f"""{HEADING}

Measured by `bench/index_build.py` on {datetime.now(UTC):%Y-%m-%d} ({cpu}): a generated corpus of
{documents:,} documents (`bench/corpus.py`: titled sections of prose, about 700 characters each),
each build a fresh `rag index` process timed by the wall clock, so Python start, imports and the model
load (when something needs embedding) are included. The load average (1 minute, after each build)
shows how busy the shared machine was.

{table(rows)}

Changing one document and running `rag index` took {one:.1f} s, {100 * one / rows[0][1]:.1f}% of the full build.
An incremental build re-reads and re-chunks every document, embeds only passages whose embedded
text (section path + text) has no vector in the live version, rebuilds BM25 in full (its statistics
are corpus-wide; jieba over the whole corpus is most of what remains), then writes and checksums a
new version. Its fixed cost is mostly loading the model (torch and sentence-transformers imports);
a build that needs no new vector (nothing changed, or only deletions and renames) does not load it.
"""


def write_section(text: str) -> None:
    """Replace this benchmark's block of docs/performance.md (or append it), leaving the rest alone."""
    update_doc(REPORT, "bench/index_build", text, "Performance")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--documents", type=int, default=1000)
    parser.add_argument("--no-write", action="store_true", help="print the table only")
    args = parser.parse_args()
    rows = run(args.documents)
    text = section(rows, args.documents)
    print("\n" + text)
    if not args.no_write:
        write_section(text)
        print(f"wrote {REPORT.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
