"""PDF: the text layer, read with pdfplumber (pdfminer.six), as visual lines with position and font size.

pdfplumber was the only candidate measured that lost no character of the Chinese test PDFs:
PDFium (pypdfium2) drops one-character lines set in a non-embedded CID font, pypdf gives no line
geometry. It is the slowest of the three (docs/formats.md); parsed documents are cached by hash.
PyMuPDF was not considered (AGPL). Layout (furniture, headings, paragraphs, joining) is in
pdf_layout.py, independent of the library.
"""

from __future__ import annotations

import io
import re
import statistics
from typing import Any

import pdfplumber

from rag.ingest.base import Parsed, ReaderError
from rag.ingest.pdf_layout import PageLines, TextLine, layout

# Characters that carry no text: NUL, the soft hyphen, zero-width marks, byte-order marks, U+FFFE/FFFF.
INVISIBLE = dict.fromkeys(map(ord, "\x00\xad\u200b\u200c\u200d\u2060\ufeff\ufffe\uffff"))
JUNK_TITLE = ("microsoft word", "untitled", "无标题", "wps")
CELL_GAP = 2.0  # ems of empty space between two characters of one line that separate table cells
X_TOLERANCE = 3.0  # points: pdfplumber's gap for a space between words
NUMBERS = re.compile(r"^\s*[-+]?\d[\d.,%]*(?:\s+[-+]?\d[\d.,%]*){2,}\s*$")  # a row of a statistics table


def _is_password(exc: BaseException) -> bool:
    """pdfplumber wraps pdfminer's PDFPasswordIncorrect (and friends) in PdfminerException."""
    seen: list[BaseException] = []
    todo: list[BaseException] = [exc]
    while todo:
        e = todo.pop()
        if any(e is s for s in seen):
            continue
        seen.append(e)
        name = type(e).__name__.lower()
        if "password" in name or "encrypt" in name:
            return True
        todo += [a for a in e.args if isinstance(a, BaseException)]
        todo += [c for c in (e.__cause__, e.__context__) if c is not None]
    return False


def _open(data: bytes) -> pdfplumber.PDF:
    if b"%PDF-" not in data[:1024]:
        raise ReaderError("not a PDF file (no %PDF header)")
    try:
        return pdfplumber.open(io.BytesIO(data))
    except Exception as exc:  # pdfminer raises its own syntax, EOF and password errors
        if _is_password(exc):
            raise ReaderError("encrypted (needs a password)") from exc
        raise ReaderError(f"damaged PDF ({type(exc).__name__}: {str(exc)[:120]})") from exc


def table_cells(chars: list[dict[str, Any]]) -> list[str]:
    """The line's cells: runs of characters separated by a gap wider than CELL_GAP ems.

    Words inside a cell are spaced as pdfplumber spaces them (a gap over X_TOLERANCE points). Justified
    Chinese and letter-spaced names stay under 1.3 em; the cells of the reports' tables are 2 to 20 em apart.
    """
    cells: list[str] = []
    cell = ""
    prev: dict[str, Any] | None = None
    blank = False
    for c in chars:
        text = str(c.get("text", "")).translate(INVISIBLE)
        if not text.strip():
            blank = True
            continue
        if prev is not None:
            gap = float(c["x0"]) - float(prev["x1"])
            if gap > CELL_GAP * max(float(c.get("size", 0.0)), float(prev.get("size", 0.0)), 1.0):
                cells.append(cell)
                cell = ""
            elif blank or gap > X_TOLERANCE:
                cell += " "
        cell += text
        prev, blank = c, False
    return [*cells, cell] if cell else cells


def page_lines(page: Any, number: int) -> PageLines:
    """The visual lines of one page, top to bottom, each with its box (PDF coordinates, y up) and font size.

    A line of two or more cells (or of numbers only) is a table row: its cells are joined with " | ".
    """
    height = float(page.height)
    lines: list[TextLine] = []
    for line in page.extract_text_lines(return_chars=True, strip=True):
        text = str(line["text"]).translate(INVISIBLE)
        chars = [c for c in line["chars"] if str(c.get("text", "")).strip()]
        if not text.strip() or not chars:
            continue
        size = statistics.median(float(c.get("size", 0.0)) for c in chars)
        bottom, top = height - float(line["bottom"]), height - float(line["top"])
        cells = table_cells(line["chars"])
        row = len(cells) > 1 or bool(NUMBERS.match(text))
        if len(cells) > 1:
            text = " | ".join(cells)
        lines.append(TextLine(text, float(line["x0"]), float(line["x1"]), bottom, top, size, row))
    return PageLines(number, float(page.width), height, lines)


def _title(pdf: pdfplumber.PDF) -> str | None:
    """The metadata title, unless it is a converter's placeholder (Microsoft Word - x.doc, untitled)."""
    title = pdf.metadata.get("Title") if isinstance(pdf.metadata, dict) else None
    if isinstance(title, bytes):
        title = title.decode("utf-16" if title.startswith((b"\xfe\xff", b"\xff\xfe")) else "latin-1", errors="replace")
    if not isinstance(title, str):
        return None
    title = title.strip()
    if not title or title.lower().startswith(JUNK_TITLE) or title.lower().endswith((".doc", ".docx", ".pdf", ".wps")):
        return None
    return title


def read_pdf(data: bytes) -> Parsed:
    """Parse a PDF with a text layer; scans (no text) and password-protected files are refused."""
    pdf = _open(data)
    try:
        try:
            pages = [page_lines(page, i + 1) for i, page in enumerate(pdf.pages)]
        except Exception as exc:
            if _is_password(exc):
                raise ReaderError("encrypted (needs a password)") from exc
            raise
        if not pages:
            raise ReaderError("no pages")
        if not any(line.text.strip() for p in pages for line in p.lines):
            raise ReaderError("no text layer (scanned?)")
        return layout(pages, _title(pdf))
    finally:
        pdf.close()
