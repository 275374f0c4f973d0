"""The README's examples are what the program prints: each `$ command` of its console blocks is run
against a live server (or the CLI) and its output compared with the README's.

What may differ: `took_ms`, scores, build seconds, index paths and job ids (machines differ);
numbers in eval tables within 0.02. Everything else (fields, texts, citations, offsets, exit
codes) must match. Admin answers are compared by their fields.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any, NamedTuple

import httpx
import pytest
from support import finish_job, thread_server

from rag.api import create_app
from rag.beir import index_in_memory, load_benchmark
from rag.config import Settings
from rag.encoders import Encoder
from rag.evaluate import evaluate, evaluate_benchmark, format_table, load_questions
from rag.index import build_index, embedding_units_by_role, load_index
from rag.retrieve import Retriever

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
VOLATILE = [
    (re.compile(r'"took_ms": ?[0-9.]+'), '"took_ms": _'),
    (re.compile(r'"score": ?[0-9.]+'), '"score": _'),
    (re.compile(r"\(score [0-9.]+\)"), "(score _)"),
    (re.compile(r"in [0-9.]+ s -> \S+"), "in _ s -> _"),
]
FLOAT = re.compile(r"\d+\.\d+")


class Example(NamedTuple):
    line: int
    command: str
    output: str


def examples() -> list[Example]:
    """Every `$ ` command of a ```console block, with the lines after it up to the next command."""
    out: list[Example] = []
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    inside, i = False, 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("```"):
            inside = line.strip() == "```console"
        elif inside and line.startswith("$ "):
            start, command = i + 1, line[2:]
            while command.endswith("\\"):
                i += 1
                command = command[:-1] + lines[i].strip()
            body = []
            while i + 1 < len(lines) and not lines[i + 1].startswith(("$ ", "```")):
                i += 1
                body.append(lines[i])
            out.append(Example(start, re.sub(r"\s+#\s.*$", "", command), "\n".join(body)))
        i += 1
    return out


def normal(text: str) -> tuple[str, list[float]]:
    for pattern, placeholder in VOLATILE:
        text = pattern.sub(placeholder, text)
    floats = [float(x) for x in FLOAT.findall(text)]
    return FLOAT.sub("#", text).strip(), floats


def assert_same(example: Example, actual: str) -> None:
    want, want_floats = normal(example.output)
    got, got_floats = normal(actual)
    assert got == want, f"README line {example.line}: `{example.command}` prints\n{actual}"
    assert len(got_floats) == len(want_floats)
    for w, g in zip(want_floats, got_floats, strict=True):
        assert abs(w - g) <= 0.02, f"README line {example.line}: {w} in the README, {g} now"


def keys(value: Any) -> Any:
    """The shape of a JSON value: dict keys (recursively), list element shapes."""
    if isinstance(value, dict):
        return {k: keys(v) for k, v in value.items()}
    if isinstance(value, list):
        return [keys(v) for v in value[:1]]
    return None


def run(command: str, env: dict[str, str], cwd: Path) -> str:
    result = subprocess.run(["bash", "-c", command], env=env, cwd=cwd, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"`{command}` exited {result.returncode}: {result.stderr}"
    return result.stdout.rstrip("\n")


def env_for(settings: Settings) -> dict[str, str]:
    return os.environ | {"PATH": f"{BIN}:{os.environ['PATH']}", "RAG_INDEX_DIR": str(settings.index_dir), "NO_COLOR": "1"}


def test_the_readme_has_examples_of_every_kind() -> None:
    commands = [e.command for e in examples()]
    for kind in ("curl -s -X POST localhost:8000/search", "rag ask", "rag eval", "rag index", "/documents/", "/admin/reindex"):
        assert any(kind in c for c in commands), kind


def test_search_and_cli_examples_print_what_the_readme_shows(server: httpx.Client, settings: Settings) -> None:
    base = str(server.base_url).rstrip("/")
    ran = 0
    for example in examples():
        c = example.command
        if "/admin/" in c or c.startswith(("export", "printf", "rag index")):
            continue
        if c.startswith("curl") or c.startswith("rag ask"):
            command = c.replace("http://localhost:8000", base).replace("localhost:8000", base)
            assert_same(example, run(command, env_for(settings), ROOT))
            ran += 1
    assert ran >= 8


def test_eval_examples_print_what_the_readme_shows(retriever: Retriever, encoders: dict[str, Encoder]) -> None:
    """`rag eval` as cmd_eval runs it, in this process (the models are loaded once for the suite)."""
    ran = 0
    for example in examples():
        argv = shlex.split(example.command)
        if argv[:2] != ["rag", "eval"]:
            continue
        if argv[2] == "--beir":
            bench = load_benchmark(ROOT / argv[3])
            memory = index_in_memory(bench.passages, encoders, embedding_units_by_role(retriever.settings), progress=False)
            report = evaluate_benchmark(Retriever(retriever.settings, encoders, memory), bench.queries, bench.qrels)
        else:
            report = evaluate(retriever, load_questions(ROOT / argv[2]))
        assert_same(example, format_table(report))
        ran += 1
    assert ran >= 2


def test_index_and_admin_examples(settings: Settings, encoders: dict[str, Encoder], tmp_path: Path) -> None:
    """On a copy of the corpus: the maintenance examples change it, the README's corpus stays as it is."""
    corpus = tmp_path / "corpus"
    shutil.copytree(settings.corpus_dir, corpus)
    s = replace(settings, corpus_dir=corpus, index_dir=tmp_path / "index", admin_token="s3cret-token")
    build_index(s, encoders, progress=False)
    env = env_for(s) | {"RAG_CORPUS_DIR": str(corpus), "RAG_ADMIN_TOKEN": s.admin_token}
    retriever = Retriever(s, encoders, load_index(s))
    job_id = None
    with thread_server(create_app(retriever)) as client:
        base = str(client.base_url).rstrip("/")
        for example in examples():
            c = example.command
            if c.startswith("printf") or c.startswith("rag index"):
                assert_same(example, run(c + " 2>/dev/null" if c.startswith("rag") else c, env, tmp_path))
            elif "/admin/" in c and c.startswith("curl"):
                if job_id:
                    c = re.sub(r"/admin/reindex/[0-9a-f]{12}", f"/admin/reindex/{job_id}", c)
                    finish_job(client, {"id": job_id, "status": "queued"}, {"Authorization": f"Bearer {s.admin_token}"})
                got = json.loads(run(c.replace("localhost:8000", base), env, tmp_path))
                assert keys(got) == keys(json.loads(example.output)), f"README line {example.line}"
                job_id = got.get("id", job_id)
    assert job_id is not None
