"""Hand-made bad inputs that schema generators never produce, against real servers and real builds.

Each case is a reproducer from issue 12: it must get a clear 4xx (or a one-line CLI error) and
leave the server up. docs/reliability.md lists them all and how to rerun them.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import httpx
import pytest
from support import thread_server, write_corpus

from rag.api import create_app
from rag.config import Settings
from rag.encoders import Encoder
from rag.errors import IndexInvalidError, RagError
from rag.index import build_index, current_version, load_index
from rag.reload import Reloader
from rag.retrieve import Retriever
from rag.schema import MAX_QUESTION_TOKENS

pytestmark = pytest.mark.slow


def _detail(response: httpx.Response, status: int, field: str) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["detail"].startswith(f"{field}:"), body
    assert isinstance(body["errors"], list)
    return str(body["detail"])


@pytest.mark.parametrize(
    "raw, problem",
    [
        (b'{"question": "\\ud800"}', "lone surrogate U+D800"),
        (b'{"question": "ok \\udfff then"}', "lone surrogate U+DFFF"),
        (b'{"question": "a\\u0000b"}', "control character U+0000"),
    ],
)
def test_text_no_person_could_type_is_a_422_naming_the_question(server: httpx.Client, raw: bytes, problem: str) -> None:
    response = server.post("/search", content=raw, headers={"content-type": "application/json"})
    assert problem in _detail(response, 422, "question")
    assert server.get("/health").status_code == 200


def test_a_question_over_the_token_limit_is_a_422_for_post_and_get(server: httpx.Client) -> None:
    long = "外国人如何激活医保电子凭证" * 40  # 520 characters, far over 256 tokens, under the character limit
    assert f"the limit is {MAX_QUESTION_TOKENS}" in _detail(server.post("/search", json={"question": long}), 422, "question")
    assert "tokens long" in _detail(server.get("/search", params={"q": long}), 422, "q")
    assert server.post("/search", json={"question": "外国人如何激活医保电子凭证"}).status_code == 200


def test_a_body_that_is_not_utf8_is_a_422_naming_the_body(server: httpx.Client) -> None:
    response = server.post("/search", content=b'{"question": "\xff\xfe"}', headers={"content-type": "application/json"})
    assert "not valid UTF-8 (byte 14)" in _detail(response, 422, "body")


def test_deep_json_under_the_size_limit_is_a_422(server: httpx.Client) -> None:
    raw = b'{"question": ' + b"[" * 5000 + b"]" * 5000 + b"}"
    assert "nested 5001 levels" in _detail(server.post("/search", content=raw, headers={"content-type": "application/json"}), 422, "body")


def _read_all(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection."""
    parts = []
    while chunk := sock.recv(65536):
        parts.append(chunk)
    return b"".join(parts)


def test_an_oversized_body_is_refused_before_it_is_read(server: httpx.Client) -> None:
    host, port = server.base_url.host, server.base_url.port
    with socket.create_connection((host, port), timeout=10) as sock:
        sock.sendall(b"POST /search HTTP/1.1\r\nHost: 127.0.0.1\r\ncontent-type: application/json\r\ncontent-length: 200000000\r\n\r\n{")
        started = time.monotonic()
        reply = _read_all(sock)
        assert time.monotonic() - started < 5
    assert reply.startswith(b"HTTP/1.1 413") and b"body: is 200000000 bytes" in reply
    chunked = (b"x" * 8192 for _ in range(20))  # 160 KB without a Content-Length
    response = server.post("/search", content=chunked, headers={"content-type": "application/json"})
    assert "over the limit" in _detail(response, 413, "body")
    assert server.get("/health").status_code == 200


@pytest.fixture
def quick(retriever: Retriever) -> Retriever:
    """The session's retriever with one-second read timeouts and localhost admin."""
    settings = replace(retriever.settings, header_timeout_s=1.0, body_timeout_s=1.0, admin_allow_localhost=True)
    return Retriever(settings, retriever.encoders, retriever.index)


def test_a_body_that_never_arrives_is_a_408_and_half_headers_are_closed(quick: Retriever) -> None:
    with thread_server(create_app(quick)) as client:
        address = (client.base_url.host, client.base_url.port)
        with socket.create_connection(address, timeout=10) as sock:
            sock.sendall(b"POST /search HTTP/1.1\r\nHost: 127.0.0.1\r\ncontent-type: application/json\r\ncontent-length: 40\r\n\r\n{")
            started = time.monotonic()
            reply = _read_all(sock)
            assert reply.startswith(b"HTTP/1.1 408") and 1 <= time.monotonic() - started < 5, reply
        with socket.create_connection(address, timeout=10) as sock:
            sock.sendall(b"GET /health HTTP/1.1\r\nHost: 127.")  # and then nothing
            started = time.monotonic()
            assert sock.recv(4096) == b""  # closed by the server
            assert time.monotonic() - started < 5
        assert client.get("/health").status_code == 200


@pytest.mark.parametrize(
    "headers, status, says",
    [
        ({"host": "evil.example:8000"}, 403, "Host"),
        ({"origin": "http://evil.example"}, 403, "Origin"),
        ({"sec-fetch-site": "cross-site"}, 403, "Sec-Fetch-Site"),
        ({"content-type": "text/plain"}, 415, "application/json"),
        ({"content-type": "application/x-www-form-urlencoded"}, 415, "application/json"),
    ],
)
def test_localhost_admin_refuses_what_a_web_page_could_send(quick: Retriever, headers: dict[str, str], status: int, says: str) -> None:
    with thread_server(create_app(quick)) as client:
        response = client.post("/admin/reindex", headers=headers, content=b"x" if "content-type" in headers else None)
        assert response.status_code == status and says in response.json()["detail"], response.text
        if "host" in headers:  # DNS rebinding: a page on evil.example reading the answer
            assert client.get("/admin/index", headers=headers).status_code == 403
        own = {"origin": f"http://127.0.0.1:{client.base_url.port}", "content-type": "application/json"}
        assert client.get("/admin/index", headers={"origin": own["origin"]}).status_code == 200


@pytest.mark.parametrize("token", ["  ", "tökén", " padded ", "tab\there"])
def test_a_token_no_client_could_send_is_refused_at_start(retriever: Retriever, token: str, tmp_path: Path) -> None:
    with pytest.raises(RagError, match="RAG_ADMIN_TOKEN must be printable ASCII"):
        create_app(Retriever(replace(retriever.settings, admin_token=token), retriever.encoders, retriever.index))
    env = os.environ | {"RAG_ADMIN_TOKEN": token}
    result = subprocess.run([sys.executable, "-m", "rag.cli", "serve", "--port", "0"], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and result.stderr.count("\n") == 1 and "RAG_ADMIN_TOKEN" in result.stderr, result.stderr


def test_rag_ask_with_bytes_that_are_not_utf8_is_one_line(settings: Settings) -> None:
    env = os.environ | {"RAG_INDEX_DIR": str(settings.index_dir)}
    result = subprocess.run([sys.executable, "-m", "rag.cli", "ask", b"\xff\xfe"], env=env, capture_output=True, text=True, timeout=60)  # type: ignore[list-item]
    assert (
        result.returncode == 2
        and result.stderr == "rag: error: the question is not valid UTF-8; check the terminal's encoding (LANG, LC_ALL)\n"
    )


# --- index damage ---------------------------------------------------------------------------------


@pytest.fixture
def small(settings: Settings, encoders: dict[str, Encoder], tmp_path: Path) -> Settings:
    s = replace(settings, corpus_dir=write_corpus(tmp_path / "corpus"), index_dir=tmp_path / "index")
    build_index(s, encoders, progress=False)
    return s


def _cli(s: Settings, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "rag.cli", *args, "--corpus", str(s.corpus_dir), "--index", str(s.index_dir)],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.mark.parametrize("damage", ["bytes", "directory", "name"])
def test_a_damaged_current_pointer_is_one_line_and_rag_index_repairs_it(small: Settings, damage: str) -> None:
    pointer = small.index_dir / "CURRENT"
    pointer.unlink()
    if damage == "bytes":
        pointer.write_bytes(b"\xff\xfe\x00v2026")
    elif damage == "directory":
        pointer.mkdir()
    else:
        pointer.write_text("../../etc\n")
    with pytest.raises(IndexInvalidError, match="CURRENT"):
        load_index(small)
    asked = _cli(small, "ask", "医保")
    assert asked.returncode == 2 and asked.stderr.count("\n") == 1 and "CURRENT" in asked.stderr and "rag index" in asked.stderr
    built = _cli(small, "index", "--quiet")
    assert built.returncode == 0, built.stderr
    assert "CURRENT" in built.stderr and "building a fresh version" in built.stderr
    assert len(load_index(small).passages) > 0


def test_a_running_server_reports_a_damaged_pointer_once_and_keeps_serving(small: Settings, encoders: dict[str, Encoder]) -> None:
    retriever = Retriever(small, encoders, load_index(small))
    reloader = Reloader(retriever, poll_seconds=0)
    (small.index_dir / "CURRENT").write_bytes(b"\xff\xfe")
    assert reloader.sync() is False and reloader.sync() is False
    assert reloader.last_error is not None and "CURRENT" in reloader.last_error
    with thread_server(create_app(retriever, reloader)) as client:
        assert client.get("/search", params={"q": "医保电子凭证"}).status_code == 200


@pytest.mark.parametrize(
    "edit",
    [
        lambda m: m["files"].update({"../../../../dev/zero": "0" * 64}),
        lambda m: m["files"].update({"/etc/passwd": "0" * 64}),
        lambda m: m.update({"encoders": ["primary"]}),
        lambda m: m.update({"files": "everything"}),
        lambda m: m.update({"passages": "many"}),
    ],
    ids=["dev-zero", "absolute", "encoders-list", "files-string", "passages-string"],
)
def test_a_tampered_manifest_is_refused_quickly_with_the_fix(small: Settings, edit: object) -> None:
    version = current_version(small.index_dir)
    assert version is not None
    manifest = json.loads((version / "manifest.json").read_text())
    edit(manifest)  # type: ignore[operator]
    (version / "manifest.json").write_text(json.dumps(manifest))
    started = time.monotonic()
    with pytest.raises(IndexInvalidError, match="rag index"):
        load_index(small)
    assert time.monotonic() - started < 10
    asked = _cli(small, "ask", "医保", timeout=60)
    assert asked.returncode == 2 and asked.stderr.startswith("rag: error: index") and "Traceback" not in asked.stderr


def test_rag_serve_on_a_taken_port_is_one_line_and_exit_2(settings: Settings) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = os.environ | {"RAG_INDEX_DIR": str(settings.index_dir)}
        result = subprocess.run(
            [sys.executable, "-m", "rag.cli", "serve", "--port", str(port)], env=env, capture_output=True, text=True, timeout=60
        )
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr and "--port" in result.stderr


@pytest.mark.parametrize(("args", "message"), [
    (["--port", "99999"], "argument --port: must be 0-65535, got 99999"),
    (["--port", "-1"], "argument --port: must be 0-65535, got -1"),
    (["--port", "eighty"], "argument --port: must be a whole number, got 'eighty'"),
    (["--host", "no-such-host.invalid", "--port", "8000"], "pass an address of this machine as --host"),
])  # fmt: skip
def test_rag_serve_with_a_bad_port_or_host_is_a_usage_line_not_an_internal_error(settings: Settings, args: list[str], message: str) -> None:
    env = os.environ | {"RAG_INDEX_DIR": str(settings.index_dir)}
    result = subprocess.run([sys.executable, "-m", "rag.cli", "serve", *args], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
    assert message in result.stderr and "internal error" not in result.stderr, result.stderr
