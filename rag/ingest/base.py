"""The shapes every reader returns, and the builder that lays structured text out as canonical text.

Canonical text is what citations index: structured formats (PDF, DOCX, HTML) are laid out one block
per line so that line numbers stay meaningful and ``text[block.start:block.end]`` is the block.
"""

from __future__ import annotations

import re
from typing import Any, NamedTuple

from rag.errors import RagError

BLOCK_KINDS = ("heading", "paragraph", "list_item", "table_row")


class ReaderError(RagError):
    """A file could not be turned into text; the message is the human reason it was skipped."""


class Block(NamedTuple):
    kind: str  # "heading" | "paragraph" | "list_item" | "table_row"
    start: int  # offsets into Document.text
    end: int
    level: int = 0  # heading level 1..6; 0 for other kinds


class PageSpan(NamedTuple):
    number: int  # 1-based page number
    start: int  # offsets into Document.text
    end: int


class Document(NamedTuple):
    id: str  # path relative to the corpus folder, forward slashes
    text: str  # canonical text
    sha256: str  # sha256 of the file's bytes
    format: str = "txt"  # "txt" | "md" | "pdf" | "docx" | "html"
    title: str | None = None  # None: the chunker derives it from the text
    blocks: tuple[Block, ...] | None = None  # None: the chunker's line heuristics (txt/md)
    pages: tuple[PageSpan, ...] = ()  # PDF only


class SkippedFile(NamedTuple):
    id: str
    reason: str


class Parsed(NamedTuple):
    """What a reader returns; the corpus walker adds the id and the hash."""

    text: str
    title: str | None = None
    blocks: tuple[Block, ...] | None = None
    pages: tuple[PageSpan, ...] = ()


def document_to_json(doc: Document) -> dict[str, Any]:
    """A JSON-ready dict (blocks and pages as short lists), so the index can store parsed documents."""
    return {
        "id": doc.id,
        "text": doc.text,
        "sha256": doc.sha256,
        "format": doc.format,
        "title": doc.title,
        "blocks": None if doc.blocks is None else [list(b) for b in doc.blocks],
        "pages": [list(p) for p in doc.pages],
    }


def document_from_json(row: dict[str, Any]) -> Document:
    """The inverse of document_to_json."""
    blocks = row.get("blocks")
    return Document(
        id=row["id"],
        text=row["text"],
        sha256=row["sha256"],
        format=row.get("format", "txt"),
        title=row.get("title"),
        blocks=None if blocks is None else tuple(Block(str(b[0]), int(b[1]), int(b[2]), int(b[3])) for b in blocks),
        pages=tuple(PageSpan(int(p[0]), int(p[1]), int(p[2])) for p in row.get("pages", ())),
    )


_SPACE = re.compile(r"\s+")


def collapse(text: str) -> str:
    """One line: runs of whitespace (newlines, tabs, nbsp, ideographic space) become one space."""
    return _SPACE.sub(" ", text).strip()


class TextBuilder:
    """Accumulates blocks into canonical text: one block per line, a blank line before each heading."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.length = 0
        self.blocks: list[Block] = []

    def add(self, kind: str, text: str, level: int = 0) -> Block | None:
        """Append one block (its whitespace collapsed); empty text adds nothing."""
        text = collapse(text)
        if not text:
            return None
        if self.blocks:
            self._write("\n\n" if kind == "heading" else "\n")
        start = self.length
        self._write(text)
        block = Block(kind, start, self.length, level if kind == "heading" else 0)
        self.blocks.append(block)
        return block

    def _write(self, s: str) -> None:
        self.parts.append(s)
        self.length += len(s)

    def text(self) -> str:
        """The canonical text, ending with a newline when there is any."""
        return "".join(self.parts) + ("\n" if self.parts else "")

    def parsed(self, title: str | None, pages: tuple[PageSpan, ...] = ()) -> Parsed:
        text = self.text()
        if not self.blocks:
            raise ReaderError("no text found")
        title = collapse(title) if title else None
        return Parsed(text, title or None, tuple(self.blocks), pages)
