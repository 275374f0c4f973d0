"""What a person typed read as the index knows it: Traditional as Simplified, full-width as half-width (rag/normalize.py)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import opencc
import pytest
from support import write_corpus

from rag.config import Settings
from rag.encoders import Encoder
from rag.highlight import best_sentence
from rag.index import build_index, load_index
from rag.normalize import halfwidth, searchable, unshouted
from rag.retrieve import Retriever
from rag.simplified import _HK_VARIANTS, _TABLES, _load, to_simplified
from rag.tokenize import tokenize


@pytest.mark.parametrize(
    ("traditional", "simplified"),
    [
        ("外國人可以用支付寶激活醫保電子憑證嗎？", "外国人可以用支付宝激活医保电子凭证吗？"),
        ("我想幫我媽申請電子醫保卡，需要什麼材料", "我想帮我妈申请电子医保卡，需要什么材料"),
        ("綫上辦理", "线上办理"),  # a variant character (綫, not 線)
        ("社區衞生服務中心", "社区卫生服务中心"),  # a Hong Kong form (衞, not 衛)
        ("反覆確認", "反复确认"),  # a phrase entry: 覆 alone is also Simplified
    ],
)
def test_traditional_text_becomes_simplified(traditional: str, simplified: str) -> None:
    assert to_simplified(traditional) == simplified
    assert to_simplified(simplified) == simplified  # and stays so


@pytest.mark.parametrize(
    "text", ["外国人怎么激活医保电子凭证", "How do I activate the e-voucher?", "12345 🙂 e-card", "", "台湾 户口 核酸"]
)
def test_simplified_english_and_the_rest_are_returned_as_they_were(text: str) -> None:
    assert to_simplified(text) is text or to_simplified(text) == text


def test_the_shortcut_misses_no_character_the_tables_change() -> None:
    """Text holding none of the `changed` characters is returned unconverted: every entry that changes text holds one."""
    converter, variants, changed = _load()
    folder = Path(opencc.__file__).parent / "dictionary"
    for name in (*_TABLES, _HK_VARIANTS):
        for line in (folder / name).read_text(encoding="utf-8").splitlines():
            key = line.split("\t", 1)[0]
            if key and converter.convert(key.translate(variants)) != key:
                assert not changed.isdisjoint(key), (name, key)


def test_a_traditional_question_searches_as_its_simplified_form(retriever: Retriever) -> None:
    simplified = retriever.answer("外国人可以用支付宝激活医保电子凭证吗", 5)
    traditional = retriever.answer("外國人可以用支付寶激活醫保電子憑證嗎", 5)
    assert [h.passage.text for h in traditional.hits] == [h.passage.text for h in simplified.hits]
    assert [h.highlight for h in traditional.hits] == [h.highlight for h in simplified.hits]
    assert traditional.confidence.confidence == pytest.approx(simplified.confidence.confidence)


TRADITIONAL = {
    "港澳.txt": "港澳居民辦理醫保\n港澳居民來內地工作，可以憑港澳居民居住證參加職工醫療保險。\n"
    "參保後可在國家醫保服務平台激活醫保電子憑證。\n",
    "quokka.txt": "Quokka permits\nThe quokka permit office in Lanzhou opens at 7:15 on Tuesdays.\n",
}


def test_a_traditional_document_is_found_by_a_simplified_question_and_cited_in_its_own_characters(
    settings: Settings, encoders: dict[str, Encoder], tmp_path: Path
) -> None:
    s = replace(settings, corpus_dir=write_corpus(tmp_path / "corpus", TRADITIONAL), index_dir=tmp_path / "index")
    build_index(s, encoders, progress=False)
    index = load_index(s)
    retriever = Retriever(s, encoders, index)
    question = "港澳居民怎么参加职工医疗保险"
    assert "职工" in retriever.index.vocabulary and "職工" not in retriever.index.vocabulary  # BM25 holds Simplified tokens
    assert retriever.index.store.keyword(tokenize(question), 5).ids.size  # so a Simplified question's keywords match
    for asked in (question, "港澳居民怎麼參加職工醫療保險"):
        top = retriever.answer(asked, 1).hits[0]
        doc = index.documents[top.passage.doc_id]
        assert top.passage.doc_id == "港澳.txt"
        assert doc.text[top.passage.start : top.passage.end] == top.passage.text  # the document's own characters
        assert "職工醫療保險" in doc.text[top.highlight.start : top.highlight.end]
    passage = next(p for p in index.passages if "職工" in p.text)
    span = best_sentence(passage, ["激活", "电子凭证"])  # Simplified keywords pick the second sentence, not the first by default
    assert doc.text[span.start : span.end] == "參保後可在國家醫保服務平台激活醫保電子憑證。"


def test_full_width_latin_is_read_as_ascii_and_chinese_punctuation_too() -> None:
    assert halfwidth("Ｈｏｗ ｄｏ Ｉ ａｃｔｉｖａｔｅ ｔｈｅ ｅ－ｖｏｕｃｈｅｒ？　１２３４５") == "How do I activate the e-voucher? 12345"
    assert searchable("醫保ＡＰＰ怎麼用") == "医保APP怎么用"
    assert halfwidth("医保电子凭证。、") == "医保电子凭证。、"  # ideographic full stop and comma are not full-width ASCII


def test_a_full_width_english_question_searches_as_english(retriever: Retriever) -> None:
    typed = retriever.answer("Ｃａｎ ｆｏｒｅｉｇｎｅｒｓ ａｃｔｉｖａｔｅ ｔｈｅ ｅ－ｖｏｕｃｈｅｒ ｏｎ Ａｌｉｐａｙ？", 5)
    ascii_ = retriever.answer("Can foreigners activate the e-voucher on Alipay?", 5)
    assert [h.passage.text for h in typed.hits] == [h.passage.text for h in ascii_.hits]
    assert typed.confidence.confidence == pytest.approx(ascii_.confidence.confidence)


@pytest.mark.parametrize(
    ("typed", "read"),
    [
        ("HOW DO I ACTIVATE THE E-VOUCHER ON ALIPAY?", "How do i activate the e-voucher on alipay?"),
        ("Can I use the QR code in the APP at an ATM?", "Can I use the QR code in the APP at an ATM?"),  # acronyms typed normally
        ("复杂性类 RP、BPP、PP、BQP、MA 和 PH 在哪里可以找到？", "复杂性类 RP、BPP、PP、BQP、MA 和 PH 在哪里可以找到？"),  # Chinese
        ("WECHAT PAY?", "WECHAT PAY?"),  # too short to tell
    ],
)
def test_only_a_question_typed_with_caps_lock_is_put_in_sentence_case(typed: str, read: str) -> None:
    assert unshouted(typed) == read


def test_a_shouted_question_searches_as_typed_normally(retriever: Retriever) -> None:
    shouted = retriever.answer("HOW CAN I ADD MY MOTHER TO MY FAMILY ACCOUNT?", 3)
    normal = retriever.answer("How can i add my mother to my family account?", 3)
    assert [h.passage.text for h in shouted.hits] == [h.passage.text for h in normal.hits]
