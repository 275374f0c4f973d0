"""What a person typed, read in the forms the corpus and the models know, before a search reads it.

Two things people type that the index never matches as such: Traditional Chinese (rag/simplified.py)
and full-width Latin letters, digits and signs, which a Chinese input method in full-width mode
produces (Ｈｏｗ ｄｏ Ｉ ａｃｔｉｖａｔｅ ｔｈｅ ｅ－ｖｏｕｃｈｅｒ). The latter are not English to the language
check, to CC-CEDICT or to BM25: the own set's English questions typed that way fell from MRR@10 0.829
to 0.728 (docs/quality.md). U+FF01-U+FF5E are read as their ASCII forms and the ideographic space as
a space; on the own and held-out sets as they are written nothing changes.
"""

from __future__ import annotations

from rag.simplified import to_simplified

_HALFWIDTH = {c: c - 0xFEE0 for c in range(0xFF01, 0xFF5F)} | {0x3000: 0x20}


def halfwidth(text: str) -> str:
    """Full-width ASCII forms (Ａ, １, －, ？) as ASCII, the ideographic space as a space."""
    return text.translate(_HALFWIDTH)


def searchable(text: str) -> str:
    """`text` as searches, keyword tokens and highlights read it: half-width, Simplified."""
    return to_simplified(halfwidth(text))
