"""Keyword tokens, rank fusion and settings: small pure pieces, checked on their own."""

from __future__ import annotations

import re

import numpy as np
import pytest

from rag.config import Settings
from rag.errors import RagError
from rag.fusion import Ranking, rrf
from rag.tokenize import tokenize


def test_chinese_is_segmented_in_search_mode() -> None:
    tokens = tokenize("外国人可以通过支付宝激活医保电子凭证吗?")
    assert {"外国人", "支付宝", "激活", "医保"} <= set(tokens)
    assert "吗" not in tokens and "?" not in tokens


def test_latin_words_are_lower_cased_and_stopwords_dropped() -> None:
    assert tokenize("Can a foreigner activate it through Alipay?") == ["foreigner", "activate", "through", "alipay"]


def test_mixed_language_question() -> None:
    tokens = tokenize("医保 e-voucher 怎么激活")
    assert "医保" in tokens and "voucher" in tokens and "激活" in tokens


def test_rrf_rewards_agreement_and_is_deterministic() -> None:
    a = Ranking(np.array([1, 2, 3]), np.array([0.9, 0.8, 0.7]))
    b = Ranking(np.array([3, 1, 4]), np.array([5.0, 4.0, 3.0]))
    fused = rrf([a, b], k=60)
    assert fused.ids.tolist()[:2] == [1, 3]
    assert fused.ids.tolist() == rrf([a, b], k=60).ids.tolist()
    assert set(fused.ids.tolist()) == {1, 2, 3, 4}


def test_rrf_weights_and_empty_rankings() -> None:
    a = Ranking(np.array([1]), np.array([1.0]))
    b = Ranking(np.array([2]), np.array([1.0]))
    assert rrf([a, b], weights=[1.0, 2.0]).ids.tolist() == [2, 1]
    assert rrf([]).ids.size == 0


def test_float_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAG_HUB_PENALTY_EN", "0.5")
    assert Settings.from_env().hub_penalty("en") == 0.5
    monkeypatch.setenv("RAG_HUB_PENALTY_EN", "lots")
    with pytest.raises(RagError, match="RAG_HUB_PENALTY_EN must be a number"):
        Settings.from_env()


@pytest.mark.parametrize(("name", "value", "message"), [
    ("RAG_CANDIDATES", "0", "RAG_CANDIDATES must be at least 1, got 0"),
    ("RAG_BATCH_SIZE", "0", "RAG_BATCH_SIZE must be at least 1"),
    ("RAG_TRANSLATIONS_PER_WORD", "-1", "RAG_TRANSLATIONS_PER_WORD must be at least 0"),
    ("RAG_LATE_WEIGHT_ZH", "nan", "RAG_LATE_WEIGHT_ZH must be a finite number"),
    ("RAG_LATE_WEIGHT_EN", "-0.5", "RAG_LATE_WEIGHT_EN must not be negative"),
    ("RAG_CONFIDENCE_THRESHOLD", "5", "RAG_CONFIDENCE_THRESHOLD must be at most 1"),
    ("RAG_FUSION", "borda", "RAG_FUSION must be zscore or rrf"),
    ("RAG_WEIGHTS_ZH", "1,2", "RAG_WEIGHTS_ZH must be three numbers"),
    ("RAG_WEIGHTS_EN", "inf,1,1", "RAG_WEIGHTS_EN must be three numbers"),
])  # fmt: skip
def test_settings_a_search_cannot_use_are_refused_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, message: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(RagError, match=re.escape(message)):
        Settings.from_env()


def test_the_edge_values_that_turn_a_part_off_are_accepted(monkeypatch: pytest.MonkeyPatch) -> None:
    edges = (("RAG_LATE_DEPTH", "0"), ("RAG_TRANSLATIONS_PER_WORD", "0"), ("RAG_CONFIDENCE_THRESHOLD", "0"), ("RAG_WEIGHTS_EN", "2,0,1"))
    for name, value in (*edges, ("RAG_RELOAD_POLL_MS", "0")):  # 0: `rag serve` never polls (README), as bench/perf_common.py runs it
        monkeypatch.setenv(name, value)
    settings = Settings.from_env()
    assert (settings.late_depth, settings.translations_per_word, settings.weights("en")) == (0, 0, [2.0, 0.0, 1.0])
    assert settings.reload_poll_ms == 0
