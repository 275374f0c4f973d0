"""Read the corpus folder: every .txt and .md file, recursively, decoded exactly as UTF-8.

The decoded text is kept byte-for-byte as the file says (no newline translation), because
citations are offsets into exactly this string.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import NamedTuple

from rag.errors import CorpusError

SUFFIXES = (".txt", ".md")


class Document(NamedTuple):
    id: str  # path relative to the corpus folder, with forward slashes
    text: str
    sha256: str


class SkippedFile(NamedTuple):
    id: str
    reason: str


def corpus_files(corpus_dir: Path) -> list[Path]:
    """All indexable files under corpus_dir, in a stable order."""
    if not corpus_dir.is_dir():
        raise CorpusError(f"corpus folder {corpus_dir} does not exist; create it or pass --corpus DIR")
    return sorted(
        p
        for p in corpus_dir.rglob("*")
        if p.is_file() and p.suffix.lower() in SUFFIXES and not any(part.startswith(".") for part in p.relative_to(corpus_dir).parts)
    )


def read_document(path: Path, corpus_dir: Path) -> Document:
    """Decode one file; raises UnicodeDecodeError for files that are not UTF-8."""
    data = path.read_bytes()
    text = data.decode("utf-8")
    return Document(path.relative_to(corpus_dir).as_posix(), text, hashlib.sha256(data).hexdigest())


def load_corpus(corpus_dir: Path) -> tuple[list[Document], list[SkippedFile]]:
    """Every readable document, plus the files skipped and why (reported, never fatal alone)."""
    docs: list[Document] = []
    skipped: list[SkippedFile] = []
    for path in corpus_files(corpus_dir):
        rel = path.relative_to(corpus_dir).as_posix()
        try:
            docs.append(read_document(path, corpus_dir))
        except UnicodeDecodeError as exc:
            skipped.append(SkippedFile(rel, f"not valid UTF-8 (byte {exc.start})"))
        except OSError as exc:
            skipped.append(SkippedFile(rel, f"unreadable ({exc.strerror})"))
    return docs, skipped
