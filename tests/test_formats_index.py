"""Format parity, end to end: the shipped corpus written as PDF, DOCX and HTML by bench/formats.py,
each indexed alone by the real build, answers the own question set like the .txt original, every
citation slices its document exactly (also through GET /documents/{id}), and PDF pages are right."""

from __future__ import annotations

import re
import sys
import unicodedata
from dataclasses import replace
from pathlib import Path
from urllib.parse import quote

import pytest
from support import thread_server

from rag.api import create_app
from rag.config import Settings
from rag.encoders import Encoder
from rag.evaluate import evaluate, load_questions
from rag.index import Index, build_index, load_index
from rag.retrieve import Retriever

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
from formats import write_formats

pytestmark = pytest.mark.slow
QUESTIONS = Path(__file__).resolve().parent / "data" / "questions.jsonl"
FORMATS = ("pdf", "docx", "html", "html-gbk")


@pytest.fixture(scope="module")
def built(settings: Settings, encoders: dict[str, Encoder], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Retriever]:
    """One real index per format (and the .txt original), each over its own corpus folder."""
    root = tmp_path_factory.mktemp("formats")
    folders = write_formats(root / "corpus", settings.corpus_dir)
    folders["html-gbk"] = root / "corpus" / "html-gbk"
    out = {}
    for fmt, folder in {"txt": settings.corpus_dir, **folders}.items():
        s = replace(settings, corpus_dir=folder, index_dir=root / f"index-{fmt}")
        build_index(s, encoders, progress=False)
        out[fmt] = Retriever(s, encoders, load_index(s))
    return out


def _recall5(retriever: Retriever) -> float:
    return float(evaluate(retriever, load_questions(QUESTIONS), k=10)["overall"]["recall@5"])


@pytest.fixture(scope="module")
def original(built: dict[str, Retriever]) -> float:
    return _recall5(built["txt"])


@pytest.mark.parametrize("fmt", FORMATS)
def test_each_format_alone_answers_like_the_txt_original(built: dict[str, Retriever], original: float, fmt: str) -> None:
    other = _recall5(built[fmt])
    assert abs(other - original) <= 0.02, (fmt, other, original)


@pytest.mark.parametrize("fmt", ("txt", *FORMATS))
def test_every_citation_slices_its_document_exactly(built: dict[str, Retriever], fmt: str) -> None:
    index = built[fmt].index
    assert index.passages and set(index.documents) == {p.doc_id for p in index.passages}
    for p in index.passages:
        assert index.documents[p.doc_id].text[p.start : p.end] == p.text
        assert p.format == ("txt" if fmt == "txt" else fmt.split("-")[0])
        assert (p.page_start is None) == (fmt != "pdf")


def _squash(text: str) -> str:
    """Comparable text: NFKC, no whitespace, no list bullets (the reader drops them, pdfium keeps them)."""
    return re.sub(r"[\s●•▪◦·]+", "", unicodedata.normalize("NFKC", text))


def test_pdf_pages_are_the_pages_a_reader_sees(built: dict[str, Retriever]) -> None:
    """Each passage starts on the page it cites, by pdfium's own text of that page."""
    import pypdfium2 as pdfium

    index: Index = built["pdf"].index
    folder = built["pdf"].settings.corpus_dir
    pages = {}
    for doc_id in index.documents:
        pdf = pdfium.PdfDocument(folder / doc_id)
        pages[doc_id] = [_squash(pdf[i].get_textpage().get_text_range()) for i in range(len(pdf))]
        assert [p.number for p in index.documents[doc_id].pages] == list(range(1, len(pdf) + 1))
    for p in index.passages:
        assert p.page_start is not None and p.page_end is not None and p.page_start <= p.page_end
        assert _squash(p.text)[:6] in pages[p.doc_id][p.page_start - 1], (p.page_start, p.text[:30])
    assert max(p.page_end or 0 for p in index.passages) >= 5  # the corpus really spans pages


def test_get_documents_checks_a_pdf_citation_over_http(built: dict[str, Retriever]) -> None:
    retriever = built["pdf"]
    with thread_server(create_app(retriever)) as client:
        answer = client.post("/search", json={"question": "外国人可以用哪些证件绑定医保电子凭证", "top_k": 3}).json()
        for hit in answer["passages"]:
            c = hit["citation"]
            assert c["format"] == "pdf" and c["page_start"] >= 1 and c["page_end"] >= c["page_start"]
            doc = client.get(f"/documents/{quote(c['document'])}").json()
            assert doc["format"] == "pdf" and doc["text"][c["start"] : c["end"]] == hit["text"]
            page = next(p for p in doc["pages"] if p["start"] <= c["start"] < p["end"])
            assert page["number"] == c["page_start"]
            sliced = client.get(f"/documents/{quote(c['document'])}", params={"start": c["start"], "end": c["end"]}).json()
            assert sliced["text"] == hit["text"] and sliced["length"] == len(doc["text"])
        assert client.get("/documents/nope.pdf").status_code == 404
        first = answer["passages"][0]["citation"]["document"]
        bad = client.get(f"/documents/{quote(first)}", params={"start": 10, "end": 5})
        assert bad.status_code == 422 and bad.json()["detail"].startswith("end:")
        assert client.get(f"/documents/{quote(first)}", params={"start": 10**9}).json()["detail"].startswith("start:")
