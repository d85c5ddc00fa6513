"""Golden sets on the server (issue 19) over a real uvicorn server with API keys, on SQLite and PostgreSQL:
the old file imported once, cases searched, edited and deleted with the labelling checks, an append-only
history whose changes can be reverted, a cap on cases, audits that read the set from the database; one
feedback vote per key and query, a correct document that must exist; logged queries that say which case
labels them."""

from __future__ import annotations

import json
import time

import pytest

from core.settings import Settings
from service.db import Database, database_url
from service.labels import GoldenStore
from tests.helpers.service import docs_corpus, serve_per_database

KEYS = {"docs-key": ["docs"], "sci-key": ["scifact"], "other-docs-key": ["docs"]}
DOCS, SCI, OTHER = ({"X-API-Key": k} for k in ("docs-key", "sci-key", "other-docs-key"))
CAP = 5


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, embedder) -> Settings:
    return docs_corpus(tmp_path_factory.mktemp("golden"), embedder, scifact=6, api_keys=KEYS, golden_max_cases=CAP)


@pytest.fixture(params=["sqlite", "postgresql"])
def live(request, corpus):
    yield from serve_per_database(request, corpus)


def ask(live, headers, question, collection="docs"):
    r = live.http.post("/v1/query", json={"question": question, "collection": collection}, headers=headers)
    assert r.status_code == 200, r.text
    return r.json()


def err(r) -> str:
    return r.json()["error"]["code"]


OLD_FILE = [
    {"id": "old-1", "question": "How are documents chunked?", "expected": [{"doc_id": "docs/ingesting.md"}]},
    {"id": "old-stub", "question": "What is a lever?", "needs_label": True},
]


def test_golden_set_edit_history_and_revert(live):
    # An old file in the data dir is imported once, on first use; the file itself is never written again.
    old = live.settings.data_dir / "golden" / "docs.jsonl"
    old.parent.mkdir(parents=True, exist_ok=True)
    old.write_text("".join(json.dumps(r) + "\n" for r in OLD_FILE))
    before = old.read_bytes()
    base = "/v1/golden/docs"
    got = live.http.get(base, headers=DOCS).json()
    assert [r["id"] for r in got["rows"]] == ["old-1", "old-stub"] and got["error"] is None
    hist = live.http.get(f"{base}/history", headers=DOCS).json()["items"]
    assert [(h["action"], h["who"], h["after"]["cases"]) for h in hist] == [("import", "import", 2)]
    r = live.http.post(f"{base}/history/{hist[0]['id']}/revert", headers=DOCS)
    assert r.status_code == 409 and err(r) == "not_revertable"

    # Scope: another collection's set is refused on every route.
    for method, path in [
        ("GET", "/v1/golden/scifact/cases"),
        ("GET", "/v1/golden/scifact/cases/x"),
        ("PUT", "/v1/golden/scifact/cases/x"),
        ("DELETE", "/v1/golden/scifact/cases/x"),
        ("GET", "/v1/golden/scifact/history"),
        ("POST", "/v1/golden/scifact/history/1/revert"),
    ]:
        body = {"question": "x", "unanswerable": True} if method == "PUT" else None
        assert live.http.request(method, path, json=body, headers=DOCS).status_code == 403, path

    # A case is added (labelling's checks), searched and paged.
    q = ask(live, DOCS, "What happens to a corrupt PDF during ingest?")
    ctx = q["contexts"][0]
    label = {
        "query_id": q["query_id"],
        "question": q["question"],
        "expected": [{"doc_id": ctx["doc_id"], "span": [ctx["start"], ctx["end"]], "grade": 2}],
        "answer": "It fails alone.",
    }
    r = live.http.post(f"{base}/cases", json=label, headers=DOCS)
    assert r.status_code == 201, r.text
    cid, added = f"q-{q['query_id'][:12]}", r.json()
    assert added["id"] == cid and added["version"] == 1 and added["rows"] == 3 and added["change_id"] > 0
    page = live.http.get(f"{base}/cases", params={"q": "corrupt pdf"}, headers=DOCS).json()
    assert [i["id"] for i in page["items"]] == [cid] and page["total"] == 1 and page["size"] == 3
    assert page["limit"] == CAP
    page = live.http.get(f"{base}/cases", params={"limit": 2, "offset": 1}, headers=DOCS).json()
    assert [i["id"] for i in page["items"]] == ["old-stub", cid] and page["total"] == 3
    assert live.http.get(f"{base}/cases", params={"q": "50%_"}, headers=DOCS).json()["total"] == 0
    assert live.http.get(f"{base}/cases", params={"q": ctx["doc_id"]}, headers=DOCS).json()["total"] == 2

    # Edits get labelling's validation, nothing written when refused: the loader (naming the case's line),
    # the index (label_not_found), nothing picked; an id in the body that is not the path's.
    url = f"{base}/cases/{cid}"
    edit = {"question": q["question"], "expected": [{"doc_id": ctx["doc_id"], "grade": 0}], "version": 1}
    r = live.http.put(url, json=edit, headers=DOCS)
    assert r.status_code == 422 and r.json()["error"] == {
        "code": "golden_set_invalid",
        "message": "golden/docs.jsonl, line 3: expected[0].grade must be a whole number >= 1",
    }
    r = live.http.put(url, json={**edit, "expected": [{"doc_id": "docs/nope.md"}]}, headers=DOCS)
    assert r.status_code == 422 and err(r) == "label_not_found"
    assert r.json()["error"]["details"][0]["problem"] == "unknown_document"
    r = live.http.put(
        url, json={**edit, "expected": [{"doc_id": ctx["doc_id"], "quote": "PDFs are repaired"}]}, headers=DOCS
    )
    assert r.status_code == 422 and err(r) == "label_not_found"
    r = live.http.put(url, json={**edit, "expected": []}, headers=DOCS)
    assert r.status_code == 422 and err(r) == "nothing_labelled"
    r = live.http.put(url, json={**edit, "id": "another", "expected": [{"doc_id": ctx["doc_id"]}]}, headers=DOCS)
    assert r.status_code == 422 and err(r) == "id_mismatch"
    assert live.http.get(url, headers=DOCS).json()["version"] == 1
    assert (
        live.http.put(
            f"{base}/cases/nope", json={**edit, "expected": [{"doc_id": ctx["doc_id"]}]}, headers=DOCS
        ).status_code
        == 404
    )

    # A good edit (another key): version 2, where it came from kept; an edit of the old version is refused.
    good = {**edit, "expected": [{"doc_id": ctx["doc_id"], "span": [ctx["start"], ctx["end"]], "grade": 3}]}
    r = live.http.put(url, json={**good, "tags": ["pdf"]}, headers=OTHER)
    assert r.status_code == 200, r.text
    edited = r.json()
    assert edited["version"] == 2 and edited["case"]["expected"][0]["grade"] == 3
    assert edited["case"]["tags"] == ["pdf"] and "answer" not in edited["case"]
    assert edited["case"]["source"]["query_id"] == q["query_id"]
    r = live.http.put(url, json={**good, "answer": "x"}, headers=DOCS)
    assert r.status_code == 409 and err(r) == "case_changed"
    r = live.http.delete(url, params={"version": 1}, headers=DOCS)
    assert r.status_code == 409 and err(r) == "case_changed"

    # Delete: gone from the set and the audit's rows; the logged query is no longer labelled.
    r = live.http.delete(url, params={"version": 2}, headers=DOCS)
    assert r.status_code == 200 and r.json()["action"] == "delete" and r.json()["rows"] == 2
    deleted = r.json()["id"]
    r = live.http.get(url, headers=DOCS)
    assert r.status_code == 404 and err(r) == "case_not_found"
    assert live.http.get(f"/v1/queries/{q['query_id']}", headers=DOCS).json()["labelled_case_id"] is None

    # The history: newest first, who (the key's owner id, one per key), what, before and after.
    hist = live.http.get(f"{base}/history", params={"case_id": cid}, headers=DOCS).json()["items"]
    assert [h["action"] for h in hist] == ["delete", "update", "create"]
    assert hist[0]["who"] == hist[2]["who"] != hist[1]["who"] and hist[0]["who"].startswith("key:")
    assert hist[1]["before"]["expected"][0]["grade"] == 2 and hist[1]["after"]["expected"][0]["grade"] == 3
    assert hist[0]["after"] is None and hist[2]["before"] is None
    # Reverting the update first is refused: the case was deleted after it. Undo the delete, then the update.
    r = live.http.post(f"{base}/history/{hist[1]['id']}/revert", headers=DOCS)
    assert r.status_code == 409 and err(r) == "revert_conflict"
    r = live.http.post(f"{base}/history/{deleted}/revert", headers=DOCS)
    assert r.status_code == 201 and r.json()["action"] == "revert" and r.json()["reverts"] == deleted
    assert [x["id"] for x in live.http.get(base, headers=DOCS).json()["rows"]] == ["old-1", "old-stub", cid]
    assert live.http.get(f"/v1/queries/{q['query_id']}", headers=DOCS).json()["labelled_case_id"] == cid
    r = live.http.post(f"{base}/history/{hist[1]['id']}/revert", headers=DOCS)
    assert r.status_code == 201
    assert live.http.get(url, headers=DOCS).json()["case"]["expected"][0]["grade"] == 2
    hist = live.http.get(f"{base}/history", params={"case_id": cid}, headers=DOCS).json()["items"]
    assert [h["action"] for h in hist] == ["revert", "revert", "delete", "update", "create"]
    assert hist[2]["reverted_by"] == hist[1]["id"] and hist[3]["reverted_by"] == hist[0]["id"]
    r = live.http.post(f"{base}/history/999999/revert", headers=DOCS)
    assert r.status_code == 404 and err(r) == "change_not_found"
    page = live.http.get(f"{base}/history", params={"limit": 2}, headers=DOCS).json()
    older = live.http.get(f"{base}/history", params={"before": page["next_before"]}, headers=DOCS).json()
    assert len(page["items"]) == 2 and [h["action"] for h in older["items"]][-1] == "import"

    # An audit without cases reads the set from the database (stubs skipped by the loader, as from a file).
    job = live.http.post("/v1/audits", json={"collection": "docs"}, headers=DOCS)
    assert job.status_code == 202, job.text
    mine = next(a for a in live.http.get("/v1/audits", headers=DOCS).json()["items"] if a["id"] == job.json()["id"])
    assert mine["cases"] == 3
    r = live.http.post("/v1/audits", json={"collection": "scifact"}, headers=SCI)
    assert r.status_code == 422 and err(r) == "golden_set_empty"

    # The cap: adding past it is refused with a clear 4xx, and so is undoing a delete into a full set.
    for i in range(CAP - 3):
        body = {"id": f"u-{i}", "question": f"Unanswerable {i}?", "unanswerable": True}
        assert live.http.post(f"{base}/cases", json=body, headers=DOCS).status_code == 201
    r = live.http.post(
        f"{base}/cases", json={"id": "one-too-many", "question": "x?", "unanswerable": True}, headers=DOCS
    )
    assert r.status_code == 409 and err(r) == "golden_set_full" and str(CAP) in r.json()["error"]["message"]
    gone = live.http.delete(f"{base}/cases/u-0", headers=DOCS).json()["id"]
    assert (
        live.http.post(
            f"{base}/cases", json={"id": "u-new", "question": "y?", "unanswerable": True}, headers=DOCS
        ).status_code
        == 201
    )
    r = live.http.post(f"{base}/history/{gone}/revert", headers=DOCS)
    assert r.status_code == 409 and err(r) == "golden_set_full"

    # The old file was read once and never rewritten.
    assert old.read_bytes() == before


def test_replicas_share_the_set(live):
    """Another process on the same database (a replica) sees every change at once, and its changes are seen."""
    other = GoldenStore(live.settings, Database(database_url(live.settings)))
    r = live.http.post("/v1/golden/docs/cases", json={"id": "a", "question": "A?", "unanswerable": True}, headers=DOCS)
    assert r.status_code == 201
    assert [c["id"] for c in other.page("docs")["items"]] == ["a"]
    other.create("docs", {"id": "b", "question": "B?", "expected": [], "tags": []}, "replica-2")
    rows = live.http.get("/v1/golden/docs", headers=DOCS).json()["rows"]
    assert [x["id"] for x in rows] == ["a", "b"]
    hist = live.http.get("/v1/golden/docs/history", headers=DOCS).json()["items"]
    assert [(h["case_id"], h["who"]) for h in hist][0] == ("b", "replica-2")
    other.db.close()


def test_one_vote_per_key_and_a_correct_doc_that_exists(live):
    q = ask(live, DOCS, "How are documents chunked?")
    fb = {"query_id": q["query_id"]}
    r = live.http.post("/v1/feedback", json={**fb, "rating": -1, "comment": "too vague"}, headers=DOCS)
    assert r.status_code == 201 and r.json()["previous_rating"] is None
    # The same key votes again: its vote is replaced (200), counted once; fields left out are kept.
    r = live.http.post("/v1/feedback", json={**fb, "rating": 1}, headers=DOCS)
    assert r.status_code == 200 and r.json()["previous_rating"] == -1 and r.json()["comment"] == "too vague"
    r = live.http.post("/v1/feedback", json={**fb, "rating": 1}, headers=DOCS)
    assert r.status_code == 200
    # Another key has a vote of its own.
    assert live.http.post("/v1/feedback", json={**fb, "rating": -1}, headers=OTHER).status_code == 201
    item = next(i for i in live.http.get("/v1/queries", headers=DOCS).json()["items"] if i["id"] == q["query_id"])
    assert (item["feedback"]["up"], item["feedback"]["down"]) == (1, 1)
    got = live.http.get(f"/v1/queries/{q['query_id']}", headers=DOCS).json()
    assert sorted((f["rating"], f["comment"]) for f in got["feedback"]) == [(-1, None), (1, "too vague")]

    # A correct document the collection does not hold is refused, nothing recorded; a misspelt one is named.
    doc = q["contexts"][0]["doc_id"]
    for bad in ("docs/nope.md", doc[:-1], "4983"):  # 4983 is scifact's, not docs'
        r = live.http.post("/v1/feedback", json={**fb, "rating": -1, "correct_doc_id": bad}, headers=DOCS)
        assert r.status_code == 422 and err(r) == "correct_doc_not_found", r.text
    r = live.http.post("/v1/feedback", json={**fb, "rating": -1, "correct_doc_id": doc[:-1]}, headers=DOCS)
    assert f"did you mean {doc!r}" in r.json()["error"]["message"]
    assert live.http.get(f"/v1/queries/{q['query_id']}", headers=DOCS).json()["feedback"] == got["feedback"]
    r = live.http.post("/v1/feedback", json={**fb, "rating": -1, "correct_doc_id": doc}, headers=DOCS)
    assert r.status_code == 200 and r.json()["correct_doc_id"] == doc


def test_logged_queries_say_which_case_labels_them(live):
    q1 = ask(live, DOCS, "What is a golden set?")
    time.sleep(0.01)
    q2 = ask(live, DOCS, "what is a GOLDEN set")  # the same question asked again, other case and punctuation
    r = live.http.post(
        "/v1/golden/docs/cases",
        json={
            "query_id": q1["query_id"],
            "question": q1["question"],
            "expected": [{"doc_id": q1["contexts"][0]["doc_id"]}],
        },
        headers=DOCS,
    )
    assert r.status_code == 201, r.text
    cid = r.json()["id"]
    # The labelled query and the other one asking the same question both name the case: in the log, as a
    # candidate (the second query is still one) and read one by one.
    items = {i["id"]: i for i in live.http.get("/v1/queries", headers=DOCS).json()["items"]}
    assert items[q1["query_id"]]["labelled_case_id"] == cid and items[q2["query_id"]]["labelled_case_id"] == cid
    cands = {c["id"]: c for c in live.http.get("/v1/queries/candidates", headers=DOCS).json()}
    assert q1["query_id"] not in cands and cands[q2["query_id"]]["labelled_case_id"] == cid
    assert live.http.get(f"/v1/queries/{q2['query_id']}", headers=DOCS).json()["labelled_case_id"] == cid
    # Deleted: nobody is labelled by it, and the query it came from is a candidate again.
    assert live.http.delete(f"/v1/golden/docs/cases/{cid}", headers=DOCS).status_code == 200
    cands = {c["id"]: c for c in live.http.get("/v1/queries/candidates", headers=DOCS).json()}
    assert {c["labelled_case_id"] for c in cands.values()} == {None}
    assert q1["query_id"] in cands or q2["query_id"] in cands  # one per distinct question
    assert live.http.get("/v1/queries", params={"labelled": "true"}, headers=DOCS).json()["items"] == []
