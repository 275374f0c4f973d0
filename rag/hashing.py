"""Content hashes of files, streamed, so large model and index files never sit in memory twice."""

from __future__ import annotations

import hashlib
from pathlib import Path


def file_sha256(path: Path, block: int = 1 << 22) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(block), b""):
            digest.update(chunk)
    return digest.hexdigest()
