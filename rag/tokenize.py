"""Keyword tokens for BM25: jieba search-mode words for Chinese, lower-cased words for Latin text."""

from __future__ import annotations

import logging
import re
import threading
from functools import lru_cache

import jieba

from rag.normalize import searchable

jieba.setLogLevel(logging.WARNING)

# Function words that match everywhere and only add noise to BM25.
STOPWORDS = frozenset(
    " ".join(
        (
            "的 了 和 与 及 或 是 在 有 等 也 就 都 而 及其 以及 之 其 把 被 对 从 向 为 以 于 上 下 中",
            "吗 呢 吧 啊 么 我 你 他 她 它 我们 你们 他们 这 那 这个 那个 什么 怎么 如何 可以 能 会 要",
            "a an the of to in on at for by with from and or is are was were be been can could do does did",
            "i you he she it we they my your our their me him her us them this that these those what how",
            "which who whom when where why if than then there here as into about will would should may",
            "s t not no so any some",
        )
    ).split()
)
_WORDISH = re.compile(r"\w", re.UNICODE)


_TOKENIZER: list[jieba.Tokenizer] = []  # the one instance, once loaded
_LOADING = threading.Lock()


def _jieba() -> jieba.Tokenizer:
    """One private jieba instance, so a domain dictionary never leaks into other users of jieba.

    Loaded once under a lock: a search and the server's warm-up (Retriever.warm_up) arriving together
    share one 0.8 s load.
    """
    if not _TOKENIZER:
        with _LOADING:
            if not _TOKENIZER:
                tokenizer = jieba.Tokenizer()
                tokenizer.initialize()
                _TOKENIZER.append(tokenizer)
    return _TOKENIZER[0]


def word_frequencies() -> dict[str, int]:
    """jieba's dictionary counts (word -> frequency); 0 or absent for words it does not know."""
    freq: dict[str, int] = _jieba().FREQ
    return freq


def known_word(word: str) -> bool:
    """A word jieba's dictionary counts (not one its HMM made up for unknown characters)."""
    return word_frequencies().get(word, 0) > 0


def words(text: str) -> list[str]:
    """Precise-mode segmentation, every character kept (spaces and punctuation too), so the tokens join back into `text`."""
    return _jieba().lcut(text)


def tokenize(text: str) -> list[str]:
    """Search-mode segmentation: long words plus their sub-words, so 医保电子凭证 also matches 医保.

    Traditional Chinese and full-width Latin are read as Simplified and half-width first (rag/normalize.py),
    on the index's side and the question's.
    """
    tokens = []
    for token in _jieba().cut_for_search(searchable(text)):
        token = token.strip().lower()
        if token and _WORDISH.search(token) and token not in STOPWORDS:
            tokens.append(token)
    return tokens


@lru_cache(maxsize=4096)
def tokenize_remembered(text: str) -> tuple[str, ...]:
    """`tokenize` for text that comes back search after search (the top passage's highlighted
    sentence, read by the confidence): jieba runs once per distinct text instead of ~0.3 ms each time."""
    return tuple(tokenize(text))


_HAN = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]")
_LATIN = re.compile(r"[A-Za-z]")


def detect_language(text: str) -> str:
    """ "zh" when Chinese carries at least as much of the question as Latin text, else "en".

    One Chinese character weighs about four Latin letters (a word is ~2 characters or ~5 letters),
    so `医保 e-voucher 怎么激活` counts as Chinese and `亲情账户 how many people can I add` as English.
    """
    han = len(_HAN.findall(text))
    return "zh" if han and han * 4 >= len(_LATIN.findall(text)) else "en"


def has_han(text: str) -> bool:
    return bool(_HAN.search(text))


def has_latin_words(text: str) -> bool:
    return bool(_LATIN.search(text))
