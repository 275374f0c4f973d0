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

# Never text: code, embedded objects, form controls (a <form> itself is kept: some CMSs wrap the article in one).
NOT_TEXT = "script, style, noscript, template, iframe, svg, canvas, object, embed, input, select, option, textarea, button"
FURNITURE_TAGS = frozenset({"nav", "aside", "menu", "dialog"})
PAGE_PARTS = frozenset({"header", "footer"})  # furniture outside an <article>/<main>, the article's own parts inside
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


HIDDEN_STYLE = re.compile(r"(?:^|;)\s*(?:display\s*:\s*none|visibility\s*:\s*hidden)", re.IGNORECASE)
# id/class words that name page furniture, matched against whole words of the name (mainNav, main-nav,
# main_nav all give "nav"); a few stems also as the start or end of one (mainnav, submenu, bdshare).
_FURNITURE_WORDS = (
    "nav navbar navi navigation menu menus menubar submenu header head footer foot breadcrumb breadcrumbs crumb"
    " crumbs sidebar share sharing social toolbar tools copyright links friendlink search searchbox login signin"
    " register gotop backtop totop skip cookie qrcode ewm modal popup dh daohang yqlj"
    " 导航 菜单 页眉 页脚 版权 分享 友情链接 搜索 登录"
)
FURNITURE_WORDS = frozenset(_FURNITURE_WORDS.split())
PREFIXES = ("nav", "menu", "footer", "bdshare", "crumb", "copyright", "sidebar", "search", "login")
SUFFIXES = ("nav", "menu", "footer", "share", "crumb", "copyright", "sidebar")
# header/footer next to one of these words is the article's own header ("article-header"), not the page's
PAGE_PART_WORDS = frozenset({"header", "head", "footer", "foot"})
CONTENT_WORDS = frozenset({"article", "content", "post", "entry", "news", "detail", "body", "text", "story", "zw"})
NAME_WORD = re.compile(r"[a-z]+|[^\W\d_a-z]+")
LINK_SHARE = 0.5  # a block this much anchor text, with at least MIN_LINKS links, is a menu or link list
MIN_LINKS = 3
KEEP_SHARE = 0.5  # an element holding this share of the page's text is never dropped: a mislabelled wrapper


def _name_words(node: LexborNode) -> set[str]:
    attrs = node.attributes
    name = f"{attrs.get('id') or ''} {attrs.get('class') or ''}"
    return set(NAME_WORD.findall(re.sub(r"([a-z])([A-Z])", r"\1 \2", name).lower()))


def furniture_name(node: LexborNode) -> bool:
    """Does the element's id or class name it as furniture (nav, menu, footer, breadcrumb, share, 导航...)?"""
    words = _name_words(node)
    hits = {w for w in words if w in FURNITURE_WORDS or w.startswith(PREFIXES) or w.endswith(SUFFIXES)}
    if hits and hits <= PAGE_PART_WORDS and words & CONTENT_WORDS:
        return False  # article-header, news_foot: the article's own parts
    return bool(hits)


def hidden(node: LexborNode) -> bool:
    """Hidden by the page itself: display:none / visibility:hidden inline, the hidden attribute, aria-hidden."""
    attrs = node.attributes
    if "hidden" in attrs or (attrs.get("aria-hidden") or "").strip().lower() == "true":
        return True
    return bool(HIDDEN_STYLE.search(attrs.get("style") or ""))


def _chars(text: str | None) -> int:
    return len(text) - sum(map(str.isspace, text)) if text else 0


class _Frame:
    """One element being scanned: its text (all, and what is left after dropped descendants) and links."""

    __slots__ = ("children", "in_article", "kept", "linked", "links", "mark", "node", "raw")

    def __init__(self, node: LexborNode, in_article: bool, mark: int) -> None:
        self.node, self.in_article, self.mark = node, in_article, mark
        self.children = node.iter(include_text=True)
        self.raw = self.kept = self.linked = self.links = 0


def _drop_reason(f: _Frame) -> bool:
    tag = f.node.tag or ""
    if hidden(f.node) or tag in FURNITURE_TAGS or (tag in PAGE_PARTS and not f.in_article):
        return True
    if tag in INLINE or tag in HEADINGS:
        return False
    if furniture_name(f.node):
        return True
    return f.links >= MIN_LINKS and f.linked >= LINK_SHARE * f.kept


def furniture(root: LexborNode) -> list[LexborNode]:
    """The outermost elements to drop as furniture: hidden, menus and footers by tag or name, link lists.

    One pass, children before parents (iterative: real pages nest deeply), so a block's link share
    counts only what its dropped descendants left.
    """
    total = _chars(root.text(deep=True))
    drops: list[LexborNode] = []
    stack = [_Frame(root, False, 0)]
    while stack:
        f = stack[-1]
        child = next(f.children, None)
        if child is not None:
            tag = child.tag or ""
            if tag == "-text":
                n = _chars(child.text_content)
                f.raw += n
                f.kept += n
            elif not tag.startswith("-"):
                stack.append(_Frame(child, f.in_article or tag in ("article", "main"), len(drops)))
            continue
        stack.pop()
        if f.node.tag == "a" and f.kept:
            f.linked, f.links = f.kept, f.links + 1
        if stack and f.raw < KEEP_SHARE * total and _drop_reason(f):
            del drops[f.mark :]  # its dropped descendants go with it
            drops.append(f.node)
            f.kept = f.linked = f.links = 0
        if stack:
            parent = stack[-1]
            parent.raw += f.raw
            parent.kept += f.kept
            parent.linked += f.linked
            parent.links += f.links
    return drops


def main_content(root: LexborNode) -> LexborNode:
    """<main> (or role=main), else <article>, when one holds most of the text left; else the whole body."""
    total = _chars(root.text(deep=True))
    for selector in ("main, [role=main]", "article"):
        best = max(root.css(selector), key=lambda n: _chars(n.text(deep=True)), default=None)
        if best is not None and _chars(best.text(deep=True)) >= KEEP_SHARE * total:
            return best
    return root


LAYOUT_BLOCKS = "table, p, div, ul, ol, dl, h1, h2, h3, h4, h5, h6, form, section, article, blockquote, pre"


def layout_row(cells: list[LexborNode]) -> bool:
    """A row of a layout table (one cell, a nested table, or a cell of several blocks), not a row of data."""
    if len(cells) == 1:
        return True
    for cell in cells:
        blocks = cell.css(LAYOUT_BLOCKS)
        if len(blocks) >= 3 or any(b.tag == "table" for b in blocks):
            return True
    return False


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
            elif tag in HEADINGS and kind != "list_item":  # a heading inside a list item is a menu label
                self.flush(kind)
                self.out.add("heading", join_breaks(child.text(deep=True) or ""), HEADINGS[tag])
            elif tag == "tr":
                self.flush(kind)
                cells = [c for c in child.iter() if c.tag in ("td", "th")]
                if layout_row(cells):  # a page laid out with tables: its cells are containers, not data
                    for cell in cells:
                        self.walk(cell, kind)
                        self.flush(kind)
                    continue
                texts = [join_breaks(c.text(deep=True) or "").strip() for c in cells]
                self.out.add("table_row", " | ".join(c for c in texts if c))
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
    """Parse a page: <title> is the title, h1-h6 headings, furniture and hidden elements dropped, the main content preferred."""
    tree = LexborHTMLParser(decode_html(data))
    title_node = tree.css_first("title")
    title = title_node.text(deep=True) if title_node is not None else None
    root = tree.body or tree.root
    walker = _Walker()
    if root is not None:
        for node in root.css(NOT_TEXT):
            node.decompose()
        for node in furniture(root):
            node.decompose()
        main = main_content(root)
        first = root.css_first("h1")
        if main is not root and first is not None and not _inside(first, main):
            walker.out.add("heading", join_breaks(first.text(deep=True) or ""), 1)  # the page's title heading
        walker.walk(main)
        walker.flush("paragraph")
    return walker.out.parsed(title)


def _inside(node: LexborNode, container: LexborNode) -> bool:
    parent = node.parent
    while parent is not None:
        if parent.mem_id == container.mem_id:
            return True
        parent = parent.parent
    return False
