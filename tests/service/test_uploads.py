"""Uploads and jobs over real HTTP (real uvicorn, the real model, the real Edge store, the SQLite job database):
names keep their folders, nothing names a server path, concurrent uploads of one name each keep their own
file, size limits per request and per key are checked while the body streams, uploads are gone when the job
ends, cancel is scoped by API key, audits are bounded and, like jobs, survive a restart."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.conftest import scifact_docs, write_corpus
from tests.helpers.service import LiveServer, finish, headers

KEYS = {"ka": ["up", "conc", "cancel"], "kb": ["up", "cancel"], "admin": ["*"]}


@pytest.fixture(scope="module")
def server(base_settings):
    settings = base_settings.model_copy(
        update={"api_keys": KEYS, "max_upload_request_mb": 0.3, "max_upload_key_mb": 0.6, "audit_max_cases": 3}
    )
    live = LiveServer(settings)
    yield live
    live.stop()


def leftovers(live) -> list[str]:
    uploads = live.settings.data_dir / "uploads"
    return sorted(str(p.relative_to(uploads)) for p in uploads.rglob("*") if p.is_file())


def test_same_name_in_two_folders_is_two_documents_and_no_path_leaks(server):
    files = [
        ("files", ("2023/summary.txt", b"In 2023 the harvest was poor because of drought.", "text/plain")),
        ("files", ("2024/summary.txt", b"In 2024 the harvest was excellent after heavy rain.", "text/plain")),
        ("files", ("notes.md", b"# Notes\n\nThe barn was painted red.", "text/markdown")),
    ]
    r = server.http.post("/v1/collections/up/documents", files=files, headers=headers("ka"))
    assert r.status_code == 202, r.text
    assert r.json()["files"] == ["2023/summary.txt", "2024/summary.txt", "notes.md"]
    job = finish(server, r.json()["id"])
    assert job["status"] == "succeeded", job
    assert sorted(f["path"] for f in job["report"]["files"]) == ["2023/summary.txt", "2024/summary.txt", "notes.md"]
    docs = server.http.get("/v1/collections/up/documents", headers=headers("ka")).json()
    assert {d["doc_id"] for d in docs} >= {"2023/summary.txt", "2024/summary.txt", "notes.md"}
    body = server.http.post(
        "/v1/query", json={"question": "How was the harvest in 2024?", "collection": "up"}, headers=headers("ka")
    ).json()
    assert body["citations"][0]["doc_id"] == "2024/summary.txt"
    for text in (r.text, str(job), str(docs)):
        assert str(server.settings.data_dir) not in text and "/uploads/" not in text
    assert leftovers(server) == []  # the uploads went with the job


def test_refusals_leave_nothing_behind(server):
    same = [("files", ("a/x.txt", b"one", "text/plain")), ("files", ("a/x.txt", b"two", "text/plain"))]
    r = server.http.post("/v1/collections/up/documents", files=same, headers=headers("ka"))
    assert r.status_code == 400 and r.json()["error"]["code"] == "duplicate_file"
    clash = [("files", ("a.txt", b"one", "text/plain")), ("files", ("a.txt/b.txt", b"two", "text/plain"))]
    r = server.http.post("/v1/collections/up/documents", files=clash, headers=headers("ka"))
    assert r.status_code == 400 and r.json()["error"]["code"] == "duplicate_file"
    big = [("files", ("big.txt", b"word " * 70_000, "text/plain"))]  # 350 KB > the 0.3 MB a request may carry
    r = server.http.post("/v1/collections/up/documents", files=big, headers=headers("kb"))
    assert r.status_code == 413 and r.json()["error"]["code"] == "upload_too_large"
    # Checked while streaming, with no Content-Length to go by.
    body = b"".join(
        [b"--B\r\n", b'Content-Disposition: form-data; name="files"; filename="big.txt"\r\n\r\n', b"w" * 350_000]
        + [b"\r\n--B--\r\n"]
    )
    r = server.http.post(
        "/v1/collections/up/documents",
        content=iter([body[i : i + 65536] for i in range(0, len(body), 65536)]),
        headers={**headers("kb"), "content-type": "multipart/form-data; boundary=B"},
    )
    assert r.status_code == 413 and r.json()["error"]["code"] == "upload_too_large"
    r = server.http.post(
        "/v1/collections/up/documents", files=[("files", ("x.exe", b"MZ", "application/octet-stream"))],
        headers=headers("ka"),
    )  # fmt: skip
    assert r.status_code == 415 and r.json()["error"]["code"] == "unsupported_type"
    r = server.http.post("/v1/collections/up/documents", data={"other": "x"}, headers=headers("ka"))
    assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_request"
    assert leftovers(server) == []


def test_concurrent_uploads_of_one_name_never_share_a_file(server):
    def upload(i: int):
        files = [("files", ("same.txt", f"Upload number {i} says the colour is shade {i}.".encode(), "text/plain"))]
        url = f"{server.url}/v1/collections/conc/documents"
        return httpx.post(url, files=files, headers=headers("ka"), timeout=120)

    with ThreadPoolExecutor(20) as pool:
        responses = list(pool.map(upload, range(20)))
    assert [r.status_code for r in responses] == [202] * 20, [r.text for r in responses if r.status_code != 202]
    jobs = [finish(server, r.json()["id"]) for r in responses]
    assert [j["status"] for j in jobs] == ["succeeded"] * 20
    docs = server.http.get("/v1/collections/conc/documents", headers=headers("ka")).json()
    assert [d["doc_id"] for d in docs] == ["same.txt"]  # one document, written by whichever job ran last
    assert leftovers(server) == []


def test_cancel_is_scoped_by_key_and_uploads_count_against_the_key(server, tmp_path):
    docs = scifact_docs(150)  # 234 KB in 30 files: a job is asked whether to stop before each file
    parts = [
        ("files", (f"part{i:02}.jsonl", write_corpus(tmp_path / f"p{i}.jsonl", docs[i * 5 : i * 5 + 5]).read_bytes()))
        for i in range(30)
    ]
    post = lambda key, files: server.http.post("/v1/collections/cancel/documents", files=files, headers=headers(key))  # noqa: E731
    first = post("ka", parts).json()
    second = post("ka", parts).json()  # waits: one ingest job per collection
    assert first["status"] == second["status"] == "queued" or first["status"] == "running"
    # ka holds 2 x 234 KB of its 600 KB: 200 KB more is refused while they wait or run.
    r = post("ka", [("files", ("more.txt", b"x" * 200_000))])
    assert r.status_code == 413 and r.json()["error"]["code"] == "upload_quota_exceeded"
    assert post("kb", [("files", ("more.txt", b"kb has its own budget"))]).status_code == 202

    r = server.http.post(f"/v1/jobs/{first['id']}/cancel", headers=headers("kb"))
    assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden"
    r = server.http.post(f"/v1/jobs/{second['id']}/cancel", headers=headers("admin"))
    assert r.status_code == 200 and r.json()["status"] == "cancelled"
    deadline = time.monotonic() + 120
    while server.http.get(f"/v1/jobs/{first['id']}", headers=headers("ka")).json()["progress"].get("files", 0) < 1:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    r = server.http.post(f"/v1/jobs/{first['id']}/cancel", headers=headers("ka"))
    assert r.status_code == 200 and r.json()["cancel_requested"] in (True, False)
    job = finish(server, first["id"])
    assert job["status"] == "cancelled" and job["reason"] == "cancelled", job
    assert job["report"]["stopped"] == "cancelled" and job["report"]["summary"]["skipped"] > 0  # it stopped early
    r = server.http.post(f"/v1/jobs/{first['id']}/cancel", headers=headers("ka"))
    assert r.status_code == 409 and r.json()["error"]["code"] == "job_finished"
    r = server.http.post("/v1/jobs/0123abcd/cancel", headers=headers("ka"))
    assert r.status_code == 404 and r.json()["error"]["code"] == "job_not_found"
    # With both jobs over, ka's budget is back.
    assert post("ka", [("files", ("more.txt", b"x" * 200_000))]).status_code == 202


def test_audits_are_bounded(server):
    case = {"id": "a", "question": "What happens to a corrupt PDF?", "expected": [{"doc_id": "docs/ingesting.md"}]}
    many = [{**case, "id": str(i)} for i in range(4)]
    r = server.http.post("/v1/audits", json={"collection": "docs", "cases": many}, headers=headers("admin"))
    assert r.status_code == 413 and r.json()["error"]["code"] == "too_many_cases"
    long = [{**case, "question": "why " * 1000}]
    r = server.http.post("/v1/audits", json={"collection": "docs", "cases": long}, headers=headers("admin"))
    assert r.status_code == 400 and r.json()["error"]["code"] == "question_too_long"


def test_jobs_and_audits_survive_a_restart(base_settings):
    first = LiveServer(base_settings)
    try:
        case = {"id": "a", "question": "What happens to a corrupt PDF?", "expected": [{"doc_id": "docs/ingesting.md"}]}
        audit = first.http.post("/v1/audits", json={"collection": "docs", "cases": [case], "ks": [1, 3]}).json()
        job = first.http.post(
            "/v1/collections/keep/documents", files=[("files", ("k.md", b"# K\n\nKept across restarts."))]
        ).json()
        deadline = time.monotonic() + 120
        while first.http.get(f"/v1/audits/{audit['id']}").json()["status"] != "succeeded":
            assert time.monotonic() < deadline
            time.sleep(0.2)
        assert finish(first, job["id"])["status"] == "succeeded"
    finally:
        first.stop()
    again = LiveServer(first.settings)  # a new process-state on a copy of the stopped one's data dir
    try:
        got = again.http.get(f"/v1/audits/{audit['id']}").json()
        assert got["status"] == "succeeded" and got["report"]["overall"]["recall@3"]["mean"] == 1.0
        assert again.http.get(f"/v1/jobs/{job['id']}").json()["report"]["summary"]["added"] == 1
        assert again.http.get(f"/v1/jobs/{audit['id']}").json()["kind"] == "audit"  # one job system
    finally:
        again.stop()
