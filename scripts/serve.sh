#!/usr/bin/env bash
# Install everything, then serve the API on the shipped corpus (model folder and index built if missing).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export HF_HUB_OFFLINE=1
exec .venv/bin/rag serve --host "${RAG_HOST:-127.0.0.1}" --port "${RAG_PORT:-8000}"
