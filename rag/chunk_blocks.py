"""Passages from a document's own structure (PDF, DOCX, HTML blocks) instead of line shapes.

Heading blocks build the section path (a stack by level, under the document title); the content
blocks of one section are packed into passages of whole sentences, never crossing a section.
Contract, as for text: ``doc.text[p.start:p.end] == p.text``.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator, Sequence
from typing import NamedTuple

from rag.chunk import Line, Passage, pack, units
from rag.ingest.base import Block, Document, PageSpan

CONTENT_KINDS = frozenset({"paragraph", "list_item", "table_row"})


class BlockSection(NamedTuple):
    path: tuple[str, ...]  # headings below the document title
    lines: list[Line]  # content blocks as lines, for units()


def _line(doc: Document, number: int, block: Block) -> Line:
    return Line(number, block.start, block.end, doc.text[block.start : block.end], "content")


def block_title(doc: Document) -> tuple[str, int | None]:
    """The title, and the index of the heading block that is the title (None when it comes from elsewhere)."""
    blocks = doc.blocks or ()
    first = next((i for i, b in enumerate(blocks) if b.kind == "heading"), None)
    first_text = doc.text[blocks[first].start : blocks[first].end] if first is not None else None
    if doc.title:
        # A page's <title> often repeats its h1: then the h1 is the title, not a section below it.
        return doc.title, (first if first is not None and first_text == doc.title and first == 0 else None)
    if first is not None and first == 0:
        return first_text or "", first
    if first_text:
        return first_text, None
    return doc.id.rsplit("/", 1)[-1].rsplit(".", 1)[0], None


def block_sections(doc: Document, title_index: int | None) -> Iterator[BlockSection]:
    """Content blocks grouped under their heading path (levels from the blocks themselves)."""
    stack: list[tuple[int, str]] = []
    current: list[Line] = []
    for i, block in enumerate(doc.blocks or ()):
        if i == title_index:
            continue
        if block.kind in CONTENT_KINDS:
            current.append(_line(doc, doc.text.count("\n", 0, block.start) + 1, block))
            continue
        if current:
            yield BlockSection(tuple(t for _, t in stack), current)
            current = []
        level = max(1, block.level)
        stack = [(lvl, t) for lvl, t in stack if lvl < level] + [(level, doc.text[block.start : block.end])]
    if current:
        yield BlockSection(tuple(t for _, t in stack), current)


def page_of(pages: Sequence[PageSpan], offset: int) -> int | None:
    """The 1-based page holding `offset` (the last page starting at or before it)."""
    if not pages:
        return None
    i = bisect.bisect_right([p.start for p in pages], offset) - 1
    return pages[max(0, i)].number


def chunk_blocks(doc: Document, max_chars: int = 300) -> list[Passage]:
    """All passages of a structured document, in reading order."""
    title, title_index = block_title(doc)
    passages = []
    for section in block_sections(doc, title_index):
        path = (title, *section.path)
        for span in pack(units(doc.text, section.lines, max_chars), max_chars):
            passages.append(
                Passage(
                    doc_id=doc.id,
                    title=title,
                    section=path,
                    start=span.start,
                    end=span.end,
                    line_start=doc.text.count("\n", 0, span.start) + 1,
                    line_end=doc.text.count("\n", 0, span.end) + 1,
                    text=doc.text[span.start : span.end],
                    format=doc.format,
                    page_start=page_of(doc.pages, span.start),
                    page_end=page_of(doc.pages, max(span.start, span.end - 1)),
                )
            )
    return passages
