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
# A current pip. Every package the code imports is declared by name (lxml_html_clean too, not through lxml's
# extra, which the stock pip 23.2 of Python 3.11 does not know), so a fresh install with either pip gets them.
.venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip
.venv/bin/python -m pip install -q --disable-pip-version-check "$torch_spec"
.venv/bin/python -m pip install -q --disable-pip-version-check -e ".${extras:+[$extras]}"
