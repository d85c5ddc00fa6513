#!/usr/bin/env bash
# Create .venv and install the project (plus extras given as $1, e.g. "test"). Idempotent and quick when done.
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-}"
# The CPU build of torch. An unpinned torch would pull a multi-GB CUDA build; elsewhere, point pip at a
# CPU wheel index with PIP_EXTRA_INDEX_URL, or set TORCH_SPEC.
torch_spec="${TORCH_SPEC:-torch==2.13.0}"
python="${PYTHON:-python3}"

if [ ! -x .venv/bin/python ]; then
  "$python" -m venv .venv
fi
# CI keeps the venv's stock pip (23.2 with Python 3.11), so a dependency only a newer pip finds (lxml's
# html_clean extra, say: every import is now declared by name) fails CI instead of a user's fresh install.
# Elsewhere, a current pip.
if [ "${CI:-}" = "true" ]; then
  .venv/bin/python -m pip --version
else
  .venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip
fi
.venv/bin/python -m pip install -q --disable-pip-version-check "$torch_spec"
.venv/bin/python -m pip install -q --disable-pip-version-check -e ".${extras:+[$extras]}"
