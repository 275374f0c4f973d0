"""English -> Chinese expansion: the dictionary finds candidates, the second encoder picks the sense."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from rag.encoders import SECOND
from rag.expand import RERANK_POOL, EncoderSimilarity, expand_english, rank_by_similarity, reverse_cedict, similarity_words
from rag.retrieve import Retriever


def test_dictionary_finds_app_names_and_phrases() -> None:
    assert "支付宝" in expand_english("Can a foreigner activate it through Alipay?")
    assert "二维码" in expand_english("show the QR code at the pharmacy")
    assert expand_english("what is it") == []  # question words carry nothing to translate


def test_an_e_prefix_reads_as_electronic() -> None:
    # "e-card": 电子 (electronic) as well as the card; the dictionary has no entry for the hyphenated word.
    assert "电子" in expand_english("Does the e-card work in another province?")
    assert "电子" in expand_english("activate the e-voucher") and "凭证" in expand_english("activate the e-voucher")
    assert "电子" not in expand_english("does the card work")


def test_a_phrase_the_corpus_lacks_is_translated_word_by_word(retriever: Retriever) -> None:
    vocabulary = retriever.index.vocabulary
    assert "健康保险" in expand_english("Can I use my health insurance card")  # the phrase's own entry
    assert "健康保险" not in vocabulary
    tokens = expand_english("Can I use my health insurance card", vocabulary)
    assert "保险" in tokens and "健康" in tokens


def test_pinyin_names_and_words_are_read_when_english_has_no_translation(retriever: Retriever) -> None:
    vocabulary = retriever.index.vocabulary
    tokens = expand_english("Can people with a hukou from elsewhere pay in Shenyang?", vocabulary)
    assert "户口" in tokens and "沈阳" in tokens  # 湖口 and 糊口 read the same, but the corpus has neither
    assert expand_english("who taught Bian Que medicine", vocabulary)[0] == "扁鹊"  # a name, written spaced
    assert "支付宝" in expand_english("pay with zhifubao", vocabulary)
    assert "嫦娥" not in expand_english("I want to change my phone")  # an English word is never read as pinyin


def test_similarity_reorders_the_pool_and_the_dictionary_breaks_ties() -> None:
    closeness = {"卡片": 0.9, "信用卡": 0.5, "身份证": 0.2}

    def similarity(english: str, candidates: list[str]) -> Sequence[float]:
        assert english == "card"
        return [closeness.get(c, 0.0) for c in candidates]

    assert rank_by_similarity("card", ["身份证", "信用卡", "卡片"], similarity) == ["卡片", "信用卡", "身份证"]
    assert rank_by_similarity("card", ["甲", "乙"], similarity) == ["甲", "乙"]  # equal similarity: dictionary order
    many = [f"词{i}" for i in range(RERANK_POOL + 3)]
    assert len(rank_by_similarity("card", many, similarity)) == RERANK_POOL


def test_use_picks_the_sense_the_corpus_means(retriever: Retriever) -> None:
    vocabulary, similarity = retriever.index.vocabulary, retriever.translation_similarity
    assert similarity is not None
    # "city" in the dictionary order brings 重庆 (glossed "Chongqing city"); USE prefers 城乡 (urban and rural).
    plain = expand_english("are the e-card features the same in every city", vocabulary, per_word=2)
    ranked = expand_english("are the e-card features the same in every city", vocabulary, per_word=2, similarity=similarity)
    assert "重庆" in plain and "重庆" not in ranked
    # "work": 工作 (a job, to function) before 劳动 (labour).
    plain = expand_english("Does the e-card work in another province?", vocabulary, per_word=2)
    ranked = expand_english("Does the e-card work in another province?", vocabulary, per_word=2, similarity=similarity)
    assert plain.index("劳动") < plain.index("工作") and ranked.index("工作") < ranked.index("劳动")


def test_encoder_similarity_keeps_exact_vectors_and_a_bounded_cache(retriever: Retriever) -> None:
    use = retriever.encoders[SECOND]
    similarity = EncoderSimilarity(use, max_cached=4)
    words = ["card", "卡片", "信用卡", "身份证"]
    expected = use.encode_words(words)  # type: ignore[attr-defined]
    np.testing.assert_allclose(similarity.vectors(words), expected, atol=1e-6)
    assert float(use.encode_queries(["card"])[0] @ expected[0]) < 0.9999, "a question's English words would be mapped"
    assert np.allclose(similarity("card", words[1:]), expected[1:] @ expected[0], atol=1e-6)
    similarity.vectors(["city", "城市"])  # over the bound: the cache starts over
    assert len(similarity._vectors) <= 4
    np.testing.assert_allclose(similarity.vectors(["card"]), expected[:1], atol=1e-6)


def test_similarity_words_are_the_keys_a_vocabulary_reorders_and_their_candidates() -> None:
    vocabulary = {"卡片", "卡", "发卡", "城市"}
    words = similarity_words(vocabulary, 10_000)
    table = reverse_cedict()
    keys = [w for w in words if w.isascii()]
    assert "card" in keys and {"卡片", "卡", "发卡"} <= set(words)
    assert all(sum(c in vocabulary for c, _ in table[k]) >= 2 for k in keys), "a key with one candidate is never re-ordered"
    assert set(words) - set(keys) <= vocabulary
    assert len(similarity_words(vocabulary, 5)) <= 5


def test_a_warmed_similarity_embeds_no_word_for_a_first_seen_question(retriever: Retriever) -> None:
    use = retriever.encoders[SECOND]
    embedded: list[str] = []

    def recording(texts: list[str]) -> np.ndarray:
        embedded.extend(texts)
        return use.encode_words(texts)  # type: ignore[attr-defined,no-any-return]

    question = "Can I use the electronic card at a pharmacy in another city?"
    cold = EncoderSimilarity(use)
    cold.embed = recording
    expected = expand_english(question, retriever.index.vocabulary, similarity=cold)
    assert any(not w.isascii() for w in embedded), "the cold cache embeds the Chinese candidates"
    warmed = EncoderSimilarity(use)
    warmed.warm_for(retriever.index.vocabulary)
    embedded.clear()
    warmed.embed = recording
    assert expand_english(question, retriever.index.vocabulary, similarity=warmed) == expected
    assert embedded == [], f"embedded at question time: {embedded}"


def test_warm_up_embeds_the_index_vocabulary_words(retriever: Retriever) -> None:
    similarity = retriever.translation_similarity
    assert similarity is not None
    retriever.warm_up()
    assert set(similarity_words(retriever.index.vocabulary, similarity.max_cached // 2)) <= set(similarity._vectors)
