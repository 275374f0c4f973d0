"""Shared fixtures: the real model, a real index of the shipped corpus, built once per session."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import httpx
import pytest

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


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def server(retriever: Retriever, settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    """A real server over the session's index (built by the retriever fixture)."""
    port = _free_port()
    log = tmp_path_factory.mktemp("server") / "server.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "rag.cli",
                "serve",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--corpus",
                str(settings.corpus_dir),
                "--index",
                str(settings.index_dir),
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30)
    try:
        deadline = time.monotonic() + 180
        while True:
            if proc.poll() is not None:
                pytest.fail(f"server exited with {proc.returncode}: {log.read_text()}")
            try:
                if client.get("/health").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"server did not start: {log.read_text()}")
            time.sleep(0.3)
        yield client
    finally:
        client.close()
        proc.terminate()
        proc.wait(timeout=30)
