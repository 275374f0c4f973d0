"""English typos in a question, mended before it is searched ("passprot" -> "passport").

Why: an English question reaches the Chinese passages through CC-CEDICT's translations of its
words (BM25) and through two dense encoders; one mistyped word loses its translation and blurs
both vectors. On the own set, one typo in one English word of each question lowered English MRR@10
0.829 -> 0.73-0.78 (docs/quality.md, "English typos").

How: a word of 4+ ASCII letters that neither pyspellchecker's English frequency list (MIT) nor
the dictionary the translations come from (CC-CEDICT's English keys, pinyin readings) knows is
replaced by the most frequent known word one edit away (a letter dropped, added, changed or two
swapped). Nothing is replaced when no such word exists, so names, pinyin and product words stay.
Only what is searched changes; the answer cites the passages' text as always.
"""

from __future__ import annotations

import gzip
import json
import re
import string
from collections.abc import Iterable
from functools import lru_cache
from importlib import resources
from pathlib import Path

_WORD = re.compile(r"(?<![A-Za-z])[A-Za-z]{4,}(?![A-Za-z'’-])")  # not the prefix of a compound (multi-)
_LETTERS = string.ascii_lowercase
NAME_LETTERS = 7  # a shorter capitalised word is left alone: Matlin, Rohe and Rican are one edit from some pinyin


@lru_cache(maxsize=1)
def frequencies() -> dict[str, int]:
    """pyspellchecker's English word counts (~0.3 s to read, once per process)."""
    raw = resources.files("spellchecker").joinpath("resources/en.json.gz").read_bytes()
    counts: dict[str, int] = json.loads(gzip.decompress(raw))
    return counts


def _single_words(keys: Iterable[str]) -> frozenset[str]:
    """The keys that are one ASCII word ("passport", "chongqing"; not "medical insurance")."""
    return frozenset(k for k in keys if k.isascii() and k.isalpha())


@lru_cache(maxsize=1)
def _pinyin_words() -> frozenset[str]:
    """Chinese words written in toneless pinyin (chongqing, shenzhen, yibao): what a name is mended into."""
    from rag.expand import pinyin_readings

    return _single_words(pinyin_readings())


@lru_cache(maxsize=1)
def _dictionary_words() -> frozenset[str]:
    """Single English words the translation tables know: a word there is never 'corrected'."""
    from rag.expand import reverse_cedict

    return _single_words(reverse_cedict()) | _pinyin_words()


def warm(cache_dir: Path | None = None) -> None:
    """Load the word list and the dictionaries' words now (a server's start), not in the first search;
    with `cache_dir`, CC-CEDICT's tables come from the start-up pickle (~0.3 s instead of ~13 s)."""
    from rag.expand import pinyin_readings, reverse_cedict

    reverse_cedict(cache_dir)
    pinyin_readings(cache_dir)
    frequencies()
    _dictionary_words()


def known(word: str) -> bool:
    """In the word list or the dictionary, as written or as a plural of a word there (clades, Grammys)."""
    counts, words = frequencies(), _dictionary_words()
    w = word.lower()
    forms = {w, w.removesuffix("s"), w.removesuffix("es")}
    return any(form in counts or form in words for form in forms)


def _edits(word: str) -> set[str]:
    """Every string one edit from `word` (Norvig's edits1, with adjacent swaps)."""
    splits = [(word[:i], word[i:]) for i in range(len(word) + 1)]
    deletes = [a + b[1:] for a, b in splits if b]
    swaps = [a + b[1] + b[0] + b[2:] for a, b in splits if len(b) > 1]
    changes = [a + c + b[1:] for a, b in splits if b for c in _LETTERS]
    inserts = [a + c + b for a, b in splits for c in _LETTERS]
    return set(deletes + swaps + changes + inserts)


@lru_cache(maxsize=8192)
def correction(word: str, name: bool = False) -> str:
    """`word` mended, its first letter's case kept; `word` itself when it is known or nothing near is.

    A `name` (a capitalised word) is only mended into a Chinese word's pinyin (Chonqging ->
    Chongqing) and only when it has 7+ letters, so that Marlee, Halford and Mies stay as they are.
    An acronym or a brand written with inner capitals (ENEL, DECnet) is left alone.
    """
    if known(word) or not word[1:].islower() or (name and len(word) < NAME_LETTERS):
        return word
    counts = frequencies()
    candidates = [w for w in _edits(word.lower()) if (w in _pinyin_words() if name else w in counts)]
    if not candidates:
        return word
    best = max(candidates, key=lambda w: (counts.get(w, 0), w))
    return best[0].upper() + best[1:] if word[0].isupper() else best


def mended(question: str) -> str:
    """The question with each unknown English word of 4+ letters replaced by its correction."""

    def mend(m: re.Match[str]) -> str:
        word = m.group()
        return correction(word, word[0].isupper())

    return _WORD.sub(mend, question)
