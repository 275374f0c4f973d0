"""The Milvus store (real milvus-lite) against the local one: same BM25 scores, same rankings, same
guarantees for builds (a collection per version written aside, the alias switched after CURRENT, a
killed build leaves the live collection serving, old collections dropped with their versions)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from support import finish_job, rag_process, thread_server, wait_for_text, write_corpus

from rag import dense, keyword
from rag.api import create_app
from rag.config import Settings
from rag.encoders import Encoder
from rag.errors import RagError
from rag.fusion import Ranking
from rag.index import build_index, current_version, load_index
from rag.retrieve import Retriever
from rag.store import milvus
from rag.tokenize import tokenize

QUESTIONS = [
    "外国人怎么激活医保电子凭证",
    "When do hospital refunds arrive?",
    "孩子可以绑定到父母的医保账户吗",
    "Where do I scan the QR code?",
]


def test_sparse_vectors_give_bm25s_scores_exactly_even_for_repeated_tokens(tmp_path: Path) -> None:
    docs = [["医保", "电子", "凭证", "医保"], ["护照", "激活"], ["医保", "药店", "扫码", "支付", "药店"], ["refund", "hospital"]]
    bm25 = keyword.build(docs)
    rows = milvus.passage_sparse(bm25, len(docs))
    for query in (["医保"], ["医保", "医保", "药店"], ["药店", "unknown", "护照", "护照", "护照"]):
        vector = milvus.query_sparse(bm25, query)
        dots = np.array([sum(w * vector.get(int(t), 0.0) for t, w in zip(r.indices, r.data, strict=True)) for r in rows])
        expected = bm25.get_scores([t for t in query if t in bm25.vocab_dict])
        np.testing.assert_allclose(dots, expected, rtol=1e-6)
    assert milvus.query_sparse(bm25, ["医保", "医保", "nope"]) == {bm25.vocab_dict["医保"]: 2.0}


def test_bad_store_settings_are_one_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value, message in [
        ("RAG_STORE", "faiss", "RAG_STORE must be local or milvus"),
        ("RAG_MILVUS_URI", "milvus.sqlite", "RAG_MILVUS_URI must be a milvus-lite file ending in .db or a server URL"),
        ("RAG_MILVUS_ALIAS", "rag-passages", "RAG_MILVUS_ALIAS must be letters"),
    ]:
        with monkeypatch.context() as m:
            m.setenv(name, value)
            with pytest.raises(RagError, match=message):
                Settings.from_env()


def test_an_unreachable_milvus_server_is_one_clear_error(settings: Settings) -> None:
    with pytest.raises(RagError, match=r"^cannot reach Milvus at http://127\.0\.0\.1:9 \(.*\); start it"):
        milvus.client(replace(settings, store="milvus", milvus_uri="http://127.0.0.1:9"))


@pytest.mark.slow
def test_milvus_searches_rank_exactly_like_faiss_and_bm25s(milvus_retriever: Retriever, retriever: Retriever) -> None:
    index, local = milvus_retriever.index, retriever.index
    assert index.store.name == "milvus" and local.store.name == "local"
    assert index.passages == local.passages and index.manifest["dense_index"]["primary"]["type"] == "FLAT"
    for question in [*QUESTIONS, "医保 医保 电子凭证"]:
        tokens = tokenize(question)
        got, want = index.store.keyword(tokens, 1000), keyword.search(local.keyword, tokens, 1000)  # every passage with a shared token
        assert _same_ranking(got, want), question
        for role, vector in milvus_retriever.query_vectors(question).items():
            got, want = index.store.dense(role, vector, 30), dense.search(local.store.faiss[role], vector, 30)  # type: ignore[attr-defined]
            assert _same_ranking(got, want), (question, role)
        answers = [r.answer(question, 10) for r in (milvus_retriever, retriever)]
        assert [(h.passage, h.highlight) for h in answers[0].hits] == [(h.passage, h.highlight) for h in answers[1].hits]


def _same_ranking(got: Ranking, want: Ranking) -> bool:
    """Same scores (float32 sums in another order differ in the last bits), and the same ids once
    rows whose scores tie to 1e-5 are taken in id order."""
    if got.ids.size != want.ids.size or not np.allclose(got.scores, want.scores, rtol=1e-5, atol=1e-6):
        return False
    order = [sorted(zip(np.round(-r.scores, 5).tolist(), r.ids.tolist(), strict=True)) for r in (got, want)]
    return order[0] == order[1]


def _small(settings: Settings, tmp_path: Path) -> Settings:
    return replace(settings, corpus_dir=write_corpus(tmp_path / "corpus"), index_dir=tmp_path / "index", store="milvus")


def _collections(s: Settings) -> set[str]:
    return set(milvus.client(s).list_collections())


def _version_collections(s: Settings, version: Path) -> set[str]:
    return set(load_index(s, version).manifest["store"]["collections"].values())


@pytest.mark.slow
def test_builds_write_a_collection_aside_switch_the_alias_and_drop_old_ones(
    settings: Settings, encoders: dict[str, Encoder], tmp_path: Path
) -> None:
    s = _small(settings, tmp_path)
    local = replace(s, index_dir=tmp_path / "local", store="local")
    first = build_index(s, encoders, progress=False)
    client = milvus.client(s)
    assert milvus._alias_target(client, "rag_passages") == load_index(s).manifest["store"]["collection"]
    (s.corpus_dir / "window.txt").write_text("窗口办理\n外国人也可以到医保服务大厅的窗口办理医保电子凭证。\n", encoding="utf-8")
    second = build_index(s, encoders, progress=False)  # add a document: only its passages are embedded
    assert second.changes.added == ["window.txt"] and second.embedded == 1
    live, previous = load_index(s), load_index(s, first.path)
    assert live.manifest["store"]["collection"] != previous.manifest["store"]["collection"]
    assert milvus._alias_target(client, "rag_passages") == live.manifest["store"]["collection"]
    assert previous.store.rows("primary") == len(previous.passages) < live.store.rows("primary") == len(live.passages)
    via_alias = client.query("rag_passages", filter="id >= 0", output_fields=["document", "start", "end", "text"], limit=1000)
    assert sorted((r["document"], r["start"], r["end"], r["text"]) for r in via_alias) == sorted(
        (p.doc_id, p.start, p.end, p.text) for p in live.passages
    )
    hit = Retriever(s, encoders, live).search("可以去服务大厅的窗口办理吗", 1)[0]
    assert hit.passage.doc_id == "window.txt"
    (s.corpus_dir / "pharmacy.txt").unlink()
    third = build_index(s, encoders, progress=False)  # remove a document: nothing embedded
    assert third.changes.removed == ["pharmacy.txt"] and third.embedded == 0
    assert _collections(s) == _version_collections(s, second.path) | _version_collections(s, third.path)  # the first one dropped
    build_index(local, encoders, progress=False)
    for question in QUESTIONS:
        ours = [h.passage for h in Retriever(s, encoders, load_index(s)).search(question, 5)]
        theirs = [h.passage for h in Retriever(local, encoders, load_index(local)).search(question, 5)]
        assert ours == theirs, question


@pytest.mark.slow
def test_a_killed_milvus_build_leaves_the_live_collection_serving(settings: Settings, encoders: dict[str, Encoder], tmp_path: Path) -> None:
    s = _small(settings, tmp_path)
    good = build_index(s, encoders, progress=False)
    kept = _collections(s)
    (s.corpus_dir / "pharmacy.txt").unlink()  # a deletion: the killed builds need no model
    args = ["index", "--corpus", str(s.corpus_dir), "--index", str(s.index_dir), "--quiet"]
    for point in ("written", "renamed", "switched"):
        milvus.release(s)  # milvus-lite: one process per file, so this one lets go while the build runs
        log = tmp_path / f"{point}.log"
        proc = rag_process(*args, env={"RAG_STORE": "milvus", "RAG_TEST_PAUSE_AT": point}, log=log)
        try:
            wait_for_text(log, f"paused at {point}", proc)
        finally:
            proc.kill()
            proc.wait(timeout=30)
        index = load_index(s)
        assert _collections(s) > kept, point  # the killed build's collection was written aside
        if point == "switched":  # the new version is complete and live; it searches its own collection
            assert index.path != good.path and "pharmacy.txt" not in {p.doc_id for p in index.passages}
        else:
            assert index.path == good.path and _version_collections(s, good.path) <= kept
        assert Retriever(s, encoders, index).search("医保电子凭证", 1)
    report = build_index(s, encoders, progress=False)  # the next build sweeps the leftovers and publishes
    live = load_index(s)
    assert report.embedded == 0 and current_version(s.index_dir) == report.path
    previous = {p.name for p in s.index_dir.glob("v*") if p.is_dir()} - {report.path.name}
    assert len(previous) == 1 and (s.index_dir / "milvus.db").is_dir()  # the live version and the one before it
    assert _collections(s) == set().union(*(_version_collections(s, s.index_dir / v) for v in [report.path.name, *previous]))
    assert milvus._alias_target(milvus.client(s), "rag_passages") == live.manifest["store"]["collection"]


@pytest.mark.slow
def test_reindex_through_the_server_holding_the_milvus_lite_file(settings: Settings, encoders: dict[str, Encoder], tmp_path: Path) -> None:
    s = replace(_small(settings, tmp_path), admin_allow_localhost=True)
    build_index(s, encoders, progress=False)
    retriever = Retriever(s, encoders, load_index(s))
    with thread_server(create_app(retriever)) as client:
        assert client.get("/health").json()["store"] == "milvus"
        (s.corpus_dir / "window.txt").write_text("窗口办理\n外国人也可以到医保服务大厅的窗口办理医保电子凭证。\n", encoding="utf-8")
        job: dict[str, Any] = finish_job(client, client.post("/admin/reindex").json())
        assert job["status"] == "done" and job["result"]["embedded"] == 1, job
        info = client.get("/admin/index").json()
        assert info["store"] == "milvus" and info["version"] == job["result"]["version"]
        top = client.post("/search", json={"question": "可以去服务大厅的窗口办理吗", "top_k": 1}).json()["passages"][0]
        assert top["citation"]["document"] == "window.txt"


@pytest.mark.slow
def test_an_index_built_for_one_store_is_refused_by_the_other(milvus_settings: Settings, milvus_retriever: Retriever) -> None:
    with pytest.raises(RagError, match="was built for RAG_STORE=milvus, but RAG_STORE is local; run `rag index"):
        load_index(replace(milvus_settings, store="local"))
