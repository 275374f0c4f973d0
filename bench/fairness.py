"""A heavy client must not starve the others: a short question's latency alone, then while two
clients loop the longest question the server accepts, against a real `rag serve` on 127.0.0.1.

Both queueing rules run side by side in one run: `fair` (shipped: long questions take a long slot,
so a core stays free for short ones; rag/admission.py) and `one queue` (RAG_FAIR_QUEUE=0: first
come, first served). The target is loaded p50 within 3x of alone.

    .venv/bin/python bench/fairness.py [--requests 60] [--write]
"""

from __future__ import annotations

import argparse
import http.client
import json
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from doc_blocks import update_doc
from perf_common import ROOT, load_line, pct, start_server, stop_server, table

SHORT = "外国人可以用支付宝激活医保电子凭证吗"
LONG_UNIT = {
    "zh": "外国人在中国工作时如何用护照激活医保电子凭证并为家属绑定亲情账户，",
    "en": "how can a foreign worker activate the voucher ",
}


def post(conn: http.client.HTTPConnection, question: str) -> tuple[int, float]:
    body = json.dumps({"question": question, "top_k": 5}).encode()
    started = time.perf_counter()
    conn.request("POST", "/search", body, {"content-type": "application/json"})
    response = conn.getresponse()
    response.read()
    return response.status, (time.perf_counter() - started) * 1000


def longest_accepted(conn: http.client.HTTPConnection, unit: str) -> str:
    """The longest repetition of `unit` the server still answers (not a 422 for its token limit)."""
    low, high = 1, 2000 // len(unit)
    while low < high:
        mid = (low + high + 1) // 2
        if post(conn, unit * mid)[0] == 200:
            low = mid
        else:
            high = mid - 1
    return unit * low


def run(env: dict[str, str], requests: int, lang: str, variant: str = "plain") -> dict[str, float]:
    proc, base, _ = start_server(variant, env=env)
    host, port = base.removeprefix("http://").split(":")
    try:
        conn = http.client.HTTPConnection(host, int(port), timeout=120)
        heavy = longest_accepted(conn, LONG_UNIT[lang])
        alone = [post(conn, SHORT)[1] for _ in range(requests)]
        heavy_ms = [post(conn, heavy)[1] for _ in range(5)]
        stop = threading.Event()

        def loop() -> None:
            own = http.client.HTTPConnection(host, int(port), timeout=120)
            while not stop.is_set():
                post(own, heavy)

        hogs = [threading.Thread(target=loop, daemon=True) for _ in range(2)]
        for t in hogs:
            t.start()
        time.sleep(1.0)
        loaded = [post(conn, SHORT)[1] for _ in range(requests)]
        stop.set()
        for t in hogs:
            t.join(timeout=60)
        return {
            "heavy_chars": len(heavy),
            "heavy_ms": pct(heavy_ms, 50),
            "alone_p50": pct(alone, 50),
            "loaded_p50": pct(loaded, 50),
            "loaded_p90": pct(loaded, 90),
        }
    finally:
        stop_server(proc)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=60, help="short questions timed per phase")
    parser.add_argument("--write", action="store_true", help="write the table into docs/reliability.md")
    args = parser.parse_args()
    before = load_line()
    rows = []
    for lang in ("zh", "en"):
        for name, env in (("fair (shipped)", {}), ("one queue", {"RAG_FAIR_QUEUE": "0"})):
            r = run(env, args.requests, lang)
            ratio = r["loaded_p50"] / r["alone_p50"]
            rows.append(
                [
                    name,
                    f"{lang}, {int(r['heavy_chars'])} chars",
                    f"{r['heavy_ms']:.0f}",
                    f"{r['alone_p50']:.1f}",
                    f"{r['loaded_p50']:.1f}",
                    f"{r['loaded_p90']:.1f}",
                    f"**{ratio:.2f}x**",
                ]
            )
            print(rows[-1], flush=True)
    header = ["queueing", "heavy question", "heavy ms", "short p50 alone", "short p50 loaded", "short p90 loaded", "loaded / alone"]
    body = (
        f"Two clients loop the longest question the server accepts while a third asks a short one "
        f"({args.requests} timed requests per phase; `bench/fairness.py`; target: loaded / alone <= 3x).\n\n"
        + table(header, rows)
        + f"\n\n{before}, after: {load_line()}"
    )
    print(body)
    if args.write:
        update_doc(ROOT / "docs" / "reliability.md", "bench/fairness", "## Fairness under heavy clients\n\n" + body, "Reliability")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
