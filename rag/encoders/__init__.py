"""Dense encoders behind one small interface, so a second model can join the retriever."""

from __future__ import annotations

from typing import Protocol

import numpy as np

from rag.config import Settings


class Encoder(Protocol):
    """Turns texts into L2-normalised float32 vectors; queries and passages may differ (prompts)."""

    name: str
    dim: int

    def encode_queries(self, texts: list[str]) -> np.ndarray: ...

    def encode_passages(self, texts: list[str], progress: bool = False) -> np.ndarray: ...


def load_encoder(settings: Settings, progress: bool = True) -> Encoder:
    """The configured dense encoder, converting the bundled default model on first use."""
    from rag.encoders.sentence import SentenceEncoder

    return SentenceEncoder.from_settings(settings, progress=progress)
