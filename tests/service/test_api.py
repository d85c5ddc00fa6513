"""The REST API over real HTTP: answers with citations, per-stage ranks, streaming, documents and jobs,
errors as JSON with stable codes, metrics."""

from __future__ import annotations

import json
import os
import time

import pytest

from tests.conftest import run_rag
from tests.helpers.files import make_pdf


def ask(live, **body):
    return live.http.post("/v1/query", json=body)


def test_health_ready_metrics(live):
    assert live.http.get("/healthz").json() == {"status": "ok"}
    assert live.http.get("/readyz").json() == {"status": "ready"}
    ask(live, question="How are documents chunked?")
    text = live.http.get("/metrics").text
    assert 'rag_stage_duration_ms_count{stage="search"}' in text and "rag_request_duration_ms" in text


def test_query_answers_with_citations_and_stage_ranks(live):
    r = ask(live, question="What happens to a corrupt PDF during ingest?", top_k=3)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["generation"]["generator"] == "extractive" and not body["generation"]["declined"]
    assert body["citations"] and body["citations"][0]["doc_id"] == "docs/ingesting.md"
    assert "[1]" in body["answer"]
    cit = body["citations"][0]
    ctx = body["contexts"][cit["number"] - 1]
    assert cit["chunk_id"] == ctx["chunk_id"] and cit["start"] == ctx["start"]
    assert len(body["contexts"]) == 3 and [c["rank"] for c in body["contexts"]] == [1, 2, 3]
    assert (
        set(body["contexts"][0]["stages"]) <= {"sparse", "dense", "fused"} and "fused" in body["contexts"][0]["stages"]
    )
    assert {"embed", "search", "generation", "total"} <= set(body["timings_ms"])
    m = body["manifest"]
    assert (
        m["embedding"]["model"] == "all-MiniLM-L6-v2"
        and m["retrieval"]["fusion"] == "dbsf"
        and m["generator"] == "extractive"
    )


def test_extractive_generator_declines_when_nothing_answers(live):
    body = ask(live, question="What is the boiling point of tungsten on Mars?", top_k=3).json()
    assert body["generation"]["declined"] and body["citations"] == [] and body["contexts"]


@pytest.mark.parametrize("mode", ["dense", "sparse"])
def test_single_retriever_modes(live, mode):
    body = ask(live, question="API key scoped to collections", mode=mode, generate=False).json()
    assert body["answer"] is None and body["contexts"]
    assert all(set(c["stages"]) == {mode} for c in body["contexts"])


def test_dbsf_and_weights_and_filters(live):
    body = ask(
        live, question="glucose metabolism", collection="scifact", fusion={"method": "rrf", "rrf_k": 60}, generate=False
    ).json()
    assert body["manifest"]["retrieval"]["fusion"] == "rrf" and body["manifest"]["retrieval"]["rrf_k"] == 60
    weighted = ask(
        live,
        question="glucose metabolism",
        collection="scifact",
        fusion={"method": "rrf", "rrf_k": 2, "weights": [0.001, 1]},
        generate=False,
    ).json()
    dense = ask(live, question="glucose metabolism", collection="scifact", mode="dense", generate=False).json()
    # With the sparse weight near 0 (0 itself is refused), RRF ranks the top as the dense retriever does.
    assert [c["chunk_id"] for c in weighted["contexts"]] == [c["chunk_id"] for c in dense["contexts"]]
    one = body["contexts"][0]["doc_id"]
    filtered = ask(
        live, question="glucose metabolism", collection="scifact", filters={"doc_id": one}, generate=False
    ).json()
    assert {c["doc_id"] for c in filtered["contexts"]} == {one}


@pytest.mark.parametrize(
    "body, status, code",
    [
        ({"question": "   "}, 400, "empty_question"),
        ({"question": "x" * 5000}, 400, "question_too_long"),
        ({"question": "hi", "collection": "nope"}, 404, "collection_not_found"),
        ({"question": "hi", "top_k": 0}, 422, "invalid_request"),
        ({"top_k": 3}, 422, "invalid_request"),
        ({"question": "hi", "mode": "magic"}, 422, "invalid_request"),
        ({"question": "hi", "rerank": True}, 400, "rerank_unavailable"),
        ({"question": "hi", "top_k": 20, "candidates": 5}, 200, None),
    ],
)
def test_errors_are_json_with_stable_codes(live, body, status, code):
    r = ask(live, **body)
    assert r.status_code == status, r.text
    assert (r.json()["error"]["code"] if code else None) == code
    assert "Traceback" not in r.text


def test_malformed_json_and_unknown_route(live):
    r = live.http.post("/v1/query", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_request"
    r = live.http.get("/v1/nothing-here")
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"


def test_streaming_sse(live):
    with live.http.stream("POST", "/v1/query", json={"question": "How are documents chunked?", "stream": True}) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        events = []
        for block in r.read().decode().split("\n\n"):
            if block.strip():
                kind, data = block.split("\n", 1)
                events.append((kind.removeprefix("event: "), json.loads(data.removeprefix("data: "))))
    kinds = [k for k, _ in events]
    assert kinds[0] == "retrieval" and kinds[-1] == "final" and kinds.count("token") >= 2
    final = events[-1][1]
    streamed = "".join(d["text"] for k, d in events if k == "token")
    assert final["answer"] == streamed.strip() and final["citations"] and "generation" in final["timings_ms"]


def test_upload_job_documents_delete(live, tmp_path):
    make_pdf(tmp_path / "lunar.pdf", ["The lunar rover drove 35 kilometres on the Moon."])
    files = [
        ("files", ("lunar.pdf", (tmp_path / "lunar.pdf").read_bytes(), "application/pdf")),
        ("files", ("note.md", b"# Note\n\nCopper conducts electricity well.", "text/markdown")),
        ("files", ("broken.pdf", b"%PDF-1.4 broken", "application/pdf")),
    ]
    r = live.http.post("/v1/collections/uploads/documents", files=files)
    assert r.status_code == 202, r.text
    job_id = r.json()["id"]
    deadline = time.monotonic() + 120
    while (job := live.http.get(f"/v1/jobs/{job_id}").json())["status"] in ("queued", "running"):
        # Queries keep being served while the job runs.
        assert ask(live, question="How are documents chunked?", generate=False).status_code == 200
        assert time.monotonic() < deadline
        time.sleep(0.2)
    assert job["status"] == "partial", job  # one file of three failed
    summary = job["report"]["summary"]
    assert summary["added"] == 2 and summary["failed"] == 1
    assert sorted(f["path"] for f in job["report"]["files"]) == ["broken.pdf", "lunar.pdf", "note.md"]
    assert job["progress"]["files"] == 3

    docs = live.http.get("/v1/collections/uploads/documents").json()
    assert {d["doc_id"] for d in docs} == {"lunar.pdf", "note.md"}
    body = ask(live, question="How far did the lunar rover drive?", collection="uploads").json()
    assert body["citations"][0]["doc_id"] == "lunar.pdf" and "35 kilometres" in body["answer"]

    r = live.http.delete("/v1/collections/uploads/documents/note.md")
    assert r.status_code == 200 and r.json()["chunks_deleted"] >= 1
    assert {d["doc_id"] for d in live.http.get("/v1/collections/uploads/documents").json()} == {"lunar.pdf"}
    assert live.http.delete("/v1/collections/uploads/documents/note.md").json()["error"]["code"] == "document_not_found"


def test_upload_refusals(live):
    r = live.http.post(
        "/v1/collections/uploads/documents", files=[("files", ("x.exe", b"MZ", "application/octet-stream"))]
    )
    assert r.status_code == 415 and r.json()["error"]["code"] == "unsupported_type"
    r = live.http.post(
        "/v1/collections/uploads/documents", files=[("files", ("../../etc/passwd.txt", b"root", "text/plain"))]
    )
    # ".." and the leading "/" are dropped: nothing is written outside the job's upload folder, and the job
    # names the upload, never a server path.
    assert r.status_code == 202
    assert r.json()["files"] == ["etc/passwd.txt"]
    assert str(live.settings.data_dir) not in r.text and "/uploads" not in r.text
    assert live.http.get("/v1/jobs/does-not-exist").json()["error"]["code"] == "job_not_found"


def test_collections_listing(live):
    names = {c["name"] for c in live.http.get("/v1/collections").json()}
    assert {"docs", "scifact"} <= names


def test_openapi_has_examples(live):
    spec = live.http.get("/openapi.json").json()
    assert "/v1/query" in spec["paths"] and "/v1/chat/completions" in spec["paths"]
    assert spec["components"]["schemas"]["QueryRequest"]["examples"]


def test_cli_submits_to_the_running_service(live, tmp_path):
    """The service owns its store; the CLI hands it the files instead of opening the store itself."""
    docs = tmp_path / "notes"
    docs.mkdir()
    (docs / "a.md").write_text("# Alpha\n\nAlpha particles are helium nuclei.")
    (docs / "b.txt").write_text("Beta decay emits an electron.")
    env = {**os.environ, "RAG_DATA_DIR": str(live.settings.data_dir)}
    res = run_rag("ingest", str(docs), "-c", "submitted", "--submit", live.url, "--json", env=env, timeout=300)
    assert res.returncode == 0, res.stderr
    job = json.loads(res.stdout)
    assert job["status"] == "succeeded" and job["report"]["summary"]["added"] == 2
    listed = live.http.get("/v1/collections/submitted/documents").json()
    assert {d["doc_id"] for d in listed} == {"a.md", "b.txt"}
    # Without --submit, the CLI is told the store is owned, and how to hand the work over.
    locked = run_rag("ingest", str(docs), env=env, timeout=300)
    assert locked.returncode == 2 and "--submit" in locked.stderr


def test_audit_as_an_api_job(live):
    cases = [
        {
            "id": "a",
            "question": "What happens to a corrupt PDF during ingest?",
            "expected": [{"doc_id": "docs/ingesting.md"}],
        },
        {"id": "b", "question": "What is a golden set?", "expected": [{"doc_id": "docs/evaluation.md"}]},
    ]
    r = live.http.post("/v1/audits", json={"collection": "docs", "cases": cases, "ks": [1, 3], "generate": True})
    assert r.status_code == 202, r.text
    audit_id = r.json()["id"]
    # The judge that will decide unsupported claims, with its measured agreement with human labels.
    card = r.json()["faithfulness_judge"]
    assert card["kind"] == "heuristic" and card["agreement"]["scifact_claims_dev"]["balanced_accuracy"] > 0.5
    deadline = time.monotonic() + 120
    while (job := live.http.get(f"/v1/audits/{audit_id}").json())["status"] in ("queued", "running"):
        assert time.monotonic() < deadline
        time.sleep(0.2)
    assert job["status"] == "succeeded", job
    report = job["report"]
    assert report["overall"]["recall@3"]["mean"] == 1.0 and {c["id"] for c in report["cases"]} == {"a", "b"}
    assert all("generation" in c for c in report["cases"])
    assert report["settings"]["unsupported_claims_decided_by"]["agreement"] == card["agreement"]
    bad = live.http.post("/v1/audits", json={"collection": "docs", "cases": [{"id": "x", "question": ""}]})
    assert bad.status_code == 422 and bad.json()["error"]["code"] == "golden_set_invalid"


def test_serve_refuses_a_store_owned_by_another_process(live):
    env = {**os.environ, "RAG_DATA_DIR": str(live.settings.data_dir), "RAG_PORT": "0"}
    res = run_rag("serve", env=env, timeout=300)
    assert res.returncode == 2 and "store_locked" in res.stderr and "Traceback" not in res.stderr


def test_no_server_path_in_any_response(live, base_settings, tmp_path):
    """Sources are relative (`docs/ingesting.md`, `corpus.jsonl`): contexts, citations, document lists and job
    reports never name where files lay on the server (issue 8)."""
    from tests.conftest import ROOT

    files = [("files", ("moon.md", b"# Moon\n\nThe Moon orbits the Earth every 27 days.", "text/markdown"))]
    job = live.http.post("/v1/collections/paths/documents", files=files).json()
    deadline = time.monotonic() + 120
    while (job := live.http.get(f"/v1/jobs/{job['id']}").json())["status"] in ("queued", "running"):
        assert time.monotonic() < deadline
        time.sleep(0.2)
    assert job["status"] == "succeeded", job
    answer = ask(live, question="What happens to a corrupt PDF during ingest?", top_k=3)
    scifact = ask(live, question="glucose metabolism", collection="scifact", top_k=3)
    moon = ask(live, question="How long does the Moon take to orbit?", collection="paths", top_k=1)
    listed = [live.http.get(f"/v1/collections/{c}/documents") for c in ("docs", "scifact", "paths")]
    bodies = [json.dumps(job), answer.text, scifact.text, moon.text] + [r.text for r in listed]
    for path in (ROOT, base_settings.data_dir.parent, live.settings.data_dir, tmp_path):
        assert not any(str(path) in b for b in bodies), path
    body = answer.json()
    assert body["citations"][0]["source"] == "docs/ingesting.md"
    assert all(c["source"] == c["doc_id"] for c in body["contexts"])
    assert {c["source"] for c in scifact.json()["contexts"]} == {"corpus.jsonl"}
    assert moon.json()["citations"][0]["source"] == "moon.md"
    assert {d["source"] for d in listed[2].json()} == {"moon.md"}


def test_readyz_error_names_no_server_path(base_settings):
    """The store failing: /readyz says why, without the data directory's path (the log keeps it)."""
    from tests.helpers.service import LiveServer

    server = LiveServer(base_settings)
    try:
        assert server.http.get("/readyz").status_code == 200
        collections = server.settings.data_dir / "edge" / "collections"
        collections.rename(collections.with_name("moved"))
        collections.write_text("not a folder")  # listing the collections now fails with an OSError naming it
        r = server.http.get("/readyz")
        assert r.status_code == 503 and r.json()["error"]["code"] == "not_ready"
        message = r.json()["error"]["message"]
        assert message.startswith("store not answering:") and "collections" in message
        assert str(server.settings.data_dir) not in r.text and "/tmp" not in r.text
    finally:
        server.stop()
