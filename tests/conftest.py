"""Shared fixtures: the real model, a real index of the shipped corpus, built once per session."""

from __future__ import annotations

import os
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
