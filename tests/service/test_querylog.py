"""The query log on real databases (a SQLite file in the data dir, and a fresh PostgreSQL database per test):
capture through a real uvicorn server on every route (JSON, SSE, chat), opt-out, retention, redaction, and
the ranking of candidates to label, also through `rag golden candidates` as a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid

import pytest
from sqlalchemy import func, select, update

from core.settings import Settings
from service.db import Database, database_url
from service.db.querylog import Feedback, QueryRecord
from service.querylog.candidates import score_candidate
from service.querylog.capture import redact
from service.querylog.log import QueryLog
from service.querylog.rows import parse_since
from tests.conftest import ROOT, run_rag
from tests.helpers.llm_standin import StandIn
from tests.helpers.service import LiveServer, docs_corpus, secret


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request):
    return None if request.param == "sqlite" else request.getfixturevalue("pg_url")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, embedder) -> Settings:
    """docs/ in `docs` and a few SciFact abstracts in `scifact`, ingested once; each server copies it."""
    return docs_corpus(tmp_path_factory.mktemp("ql"), embedder, scifact=6)


@pytest.fixture
def serve(corpus, db_url):
    servers = []

    def start(**overrides) -> LiveServer:
        s = corpus.model_copy(update={"database_url": secret(db_url), **overrides})
        servers.append(LiveServer(s))
        return servers[-1]

    yield start
    for s in servers:
        s.stop()


def querylog_of(live: LiveServer) -> QueryLog:
    return live.server.config.app.state.rag.querylog


def rows(live: LiveServer) -> list[QueryRecord]:
    log = querylog_of(live)
    log.flush()
    with log.db.session(read_only=True) as s:
        return list(s.scalars(select(QueryRecord).order_by(QueryRecord.created_at)).all())


# -- pure parts --------------------------------------------------------------------------------------------


def test_redaction_rules():
    text_ = "Mail jane.doe+rag@mail.example.co.uk or ops@x.io, call +44 20 7946 0958 or 4111-1111-1111-1111."
    assert redact(text_, emails=True, numbers=False) == (
        "Mail [email] or [email], call +44 20 7946 0958 or 4111-1111-1111-1111."
    )
    assert redact(text_, emails=True, numbers=True) == "Mail [email] or [email], call [number] or [number]."
    # Short numbers carry meaning in questions (top 5, 200 tokens, the year 2024) and stay.
    q = "Why are chunks 200 tokens with 40 overlap since 2024, ticket 12345?"
    assert redact(q, emails=True, numbers=True) == q.replace("12345", "[number]")
    assert redact(text_, emails=False, numbers=False) == text_


def test_parse_since():
    now = 1_000_000.0
    assert parse_since("7d", now) == now - 7 * 86400
    assert parse_since("24h", now) == now - 86400
    assert parse_since("30m", now) == now - 1800
    assert parse_since("2w", now) == now - 14 * 86400
    assert parse_since("1970-01-02T00:00:00", now) == 86400
    assert parse_since(None) is None and parse_since("") is None
    with pytest.raises(Exception, match="duration like 7d"):
        parse_since("last tuesday")


def test_each_signal_scores_and_their_sum_ranks():
    plain = {"top_score": 0.6, "retriever_agreement": 0.8}
    assert score_candidate(plain) == {}
    assert score_candidate(plain, downs=1) == {"thumbs_down": 3.0}
    assert score_candidate(plain, ups=2) == {"thumbs_up": -1.0}
    assert score_candidate({**plain, "declined": True}) == {"declined": 2.0}
    assert score_candidate({**plain, "unsupported_claims": 2, "faithfulness": 0.5}) == {"unsupported_claims": 2.5}
    assert score_candidate({"top_score": 0.175}) == {"low_top_score": 1.0}
    assert score_candidate({"retriever_agreement": 0.2}) == {"retrievers_disagree": 1.2}
    assert score_candidate(plain, correct_doc="docs/x.md") == {"correct_doc_named": 1.0}


# -- capture -----------------------------------------------------------------------------------------------


def test_every_route_logs_the_query_with_its_evidence(serve):
    live = serve()
    q = live.http.post("/v1/query", json={"question": "How are documents chunked?", "top_k": 3}).json()
    assert len(q["query_id"]) == 32
    stream = live.http.post("/v1/query", json={"question": "What is BM25?", "stream": True}).text
    final = json.loads(stream.split("event: final\ndata: ")[1].split("\n")[0])
    chat = live.http.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": "Which files fail?"}]})
    asked = {"stream": True, "messages": [{"role": "user", "content": "What is a golden set?"}]}
    chat_stream = live.http.post("/v1/chat/completions", json=asked).text
    last = [json.loads(line[6:]) for line in chat_stream.splitlines() if line.startswith("data: {")][-1]
    ids = [q["query_id"], final["query_id"], chat.json()["query_id"], last["query_id"]]
    assert all(ids) and len(set(ids)) == 4

    logged = {r.id: r for r in rows(live)}
    assert set(logged) == set(ids)
    assert [logged[i].route for i in ids] == ["query", "stream", "chat", "chat"]
    r = logged[q["query_id"]]
    assert r.question == "How are documents chunked?" and r.collection == "docs"
    assert r.settings["top_k"] == 3 and r.settings["mode"] == "hybrid" and r.settings["generate"] is True
    assert [c["chunk_id"] for c in r.contexts] == [c["chunk_id"] for c in q["contexts"]]
    assert r.contexts[0]["stages"]["fused"]["rank"] == 1 and "text" not in r.contexts[0]  # the store has it
    assert len(r.contexts[0]["text_hash"]) == 12
    assert r.answer == q["answer"] and r.generator == "extractive"
    assert [c["number"] for c in r.citations] == [c["number"] for c in q["citations"]]
    assert set(r.timings) >= {"total", "generation"}
    assert 0 < r.top_score <= 1 and 0 <= r.retriever_agreement <= 1
    assert {"sparse", "dense"} <= set(r.stage_tops) and len(r.stage_tops["dense"]) <= 10
    assert r.faithfulness is None  # extractive answers are faithful by construction: not scored

    # Over the API, scoped like the rest; a retrieval-only query is logged too.
    got = live.http.get(f"/v1/queries/{q['query_id']}").json()
    assert got["question"] == r.question and got["feedback"] == []
    assert [c["text"] for c in got["contexts"]] == [c["text"] for c in q["contexts"]]  # read back from the store
    assert live.http.post("/v1/query", json={"question": "What is BM25?", "generate": False}).json()["query_id"]
    listed = live.http.get("/v1/queries", params={"q": "bm25"}).json()
    assert listed["enabled"] and listed["total"] == 2


def test_opt_out_logs_nothing(serve):
    live = serve(query_log=False)
    q = live.http.post("/v1/query", json={"question": "How are documents chunked?"}).json()
    assert q["query_id"] is None and q["answer"]
    chat = live.http.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": "Which files fail?"}]})
    assert chat.json()["query_id"] is None
    assert live.http.get("/v1/queries").json() == {"enabled": False, "total": 0, "items": []}
    fb = live.http.post("/v1/feedback", json={"query_id": "0" * 32, "rating": 1})
    assert fb.status_code == 409 and fb.json()["error"]["code"] == "query_log_off"
    assert rows(live) == []


def test_redaction_applies_to_what_is_stored(serve):
    live = serve(query_log_redact_emails=True, query_log_redact_numbers=True)
    question = "I am jane.doe@example.com, phone 0044 20 7946 0958: how are documents chunked into 200 tokens?"
    q = live.http.post("/v1/query", json={"question": question}).json()
    assert q["question"] == question  # the caller gets its own words back
    live.http.post("/v1/feedback", json={"query_id": q["query_id"], "rating": -1, "comment": "write to me@x.org"})
    r = live.http.get(f"/v1/queries/{q['query_id']}").json()
    assert r["question"] == "I am [email], phone [number]: how are documents chunked into 200 tokens?"
    assert r["redacted"] is True
    assert r["feedback"][0]["comment"] == "write to [email]"
    stored = rows(live)[0]
    assert "jane" not in stored.question and "7946" not in stored.question


def test_unredacted_by_default(serve):
    live = serve()
    question = "Is jane.doe@example.com allowed 12345 uploads?"
    q = live.http.post("/v1/query", json={"question": question}).json()
    assert live.http.get(f"/v1/queries/{q['query_id']}").json()["question"] == question


def test_retention_purges_old_queries_and_their_feedback(serve):
    live = serve(query_log_retention_days=1.0)
    old = live.http.post("/v1/query", json={"question": "How are documents chunked?"}).json()["query_id"]
    new = live.http.post("/v1/query", json={"question": "What is BM25?"}).json()["query_id"]
    for qid in (old, new):
        assert live.http.post("/v1/feedback", json={"query_id": qid, "rating": -1}).status_code == 201
    log = querylog_of(live)
    log.flush()
    with log.db.session() as s:  # the first query was asked two days ago
        s.execute(update(QueryRecord).where(QueryRecord.id == old).values(created_at=time.time() - 2 * 86400))
    assert log.purge() == 1
    assert [r.id for r in rows(live)] == [new]
    with log.db.session(read_only=True) as s:
        assert s.scalar(select(func.count()).select_from(Feedback)) == 1
    assert live.http.get(f"/v1/queries/{old}").status_code == 404


def test_retention_zero_keeps_everything(corpus, tmp_path, db_url):
    s = corpus.model_copy(update={"data_dir": tmp_path, "database_url": secret(db_url), "query_log_retention_days": 0})
    db = Database(database_url(s))
    db.migrate()
    log = QueryLog(s, db)
    try:
        insert(db, "a" * 32, "docs", "ancient", age_days=4000)
        assert log.purge() == 0
        assert log.get("a" * 32)["question"] == "ancient"
    finally:
        log.close()
        db.close()


# -- candidates --------------------------------------------------------------------------------------------


def insert(db: Database, qid: str, collection: str, question: str, age_days: float = 0.0, **cols) -> None:
    row = dict(
        id=qid,
        created_at=time.time() - age_days * 86400,
        collection=collection,
        route="query",
        question=question,
        settings={},
        contexts=[],
        stage_tops={},
        citations=[],
        timings={},
        declined=False,
        redacted=False,
        top_score=0.6,
        retriever_agreement=0.8,
    )
    row.update(cols)
    with db.session() as s:
        s.add(QueryRecord(**row))


def test_candidates_are_ranked_by_their_signals(corpus, tmp_path, db_url):
    s = corpus.model_copy(update={"data_dir": tmp_path, "database_url": secret(db_url)})
    db = Database(database_url(s))
    db.migrate()
    log = QueryLog(s, db)
    try:
        names = "down declined unsupported low disagree fine up dup1 dup2 old sci done"
        ids = {name: uuid.uuid4().hex for name in names.split()}
        insert(db, ids["down"], "docs", "Why does upload fail?")
        insert(db, ids["declined"], "docs", "What is the refund policy?", declined=True)
        insert(db, ids["unsupported"], "docs", "How big are chunks?", unsupported_claims=2, faithfulness=0.0)
        insert(db, ids["low"], "docs", "Who wrote Qdrant?", top_score=0.1)
        insert(db, ids["disagree"], "docs", "What is DBSF?", retriever_agreement=0.0)
        insert(db, ids["fine"], "docs", "What is BM25?")
        insert(db, ids["up"], "docs", "What is hybrid search?")
        insert(db, ids["dup1"], "docs", "How do I delete a document?", age_days=1, declined=True)
        insert(db, ids["dup2"], "docs", "how do I delete a document", declined=True)
        insert(db, ids["old"], "docs", "An old question?", age_days=30, declined=True)
        insert(db, ids["sci"], "scifact", "What do microRNAs regulate?", declined=True)
        insert(db, ids["done"], "docs", "Already labelled?", declined=True, labelled_case="q-done")
        log.add_feedback(ids["down"], -1, "wrong", "docs/ingesting.md")
        log.add_feedback(ids["up"], 1)

        got = log.candidates(["docs"], since=parse_since("7d"), limit=50)
        order = [c["id"] for c in got]
        by = {c["id"]: c for c in got}
        # thumbs-down + named document (4.0) > unsupported (3.0) > declined asked twice (2.25) > declined (2.0)
        # > low top score (1.43) > disagreeing retrievers (1.5 * 1.0 = 1.5, so before the low score) ...
        assert order[:4] == [ids["down"], ids["unsupported"], ids["dup2"], ids["declined"]]
        assert order[4:6] == [ids["disagree"], ids["low"]]
        assert order[-1] == ids["up"]  # a thumbs-up sinks
        assert by[ids["down"]]["signals"] == {"thumbs_down": 3.0, "correct_doc_named": 1.0}
        assert by[ids["dup2"]]["times_asked"] == 2 and ids["dup1"] not in by  # one per distinct question
        assert ids["old"] not in by and ids["sci"] not in by and ids["done"] not in by  # window, scope, labelled
        assert [c["id"] for c in log.candidates(None, since=None, limit=100)].count(ids["sci"]) == 1
        assert len(log.candidates(["docs"], limit=3)) == 3
    finally:
        log.close()
        db.close()


def test_candidates_over_the_api_and_the_cli(serve, db_url):
    live = serve()
    ok = live.http.post("/v1/query", json={"question": "How are documents chunked?"}).json()["query_id"]
    bad = live.http.post("/v1/query", json={"question": "What happens to a corrupt PDF?"}).json()["query_id"]
    declined = live.http.post("/v1/query", json={"question": "zxqv flurble wibble?"}).json()
    live.http.post("/v1/feedback", json={"query_id": bad, "rating": -1, "comment": "incomplete"})
    got = live.http.get("/v1/queries/candidates", params={"since": "7d", "limit": 50}).json()
    assert got[0]["id"] == bad and "thumbs_down" in got[0]["signals"]
    flagged = {c["id"]: c for c in got}
    if declined["generation"]["declined"]:
        assert "declined" in flagged[declined["query_id"]]["signals"]
    assert flagged[declined["query_id"]]["score"] > flagged[ok]["score"]

    # `rag golden candidates` reads the same database (the service may keep running).
    env = {**os.environ, "RAG_DATA_DIR": str(live.settings.data_dir), "RAG_COLLECTION": "docs", "COLUMNS": "250"}
    if db_url:
        env["RAG_DATABASE_URL"] = db_url
    out = subprocess.run(
        [sys.executable, "-m", "cli", "golden", "candidates", "--since", "7d", "--limit", "50", "--json"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    cli = json.loads(out.stdout)
    assert [c["id"] for c in cli] == [c["id"] for c in got]
    table = run_rag("golden", "candidates", "--since", "7d", "--limit", "2", cwd=ROOT, env=env, timeout=120)
    assert table.returncode == 0 and "What happens to a corrupt PDF?" in table.stdout and "thumbs_down" in table.stdout


def test_llm_answers_are_scored_for_faithfulness_after_the_response(serve):
    standin = StandIn()  # a wire-level OpenAI-compatible stand-in (tests/service/llm_standin.py)
    try:
        standin.answer = "Documents are split into chunks of at most 200 tokens [1]. The moon is made of cheese [1]."
        live = serve(llm_base_url=standin.url, llm_model="stand-in", llm_timeout_s=5.0, llm_max_retries=0)
        q = live.http.post("/v1/query", json={"question": "How are documents chunked?"}).json()
        assert q["generation"]["generator"] == "openai-compatible:stand-in"
        r = live.http.get(f"/v1/queries/{q['query_id']}").json()
        assert r["unsupported_claims"] >= 1 and r["faithfulness"] < 1
        assert any("cheese" in c["claim"] and not c["supported"] for c in r["claims"])
        top = live.http.get("/v1/queries/candidates").json()[0]
        assert top["id"] == q["query_id"] and "unsupported_claims" in top["signals"]
    finally:
        standin.close()


def test_the_writer_holds_rows_only_while_the_database_is_unreachable():
    """Rows meeting an unreachable database are held and written when it is back (the real cut:
    tests/service/test_fault_postgres.py); a database that answers but refuses a row gets each row on its own."""
    import sqlite3

    import psycopg
    from sqlalchemy.exc import IntegrityError, InterfaceError, OperationalError

    from service.querylog.capture import _unreachable

    refused = OperationalError("connect", {}, psycopg.OperationalError("connection refused"))  # no SQLSTATE
    shutdown = OperationalError("insert", {}, psycopg.errors.lookup("57P01")("terminating connection"))
    reset = OperationalError("insert", {}, psycopg.errors.lookup("08006")("connection failure"))
    locked = OperationalError("insert", {}, sqlite3.OperationalError("database is locked"))
    closed = InterfaceError("insert", {}, psycopg.InterfaceError("the connection is closed"))
    assert all(_unreachable(e) for e in (refused, shutdown, reset, locked, closed))
    full = OperationalError("insert", {}, psycopg.errors.lookup("53100")("could not extend file"))
    duplicate = IntegrityError("insert", {}, psycopg.errors.lookup("23505")("duplicate key"))
    assert not _unreachable(full) and not _unreachable(duplicate)
