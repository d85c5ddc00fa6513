#!/usr/bin/env bash
# Quick start: install, then ingest the project's own docs/ into the embedded store (.rag/).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
.venv/bin/rag ingest docs/ --collection docs
