"""Cold start: process start to the first answered POST /search, model folder and index present.

Then the first question asked a moment after the server listens (what a user sees), round trip: the
lazy loads it once paid for (jieba's dictionary, the token counter: ~1.7 s) the server now does
once listening (Retriever.warm_up).

Also times the pieces of start-up in a fresh interpreter each (imports, index load, encoders,
CC-CEDICT reverse dictionary), so the total can be explained.

    .venv/bin/python bench/perf_cold.py [--repeats 3] [--write]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from perf_common import ROOT, load_line, median, start_server, stop_server, table, write_section

PIECES = r"""
import json, sys, time
t = time.perf_counter(); out = {}
def mark(name):
    global t
    now = time.perf_counter(); out[name] = round((now - t) * 1000, 1); t = now
import fastapi, uvicorn, faiss, bm25s, jieba; mark("import fastapi/uvicorn/faiss/bm25s/jieba")
from rag.config import Settings; from rag.index import load_index; s = Settings.from_env(); mark("import rag")
idx = load_index(s); mark("load index")
from rag.encoders import PRIMARY, SECOND, load_encoder; e = load_encoder(s, progress=False); mark("load e5 (numpy query path)")
from rag.encoders.use import USEEncoder; u = USEEncoder(cache_dir=s.cache_dir); mark("load USE (+ warm-up)")
from rag.expand import pinyin_readings, reverse_cedict; reverse_cedict(s.cache_dir); pinyin_readings(s.cache_dir)
mark("CC-CEDICT reverse dictionary + pinyin (cached)")
_ = idx.vocabulary; mark("index vocabulary")
from rag.tokenize import tokenize; tokenize("外国人可以用哪些证件绑定医保电子凭证"); mark("first jieba call (dictionary load)")
e.encode_queries(["外国人可以用哪些证件绑定医保电子凭证"]); mark("first e5 query")
assert "torch" not in sys.modules, "the query path imported torch"
print(json.dumps(out))
"""

QUESTION = {"question": "外国人可以用哪些证件绑定医保电子凭证", "top_k": 5}


def listening_then_first(variant: str, idle_s: float = 2.0) -> tuple[float, float]:
    """Seconds from Popen to the first answered GET /health, and the wall ms of the first search asked idle_s later."""
    proc, base, listening = start_server(variant, until="health")
    try:
        time.sleep(idle_s)
        req = urllib.request.Request(base + "/search", data=json.dumps(QUESTION).encode(), headers={"content-type": "application/json"})
        asked = time.perf_counter()
        with urllib.request.urlopen(req, timeout=30) as r:
            r.read()
        return listening, (time.perf_counter() - asked) * 1000
    finally:
        stop_server(proc)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--variants", default="plain")
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args()
    load_before = load_line()
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    pieces: dict[str, list[float]] = {}
    for _ in range(args.repeats):
        res = subprocess.run([sys.executable, "-c", PIECES], cwd=ROOT, env=env, capture_output=True, text=True, check=True)
        for k, v in json.loads(res.stdout.strip().splitlines()[-1]).items():
            pieces.setdefault(k, []).append(v)
    rows, first_rows = [], []
    for variant in args.variants.split(","):
        times = []
        for _ in range(args.repeats):
            proc, _, seconds = start_server(variant)
            stop_server(proc)
            times.append(seconds)
        rows.append([f"`{variant}`", f"{median(times):.2f}", " / ".join(f"{t:.2f}" for t in times)])
        firsts = [listening_then_first(variant) for _ in range(args.repeats)]
        listening, took = [f[0] for f in firsts], [f[1] for f in firsts]
        first_rows.append([f"`{variant}`", f"{median(listening):.2f}", f"{median(took):.0f}", " / ".join(f"{t:.0f}" for t in took)])
    piece_rows = [[k, f"{median(v):.0f}"] for k, v in pieces.items()]
    piece_rows.append(["sum", f"{sum(median(v) for v in pieces.values()):.0f}"])
    text = (
        f"Wall clock from `Popen` of the server to the first 200 answer of POST /search, {args.repeats} runs each "
        f"(page cache warm: the model folder and index were read before). Before: {load_before}; after: {load_line()}.\n\n"
        + table(["server", "cold start s (median)", "runs s"], rows)
        + "\n\nThe first question, asked 2 s after the server first answers GET /health (round trip; later ones take ~25 ms):\n\n"
        + table(["server", "listening s (median)", "first search ms (median)", "runs ms"], first_rows)
        + "\n\nWhere start-up goes (fresh interpreter, medians of the same runs, ms):\n\n"
        + table(["piece", "ms"], piece_rows)
        + "\n"
    )
    print(text)
    if args.write:
        write_section("cold", "Cold start (`bench/perf_cold.py`)", text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
