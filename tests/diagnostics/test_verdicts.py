"""The rules around retrieval on hand-built inputs (issue 17): labels checked against the stored document,
the generator's share, levers that name only knobs the configuration has, correctness that sees the asked
fact, declines that are declines. No model, no store: milliseconds."""

from __future__ import annotations

import pytest

from diagnostics.audit.correctness import correctness, key_facts, missing_facts, polarity_doubts
from diagnostics.audit.golden import Expected
from diagnostics.audit.labels import Chunk, closest_passage, duplicate_sources, holding, similar_id, stale_reason
from diagnostics.audit.levers import LEVERS, Config, lever
from diagnostics.audit.verdicts import case_lever, dominant, lever_stage, verdict
from diagnostics.judges.base import ClaimSupport, Judge, agreement_text, judge_card, trusted
from engine.answer import is_decline

EXTRACTIVE = Config(generator="extractive")
LLM_NO_RERANKER = Config(generator="llm", fusion="rrf")
RERANKING = Config(generator="llm", rerank=True, reranker=True, window=30)
CONFIGURED_OFF = Config(generator="llm", reranker=True)


def claim(text, supported=True, doc="a"):
    return {"claim": text, "supported": supported, "doc_id": doc, "uncertain": False}


def gen(**kw):
    base = dict(answer="x", declined=False, error=None, cited_docs=["a"], claims=[claim("Fact one is here.")])
    return {**base, **kw}


def correct(ok=True, covered=1, n=1, **kw):
    return {"correct": ok, "covered": covered, "reference_claims": n, "coverage": covered / n, **kw}


HEURISTIC = judge_card("offline-embedding-lexical-v1", {"qags_cnndm": {"balanced_accuracy": 0.529}})
GOOD_JUDGE = judge_card("trained", {"qags_cnndm": {"balanced_accuracy": 0.78}, "scifact": {"balanced_accuracy": 0.8}})


# ------------------------------------------------------------------------------------------------ labels


CHUNKS = [
    Chunk("c1", "Ingest parses each file. A corrupt file fails alone with a reason.", 0, 66),
    Chunk("c2", "A golden set lists real questions. Each names the documents it expects.", 60, 130),
]


def test_a_quote_is_found_in_its_chunk_or_across_a_boundary():
    assert holding(Expected("d", quote="A CORRUPT  file fails alone"), CHUNKS) == {"c1"}
    assert holding(Expected("d", quote="with a reason. A golden set lists"), CHUNKS) == {"c1", "c2"}
    assert holding(Expected("d", span=(70, 90)), CHUNKS) == {"c2"}
    assert holding(Expected("d", quote="not there at all"), CHUNKS) == set()


def test_a_stale_quote_names_the_closest_sentence():
    reason = stale_reason(Expected("d", quote="A golden set is a file of real questions"), CHUNKS)
    assert "not in the document" in reason and "A golden set lists real questions." in reason
    assert "holds 62% of its words" in reason
    assert stale_reason(Expected("d", quote="corrupt file fails alone"), CHUNKS) is None
    assert "beyond the document's end" in stale_reason(Expected("d", span=(100, 400)), CHUNKS)
    sentence, sim = closest_passage("Each names the documents", CHUNKS)
    assert sentence.startswith("Each names") and 0.5 < sim <= 1


def test_unknown_ids_and_duplicate_sources():
    assert similar_id("docs/evaluaton.md", {"docs/evaluation.md", "docs/overview.md"}) == "docs/evaluation.md"
    assert similar_id("papers/x.pdf", {"docs/evaluation.md"}) is None
    dup = duplicate_sources([Expected("a", grade=3), Expected("a", grade=1), Expected("b"), Expected("b")])
    assert dup == ["a is listed with grades [1, 3]"]


def test_a_stale_label_is_the_golden_sets_failure_not_retrievals():
    lost = [{"doc_id": "docs/evaluation.md", "stage": "stale_label", "reason": "the quote 'x' is not in it"}]
    v = verdict({"docs/evaluation.md": 1}, lost, set(), gen())
    assert v["verdict"] == "bad_label" and "not in it" in v["detail"]
    cases = [{"verdict": "bad_label", "lost": lost, "uncertain": []}, {"verdict": "answered_well", "lost": []}]
    s = dominant(cases)
    assert s["dominant_failure"] is None and "golden-set fix" in s["text"]
    assert case_lever(cases[0]) == LEVERS["bad_label"]


# ------------------------------------------------------------------------------------------------ generation


def test_a_shown_passage_unused_within_a_used_document_is_the_generators():
    """Seen: 'Which file formats can be ingested?' answered from another passage of the right document."""
    g = gen(cited=[2], claims=[{**claim("Ids are paths."), "source": 2}])
    v = verdict({"a": 1}, [], {"a"}, g, passages_shown={"a": [1]})
    assert v["verdict"] == "retrieved_but_not_used" and "context [1]" in v["detail"] and "[2]" in v["detail"]
    # drawing on the passage, or covering the reference from elsewhere, is a use
    g = gen(cited=[1], claims=[{**claim("Formats."), "source": 1}], correctness=correct())
    assert verdict({"a": 1}, [], {"a"}, g, passages_shown={"a": [1]})["verdict"] == "answered_well"
    g = gen(cited=[2], claims=[{**claim("Formats."), "source": 2}], correctness=correct())
    assert verdict({"a": 1}, [], {"a"}, g, passages_shown={"a": [1]})["verdict"] == "answered_well"


def test_the_shown_passage_unused_is_the_generators():
    g = gen(cited_docs=["b"], claims=[claim("From b.", doc="b")])
    v = verdict({"a": 1}, [], {"a"}, g, passages_shown={"a": [2]})
    assert v["verdict"] == "retrieved_but_not_used" and "context [2]" in v["detail"] and "from b" in v["detail"]
    # without a quote the golden set does not name the passage: a missing label is as likely
    assert verdict({"a": 1}, [], {"a"}, g)["verdict"] == "unlabelled_source"
    v = verdict({"a": 1}, [], {"a"}, gen(declined=True, claims=[]), passages_shown={"a": [1]})
    assert v["verdict"] == "retrieved_but_not_used" and "context [1]" in v["detail"]


def test_an_untrusted_judge_marks_its_verdicts_uncertain():
    v = verdict({"a": 1}, [], {"a"}, gen(correctness=correct(False, 0, 1), judge_card=HEURISTIC))
    assert v["verdict"] == "wrong_answer" and any("0.529 on qags_cnndm" in u for u in v["uncertain"])
    g = gen(claims=[claim("Raises it.", supported=False)], judge_card=HEURISTIC)
    v = verdict({"a": 1}, [], {"a"}, g)
    assert v["verdict"] == "unsupported_claims" and any("cannot reliably tell" in u for u in v["uncertain"])
    v = verdict({"a": 1}, [], {"a"}, gen(correctness=correct(False, 0, 1), judge_card=GOOD_JUDGE))
    assert v["verdict"] == "wrong_answer" and v["uncertain"] == []
    # a good verdict is not doubted for the judge alone
    assert verdict({"a": 1}, [], {"a"}, gen(correctness=correct(), judge_card=HEURISTIC))["uncertain"] == []


def test_judge_trust_needs_measured_agreement_everywhere():
    assert not trusted({}) and not trusted(None)
    assert not trusted({"a": {"balanced_accuracy": 0.9}, "b": {"balanced_accuracy": 0.6}})
    assert trusted({"a": {"balanced_accuracy": 0.75}})
    assert "never measured" in agreement_text({})


def test_correctness_sees_the_asked_fact():
    assert missing_facts("The service embeds with a small model [1].", "The default is all-MiniLM-L6-v2.") == [
        "all-MiniLM-L6-v2"
    ]
    assert missing_facts("It uses all-minilm-l6-v2.", "The default is all-MiniLM-L6-v2.") == []
    assert missing_facts("It is 1,083 feet tall.", "It is 330 metres tall.") == ["330"]
    assert missing_facts("Founded in 1,889.", "Founded in 1889.") == []
    assert "Qdrant" in key_facts("Vectors live in Qdrant, version 1.16.")
    # a code-like token is stated when its digit-bearing parts are (a paraphrase of its suffix is no miss)
    assert missing_facts("Migration is CX3CR1-caused.", "Migration is CX3CR1-induced.") == []


class EveryClaimSupported(Judge):
    """A stand-in judge that supports everything: what a similarity judge does with near paraphrases."""

    name, threshold = "yes-man", 0.5

    def score_claims(self, claims, contexts):
        return [ClaimSupport(c, 0.9, True, 1, contexts[0]) for c in claims]


def test_a_covering_answer_without_the_key_fact_is_wrong():
    c = correctness(
        EveryClaimSupported(),
        "The default embedding model is small and fast [1].",
        "The default embedding model is all-MiniLM-L6-v2.",
    )
    assert not c["correct"] and c["missing_facts"] == ["all-MiniLM-L6-v2"]
    v = verdict({"a": 1}, [], {"a"}, gen(correctness=c))
    assert v["verdict"] == "wrong_answer" and "never states: all-MiniLM-L6-v2" in v["detail"]


@pytest.mark.parametrize(
    "answer, reference, doubt",
    [
        ("It was linked to increased mortality.", "It was linked to reduced mortality.", "possible contradiction"),
        ("It is unclear whether it lowers the risk.", "It lowers the risk of heart attack.", "hedges"),
        ("It lowers the risk of heart attack.", "It reduces the chance of a myocardial infarction.", None),
        ("The drug does not inhibit the receptor.", "The drug inhibits the receptor.", "negation on one side"),
    ],
)
def test_polarity_and_hedges_are_doubted(answer, reference, doubt):
    doubts = polarity_doubts(answer, reference)
    assert (doubt is None and doubts == []) or any(doubt in d for d in doubts)


def test_declined_is_a_decline_not_a_substring():
    assert is_decline("The sources do not contain the answer.")
    assert is_decline("The sources do not contain the answer [2].")
    assert not is_decline("The sources do not contain the answer. It was founded in 1889 by Gustave Eiffel.")
    assert not is_decline("Paris is the capital [1].")


# ------------------------------------------------------------------------------------------------ levers


def test_levers_name_only_knobs_the_configuration_has():
    assert "add a reranker" in lever("below_cut", LLM_NO_RERANKER) and "none is configured" in lever(
        "below_cut", LLM_NO_RERANKER
    )
    assert "add a reranker" not in lever("below_cut", RERANKING) and "rerank_candidates, now 30" in lever(
        "below_cut", RERANKING
    )
    assert "turn the configured reranker on" in lever("below_cut", CONFIGURED_OFF)
    assert "reranker" not in lever("wrong_passage", RERANKING)
    # RRF's knobs only under RRF
    assert "rrf_k" in lever("dropped_by_fusion", LLM_NO_RERANKER)
    assert "has no weights" in lever("dropped_by_fusion", Config(fusion="dbsf"))
    # the extractive generator has no prompt
    for key in ("retrieved_but_not_used", "should_have_declined", "wrong_answer", "unsupported_claims"):
        assert "prompt" not in lever(key, EXTRACTIVE).replace("no prompt", ""), key
    assert "RAG_LLM_BASE_URL" in lever("wrong_answer", EXTRACTIVE)
    assert "prompt" in lever("wrong_answer", LLM_NO_RERANKER)
    assert lever("wrong_answer") == LEVERS["wrong_answer"]  # no configuration: the generic text


def test_config_from_a_reports_settings():
    c = Config.from_settings(
        {"mode": "hybrid", "fusion": "rrf", "cut": 3, "rerank": False, "generator": "extractive", "reranker": None}
    )
    assert c == Config("hybrid", "rrf", 3, False, False, None, "extractive")


def test_the_retrieval_lever_counts_only_retrieval_misses():
    cases = [
        {"verdict": "wrong_answer", "lost": [{"stage": "below_cut"}] * 3},
        {"verdict": "retrieval_miss", "lost": [{"stage": "not_in_any_candidates"}]},
        {"verdict": "answered_well", "lost": [{"stage": "below_cut"}]},
    ]
    assert lever_stage(cases) == {"not_in_any_candidates": 1}


# ------------------------------------------------------------------------------------------------ comparisons


def _report(generate: bool, verdicts: dict[str, str], ndcg: float = 1.0, judge="h") -> dict:
    cases = [
        {
            "id": i,
            "question": f"q {i}",
            "expected": [{"doc_id": "a"}],
            "verdict": v,
            "metrics": {"ndcg@10": ndcg},
            "span": {},
        }
        for i, v in verdicts.items()
    ]
    settings = {"generate": generate, "faithfulness_scorer": judge if generate else None, "ks": [10], "mode": "hybrid"}
    return {"settings": settings, "cases": cases, "overall": {"ndcg@10": {}}}


def test_a_retrieval_only_audit_does_not_compare_verdicts_with_a_generating_one():
    from diagnostics.audit.compare import compare

    c = compare(_report(False, {"q1": "retrieved"}), _report(True, {"q1": "wrong_answer"}))
    assert c["flipped"] == [] and not c["verdicts_comparable"] and "generate False vs True" in c["not_comparable"]
    assert {d["setting"] for d in c["differences"]} == {"generate", "faithfulness_scorer"}


def test_no_change_when_every_paired_delta_is_zero():
    from diagnostics.audit.compare import compare

    c = compare(_report(True, {"q1": "answered_well"}), _report(True, {"q1": "answered_well"}))
    assert c["no_change"] and c["differences"] == [] and c["verdicts_comparable"]
    c = compare(_report(True, {"q1": "answered_well"}, 0.5), _report(True, {"q1": "answered_well"}))
    assert not c["no_change"]
    other = _report(True, {"q2": "answered_well"})
    assert compare(_report(True, {"q1": "answered_well"}), other)["differences"][-1]["setting"] == "golden_set"
