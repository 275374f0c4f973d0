"""Pickled results of slow pure-Python start-up work, kept under the cache folder.

Building the CC-CEDICT reverse dictionary (~4 s) and parsing USE's SentencePiece model (~0.8 s)
were half of a server's cold start; unpickling them takes ~0.3 s and ~0.1 s. Each entry is keyed by
what it was built from (library versions, the building code), so a stale entry is never read: a new
key builds a new file and removes the old ones. A cache that cannot be read or written only costs
time: the value is built again.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import tempfile
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")


def cache_key(*parts: str, sources: tuple[Path, ...] = ()) -> str:
    """A short hash of strings (e.g. library versions) and of the bytes of source files."""
    digest = hashlib.sha256("\0".join(parts).encode())
    for source in sources:
        digest.update(source.read_bytes())
    return digest.hexdigest()[:16]


def version(distribution: str) -> str:
    """An installed distribution's version, or "" when it is not installed."""
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return ""


def cached(cache_dir: Path, name: str, key: str, build: Callable[[], T]) -> T:
    """`build()`'s result, from `<cache_dir>/startup/<name>-<key>.pickle` when present, else built and saved."""
    folder = cache_dir / "startup"
    path = folder / f"{name}-{key}.pickle"
    try:
        with open(path, "rb") as f:
            value: T = pickle.load(f)
        return value
    except Exception:  # absent, truncated or from another Python: build it again
        pass
    value = build()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{name}-", suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            pickle.dump(value, f, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(tmp, path)  # readers see the old file or the whole new one
        for old in folder.glob(f"{name}-*.pickle"):
            if old != path:
                old.unlink(missing_ok=True)
    except OSError:
        pass  # read-only or full cache folder: the next start builds again
    return value
