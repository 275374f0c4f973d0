"""English typos are mended before a search (rag/spelling.py), with the real word list and dictionaries."""

from __future__ import annotations

import pytest

from rag import spelling
from rag.config import Settings
from rag.retrieve import Retriever


@pytest.fixture(scope="module", autouse=True)
def tables(settings: Settings) -> None:
    """The dictionaries from the start-up cache, as a server loads them (building them takes ~13 s)."""
    spelling.warm(settings.cache_dir)


@pytest.mark.parametrize(
    ("typed", "meant"),
    [
        ("Can I link my passprot?", "Can I link my passport?"),
        ("medical isnurance vouchher", "medical insurance voucher"),
        ("As a foreginer, how do I activtae it", "As a foreigner, how do I activate it"),
        ("offices in Chonqging", "offices in Chongqing"),  # a name, mended into a Chinese place's pinyin
        ("Hwo to pay", "Hwo to pay"),  # a capitalised short word might be a name: left alone
    ],
)
def test_one_edit_typos_are_mended(typed: str, meant: str) -> None:
    assert spelling.mended(typed) == meant


@pytest.mark.parametrize(
    "text",
    [
        "What award has Marlee Matlin won?",  # names no dictionary knows
        "When did Costa v ENEL take place? What is DECnet",  # acronyms and inner capitals
        "yibao hukou shebao WeChat Alipay",  # pinyin and product words
        "Why shouldn't a multi-language app work?",  # contractions, compound prefixes
        "医保电子凭证怎么激活",  # no English at all
        "Which stratigraphers study clades?",  # plurals of known words
    ],
)
def test_known_words_names_and_chinese_are_left_alone(text: str) -> None:
    assert spelling.mended(text) == text


def test_a_typo_finds_what_the_word_finds(retriever: Retriever) -> None:
    right = retriever.answer("Can I link my foreign passport to the medical insurance e-voucher?", 5)
    typo = retriever.answer("Can I link my foreign passprot to the medical insurance e-vouchher?", 5)
    assert [(h.passage.doc_id, h.passage.start) for h in typo.hits] == [(h.passage.doc_id, h.passage.start) for h in right.hits]
    assert typo.confidence.confidence == pytest.approx(right.confidence.confidence)


def test_it_can_be_turned_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAG_SPELLING", "0")
    assert Settings.from_env().spelling is False
