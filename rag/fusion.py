"""Combining rankings from several signals. Small pure functions over numpy arrays."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np


class Ranking(NamedTuple):
    """One signal's answer: passage ids, best first, and that signal's own scores."""

    ids: np.ndarray
    scores: np.ndarray


def empty() -> Ranking:
    """No candidates: a signal that has nothing to say (no shared term, no encoder)."""
    return Ranking(np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float32))


def rrf(rankings: list[Ranking], k: int = 60, weights: list[float] | None = None) -> Ranking:
    """Weighted reciprocal rank fusion: score(d) = sum_i w_i / (k + rank_i(d)), ranks from 1."""
    weights = weights or [1.0] * len(rankings)
    fused: dict[int, float] = {}
    for ranking, weight in zip(rankings, weights, strict=True):
        for rank, pid in enumerate(ranking.ids.tolist(), start=1):
            fused[pid] = fused.get(pid, 0.0) + weight / (k + rank)
    if not fused:
        return empty()
    ids = np.fromiter(fused.keys(), dtype=np.int64, count=len(fused))
    scores = np.fromiter(fused.values(), dtype=np.float32, count=len(fused))
    order = np.lexsort((ids, -scores))  # ties broken by passage id, so results are deterministic
    return Ranking(ids[order], scores[order])


def zscore(rankings: list[Ranking], weights: list[float]) -> Ranking:
    """Weighted sum of each signal's standardised scores over its own candidates.

    Unlike RRF this keeps *how much* better a signal found its top passage, which lifts MRR when
    one signal is confident. A candidate missing from a signal's list gets that list's lowest
    z-score, as if it ranked just below it.
    """
    fused: dict[int, float] = {}
    standardised = []
    for ranking, weight in zip(rankings, weights, strict=True):
        if weight == 0 or ranking.ids.size == 0:
            continue
        scores = ranking.scores.astype(np.float64)
        z = (scores - scores.mean()) / (scores.std() + 1e-9)
        standardised.append((dict(zip(ranking.ids.tolist(), z.tolist(), strict=True)), float(z.min()), weight))
        for pid in ranking.ids.tolist():
            fused.setdefault(pid, 0.0)
    for pid in fused:
        fused[pid] = sum(weight * table.get(pid, floor) for table, floor, weight in standardised)
    if not fused:
        return empty()
    ids = np.fromiter(fused.keys(), dtype=np.int64, count=len(fused))
    scores = np.fromiter(fused.values(), dtype=np.float64, count=len(fused))
    order = np.lexsort((ids, -scores))
    return Ranking(ids[order], scores[order].astype(np.float32))
