"""PDF: the text layer, read with pypdfium2 (PDFium), into visual lines with position and font size.

pypdfium2 was the most correct and the fastest of the candidates measured on Chinese PDFs
(docs/formats.md); PyMuPDF was not considered (AGPL). Layout (furniture, headings, paragraphs,
joining) is in pdf_layout.py, independent of the library.
"""

from __future__ import annotations

import statistics

import pypdfium2 as pdfium
import pypdfium2.raw as pdfium_c

from rag.ingest.base import Parsed, ReaderError
from rag.ingest.pdf_layout import PageLines, TextLine, layout

# Characters that carry no text: NUL, the soft hyphen, zero-width marks, byte-order marks, U+FFFE/FFFF.
INVISIBLE = dict.fromkeys(map(ord, "\x00\xad\u200b\u200c\u200d\u2060\ufeff\ufffe\uffff"))
JUNK_TITLE = ("microsoft word", "untitled", "无标题", "wps")


def _open(data: bytes) -> pdfium.PdfDocument:
    if not data.lstrip()[:5].startswith(b"%PDF") and b"%PDF-" not in data[:1024]:
        raise ReaderError("not a PDF file (no %PDF header)")
    try:
        return pdfium.PdfDocument(data)
    except pdfium.PdfiumError as exc:
        if "password" in str(exc).lower():
            raise ReaderError("encrypted (needs a password)") from exc
        raise ReaderError(f"damaged PDF ({exc})") from exc


def page_lines(page: pdfium.PdfPage, number: int) -> PageLines:
    """The visual lines of one page, in the order of the text layer, each with its box and font size."""
    textpage = page.get_textpage()
    count = textpage.count_chars()
    text = textpage.get_text_range(0, count) if count else ""
    per_char = len(text) == count
    lines: list[TextLine] = []
    chars: list[str] = []
    boxes: list[tuple[float, float, float, float]] = []
    sizes: list[float] = []

    def end_line() -> None:
        if chars and "".join(chars).strip():
            visible = [(b, s) for c, b, s in zip(chars, boxes, sizes, strict=True) if not c.isspace()]
            lines.append(
                TextLine(
                    text="".join(chars),
                    x0=min(b[0] for b, _ in visible),
                    x1=max(b[2] for b, _ in visible),
                    bottom=min(b[1] for b, _ in visible),
                    top=max(b[3] for b, _ in visible),
                    size=statistics.median(s for _, s in visible),
                )
            )
        chars.clear()
        boxes.clear()
        sizes.clear()

    for i in range(count):
        ch = text[i] if per_char else chr(pdfium_c.FPDFText_GetUnicode(textpage.raw, i) or 32)
        if ch in "\r\n":  # PDFium ends each visual line with a (generated) CR LF
            end_line()
            continue
        ch = ch.translate(INVISIBLE)
        if not ch:
            continue
        chars.append(ch)
        boxes.append(textpage.get_charbox(i, loose=True))
        sizes.append(round(float(pdfium_c.FPDFText_GetFontSize(textpage.raw, i)), 1))
    end_line()
    width, height = page.get_size()
    return PageLines(number, float(width), float(height), lines)


def _title(document: pdfium.PdfDocument) -> str | None:
    """The metadata title, unless it is a converter's placeholder (Microsoft Word - x.doc, untitled)."""
    title = (document.get_metadata_value("Title") or "").strip()
    if not title or title.lower().startswith(JUNK_TITLE) or title.lower().endswith((".doc", ".docx", ".pdf", ".wps")):
        return None
    return title


def read_pdf(data: bytes) -> Parsed:
    """Parse a PDF with a text layer; scans (no text) and password-protected files are refused."""
    document = _open(data)
    try:
        if len(document) == 0:
            raise ReaderError("no pages")
        pages = []
        for i in range(len(document)):
            page = document[i]
            try:
                pages.append(page_lines(page, i + 1))
            finally:
                page.close()
        if not any(line.text.strip() for p in pages for line in p.lines):
            raise ReaderError("no text layer (scanned?)")
        return layout(pages, _title(document))
    finally:
        document.close()
