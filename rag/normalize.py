"""What a person typed, read in the forms the corpus and the models know, before a search reads it.

Two things people type that the index never matches as such: Traditional Chinese (rag/simplified.py)
and full-width Latin letters, digits and signs, which a Chinese input method in full-width mode
produces (Ｈｏｗ ｄｏ Ｉ ａｃｔｉｖａｔｅ ｔｈｅ ｅ－ｖｏｕｃｈｅｒ). The latter are not English to the language
check, to CC-CEDICT or to BM25: the own set's English questions typed that way fell from MRR@10 0.829
to 0.728 (docs/quality.md). U+FF01-U+FF5E are read as their ASCII forms and the ideographic space as
a space; on the own and held-out sets as they are written nothing changes. A question typed with caps
lock on is read in sentence case (`unshouted`).
"""

from __future__ import annotations

import re

from rag.simplified import to_simplified

_HALFWIDTH = {c: c - 0xFEE0 for c in range(0xFF01, 0xFF5F)} | {0x3000: 0x20}


def halfwidth(text: str) -> str:
    """Full-width ASCII forms (Ａ, １, －, ？) as ASCII, the ideographic space as a space."""
    return text.translate(_HALFWIDTH)


_UPPER, _LOWER = re.compile(r"[A-Z]"), re.compile(r"[a-z]")
SHOUTED_SHARE, SHOUTED_LETTERS = 0.8, 12


def unshouted(text: str) -> str:
    """A question typed with caps lock on, in sentence case; any other text as it was.

    e5 and USE are cased: the own set's English questions in capitals fell from MRR@10 0.829 to 0.742.
    Only English text whose Latin letters are at least 12 and 80% capitals counts, so "QR", "APP" or
    "ATM" in a question typed normally, or 复杂性类 RP、BPP、PP、BQP 在哪里, change nothing (no own,
    held-out or public question counts).
    """
    from rag.tokenize import detect_language  # here: rag.tokenize reads this module at import

    upper, lower = len(_UPPER.findall(text)), len(_LOWER.findall(text))
    if upper < SHOUTED_LETTERS or upper < SHOUTED_SHARE * (upper + lower) or detect_language(text) != "en":
        return text
    lowered = text.lower()
    first = _LOWER.search(lowered)
    if first is None:
        return lowered
    i = first.start()
    return lowered[:i] + lowered[i].upper() + lowered[i + 1 :]


def question_text(question: str) -> str:
    """A question as a search reads it: half-width, not shouted, Simplified."""
    return to_simplified(unshouted(halfwidth(question)))


def searchable(text: str) -> str:
    """Any text as keyword tokens and highlights read it: half-width, Simplified."""
    return to_simplified(halfwidth(text))
