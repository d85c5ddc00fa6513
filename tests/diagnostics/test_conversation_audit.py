"""Conversations in golden sets and the audit's rewrite stage: `history`/`turns` in a golden set,
`rag golden import-mtrag`, and the stage before retrieval (`needed_history`, `rewrite_lost_subject`) as a pure
rule and through the real engine on a real MTRAG slice."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from diagnostics.audit.attribution import LOST_STAGES, Evidence, Pipeline, StageRank, where_lost
from diagnostics.audit.golden import Case, Expected, GoldenSet, GoldenSetError, case_to_json, load_golden
from diagnostics.audit.levers import LEVERS
from diagnostics.audit.run import Auditor
from engine.answer import Answerer
from engine.rewrite import LLMRewriter, OfflineRewriter, Turn
from tests.conftest import ROOT, params
from tests.helpers.mtrag import FOLLOW_UP, MTRAG, SWITCH

PIPE = Pipeline("hybrid", 5)
ABSENT = {"sparse": StageRank(None, None), "dense": StageRank(None, None), "fused": StageRank(None, None)}


def evidence(**extra) -> Evidence:
    return Evidence("d1", ABSENT, in_cut=False, indexed=True, extra=extra)


def test_rule_needed_history_and_lost_subject():
    asked = {"standalone": True, "query": "When?", "method": "offline"}
    item = where_lost(evidence(rewrite=asked, other_in_cut=True), PIPE)
    assert item["stage"] == "needed_history" and "joined to the previous user turn" in item["reason"]
    rewritten = {"standalone": False, "query": "Weather in Paris?", "method": "llm"}
    item = where_lost(evidence(rewrite=rewritten, other_in_cut=True, lost_words=["drama"]), PIPE)
    assert item["stage"] == "rewrite_lost_subject" and item["reason"].endswith("dropped: drama")
    # The other way of asking missed it too, or no conversation: the retrieval stages explain it as before.
    assert where_lost(evidence(rewrite=asked, other_in_cut=False), PIPE)["stage"] == "not_in_any_candidates"
    assert where_lost(evidence(), PIPE)["stage"] == "not_in_any_candidates"
    # Before retrieval, after the index: a document not indexed is an index problem whatever the rewrite.
    gone = Evidence("d1", ABSENT, in_cut=False, indexed=False, in_corpus=True, extra={"rewrite": asked})
    assert where_lost(gone, PIPE)["stage"] == "not_in_index"
    assert {"needed_history", "rewrite_lost_subject"} <= set(LOST_STAGES) & set(LEVERS)


def test_golden_history_and_turns(tmp_path):
    path = tmp_path / "g.jsonl"
    rows = [
        {"id": "a", "question": "When?", "history": [{"role": "user", "content": "The drama contest?"}]},
        {
            "id": "b",
            "turns": [
                {"role": "user", "content": "Hi"},
                {"role": "assistant", "text": "Hello"},
                {"role": "user", "content": "When?"},
            ],
        },
        {"id": "c", "question": "Alone?", "expected": [{"doc_id": "x"}]},
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    a, b, c = load_golden(path).cases
    assert a.history == (Turn("user", "The drama contest?"),) and a.question == "When?"
    assert b.question == "When?" and [t.role for t in b.history] == ["user", "assistant"] and c.history == ()
    assert case_to_json(a)["history"] == [{"role": "user", "content": "The drama contest?"}]
    assert "history" not in case_to_json(c)
    for bad in (
        {"id": "x", "question": "q", "history": [{"role": "robot", "content": "x"}]},
        {"id": "x", "turns": [{"role": "assistant", "content": "x"}]},
        {"id": "x", "question": "q", "turns": [{"role": "user", "content": "other"}]},
    ):
        path.write_text(json.dumps(bad) + "\n")
        with pytest.raises(GoldenSetError):
            load_golden(path)


def test_import_mtrag_cli(tmp_path):
    if not (MTRAG / "conversations.jsonl").exists():
        pytest.skip("MTRAG not found")
    out = tmp_path / "mtrag.jsonl"
    cmd = [sys.executable, "-m", "cli", "golden", "import-mtrag", str(MTRAG / "conversations.jsonl"), "--out", str(out)]
    run = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert "356 cases (326 with history, 88 unanswerable)" in run.stdout
    gold = load_golden(out)
    case = next(c for c in gold.cases if c.id == "5f07a39c4dc2e15fe7ccb046b4c56c25<::>3")
    assert case.question == "When did it take place?" and case.relevance == {FOLLOW_UP["relevant"]: 1}
    assert case.history[-2].text == "Was the competition only about drama?" and "multi_turn:Follow-up" in case.tags


def audit(answerer, cases) -> dict:
    return Auditor(answerer, answerer.retriever.store).run(GoldenSet(cases), "mtrag", params(), (5,))


def conv_case(cid: str, spec: dict) -> Case:
    return Case(cid, spec["question"], (Expected(spec["relevant"]),), history=tuple(spec["history"]))


def test_audit_stage_needed_history(mtrag_engine):
    cases = [conv_case("follow", FOLLOW_UP)]
    off = audit(Answerer(mtrag_engine.retriever, mtrag_engine.answerer.generator, None), cases)["cases"][0]
    assert off["rewrite"]["method"] == "off" and off["verdict"] == "retrieval_miss"
    assert [x["stage"] for x in off["lost"]] == ["needed_history"]
    on = audit(mtrag_engine.answerer, cases)
    assert on["cases"][0]["verdict"] == "retrieved" and on["cases"][0]["rewrite"]["query"].endswith("take place?")
    assert on["cases"][0]["lost"] == []


def test_audit_stage_rewrite_lost_subject(mtrag_engine, standin):
    # Always joining (no standalone check) buries a change of subject under the previous topic.
    always = OfflineRewriter(
        mtrag_engine.bm25, mtrag_engine.answerer.rewriter.probe, standalone_terms=1000, dense_margin=-1
    )
    case = audit(
        Answerer(mtrag_engine.retriever, mtrag_engine.answerer.generator, always), [conv_case("switch", SWITCH)]
    )
    lost = case["cases"][0]["lost"]
    assert [x["stage"] for x in lost] == ["rewrite_lost_subject"] and "dropped" not in lost[0]["reason"]
    assert case["where_lost"]["rewrite_lost_subject"] == 1

    # An LLM rewrite that drops the subject: the reason names the question's words it lost.
    standin.mode, standin.answer = "ok", "What is the weather like there?"
    settings = mtrag_engine.settings.model_copy(update={"llm_base_url": standin.url, "llm_model": "stand-in"})
    llm = LLMRewriter(settings, mtrag_engine.answerer.rewriter)
    report = audit(
        Answerer(mtrag_engine.retriever, mtrag_engine.answerer.generator, llm), [conv_case("switch", SWITCH)]
    )
    item = report["cases"][0]["lost"][0]
    assert report["cases"][0]["rewrite"]["method"] == "llm"
    assert item["stage"] == "rewrite_lost_subject" and "demography" in item["reason"]
    assert "fix the rewrite" in report["summary"]["lever"]
