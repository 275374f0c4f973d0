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
    taking_part = [(r, w) for r, w in zip(rankings, weights, strict=True) if w != 0 and r.ids.size]
    if not taking_part:
        return empty()
    ids = np.unique(np.concatenate([r.ids for r, _ in taking_part]).astype(np.int64))
    fused = np.zeros(ids.size, dtype=np.float64)
    for ranking, weight in taking_part:
        scores = ranking.scores.astype(np.float64)
        z = (scores - scores.mean()) / (scores.std() + 1e-9)
        column = np.full(ids.size, z.min())
        column[np.searchsorted(ids, ranking.ids)] = z
        fused += weight * column
    order = np.lexsort((ids, -fused))
    return Ranking(ids[order], fused[order].astype(np.float32))
