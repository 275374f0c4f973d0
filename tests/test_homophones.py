"""Chinese input-method typos are mended against the corpus's words (rag/homophones.py), with CC-CEDICT's
real readings, the real jieba and the shipped corpus's vocabulary."""

from __future__ import annotations

from dataclasses import replace

import pytest

from rag.config import Settings
from rag.encoders import Encoder
from rag.expand import character_readings
from rag.homophones import Homophones
from rag.retrieve import Retriever
from rag.tokenize import known_word, words


@pytest.fixture(scope="module")
def corpus_words(retriever: Retriever) -> Homophones:
    character_readings(retriever.settings.cache_dir)
    return retriever.index.homophones


def mend(h: Homophones, question: str) -> str:
    return h.mended(question, words(question))


@pytest.mark.parametrize(
    ("typed", "meant"),
    [
        ("医保电子平证是哪一年推出的", "医保电子凭证是哪一年推出的"),  # 平证: two single characters
        ("实替医保卡去哪办", "实体医保卡去哪办"),  # 实替: a word jieba's HMM made up
        ("国家医抱APP里怎么激活医保电子凭证", "国家医保APP里怎么激活医保电子凭证"),
        ("医宝 e-voucher 怎么激活", "医保 e-voucher 怎么激活"),  # among English words
        ("住院登记出院结酸能用医保码吗", "住院登记出院结算能用医保码吗"),  # inside the unknown token 结酸能
        ("亲情长户有什么用", "亲情账户有什么用"),
    ],
)
def test_one_homophone_typo_is_mended(corpus_words: Homophones, typed: str, meant: str) -> None:
    assert mend(corpus_words, typed) == meant


@pytest.mark.parametrize(
    "question",
    [
        "医保电子凭证怎么激活",  # typed right
        "可以保证吗",  # 以保 sounds like 医保, but 可以 and 保证 are whole words
        "新农合跨市了怎么转到现在住的地方",  # 住的 reads zhu di like 住地, but 的 is a function word
        "今天上海添气怎么样",  # a typo of a word the corpus lacks (天气): nothing to mend it into
        "怎么保证只有我本人能用垫子医保卡",  # 垫子 is a real word (cushion): left, though 电子 was meant
        "网上屾请电子医保卡要注意啥",  # 屾 is a word jieba knows, standing alone: left, though 申请 was meant
        "电子以保卡被人盗用了怎么办",  # 以保 and 保卡 are both written in the corpus (可以保, 医保卡): left
        "How do I activate it?",
    ],
)
def test_real_words_and_words_the_corpus_lacks_are_left_alone(corpus_words: Homophones, question: str) -> None:
    assert mend(corpus_words, question) == question


def test_what_the_corpus_writes_is_no_typo() -> None:
    """A name the corpus spells this way (its character pairs are in the passages) is not mended into a corpus word."""
    words_of = {"锦德罗": 3}
    assert Homophones(words_of, words_of.__getitem__, known_word).mended("锦地罗分布在哪", words("锦地罗分布在哪")) != "锦地罗分布在哪"
    h = Homophones(words_of, words_of.__getitem__, known_word, ["锦地罗又称锦德罗。"])
    assert h.mended("锦地罗分布在哪", words("锦地罗分布在哪")) == "锦地罗分布在哪"


def test_the_likeliest_corpus_word_wins() -> None:
    """Two corpus words read like the typo: the one in more passages."""
    counts = {"凭证": 30, "平整": 2}
    h = Homophones(counts, counts.__getitem__, known_word)
    assert h.correction("平证") == "凭证"
    assert h.correction("凭证") == "凭证"  # a corpus word is its own nearest
    assert h.correction("医保") is None


def test_a_segmentation_of_another_text_changes_nothing(corpus_words: Homophones) -> None:
    assert corpus_words.mended("医保电子平证", ["医保", "电子"]) == "医保电子平证"


def test_a_typo_finds_what_the_word_finds(retriever: Retriever) -> None:
    right = retriever.answer("外国人怎么激活医保电子凭证", 5)
    typo = retriever.answer("外国人怎么激活医保电子平证", 5)
    assert [(h.passage.doc_id, h.passage.start) for h in typo.hits] == [(h.passage.doc_id, h.passage.start) for h in right.hits]
    assert typo.confidence.confidence == pytest.approx(right.confidence.confidence)


def test_turned_off_the_typo_is_searched_as_typed(
    retriever: Retriever, encoders: dict[str, Encoder], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RAG_HOMOPHONES", "0")
    assert Settings.from_env().homophones is False
    off = Retriever(replace(retriever.settings, homophones=False), encoders, retriever.index)
    right = retriever.answer("外国人怎么激活医保电子凭证", 5).confidence.confidence
    assert off.answer("外国人怎么激活医保电子平证", 5).confidence.confidence != pytest.approx(right)
