"""The local store: FAISS files and the bm25s folder inside the version folder (the default).

Dense: `dense-<role>.faiss`, exact up to dense.EXACT_MAX rows and IVF above (rag/dense.py).
Keyword: bm25s `get_scores` over the version's keyword/ folder (rag/keyword.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import bm25s
import numpy as np

from rag import dense, keyword
from rag.fusion import Ranking

NAME = "local"


def build(folder: Path, vectors: Mapping[str, np.ndarray]) -> dict[str, Any]:
    """Write each role's FAISS index into the (temporary) version folder."""
    kinds = {}
    for role, matrix in vectors.items():
        built = dense.build(matrix)  # exact below 50k rows, IVF above (docs/performance.md)
        dense.save(built, folder / f"dense-{role}.faiss")
        kinds[role] = dense.describe(built)
    return {"store": {"name": NAME}, "dense_index": kinds}


@dataclass
class LocalStore:
    faiss: dict[str, Any]  # faiss.Index by encoder role
    bm25: bm25s.BM25
    name: str = NAME

    @classmethod
    def open(cls, path: Path, roles: list[str], keyword_index: bm25s.BM25) -> LocalStore:
        return cls({role: dense.load(path / f"dense-{role}.faiss") for role in roles}, keyword_index)

    def dense(self, role: str, query: np.ndarray, k: int) -> Ranking:
        return dense.search(self.faiss[role], query, k)

    def keyword(self, tokens: list[str], k: int) -> Ranking:
        return keyword.search(self.bm25, tokens, k)

    def rows(self, role: str) -> int:
        return int(self.faiss[role].ntotal)
