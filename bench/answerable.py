"""Calibrate the `answerable` flag on the own question set, then check it on the held-out set.

For each question language, one knob p picks both thresholds from the own set's answerable
questions: disagreement above its (100 - p)th percentile and coverage below its p-th percentile
flag a question. Of the p that keep at least 97% of answerable questions true (the target is 95%;
the margin is for questions the calibration never saw), the one that catches the most out-of-corpus
questions wins; ties go to the smaller p. The held-out set is only checked, never
used to choose. Prints a table and writes it into docs/quality.md between the
`bench/answerable.py` markers; paste the thresholds into rag/config.py (`answerable_zh/en`).

    .venv/bin/python bench/answerable.py
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import NamedTuple

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
from doc_blocks import update_doc  # noqa: E402  (bench/ is on the path of a script run from it)

from rag.answerable import is_answerable  # noqa: E402
from rag.cli import open_retriever  # noqa: E402
from rag.config import Settings  # noqa: E402
from rag.evaluate import load_questions  # noqa: E402
from rag.retrieve import Retriever  # noqa: E402

OWN = ROOT / "tests" / "data" / "questions.jsonl"
HOLDOUT = ROOT / "bench" / "holdout" / "questions.jsonl"
DOC = ROOT / "docs" / "quality.md"
KEEP = 0.97  # the 95% target, with a margin for questions the calibration never saw (docs/quality.md)
PERCENTILES = range(1, 41)


class Row(NamedTuple):
    lang: str
    answerable: bool  # by the question file: it has answers
    disagreement: float
    coverage: float


def signals(retriever: Retriever, path: Path) -> list[Row]:
    rows = []
    for q in load_questions(path):
        c = retriever.answer(q.question, 5).confidence
        rows.append(Row(q.lang, bool(q.answers), c.disagreement, c.coverage))
    return rows


def rates(rows: list[Row], thresholds: tuple[float, float]) -> tuple[float, float, int, int]:
    """(share of answerable kept true, share of out-of-corpus flagged false, how many of each)."""
    kept = [is_answerable(r.disagreement, r.coverage, thresholds) for r in rows if r.answerable]
    caught = [not is_answerable(r.disagreement, r.coverage, thresholds) for r in rows if not r.answerable]
    return float(np.mean(kept)), float(np.mean(caught)) if caught else float("nan"), len(kept), len(caught)


def calibrate(rows: list[Row]) -> tuple[int, tuple[float, float]]:
    """The knob p and its thresholds: most out-of-corpus questions caught with at least KEEP of answerable ones kept."""
    ans = [r for r in rows if r.answerable]
    best: tuple[float, int, tuple[float, float]] | None = None
    for p in PERCENTILES:
        thresholds = (
            round(float(np.percentile([r.disagreement for r in ans], 100 - p)), 2),
            round(float(np.percentile([r.coverage for r in ans], p)), 2),
        )
        kept, caught, _, _ = rates(rows, thresholds)
        if kept >= KEEP and (best is None or caught > best[0]):
            best = (caught, p, thresholds)
    assert best is not None, f"even p=1 keeps fewer than {KEEP:.0%} of answerable questions true"
    return best[1], best[2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--questions", type=Path, default=OWN, help="question file to calibrate on (default: the own set)")
    parser.add_argument("--check", type=Path, default=HOLDOUT, help="question file to check on (default: the held-out set)")
    parser.add_argument("--no-write", action="store_true", help="print only; leave docs/quality.md alone")
    args = parser.parse_args()
    retriever = open_retriever(Settings.from_env())  # RAG_INDEX_DIR etc. pick another corpus's index
    own, holdout = signals(retriever, args.questions), signals(retriever, args.check)
    lines = [
        "| language | p | thresholds (disagreement, coverage) | own: answerable kept true | own: out-of-corpus flagged false"
        " | held-out: kept true | held-out: flagged false |",
        "|---|---|---|---|---|---|---|",
    ]
    for lang in ("zh", "en"):
        p, thresholds = calibrate([r for r in own if r.lang == lang])
        o = rates([r for r in own if r.lang == lang], thresholds)
        h = rates([r for r in holdout if r.lang == lang], thresholds)
        lines.append(
            f"| {lang} | {p} | {thresholds[0]}, {thresholds[1]} | {o[0]:.2f} of {o[2]} | {o[1]:.2f} of {o[3]}"
            f" | {h[0]:.2f} of {h[2]} | {h[1]:.2f} of {h[3]} |"
        )
    table = "\n".join(lines)
    print(table)
    if not args.no_write:
        update_doc(DOC, "bench/answerable.py", table, "Retrieval quality")


if __name__ == "__main__":
    main()
