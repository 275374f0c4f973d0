"""Helpers shared by the index, fault and live tests: small corpora, an encoder that counts, servers."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from rag.api import server as make_server
from rag.encoders import Encoder

# A small bilingual corpus: every document has a title line, so renaming a file does not change
# what its passages embed.
DOCS = {
    "guide.txt": "医保电子凭证办理指南\n外国人可以使用护照激活医保电子凭证。激活以后可以在药店扫码支付。\n",
    "travel.md": "# Travel with your e-voucher\n\nFile the cross-province medical record before you travel.\n\n"
    "## Refunds\n\nRefunds for hospital bills arrive within ten working days.\n",
    "family/kids.txt": "家庭共济\n父母可以把孩子绑定到自己的医保账户。一个账户最多可以绑定六个人。\n",
    "pharmacy.txt": "药店购药\n在定点零售药店出示医保电子凭证二维码即可直接结算。\n",
}


def write_corpus(folder: Path, docs: dict[str, str] = DOCS) -> Path:
    for name, text in docs.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return folder


class CountingEncoder:
    """The real encoder, recording every passage text it is asked to embed."""

    def __init__(self, inner: Encoder):
        self.inner, self.name, self.dim = inner, inner.name, inner.dim
        self.texts: list[str] = []

    def encode_queries(self, texts: list[str]) -> np.ndarray:
        return self.inner.encode_queries(texts)

    def encode_passages(self, texts: list[str], progress: bool = False) -> np.ndarray:
        self.texts.extend(texts)
        return self.inner.encode_passages(texts, progress)

    def passage_tokens(self, texts: list[str], projection: Any = None, progress: bool = False) -> tuple[np.ndarray, list[np.ndarray]]:
        self.texts.extend(texts)
        return self.inner.passage_tokens(texts, projection, progress)  # type: ignore[attr-defined, no-any-return]

    def __getattr__(self, name: str) -> Any:  # has_tokens, projection, queries_with_tokens and the like: the real encoder's
        if name == "inner":  # not set yet: no recursion
            raise AttributeError(name)
        return getattr(self.inner, name)


def counting(encoders: dict[str, Encoder]) -> dict[str, CountingEncoder]:
    return {role: CountingEncoder(enc) for role, enc in encoders.items()}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rag_process(*args: str, env: dict[str, str] | None = None, log: Path) -> subprocess.Popen[bytes]:
    """`python -m rag.cli ARGS` in the background, stdout and stderr into `log`."""
    with open(log, "wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "rag.cli", *args], stdout=out, stderr=subprocess.STDOUT, env=os.environ | (env or {})
        )


def wait_for_text(log: Path, text: str, proc: subprocess.Popen[bytes], timeout: float = 180) -> None:
    """Until `text` appears in the process's log; fails early if the process exits instead."""
    deadline = time.monotonic() + timeout
    while text not in log.read_text(errors="replace"):
        if proc.poll() is not None:
            raise AssertionError(f"process exited with {proc.returncode} before printing {text!r}:\n{log.read_text()}")
        if time.monotonic() > deadline:
            raise AssertionError(f"no {text!r} after {timeout} s:\n{log.read_text()}")
        time.sleep(0.1)


def wait_until_healthy(client: httpx.Client, proc: subprocess.Popen[bytes], log: Path, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise AssertionError(f"server exited with {proc.returncode}:\n{log.read_text()}")
        with contextlib.suppress(httpx.TransportError):
            if client.get("/health").status_code == 200:
                return
        if time.monotonic() > deadline:
            raise AssertionError(f"server did not start:\n{log.read_text()}")
        time.sleep(0.3)


@contextlib.contextmanager
def thread_server(app: object) -> Iterator[httpx.Client]:
    """A real uvicorn server on 127.0.0.1 in a thread of this process (for apps over in-process indexes)."""
    port = free_port()
    server = make_server(app, app.state.retriever.settings, "127.0.0.1", port)  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as client:
            yield client
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def finish_job(client: httpx.Client, job: dict[str, Any], headers: dict[str, str] | None = None) -> dict[str, Any]:
    """Poll an admin reindex job until it is done or failed (two minutes at most)."""
    deadline = time.monotonic() + 120
    while job["status"] in ("queued", "running"):
        assert time.monotonic() < deadline, job
        time.sleep(0.1)
        job = client.get(f"/admin/reindex/{job['id']}", headers=headers).json()
    return job
