"""The server helpers the benchmarks share with the tests (a free port, waiting for a service, a real llama.cpp
server): they live in tests/helpers/serving.py; this makes them importable by a script beside this file."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repo root, so that `tests` imports

from tests.helpers.serving import free_port, llama_server, wait_until_up  # noqa: E402, F401
