"""Answer a question with the best passages: dense and keyword rankings, fused."""

from __future__ import annotations

import threading
from typing import NamedTuple

from rag import dense, keyword
from rag.chunk import Passage
from rag.config import Settings
from rag.encoders import Encoder
from rag.fusion import Ranking, rrf
from rag.index import Index
from rag.tokenize import tokenize


class Hit(NamedTuple):
    rank: int  # 1-based
    score: float
    passage: Passage


class Retriever:
    """Holds the encoder and the live index; `swap` replaces the index between two searches."""

    def __init__(self, settings: Settings, encoder: Encoder, index: Index):
        self.settings = settings
        self.encoder = encoder
        self._index = index
        self._swap_lock = threading.Lock()

    @property
    def index(self) -> Index:
        return self._index

    def swap(self, index: Index) -> None:
        """Atomic for readers: a search keeps the index object it started with."""
        with self._swap_lock:
            self._index = index

    def rankings(self, question: str, index: Index) -> list[Ranking]:
        """Each signal's own candidates, best first."""
        depth = self.settings.candidates
        query = self.encoder.encode_queries([question])[0]
        return [
            dense.search(index.dense, query, depth),
            keyword.search(index.keyword, tokenize(question), depth),
        ]

    def search(self, question: str, top_k: int = 5) -> list[Hit]:
        index = self._index
        fused = rrf(self.rankings(question, index), k=self.settings.rrf_k)
        return [
            Hit(rank, float(score), index.passages[pid])
            for rank, (pid, score) in enumerate(zip(fused.ids[:top_k].tolist(), fused.scores[:top_k].tolist()), start=1)
        ]
