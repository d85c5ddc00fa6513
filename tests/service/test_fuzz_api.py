"""Fuzz the API from its own OpenAPI schema with schemathesis (examples, coverage of every parameter's edge
values, property-based generated and mutated requests, stateful links) against a real server on PostgreSQL,
the strict database for text (NUL, lone surrogates), when one answers, else SQLite: every operation is tested
and none answers 5xx. A bounded number of examples per operation keeps it near two minutes on the 2-core box.
Marked slow; CI runs it."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from tests.helpers.service import LiveServer, secret

MAX_EXAMPLES = 10  # per operation and phase; the coverage phase's edge cases come on top


@pytest.fixture
def database(request) -> str | None:
    """A fresh PostgreSQL database when a server answers (the text-field cases fail there first), else SQLite."""
    try:
        return request.getfixturevalue("pg_url")
    except pytest.skip.Exception:
        return None


@pytest.mark.slow
def test_schemathesis_finds_no_server_errors(base_settings, database, tmp_path):
    st = shutil.which("st") or str(Path(sys.executable).parent / "st")
    if not Path(st).exists():
        pytest.skip("schemathesis is not installed")
    server = LiveServer(base_settings.model_copy(update={"database_url": secret(database)}))
    junit = tmp_path / "junit.xml"
    try:
        operations = [
            f"{method.upper()} {path}"
            for path, item in server.http.get("/openapi.json").json()["paths"].items()
            for method in item
        ]
        t0 = time.monotonic()
        res = subprocess.run(
            [st, "run", f"{server.url}/openapi.json", "--checks", "not_a_server_error"]
            + ["--max-examples", str(MAX_EXAMPLES), "--seed", "1", "--no-color", "--request-timeout", "60"]
            + ["--report", "junit", "--report-junit-path", str(junit)],
            capture_output=True,
            text=True,
            timeout=900,
            cwd=tmp_path,
        )
        seconds = time.monotonic() - t0
        metrics = server.http.get("/metrics").text
    finally:
        server.stop()
    out = res.stdout[-4000:] + res.stderr[-2000:]
    assert res.returncode == 0, out
    assert re.search(r"\d+ generated, \d+ passed", res.stdout), out
    # Every operation of the schema was tested, and none failed.
    tested = re.search(r"Tested: (\d+)", res.stdout)
    assert tested and int(tested.group(1)) == len(operations), out
    cases = ET.parse(junit).getroot().iter("testcase")
    names = {c.get("name") for c in cases if c.find("failure") is None and c.find("error") is None}
    assert not [op for op in operations if op not in names], (sorted(names), operations)
    # The service's own count agrees: no request ended in an internal error.
    assert 'outcome="internal_error"' not in metrics, json.dumps(out)
    print(f"schemathesis: {len(operations)} operations in {seconds:.0f} s on {'PostgreSQL' if database else 'SQLite'}")
