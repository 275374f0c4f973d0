"""Dense encoders behind one small interface, so a second model can join the retriever."""

from __future__ import annotations

from typing import Protocol

import numpy as np

from rag.config import Settings
from rag.errors import RagError

PRIMARY = "primary"
SECOND = "second"
TOKENS = "tokens"  # not an encoder: the primary encoder's token rows of a question (rag/late.py), in a vectors dict


class Encoder(Protocol):
    """Turns texts into L2-normalised float32 vectors; queries and passages may differ (prompts)."""

    name: str
    dim: int

    def encode_queries(self, texts: list[str]) -> np.ndarray: ...

    def encode_passages(self, texts: list[str], progress: bool = False) -> np.ndarray: ...


def load_encoder(settings: Settings, progress: bool = True) -> Encoder:
    """The configured primary encoder, converting the bundled default model on first use."""
    from rag.encoders.sentence import SentenceEncoder

    return SentenceEncoder.from_settings(settings, progress=progress)


def load_encoders(settings: Settings, progress: bool = True) -> dict[str, Encoder]:
    """Every dense encoder the retriever uses, by role: the primary one and, when set, a second one."""
    encoders = {PRIMARY: load_encoder(settings, progress)}
    if settings.second_model:
        if settings.second_model != "use-multilingual":
            raise RagError(f"unknown RAG_SECOND_MODEL {settings.second_model!r}; use 'use-multilingual' or '' (off)")
        from rag.encoders.use import USEEncoder

        # The query adapter file, read and checked once by the primary encoder, also holds USE's English map.
        loaded = getattr(encoders[PRIMARY], "query_adapter", None)
        encoders[SECOND] = USEEncoder(cache_dir=settings.cache_dir, query_adapter=loaded)
    return encoders
