"""Real public documents nobody here wrote (tests/data/public/README.md: two district government
annual reports as PDF, a State Council regulation and a Guangzhou municipal notice as saved web
pages), indexed by the real build: questions a person would ask find the passage holding the answer
in the top 3, every citation slices its document exactly, and PDF citations name the right page."""

from __future__ import annotations

import re
import shutil
from dataclasses import replace
from pathlib import Path
from typing import NamedTuple

import pytest

from rag.config import Settings
from rag.encoders import Encoder
from rag.index import build_index, load_index
from rag.ingest import read_document
from rag.retrieve import Retriever

pytestmark = pytest.mark.slow
PUBLIC = Path(__file__).resolve().parent / "data" / "public"

REPORT_2024 = "hongze-2024-open-government-report.pdf"
REPORT_2023 = "hongze-2023-open-government-report.pdf"
REGULATION = "market-entity-registration-regulation.html"
ALLOWANCE = "guangzhou-subsistence-allowance-2025.html"
# document -> (format, title as the reader gives it, number of PDF pages)
DOCUMENTS = {
    REPORT_2024: ("pdf", "淮安市洪泽区人民政府2024 年政府信息公开工作年度报告", 5),
    REPORT_2023: ("pdf", "洪泽区人民政府2023 年政府信息公开工作年度报告", 5),
    REGULATION: ("html", "广州市市场监督管理局网站-中华人民共和国市场主体登记管理条例", 0),
    ALLOWANCE: ("html", "广州市民政局 广州市财政局关于印发我市2025年最低生活保障及相关社会救助标准的通知 - 广州市人民政府门户网站", 0),
}


class Question(NamedTuple):
    doc_id: str
    question: str
    answer: str  # a string the expected passage contains
    page: int | None = None  # PDF page (1-based) the answer is printed on, as a reader of the PDF sees it


QUESTIONS = [
    Question(REPORT_2024, "2024年洪泽区在政府网站上主动发布了多少条信息？", "主动发布各类政府信息 2428 条", 1),
    Question(REPORT_2024, "洪泽区2024年作出了多少件行政处罚决定？", "行政处罚 | 2776", 3),
    Question(REPORT_2024, "洪泽区政府2024年的信息公开工作还存在哪些不足？", "个别部门对复杂", 4),
    Question(
        REPORT_2023, "How many requests for government information did Hongze district receive in 2023?", "受理政府信息公开申请 21 件", 1
    ),
    Question(REPORT_2023, "2023年洪泽区主动公开了多少条政府信息？", "主动公开政府信息 1136 条", 1),
    Question(REPORT_2023, "洪泽区2023年信息公开工作存在什么问题，打算怎么改进？", "依申请公开工作规范性还有待提", 4),
    Question(REGULATION, "登记机关多久内要办完登记？", "应当在3个工作日内予以登记"),
    Question(REGULATION, "未经登记就擅自经营，要罚多少钱？", "未经设立登记从事经营活动的"),
    Question(REGULATION, "How long may a business suspend its operations?", "歇业的期限最长不得超过3年"),
    Question(ALLOWANCE, "孤儿每个月的养育标准是多少？", "每人每月2976元"),
    Question(ALLOWANCE, "流浪乞讨人员的伙食标准是多少？", "每人每月785.4元"),
    Question(ALLOWANCE, "What is the minimum living security standard in Guangzhou?", "每人每月1309元"),
]


@pytest.fixture(scope="module")
def public(settings: Settings, encoders: dict[str, Encoder], tmp_path_factory: pytest.TempPathFactory) -> Retriever:
    """One real index over copies of the public documents (the folder's README is not a document)."""
    root = tmp_path_factory.mktemp("public")
    corpus = root / "corpus"
    corpus.mkdir()
    for name in DOCUMENTS:
        shutil.copyfile(PUBLIC / name, corpus / name)
    s = replace(settings, corpus_dir=corpus, index_dir=root / "index")
    report = build_index(s, encoders, progress=False)
    assert not report.skipped, report.skipped
    return Retriever(s, encoders, load_index(s))


def test_every_public_document_is_indexed_and_every_citation_slices_exactly(public: Retriever) -> None:
    index = public.index
    assert set(index.documents) == set(DOCUMENTS) == {p.doc_id for p in index.passages}
    for doc_id, (fmt, title, pages) in DOCUMENTS.items():
        doc = index.documents[doc_id]
        assert (doc.format, doc.title, len(doc.pages)) == (fmt, title, pages)
    for p in index.passages:
        doc = index.documents[p.doc_id]
        assert doc.text[p.start : p.end] == p.text
        assert p.format == doc.format
        if p.format == "pdf":
            assert p.page_start is not None and p.page_end is not None and 1 <= p.page_start <= p.page_end <= len(doc.pages)
        else:
            assert p.page_start is None and p.page_end is None
    # furniture that must not reach the text: PDF page numbers ("- 1 -"), the web pages' scripts
    assert "- 1 -" not in index.documents[REPORT_2024].text
    assert "NFCMS_SITE_ID" not in index.documents[REGULATION].text
    assert any(q.question.isascii() for q in QUESTIONS)  # at least one English question


def test_the_readers_drop_portal_furniture_and_keep_paragraphs_and_table_rows() -> None:
    """What the real files once showed wrong (docs/formats.md): the notice read twice (a display:none
    copy), div menus kept and their labels made headings, indented paragraphs split after their first
    line, section 五 of the 2023 report not joined at all, short table rows run together."""
    docs = {name: read_document(PUBLIC / name, PUBLIC) for name in DOCUMENTS}
    allowance = docs[ALLOWANCE]
    assert allowance.text.count("（四）孤儿养育标准和事实无人抚养儿童基本生活补贴标准为每人每月2976元。") == 1
    for name in (ALLOWANCE, REGULATION):
        doc = docs[name]
        headings = [doc.text[b.start : b.end] for b in doc.blocks or () if b.kind == "heading"]
        assert doc.title and headings[0] in doc.title  # the article's <h1> comes first
        assert not {"语言", "手机端", "微信", "微博"} & set(headings)
        assert not {"首页", "政务公开", "政务服务", "关怀版"} & set(doc.text.split("\n"))
        assert "版权所有" not in doc.text and "当前位置" not in doc.text
    assert [b.kind for b in allowance.blocks or ()].count("heading") == 1
    for name in (REPORT_2023, REPORT_2024):
        doc = docs[name]
        rows = [doc.text[b.start : b.end] for b in doc.blocks or () if b.kind == "table_row"]
        assert "规章 | 0 | 0 | 0" in rows and not re.search(r"\d行政规范性文件|\d第二十条", doc.text)
        assert "本报告由淮安市洪泽区人民政府办公室根据《中华人民共和国政府信息公开条例》" in doc.text  # first line joined
    rows_2024 = docs[REPORT_2024].text.split("\n")
    assert "行政规范性文件 | 3 | 0 | 8" in rows_2024 and "行政许可 | 9487" in rows_2024
    section_5 = next(line for line in docs[REPORT_2023].text.split("\n") if line.startswith("2023 年，洪泽区政府信息公开工作取得"))
    assert "依申请公开工作规范性还有待提高" in section_5 and section_5.endswith("思想认识和业务工作水平。")


@pytest.mark.parametrize("q", QUESTIONS, ids=[f"{q.doc_id.split('-')[0]}-{i}" for i, q in enumerate(QUESTIONS)])
def test_question_finds_the_passage_with_its_answer_in_the_top_3(public: Retriever, q: Question) -> None:
    hits = public.search(q.question, 3)
    index = public.index
    for hit in hits:
        assert index.documents[hit.passage.doc_id].text[hit.passage.start : hit.passage.end] == hit.passage.text
    found = [h.passage for h in hits if h.passage.doc_id == q.doc_id and q.answer in h.passage.text]
    assert found, (q.question, [(h.passage.doc_id, h.passage.text[:60]) for h in hits])
    if q.page is None:
        return
    passage = found[0]
    doc = index.documents[q.doc_id]
    at = doc.text.index(q.answer, passage.start)
    page = next(pg.number for pg in doc.pages if pg.start <= at < pg.end)
    assert page == q.page, (q.answer, page)
    assert passage.page_start is not None and passage.page_end is not None
    assert passage.page_start <= q.page <= passage.page_end, (passage.page_start, passage.page_end)
