"""Shared fixtures: the real model, a real index of the shipped corpus, built once per session."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import httpx
import pytest
from support import free_port, rag_process, wait_until_healthy

from rag.config import Settings
from rag.encoders import Encoder, load_encoders
from rag.index import build_index, load_index
from rag.retrieve import Retriever

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT / "corpus"
QUESTIONS = ROOT / "tests" / "data" / "questions.jsonl"

os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="session")
def settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """The default settings, with the index in a temporary folder (the model cache is shared)."""
    return replace(Settings.from_env(), corpus_dir=CORPUS, index_dir=tmp_path_factory.mktemp("index"))


@pytest.fixture(scope="session")
def encoders(settings: Settings) -> dict[str, Encoder]:
    return load_encoders(settings, progress=False)


@pytest.fixture(scope="session")
def retriever(settings: Settings, encoders: dict[str, Encoder]) -> Retriever:
    build_index(settings, encoders, progress=False)
    return Retriever(settings, encoders, load_index(settings))


@pytest.fixture(scope="session")
def server(retriever: Retriever, settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    """A real `rag serve` process over the session's index (built by the retriever fixture)."""
    port = free_port()
    log = tmp_path_factory.mktemp("server") / "server.log"
    proc = rag_process(
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--corpus",
        str(settings.corpus_dir),
        "--index",
        str(settings.index_dir),
        log=log,
    )
    client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30)
    try:
        wait_until_healthy(client, proc, log)
        yield client
    finally:
        client.close()
        proc.terminate()
        proc.wait(timeout=30)


# --- the same index in the Milvus store (milvus-lite), for the tests that compare both stores ---


@pytest.fixture(scope="session")
def milvus_settings(settings: Settings, retriever: Retriever, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """RAG_STORE=milvus over a copy of the session's index: its vectors are reused (nothing embedded again)."""
    index_dir = tmp_path_factory.mktemp("milvus") / "index"
    shutil.copytree(settings.index_dir, index_dir)
    return replace(settings, index_dir=index_dir, store="milvus")


@pytest.fixture(scope="session")
def milvus_retriever(milvus_settings: Settings, encoders: dict[str, Encoder]) -> Retriever:
    """The shipped corpus in milvus-lite (this process holds its file)."""
    report = build_index(milvus_settings, encoders, progress=False)
    assert report.embedded == 0
    return Retriever(milvus_settings, encoders, load_index(milvus_settings))


@pytest.fixture(scope="session")
def milvus_server(settings: Settings, retriever: Retriever, tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    """A real `rag serve` with RAG_STORE=milvus, over its own milvus-lite file built by a real `rag index`."""
    folder = tmp_path_factory.mktemp("milvus-server")
    index_dir = folder / "index"
    shutil.copytree(settings.index_dir, index_dir)
    paths = ["--corpus", str(settings.corpus_dir), "--index", str(index_dir)]
    env = {"RAG_STORE": "milvus"}
    build = rag_process("index", "--quiet", *paths, env=env, log=folder / "index.log")
    assert build.wait(timeout=300) == 0, (folder / "index.log").read_text()
    port = free_port()
    proc = rag_process("serve", "--host", "127.0.0.1", "--port", str(port), *paths, env=env, log=folder / "server.log")
    client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30)
    client.index_dir = index_dir  # type: ignore[attr-defined]  # for the tests that start a second process on it
    try:
        wait_until_healthy(client, proc, folder / "server.log")
        yield client
    finally:
        client.close()
        proc.terminate()
        proc.wait(timeout=30)
