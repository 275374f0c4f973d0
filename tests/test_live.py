"""Live reload: a `rag serve` process under a loop of searches from several threads while the corpus
changes and is reindexed several times (admin endpoint and `rag index` from another process).
No search may fail, and each swap must make the new content findable."""

from __future__ import annotations

import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import httpx
import pytest
from support import free_port, rag_process, wait_until_healthy, write_corpus

from rag.config import Settings
from rag.encoders import Encoder
from rag.index import build_index, current_version

pytestmark = pytest.mark.slow

TOKEN = "live-test-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
QUESTIONS = ["外国人怎么激活医保电子凭证", "When do hospital refunds arrive?", "孩子可以绑定到父母的医保账户吗", "quokka permit office"]


@dataclass
class Load:
    """Searches from several threads until stopped; every answer that is not a 200 is kept."""

    base_url: str
    threads: int = 4
    ok: list[tuple[float, float]] = field(default_factory=list)  # monotonic (sent, answered) of each successful search
    failures: list[str] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self, n: int) -> None:
        with httpx.Client(base_url=self.base_url, timeout=60) as client:
            i = n
            while not self.stop.is_set():
                question = QUESTIONS[i % len(QUESTIONS)]
                i += 1
                sent = time.monotonic()
                try:
                    if i % 2:
                        response = client.post("/search", json={"question": question, "top_k": 3})
                    else:
                        response = client.get("/search", params={"q": question, "top_k": 3})
                    if response.status_code == 200 and len(response.json()["passages"]) == 3:
                        self.ok.append((sent, time.monotonic()))
                    else:
                        self.failures.append(f"{response.status_code}: {response.text[:200]}")
                except httpx.HTTPError as exc:
                    self.failures.append(f"{type(exc).__name__}: {exc}")

    def searches_between(self, start: float, end: float) -> int:
        """Successful searches in flight at some moment of [start, end] (a reindex with nothing to
        embed can take less time than one search on a loaded machine)."""
        return sum(sent <= end and answered >= start for sent, answered in list(self.ok))


@pytest.fixture
def live(settings: Settings, encoders: dict[str, Encoder], tmp_path: Path) -> Iterator[tuple[Settings, httpx.Client, Load, Path]]:
    s = replace(settings, corpus_dir=write_corpus(tmp_path / "corpus"), index_dir=tmp_path / "index")
    build_index(s, encoders, progress=False)
    port, log = free_port(), tmp_path / "server.log"
    args = ["serve", "--port", str(port), "--corpus", str(s.corpus_dir), "--index", str(s.index_dir)]
    proc = rag_process(*args, env={"RAG_ADMIN_TOKEN": TOKEN, "RAG_RELOAD_POLL_MS": "200"}, log=log)
    client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60)
    load = Load(str(client.base_url))
    workers = [threading.Thread(target=load.run, args=(n,)) for n in range(load.threads)]
    try:
        wait_until_healthy(client, proc, log)
        for w in workers:
            w.start()
        yield s, client, load, log
    finally:
        load.stop.set()
        for w in workers:
            if w.is_alive():
                w.join(timeout=60)
        client.close()
        proc.terminate()
        proc.wait(timeout=30)


def _reindex(client: httpx.Client) -> dict[str, Any]:
    response = client.post("/admin/reindex", headers=AUTH)
    assert response.status_code == 202, response.text
    job, stages = response.json(), set()
    deadline = time.monotonic() + 180
    while job["status"] in ("queued", "running"):
        assert time.monotonic() < deadline, job
        stages.add(job["stage"])
        time.sleep(0.05)
        job = client.get(f"/admin/reindex/{job['id']}", headers=AUTH).json()
    assert job["status"] == "done", job
    return job["result"] | {"stages": stages}


def _top_document(client: httpx.Client, question: str) -> str:
    return str(client.get("/search", params={"q": question, "top_k": 1}).json()["passages"][0]["citation"]["document"])


def _serving(client: httpx.Client) -> str:
    return str(client.get("/admin/index", headers=AUTH).json()["version"])


def test_no_search_fails_across_reindexes_and_each_swap_serves_the_new_content(live: tuple[Settings, httpx.Client, Load, Path]) -> None:
    settings, client, load, log = live
    corpus = settings.corpus_dir
    time.sleep(1)
    windows = []

    # 1. a new document, reindexed through the admin endpoint
    (corpus / "quokka.txt").write_text("Quokka permits\nThe quokka permit office in Lanzhou opens at 7:15 on Tuesdays.\n", encoding="utf-8")
    start = time.monotonic()
    result = _reindex(client)
    windows.append((start, time.monotonic()))
    assert result["added"] == ["quokka.txt"] and result["embedded"] == 1
    assert _serving(client) == result["version"]
    assert _top_document(client, "When does the quokka permit office in Lanzhou open?") == "quokka.txt"

    # 2. a changed document, rebuilt by `rag index` in another process and picked up automatically
    (corpus / "pharmacy.txt").write_text("药店购药\n在定点零售药店购买熊猫牌口罩可以使用个人账户余额支付。\n", encoding="utf-8")
    start = time.monotonic()
    cli = subprocess.run(
        [sys.executable, "-m", "rag.cli", "index", "--quiet", "--corpus", str(corpus), "--index", str(settings.index_dir)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert cli.returncode == 0, cli.stderr
    assert cli.stdout.splitlines()[0] == "added 0, changed 1, removed 0, unchanged 4 documents; embedded 1 passages"
    built = current_version(settings.index_dir)
    assert built is not None
    deadline = time.monotonic() + 30
    while _serving(client) != built.name:
        assert time.monotonic() < deadline, f"server did not pick up {built.name}:\n{log.read_text()}"
        time.sleep(0.1)
    windows.append((start, time.monotonic()))
    assert _top_document(client, "熊猫牌口罩能用个人账户买吗") == "pharmacy.txt"

    # 3. a newer version that is damaged: logged, skipped, the good one keeps serving
    broken = settings.index_dir / "v99990101T000000000000-1"
    shutil.copytree(built, broken)
    (broken / "passages.jsonl").write_text("{}\n")
    (settings.index_dir / "CURRENT").write_text(broken.name + "\n")
    deadline = time.monotonic() + 30
    while (info := client.get("/admin/index", headers=AUTH).json())["reload_error"] is None:
        assert time.monotonic() < deadline, f"the damaged version was not tried:\n{log.read_text()}"
        time.sleep(0.1)
    assert info["version"] == built.name and info["reload_error"].startswith(broken.name)
    (settings.index_dir / "CURRENT").write_text(built.name + "\n")

    # 4. a deleted and a renamed document, reindexed through the admin endpoint again
    (corpus / "quokka.txt").unlink()
    (corpus / "guide.txt").rename(corpus / "handbook.txt")
    start = time.monotonic()
    result = _reindex(client)
    windows.append((start, time.monotonic()))
    assert (result["added"], result["removed"], result["embedded"]) == (["handbook.txt"], ["guide.txt", "quokka.txt"], 0)
    assert _top_document(client, "When does the quokka permit office in Lanzhou open?") != "quokka.txt"
    assert _top_document(client, "外国人怎么激活医保电子凭证") == "handbook.txt"
    assert client.get("/admin/index", headers=AUTH).json()["reload_error"] is None

    time.sleep(1)
    load.stop.set()
    time.sleep(0.5)
    print(f"{len(load.ok)} searches from {load.threads} threads across {len(windows)} reindexes, {len(load.failures)} failed")
    assert load.failures == [], load.failures[:5]
    assert len(load.ok) > 50
    assert all(load.searches_between(a, b) > 0 for a, b in windows), windows
    assert "could not load index v99990101T000000000000-1" in log.read_text()
