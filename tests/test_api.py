"""End to end: `rag serve` as a real process on 127.0.0.1, queried over HTTP with httpx."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from rag.api import undecodable_param
from rag.config import Settings
from rag.percent import undecodable_path
from rag.retrieve import Retriever

pytestmark = pytest.mark.slow


def _documents(settings: Settings) -> dict[str, str]:
    return {p.name: p.read_bytes().decode("utf-8") for p in Path(settings.corpus_dir).glob("*.txt")}


@pytest.fixture(params=["local", "milvus"])
def api(request: pytest.FixtureRequest) -> httpx.Client:
    """The search contract holds whichever store serves: `rag serve` over FAISS + bm25s, and over milvus-lite."""
    client: httpx.Client = request.getfixturevalue("server" if request.param == "local" else "milvus_server")
    client.store = request.param  # type: ignore[attr-defined]
    return client


def test_health(api: httpx.Client, retriever: Retriever) -> None:
    body = api.get("/health").json()
    passages = len(retriever.index.passages)
    store = api.store  # type: ignore[attr-defined]
    assert body == {
        "status": "ok",
        "passages": passages,
        "model": retriever.settings.model,
        "store": store,
        "confidence": retriever.model.version,
        "query_adapter": "query-adapter-en-v2",
    }


@pytest.mark.parametrize(
    "question, expected",
    [
        ("Can a foreigner activate it through Alipay?", "支付宝渠道目前仅支持港澳台同胞激活医保电子凭证"),
        ("外国人可以用哪些证件绑定医保电子凭证", "外国人可以使用护照、外国人永久居留证等证件进行绑定"),
        ("How many people can bind one person's e-voucher?", "最多被6个人绑定"),
        ("电子医保卡和实体卡有什么区别", "电子医保卡:是虚拟的电子凭证"),
        ("Can people with a hukou from elsewhere pay for medical insurance in Shenyang?", "外地户籍人员是 可以在沈阳交医保的"),
    ],
)
def test_post_search_finds_the_answer_with_exact_citations(api: httpx.Client, settings: Settings, question: str, expected: str) -> None:
    response = api.post("/search", json={"question": question, "top_k": 5})
    assert response.status_code == 200
    body = response.json()
    assert body["question"] == question and body["took_ms"] > 0
    assert body["answerable"] is True
    assert [p["rank"] for p in body["passages"]] == [1, 2, 3, 4, 5]
    docs = _documents(settings)
    for p in body["passages"]:
        c = p["citation"]
        assert docs[c["document"]][c["start"] : c["end"]] == p["text"]
        assert c["line_start"] == docs[c["document"]].count("\n", 0, c["start"]) + 1
        assert c["section"][0] == c["title"]
        h = p["highlight"]
        assert c["start"] <= h["start"] < h["end"] <= c["end"]
        assert docs[c["document"]][h["start"] : h["end"]] in p["text"]
    assert any(expected in p["text"] for p in body["passages"])


@pytest.mark.parametrize("question", ["红烧肉怎么做", "best hotpot restaurants in Chongqing"])
def test_off_topic_question_is_flagged_not_answerable(api: httpx.Client, question: str) -> None:
    body = api.post("/search", json={"question": question, "top_k": 3}).json()
    assert body["answerable"] is False
    assert len(body["passages"]) == 3


def test_get_search_gives_the_same_answer(api: httpx.Client) -> None:
    question = "外国人能用支付宝激活医保电子凭证吗"
    got = api.get("/search", params={"q": question, "top_k": 3}).json()
    posted = api.post("/search", json={"question": question, "top_k": 3}).json()
    assert [p["citation"] for p in got["passages"]] == [p["citation"] for p in posted["passages"]]
    assert len(got["passages"]) == 3


@pytest.mark.parametrize(
    "payload, field",
    [
        ({"question": ""}, "question"),
        ({"question": "   \n\t "}, "question"),
        ({"question": "x" * 2001}, "question"),
        ({"question": "ok", "top_k": 0}, "top_k"),
        ({"question": "ok", "top_k": 51}, "top_k"),
        ({"question": "ok", "top_k": "five"}, "top_k"),
        ({"question": "ok", "top_k": 2.5}, "top_k"),
        ({"question": "ok", "top_k": True}, "top_k"),
        ({"question": 42}, "question"),
        ({"question": None}, "question"),
        ({"question": ["a"]}, "question"),
        ({}, "question"),
        ({"question": "ok", "extra": 1}, "extra"),
    ],
)
def test_bad_post_input_is_a_422_naming_the_field(server: httpx.Client, payload: dict, field: str) -> None:
    response = server.post("/search", json=payload)
    assert response.status_code == 422, response.text
    assert response.json()["detail"].startswith(field)


@pytest.mark.parametrize("body", [b"{not json", b"", b"[1, 2]", b'"question"', b"\xff\xfe"])
def test_malformed_body_is_a_422(server: httpx.Client, body: bytes) -> None:
    response = server.post("/search", content=body, headers={"content-type": "application/json"})
    assert response.status_code == 422, response.text
    assert response.json()["detail"]


@pytest.mark.parametrize(
    "params, field",
    [
        ({"q": ""}, "q"),
        ({"q": "  "}, "q"),
        ({}, "q"),
        ({"q": "ok", "top_k": "x"}, "top_k"),
        ({"q": "ok", "top_k": 99}, "top_k"),
        ({"q": "x" * 2001}, "q"),
    ],
)
def test_bad_get_input_is_a_422_naming_the_field(server: httpx.Client, params: dict, field: str) -> None:
    response = server.get("/search", params=params)
    assert response.status_code == 422, response.text
    assert response.json()["detail"].startswith(field)


@pytest.mark.parametrize("query", ["q=%ED%A0%80", "q=%FF%FE", "top_k=3&q=%E5%8C", "q=ok&q=%C3"])
def test_a_get_question_that_is_not_utf8_is_a_422_naming_q(server: httpx.Client, query: str) -> None:
    response = server.get("/search?" + query)  # Starlette alone reads these bytes as U+FFFD and answers 200
    assert response.status_code == 422, response.text
    assert response.json()["detail"].startswith("q: is not UTF-8 text")


@pytest.mark.parametrize("path", ["%FF.txt", "family-e-medical-card%E5.txt", "%ED%A0%80"])
def test_a_document_path_that_is_not_utf8_is_a_422_not_another_document(server: httpx.Client, path: str) -> None:
    response = server.get("/documents/" + path)  # Starlette alone reads these bytes as U+FFFD
    assert response.status_code == 422, response.text
    assert response.json()["detail"].startswith("path.doc_id: is not UTF-8 text"), response.text
    assert server.get("/documents/%E6%96%87.txt").status_code == 404  # UTF-8, just absent


def test_undecodable_path_reads_the_raw_path() -> None:
    assert undecodable_path(b"/documents/%E6%96%87%20a.txt") is None
    assert undecodable_path(b"/documents/a%FF.txt") == "is not UTF-8 text (byte 0xFF at byte 12); percent-encode the path's UTF-8 bytes"


def test_undecodable_param_reads_the_raw_query_string() -> None:
    assert undecodable_param(b"q=%E5%8C%BB&top_k=2", b"q") is None
    assert undecodable_param(b"top_k=%FF", b"q") is None  # another parameter's bytes are its own validator's business
    assert undecodable_param(b"q=a+b%20%E5%8C%BB", b"q") is None
    assert undecodable_param(b"q=ab%E5", b"q") == "is not UTF-8 text (byte 0xE5 at byte 2); percent-encode the question's UTF-8 bytes"


def test_the_search_page_and_openapi_are_served(server: httpx.Client) -> None:
    assert "<form" in server.get("/").text
    spec = server.get("/openapi.json").json()
    assert "/search" in spec["paths"] and "/health" in spec["paths"]


@pytest.mark.parametrize("question", ["Can a foreigner activate it through Alipay?", "亲情账户最多可以绑定几个人", "红烧肉怎么做"])
def test_the_milvus_store_serves_the_same_answers(server: httpx.Client, milvus_server: httpx.Client, question: str) -> None:
    local, milvus = (s.post("/search", json={"question": question, "top_k": 10}).json() for s in (server, milvus_server))
    assert [p["citation"] for p in milvus["passages"]] == [p["citation"] for p in local["passages"]]
    assert [p["highlight"] for p in milvus["passages"]] == [p["highlight"] for p in local["passages"]]
    assert milvus["answerable"] == local["answerable"] and milvus["confidence"] == pytest.approx(local["confidence"], abs=1e-3)


def test_a_second_process_on_a_served_milvus_lite_file_gets_one_clear_line(milvus_server: httpx.Client, settings: Settings) -> None:
    index_dir = milvus_server.index_dir  # type: ignore[attr-defined]
    args = ["index", "--corpus", str(settings.corpus_dir), "--index", str(index_dir), "--quiet"]
    done = subprocess.run(
        [sys.executable, "-m", "rag.cli", *args], capture_output=True, text=True, env=os.environ | {"RAG_STORE": "milvus"}
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith(f"rag: error: the milvus-lite file {index_dir / 'milvus.db'} is open in another process")
    assert "POST /admin/reindex" in done.stderr and "http://host:19530" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert milvus_server.get("/health").json()["store"] == "milvus"  # still serving
