#!/usr/bin/env bash
# Install everything, then run the whole test suite (real model, real index, real server).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/browser.sh
export HF_HUB_OFFLINE=1
.venv/bin/python -m pytest -q "$@"
