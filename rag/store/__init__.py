"""Where an index version's searchable signals live: `local` (FAISS + bm25s files in the version
folder) or `milvus` (a Milvus collection per version). Chosen by RAG_STORE; the retriever, the CLI,
the API and `rag eval` only see the `Store` below.

    rag/store/local.py   dense-<role>.faiss + the keyword/ bm25s folder (the default)
    rag/store/milvus.py  one collection per version (+ one for sentence rows), an alias for outside readers

Both keep the same rows: one per embedding unit of each encoder role (a passage, or a sentence of
one for role `second`), numbered as in embeddings-<role>.npy, and one keyword row per passage,
numbered as in passages.jsonl. The bm25s folder is written in both modes: it is the vocabulary and
postings that query expansion and the confidence read, and the source of Milvus's sparse vectors.

A build calls `build(...)` with the new version's vectors aside (the manifest records what it
returns), `publish(...)` once CURRENT names the version, and `sweep(...)` to drop what no kept
version names. A load calls `open_store(...)` with the version's manifest, so a loaded version
always searches exactly the rows its passages.jsonl numbers.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import bm25s
import numpy as np

from rag.chunk import Passage
from rag.config import Settings
from rag.errors import IndexInvalidError
from rag.fusion import Ranking

STORES = ("local", "milvus")


class Store(Protocol):
    """One loaded version's search side."""

    name: str  # "local" or "milvus"

    def dense(self, role: str, query: np.ndarray, k: int) -> Ranking:
        """The k unit rows of `role` with the highest inner product with `query`, best first."""
        ...

    def keyword(self, tokens: list[str], k: int) -> Ranking:
        """The k passages with the highest positive BM25 score for `tokens` (a repeated token counts again)."""
        ...

    def rows(self, role: str) -> int:
        """How many unit rows `role` holds (checked against the version's arrays on load)."""
        ...


def store_name(manifest: Mapping[str, Any]) -> str:
    """The store a version was built for; versions from before stores existed are local."""
    entry = manifest.get("store")
    return str(entry.get("name", "local")) if isinstance(entry, dict) else "local"


def build(
    settings: Settings,
    version: str,
    folder: Path,
    vectors: Mapping[str, np.ndarray],
    owners: Mapping[str, Sequence[int] | np.ndarray],
    passages: Sequence[Passage],
    keyword_index: bm25s.BM25,
) -> dict[str, Any]:
    """Write the new version's searchable side (files in `folder`, or a new collection), not yet live.

    Returns the manifest's `store` entry and, under "dense_index", what each role's index is.
    """
    if settings.store == "milvus":
        from rag.store import milvus

        return milvus.build(settings, version, vectors, owners, passages, keyword_index)
    from rag.store import local

    return local.build(folder, vectors)


def open_store(settings: Settings, path: Path, manifest: Mapping[str, Any], keyword_index: bm25s.BM25) -> Store:
    """The search side of the version at `path`, as its manifest names it."""
    name = store_name(manifest)
    if name != settings.store:
        raise IndexInvalidError(
            f"index at {path} was built for RAG_STORE={name}, but RAG_STORE is {settings.store}; "
            f"run `rag index --index {settings.index_dir}` to build it for {settings.store}"
        )
    if name == "milvus":
        from rag.store import milvus

        return milvus.MilvusStore.open(settings, manifest["store"], keyword_index, manifest.get("dense_index", {}))
    from rag.store import local

    return local.LocalStore.open(path, list(manifest["encoders"]), keyword_index)


def publish(settings: Settings, entry: Mapping[str, Any]) -> None:
    """After CURRENT names the version: point the outside readers' alias at it (Milvus only)."""
    if settings.store == "milvus":
        from rag.store import milvus

        milvus.publish(settings, entry)


def sweep(settings: Settings, keep: Collection[str]) -> None:
    """Drop collections of versions other than `keep` (removed versions, killed builds); Milvus only."""
    if settings.store == "milvus":
        from rag.store import milvus

        milvus.sweep(settings, keep)


def discard(settings: Settings, entry: Mapping[str, Any] | None) -> None:
    """Drop what a failed build wrote outside its folder (its collection), so nothing names it."""
    if settings.store == "milvus" and entry:
        from rag.store import milvus

        milvus.drop(settings, entry)
