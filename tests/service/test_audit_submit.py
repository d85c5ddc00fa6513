"""`rag audit --submit URL` against a real `rag serve`-like server: the audit runs as the service's job, the CLI
waits with progress, writes the same three reports here and exits with the same codes; and `rag audit` on a
store the service holds says what to paste instead."""

from __future__ import annotations

import json
import os

from tests.conftest import ROOT, run_rag

CASES = [
    {
        "id": "a",
        "question": "What happens to a corrupt PDF during ingest?",
        "expected": [{"doc_id": "docs/ingesting.md"}],
    },
    {"id": "b", "question": "What is a golden set?", "expected": [{"doc_id": "docs/evaluation.md"}]},
]


def test_audit_submitted_to_the_service(live, tmp_path):
    golden = tmp_path / "golden.jsonl"
    golden.write_text("".join(json.dumps(c) + "\n" for c in CASES))
    env = {**os.environ, "RAG_DATA_DIR": str(tmp_path / "elsewhere")}  # no local store: all of it on the service
    out = tmp_path / "reports"
    args = ["audit", str(golden), "-c", "docs", "--k", "1,3", "--generate", "--out", str(out)]
    ok = run_rag(*args, "--submit", live.url, "--fail-under", "recall@3=0.5", env=env, timeout=300)
    assert ok.returncode == 0, ok.stderr
    report = json.loads((out / "report.json").read_text())
    assert {c["id"] for c in report["cases"]} == {"a", "b"} and report["settings"]["ks"] == [1, 3]
    assert report["settings"]["generate"] and all("generation" in c for c in report["cases"])
    assert (out / "report.md").exists() and (out / "report.html").exists()
    assert "recall@3" in ok.stdout and "progress status=succeeded cases=2/2" in ok.stderr
    # The service ran it: it is listed there with the same verdicts.
    listed = live.http.get("/v1/audits").json()["items"]
    assert any(a["verdicts"] == report["verdicts"] for a in listed)

    # The gate: exit 3 below it, the reports still written.
    gated = run_rag(*args, "--submit", live.url, "--fail-under", "ndcg@3=1.01", env=env, timeout=300)
    assert gated.returncode == 3, gated.stderr
    assert "below the gate" in gated.stderr and (out / "report.html").exists()

    # A request the service refuses is one line and exit 2 (the server's golden set of a collection with none).
    empty = run_rag("audit", "-c", "scifact", "--submit", live.url, env=env, timeout=300)
    assert empty.returncode == 2 and "golden_set_empty" in empty.stderr and "Traceback" not in empty.stderr
    # No GOLDEN and no --submit: the local audit needs a file.
    assert run_rag("audit", env=env, timeout=300).returncode == 2


def test_local_audit_on_the_services_store_says_what_to_paste(live):
    env = {**os.environ, "RAG_DATA_DIR": str(live.settings.data_dir), "RAG_PORT": "8123"}
    golden = str(ROOT / "examples" / "golden-docs.jsonl")
    res = run_rag("audit", golden, "-c", "docs", "--generate", "--fail-under", "recall@5=0.5", env=env, timeout=300)
    assert res.returncode == 2 and "store_locked" in res.stderr and "Traceback" not in res.stderr
    text = " ".join(res.stderr.split())
    assert f"`rag audit {golden} -c docs --generate --fail-under recall@5=0.5`" in text  # the command that was run
    assert f"rag audit --submit http://127.0.0.1:8123 {golden} -c docs --generate --fail-under recall@5=0.5" in text
    assert "rag ingest" not in text
