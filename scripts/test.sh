#!/usr/bin/env bash
# Install with the test extras, then run the whole test suite (extra pytest arguments pass through).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh test
# CI deselects the full-corpus runs (marker `full`: all of SciFact through ingest, over 15 minutes on 2 busy
# cores with the ONNX embedder); RAG_TEST_FULL=1 runs them too, as does any explicit -m.
if [ "${CI:-}" = "true" ] && [ "${RAG_TEST_FULL:-}" != "1" ]; then
  exec .venv/bin/python -m pytest -m "not full" "$@"
fi
exec .venv/bin/python -m pytest "$@"
