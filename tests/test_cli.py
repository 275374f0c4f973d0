"""The `rag` command line as a user runs it: real subprocesses, one-line errors, JSON output."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from rag.config import Settings
from rag.retrieve import Retriever


def rag(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "rag.cli", *args], capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize(
    "args, message",
    [
        (["ask", ""], "question"),
        (["ask", "   "], "question"),
        (["ask", "ok", "-k", "0"], "-k"),
        (["ask", "ok", "-k", "51"], "-k"),
        (["ask", "ok", "-k", "many"], "-k"),
        (["ask"], "question"),
        (["bogus"], "invalid choice"),
        (["ask", "x" * 2001], "question"),
        (["eval", "/nonexistent/questions.jsonl"], "questions.jsonl"),
        (["eval", "tests/data/questions.jsonl", "-k", "0"], "-k"),
    ],
)
def test_bad_input_is_one_line_and_non_zero(args: list[str], message: str) -> None:
    result = rag(*args)
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert message in lines[0] and "Traceback" not in result.stderr


def test_help_lists_the_commands() -> None:
    result = rag("--help")
    assert result.returncode == 0
    for command in ("index", "ask", "serve", "eval"):
        assert command in result.stdout


@pytest.mark.slow
def test_ask_json_matches_the_api_schema(retriever: Retriever, settings: Settings) -> None:
    result = rag("ask", "Can a foreigner activate it through Alipay?", "-k", "3", "--json", "--index", str(settings.index_dir))
    assert result.returncode == 0, result.stderr
    body = json.loads(result.stdout)
    assert set(body) == {"question", "took_ms", "answerable", "confidence", "passages"}
    assert body["answerable"] is True
    assert len(body["passages"]) == 3
    assert set(body["passages"][0]["citation"]) == {
        "document",
        "title",
        "section",
        "start",
        "end",
        "line_start",
        "line_end",
        "format",
        "page_start",
        "page_end",
    }


@pytest.mark.slow
def test_ask_prints_citations(retriever: Retriever, settings: Settings) -> None:
    result = rag("ask", "外国人能用支付宝激活吗", "-k", "2", "--index", str(settings.index_dir))
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("1. ") and ".txt:" in result.stdout


@pytest.mark.slow
def test_ask_says_when_the_corpus_most_likely_does_not_answer(retriever: Retriever, settings: Settings) -> None:
    result = rag("ask", "红烧肉怎么做", "-k", "1", "--index", str(settings.index_dir))
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("(the corpus most likely does not answer this") and "\n1. " in result.stdout


class _Uvicorn:
    def __init__(self, started: bool, should_exit: bool = False) -> None:
        self.started, self.should_exit = started, should_exit


def test_serve_warms_up_once_listening_and_not_when_it_never_started(settings: Settings, retriever: Retriever) -> None:
    """`rag serve` loads jieba's dictionary in a thread once uvicorn listens, not in the first search."""
    from rag import tokenize
    from rag.cli import _warm_up_when_listening

    calls: list[str] = []

    class Counting(Retriever):
        def warm_up(self) -> None:
            calls.append("warm")
            super().warm_up()

    counting = Counting(settings, retriever.encoders, retriever.index)
    tokenize._TOKENIZER.clear()  # as in a fresh server (the next search loads it again)
    _warm_up_when_listening(_Uvicorn(started=False, should_exit=True), counting)
    assert calls == [] and not tokenize._TOKENIZER
    _warm_up_when_listening(_Uvicorn(started=True), counting)
    assert calls == ["warm"] and tokenize._TOKENIZER, "the dictionary is loaded"
