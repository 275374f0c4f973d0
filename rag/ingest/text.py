"""Plain text and Markdown: decoded as UTF-8 and kept byte-for-byte (no newline translation), since
citations are offsets into exactly this string; the chunker's line heuristics find the structure."""

from __future__ import annotations

from rag.ingest.base import Parsed


def read_text(data: bytes) -> Parsed:
    """Raises UnicodeDecodeError for files that are not UTF-8 (reported with the byte offset)."""
    return Parsed(data.decode("utf-8"))
