"""Answer a question with the best passages: each signal ranks candidates, then they are fused.

Signals: the primary dense encoder (e5), an optional second dense encoder (USE, strong for
English questions), and BM25 over jieba tokens, where English words are also looked up in
CC-CEDICT so an English question can match Chinese keywords. Fusion weights depend on the
question's language (docs/quality.md has the measurements behind them).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from rag import dense, keyword
from rag.chunk import Passage, Span
from rag.config import Settings
from rag.encoders import PRIMARY, SECOND, Encoder
from rag.expand import expand_english, reverse_cedict
from rag.fusion import Ranking, empty, rrf, zscore
from rag.highlight import best_sentence
from rag.index import Index
from rag.tokenize import detect_language, has_latin_words, tokenize


class Hit(NamedTuple):
    rank: int  # 1-based
    score: float
    passage: Passage
    highlight: Span  # document offsets of the sentence that best answers


class Retriever:
    """Holds the encoders and the live index; `swap` replaces the index between two searches."""

    def __init__(self, settings: Settings, encoders: dict[str, Encoder], index: Index):
        self.settings = settings
        self.encoders = encoders
        self._index = index
        _ = index.vocabulary  # computed once per index, before its first search
        reverse_cedict(settings.cache_dir)  # load it now rather than inside the first English search

    @property
    def index(self) -> Index:
        return self._index

    def swap(self, index: Index) -> None:
        """Atomic for readers: one attribute assignment, and a search keeps the index it started with."""
        _ = index.vocabulary
        self._index = index

    def keyword_tokens(self, question: str, index: Index) -> list[str]:
        """jieba tokens, plus Chinese translations of English words that the corpus contains."""
        tokens = tokenize(question)
        if has_latin_words(question):
            tokens += expand_english(question, vocabulary=index.vocabulary)
        return tokens

    def dense_ranking(self, index: Index, role: str, query: np.ndarray) -> Ranking:
        """One encoder's best passages for a query vector; a passage embedded as sentences scores as its best one."""
        depth, owners = self.settings.candidates, index.owners[role]
        per_passage = -(-len(owners) // max(1, len(index.passages)))  # units per passage, rounded up
        hits = dense.search(index.dense[role], query, depth * per_passage)
        return dense.best_per_passage(hits, owners, depth)

    def rankings(self, question: str, index: Index, keywords: list[str] | None = None) -> list[Ranking]:
        """Each signal's own candidates, best first: primary dense, second dense, keyword."""
        depth = self.settings.candidates
        keywords = self.keyword_tokens(question, index) if keywords is None else keywords
        out = []
        for role in (PRIMARY, SECOND):
            if role in self.encoders:
                query = self.encoders[role].encode_queries([question])[0]
                out.append(self.dense_ranking(index, role, query))
            else:
                out.append(empty())
        out.append(keyword.search(index.keyword, keywords, depth))
        return out

    def search(self, question: str, top_k: int = 5) -> list[Hit]:
        index = self._index
        keywords = self.keyword_tokens(question, index)
        rankings = self.rankings(question, index, keywords)
        weights = self.settings.weights(detect_language(question))
        if self.settings.fusion == "rrf":
            fused = rrf(rankings, k=self.settings.rrf_k, weights=weights)
        else:
            fused = zscore(rankings, weights)
        return [
            Hit(rank, float(score), index.passages[pid], best_sentence(index.passages[pid], keywords))
            for rank, (pid, score) in enumerate(zip(fused.ids[:top_k].tolist(), fused.scores[:top_k].tolist(), strict=True), start=1)
        ]
