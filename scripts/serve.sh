#!/usr/bin/env bash
# Install everything, bring the index up to date with corpus/ and the settings (built if missing; an
# incremental build embeds only what changed, ~1.5 s when nothing did), then serve the API.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export HF_HUB_OFFLINE=1
.venv/bin/rag index   # the first build shows its progress (stages, then passages embedded)
exec .venv/bin/rag serve --host "${RAG_HOST:-127.0.0.1}" --port "${RAG_PORT:-8000}"
