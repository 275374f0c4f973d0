"""Web pages: the declared charset honoured, page furniture dropped, one block per heading, paragraph,
list item, table row.

selectolax (lexbor) parses: it was the fastest of the candidates measured and keeps every
element in document order (docs/formats.md). Inline text is joined as a browser lays it out,
except that a source line break between two Chinese characters is removed, not made a space.
"""

from __future__ import annotations

import codecs
import re

from selectolax.lexbor import LexborHTMLParser, LexborNode

from rag.ingest.base import Parsed, TextBuilder
from rag.ingest.cjk import join_breaks

FURNITURE = (
    "script, style, nav, header, footer, aside, noscript, form, template, iframe, svg, canvas, button, select, object, embed, dialog, menu"
)
HEADINGS = {"h1": 1, "h2": 2, "h3": 3, "h4": 4, "h5": 5, "h6": 6}
LIST_ITEMS = frozenset({"li", "dt", "dd"})
INLINE = frozenset(
    [
        "a",
        "abbr",
        "b",
        "bdi",
        "bdo",
        "cite",
        "code",
        "data",
        "del",
        "dfn",
        "em",
        "font",
        "i",
        "img",
        "ins",
        "kbd",
        "label",
        "mark",
        "q",
        "rp",
        "rt",
        "ruby",
        "s",
        "samp",
        "small",
        "span",
        "strike",
        "strong",
        "sub",
        "sup",
        "time",
        "tt",
        "u",
        "var",
        "wbr",
    ]
)
META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([A-Za-z0-9_:.-]+)""", re.IGNORECASE)
GB_ALIASES = {"gb2312": "gb18030", "gbk": "gb18030", "x-gbk": "gb18030", "cp936": "gb18030", "gb_2312-80": "gb18030"}


def decode_html(data: bytes) -> str:
    """Text of a page: BOM, then the declared charset (GB2312/GBK read as GB18030), then UTF-8, then a guess."""
    for bom, enc in ((codecs.BOM_UTF8, "utf-8"), (codecs.BOM_UTF16_LE, "utf-16-le"), (codecs.BOM_UTF16_BE, "utf-16-be")):
        if data.startswith(bom):
            return data[len(bom) :].decode(enc, errors="replace")
    declared = META_CHARSET.search(data[:8192])
    if declared:
        name = declared.group(1).decode("ascii", "replace").lower()
        name = GB_ALIASES.get(name, name)
        try:
            return data.decode(name)
        except LookupError:
            pass
        except UnicodeDecodeError:
            return data.decode(name, errors="replace")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    from charset_normalizer import from_bytes

    best = from_bytes(data).best()
    enc = GB_ALIASES.get(best.encoding, best.encoding) if best is not None else "gb18030"
    return data.decode(enc, errors="replace")


class _Walker:
    """Walks the DOM in document order, flushing inline text into blocks at block boundaries."""

    def __init__(self) -> None:
        self.out = TextBuilder()
        self.buffer: list[str] = []

    def flush(self, kind: str) -> None:
        if self.buffer:
            self.out.add(kind, join_breaks("".join(self.buffer)))
            self.buffer = []

    def walk(self, node: LexborNode, kind: str = "paragraph") -> None:
        for child in node.iter(include_text=True):
            tag = child.tag
            if tag == "-text":
                self.buffer.append(child.text_content or "")
            elif tag is None or tag.startswith("-"):
                continue  # comments, doctype
            elif tag in INLINE:
                self.walk(child, kind)
            elif tag == "br":
                self.flush(kind)
            elif tag in HEADINGS:
                self.flush(kind)
                self.out.add("heading", join_breaks(child.text(deep=True) or ""), HEADINGS[tag])
            elif tag == "tr":
                self.flush(kind)
                cells = [join_breaks(c.text(deep=True) or "").strip() for c in child.iter() if c.tag in ("td", "th")]
                self.out.add("table_row", " | ".join(c for c in cells if c))
            elif tag == "pre":
                self.flush(kind)
                for line in (child.text(deep=True) or "").split("\n"):
                    self.out.add("paragraph", line)
            else:  # a block element: what came before it ends, its own content is blocks of its kind
                self.flush(kind)
                inner = "list_item" if tag in LIST_ITEMS else kind
                self.walk(child, inner)
                self.flush(inner)


def read_html(data: bytes) -> Parsed:
    """Parse a page: <title> is the title, h1-h6 headings, furniture (nav, footer, script...) dropped."""
    tree = LexborHTMLParser(decode_html(data))
    title_node = tree.css_first("title")
    title = title_node.text(deep=True) if title_node is not None else None
    root = tree.body or tree.root
    for node in root.css(FURNITURE) if root is not None else []:
        node.decompose()
    walker = _Walker()
    if root is not None:
        walker.walk(root)
        walker.flush("paragraph")
    return walker.out.parsed(title)
