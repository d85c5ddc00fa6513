"""Issue 21's live probe, through real HTTP against a real uvicorn (SQLite and PostgreSQL where the database is
the point): odd text (NUL, lone surrogates) is a 4xx with a stable code or kept safely, never a 500; huge
offsets, deeply nested variants and malformed reports are 4xx; what a job would fail on is refused at submit,
with no server path; the audit view is bounded; slow clients are cut off; the query log keeps no context
texts (the store has them)."""

from __future__ import annotations

import json
import socket
import threading
import time

import pytest

from core.settings import Settings
from tests.conftest import ROOT
from tests.helpers.service import LiveServer, docs_corpus, serve_per_database

CASES = [{"id": "q1", "question": "How are documents chunked?", "expected": [{"doc_id": "docs/ingesting.md"}]}]
BASE = {"toml": 'name = "base"'}


@pytest.fixture(scope="module")
def docs(tmp_path_factory, embedder) -> Settings:
    return docs_corpus(tmp_path_factory.mktemp("i21"), embedder)


@pytest.fixture(params=["sqlite", "postgresql"])
def live(request, docs):
    yield from serve_per_database(request, docs)


def raw(live, method: str, path: str, text: str):
    """A body sent as written (JSON escapes such as \\u0000 and \\ud800 kept)."""
    return live.http.request(method, path, content=text.encode(), headers={"Content-Type": "application/json"})


def assert_error(r, status: int, code: str) -> None:
    assert r.status_code == status, (r.status_code, r.text[:400])
    assert r.json()["error"]["code"] == code, r.text[:400]
    assert "/tmp" not in r.text and str(ROOT) not in r.text and "Traceback" not in r.text


def test_a_question_with_nul_is_answered_and_logged(live):
    r = raw(live, "POST", "/v1/query", '{"question": "How are\\u0000 documents chunked?", "generate": false}')
    assert r.status_code == 200 and r.json()["contexts"]
    logged = live.http.get(f"/v1/queries/{r.json()['query_id']}")
    assert logged.status_code == 200 and logged.json()["question"] == "How are documents chunked?"
    chat = '{"messages": [{"role": "user", "content": "What is\\u0000 BM25?"}]}'
    r = raw(live, "POST", "/v1/chat/completions", chat)
    assert r.status_code == 200
    assert live.http.get("/v1/queries", params={"q": "what is bm25"}).json()["total"] == 1


def test_odd_text_in_stored_fields_is_invalid_text(live):
    qid = live.http.post("/v1/query", json={"question": "How are documents chunked?"}).json()["query_id"]
    for field in ("comment", "correct_doc_id", "query_id"):
        for bad in ("a\\u0000b", "a\\ud800b"):
            body = {"query_id": qid, "rating": 1}
            text = json.dumps(body)[:-1] + f', "{field}": "{bad}"}}'
            assert_error(raw(live, "POST", "/v1/feedback", text), 400, "invalid_text")
    for path in ("/v1/queries?q=a%00b", "/v1/queries?since=%00", "/v1/queries/candidates?since=7d%00"):
        assert_error(live.http.get(path), 400, "invalid_text")
    assert_error(live.http.get("/v1/queries/a%00b"), 404, "query_not_found")
    golden = '{"question": "q%s", "unanswerable": true, "tags": ["t%s"]}'
    for bad in ("\\u0000", "\\udfff"):
        assert_error(raw(live, "POST", "/v1/golden/docs/cases", golden % (bad, "")), 400, "invalid_text")
        assert_error(raw(live, "POST", "/v1/golden/docs/cases", golden % ("", bad)), 400, "invalid_text")
        case = '{"cases": [{"id": "q1", "question": "w%s", "expected": [{"doc_id": "d"}]}]' % bad
        assert_error(raw(live, "POST", "/v1/audits", case + "}"), 400, "invalid_text")
        assert_error(raw(live, "POST", "/v1/audits", case + ', "corpus": ["d%s"]}' % bad), 400, "invalid_text")
        variants = ', "variants": [{"toml": "name = \\"a%s\\""}, {"name": "b"}]}' % bad
        assert_error(raw(live, "POST", "/v1/experiments", case + variants), 400, "invalid_text")
    assert 'outcome="internal_error"' not in live.http.get("/metrics").text


@pytest.mark.parametrize("offset", [10**30, 2**63, 2**63 - 1, -1])
def test_huge_offsets_are_refused(live, offset):
    assert_error(live.http.get("/v1/queries", params={"offset": offset}), 422, "invalid_request")


def test_the_deepest_useful_offset_is_served(live):
    r = live.http.get("/v1/queries", params={"offset": 10**9})
    assert r.status_code == 200 and r.json()["items"] == []


def test_what_a_job_would_fail_on_is_refused_at_submit(docs):
    server = LiveServer(docs)
    try:
        post = server.http.post
        deep_toml = "x = " + "[" * 5000 + "]" * 5000
        r = post("/v1/experiments", json={"cases": CASES, "variants": [{"toml": deep_toml}, {"name": "b"}]})
        assert_error(r, 400, "invalid_variant")
        deep_json = '{"cases": %s, "variants": [{"name": "a", "retrieval": %s}, {"name": "b"}]}' % (
            json.dumps(CASES),
            '{"a":' * 5000 + "1" + "}" * 5000,
        )
        assert 400 <= raw(server, "POST", "/v1/experiments", deep_json).status_code < 500
        # The golden set is named as the request has it, never by the server's temporary file.
        for path, extra in (("/v1/audits", {}), ("/v1/experiments", {"variants": [BASE, {"name": "b"}]})):
            r = post(path, json={"cases": [{"id": "q1"}], **extra})
            assert_error(r, 422, "golden_set_invalid")
            assert r.json()["error"]["message"] == "case 1: question must be a non-empty string"
        # Accepted before, failed in the job: the ragas judge with no endpoint, junk ingest reports.
        assert_error(
            post("/v1/audits", json={"cases": CASES, "generate": True, "judge": True}), 409, "judge_unavailable"
        )
        for reports in ([{"files": 5}], [{"report": {"files": "x"}}], [{"files": [1, {"path": "a"}], "report": 3}]):
            r = post("/v1/audits", json={"cases": CASES, "ingest_reports": reports})
            assert r.status_code in (400, 202), r.text
            if r.status_code == 202:  # accepted: then the job must not fail on it
                job = server.http.get(f"/v1/jobs/{r.json()['id']}")
                while job.json()["status"] in ("queued", "running"):
                    time.sleep(0.2)
                    job = server.http.get(f"/v1/jobs/{r.json()['id']}")
                assert job.json()["status"] == "succeeded", job.json()
        assert_error(
            post("/v1/audits", json={"cases": CASES, "ingest_reports": [{"files": 5}]}), 400, "invalid_parameters"
        )
        judged = {"cases": CASES, "generate": True, "variants": [BASE, {"name": "j", "judge": {"model": "m"}}]}
        assert_error(post("/v1/experiments", json=judged), 409, "judge_unavailable")
    finally:
        server.stop()


# -- the audit view ------------------------------------------------------------------------------------------------

REPORT = json.loads((ROOT / "examples" / "audit-docs" / "report.json").read_text())


def report_of(n: int) -> dict:
    """The example audit's report grown to n cases (its 23 repeated under new ids): a real report's shape."""
    return {**REPORT, "cases": [dict(REPORT["cases"][i % len(REPORT["cases"])], id=f"c{i}") for i in range(n)]}


@pytest.mark.parametrize(
    "report",
    [
        {"settings": {"ks": [1]}, "overall": {"recall@1": {"mean": "x"}}},
        {"settings": {"ks": 5}},
        {"settings": "x"},
        {"verdicts": "abc"},
        {"where_lost": [1]},
        {"where_lost": {"a": -1}},
        {"overall": [1]},
        {"overall": {"recall@1": {"mean": 0.5, "ci95": [0.1]}}},
        {"cases": [1]},
        {"cases": [{"id": "a", "metrics": {"m": "x"}}]},
        {"overall": {f"m{i}": {"mean": 0.5} for i in range(300)}},
    ],
)
def test_malformed_reports_are_422(docs, report, request):
    server = request.getfixturevalue("view_server")
    for body in ({"report": report}, {"report": {}, "baseline": report}):
        assert_error(server.http.post("/v1/ui/audit-view", json=body), 422, "invalid_request")


@pytest.fixture(scope="module")
def view_server(docs):
    server = LiveServer(docs.model_copy(update={"audit_max_cases": 1000}))
    yield server
    server.stop()


def test_a_real_report_with_its_baseline_fits_and_more_does_not(view_server):
    body = {"report": report_of(50), "baseline": report_of(50)}
    size = len(json.dumps(body))
    assert 300_000 < size < Settings(_env_file=None).max_audit_view_mb * 1e6 / 4  # the 50-case pair: ~0.43 MB
    t0 = time.monotonic()
    r = view_server.http.post("/v1/ui/audit-view", json=body)
    assert r.status_code == 200 and r.json()["comparison"]["paired_cases"] == 50, r.text[:300]
    assert time.monotonic() - t0 < 30
    # Over the limit: 413 from the declared size, before the body is read.
    big = json.dumps({"report": report_of(500), "baseline": report_of(500)})
    assert len(big) > Settings(_env_file=None).max_audit_view_mb * 1e6
    r = view_server.http.post("/v1/ui/audit-view", content=big, headers={"Content-Type": "application/json"})
    assert_error(r, 413, "body_too_large")
    # More cases than an audit may have: 413 before any work.
    many = {"report": {"cases": [{"id": i} for i in range(1001)]}}
    assert_error(view_server.http.post("/v1/ui/audit-view", json=many), 413, "too_many_cases")


# -- slow clients ------------------------------------------------------------------------------------------------


def test_slow_clients_do_not_starve_the_others(docs):
    """More slow sockets than the concurrency limit, dribbling their heads or stalling their bodies: they are cut
    off at the time-outs, and a normal request is served within them."""
    settings = docs.model_copy(update={"client_header_timeout_s": 2.0, "client_body_timeout_s": 2.0})
    server = LiveServer(settings, limit_concurrency=40)
    port = int(server.url.rsplit(":", 1)[1])
    socks: list[socket.socket] = []
    stop = threading.Event()
    try:
        for i in range(60):
            s = socket.create_connection(("127.0.0.1", port), timeout=10)
            if i % 3 == 0:  # a body that stops after a few bytes
                s.sendall(b"POST /v1/feedback HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n")
                s.sendall(b'Content-Length: 1000\r\n\r\n{"query_id"')
            elif i % 3 == 1:  # a head dribbled a byte at a time (below)
                s.sendall(b"GET /healthz HTTP/1.1\r\n")
            socks.append(s)  # and the rest send nothing at all

        def dribble():
            while not stop.is_set():
                for s in socks[1::3]:
                    try:
                        s.send(b"X")
                    except OSError:
                        pass
                stop.wait(0.2)

        threading.Thread(target=dribble, daemon=True).start()
        t0 = time.monotonic()
        while True:  # a normal caller: a 503 while the slots are held, then served
            try:
                r = server.http.get("/healthz", timeout=5)
                if r.status_code == 200:
                    break
            except Exception:
                pass
            assert time.monotonic() - t0 < 8, "a normal request was not served within the slow-client time-outs"
            time.sleep(0.2)
        served_after = time.monotonic() - t0
        stop.set()
        closed = 0
        for s in socks:  # every slow socket was closed by the server
            s.settimeout(5)
            try:
                while s.recv(65536):
                    pass
                closed += 1
            except OSError:
                closed += 1
        assert closed == len(socks) and served_after < 8
        r = server.http.post("/v1/query", json={"question": "How are documents chunked?", "generate": False})
        assert r.status_code == 200
    finally:
        stop.set()
        for s in socks:
            s.close()
        server.stop()


def test_a_slow_but_steady_body_is_not_cut_off(docs):
    settings = docs.model_copy(update={"client_header_timeout_s": 1.0, "client_body_timeout_s": 1.0})
    server = LiveServer(settings)
    port = int(server.url.rsplit(":", 1)[1])
    try:
        body = json.dumps({"question": "How are documents chunked?", "generate": False}).encode()
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            s.sendall(b"POST /v1/query HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n")
            s.sendall(b"Content-Length: %d\r\n\r\n" % len(body))
            for i in range(0, len(body), 10):  # 3 s in all, never 1 s without a byte
                s.sendall(body[i : i + 10])
                time.sleep(0.4)
            answer = b""
            while b"\r\n\r\n" not in answer:
                answer += s.recv(65536)
        assert answer.startswith(b"HTTP/1.1 200")
    finally:
        server.stop()


# -- the query log -------------------------------------------------------------------------------------------------


def test_the_log_keeps_no_context_texts_and_shows_them(live):
    from sqlalchemy import create_engine, text

    from service.db import database_url

    r = live.http.post("/v1/query", json={"question": "How are documents chunked?"})
    qid = r.json()["query_id"]
    texts = {c["chunk_id"]: c["text"] for c in r.json()["contexts"]}
    shown = live.http.get(f"/v1/queries/{qid}").json()
    assert {c["chunk_id"]: c["text"] for c in shown["contexts"]} == texts  # read back from the store
    assert all(c["changed"] is False and c["source"] and c["stages"] for c in shown["contexts"])
    engine = create_engine(database_url(live.settings))
    with engine.connect() as conn:
        stored = conn.execute(text("SELECT contexts FROM query_log WHERE id = :i"), {"i": qid}).scalar()
    engine.dispose()
    stored = json.loads(stored) if isinstance(stored, str) else stored
    assert stored and all("text" not in c and len(c["text_hash"]) == 12 for c in stored)
    assert len(json.dumps(stored)) < len(json.dumps(r.json()["contexts"])) / 1.5  # the texts were most of it


def test_rows_logged_with_texts_are_shown_as_they_were():
    from service.querylog.log import QueryLog

    log = QueryLog.__new__(QueryLog)
    log.store = None
    row = {"collection": "docs", "contexts": [{"chunk_id": "x", "text": "kept", "doc_id": "d"}]}
    assert log.with_texts(dict(row))["contexts"][0]["text"] == "kept"
