"""The two issue-17 benchmarks (benchmarks/subtle_faults.py, benchmarks/lever_interventions.py) run end to end on
a tiny SciFact slice and write the JSON their reports are read from. They run as scripts, as a reader would (no
import from benchmarks/), one after the other in one subprocess so the embedding model loads once."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCIFACT = ROOT.parent / "shared" / "data" / "scifact"
FAULTS = {"untouched", "number", "entity", "negation", "appended", "paraphrase", "compressed", "ignores_passage"}

pytestmark = pytest.mark.slow


def test_issue17_benchmarks_smoke(tmp_path):
    if not (SCIFACT / "corpus.jsonl").exists():
        pytest.skip(f"SciFact not found at {SCIFACT}")
    sf, li = tmp_path / "sf.json", tmp_path / "li.json"
    runs = [
        ["benchmarks/subtle_faults.py", "--relevant", "8", "--docs", "0", "--cases", "3", "--judges", "heuristic",
         "--work", str(tmp_path / "sf"), "--out", str(sf)],
        ["benchmarks/lever_interventions.py", "--relevant", "8", "--docs", "0", "--long", "1", "--per-run", "2",
         "--titles", "4", "--fragments", "4", "--work", str(tmp_path / "li"), "--out", str(li)],
    ]  # fmt: skip
    code = (
        f"import runpy, sys\nfor argv in {runs!r}:\n    sys.argv = argv\n"
        "    runpy.run_path(argv[0], run_name='__main__')\n"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    run = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]

    got = json.loads(sf.read_text())
    (per,) = got["summary"].values()
    assert per["untouched"]["n"] >= 1 and set(per) <= FAULTS
    # Verbatim answers from the shown passage: the judge does not flag them.
    assert per["untouched"]["judge_unsupported"] == 0.0
    assert {r["fault"] for r in got["cases"]} == set(per)

    got = json.loads(li.read_text())
    assert got["losses"], "no retrieval loss was built"
    for row in got["losses"]:
        # Retrieving again with the same settings never brings a lost source back: hits are the intervention's.
        assert row["hits"]["unchanged"] is False
    # The demoting stand-in reranker loses what it demotes, and the audit says so.
    assert "dropped_by_reranker" in got["summary"]
