"""The index folder: build it, switch to it atomically, load it back and check it.

Layout (the folder says how it was built, so a stale or foreign index is caught on load):

    index/
      CURRENT             name of the live version, replaced atomically (write aside, rename)
      .lock               held (flock) by the one process that is building
      v<time>-<pid>/      one complete version
        manifest.json     model, chunking, corpus file hashes, counts, library versions
        passages.jsonl    passages with citations
        embeddings-<role>.npy  passage vectors of each encoder role (primary, second)
        dense-<role>.faiss     FAISS inner-product index of each role
        keyword/          bm25s index over jieba tokens

A build writes a new version folder under a temporary name, renames it into place, then points
CURRENT at it. A build that dies at any point leaves CURRENT on the last good version.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from rag import dense, keyword
from rag.chunk import Passage, chunk_document, embedding_text, keyword_text
from rag.config import Settings
from rag.encoders import PRIMARY, SECOND, Encoder
from rag.errors import CorpusError, IndexInvalidError, IndexMissingError
from rag.ingest import load_corpus
from rag.tokenize import tokenize

FORMAT_VERSION = 1
CURRENT = "CURRENT"
KEEP_VERSIONS = 2
LIBRARIES = ("faiss-cpu", "bm25s", "jieba", "sentence-transformers", "transformers", "torch", "numpy")


@dataclass
class Index:
    """A loaded index version: everything a search needs, read-only once built."""

    path: Path
    manifest: dict[str, Any]
    passages: list[Passage]
    embeddings: dict[str, np.ndarray]  # by encoder role
    dense: dict[str, Any]  # faiss.Index by encoder role
    keyword: Any  # bm25s.BM25


@dataclass
class BuildReport:
    path: Path
    documents: int
    passages: int
    skipped: list[tuple[str, str]]
    seconds: float


# --- reading -------------------------------------------------------------------------------------


def current_version(index_dir: Path) -> Path | None:
    """The live version folder, or None when nothing has been built."""
    pointer = index_dir / CURRENT
    try:
        name = pointer.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return None
    return index_dir / name if name else None


def load_index(settings: Settings) -> Index:
    """Load and check the live version; any problem becomes one error that says to run `rag index`."""
    path = current_version(settings.index_dir)
    if path is None:
        raise IndexMissingError(f"no index in {settings.index_dir}; run `rag index` to build it")
    fix = f"run `rag index --index {settings.index_dir}` to rebuild it"
    try:
        manifest = json.loads((path / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise IndexInvalidError(f"index at {path} is unreadable ({exc}); {fix}") from exc
    check_manifest(manifest, settings, fix)
    try:
        passages = [_passage_from_json(json.loads(line)) for line in (path / "passages.jsonl").read_text(encoding="utf-8").splitlines()]
        roles = list(manifest["encoders"])
        embeddings = {role: np.load(path / f"embeddings-{role}.npy", allow_pickle=False) for role in roles}
        dense_indexes = {role: dense.load(path / f"dense-{role}.faiss") for role in roles}
        keyword_index = keyword.load(path / "keyword")
    except Exception as exc:  # faiss, numpy and bm25s each raise their own types for a bad file
        raise IndexInvalidError(f"index at {path} is damaged ({type(exc).__name__}: {exc}); {fix}") from exc
    counts = {len(passages), manifest["passages"]}
    counts |= {int(d.ntotal) for d in dense_indexes.values()} | {len(e) for e in embeddings.values()}
    if len(counts) != 1:
        raise IndexInvalidError(f"index at {path} is inconsistent (passage counts {sorted(counts)}); {fix}")
    return Index(path, manifest, passages, embeddings, dense_indexes, keyword_index)


def check_manifest(manifest: dict[str, Any], settings: Settings, fix: str) -> None:
    """Refuse an index made by another format version, model or chunking."""
    if manifest.get("format_version") != FORMAT_VERSION:
        raise IndexInvalidError(f"index format {manifest.get('format_version')!r} is not the supported {FORMAT_VERSION}; {fix}")
    built_with = {role: spec.get("name") for role, spec in manifest.get("encoders", {}).items()}
    wanted = encoder_names(settings)
    if built_with != wanted:
        raise IndexInvalidError(f"index was built with models {built_with}, but the configured models are {wanted}; {fix}")
    if manifest.get("chunking") != chunking_config(settings):
        raise IndexInvalidError(f"index was built with chunking {manifest.get('chunking')}, now {chunking_config(settings)}; {fix}")


def encoder_names(settings: Settings) -> dict[str, str]:
    """The model name of each encoder role the settings ask for."""
    names = {PRIMARY: settings.model}
    if settings.second_model:
        names[SECOND] = settings.second_model
    return names


def chunking_config(settings: Settings) -> dict[str, Any]:
    return {"max_chars": settings.max_chars}


def _passage_from_json(row: dict[str, Any]) -> Passage:
    return Passage(
        doc_id=row["document"],
        title=row["title"],
        section=tuple(row["section"]),
        start=row["start"],
        end=row["end"],
        line_start=row["line_start"],
        line_end=row["line_end"],
        text=row["text"],
    )


def _passage_to_json(p: Passage) -> dict[str, Any]:
    return {
        "document": p.doc_id,
        "title": p.title,
        "section": list(p.section),
        "start": p.start,
        "end": p.end,
        "line_start": p.line_start,
        "line_end": p.line_end,
        "text": p.text,
    }


# --- writing -------------------------------------------------------------------------------------


@contextlib.contextmanager
def writer_lock(index_dir: Path, wait: bool = True) -> Iterator[None]:
    """One builder at a time. flock is released by the OS when the holder dies, so it never goes stale."""
    index_dir.mkdir(parents=True, exist_ok=True)
    with open(index_dir / ".lock", "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if not wait:
                raise CorpusError(f"another `rag index` is building {index_dir}; try again when it finishes") from None
            print(f"waiting for another `rag index` to finish with {index_dir} ...", file=sys.stderr)
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def build_index(settings: Settings, encoders: dict[str, Encoder], progress: bool = True) -> BuildReport:
    """Chunk, embed and index the whole corpus into a new version, then switch to it."""
    with writer_lock(settings.index_dir):
        return _build(settings, encoders, progress)


def _build(settings: Settings, encoders: dict[str, Encoder], progress: bool) -> BuildReport:
    started = time.perf_counter()
    docs, skipped = load_corpus(settings.corpus_dir)
    for item in skipped:
        print(f"skipped {item.id}: {item.reason}", file=sys.stderr)
    if not docs:
        raise CorpusError(f"no readable .txt or .md documents in {settings.corpus_dir}; add some and run `rag index` again")
    passages = [p for doc in docs for p in chunk_document(doc.id, doc.text, settings.max_chars)]
    if not passages:
        raise CorpusError(f"the documents in {settings.corpus_dir} contain no text to index")

    texts = [embedding_text(p) for p in passages]
    vectors = {role: enc.encode_passages(texts, progress=progress) for role, enc in encoders.items()}
    tokens = [tokenize(keyword_text(p)) for p in passages]

    name = f"v{datetime.now(UTC).strftime('%Y%m%dT%H%M%S%f')}-{os.getpid()}"
    tmp = settings.index_dir / f".tmp-{name}"
    tmp.mkdir(parents=True)
    try:
        with open(tmp / "passages.jsonl", "w", encoding="utf-8") as f:
            for p in passages:
                f.write(json.dumps(_passage_to_json(p), ensure_ascii=False) + "\n")
        for role, matrix in vectors.items():
            np.save(tmp / f"embeddings-{role}.npy", matrix, allow_pickle=False)
            dense.save(dense.build(matrix), tmp / f"dense-{role}.faiss")
        keyword.save(keyword.build(tokens), tmp / "keyword")
        manifest = {
            "format_version": FORMAT_VERSION,
            "model": {"name": encoders[PRIMARY].name, "dim": encoders[PRIMARY].dim},
            "encoders": {role: {"name": enc.name, "dim": enc.dim} for role, enc in encoders.items()},
            "chunking": chunking_config(settings),
            "dense_index": "IndexFlatIP",
            "keyword_index": "bm25s over jieba search-mode tokens",
            "corpus": {"dir": str(settings.corpus_dir), "files": {d.id: d.sha256 for d in docs}},
            "skipped": {s.id: s.reason for s in skipped},
            "documents": len(docs),
            "passages": len(passages),
            "built_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "build_seconds": round(time.perf_counter() - started, 3),
            "versions": _library_versions(),
        }
        (tmp / "manifest.json").write_text(json.dumps(manifest, ensure_ascii=False, indent=2), encoding="utf-8")
        _fsync_tree(tmp)
        final = settings.index_dir / name
        os.replace(tmp, final)
        _point_current(settings.index_dir, name)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _remove_old_versions(settings.index_dir, keep=name)
    return BuildReport(final, len(docs), len(passages), [(s.id, s.reason) for s in skipped], time.perf_counter() - started)


def _point_current(index_dir: Path, name: str) -> None:
    """Atomically make `name` the live version."""
    tmp = index_dir / f".{CURRENT}.tmp-{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(name + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, index_dir / CURRENT)
    _fsync_dir(index_dir)


def _remove_old_versions(index_dir: Path, keep: str) -> None:
    """Keep the live version and the one before it (a reader may still hold it); drop older ones."""
    versions = sorted((p for p in index_dir.iterdir() if p.is_dir() and p.name.startswith("v")), key=lambda p: p.name)
    old = [p for p in versions if p.name != keep][: -(KEEP_VERSIONS - 1) or None]
    for path in old:
        shutil.rmtree(path, ignore_errors=True)
    for stale in index_dir.glob(".tmp-*"):
        shutil.rmtree(stale, ignore_errors=True)


def _fsync_tree(root: Path) -> None:
    for path in root.rglob("*"):
        if path.is_file():
            with open(path, "rb") as f:
                os.fsync(f.fileno())
    _fsync_dir(root)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _library_versions() -> dict[str, str]:
    versions = {"python": sys.version.split()[0]}
    for name in LIBRARIES:
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions[name] = metadata.version(name)
    return versions
