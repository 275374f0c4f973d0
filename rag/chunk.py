"""Split a document into passages that know their section and their exact place in the text.

Web pages flattened to text carry their structure only in line shapes: a heading is a short line
without closing punctuation, a list item starts with `- ` or `1. `, and page furniture (`相关推荐`,
`首页 顶部`, a dateline) is noise. Lines are classified first, headings get levels, then each
section's content lines are packed into passages of whole sentences.

Contract: for every passage, ``document_text[p.start:p.end] == p.text``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, NamedTuple

from rag.simplified import to_simplified

if TYPE_CHECKING:
    from rag.ingest.base import Document

# --- line classification -------------------------------------------------------------------------

FURNITURE = frozenset({"大家都在搜", "相关推荐", "首页 顶部", "首页", "顶部", "-", "•", "*", "·"})
RELATED_MARKER = "相关推荐"
DATELINE = re.compile(r"^\S{1,12}\s+\d{4}-\d{1,2}-\d{1,2}$")  # e.g. `健康新闻 2025-03-04`
DISCLAIMER = re.compile(r"^提示[:：]本内容不能代替面诊")
MARKDOWN_HEADING = re.compile(r"^(#{1,6})\s+(.+?)\s*#*$")
LIST_ITEM = re.compile(r"^(?:[-•*·]\s|\d{1,3}[.、)）]\s?|[（(]\d{1,3}[)）])")
CLOSING_PUNCT = "。！？；!?;:：,，、…"
SENTENCE_PUNCT = "。！？；!?;"
MAX_HEADING_CHARS = 40
# Headings phrased as questions, or introducing a "如下" list, open a new article on these pages.
ARTICLE_HEADING = re.compile(r"(如何|怎样|怎么|什么|哪些|哪里|哪个|多少|是否|可以.*吗|[吗呢？?]$)")
ARTICLE_INTRO = re.compile(r"(如下[:：]$|以下是)")


class Line(NamedTuple):
    number: int  # 1-based line number
    start: int  # offset of the first non-space character
    end: int  # offset after the last non-space character
    text: str  # the stripped line
    kind: str  # blank | furniture | heading | content


class Passage(NamedTuple):
    doc_id: str
    title: str
    section: tuple[str, ...]  # document title > heading > sub-heading
    start: int
    end: int
    line_start: int
    line_end: int
    text: str
    format: str = "txt"  # the document's format: txt | md | pdf | docx | html
    page_start: int | None = None  # 1-based PDF pages the passage lies on; None without pages
    page_end: int | None = None


def split_lines(text: str) -> list[Line]:
    """Lines with the offsets of their stripped content; the kind is filled in later."""
    lines: list[Line] = []
    pos = 0
    for number, raw in enumerate(text.split("\n"), start=1):
        stripped = raw.strip()
        lead = len(raw) - len(raw.lstrip())
        start = pos + lead
        lines.append(Line(number, start, start + len(stripped), stripped, "blank" if not stripped else "content"))
        pos += len(raw) + 1
    return lines


def is_furniture(text: str) -> bool:
    """Page chrome that must never become a passage."""
    return text in FURNITURE or bool(DATELINE.match(text)) or bool(DISCLAIMER.match(text))


def looks_like_heading(text: str) -> bool:
    """A short line without sentence punctuation that is not a list item."""
    if len(text) > MAX_HEADING_CHARS or LIST_ITEM.match(text):
        return False
    return not (text[-1] in CLOSING_PUNCT or any(ch in text for ch in SENTENCE_PUNCT))


def classify(lines: Sequence[Line]) -> list[Line]:
    """Mark furniture and headings. A heading must be followed by some content or heading."""
    kinds = []
    for line in lines:
        if line.kind == "blank":
            kinds.append("blank")
        elif is_furniture(line.text):
            kinds.append("furniture")
        elif MARKDOWN_HEADING.match(line.text) or looks_like_heading(line.text):
            kinds.append("heading")
        else:
            kinds.append("content")
    # A heading-shaped line with nothing after it is plain content (e.g. a closing remark).
    for i in range(len(lines)):
        if kinds[i] == "heading" and _next_meaningful(kinds, i) is None:
            kinds[i] = "content"
    return [line._replace(kind=kind) for line, kind in zip(lines, kinds, strict=True)]


def _next_meaningful(kinds: Sequence[str], i: int) -> int | None:
    for j in range(i + 1, len(kinds)):
        if kinds[j] in ("heading", "content"):
            return j
    return None


# --- sections ------------------------------------------------------------------------------------


class Section(NamedTuple):
    path: tuple[str, ...]  # headings below the document title
    lines: list[Line]  # content lines
    related: bool  # inside the "related articles" block at the end of a page


def document_title(lines: Sequence[Line], fallback: str) -> tuple[str, int | None]:
    """The title and the index of the line that is the title (None when derived from prose)."""
    for i, line in enumerate(lines):
        if line.kind == "blank" or line.kind == "furniture":
            continue
        md = MARKDOWN_HEADING.match(line.text)
        if md:
            return md.group(2), i
        if line.kind == "heading":
            return line.text, i
        first = re.split(r"[。！？!?；;]", line.text, maxsplit=1)[0].strip()
        return (first[:MAX_HEADING_CHARS] or fallback), None
    return fallback, None


def sections(lines: Sequence[Line], title_index: int | None) -> Iterator[Section]:
    """Group content lines under their heading path.

    Levels for plain-text headings: a question-like heading (or one introducing a "如下" list)
    opens an article at level 1; a heading directly followed by another heading is a group
    (level 1, or 2 inside an article); any other heading is a leaf one level below the last
    group or article. Markdown headings use their own level. After `相关推荐`, each short
    article is its own section.
    """
    kinds = [line.kind for line in lines]
    stack: list[tuple[int, str]] = []
    parent_level = 0  # level of the last article or group heading; leaves go one below it
    in_article = False
    related = False
    current: list[Line] = []

    def flush() -> Iterator[Section]:
        if current:
            yield Section(tuple(text for _, text in stack), list(current), related)
            current.clear()

    for i, line in enumerate(lines):
        if i == title_index or line.kind == "blank":
            continue
        if line.kind == "furniture":
            if line.text == RELATED_MARKER:
                yield from flush()
                related, in_article = True, False
                stack = [(1, RELATED_MARKER)]
            continue
        if line.kind == "content":
            current.append(line)
            continue
        yield from flush()
        md = MARKDOWN_HEADING.match(line.text)
        nxt = _next_meaningful(kinds, i)
        text = line.text
        if md:
            level = parent_level = len(md.group(1))
            text = md.group(2)
        elif related:
            level = 2
        elif ARTICLE_HEADING.search(text) or (nxt is not None and kinds[nxt] == "content" and ARTICLE_INTRO.search(lines[nxt].text)):
            level = parent_level = 1
            in_article = True
        elif nxt is not None and kinds[nxt] == "heading":
            level = parent_level = 2 if in_article else 1
        else:
            level = parent_level + 1
        stack = [(lvl, t) for lvl, t in stack if lvl < level] + [(level, text)]
    yield from flush()


# --- passages ------------------------------------------------------------------------------------

SENTENCE_END = re.compile(r"[。！？；!?;]+[”\"’」』）)]*|(?<![0-9])\.(?=\s)")
SOFT_BREAK = re.compile(r"[，,、:：]")


class Span(NamedTuple):
    start: int
    end: int


def sentence_spans(text: str, start: int, end: int) -> list[Span]:
    """Whole sentences of text[start:end], whitespace trimmed, covering every character."""
    spans = []
    pos = start
    for m in SENTENCE_END.finditer(text, start, end):
        spans.append(Span(pos, m.end()))
        pos = m.end()
    if pos < end:
        spans.append(Span(pos, end))
    return [s for s in (_trim(text, s) for s in spans) if s.end > s.start]


def _trim(text: str, span: Span) -> Span:
    start, end = span
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return Span(start, end)


def _cut_long(text: str, span: Span, max_chars: int) -> list[Span]:
    """A sentence longer than max_chars, cut at commas where possible, else hard."""
    pieces = []
    start = span.start
    while span.end - start > max_chars:
        limit = start + max_chars
        cut = max((m.end() for m in SOFT_BREAK.finditer(text, start + max_chars // 3, limit)), default=limit)
        pieces.append(_trim(text, Span(start, cut)))
        start = cut
    pieces.append(_trim(text, Span(start, span.end)))
    return [p for p in pieces if p.end > p.start]


def units(text: str, lines: Sequence[Line], max_chars: int) -> list[Span]:
    """The packing units of a section: whole lines, or sentences of lines that are too long."""
    out: list[Span] = []
    for line in lines:
        if line.end - line.start <= max_chars:
            out.append(Span(line.start, line.end))
            continue
        for sentence in sentence_spans(text, line.start, line.end):
            if sentence.end - sentence.start <= max_chars:
                out.append(sentence)
            else:
                out.extend(_cut_long(text, sentence, max_chars))
    return out


def pack(spans: Sequence[Span], max_chars: int) -> list[Span]:
    """Group consecutive units into passages of balanced length, none over max_chars."""
    if not spans:
        return []
    total = spans[-1].end - spans[0].start
    target = total / max(1, math.ceil(total / max_chars))
    groups: list[Span] = []
    start, end = spans[0]
    for span in spans[1:]:
        grown = span.end - start
        if grown <= max_chars and (end - start) < target * 0.9:
            end = span.end
        else:
            groups.append(Span(start, end))
            start, end = span
    groups.append(Span(start, end))
    return groups


def chunk_document(doc_id: str, text: str, max_chars: int = 300) -> list[Passage]:
    """All passages of one document, in reading order."""
    lines = classify(split_lines(text))
    fallback = doc_id.rsplit("/", 1)[-1].rsplit(".", 1)[0]
    title, title_index = document_title(lines, fallback)
    passages = []
    for section in sections(lines, title_index):
        path = (title, *section.path)
        for span in pack(units(text, section.lines, max_chars), max_chars):
            passages.append(
                Passage(
                    doc_id=doc_id,
                    title=title,
                    section=path,
                    start=span.start,
                    end=span.end,
                    line_start=text.count("\n", 0, span.start) + 1,
                    line_end=text.count("\n", 0, span.end) + 1,
                    text=text[span.start : span.end],
                )
            )
    return passages


def chunk(doc: Document, max_chars: int = 300) -> list[Passage]:
    """Passages of any document: line heuristics for txt/md (chunk_document), its blocks otherwise."""
    if doc.blocks is None:
        passages = chunk_document(doc.id, doc.text, max_chars)
        return passages if doc.format == "txt" else [p._replace(format=doc.format) for p in passages]
    from rag.chunk_blocks import chunk_blocks

    return chunk_blocks(doc, max_chars)


def embedding_text(passage: Passage, text: str | None = None) -> str:
    """What the encoders see: the section path as context, then the passage (or `text`, a part of it),
    Traditional Chinese read as Simplified as the questions are (rag/simplified.py); citations keep the document's characters.
    Full-width forms are left as written: e5's tokenizer reads them as ASCII already (NFKC), and a corpus
    written with full-width punctuation would otherwise be embedded again for nothing."""
    text = passage.text if text is None else text
    path = [p for p in passage.section if p != RELATED_MARKER]
    if RELATED_MARKER in passage.section:
        path = path[1:]  # a related article is not about the page it was found on
    return to_simplified((" > ".join(path) + "\n" + text) if path else text)


UNITS = ("passage", "sentence")


def embedding_units(passages: Sequence[Passage], unit: str) -> tuple[list[str], list[int]]:
    """The texts an encoder embeds, and the passage each belongs to.

    "passage": one text per passage. "sentence": one per sentence of each passage, each with the
    passage's section path; the passage then scores as its best sentence. USE was trained on short
    sentences and gains most from this (docs/quality.md).
    """
    if unit == "passage":
        return [embedding_text(p) for p in passages], list(range(len(passages)))
    if unit != "sentence":
        raise ValueError(f"unknown embedding unit {unit!r}; use one of {', '.join(UNITS)}")
    texts, owners = [], []
    for i, p in enumerate(passages):
        for span in sentence_spans(p.text, 0, len(p.text)):
            texts.append(embedding_text(p, p.text[span.start : span.end]))
            owners.append(i)
    return texts, owners


def keyword_text(passage: Passage) -> str:
    """What BM25 sees: the headings below the title, then the passage."""
    headings = [p for p in passage.section[1:] if p != RELATED_MARKER]
    return (" ".join(headings) + "\n" + passage.text) if headings else passage.text
