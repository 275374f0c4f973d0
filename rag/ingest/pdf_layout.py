"""From a PDF's visual lines to canonical text: drop page furniture, find headings, rebuild paragraphs.

Rules (docs/formats.md): a line found at the top or bottom of most pages (digits ignored) is a
running header or footer, and a lone page number ("3", "- 3 -", "第 3 页", "3 / 10") at the top or
bottom is furniture; lines clearly larger than the body text are headings, one level per size;
body lines join into a paragraph until a larger gap, a first-line indent, a short line or a
bullet; a table row (pdf.py splits a line into cells at wide gaps) is a block of its own;
joining puts no space between Chinese characters and one space between other words;
compatibility characters are normalised (cjk.normalise).
"""

from __future__ import annotations

import itertools
import re
from collections import Counter
from typing import NamedTuple

from rag.ingest.base import PageSpan, Parsed, ReaderError, TextBuilder, collapse
from rag.ingest.cjk import is_cjk, normalise

MARGIN_ZONE = 0.12  # top and bottom fraction of a page where headers, footers and page numbers live
HEADING_RATIO = 1.15  # a line this much larger than the body text is a heading
MAX_HEADING_CHARS = 80
PAGE_NUMBER = re.compile(
    r"^(?:[-–—·\s]*\d{1,4}[-–—·\s]*|第\s*\d{1,4}\s*页(?:\s*[,，/]?\s*共\s*\d{1,4}\s*页)?|\d{1,4}\s*/\s*\d{1,4}"
    r"|(?:page|p\.)\s*\d{1,4}(?:\s*(?:of|/)\s*\d{1,4})?|[ivxlc]{1,6})$",
    re.IGNORECASE,
)
BULLET = re.compile(r"^[•●○■□▪▫◆◇▶►‣⁃∙·]\s*")
SENTENCE_END = "。！？；!?;:：”」』)）"


class TextLine(NamedTuple):
    text: str
    x0: float
    x1: float
    bottom: float  # PDF coordinates: y grows upwards
    top: float
    size: float  # font size in points
    row: bool = False  # a row of a table (text is its cells joined by " | "): a block of its own


class PageLines(NamedTuple):
    number: int  # 1-based
    width: float
    height: float
    lines: list[TextLine]


def _key(text: str) -> str:
    return re.sub(r"\d+", "#", re.sub(r"\s+", "", text))


def _in_margin(line: TextLine, page: PageLines) -> bool:
    return line.bottom > page.height * (1 - MARGIN_ZONE) or line.top < page.height * MARGIN_ZONE


def _plain(line: TextLine) -> str:
    """The line's text without the cell separators of a row ("第 3 页 | 共 10 页" is a page number)."""
    return (line.text.replace(" | ", " ") if line.row else line.text).strip()


def drop_furniture(pages: list[PageLines]) -> list[PageLines]:
    """Pages without running headers/footers (repeated in the margin zone) and page numbers."""
    counts: Counter[str] = Counter()
    for page in pages:
        counts.update({_key(line.text) for line in page.lines if _in_margin(line, page)})
    repeated = {k for k, n in counts.items() if len(pages) >= 2 and n >= max(2, len(pages) // 2)}
    out = []
    for page in pages:
        kept = [
            line for line in page.lines if not (_in_margin(line, page) and (_key(line.text) in repeated or PAGE_NUMBER.match(_plain(line))))
        ]
        out.append(page._replace(lines=kept))
    return out


def body_size(pages: list[PageLines]) -> float:
    """The font size most of the text is set in (weighted by characters)."""
    sizes: Counter[float] = Counter()
    for page in pages:
        for line in page.lines:
            sizes[round(line.size * 2) / 2] += len(line.text.strip())
    return sizes.most_common(1)[0][0] if sizes else 0.0


class Paragraph(NamedTuple):
    kind: str  # heading | paragraph | list_item | table_row
    size: float
    parts: list[tuple[int, str]]  # (page number, line text), in order


def _is_heading(line: TextLine, body: float) -> bool:
    return line.size >= body * HEADING_RATIO and len(line.text.strip()) <= MAX_HEADING_CHARS


def _size_key(size: float) -> float:
    return round(size * 2) / 2


def line_pitches(pages: list[PageLines]) -> dict[float, float]:
    """Per font size, the line pitch inside a paragraph: the small end of the gaps between consecutive lines
    of that size in the whole document (most gaps may be between blocks; a page of tight table rows must
    not set the pitch for its body text)."""
    gaps: dict[float, list[float]] = {}
    for page in pages:
        for a, b in itertools.pairwise(page.lines):
            gap = a.bottom - b.bottom
            if not (a.row or b.row) and abs(a.size - b.size) < 0.5 and 0 < gap < 3 * b.size:
                gaps.setdefault(_size_key(b.size), []).append(gap)
    return {size: sorted(g)[len(g) // 5] for size, g in gaps.items()}


def paragraphs(pages: list[PageLines], body: float) -> list[Paragraph]:
    """Group visual lines into headings, list items, table rows and paragraphs, across page breaks where a
    paragraph runs on."""
    out: list[Paragraph] = []
    pitches = line_pitches(pages)
    for page in pages:
        lines = page.lines
        if not lines:
            continue
        body_lines = [ln for ln in lines if not ln.row and not _is_heading(ln, body)] or lines
        left = min(ln.x0 for ln in body_lines)
        right = max(ln.x1 for ln in body_lines)
        prev: TextLine | None = None
        for line in lines:
            text = collapse(line.text)  # raw: joining decides on the characters as written, join() normalises
            if not text:
                continue
            heading = not line.row and _is_heading(line, body)
            bullet = None if line.row else BULLET.match(text)
            if bullet:
                text = text[bullet.end() :]
                if not text:
                    continue
            pitch = pitches.get(_size_key(line.size), line.size * 1.5)
            first = bool(out) and len(out[-1].parts) == 1  # prev is the first line of its paragraph
            starts = (
                heading
                or line.row
                or bullet is not None
                or not out
                or out[-1].kind in ("heading", "table_row")
                or (prev is None and _ends_paragraph(out[-1]))
                or (prev is not None and _breaks(prev, line, left, right, pitch, first))
            )
            wrapped = prev is not None and prev.bottom - line.bottom < 2 * line.size  # a heading over two lines
            if heading and wrapped and out and out[-1].kind == "heading" and abs(out[-1].size - line.size) < 0.5:
                starts = False
            if starts:
                kind = "heading" if heading else "table_row" if line.row else "list_item" if bullet else "paragraph"
                out.append(Paragraph(kind, line.size, [(page.number, text)]))
            else:
                out[-1].parts.append((page.number, text))
            prev = line
    return out


def _breaks(prev: TextLine, line: TextLine, left: float, right: float, pitch: float, first: bool) -> bool:
    """Does `line` start a new paragraph after `prev` on the same page? (`first`: prev opened its paragraph)"""
    gap = prev.bottom - line.bottom
    if gap > pitch * 1.3 or gap < -pitch:  # a wider gap, or a jump back up (a new column or block)
        return True
    if abs(line.size - prev.size) >= 0.5:
        return True
    if line.x0 > left + line.size * 1.5 and line.x0 > prev.x0 + line.size:  # a first-line indent
        return True
    # back out of a hanging indent (the end of a list item); after a paragraph's indented first line,
    # the step back to the margin is the paragraph going on
    if line.x0 < prev.x0 - line.size and not first:
        return True
    # A short line ends its paragraph: Chinese text fills every line but the last; a ragged-right
    # line of other scripts counts only when it closes a sentence.
    last = prev.text.rstrip()[-1:]
    return prev.x1 < right - prev.size * 2.5 and (last in SENTENCE_END or is_cjk(last))


def _ends_paragraph(last: Paragraph) -> bool:
    """At a page break: the paragraph before ends unless its last line ran on without closing punctuation."""
    return last.parts[-1][1].rstrip()[-1:] in SENTENCE_END


def heading_levels(paras: list[Paragraph]) -> dict[float, int]:
    """Heading font sizes, largest first, as levels 1..6."""
    sizes = sorted({round(p.size * 2) / 2 for p in paras if p.kind == "heading"}, reverse=True)
    return {s: min(6, i + 1) for i, s in enumerate(sizes)}


def join(parts: list[tuple[int, str]]) -> tuple[str, list[tuple[int, int]]]:
    """The paragraph's normalised text and, per page it runs onto, the offset in that text where the page starts.

    The space decision looks at the characters as written: full-width ＡＢＣ broken over two lines
    is joined without a space although it normalises to ASCII.
    """
    text = ""
    last = ""
    starts: list[tuple[int, int]] = []
    for page, part in parts:
        piece = collapse(normalise(part))
        if not piece:
            continue
        if text and not (is_cjk(last[-1]) or is_cjk(part[0]) or last.endswith("-")):
            text += " "
        if not starts or starts[-1][0] != page:
            starts.append((page, len(text)))
        text += piece
        last = part
    return text, starts


def layout(pages: list[PageLines], title: str | None) -> Parsed:
    """Canonical text, blocks and page spans of a PDF from its lines."""
    pages = drop_furniture(pages)
    body = body_size(pages)
    paras = paragraphs(pages, body)
    levels = heading_levels(paras)
    out = TextBuilder()
    page_starts: dict[int, int] = {}
    first_heading: str | None = None
    for para in paras:
        text, starts = join(para.parts)
        block = out.add(para.kind, text, levels.get(round(para.size * 2) / 2, 0))
        if block is None:
            continue
        for page, offset in starts:
            page_starts.setdefault(page, block.start + offset)
        if para.kind == "heading" and first_heading is None and block.start == 0:
            first_heading = text
    if not out.blocks:
        raise ReaderError("no text layer (scanned?)")
    end = out.length
    spans: list[PageSpan] = []
    numbers = sorted(page_starts)
    for i, number in enumerate(numbers):
        stop = page_starts[numbers[i + 1]] if i + 1 < len(numbers) else end
        spans.append(PageSpan(number, page_starts[number], stop))
    return out.parsed(first_heading or title, tuple(spans))
