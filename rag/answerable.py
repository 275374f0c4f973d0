"""Does the corpus answer the question at all? Two of the signals behind the `confidence` (rag/confidence.py).

- **Disagreement**: the sum, over the signals, of the log of the fused top passage's rank in each
  (0 when every signal puts it first). An answering passage is usually found by all of them; for a
  question the corpus does not answer, each signal grabs a different near miss.
- **Coverage**: the share of the question's keyword weight (IDF) that the top passages contain.
  Each Chinese token counts once; an English word counts as covered when the passages hold it or one
  of its chosen translations. A word the corpus lacks weighs the most ("红烧肉", "dental").

Both are features of the learned confidence, which decides `answerable` (confidence >= the
threshold). The rule they made before it, false only when disagreement is above and coverage below
a language's thresholds, is kept as `is_answerable` for RAG_ANSWERABLE_ZH/_EN (retired: when set,
it replaces the threshold for that language). docs/quality.md has the rates of both.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import bm25s
import numpy as np

from rag import keyword
from rag.fusion import Ranking

COVERAGE_DEPTH = 3  # top passages whose keywords count for coverage


class Confidence(NamedTuple):
    answerable: bool  # confidence >= Settings.confidence_threshold (or the retired rule, when configured)
    confidence: float  # 0..1: the probability that a returned passage answers (rag/confidence.py)
    disagreement: float  # >= 0; 0 when every signal ranks the fused top passage first
    coverage: float  # 0..1; share of the question's keyword weight in the top passages
    features: dict[str, float] | None = None  # what the confidence was computed from (bench/train_confidence.py)


def disagreement(rankings: Sequence[Ranking], top: int, depth: int) -> float:
    """Sum of ln(rank of `top`) over the rankings; a ranking that lacks it counts as rank depth + 1."""
    total = 0.0
    for ranking in rankings:
        where = np.flatnonzero(ranking.ids == top)
        total += math.log(int(where[0]) + 1 if where.size else depth + 1)
    return total


class Unit(NamedTuple):
    """One keyword unit of a question, looked up once per search for every share computed from it."""

    tokens: Sequence[str]  # its alternatives: an English word and its translations, or one Chinese token
    postings: list[np.ndarray]  # the passages each alternative occurs in
    weight: float  # its rarest alternative's IDF, so a unit the corpus lacks weighs the most


def weigh(index: bm25s.BM25, units: Sequence[Sequence[str]]) -> list[Unit]:
    """The question's keyword units with their postings and weights, by the keyword index."""
    passages = int(index.scores["num_docs"])
    out = []
    for unit in units:
        lists = [keyword.postings(index, token) for token in unit]
        out.append(Unit(unit, lists, max((_idf(ids.size, passages) for ids in lists), default=0.0)))
    return out


def coverage(units: Sequence[Unit], top: Sequence[int]) -> float:
    """IDF-weighted share of `units` that passages `top` contain: a unit is found when one of its
    alternatives is in one of the passages."""
    total = found = 0.0
    wanted = np.asarray(top, dtype=np.int64)
    for unit in units:
        total += unit.weight
        if any((ids[:, None] == wanted).any() for ids in unit.postings if ids.size):  # a few top ids: faster than np.isin's sort
            found += unit.weight
    return found / total if total else 1.0  # a question of stopwords: no evidence either way


def text_coverage(units: Sequence[Unit], tokens: Sequence[str]) -> float:
    """IDF-weighted share of `units` with an alternative among `tokens` (a sentence's keyword tokens),
    weighed as in `coverage`; 1 for a question of stopwords."""
    present = set(tokens)
    total = found = 0.0
    for unit in units:
        total += unit.weight
        if any(token in present for token in unit.tokens):
            found += unit.weight
    return found / total if total else 1.0


def is_answerable(disagreement: float, coverage: float, thresholds: tuple[float, float] | None) -> bool:
    """False when the signals disagree more than `thresholds[0]` and cover less than `thresholds[1]`."""
    if thresholds is None:
        return True
    most_disagreement, least_coverage = thresholds
    return disagreement <= most_disagreement or coverage >= least_coverage


def _idf(df: int, passages: int) -> float:
    return math.log((passages + 1) / (df + 0.5))
