"""Keyword side: BM25 (bm25s) over jieba tokens. Rebuilt in full on every index build,
because BM25's statistics (document frequencies, average length) are corpus-wide."""

from __future__ import annotations

from pathlib import Path

import bm25s
import numpy as np

from rag.fusion import Ranking, empty


def build(token_lists: list[list[str]]) -> bm25s.BM25:
    index = bm25s.BM25()
    index.index(token_lists, show_progress=False)
    return index


def save(index: bm25s.BM25, path: Path) -> None:
    index.save(str(path), show_progress=False)


def load(path: Path) -> bm25s.BM25:
    return bm25s.BM25.load(str(path), show_progress=False)


def search(index: bm25s.BM25, tokens: list[str], k: int) -> Ranking:
    """Top-k passage ids with a positive BM25 score (no shared term, no candidate)."""
    if not tokens:
        return empty()
    scores = np.asarray(index.get_scores(tokens), dtype=np.float32)
    k = min(k, int((scores > 0).sum()))
    if k <= 0:
        return empty()
    top = np.argpartition(-scores, k - 1)[:k]
    top = top[np.argsort(-scores[top], kind="stable")]
    return Ranking(top.astype(np.int64), scores[top])


def postings(index: bm25s.BM25, token: str) -> np.ndarray:
    """Ids of the passages whose keyword tokens include `token`; empty when the corpus lacks it.

    Read from the index's token-major score matrix, so it agrees with what BM25 scores.
    """
    tid = index.vocab_dict.get(token)
    if tid is None:
        return np.empty(0, dtype=np.int64)
    indptr, indices = index.scores["indptr"], index.scores["indices"]
    end = int(indptr[tid + 1]) if tid + 1 < len(indptr) else len(indices)
    return np.asarray(indices[int(indptr[tid]) : end], dtype=np.int64)
