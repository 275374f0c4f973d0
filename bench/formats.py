"""Write the shipped corpus (corpus/*.txt) out as PDF, DOCX and HTML, so the readers can be tested on
real files and per-format retrieval compared with the text originals.

    python bench/formats.py OUT_DIR            # OUT_DIR/{pdf,docx,html,html-gbk}/

Structure comes from rag.chunk's own reading of each .txt (classify/sections), so the written
headings match: the title as the largest text / Title style / h1, section headings a size or level
below per depth. PDFs use reportlab's built-in CID font STSong-Light (no font file needed), body
lines wrapped inside sentences, a running header and a page number on every page.
"""

from __future__ import annotations

import argparse
import html
import re
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import NamedTuple

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from rag.chunk import LIST_ITEM, classify, document_title, sections, split_lines  # noqa: E402

HEADER = "医保服务指南 Medical Insurance Guide"
BULLET = re.compile(r"^[-•*·]\s+")


class Item(NamedTuple):
    kind: str  # "title" | "heading" | "paragraph" | "list_item"
    text: str
    level: int = 0  # heading depth below the title, 1..


def structure(text: str, fallback: str) -> tuple[str, list[Item]]:
    """The title and the items of one .txt document, headings with the depth rag.chunk gives them."""
    lines = classify(split_lines(text))
    title, title_index = document_title(lines, fallback)
    items = [Item("title", title)] if title_index is not None else []
    previous: tuple[str, ...] = ()
    for section in sections(lines, title_index):
        common = 0
        while common < min(len(previous), len(section.path)) and previous[common] == section.path[common]:
            common += 1
        items += [Item("heading", h, depth + 1) for depth, h in enumerate(section.path) if depth >= common]
        previous = section.path
        for line in section.lines:
            if LIST_ITEM.match(line.text):
                items.append(Item("list_item", BULLET.sub("", line.text)))
            else:
                items.append(Item("paragraph", line.text))
    return title, items


# --- PDF -----------------------------------------------------------------------------------------

PDF_FONT = "STSong-Light"
SIZES = {0: 20.0, 1: 16.0, 2: 14.0, 3: 13.0}
BODY = 10.5


def wrap(text: str, font: str, size: float, width: float) -> list[str]:
    """Greedy line breaking: anywhere between CJK characters, at spaces between other words."""
    from reportlab.pdfbase.pdfmetrics import stringWidth

    tokens = re.findall(r"[A-Za-z0-9@#$%&_.,:;'\"!?()/+\-]+ ?|.", text)
    lines, current = [], ""
    for token in tokens:
        if current and stringWidth(current + token.rstrip(), font, size) > width:
            lines.append(current.rstrip())
            current = token.lstrip()
        else:
            current += token
    if current.strip():
        lines.append(current.rstrip())
    return lines


def write_pdf(path: Path, title: str, items: Iterable[Item], body_size: float = BODY, width_chars: float = 38) -> list[int]:
    """A multi-page PDF: headings larger, body wrapped, running header and page number on every page.

    Returns the page each item starts on, so tests can check the reader's page numbers.
    """
    from reportlab.lib.pagesizes import A5
    from reportlab.pdfbase import pdfmetrics
    from reportlab.pdfbase.cidfonts import UnicodeCIDFont
    from reportlab.pdfgen.canvas import Canvas

    pdfmetrics.registerFont(UnicodeCIDFont(PDF_FONT))
    page_w, page_h = A5
    margin = 42.0
    width = min(page_w - 2 * margin, body_size * width_chars)
    canvas = Canvas(str(path), pagesize=A5, invariant=True)
    canvas.setTitle(title)
    page = 1
    y = page_h - margin - 20

    def furniture() -> None:
        canvas.setFont(PDF_FONT, 8)
        canvas.drawString(margin, page_h - 28, HEADER)
        canvas.drawCentredString(page_w / 2, 22, f"- {page} -")

    furniture()
    starts: list[int] = []
    for item in items:
        size = body_size if item.kind in ("paragraph", "list_item") else SIZES.get(0 if item.kind == "title" else item.level, 12.5)
        leading = size * 1.5
        indent = 12.0 if item.kind == "list_item" else 0.0
        lines = wrap(item.text, PDF_FONT, size, width - indent)
        gap = leading * (0.9 if item.kind in ("title", "heading") else 0.45)
        if y - gap - leading * min(2, len(lines)) < margin + 20:
            canvas.showPage()
            page += 1
            furniture()
            y = page_h - margin - 20
        else:
            y -= gap
        starts.append(page)
        for i, line in enumerate(lines):
            if y < margin + 20:
                canvas.showPage()
                page += 1
                furniture()
                y = page_h - margin - 20
            canvas.setFont(PDF_FONT, size)
            if item.kind == "list_item" and i == 0:
                canvas.drawString(margin, y, "●")
            canvas.drawString(margin + indent, y, line)
            y -= leading
    canvas.showPage()
    canvas.save()
    return starts


# --- DOCX and HTML -------------------------------------------------------------------------------


def write_docx(path: Path, title: str, items: Iterable[Item]) -> None:
    """Title / Heading N styles, List Bullet for list items, core title set."""
    import docx

    document = docx.Document()
    document.core_properties.title = title
    for item in items:
        if item.kind == "title":
            document.add_heading(item.text, 0)
        elif item.kind == "heading":
            document.add_heading(item.text, min(item.level, 9))
        elif item.kind == "list_item":
            document.add_paragraph(item.text, style="List Bullet")
        else:
            document.add_paragraph(item.text)
    document.save(str(path))


def html_page(title: str, items: Iterable[Item], charset: str = "utf-8") -> str:
    """A page with <title>, h1-h4, ul/li, and nav/header/footer/script furniture around the article."""
    body: list[str] = []
    in_list = False
    for item in items:
        if item.kind == "list_item" and not in_list:
            body.append("<ul>")
            in_list = True
        elif item.kind != "list_item" and in_list:
            body.append("</ul>")
            in_list = False
        text = html.escape(item.text, quote=False)
        if item.kind == "title":
            body.append(f"<h1>{text}</h1>")
        elif item.kind == "heading":
            body.append(f"<h{min(item.level + 1, 6)}>{text}</h{min(item.level + 1, 6)}>")
        elif item.kind == "list_item":
            body.append(f"  <li>{text}</li>")
        else:
            body.append(f"<p>{text}</p>")
    if in_list:
        body.append("</ul>")
    return "\n".join(
        [
            "<!DOCTYPE html>",
            f'<html lang="zh-CN"><head><meta charset="{charset}"><title>{html.escape(title)}</title>',
            "<style>body { font-family: sans-serif; }</style><script>var tracker = '首页 顶部';</script></head><body>",
            '<header><a href="/">首页</a> &gt; <a href="/guide">服务指南</a></header>',
            "<nav><ul><li>大家都在搜</li><li>相关推荐</li></ul></nav>",
            "<article>",
            *body,
            "</article>",
            "<footer><p>版权所有 &copy; 医保服务平台</p></footer>",
            "</body></html>",
            "",
        ]
    )


def write_formats(out_dir: Path, corpus_dir: Path = ROOT / "corpus") -> dict[str, Path]:
    """Each .txt of corpus_dir written as PDF, DOCX and HTML; one folder per format (GBK copies of the pages in html-gbk/)."""
    folders = {fmt: out_dir / fmt for fmt in ("pdf", "docx", "html")}
    gbk = out_dir / "html-gbk"
    for folder in (*folders.values(), gbk):
        folder.mkdir(parents=True, exist_ok=True)
    for source in sorted(corpus_dir.glob("*.txt")):
        title, items = structure(source.read_text(encoding="utf-8"), source.stem)
        write_pdf(folders["pdf"] / f"{source.stem}.pdf", title, items)
        write_docx(folders["docx"] / f"{source.stem}.docx", title, items)
        (folders["html"] / f"{source.stem}.html").write_text(html_page(title, items), encoding="utf-8")
        (gbk / f"{source.stem}.html").write_bytes(html_page(title, items, "gbk").encode("gbk", errors="xmlcharrefreplace"))
    return folders


# --- measuring the candidate libraries (docs/formats.md) ------------------------------------------

CJK_ONLY = re.compile(r"[^\u3000-\u303f\u4e00-\u9fff\uff00-\uffef]")


def recall(expected: str, got: str) -> float:
    """Share of the expected CJK characters found, in order, in what a library extracted."""
    import difflib

    a, b = CJK_ONLY.sub("", expected), CJK_ONLY.sub("", got)
    matcher = difflib.SequenceMatcher(None, a, b, autojunk=False)
    return sum(m.size for m in matcher.get_matching_blocks()) / max(1, len(a))


def measure_pdf(folder: Path, corpus_dir: Path) -> list[str]:
    """Per library: CJK recall, sentences intact after joining its lines, ms per page."""
    import time

    import pdfplumber
    import pypdf
    import pypdfium2

    from rag.ingest.cjk import join_lines, normalise

    def pdfium(path: Path) -> list[str]:
        doc = pypdfium2.PdfDocument(str(path))
        return [doc[i].get_textpage().get_text_range().replace("\r\n", "\n") for i in range(len(doc))]

    def plumber(path: Path) -> list[str]:
        with pdfplumber.open(str(path)) as pdf:
            return [page.extract_text() or "" for page in pdf.pages]

    def pypdf_text(path: Path) -> list[str]:
        return [page.extract_text() or "" for page in pypdf.PdfReader(str(path)).pages]

    rows = ["| library | licence | CJK characters found | content lines intact after joining | ms per page |", "|---|---|---|---|---|"]
    for name, licence, extract in (
        ("pdfplumber 0.11 (pdfminer.six)", "MIT", plumber),
        ("pypdfium2 (PDFium)", "Apache-2.0 / BSD-3", pdfium),
        ("pypdf", "BSD-3", pypdf_text),
    ):
        found = intact = total = pages = 0
        seconds = 0.0
        scores = []
        for path in sorted(folder.glob("*.pdf")):
            original = (corpus_dir / f"{path.stem}.txt").read_text(encoding="utf-8")
            items = [i.text for i in structure(original, path.stem)[1] if i.kind in ("paragraph", "list_item")]
            started = time.perf_counter()
            text = extract(path)
            seconds += time.perf_counter() - started
            pages += len(text)
            joined = normalise(join_lines("\n".join(text).split("\n")))
            scores.append(recall("".join(items), "".join(text)))
            found += sum(1 for item in items if CJK_ONLY.sub("", item) in CJK_ONLY.sub("", joined))
            intact += sum(1 for item in items if item.replace(" ", "") in joined.replace(" ", ""))
            total += len(items)
        share = 100 * sum(scores) / len(scores)
        rows.append(f"| {name} | {licence} | {share:.2f}% | {100 * intact / total:.1f}% | {1000 * seconds / pages:.1f} |")
    return rows


def measure_readers(folders: dict[str, Path]) -> list[str]:
    """Parse time of the shipped readers per page (PDF) and per MB (DOCX, HTML)."""
    import time

    from rag.ingest.corpus import parse

    rows = ["| reader | files | size | parse time |", "|---|---|---|---|"]
    for fmt, folder in folders.items():
        files = sorted(p for p in folder.iterdir() if p.is_file())
        data = [p.read_bytes() for p in files]
        started = time.perf_counter()
        for _ in range(5):
            parsed = [parse(d, "html" if fmt.startswith("html") else fmt) for d in data]
        seconds = (time.perf_counter() - started) / 5
        size = sum(len(d) for d in data)
        if fmt == "pdf":
            pages = sum(len(p.pages) for p in parsed)
            rows.append(f"| {fmt} | {len(files)} | {pages} pages | {1000 * seconds / pages:.1f} ms per page |")
        else:
            rows.append(f"| {fmt} | {len(files)} | {size / 1e6:.3f} MB | {seconds / (size / 1e6) * 1000:.0f} ms per MB |")
    return rows


def measure_html(folder: Path) -> list[str]:
    """Candidate HTML parsers on the written pages: furniture dropped, headings found, ms per MB."""
    import time

    from bs4 import BeautifulSoup
    from selectolax.lexbor import LexborHTMLParser

    def soup(parser: str) -> object:
        def run(page: str) -> str:
            tree = BeautifulSoup(page, parser)
            for node in tree(["script", "style", "nav", "header", "footer"]):
                node.decompose()
            return tree.get_text("\n")

        return run

    def lexbor(page: str) -> str:
        tree = LexborHTMLParser(page)
        for node in tree.css("script, style, nav, header, footer"):
            node.decompose()
        return tree.body.text(separator="\n") if tree.body else ""

    def trafilatura_text(page: str) -> str:
        import trafilatura

        return trafilatura.extract(page, include_tables=True, favor_recall=True) or ""

    pages = [p.read_text(encoding="utf-8") for p in sorted(folder.glob("*.html"))]
    size = sum(len(p.encode("utf-8")) for p in pages)
    rows = ["| parser | content lines kept | furniture left | ms per MB |", "|---|---|---|---|"]
    for name, run in (
        ("selectolax 1.0 (lexbor)", lexbor),
        ("beautifulsoup4 + lxml", soup("lxml")),
        ("beautifulsoup4 + html.parser", soup("html.parser")),
        ("trafilatura 2.3", trafilatura_text),
    ):
        started = time.perf_counter()
        texts = [run(p) for p in pages]  # type: ignore[operator]
        seconds = time.perf_counter() - started
        kept = total = furniture = 0
        for page, text in zip(pages, texts, strict=True):
            lines = re.findall(r"<(?:p|li)>(.*?)</(?:p|li)>", page.split("<article>")[1].split("</article>")[0])
            kept += sum(1 for line in lines if html.unescape(line) in text)
            total += len(lines)
            furniture += sum(1 for junk in ("tracker", "大家都在搜", "版权所有") if junk in text)
        rows.append(f"| {name} | {100 * kept / total:.1f}% | {furniture} | {1000 * seconds / (size / 1e6):.0f} |")
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--corpus", type=Path, default=ROOT / "corpus")
    parser.add_argument("--measure", action="store_true", help="also compare the candidate libraries and time the readers")
    args = parser.parse_args(argv)
    folders = write_formats(args.out_dir, args.corpus)
    for fmt, folder in folders.items():
        print(f"{fmt}: {folder} ({len(list(folder.iterdir()))} files)")
    if args.measure:
        for rows in (measure_pdf(folders["pdf"], args.corpus), measure_html(folders["html"]), measure_readers(folders)):
            print("\n" + "\n".join(rows))


if __name__ == "__main__":
    main()
