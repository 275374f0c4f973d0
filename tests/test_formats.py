"""Real public documents nobody here wrote (tests/data/public/README.md): the readers give sensible
text containing the answers to a few questions, and every passage slices the canonical text exactly."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from rag.chunk import chunk
from rag.ingest import load_corpus, read_document

PUBLIC = Path(__file__).resolve().parent / "data" / "public"
UNSTRUCTURED = Path("/work/.mirror/Unstructured-IO+unstructured/repo")
UNSTRUCTURED_COMMIT = "06100c45c606c8de9b46d94d2f4c9859b4b46a15"

# question -> answer string the document's text must contain
QUESTIONS = {
    "chatchat-ocr_test.docx": {"文档里的第一句话是什么?": "我是文字", "表格第一行写了什么?": "我是表格1 | 我是表格2"},
    "chatchat-ocr_test.pdf": {"PDF 里写了什么字?": "我是文字"},
}
TEXTBOOK = {
    "这本教材由哪个单位监制?": "中华人民共和国国务院侨务办公室",
    "主编是谁?": "贾益民",
    "监制人是谁?": "监制人： 刘泽彭",
    "美术编辑是谁?": "李海燕",
    "Who translated it into English?": "英文翻译：戴 薇",
}


def test_public_documents_read_with_their_answers() -> None:
    docs, skipped = load_corpus(PUBLIC)
    assert not skipped
    by_id = {d.id: d for d in docs}
    for doc_id, questions in QUESTIONS.items():
        doc = by_id[doc_id]
        for answer in questions.values():
            assert answer in doc.text, (doc_id, answer)
        for p in chunk(doc):
            assert doc.text[p.start : p.end] == p.text
    docx = by_id["chatchat-ocr_test.docx"]
    assert [b.kind for b in docx.blocks or ()] == ["paragraph", "table_row", "table_row"]
    assert [p.page_start for p in chunk(by_id["chatchat-ocr_test.pdf"])] == [1]


@pytest.mark.skipif(not UNSTRUCTURED.exists(), reason="no local mirror of Unstructured-IO/unstructured")
def test_a_real_chinese_textbook_page(tmp_path: Path) -> None:
    data = subprocess.run(
        ["git", f"--git-dir={UNSTRUCTURED}", "show", f"{UNSTRUCTURED_COMMIT}:example-docs/simplified_chinese.pdf"],
        capture_output=True,
        check=True,
    ).stdout
    (tmp_path / "simplified_chinese.pdf").write_bytes(data)
    doc = read_document(tmp_path / "simplified_chinese.pdf", tmp_path)
    for answer in TEXTBOOK.values():
        assert answer in doc.text, answer
    assert [p.number for p in doc.pages] == [1]
    lines = doc.text.split("\n")
    assert "监制人： 刘泽彭" in lines and "主制编： 贾益民" in lines  # one credit per line, not run together
    for p in chunk(doc):
        assert doc.text[p.start : p.end] == p.text and p.page_start == 1
