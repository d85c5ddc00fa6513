"""The layers point one way (import-linter's contract in pyproject.toml) and the code passes ruff."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

from tests.conftest import ROOT

BIN = Path(sys.executable).parent


def test_layers_point_one_way():
    res = subprocess.run([str(BIN / "lint-imports")], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    assert " 0 broken" in res.stdout
    contracts = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]
    # every contract in pyproject.toml ran (a misspelt module would make import-linter skip nothing silently)
    assert f"{len(contracts)} kept, 0 broken" in res.stdout, res.stdout
    assert {"diagnostics: ladder > audit > judges", "service: routes do not import routes"} <= {
        c["name"] for c in contracts
    }


def test_ruff_is_clean():
    res = subprocess.run([str(BIN / "ruff"), "check", "."], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr


def test_no_import_cycle_breakers():
    offenders = [
        str(p.relative_to(ROOT))
        for pkg in ("core", "engine", "ingest", "diagnostics", "service", "cli")
        for p in (ROOT / pkg).rglob("*.py")
        if "noqa: E402" in p.read_text()
    ]
    assert offenders == []
