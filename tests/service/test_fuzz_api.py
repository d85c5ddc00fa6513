"""Fuzz the API from its own OpenAPI schema with schemathesis (property-based, generated and mutated
requests for every operation): no 5xx. Marked slow; CI runs it."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers.service import LiveServer


@pytest.mark.slow
def test_schemathesis_finds_no_server_errors(base_settings, tmp_path):
    st = shutil.which("st") or str(Path(sys.executable).parent / "st")
    if not Path(st).exists():
        pytest.skip("schemathesis is not installed")
    server = LiveServer(base_settings)
    try:
        res = subprocess.run(
            [
                st,
                "run",
                f"{server.url}/openapi.json",
                "--checks",
                "not_a_server_error",
                "--max-examples",
                "25",
                "--seed",
                "1",
                "--no-color",
                "--request-timeout",
                "60",
            ],
            capture_output=True,
            text=True,
            timeout=900,
            cwd=tmp_path,
        )
    finally:
        server.stop()
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-2000:]
    assert re.search(r"\d+ generated, \d+ passed", res.stdout), res.stdout[-2000:]
