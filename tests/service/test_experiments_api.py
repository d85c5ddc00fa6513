"""Experiments over real HTTP (real uvicorn, the real model, the real store, the job system): variants as TOML
text or JSON fields, compared on one golden set; bad variants and server paths are refused with a code; every
collection a variant touches is checked against the key; a running or queued experiment can be cancelled."""

from __future__ import annotations

import json
import time

import pytest

from diagnostics.metrics import DEFAULT_KS
from tests.conftest import ROOT
from tests.helpers.service import LiveServer, finish, headers

KEYS = {"docs-key": ["docs"], "admin": ["*"]}
CASES = [
    {"id": "a", "question": "What happens to a corrupt PDF?", "expected": [{"doc_id": "docs/ingesting.md"}]},
    {"id": "b", "question": "What is a golden set?", "expected": [{"doc_id": "docs/evaluation.md"}]},
    {
        "id": "c",
        "question": "Which settings choose the embedding model?",
        "expected": [{"doc_id": "docs/configuration.md"}],
    },
]
BASELINE = {"toml": 'name = "baseline"\n'}


@pytest.fixture(scope="module")
def server(base_settings):
    # One job worker, so a second experiment of a key waits (with the default several, it would start too).
    live = LiveServer(base_settings.model_copy(update={"api_keys": KEYS, "job_workers": 1}))
    yield live
    live.stop()


def post(server, body: dict, key: str = "docs-key"):
    return server.http.post(
        "/v1/experiments", json={"collection": "docs", "cases": CASES, **body}, headers=headers(key)
    )


def test_an_experiment_of_retrieval_variants_compares_them(server):
    variants = [
        BASELINE,
        {"name": "top1", "toml": "# one chunk to the generator\n[retrieval]\ntop_k = 1\n"},
        {"name": "dense", "description": "no BM25", "retrieval": {"mode": "dense"}},  # the fields as JSON
    ]
    r = post(server, {"variants": variants, "ks": list(DEFAULT_KS)})
    assert r.status_code == 202, r.text
    started = r.json()
    assert started["kind"] == "experiment" and started["progress"] == {"cases": 0, "total": 9}
    job = finish(server, started["id"], key="docs-key")  # /v1/jobs/{id}: the one job system
    assert job["status"] == "succeeded" and job["kind"] == "experiment", job
    got = server.http.get(f"/v1/experiments/{started['id']}", headers=headers("docs-key"))
    assert got.status_code == 200
    listed = server.http.get("/v1/experiments", headers=headers("docs-key")).json()["items"]
    row = next(x for x in listed if x["id"] == started["id"])
    assert row["variants"] == ["baseline", "top1", "dense"] and row["collections"] == ["docs"] and row["cases"] == 3
    report = got.json()["report"]
    assert [v["name"] for v in report["variants"]] == ["baseline", "top1", "dense"]
    assert report["baseline"] == "baseline" and report["cases"] == 3
    assert report["variants"][2]["settings"]["mode"] == "dense" and report["variants"][1]["settings"]["cut"] == 1
    assert all(v["collection"] == "docs" and v["overall"]["recall@10"]["mean"] is not None for v in report["variants"])
    assert set(report["comparisons"]) == {"top1", "dense"} and "ndcg@10" in report["comparisons"]["dense"]
    assert report["winners"]["ndcg@10"]["verdict"] in ("winner", "inconclusive")
    assert set(report["flipped"]) == {"top1", "dense"}
    assert (
        report["markdown"].startswith("Experiment: 3 variants on 3 cases")
        and "| metric | baseline |" in report["markdown"]
    )
    assert report["variants"][1]["source"] == "variants[1]"  # no file: where in the request
    assert str(ROOT) not in got.text and str(server.settings.data_dir) not in got.text


@pytest.mark.parametrize(
    "variant, message",
    [
        ({"toml": "[retrieval\ntop_k = 3"}, "variants[1]: not valid TOML"),
        ({"toml": "[retrieval]\ntopk = 3\n"}, "variants[1]: unknown key(s) in [retrieval]: topk"),
        ({"name": "x", "retreival": {"top_k": 3}}, "variants[1]: unknown key(s) retreival"),
        ({"toml": "[retrieval]\ntop_k = 'ten'\n"}, "retrieval.top_k must be a whole number"),
        (
            {"toml": "[generation]\nprompt = '/etc/passwd'\n"},
            "cannot name files: send the prompt itself as prompt_text",
        ),
        ({"toml": "[generation]\nprompt = 'README.md'\n"}, "is not a built-in prompt"),
        ({"toml": "[generation]\nfewshot = 'examples/golden-docs.jsonl'\n"}, "generation.fewshot names a file"),
        ({"generation": {"generator": "llm", "base_url": "http://evil.example/v1"}}, "cannot name an endpoint"),
        ({"judge": {"base_url": "http://evil.example/v1"}}, "cannot name an endpoint"),
        ({"toml": "[generation]\nprompt = 'strict'\nprompt_text = 'Answer.'\n"}, "set prompt or prompt_text, not both"),
        ({"name": "y", "toml": "name = 'z'\n"}, "named twice"),
        ({"toml": 'name = "baseline"\n'}, "baseline named twice"),
        ({"toml": "name = 'v'", "collection": "scifact"}, "only name may be given beside it"),
        ({"name": "x", "collection": "../data"}, "collection must be 1-64 of A-Z a-z 0-9 - _"),
    ],
)
def test_bad_variants_are_400_invalid_variant(server, variant, message):
    r = post(server, {"variants": [BASELINE, variant]})
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["code"] == "invalid_variant" and message in error["message"], error
    assert str(ROOT) not in r.text and "Traceback" not in r.text


def test_other_refusals_have_their_codes(server):
    one = post(server, {"variants": [BASELINE]})
    assert one.status_code == 422 and one.json()["error"]["code"] == "invalid_request"
    rerank = post(server, {"variants": [BASELINE, {"retrieval": {"rerank": True}}]})
    assert rerank.status_code == 400 and rerank.json()["error"]["code"] == "rerank_unavailable"
    llm = post(server, {"variants": [BASELINE, {"toml": "[generation]\ngenerator = 'llm'\nprompt_text = 'Be brief.'"}]})
    assert llm.status_code == 400 and "RAG_LLM_BASE_URL" in llm.json()["error"]["message"]
    ks = post(server, {"variants": [BASELINE, {"name": "v"}], "ks": [0]})
    assert ks.status_code == 400 and ks.json()["error"]["code"] == "invalid_parameters"
    bad_case = post(server, {"variants": [BASELINE, {"name": "v"}], "cases": [{"id": "x", "question": ""}]})
    assert bad_case.status_code == 422 and bad_case.json()["error"]["code"] == "golden_set_invalid"
    assert server.http.get("/v1/experiments/0123abcd", headers=headers("admin")).status_code == 404
    body = {"collection": "docs", "cases": CASES, "variants": [BASELINE, {"name": "\ud800"}]}  # escaped as JSON
    surrogate = server.http.post(
        "/v1/experiments", content=json.dumps(body), headers={**headers("docs-key"), "Content-Type": "application/json"}
    )
    assert surrogate.status_code == 400 and surrogate.json()["error"]["code"] == "invalid_text"


def test_every_collection_a_variant_touches_is_checked(server):
    v = {"variants": [BASELINE, {"name": "v"}]}
    assert server.http.post("/v1/experiments", json={"cases": CASES, **v}).status_code == 401
    r = server.http.post(
        "/v1/experiments", json={"collection": "scifact", "cases": CASES, **v}, headers=headers("docs-key")
    )
    assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden"
    other = {"variants": [BASELINE, {"name": "sci", "collection": "scifact"}]}
    r = post(server, other)
    assert r.status_code == 403 and "scifact" in r.json()["error"]["message"]
    missing = post(server, {"variants": [BASELINE, {"name": "gone", "collection": "nope"}]}, key="admin")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "collection_not_found"

    # An admin's experiment across docs and scifact: the docs key sees neither it nor its job.
    r = post(server, {**other, "cases": CASES[:1]}, key="admin")
    assert r.status_code == 202, r.text
    job = finish(server, r.json()["id"], key="admin")
    assert job["status"] == "succeeded", job
    assert [v["collection"] for v in job["report"]["variants"]] == ["docs", "scifact"]
    assert server.http.get(f"/v1/experiments/{job['id']}", headers=headers("docs-key")).status_code == 404
    assert server.http.get(f"/v1/jobs/{job['id']}", headers=headers("docs-key")).status_code == 404


def test_cancel_a_running_and_a_queued_experiment(server):
    many = [{"id": f"q{i}", "question": f"What happens to corrupt file number {i}?"} for i in range(100)]
    body = {"cases": many, "variants": [BASELINE, {"name": "dense", "retrieval": {"mode": "dense"}}], "ks": [1, 5]}
    first = post(server, body).json()
    second = post(server, body).json()  # one job worker: this one waits
    r = server.http.post(f"/v1/jobs/{second['id']}/cancel", headers=headers("docs-key"))
    assert r.status_code == 200 and r.json()["status"] == "cancelled", r.text
    deadline = time.monotonic() + 120
    while server.http.get(f"/v1/jobs/{first['id']}", headers=headers("docs-key")).json()["progress"]["cases"] < 1:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    r = server.http.post(f"/v1/jobs/{first['id']}/cancel", headers=headers("docs-key"))
    assert r.status_code == 200, r.text
    job = finish(server, first["id"], key="docs-key")
    assert job["status"] == "cancelled" and job["reason"] == "cancelled" and job["report"] is None, job
    assert job["progress"]["cases"] < 200  # it stopped early
    got = server.http.get(f"/v1/experiments/{first['id']}", headers=headers("docs-key")).json()
    assert got["status"] == "cancelled" and json.dumps(got).count(str(ROOT)) == 0
