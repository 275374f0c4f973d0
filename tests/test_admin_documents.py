"""PUT and DELETE /admin/documents/{path}: maintain the corpus through the API, confined to its folder."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import httpx
import pytest
from support import finish_job, thread_server, write_corpus

from rag.api import create_app
from rag.config import Settings
from rag.encoders import Encoder
from rag.index import build_index, load_index
from rag.retrieve import Retriever

pytestmark = pytest.mark.slow

TOKEN = "s3cret-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
QUOKKA = "Quokka permits\nThe quokka permit office in Lanzhou opens at 7:15 on Tuesdays.\n"
PAGE = (
    "<html><head><title>袋鼠签证</title></head><body><nav>首页</nav>"
    "<h1>袋鼠签证</h1><p>袋鼠签证在兰州的办公室每周二七点开门。</p></body></html>"
)


@pytest.fixture
def small(settings: Settings, encoders: dict[str, Encoder], tmp_path: Path) -> Retriever:
    s = replace(settings, corpus_dir=write_corpus(tmp_path / "corpus"), index_dir=tmp_path / "index", admin_token=TOKEN, max_upload_mb=0.01)
    build_index(s, encoders, progress=False)
    return Retriever(s, encoders, load_index(s))


def _top(client: httpx.Client, question: str) -> str:
    return str(client.get("/search", params={"q": question, "top_k": 1}).json()["passages"][0]["citation"]["document"])


def test_put_raw_and_multipart_then_delete_each_reindexes(small: Retriever) -> None:
    corpus = small.settings.corpus_dir
    with thread_server(create_app(small)) as client:
        put = client.put("/admin/documents/permits/quokka.txt", content=QUOKKA.encode(), headers=AUTH)
        assert put.status_code == 202 and put.json()["replaced"] is False and put.headers["location"].startswith("/admin/reindex/")
        assert finish_job(client, put.json(), AUTH)["result"]["added"] == ["permits/quokka.txt"]
        assert (corpus / "permits" / "quokka.txt").read_text(encoding="utf-8") == QUOKKA
        assert _top(client, "When does the quokka permit office open?") == "permits/quokka.txt"

        files = {"file": ("page.html", PAGE.encode(), "text/html")}
        put = client.put("/admin/documents/kangaroo.html", files=files, headers=AUTH)
        assert put.status_code == 202, put.text
        assert finish_job(client, put.json(), AUTH)["status"] == "done"
        assert _top(client, "袋鼠签证办公室几点开门") == "kangaroo.html"
        doc = client.get("/documents/kangaroo.html").json()
        assert doc["format"] == "html" and "首页" not in doc["text"] and "七点开门" in doc["text"]

        gone = client.delete("/admin/documents/permits/quokka.txt", headers=AUTH)
        assert gone.status_code == 202 and finish_job(client, gone.json(), AUTH)["result"]["removed"] == ["permits/quokka.txt"]
        assert not (corpus / "permits" / "quokka.txt").exists()
        assert client.get("/documents/permits/quokka.txt").status_code == 404


@pytest.mark.parametrize(
    "path, status, says",
    [
        ("..%2Foutside.txt", 422, "`..`"),
        ("a/%2E%2E/%2E%2E/outside.txt", 422, "`..`"),
        ("%2Fetc%2Fpasswd.txt", 422, "relative"),
        (".hidden.txt", 422, "hidden"),
        ("notes.exe", 415, "not a format"),
        ("notes", 415, "not a format"),
        ("out/escape.txt", 403, "outside the corpus"),
        ("a" * 300 + ".txt", 422, "at most 230 bytes"),  # was a 500: the file system's "File name too long"
        ("文" * 80 + "/x.txt", 422, "at most 230 bytes"),  # 240 bytes in UTF-8
    ],
)
def test_paths_that_leave_the_corpus_or_are_not_documents_are_refused(
    small: Retriever, tmp_path: Path, path: str, status: int, says: str
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    os.symlink(outside, small.settings.corpus_dir / "out")
    with thread_server(create_app(small)) as client:
        response = client.put(f"/admin/documents/{path}", content=b"hello", headers=AUTH)
        assert response.status_code == status and says in response.json()["detail"], response.text
    assert list(outside.iterdir()) == [] and not (tmp_path / "outside.txt").exists()


def test_uploads_need_the_token_a_body_and_stay_under_the_limit(small: Retriever) -> None:
    with thread_server(create_app(small)) as client:
        assert client.put("/admin/documents/a.txt", content=b"hi").status_code == 401
        assert client.delete("/admin/documents/a.txt").status_code == 401
        assert client.put("/admin/documents/a.txt", content=b"", headers=AUTH).json()["detail"].startswith("body: is empty")
        big = client.put("/admin/documents/a.txt", content=b"x" * 20_000, headers=AUTH)  # the limit here is 0.01 MB
        assert big.status_code == 413 and big.json()["detail"].startswith("body:")
        assert client.delete("/admin/documents/none.txt", headers=AUTH).status_code == 404
        for method in ("PUT", "DELETE"):  # Starlette alone would write or remove "\ufffd.txt"
            refused = client.request(method, "/admin/documents/%FF.txt", content=b"hi", headers=AUTH)
            assert refused.status_code == 422 and refused.json()["detail"].startswith("path: is not UTF-8 text"), refused.text
    assert not (small.settings.corpus_dir / "a.txt").exists() and not (small.settings.corpus_dir / "\ufffd.txt").exists()
