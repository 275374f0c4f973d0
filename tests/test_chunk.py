"""Line classification, section paths and passage splitting, on the real corpus and small cases."""

from __future__ import annotations

from pathlib import Path

import pytest

from rag.chunk import (
    RELATED_MARKER,
    chunk_document,
    classify,
    embedding_text,
    embedding_units,
    is_furniture,
    looks_like_heading,
    sentence_spans,
    split_lines,
)
from rag.ingest import load_corpus

CORPUS = Path(__file__).resolve().parent.parent / "corpus"


@pytest.fixture(scope="module")
def corpus_passages() -> dict[str, tuple[str, list]]:
    docs, skipped = load_corpus(CORPUS)
    assert not skipped
    return {d.id: (d.text, chunk_document(d.id, d.text)) for d in docs}


@pytest.mark.parametrize(
    "line", ["大家都在搜", "相关推荐", "首页 顶部", "-", "健康新闻 2025-03-04", "提示:本内容不能代替面诊,如有不适请尽快就医。"]
)
def test_furniture_is_recognised(line: str) -> None:
    assert is_furniture(line)


@pytest.mark.parametrize(
    "line", ["支付宝渠道", "申请电子医保卡的条件和流程", "通过“粤医保”微信小程序申请", "外国护照持有者如何绑定中国的银行卡"]
)
def test_headings_are_short_lines_without_closing_punctuation(line: str) -> None:
    assert looks_like_heading(line)


@pytest.mark.parametrize(
    "line",
    [
        "- 护照:有效期内的护照原件。",
        "1. 打开支付宝:在手机上打开支付宝应用。",
        "线上服务:",
        "外国护照可以绑定电子医保。根据最新的政策",
        "• 电子医保卡:方便携带",
    ],
)
def test_list_items_and_sentences_are_not_headings(line: str) -> None:
    assert not looks_like_heading(line)


def test_heading_needs_something_after_it() -> None:
    lines = classify(split_lines("标题\n正文第一句。\n结尾行"))
    assert [line.kind for line in lines] == ["heading", "content", "content"]


def test_every_passage_is_the_exact_slice(corpus_passages: dict) -> None:
    for text, passages in corpus_passages.values():
        assert passages
        for p in passages:
            assert text[p.start : p.end] == p.text
            assert p.line_start == text.count("\n", 0, p.start) + 1
            assert p.line_end == text.count("\n", 0, p.end) + 1
            assert p.text == p.text.strip()


def test_passages_stay_under_the_size_limit_and_never_hold_furniture(corpus_passages: dict) -> None:
    for _, passages in corpus_passages.values():
        for p in passages:
            assert len(p.text) <= 300
            for noise in ("大家都在搜", "首页 顶部", "健康新闻 2025-03-04", RELATED_MARKER + "\n"):
                assert noise not in p.text


def test_no_content_is_lost(corpus_passages: dict) -> None:
    """Every non-furniture, non-heading line lands in some passage."""
    for text, passages in corpus_passages.values():
        covered = "".join(p.text for p in passages)
        for line in classify(split_lines(text)):
            if line.kind == "content":
                assert line.text in covered


def test_section_paths_follow_the_page_structure(corpus_passages: dict) -> None:
    _, family = corpus_passages["family-e-medical-card.txt"]
    by_text = {p.text[:12]: p.section for p in family}
    assert by_text["• 必须与被添加者存在亲友关系"[:12]] == ("怎样为他人申请电子医保卡", "申请电子医保卡的条件和流程", "亲友关系要求")
    assert by_text["1. 打开支付宝:在手机上打开支付宝应用。"[:12]] == (
        "怎样为他人申请电子医保卡",
        "如何在线上申请电子医保卡",
        "通过支付宝申请",
    )
    _, foreign = corpus_passages["foreigner-e-voucher.txt"]
    alipay = next(p for p in foreign if p.text.startswith("支付宝渠道目前仅支持"))
    assert alipay.section == ("外国护照可以绑定电子医保", "绑定流程", "支付宝渠道")
    assert alipay.title == "外国护照可以绑定电子医保"


def test_each_related_article_is_its_own_section(corpus_passages: dict) -> None:
    _, family = corpus_passages["family-e-medical-card.txt"]
    related = [p for p in family if RELATED_MARKER in p.section]
    titles = {p.section[-1] for p in related}
    assert len(titles) == 19
    assert "嘉兴车牌号码一览表" in titles
    assert all(len(p.section) == 3 for p in related)


def test_sentences_are_never_cut_unless_too_long() -> None:
    sentence = "这是一个句子。"
    text = "标题\n" + sentence * 60 + "\n"
    passages = chunk_document("d.txt", text, max_chars=100)
    assert len(passages) > 1
    for p in passages:
        assert len(p.text) <= 100
        assert p.text.endswith("。") and p.text.startswith("这是")
    assert "".join(p.text for p in passages) == sentence * 60


def test_an_overlong_sentence_is_cut_at_commas() -> None:
    text = "标题\n" + ",".join(["很长的一段话没有句号"] * 40) + "。"
    passages = chunk_document("d.txt", text, max_chars=100)
    assert all(len(p.text) <= 100 for p in passages)
    assert all(text[p.start : p.end] == p.text for p in passages)
    assert "".join(p.text for p in passages) == text.split("\n", 1)[1]


def test_sentence_spans_cover_mixed_punctuation() -> None:
    text = "第一句。第二句!Third one? 第四句;最后"
    spans = sentence_spans(text, 0, len(text))
    assert [text[s.start : s.end] for s in spans] == ["第一句。", "第二句!", "Third one?", "第四句;", "最后"]


def test_crlf_files_keep_exact_offsets() -> None:
    text = "标题\r\n第一段。\r\n\r\n小标题\r\n- 列表项一。\r\n- 列表项二。\r\n"
    passages = chunk_document("d.txt", text)
    assert passages
    for p in passages:
        assert text[p.start : p.end] == p.text


def test_markdown_headings_set_levels() -> None:
    text = "# 指南\n\n## 第一部分\n\n### 细节\n\n内容一。\n\n## 第二部分\n\n内容二。\n"
    passages = chunk_document("g.md", text)
    assert [p.section for p in passages] == [("指南", "第一部分", "细节"), ("指南", "第二部分")]


def test_empty_document_gives_no_passages() -> None:
    assert chunk_document("e.txt", "") == []
    assert chunk_document("e.txt", "\n\n  \n") == []


def test_sentence_units_cover_each_passage_with_its_section_path(corpus_passages: dict) -> None:
    passages = [p for _, ps in corpus_passages.values() for p in ps]
    texts, owners = embedding_units(passages, "passage")
    assert texts == [embedding_text(p) for p in passages] and owners == list(range(len(passages)))
    texts, owners = embedding_units(passages, "sentence")
    assert len(texts) > len(passages) and owners == sorted(owners) and set(owners) == set(range(len(passages)))
    for i, p in enumerate(passages):
        mine = [t for t, o in zip(texts, owners, strict=True) if o == i]
        context = embedding_text(p, "")
        assert all(t.startswith(context) for t in mine)
        # The sentences, in order, are the whole passage (only whitespace between them is dropped).
        assert "".join("".join(t[len(context) :] for t in mine).split()) == "".join(p.text.split())
    with pytest.raises(ValueError, match="unknown embedding unit"):
        embedding_units(passages, "word")
