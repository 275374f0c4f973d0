"""Throughput over HTTP: 1, 4 and 16 concurrent clients against a real `rag serve` on 127.0.0.1.

Each client is a thread with its own keep-alive connection sending POST /search for the fixed
question set in turn; a level stops after --requests answers or --seconds, whichever comes first.
Reports requests/s and latency percentiles per server variant (see perf_common.LAUNCHERS and --env).

    .venv/bin/python bench/perf_load.py [--clients 1,4,16] [--requests 200] [--seconds 20] [--variants plain,blas1,st] [--write]
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
from perf_common import load_line, questions, start_server, stop_server, summary, table, write_section


def level(base: str, clients: int, max_requests: int, max_seconds: float) -> tuple[float, list[float], int]:
    host, port = base.removeprefix("http://").split(":")
    qs = questions()
    lat: list[float] = []
    errors = [0]
    lock = threading.Lock()
    issued = [0]
    deadline = time.perf_counter() + max_seconds

    def client(cid: int) -> None:
        conn = http.client.HTTPConnection(host, int(port), timeout=120)
        i = cid
        while time.perf_counter() < deadline:
            with lock:
                if issued[0] >= max_requests:
                    break
                issued[0] += 1
            body = json.dumps({"question": qs[i % len(qs)], "top_k": 5})
            i += clients
            t = time.perf_counter()
            try:
                conn.request("POST", "/search", body=body, headers={"content-type": "application/json"})
                resp = conn.getresponse()
                resp.read()
                ok = resp.status == 200
            except OSError:
                ok = False
                conn.close()
                conn = http.client.HTTPConnection(host, int(port), timeout=120)
            with lock:
                if ok:
                    lat.append((time.perf_counter() - t) * 1000)
                else:
                    errors[0] += 1
        conn.close()

    threads = [threading.Thread(target=client, args=(c,)) for c in range(clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return len(lat) / (time.perf_counter() - t0), lat, errors[0]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", default="1,4,16")
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--repeats", type=int, default=3, help="runs per level; the median-throughput run is reported")
    parser.add_argument("--variants", default="plain,blas1,st")
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args()
    load_before = load_line()
    rows = []
    for variant in args.variants.split(","):
        proc, base, _ = start_server(variant)
        try:
            level(base, 2, 20, 10)  # warm-up
            for c in (int(x) for x in args.clients.split(",")):
                runs = sorted((level(base, c, args.requests, args.seconds) for _ in range(args.repeats)), key=lambda r: r[0])
                rps, lat, errs = runs[len(runs) // 2]
                p50, p95, p99 = summary(lat)
                all_rps = "/".join(f"{r[0]:.1f}" for r in runs)
                cells = [f"{x:.1f}" for x in (p50, p95, p99)]
                rows.append([f"`{variant}`", str(c), f"{rps:.1f}", all_rps, *cells, str(len(lat)), str(errs)])
                print(rows[-1], file=sys.stderr)
        finally:
            stop_server(proc)
    text = (
        f"Closed loop, each client one keep-alive connection, POST /search top_k=5 over 40 fixed zh/en questions; "
        f"at most {args.requests} requests or {args.seconds:.0f} s per run, {args.repeats} runs per level, the median run shown "
        f"(all runs' req/s listed). Before: {load_before}; after: {load_line()}.\n\n"
        + table(["server", "clients", "req/s (median run)", "req/s all runs", "p50 ms", "p95 ms", "p99 ms", "answers", "errors"], rows)
        + "\n"
    )
    print(text)
    if args.write:
        write_section("load", "Throughput over HTTP (`bench/perf_load.py`)", text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
