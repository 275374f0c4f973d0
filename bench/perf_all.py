"""Run every performance benchmark and write its section of docs/performance.md.

Waits (up to 15 min, polling every 30 s) for the 1-minute load average to drop below 0.5 first,
because the machine is shared; each benchmark records the load before and after it ran.

    .venv/bin/python bench/perf_all.py [--quick] [--no-wait]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from perf_common import ROOT, wait_quiet


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer rounds and no 1M scale run (a smoke test, ~3 min)")
    parser.add_argument("--no-wait", action="store_true", help="do not wait for a quiet machine")
    args = parser.parse_args()
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    runs = [
        ["perf_query.py", "--rounds", "2" if args.quick else "5"],
        ["perf_load.py", "--repeats", "1" if args.quick else "3", "--requests", "100" if args.quick else "200", "--seconds", "15"],
        ["perf_cold.py", "--repeats", "1" if args.quick else "3"],
        ["perf_build.py", "--repeats", "1" if args.quick else "3", "--documents", "30" if args.quick else "150"],
        ["perf_scale.py", "--sizes", "10000,100000" if args.quick else "10000,100000,1000000"],
    ]
    for cmd in runs:
        if not args.no_wait:
            wait_quiet()
        print(f"== {cmd[0]}", flush=True)
        subprocess.run([sys.executable, str(ROOT / "bench" / cmd[0]), *cmd[1:], "--write"], cwd=ROOT, env=env, check=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
