"""The `answerable` flag: two of its signals as pure functions, the retired rule and its settings, and the flag on the real corpus."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest

from rag import keyword
from rag.answerable import coverage, disagreement, is_answerable, weigh
from rag.config import Settings
from rag.errors import RagError
from rag.fusion import Ranking
from rag.retrieve import Retriever
from rag.tokenize import detect_language


def _ranking(*ids: int) -> Ranking:
    return Ranking(np.array(ids, dtype=np.int64), np.linspace(1, 0, len(ids), dtype=np.float32))


def test_disagreement_is_zero_when_every_signal_puts_the_top_passage_first() -> None:
    assert disagreement([_ranking(7, 1), _ranking(7, 2), _ranking(7)], top=7, depth=100) == 0.0
    assert disagreement([_ranking(1, 7), _ranking(2, 3, 7)], top=7, depth=100) == pytest.approx(math.log(2) + math.log(3))
    assert disagreement([_ranking(7), _ranking(1, 2)], top=7, depth=100) == pytest.approx(math.log(101))  # missing: depth + 1


def test_coverage_weighs_rare_and_missing_words_most() -> None:
    index = keyword.build([["医保", "激活"], ["医保", "支付宝"], ["医保", "护照"]])
    assert coverage(weigh(index, [["医保"], ["支付宝"]]), top=[1]) == 1.0
    only_common = coverage(weigh(index, [["医保"], ["支付宝"]]), top=[0])
    assert 0 < only_common < 0.5  # 医保 is in every passage, so it weighs little
    # A word the corpus lacks weighs more than any word it has; an English word is found through a translation.
    assert coverage(weigh(index, [["支付宝"], ["红烧肉"]]), top=[1]) < 0.5
    assert coverage(weigh(index, [["alipay", "支付宝"]]), top=[1]) == 1.0
    assert coverage(weigh(index, []), top=[0]) == 1.0  # nothing to look for is no evidence


def test_the_flag_needs_both_signals_to_say_no() -> None:
    assert not is_answerable(5.0, 0.1, (4.0, 0.3))
    assert is_answerable(3.0, 0.1, (4.0, 0.3))  # the signals agree on a passage
    assert is_answerable(5.0, 0.5, (4.0, 0.3))  # the top passages hold the question's words
    assert is_answerable(9.0, 0.0, None)  # the flag is off


def test_thresholds_come_from_settings_per_language() -> None:
    settings = Settings(answerable_zh="1.5,0.25", answerable_en="")
    assert settings.answerable_thresholds("zh") == (1.5, 0.25)
    assert settings.answerable_thresholds("en") is None
    with pytest.raises(RagError, match="RAG_ANSWERABLE_ZH"):
        Settings(answerable_zh="high").answerable_thresholds("zh")


def test_english_words_count_with_their_translations(retriever: Retriever) -> None:
    tokens, units = retriever.keyword_query("Can a foreigner activate it through Alipay?", retriever.index)
    assert "支付宝" in tokens
    assert ["alipay", "支付宝"] in [u[:2] for u in units]
    _, units = retriever.keyword_query("外国人能用支付宝激活吗", retriever.index)
    assert all(len(u) == 1 for u in units)


OFF_TOPIC = ["红烧肉怎么做", "今天上海天气怎么样", "best hotpot restaurants in Chongqing", "How do I bake sourdough bread?"]
ANSWERED = [
    "Can a foreigner activate it through Alipay?",
    "外国人可以用哪些证件绑定医保电子凭证",
    "How many people can bind one person's e-voucher?",
]


@pytest.mark.parametrize("question", OFF_TOPIC)
def test_off_topic_questions_are_not_answerable(retriever: Retriever, question: str) -> None:
    answer = retriever.answer(question, 5)
    assert not answer.confidence.answerable, answer.confidence
    assert len(answer.hits) == 5  # the closest passages still come back


@pytest.mark.parametrize("question", ANSWERED)
def test_questions_the_corpus_answers_are_answerable(retriever: Retriever, question: str) -> None:
    assert retriever.answer(question, 5).confidence.answerable


def test_the_flag_can_be_turned_off(retriever: Retriever) -> None:
    off = Retriever(replace(retriever.settings, confidence_threshold=0.0), retriever.encoders, retriever.index)
    assert off.answer("红烧肉怎么做", 3).confidence.answerable


def test_the_flag_is_the_confidence_against_the_threshold(retriever: Retriever) -> None:
    assert retriever.settings.answerable_thresholds("zh") is None  # the retired rule is off by default
    for question in [*OFF_TOPIC, *ANSWERED]:
        c = retriever.answer(question, 5).confidence
        assert c.answerable == (c.confidence >= retriever.threshold(detect_language(question)))
