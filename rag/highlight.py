"""The sentence of a passage that best answers the question, as citable document offsets.

Scoring is lexical and cheap (no extra model call on the query path): each sentence earns the
length of every distinct query keyword it contains (longer keywords are more specific), where the
keywords already include CC-CEDICT translations of English words. Ties go to the earlier sentence;
a passage that matches nothing highlights its first sentence.
"""

from __future__ import annotations

import re

from rag.chunk import Passage, Span

_SENTENCE = re.compile(r"[^\n。！？；!?;]*(?:[。！？；!?;]+[”\"’」』）)]*|\n|$)")


def sentences(text: str) -> list[Span]:
    """Sentences and lines of a passage, trimmed, as offsets into the passage text."""
    spans = []
    for m in _SENTENCE.finditer(text):
        start, end = m.start(), m.end()
        while start < end and text[start].isspace():
            start += 1
        while end > start and text[end - 1].isspace():
            end -= 1
        if end > start and any(ch.isalnum() for ch in text[start:end]):
            spans.append(Span(start, end))
    return spans


def best_sentence(passage: Passage, keywords: list[str]) -> Span:
    """Document offsets of the best sentence of `passage` for these query keywords."""
    spans = sentences(passage.text) or [Span(0, len(passage.text))]
    distinct = {k.lower() for k in keywords if k}
    best, best_score = spans[0], 0
    for span in spans:
        text = passage.text[span.start : span.end].lower()
        points = sum(len(k) for k in distinct if k in text)
        if points > best_score:
            best, best_score = span, points
    return Span(passage.start + best.start, passage.start + best.end)
