"""Add, replace and remove corpus files on behalf of the admin API, confined to the corpus folder.

A document path comes from a URL, so it is checked like any other untrusted input: relative, no
`..`, no hidden parts, a supported suffix, and once resolved (links included) inside the corpus.
Writes go to a hidden temporary file beside the target and are renamed into place, so a build that
reads the folder meanwhile sees the old file or the new one, never half of one.
"""

from __future__ import annotations

import os
from pathlib import Path

from rag.errors import RagError
from rag.ingest.corpus import FORMATS, SUFFIXES, _inside

MAX_PATH_CHARS = 1024
# A file system takes names of at most 255 bytes; the upload's temporary name adds ".", ".upload-" and a pid.
MAX_NAME_BYTES = 230


class DocumentPathError(RagError):
    """A document path the API refuses; `status` is the HTTP status to answer with."""

    def __init__(self, message: str, status: int = 422):
        super().__init__(message)
        self.status = status


def confined_path(corpus_dir: Path, rel: str) -> Path:
    """The file `rel` names inside `corpus_dir`, or DocumentPathError saying why not."""
    if not rel or len(rel) > MAX_PATH_CHARS:
        raise DocumentPathError(f"path: must be 1-{MAX_PATH_CHARS} characters")
    if "\\" in rel or "\x00" in rel or rel.startswith("/") or any(ord(c) < 32 for c in rel):
        raise DocumentPathError("path: must be relative, with forward slashes and no control characters")
    parts = rel.split("/")
    if any(p in ("", ".", "..") for p in parts):
        raise DocumentPathError("path: must not contain empty, `.` or `..` parts")
    if any(p.startswith(".") for p in parts):
        raise DocumentPathError("path: hidden files and folders (starting with `.`) are not part of the corpus")
    if any(len(p.encode("utf-8", "surrogatepass")) > MAX_NAME_BYTES for p in parts):
        raise DocumentPathError(f"path: each folder or file name must be at most {MAX_NAME_BYTES} bytes in UTF-8 (a file system limit)")
    suffix = Path(parts[-1]).suffix.lower()
    if suffix not in FORMATS:
        raise DocumentPathError(f"path: {suffix or 'no extension'} is not a format the corpus reads ({', '.join(SUFFIXES)})", 415)
    root = os.path.realpath(corpus_dir)
    path = Path(root, *parts)
    if not _inside(os.path.realpath(path), root) or not _inside(os.path.realpath(path.parent), root):
        raise DocumentPathError("path: leads outside the corpus folder (through a link)", 403)
    if path.is_symlink():
        raise DocumentPathError("path: is a link; change it on disk, not through the API", 409)
    return path


def put_document(corpus_dir: Path, rel: str, data: bytes) -> bool:
    """Write `data` as corpus file `rel` (atomically); True when it replaced an existing file."""
    if not data:
        raise DocumentPathError("body: is empty; send the file's bytes (raw, or multipart field `file`)")
    path = confined_path(corpus_dir, rel)
    if path.exists() and not path.is_file():
        raise DocumentPathError("path: names a folder", 409)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not _inside(os.path.realpath(path.parent), os.path.realpath(corpus_dir)):  # a link created meanwhile
        raise DocumentPathError("path: leads outside the corpus folder (through a link)", 403)
    existed = path.exists()
    tmp = path.with_name(f".{path.name}.upload-{os.getpid()}")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o644)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return existed


def delete_document(corpus_dir: Path, rel: str) -> None:
    """Remove corpus file `rel`; DocumentPathError(404) when there is none."""
    path = confined_path(corpus_dir, rel)
    if not path.is_file():
        raise DocumentPathError(f"path: no document {rel!r} in the corpus", 404)
    path.unlink()
