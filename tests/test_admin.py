"""Admin endpoints and index reloads, over real HTTP to a uvicorn server in this process.

(The long run under search load against a `rag serve` process is tests/test_live.py.)
"""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from support import finish_job, thread_server, write_corpus

from rag.api import create_app
from rag.config import Settings
from rag.encoders import Encoder
from rag.index import build_index, current_version, load_index
from rag.reload import Reloader
from rag.retrieve import Retriever

pytestmark = pytest.mark.slow

TOKEN = "s3cret-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
QUOKKA = "Quokka permits\nThe quokka permit office in Lanzhou opens at 7:15 on Tuesdays.\n"


@pytest.fixture
def small(settings: Settings, encoders: dict[str, Encoder], tmp_path: Path) -> Retriever:
    s = replace(settings, corpus_dir=write_corpus(tmp_path / "corpus"), index_dir=tmp_path / "index")
    build_index(s, encoders, progress=False)
    return Retriever(s, encoders, load_index(s))


def _with(retriever: Retriever, **admin: Any) -> Retriever:
    return Retriever(replace(retriever.settings, **admin), retriever.encoders, retriever.index)


def test_admin_endpoints_are_off_without_a_token(small: Retriever) -> None:
    with thread_server(create_app(small)) as client:
        for method, url in [("POST", "/admin/reindex"), ("GET", "/admin/index"), ("GET", "/admin/reindex/abc")]:
            response = client.request(method, url)
            assert response.status_code == 403, url
            assert "RAG_ADMIN_TOKEN" in response.json()["detail"]
        assert client.get("/search", params={"q": "医保电子凭证"}).status_code == 200


def test_localhost_may_reindex_without_a_token_when_the_operator_opts_in(small: Retriever) -> None:
    with thread_server(create_app(_with(small, admin_allow_localhost=True))) as client:
        response = client.post("/admin/reindex")
        assert response.status_code == 202 and response.headers["location"] == f"/admin/reindex/{response.json()['id']}"
        job = finish_job(client, response.json())
        assert job["status"] == "done", job
        assert job["result"]["summary"] == "added 0, changed 0, removed 0, unchanged 4 documents; embedded 0 passages"


def test_a_set_token_is_required_from_everyone(small: Retriever) -> None:
    with thread_server(create_app(_with(small, admin_token=TOKEN, admin_allow_localhost=True))) as client:
        for headers in [{}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {TOKEN}"}, {"Authorization": TOKEN}]:
            response = client.get("/admin/index", headers=headers)
            assert response.status_code == 401 and response.headers["www-authenticate"] == "Bearer", headers
            assert "Authorization: Bearer" in response.json()["detail"]
        info = client.get("/admin/index", headers=AUTH).json()
        assert info["version"] == small.index.path.name and info["store"] == "local"
        assert client.get("/admin/reindex/nope", headers=AUTH).status_code == 404


def test_reindex_job_reports_progress_swaps_in_the_new_index_and_survives_a_failure(small: Retriever) -> None:
    corpus = small.settings.corpus_dir
    with thread_server(create_app(_with(small, admin_token=TOKEN))) as client:
        (corpus / "new.txt").write_text(QUOKKA, encoding="utf-8")
        (corpus / "pharmacy.txt").unlink()
        job = client.post("/admin/reindex", headers=AUTH).json()
        assert job["status"] in ("queued", "running") and job["result"] is None
        job = finish_job(client, job, AUTH)
        assert job["status"] == "done" and job["stage"] == "done" and job["error"] is None, job
        result = job["result"]
        assert (result["added"], result["removed"], result["unchanged"], result["embedded"]) == (["new.txt"], ["pharmacy.txt"], 3, 1)
        assert result["version"] == result["serving"] == current_version(small.settings.index_dir).name  # type: ignore[union-attr]
        assert client.get("/admin/index", headers=AUTH).json()["version"] == result["version"]
        hit = client.get("/search", params={"q": "When does the quokka permit office open?", "top_k": 1}).json()["passages"][0]
        assert hit["citation"]["document"] == "new.txt"

        for path in list(corpus.rglob("*.*")):  # an empty corpus: the job fails, the index it had keeps serving
            path.unlink()
        failed = finish_job(client, client.post("/admin/reindex", headers=AUTH).json(), AUTH)
        assert failed["status"] == "failed" and "no readable documents" in failed["error"]
        assert client.get("/admin/index", headers=AUTH).json()["version"] == result["version"]
        assert client.get("/search", params={"q": "quokka permit", "top_k": 1}).json()["passages"][0]["citation"]["document"] == "new.txt"


def test_reloader_picks_up_new_versions_and_skips_a_broken_one(small: Retriever, encoders: dict[str, Encoder]) -> None:
    settings = small.settings
    reloader = Reloader(small, poll_seconds=0)
    assert reloader.sync() is False  # already serving CURRENT

    (settings.corpus_dir / "pharmacy.txt").unlink()
    built = build_index(settings, encoders, progress=False)  # as `rag index` in another process would
    assert reloader.sync() is True and small.index.path == built.path
    assert "pharmacy.txt" not in {p.doc_id for p in small.index.passages}

    broken = settings.index_dir / "v99990101T000000000000-1"  # a newer version whose vectors are damaged
    shutil.copytree(built.path, broken)
    (broken / "embeddings-primary.npy").write_bytes(b"oops")
    (settings.index_dir / "CURRENT").write_text(broken.name + "\n")
    assert reloader.sync() is False and small.index.path == built.path
    error = reloader.last_error
    assert error is not None and error.startswith(f"{broken.name}: index at") and "rag index" in error
    assert reloader.sync() is False  # not retried (and not logged again) until CURRENT names another version

    fixed = build_index(settings, encoders, progress=False)
    assert reloader.sync() is True and small.index.path == fixed.path and reloader.last_error is None
