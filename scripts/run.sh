#!/usr/bin/env bash
# Quick start: install, ingest the project's own docs/ into the embedded store (.rag/), then serve the API
# on http://127.0.0.1:8000 (RAG_HOST / RAG_PORT to change). Ctrl-C stops it.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
.venv/bin/rag ingest docs/ --collection docs
exec .venv/bin/rag serve
