"""Shared fixtures: the real model, a real index of the shipped corpus, built once per session."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

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
