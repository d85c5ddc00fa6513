"""Every branch of the attribution rules on hand-built inputs: no model, no store, milliseconds."""

from __future__ import annotations

import json

import pytest

from diagnostics.audit.attribution import (
    LOST_STAGES,
    NOT_INDEXED_UNCERTAIN,
    RULES,
    Evidence,
    Pipeline,
    StageRank,
    rule_candidates,
    where_lost,
)
from diagnostics.audit.ingest_records import failed_files, failure_for, load_ingest_records
from diagnostics.audit.levers import LEVERS
from diagnostics.audit.verdicts import GOOD, VERDICTS, dominant, verdict

HYBRID = Pipeline("hybrid", cut=5)
R = StageRank


def ev(**kw) -> Evidence:
    base = dict(doc_id="d", ranks={}, in_cut=False, indexed=True)
    return Evidence(**{**base, **kw})


def stage(e: Evidence, p: Pipeline = HYBRID) -> str | None:
    item = where_lost(e, p)
    return None if item is None else item["stage"]


# ------------------------------------------------------------------------------------------------ where_lost


def test_in_cut_is_not_lost():
    assert where_lost(ev(in_cut=True, ranks={"fused": R(1, 1)}), HYBRID) is None


def test_in_cut_with_its_passage_is_not_lost():
    assert stage(ev(in_cut=True, anchored=True, anchor_covered=True)) is None


def test_wrong_passage():
    item = where_lost(ev(in_cut=True, anchored=True, anchor_covered=False, passage_rank=12), HYBRID)
    assert item["stage"] == "wrong_passage" and "ranked 12" in item["reason"]
    item = where_lost(ev(in_cut=True, anchored=True, anchor_covered=False), HYBRID)
    assert "no retrieved chunk holds it" in item["reason"]


def test_failed_to_ingest_beats_corpus_listing():
    item = where_lost(ev(indexed=False, in_corpus=True, ingest_failure="a.pdf: encrypted"), HYBRID)
    assert item["stage"] == "failed_to_ingest" and item["reason"] == "a.pdf: encrypted"


def test_not_in_index():
    assert stage(ev(indexed=False, in_corpus=True)) == "not_in_index"


def test_not_in_corpus_certain_with_a_listing():
    item = where_lost(ev(indexed=False, in_corpus=False), HYBRID)
    assert item["stage"] == "not_in_corpus" and "uncertain" not in item


def test_not_in_corpus_uncertain_without_a_listing():
    item = where_lost(ev(indexed=False), HYBRID)
    assert item["stage"] == "not_in_corpus" and item["uncertain"] == NOT_INDEXED_UNCERTAIN


@pytest.mark.parametrize("mode", ["sparse", "dense"])
def test_not_in_single_retriever_candidates(mode):
    assert stage(ev(ranks={mode: R(None, None)}), Pipeline(mode, 5)) == f"not_in_{mode}_candidates"


def test_not_in_any_candidates():
    ranks = {"sparse": R(None, None), "dense": R(None, None), "fused": R(None, None)}
    assert stage(ev(ranks=ranks)) == "not_in_any_candidates"


@pytest.mark.parametrize("retriever", ["sparse", "dense"])
def test_dropped_by_fusion_from_inside_the_cut(retriever):
    other = "dense" if retriever == "sparse" else "sparse"
    ranks = {retriever: R(2, 3), other: R(None, None), "fused": R(9, 14)}
    item = where_lost(ev(ranks=ranks), HYBRID)
    assert item["stage"] == "dropped_by_fusion" and retriever in item["reason"] and "fused rank 14" in item["reason"]
    assert item["ranks"] == {retriever: 2, other: None, "fused": 9} and item["chunk_ranks"]["fused"] == 14


def test_dropped_by_fusion_out_of_the_fused_list():
    item = where_lost(ev(ranks={"sparse": R(None, None), "dense": R(1, 1), "fused": R(None, None)}), HYBRID)
    assert item["stage"] == "dropped_by_fusion" and "not in the fused list" in item["reason"]


def test_a_retriever_that_had_it_only_below_the_cut_is_below_cut_not_fusion():
    # The bug this replaces: fused list absent/low while a retriever had it at rank 40 was "dropped_by_fusion".
    ranks = {"sparse": R(30, 40), "dense": R(None, None), "fused": R(None, None)}
    assert stage(ev(ranks=ranks)) == "below_cut"


def test_below_cut_when_no_stage_had_it_inside():
    ranks = {"sparse": R(7, 8), "dense": R(6, 9), "fused": R(6, 7)}
    assert stage(ev(ranks=ranks)) == "below_cut"


def test_dropped_by_reranker_from_inside_its_window():
    p = Pipeline("hybrid", 5, rerank=True, window=30)
    ranks = {"sparse": R(3, 3), "dense": R(4, 4), "fused": R(2, 2), "rerank": R(20, 28)}
    item = where_lost(ev(ranks=ranks), p)
    assert item["stage"] == "dropped_by_reranker" and "rank 2 before" in item["reason"]
    # fused 9: outside the cut but inside the window the reranker reorders: the reranker owned it
    ranks = {"sparse": R(8, 9), "dense": R(7, 8), "fused": R(8, 9), "rerank": R(20, 28)}
    assert stage(ev(ranks=ranks), p) == "dropped_by_reranker"
    # outside the rerank window altogether, and no retriever had it within reach: ranking, not the reranker
    ranks = {"sparse": R(40, 60), "dense": R(None, None), "fused": R(40, 60)}
    assert stage(ev(ranks=ranks), p) == "below_cut"


def test_issue_17_fused_inside_the_window_is_the_rerankers():
    """Rerank on (window 30, cut 5): sparse rank 1, fused 8, reranked 12. Fused 8 was inside the reranker's
    window, so the reranker lost it, not fusion (the old rule compared the fused rank with the cut)."""
    p = Pipeline("hybrid", 5, rerank=True, window=30)
    ranks = {"sparse": R(1, 1), "dense": R(None, None), "fused": R(8, 8), "rerank": R(12, 12)}
    item = where_lost(ev(ranks=ranks), p)
    assert item["stage"] == "dropped_by_reranker" and "window of 30" in item["reason"]


def test_fusion_first_then_reranker():
    p = Pipeline("hybrid", 5, rerank=True, window=10)
    ranks = {"sparse": R(1, 1), "dense": R(None, None), "fused": R(12, 15), "rerank": R(10, 12)}
    item = where_lost(ev(ranks=ranks), p)
    assert item["stage"] == "dropped_by_fusion" and "window (10)" in item["reason"]


def test_a_reranking_pipeline_needs_its_window():
    with pytest.raises(ValueError, match="window"):
        Pipeline("hybrid", 5, rerank=True)
    assert Pipeline("hybrid", 5).reach == 5 and Pipeline("hybrid", 5, True, 30).reach == 30


@pytest.mark.parametrize("mode", ["sparse", "dense"])
def test_single_retriever_modes_honour_rerank(mode):
    p = Pipeline(mode, 5, rerank=True, window=30)
    assert stage(ev(ranks={mode: R(1, 1), "rerank": R(None, None)}), p) == "dropped_by_reranker"
    assert stage(ev(ranks={mode: R(9, 9), "rerank": R(9, 9)}), p) == "dropped_by_reranker"
    assert stage(ev(ranks={mode: R(40, 40), "rerank": R(None, None)}), p) == "below_cut"
    assert stage(ev(ranks={mode: R(9, 9)}), Pipeline(mode, 5)) == "below_cut"


def test_stale_label_before_everything_else():
    # the document is in the cut, but the golden quote is in no chunk of it: the label, not retrieval
    item = where_lost(ev(in_cut=True, anchored=False, stale_label="the quote 'x' is not in the document"), HYBRID)
    assert item["stage"] == "stale_label" and "not in the document" in item["reason"]
    # an unindexed document cannot be checked: the index rules decide
    assert stage(ev(indexed=False, in_corpus=True, stale_label="x")) == "not_in_index"


def test_anchor_chunk_ranks_decide_candidates_not_fusion():
    """With a quote, the ranks are those of the chunk holding it (the audit passes them so): its answering chunk
    returned by no retriever is a candidates miss, whatever the document's best chunk did."""
    ranks = {"sparse": R(1, None), "dense": R(2, None), "fused": R(1, None)}
    assert stage(ev(ranks=ranks, anchored=True, anchor_covered=False)) == "not_in_any_candidates"


def test_rules_can_be_extended_with_a_stage_before_retrieval():
    """The seam for a conversation rewrite: a rule inserted before the candidate rules."""

    def needed_history(e, p):
        if e.extra.get("standalone_in_cut"):
            return {"stage": "needed_history"}
        return None

    rules = list(RULES)
    rules.insert(rules.index(rule_candidates), needed_history)
    ranks = {"sparse": R(None, None), "dense": R(None, None), "fused": R(None, None)}
    e = ev(ranks=ranks, extra={"standalone_in_cut": True})
    assert where_lost(e, HYBRID, rules)["stage"] == "needed_history"
    assert where_lost(e, HYBRID)["stage"] == "not_in_any_candidates"


def test_every_stage_has_a_lever():
    assert all(s in LEVERS for s in LOST_STAGES)
    assert all(v in LEVERS for v in VERDICTS if v not in GOOD | {"retrieval_miss"})


# ---------------------------------------------------------------------------------------------------- verdict


def lost(doc, st, **kw):
    return {"doc_id": doc, "stage": st, "ranks": {}, **kw}


def claim(text, supported=True, doc="a", uncertain=False):
    return {"claim": text, "supported": supported, "doc_id": doc, "uncertain": uncertain}


def gen(**kw):
    base = dict(answer="x", declined=False, error=None, cited_docs=["a"], claims=[claim("Fact one is here.")])
    return {**base, **kw}


def correct(ok=True, covered=1, n=1, **kw):
    return {"correct": ok, "covered": covered, "reference_claims": n, "coverage": covered / n, **kw}


def test_verdict_not_in_corpus():
    v = verdict({"a": 1}, [lost("a", "not_in_corpus")], set(), None)
    assert v["verdict"] == "not_in_corpus" and v["uncertain"] == []
    v = verdict({"a": 1}, [lost("a", "not_in_corpus", uncertain="why")], set(), None)
    assert v["verdict"] == "not_in_corpus" and v["uncertain"] == ["why"]


def test_verdict_retrieval_miss_names_stages_in_pipeline_order():
    v = verdict({"a": 1, "b": 1}, [lost("a", "below_cut"), lost("b", "failed_to_ingest")], set(), None)
    assert v == {"verdict": "retrieval_miss", "detail": "failed_to_ingest/below_cut", "uncertain": []}


def test_verdict_wrong_passage_is_a_retrieval_miss_even_with_generation():
    v = verdict({"a": 1}, [lost("a", "wrong_passage")], set(), gen())
    assert v["verdict"] == "retrieval_miss" and v["detail"] == "wrong_passage"


def test_verdict_partial_retrieval_goes_on_to_generation():
    v = verdict({"a": 1, "b": 1}, [lost("b", "below_cut")], {"a"}, None)
    assert v["verdict"] == "retrieved"


def test_verdict_retrieved_unanswerable_without_generation():
    assert verdict({}, [], set(), None)["verdict"] == "retrieved"


def test_verdict_generation_error_vs_internal_error():
    v = verdict({"a": 1}, [], {"a"}, gen(error={"code": "llm_timeout", "message": "slow"}))
    assert v["verdict"] == "generation_error" and v["detail"] == "llm_timeout"
    v = verdict({"a": 1}, [], {"a"}, gen(error={"code": "internal_error", "message": "KeyError: 'title'"}))
    assert v["verdict"] == "internal_error" and "KeyError" in v["detail"]


def test_verdict_unanswerable():
    assert verdict({}, [], set(), gen(declined=True, claims=[]))["verdict"] == "correctly_declined"
    v = verdict({}, [], set(), gen(claims=[claim("Made up.", supported=False)]))
    assert v["verdict"] == "should_have_declined" and v["uncertain"] == []
    v = verdict({}, [], set(), gen())  # every claim supported: maybe the label is wrong; say so
    assert v["verdict"] == "should_have_declined" and "golden set should list" in v["uncertain"][0]


def test_verdict_declined_with_the_source_in_hand():
    v = verdict({"a": 1}, [], {"a"}, gen(declined=True, claims=[]))
    assert v["verdict"] == "retrieved_but_not_used"


def test_verdict_unsupported_claims_by_the_offline_judge():
    g = gen(claims=[claim("Right."), claim("Invented 1889.", supported=False)])
    v = verdict({"a": 1}, [], {"a"}, g)
    assert v["verdict"] == "unsupported_claims" and "Invented 1889" in v["detail"]


def test_verdict_configured_judge_decides_unsupported_claims():
    g = gen(claims=[claim("Invented.", supported=False)], judge_unsupported=[], correctness=correct())
    assert verdict({"a": 1}, [], {"a"}, g)["verdict"] == "answered_well"
    g = gen(claims=[claim("Fine.")], judge_unsupported=[{"claim": "judge: 0.50 faithful"}])
    v = verdict({"a": 1}, [], {"a"}, g)
    assert v["verdict"] == "unsupported_claims" and "0.50" in v["detail"]


def test_verdict_uncertain_claims_are_reported():
    g = gen(claims=[claim("Borderline claim.", uncertain=True)], correctness=correct())
    v = verdict({"a": 1}, [], {"a"}, g)
    assert v["verdict"] == "answered_well" and "near the judge's threshold" in v["uncertain"][0]


def test_verdict_unlabelled_source():
    g = gen(cited_docs=["b"], claims=[claim("From b.", doc="b")], correctness=correct())
    v = verdict({"a": 1}, [], {"a"}, g)
    assert v["verdict"] == "unlabelled_source" and "b" in v["detail"] and v["uncertain"] == []
    g = gen(cited_docs=["b"], claims=[claim("From b.", doc="b")])  # no reference: uncertain, said so
    v = verdict({"a": 1}, [], {"a"}, g)
    assert v["verdict"] == "unlabelled_source" and "no reference answer" in v["uncertain"][0]


def test_verdict_ignored_source():
    g = gen(cited_docs=["b"], claims=[claim("From b.", doc="b")], correctness=correct(False, 0, 1))
    assert verdict({"a": 1}, [], {"a"}, g)["verdict"] == "retrieved_but_not_used"
    g = gen(cited_docs=[], claims=[])
    assert verdict({"a": 1}, [], {"a"}, g)["verdict"] == "retrieved_but_not_used"


def test_verdict_evidence_from_the_expected_source_counts_as_used():
    g = gen(cited_docs=["b"], claims=[claim("From a, cited wrongly.", doc="a")], correctness=correct())
    assert verdict({"a": 1}, [], {"a"}, g)["verdict"] == "answered_well"


def test_verdict_wrong_answer_and_verbose_right_answer():
    g = gen(correctness=correct(False, 1, 2))
    v = verdict({"a": 1}, [], {"a"}, g)
    assert v["verdict"] == "wrong_answer" and "1 of 2" in v["detail"]
    verbose = gen(correctness=correct(True, 1, 1, extra=["An extra true sentence."], token_f1=0.23))
    assert verdict({"a": 1}, [], {"a"}, verbose)["verdict"] == "answered_well"
    unsure = gen(correctness=correct(True, uncertain=["reference claim near the judge's threshold: x"]))
    assert verdict({"a": 1}, [], {"a"}, unsure)["uncertain"]


def test_verdict_answered_well_only_against_a_reference():
    assert verdict({"a": 1}, [], {"a"}, gen(correctness=correct()))["verdict"] == "answered_well"
    v = verdict({"a": 1}, [], {"a"}, gen())  # no reference answer: grounded, correctness not measured
    assert v["verdict"] == "grounded" and "correctness not measured" in v["detail"]


# ---------------------------------------------------------------------------------------------------- summary


def case(v, *stages, uncertain=()):
    return {"verdict": v, "lost": [lost(f"d{i}", s) for i, s in enumerate(stages)], "uncertain": list(uncertain)}


def test_dominant_counts_stages_of_failing_cases_only():
    # Good cases lost many extra sources below the cut; the real misses are not_in_index.
    cases = [case("retrieved", "below_cut", "below_cut") for _ in range(5)]
    cases += [case("retrieval_miss", "not_in_index") for _ in range(3)]
    s = dominant(cases)
    assert s["dominant_failure"] == "retrieval_miss (not_in_index)" and s["lever"] == LEVERS["not_in_index"]
    assert s["where_lost_in_failures"] == {"not_in_index": 3}


def test_dominant_tie_and_none():
    s = dominant([case("wrong_answer"), case("unsupported_claims"), case("answered_well")])
    assert s["dominant_failure"] is None and "no single dominant failure" in s["text"]
    assert dominant([case("answered_well")])["dominant_failure"] is None


def test_dominant_labels_are_not_failures_and_uncertainty_is_said():
    cases = [case("unlabelled_source"), case("unlabelled_source"), case("wrong_answer", uncertain=["x"])]
    s = dominant(cases)
    assert s["dominant_failure"] == "wrong_answer" and "need a label" in s["text"] and s["uncertain_cases"] == 1


# ---------------------------------------------------------------------------------------------- ingest records


def test_ingest_records(tmp_path):
    report = {
        "files": [
            {"path": "/data/kb/a.pdf", "status": "failed", "reason": "PDF is encrypted"},
            {"path": "/data/kb/b.md", "status": "added"},
            {"path": "/data/kb/c.pdf", "status": "failed", "reason": "truncated"},
        ]
    }
    later = {"id": "job1", "report": {"files": [{"path": "/data/kb/c.pdf", "status": "updated"}]}}
    (tmp_path / "jobs").mkdir()
    (tmp_path / "r.json").write_text(json.dumps(report))
    (tmp_path / "jobs" / "job1.json").write_text(json.dumps(later))
    records = load_ingest_records([tmp_path / "r.json", tmp_path / "jobs"])
    failures = failed_files(records)
    assert failures == [("/data/kb/a.pdf", "PDF is encrypted")]
    assert failure_for("kb/a.pdf", failures) == "/data/kb/a.pdf: PDF is encrypted"
    assert failure_for("a.pdf", failures) is not None and failure_for("kb/b.md", failures) is None
    assert failure_for("xkb/a.pdf", failures) is None
    (tmp_path / "bad.json").write_text("[1]")
    with pytest.raises(ValueError):
        load_ingest_records([tmp_path / "bad.json"])
