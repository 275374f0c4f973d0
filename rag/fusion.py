"""Combining rankings from several signals. Small pure functions over numpy arrays."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np


class Ranking(NamedTuple):
    """One signal's answer: passage ids, best first, and that signal's own scores."""

    ids: np.ndarray
    scores: np.ndarray


def rrf(rankings: list[Ranking], k: int = 60, weights: list[float] | None = None) -> Ranking:
    """Weighted reciprocal rank fusion: score(d) = sum_i w_i / (k + rank_i(d)), ranks from 1."""
    weights = weights or [1.0] * len(rankings)
    fused: dict[int, float] = {}
    for ranking, weight in zip(rankings, weights):
        for rank, pid in enumerate(ranking.ids.tolist(), start=1):
            fused[pid] = fused.get(pid, 0.0) + weight / (k + rank)
    if not fused:
        return Ranking(np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float32))
    ids = np.fromiter(fused.keys(), dtype=np.int64, count=len(fused))
    scores = np.fromiter(fused.values(), dtype=np.float32, count=len(fused))
    order = np.lexsort((ids, -scores))  # ties broken by passage id, so results are deterministic
    return Ranking(ids[order], scores[order])
