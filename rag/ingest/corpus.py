"""Walk the corpus folder and read each file once, never anything outside it.

Security (issue 12): links are resolved and must land inside the resolved corpus folder; folder
links are never followed; only regular files are opened (a FIFO would block forever), with
O_NOFOLLOW and O_NONBLOCK, and the opened file must be the very inode that was checked. Every
bad file becomes a SkippedFile with a reason; only a missing corpus folder raises.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import NamedTuple

from rag.errors import CorpusError
from rag.ingest.base import Document, Parsed, ReaderError, SkippedFile

MAX_FILE_BYTES = 50 * 1024 * 1024
FORMATS = {".txt": "txt", ".md": "md", ".pdf": "pdf", ".docx": "docx", ".html": "html", ".htm": "html"}
SUFFIXES = tuple(FORMATS)
OUTSIDE = "links outside the corpus folder"


class Candidate(NamedTuple):
    path: Path  # as found under the corpus folder
    id: str
    target: str  # resolved real path, checked to lie inside the corpus
    inode: tuple[int, int]  # (st_dev, st_ino) of the target when checked


def display_id(rel: str) -> str:
    """A printable, JSON-safe id even for names that are not valid UTF-8 (surrogate-escaped by Python)."""
    return rel.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def _inside(target: str, root: str) -> bool:
    return target == root or target.startswith(root.rstrip(os.sep) + os.sep)


def _check(path: Path, rel: str, root: str) -> Candidate | SkippedFile:
    """Vet one file found by the walk: name, link target, file type."""
    try:
        rel.encode("utf-8")
    except UnicodeEncodeError:
        return SkippedFile(display_id(rel), "file name is not valid UTF-8")
    target = os.path.realpath(path)
    if not _inside(target, root):
        return SkippedFile(rel, OUTSIDE)
    try:
        st = os.stat(target, follow_symlinks=False)
    except OSError as exc:
        return SkippedFile(rel, "broken link" if path.is_symlink() else f"unreadable ({exc.strerror})")
    if not stat.S_ISREG(st.st_mode):
        return SkippedFile(rel, "not a regular file")
    return Candidate(path, rel, target, (st.st_dev, st.st_ino))


def scan(corpus_dir: Path) -> tuple[list[Candidate], list[SkippedFile]]:
    """Files with a known suffix, in a stable order, and the ones refused before opening."""
    if not corpus_dir.is_dir():
        what = "is a file, not a folder" if corpus_dir.exists() else "does not exist"
        raise CorpusError(f"corpus folder {corpus_dir} {what}; create it or pass --corpus DIR")
    root = os.path.realpath(corpus_dir)
    found: list[Candidate] = []
    skipped: list[SkippedFile] = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in dirnames:
            full = os.path.join(dirpath, name)
            if os.path.islink(full) and not _inside(os.path.realpath(full), root):
                skipped.append(SkippedFile(display_id(os.path.relpath(full, root)).replace(os.sep, "/"), OUTSIDE))
        for name in filenames:
            if name.startswith(".") or os.path.splitext(name)[1].lower() not in FORMATS:
                continue
            full = os.path.join(dirpath, name)
            rel = os.path.relpath(full, root).replace(os.sep, "/")
            item = _check(Path(full), rel, root)
            if isinstance(item, Candidate):
                found.append(item._replace(path=corpus_dir / rel))  # as the caller named the folder
            else:
                skipped.append(item)
    found.sort(key=lambda c: c.id)
    skipped.sort(key=lambda s: s.id)
    return found, skipped


def corpus_files(corpus_dir: Path) -> list[Path]:
    """All readable candidate files under corpus_dir, in a stable order (refused ones left out)."""
    return [c.path for c in scan(corpus_dir)[0]]


def read_bytes(candidate: Candidate, max_bytes: int = MAX_FILE_BYTES) -> bytes:
    """The file's bytes, opened without following links or blocking, and only if still the checked inode."""
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(candidate.target, flags)
    except OSError as exc:
        raise ReaderError(f"unreadable ({exc.strerror})") from exc
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(f.fileno())
        if (st.st_dev, st.st_ino) != candidate.inode or not stat.S_ISREG(st.st_mode):
            raise ReaderError("changed while being read")
        if st.st_size > max_bytes:
            raise ReaderError(f"larger than the {max_bytes // (1024 * 1024)} MB limit ({st.st_size} bytes)")
        data = f.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise ReaderError(f"larger than the {max_bytes // (1024 * 1024)} MB limit")
    if not data:
        raise ReaderError("empty file")
    return data


def _reader(fmt: str) -> Callable[[bytes], Parsed]:
    """The parse function for a format, imported lazily so a txt-only corpus loads no PDF library."""
    if fmt in ("txt", "md"):
        from rag.ingest.text import read_text

        return read_text
    if fmt == "html":
        from rag.ingest.html import read_html

        return read_html
    if fmt == "docx":
        from rag.ingest.docx import read_docx

        return read_docx
    from rag.ingest.pdf import read_pdf

    return read_pdf


def parse(data: bytes, fmt: str) -> Parsed:
    """Bytes to canonical text; every failure (corrupt files raise anything) becomes a ReaderError."""
    try:
        return _reader(fmt)(data)
    except ReaderError:
        raise
    except UnicodeDecodeError as exc:
        raise ReaderError(f"not valid UTF-8 (byte {exc.start})") from exc
    except Exception as exc:  # a damaged file may raise anything from inside a parser
        detail = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
        raise ReaderError(f"cannot be read as {fmt.upper()} ({detail})") from exc


def _document(candidate: Candidate, cached: Mapping[str, Document] | None, max_bytes: int) -> Document:
    data = read_bytes(candidate, max_bytes)
    digest = hashlib.sha256(data).hexdigest()
    if cached is not None and digest in cached:
        return cached[digest]._replace(id=candidate.id)
    fmt = FORMATS[os.path.splitext(candidate.id)[1].lower()]
    parsed = parse(data, fmt)
    return Document(candidate.id, parsed.text, digest, fmt, parsed.title, parsed.blocks, parsed.pages)


def read_document(path: Path, corpus_dir: Path, max_bytes: int = MAX_FILE_BYTES) -> Document:
    """One file of the corpus, with the same confinement as load_corpus; raises ReaderError with the reason."""
    root = os.path.realpath(corpus_dir)
    try:
        rel = Path(os.path.abspath(path)).relative_to(os.path.abspath(corpus_dir)).as_posix()
    except ValueError:
        raise ReaderError("is not inside the corpus folder") from None
    full = Path(root) / rel
    if os.path.splitext(rel)[1].lower() not in FORMATS:
        raise ReaderError(f"unsupported file type; readable: {', '.join(SUFFIXES)}")
    item = _check(full, rel, root)
    if isinstance(item, SkippedFile):
        raise ReaderError(item.reason)
    return _document(item, None, max_bytes)


def load_corpus(
    corpus_dir: Path, cached: Mapping[str, Document] | None = None, max_bytes: int = MAX_FILE_BYTES
) -> tuple[list[Document], list[SkippedFile]]:
    """Every readable document, plus the files skipped and why (reported, never fatal alone).

    `cached` maps the sha256 of a file's bytes to its parsed Document: such a file is not parsed again.
    """
    candidates, skipped = scan(corpus_dir)
    docs: list[Document] = []
    for candidate in candidates:
        try:
            docs.append(_document(candidate, cached, max_bytes))
        except ReaderError as exc:
            skipped.append(SkippedFile(candidate.id, str(exc)))
        except OSError as exc:
            skipped.append(SkippedFile(candidate.id, f"unreadable ({exc.strerror})"))
    skipped.sort(key=lambda s: s.id)
    return docs, skipped
