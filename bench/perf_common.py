"""Helpers shared by bench/perf_*.py: load check, percentiles, RSS, docs/performance.md sections."""

from __future__ import annotations

import os
import statistics
import time
from pathlib import Path

from doc_blocks import get_block, put_block

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "performance.md"


def loadavg() -> float:
    return float(Path("/proc/loadavg").read_text().split()[0])


def load_line() -> str:
    return f"load average (1 min) {loadavg():.2f} at {time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime())} UTC"


def wait_quiet(threshold: float = 0.5, poll_s: float = 30.0, max_wait_s: float = 900.0) -> float:
    """Wait until the 1-minute load average is below threshold (or give up); return the load."""
    deadline = time.monotonic() + max_wait_s
    while (load := loadavg()) >= threshold and time.monotonic() < deadline:
        print(f"load {load:.2f} >= {threshold}; waiting {poll_s:.0f} s", flush=True)
        time.sleep(poll_s)
    return load


def rss_mb(pid: int | str = "self") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def hwm_mb(pid: int | str = "self") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def pct(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100)."""
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(q / 100 * len(s) + 0.5) - 1))]


def summary(values: list[float]) -> tuple[float, float, float]:
    return pct(values, 50), pct(values, 95), pct(values, 99)


def median(values: list[float]) -> float:
    return statistics.median(values)


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def write_section(key: str, title: str, body: str) -> None:
    """Replace (or append) one `### title` block inside the perf benchmarks' block of the doc."""
    text = DOC.read_text(encoding="utf-8") if DOC.exists() else "# Performance\n"
    ours = get_block(text, "bench/perf") or "## Query path, throughput, cold start and scale (`bench/perf_*.py`)"
    ours = put_block(ours, f"perf:{key}", f"### {title}\n\n{body.strip()}")
    DOC.write_text(put_block(text, "bench/perf", ours), encoding="utf-8")


def env_threads() -> str:
    keys = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "RAG_QUERY_ENGINE")
    return ", ".join(f"{k}={os.environ[k]}" for k in keys if k in os.environ) or "no thread env vars"


# --- a real `rag serve` subprocess on 127.0.0.1 -------------------------------------------------------

import json  # noqa: E402
import socket  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import urllib.request  # noqa: E402

_SERVE = "from rag.cli import main; raise SystemExit(main(['serve', '--host', '127.0.0.1', '--port', '{port}']))"

#: How the server is started. `plain` is `rag serve` as shipped (queries through the numpy e5 path,
#: BLAS threads at their default, at most one search per core). `blas1` limits numpy's BLAS to one
#: thread (what one search per core would suggest). `st` embeds queries with sentence-transformers
#: (torch, one thread per search), the query path shipped before the numpy one. `nowarm` skips the
#: server's warm-up once listening (Retriever.warm_up), as before 2026-12-02: the first search loads jieba.
LAUNCHERS = {
    "plain": _SERVE,
    "blas1": "import numpy; from threadpoolctl import threadpool_limits; threadpool_limits(1, 'blas')\n" + _SERVE,
    "st": "import os; os.environ['RAG_QUERY_ENGINE'] = 'sentence-transformers'\n" + _SERVE,
    "nowarm": "from rag.retrieve import Retriever; Retriever.warm_up = lambda self: None\n" + _SERVE,
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(
    variant: str = "plain", env: dict[str, str] | None = None, timeout_s: float = 120.0, until: str = "search"
) -> tuple[subprocess.Popen[bytes], str, float]:
    """Start a server, wait for its first answered /search (`until="health"`: GET /health, i.e. it
    listens); return (process, base url, seconds to that first answer)."""
    port = free_port()
    full_env = {**os.environ, "HF_HUB_OFFLINE": "1", "RAG_RELOAD_POLL_MS": "0", **(env or {})}
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-c", LAUNCHERS[variant].format(port=port)],
        cwd=ROOT,
        env=full_env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    body = json.dumps({"question": "外国人可以用哪些证件绑定医保电子凭证", "top_k": 5}).encode()
    while time.perf_counter() - t0 < timeout_s:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            req = (
                urllib.request.Request(base + "/search", data=body, headers={"content-type": "application/json"})
                if until == "search"
                else urllib.request.Request(base + "/health")
            )
            with urllib.request.urlopen(req, timeout=30) as r:
                r.read()
            return proc, base, time.perf_counter() - t0
        except OSError:
            time.sleep(0.02)
    proc.kill()
    raise RuntimeError("server did not answer in time")


def stop_server(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def questions(n_each: int = 20) -> list[str]:
    """A fixed set: the first n_each Chinese and n_each English questions of tests/data/questions.jsonl, interleaved."""
    zh, en = [], []
    with open(ROOT / "tests" / "data" / "questions.jsonl", encoding="utf-8") as f:
        for line in f:
            q = json.loads(line)
            (zh if q["lang"] == "zh" else en).append(q["question"])
    out = []
    for a, b in zip(zh[:n_each], en[:n_each], strict=False):
        out += [a, b]
    return out
