"""`rag audit` and `rag golden` as a user runs them: reports written, gates, clear errors."""

from __future__ import annotations

import json
import os

import pytest

from core.store import open_store
from diagnostics.audit.golden import GoldenSetError, load_golden
from diagnostics.audit.run import GOOD
from ingest.pipeline import Ingestor
from tests.conftest import ROOT, SCIFACT, run_rag


def rag(args, data_dir, **kw):
    return run_rag(*args, env={**os.environ, "RAG_DATA_DIR": str(data_dir)}, **kw)


@pytest.fixture(scope="module")
def docs_store(tmp_path_factory, embedder):
    from core.settings import Settings

    data = tmp_path_factory.mktemp("cli") / "data"
    settings = Settings(data_dir=data, _env_file=None)
    with open_store(settings) as store:
        Ingestor(settings, store, embedder).run([ROOT / "docs"], "docs")
    return data


def test_audit_writes_reports_and_gates(docs_store, tmp_path):
    golden = ROOT / "examples" / "golden-docs.jsonl"
    ok = rag(
        [
            "audit",
            str(golden),
            "-c",
            "docs",
            "--out",
            str(tmp_path / "a"),
            "--corpus",
            str(ROOT / "docs"),
            "--fail-under",
            "recall@5=0.5",
        ],
        docs_store,
    )
    assert ok.returncode == 0, ok.stderr
    report = json.loads((tmp_path / "a" / "report.json").read_text())
    assert report["golden"]["cases"] == 23 and report["verdicts"]["not_in_corpus"] == 1
    assert (tmp_path / "a" / "report.html").exists() and "recall@5" in ok.stdout

    gated = rag(
        [
            "audit",
            str(golden),
            "-c",
            "docs",
            "--out",
            str(tmp_path / "b"),
            "--baseline",
            str(tmp_path / "a" / "report.json"),
            "--fail-under",
            "nDCG@10=0.999",  # metric names are case-insensitive
        ],
        docs_store,
    )
    assert gated.returncode == 3 and "below the gate" in gated.stderr
    again = json.loads((tmp_path / "b" / "report.json").read_text())
    assert again["comparison"]["paired_cases"] == 23 and again["comparison"]["flipped"] == []
    assert all(m["label"] == "inconclusive" and m["delta"] == 0 for m in again["comparison"]["metrics"].values())


def test_audit_errors_are_messages(docs_store, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "a", "question": "fine"}\n{"id": "a", "question": "dup"}\n')
    res = rag(["audit", str(bad), "-c", "docs"], docs_store)
    assert res.returncode == 2 and "line 2: duplicate id 'a'" in res.stderr and "Traceback" not in res.stderr
    res = rag(["audit", str(ROOT / "examples" / "golden-docs.jsonl"), "-c", "nope"], docs_store)
    assert res.returncode == 2 and "collection_not_found" in res.stderr
    res = rag(["audit", str(bad), "--fail-under", "ndcg"], docs_store)
    assert res.returncode == 2 and "METRIC=VALUE" in res.stderr
    # a metric spelt another way: a clear error before the run, never a KeyError
    good = ROOT / "examples" / "golden-docs.jsonl"
    res = rag(["audit", str(good), "-c", "docs", "--fail-under", "nDCG@7=0.5", "--out", str(tmp_path)], docs_store)
    assert res.returncode == 2 and "--k" in res.stderr and "Traceback" not in res.stderr
    res = rag(["audit", str(good), "-c", "docs", "--fail-under", "ndgc@10=0.5", "--out", str(tmp_path)], docs_store)
    assert res.returncode == 2 and "no metric 'ndgc@10'" in res.stderr and "Traceback" not in res.stderr


def test_golden_import_and_stubs(tmp_path, docs_store):
    out = tmp_path / "scifact.jsonl"
    res = rag(
        ["golden", "import-beir", str(SCIFACT / "queries.jsonl"), str(SCIFACT / "qrels" / "test.tsv"), "-o", str(out)],
        docs_store,
    )
    assert res.returncode == 0 and len(out.read_text().splitlines()) == 300
    audit_dir = tmp_path / "a"
    rag(
        ["audit", str(ROOT / "examples" / "golden-docs.jsonl"), "-c", "docs", "--generate", "--out", str(audit_dir)],
        docs_store,
    )
    stubs = tmp_path / "stubs.jsonl"
    res = rag(["golden", "stubs", str(audit_dir / "report.json"), "-o", str(stubs), "--worst", "5"], docs_store)
    assert res.returncode == 0
    rows = [json.loads(line) for line in stubs.read_text().splitlines()]
    # The worst cases that failed, each named after its audited case, with the audit's question and verdict; the
    # loader skips every one as a stub to label.
    cases = {c["id"]: c for c in json.loads((audit_dir / "report.json").read_text())["cases"]}
    assert rows
    for r in rows:
        case = cases[r["id"].removesuffix("-review")]
        assert r["question"] == case["question"] and r["audit_verdict"] == case["verdict"] not in GOOD
    with pytest.raises(GoldenSetError, match="no labelled cases"):
        load_golden(stubs)


def test_audit_ingest_report_and_rerank_option(docs_store, tmp_path):
    golden = tmp_path / "g.jsonl"
    golden.write_text(
        json.dumps({"id": "b", "question": "What is in the scan?", "expected": [{"doc_id": "docs/scan.pdf"}]})
    )
    record = tmp_path / "ingest.json"
    record.write_text(
        json.dumps({"files": [{"path": "/srv/docs/scan.pdf", "status": "failed", "reason": "the PDF is encrypted"}]})
    )
    res = rag(
        ["audit", str(golden), "-c", "docs", "--out", str(tmp_path / "a"), "--ingest-report", str(record)], docs_store
    )
    assert res.returncode == 0, res.stderr
    report = json.loads((tmp_path / "a" / "report.json").read_text())
    [item] = report["cases"][0]["lost"]
    assert item["stage"] == "failed_to_ingest" and "encrypted" in item["reason"]
    assert report["summary"]["dominant_failure"] == "retrieval_miss (failed_to_ingest)"
    res = rag(["audit", str(golden), "-c", "docs", "--out", str(tmp_path / "b"), "--rerank"], docs_store)
    assert res.returncode == 2 and "rerank_unavailable" in res.stderr
