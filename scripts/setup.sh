#!/usr/bin/env bash
# Install everything into .venv/ at the project root. Safe to re-run.
# torch is installed first and pinned: its CPU wheel lies on this machine's disk, while a loose
# requirement would pull a multi-GB CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null || PY=python3
[ -x .venv/bin/python ] || "$PY" -m venv .venv
echo "setup: installing into .venv/ (torch 2.13.0 CPU, then the project; about a minute the first time) ..." >&2
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q torch==2.13.0
.venv/bin/python -m pip install -q -e ".[dev]"
echo "setup: done" >&2
