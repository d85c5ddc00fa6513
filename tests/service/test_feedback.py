"""Feedback and labeling over a real uvicorn server with API keys, on SQLite and on PostgreSQL: a key rates,
reads and labels only its collections' queries; golden-set cases are validated by the audit's own loader
before anything is written; the UI's files and the API docs are served from the package (no CDN)."""

from __future__ import annotations

import pytest

from core.settings import Settings
from tests.helpers.service import docs_corpus, serve_per_database

KEYS = {"docs-key": ["docs"], "sci-key": ["scifact"], "admin": ["*"]}
DOCS, SCI, ADMIN = ({"X-API-Key": k} for k in ("docs-key", "sci-key", "admin"))


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, embedder) -> Settings:
    return docs_corpus(tmp_path_factory.mktemp("fb"), embedder, scifact=6, api_keys=KEYS)


@pytest.fixture(params=["sqlite", "postgresql"])
def live(request, corpus):
    yield from serve_per_database(request, corpus)


def ask(live, headers, question, collection):
    r = live.http.post("/v1/query", json={"question": question, "collection": collection}, headers=headers)
    assert r.status_code == 200, r.text
    return r.json()


def test_feedback_is_scoped_by_api_key(live):
    sci = ask(live, SCI, "What do microRNAs regulate?", "scifact")
    docs = ask(live, DOCS, "How are documents chunked?", "docs")

    # A key cannot rate, read or list another collection's query: to it, the id does not exist.
    r = live.http.post("/v1/feedback", json={"query_id": sci["query_id"], "rating": -1}, headers=DOCS)
    assert r.status_code == 404 and r.json()["error"]["code"] == "query_not_found"
    assert live.http.get(f"/v1/queries/{sci['query_id']}", headers=DOCS).status_code == 404
    listed = live.http.get("/v1/queries", headers=DOCS).json()
    assert [i["id"] for i in listed["items"]] == [docs["query_id"]]
    assert live.http.get("/v1/queries", params={"collection": "scifact"}, headers=DOCS).status_code == 403
    cands = live.http.get("/v1/queries/candidates", headers=DOCS).json()
    assert sci["query_id"] not in {c["id"] for c in cands}

    # Its own key and an admin key may; no key at all may not.
    r = live.http.post(
        "/v1/feedback",
        json={"query_id": sci["query_id"], "rating": -1, "comment": "misses the mechanism", "correct_doc_id": "4983"},
        headers=SCI,
    )
    assert r.status_code == 201 and r.json()["rating"] == -1
    assert (
        live.http.post("/v1/feedback", json={"query_id": docs["query_id"], "rating": 1}, headers=ADMIN).status_code
        == 201
    )
    assert live.http.post("/v1/feedback", json={"query_id": docs["query_id"], "rating": 1}).status_code == 401
    got = live.http.get(f"/v1/queries/{sci['query_id']}", headers=ADMIN).json()
    assert [(f["rating"], f["comment"], f["correct_doc_id"]) for f in got["feedback"]] == [
        (-1, "misses the mechanism", "4983")
    ]
    assert {i["id"] for i in live.http.get("/v1/queries", headers=ADMIN).json()["items"]} == {
        sci["query_id"],
        docs["query_id"],
    }
    down = live.http.get("/v1/queries", params={"rating": "down"}, headers=ADMIN).json()["items"]
    assert [(i["id"], i["feedback"]["down"]) for i in down] == [(sci["query_id"], 1)]

    # The chat facade's query ids are rated the same way.
    chat = live.http.post(
        "/v1/chat/completions",
        json={"model": "rag/scifact", "messages": [{"role": "user", "content": "Is BRCA1 a tumor suppressor?"}]},
        headers=SCI,
    ).json()
    assert (
        live.http.post("/v1/feedback", json={"query_id": chat["query_id"], "rating": 1}, headers=DOCS).status_code
        == 404
    )
    assert (
        live.http.post("/v1/feedback", json={"query_id": chat["query_id"], "rating": 1}, headers=SCI).status_code == 201
    )


@pytest.mark.parametrize(
    "body, code",
    [
        ({"query_id": "0" * 32, "rating": 1}, "query_not_found"),
        ({"query_id": "x", "rating": 0}, "invalid_request"),
        ({"query_id": "x", "rating": "1"}, "invalid_request"),
        ({"query_id": "x", "rating": 1, "extra": True}, "invalid_request"),
        ({"rating": 1}, "invalid_request"),
    ],
)
def test_feedback_validation(live, body, code):
    r = live.http.post("/v1/feedback", json=body, headers=ADMIN)
    assert r.status_code in (404, 422) and r.json()["error"]["code"] == code


def test_labelling_appends_validated_cases(live):
    q = ask(live, DOCS, "What happens to a corrupt PDF during ingest?", "docs")
    sci = ask(live, SCI, "What do microRNAs regulate?", "scifact")
    ctx = q["contexts"][0]
    url = "/v1/golden/docs/cases"

    def stored() -> list[dict]:
        return live.http.get("/v1/golden/docs", headers=DOCS).json()["rows"]

    # Scope: another collection's golden set, or another collection's query, is refused.
    assert (
        live.http.post(
            "/v1/golden/scifact/cases", json={"question": "x", "unanswerable": True}, headers=DOCS
        ).status_code
        == 403
    )
    r = live.http.post(url, json={"query_id": sci["query_id"], "question": "x", "unanswerable": True}, headers=DOCS)
    assert r.status_code == 404
    r = live.http.post(url, json={"query_id": sci["query_id"], "question": "x", "unanswerable": True}, headers=ADMIN)
    assert r.status_code == 409 and r.json()["error"]["code"] == "collection_mismatch"

    # Nothing picked and not unanswerable: refused; an invalid source: the loader's message, nothing written.
    r = live.http.post(url, json={"query_id": q["query_id"], "question": q["question"]}, headers=DOCS)
    assert r.status_code == 422 and r.json()["error"]["code"] == "nothing_labelled"
    bad = {"query_id": q["query_id"], "question": q["question"], "expected": [{"doc_id": ctx["doc_id"], "grade": 0}]}
    r = live.http.post(url, json=bad, headers=DOCS)
    assert r.status_code == 422 and r.json()["error"] == {
        "code": "golden_set_invalid",
        "message": "golden/docs.jsonl, line 1: expected[0].grade must be a whole number >= 1",
    }
    assert stored() == []
    # Labels are looked up in the index before anything is written (issue 17).
    stale = {"question": q["question"], "expected": [{"doc_id": ctx["doc_id"], "quote": "a corrupt PDF is repaired"}]}
    r = live.http.post(url, json=stale, headers=DOCS)
    err = r.json()["error"]
    assert r.status_code == 422 and err["code"] == "label_not_found" and "not in the document" in err["message"]
    assert err["details"][0]["closest"]["similarity"] > 0.3 and "PDF" in err["details"][0]["closest"]["text"]
    unknown = {"question": q["question"], "expected": [{"doc_id": "docs/nope.md"}]}
    r = live.http.post(url, json=unknown, headers=DOCS)
    assert r.status_code == 422 and r.json()["error"]["details"][0]["problem"] == "unknown_document"
    twice = {"question": q["question"], "expected": [{"doc_id": ctx["doc_id"], "grade": 3}, {"doc_id": ctx["doc_id"]}]}
    r = live.http.post(url, json=twice, headers=DOCS)
    assert r.status_code == 422 and r.json()["error"]["details"][0]["problem"] == "duplicate_source"
    assert stored() == []

    good = {
        "query_id": q["query_id"],
        "question": q["question"],
        "expected": [{"doc_id": ctx["doc_id"], "span": [ctx["start"], ctx["end"]], "grade": 2}],
        "answer": "It fails alone.",
        "tags": ["pdf"],
    }
    r = live.http.post(url, json=good, headers=DOCS)
    assert r.status_code == 201, r.text
    case = r.json()["case"]
    assert case["id"] == f"q-{q['query_id'][:12]}" and r.json()["rows"] == 1
    assert case["expected"] == good["expected"] and case["answer"] == "It fails alone." and case["tags"] == ["pdf"]
    # The same case again: a duplicate id, refused (409 case_exists); the set keeps its one case.
    r = live.http.post(url, json=good, headers=DOCS)
    assert r.status_code == 409 and r.json()["error"]["code"] == "case_exists"
    assert "duplicate id" in r.json()["error"]["message"] and len(stored()) == 1
    unans = live.http.post(
        url,
        json={"id": "no-refunds", "question": "What is the refund policy?", "unanswerable": True, "answer": "x"},
        headers=DOCS,
    )
    assert unans.status_code == 201
    assert unans.json()["case"]["expected"] == [] and "answer" not in unans.json()["case"]
    assert unans.json()["case"]["tags"] == ["unanswerable"]

    assert [r["id"] for r in stored()] == [case["id"], "no-refunds"]
    # In the service database, not a file in the data dir (replicas share it).
    assert not (live.settings.data_dir / "golden" / "docs.jsonl").exists()
    listed = live.http.get("/v1/golden/docs", headers=DOCS).json()
    assert listed["file"] == "golden/docs.jsonl" and len(listed["rows"]) == 2 and listed["error"] is None
    # The logged query is labelled now: out of the candidates, and filterable in the log.
    assert q["query_id"] not in {c["id"] for c in live.http.get("/v1/queries/candidates", headers=DOCS).json()}
    labelled = live.http.get("/v1/queries", params={"labelled": "true"}, headers=DOCS).json()["items"]
    assert [(i["id"], i["labelled_case"]) for i in labelled] == [(q["query_id"], case["id"])]

    # The audit route takes the file's rows as they are.
    job = live.http.post("/v1/audits", json={"collection": "docs", "cases": listed["rows"]}, headers=DOCS)
    assert job.status_code == 202, job.text
    # Audits live on the server, not in a browser tab: listed for every key that may read the collection.
    audits = live.http.get("/v1/audits", headers=DOCS).json()
    mine = next(a for a in audits["items"] if a["id"] == job.json()["id"])
    assert mine["cases"] == 2 and len(mine["golden_hash"]) == 12 and "report" not in mine
    assert job.json()["id"] not in {a["id"] for a in live.http.get("/v1/audits", headers=SCI).json()["items"]}
    assert live.http.get("/v1/audits", params={"limit": 0}, headers=DOCS).status_code == 422


def test_ui_and_docs_are_served_from_the_package(live):
    page = live.http.get("/ui")
    assert page.status_code == 200 and "/ui/assets/app.js" in page.text
    assert "default-src 'self'" in page.headers["content-security-policy"]
    for name in ("app.js", "style.css", "favicon.svg"):
        assert live.http.get(f"/ui/assets/{name}").status_code == 200
    for bad in ("nope.js", "..%2Fapp.py", "app.py"):
        assert live.http.get(f"/ui/assets/{bad}").status_code == 404
    # Swagger UI and ReDoc load their scripts from this server, not a CDN.
    for path in ("/docs", "/redoc"):
        html = live.http.get(path).text
        assert "cdn." not in html and "/static-offline-docs/" in html
    assert live.http.get("/static-offline-docs/swagger-ui-bundle.js").status_code == 200
    # The UI's helpers are /v1 routes: the API key applies.
    assert live.http.post("/v1/ui/audit-view", json={"report": {}}).status_code == 401
    view = live.http.post("/v1/ui/audit-view", json={"report": {"settings": {"ks": []}}}, headers=DOCS).json()
    assert "below_cut" in view["levers"]
    chunks = live.http.get("/v1/collections/scifact/chunks", params={"ids": ["x"]}, headers=DOCS)
    assert chunks.status_code == 403
    # Ids that are no chunk id (empty, not a UUID) name no chunk: an empty list, never a 500 (found by schemathesis).
    for ids in ([""], ["nope", "00000000-0000-0000-0000-000000000000"]):
        r = live.http.get("/v1/collections/docs/chunks", params={"ids": ids}, headers=DOCS)
        assert r.status_code == 200 and r.json() == [], r.text
