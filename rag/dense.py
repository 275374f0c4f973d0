"""Dense side: FAISS inner product over L2-normalised vectors (= cosine similarity)."""

from __future__ import annotations

from pathlib import Path

import faiss
import numpy as np

from rag.fusion import Ranking, empty


def build(vectors: np.ndarray) -> faiss.Index:
    """An exact index; it is fast enough for this corpus size (see docs/performance.md)."""
    index = faiss.IndexFlatIP(vectors.shape[1])
    if len(vectors):
        index.add(np.ascontiguousarray(vectors, dtype=np.float32))
    return index


def save(index: faiss.Index, path: Path) -> None:
    faiss.write_index(index, str(path))


def load(path: Path) -> faiss.Index:
    return faiss.read_index(str(path))


def search(index: faiss.Index, query: np.ndarray, k: int) -> Ranking:
    """Top-k passage ids and cosine scores for one query vector."""
    k = min(k, index.ntotal)
    if k <= 0:
        return empty()
    scores, ids = index.search(np.ascontiguousarray(query.reshape(1, -1), dtype=np.float32), k)
    keep = ids[0] >= 0
    return Ranking(ids[0][keep].astype(np.int64), scores[0][keep])
