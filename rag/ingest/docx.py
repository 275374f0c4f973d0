"""Word documents (.docx, python-docx): body paragraphs and tables in document order.

Heading styles (Heading 1-6, Title, and the Chinese 标题 1-6 / 标题) or an outline level give
heading blocks; list styles or numbering give list items; each table row is one block with its
cells joined by " | ". Page headers and footers live in other parts of the package and are never read.
"""

from __future__ import annotations

import io
import re
import zipfile
from collections.abc import Iterator

import docx
from docx.document import Document as DocxDocument
from docx.oxml.ns import qn
from docx.table import Table
from docx.text.paragraph import Paragraph

from rag.ingest.base import Parsed, ReaderError, TextBuilder
from rag.ingest.cjk import join_breaks

HEADING_STYLE = re.compile(r"^(?:heading|标题)\s*([1-9])$", re.IGNORECASE)
TITLE_STYLES = frozenset({"title", "标题", "subtitle", "副标题"})


def heading_level(paragraph: Paragraph) -> int:
    """1..6 for a heading paragraph, 0 otherwise (Title counts as level 1)."""
    style = paragraph.style
    while style is not None:
        name = (style.name or "").strip()
        m = HEADING_STYLE.match(name)
        if m:
            return min(6, int(m.group(1)))
        if name.lower() in TITLE_STYLES:
            return 1 if name.lower() in ("title", "标题") else 2
        style = style.base_style
    outline = paragraph._p.find(f"{qn('w:pPr')}/{qn('w:outlineLvl')}")
    if outline is not None:
        value = int(outline.get(qn("w:val"), "9"))
        return value + 1 if value < 6 else 0
    return 0


def is_list_item(paragraph: Paragraph) -> bool:
    """A list style name, or numbering on the paragraph or its style."""
    if paragraph._p.find(f"{qn('w:pPr')}/{qn('w:numPr')}") is not None:
        return True
    style = paragraph.style
    while style is not None:
        if "list" in (style.name or "").lower() or "列表" in (style.name or ""):
            return True
        if style.element.find(f"{qn('w:pPr')}/{qn('w:numPr')}") is not None:
            return True
        style = style.base_style
    return False


def body_items(document: DocxDocument) -> Iterator[Paragraph | Table]:
    """Paragraphs and tables of the body in document order, including those inside content controls."""

    def walk(element: object) -> Iterator[Paragraph | Table]:
        for child in element.iterchildren():  # type: ignore[attr-defined]
            if child.tag == qn("w:p"):
                yield Paragraph(child, document)
            elif child.tag == qn("w:tbl"):
                yield Table(child, document)
            elif child.tag == qn("w:sdt"):
                content = child.find(qn("w:sdtContent"))
                if content is not None:
                    yield from walk(content)

    yield from walk(document.element.body)


def row_cells(row: object) -> list[str]:
    """The distinct cells of a row (a merged cell is listed once), as one-line texts."""
    seen: list[object] = []
    texts = []
    for cell in row.cells:  # type: ignore[attr-defined]
        if any(cell._tc is s for s in seen):
            continue
        seen.append(cell._tc)
        texts.append(join_breaks(cell.text).strip())
    return [t for t in texts if t]


def read_docx(data: bytes) -> Parsed:
    """Parse a .docx; a file that is not a zip archive is refused with that reason."""
    if not zipfile.is_zipfile(io.BytesIO(data)):
        raise ReaderError("not a Word .docx file (not a zip archive)")
    try:
        document = docx.Document(io.BytesIO(data))
    except (KeyError, ValueError, zipfile.BadZipFile) as exc:
        raise ReaderError(f"not a Word .docx file ({exc})") from exc
    out = TextBuilder()
    first_heading: str | None = None
    for item in body_items(document):
        if isinstance(item, Table):
            for row in item.rows:
                out.add("table_row", " | ".join(row_cells(row)))
            continue
        text = join_breaks(item.text)
        level = heading_level(item)
        if level:
            block = out.add("heading", text, level)
            if block is not None and first_heading is None:
                first_heading = out.text()[block.start : block.end]
        else:
            out.add("list_item" if is_list_item(item) else "paragraph", text)
    title = (document.core_properties.title or "").strip() or first_heading
    return out.parsed(title)
