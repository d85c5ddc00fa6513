"""One judge interface chosen by setting; the LLM judge's reply parsing, scoring, evidence, cache and fallback,
against the wire-level stand-in (tests/helpers/llm_standin.py; the real llama.cpp run is
tests/diagnostics/test_llm_judge_real.py)."""

from __future__ import annotations

import math

import pytest

from core.errors import ConfigError
from core.settings import Settings
from core.sparse import Bm25Encoder
from diagnostics.judges.factory import judge_card, make_judge
from diagnostics.judges.heuristic import FaithfulnessScorer
from diagnostics.judges.llm import LLMJudge, parse_reply
from diagnostics.judges.logistic import LearnedFaithfulnessScorer

CONTEXTS = ["The Eiffel Tower was completed in 1889. It stands in Paris.", "Gustave Eiffel's firm built it."]


@pytest.fixture
def settings(tmp_path):
    return Settings(data_dir=tmp_path / "data", _env_file=None)


@pytest.mark.parametrize(
    "reply,parsed",
    [
        ("yes 2", (True, 2)),
        ("Yes, sentence 1.", (True, 1)),
        ("no", (False, None)),
        ("NO 3", (False, 3)),
        ("yes 9", (True, None)),  # there is no sentence 9: no evidence rather than a wrong one
        ("The claim is supported.", (True, None)),
        ("The claim is not supported by the sources", (False, None)),
        ("Maybe.", None),
        ("", None),
    ],
)
def test_parse_reply(reply, parsed):
    assert parse_reply(reply, 3) == parsed


def test_judges_by_setting(settings, embedder):
    bm25 = Bm25Encoder.from_settings(settings)
    assert type(make_judge(settings, embedder, bm25)) is FaithfulnessScorer
    assert isinstance(make_judge(settings, embedder, bm25, "trained"), LearnedFaithfulnessScorer)
    card = judge_card(settings)
    assert card["kind"] == "heuristic" and card["agreement"]["qags_cnndm"]["pairs"] == 714
    for kind in ("model", "llm"):  # no model trained, no endpoint: a clear error naming the setting
        with pytest.raises(ConfigError, match="RAG_JUDGE_"):
            make_judge(settings, embedder, bm25, kind)
        with pytest.raises(ConfigError):
            judge_card(settings.model_copy(update={"faithfulness_judge": kind}))


@pytest.fixture
def llm_judge(settings, standin, embedder):
    standin.mode, standin.top_logprobs, standin.requests[:] = "ok", None, []
    s = settings.model_copy(update={"judge_base_url": standin.url, "judge_model": "m", "llm_timeout_s": 1.0})
    s = s.model_copy(update={"llm_max_retries": 0})
    yield LLMJudge(s, s.data_dir / "cache.jsonl", FaithfulnessScorer(embedder, Bm25Encoder.from_settings(s)))
    standin.mode, standin.top_logprobs, standin.answer = "ok", None, "Cats eat fish [1]. Dogs fly [7]."


def test_llm_judge_names_the_evidence_sentence(llm_judge, standin):
    standin.answer = "yes 3"
    [c] = llm_judge.score_claims(["Eiffel's firm built the tower."], CONTEXTS)
    assert c.supported and c.score == 1.0
    assert c.source == 2 and c.evidence == "Gustave Eiffel's firm built it." and c.judged_by is None
    prompt = standin.requests[-1]["messages"][-1]["content"]
    assert "[1] The Eiffel Tower was completed in 1889." in prompt and "[3] Gustave" in prompt
    standin.answer = "no"
    [c] = llm_judge.score_claims(["The tower is in Rome."], CONTEXTS)
    assert not c.supported and c.score == 0.0 and c.evidence is None


def test_llm_judge_scores_with_log_probabilities(llm_judge, standin):
    standin.answer, standin.top_logprobs = "yes 1", {"yes": math.log(0.6), "No": math.log(0.2), "The": -1.0}
    [c] = llm_judge.score_claims(["The tower was completed in 1889."], CONTEXTS)
    assert c.score == pytest.approx(0.75) and c.supported and c.source == 1
    # A rambling reply still has P(yes) among its first token's alternatives.
    standin.answer, standin.top_logprobs = "The claim, well", {"The": -0.5, "Yes": math.log(0.1), "no": math.log(0.3)}
    [c] = llm_judge.score_claims(["The tower is in Rome."], CONTEXTS)
    assert c.score == pytest.approx(0.25) and not c.supported and c.judged_by is None and c.evidence is None


def test_llm_judge_caches_and_falls_back(llm_judge, standin):
    standin.answer = "yes 1"
    llm_judge.score_claims(["The tower was completed in 1889."], CONTEXTS)
    n = len(standin.requests)
    llm_judge.score_claims(["The tower was completed in 1889."], CONTEXTS)
    assert len(standin.requests) == n  # the cached judgment
    for mode, answer in (("500", "yes 1"), ("ok", "I think it might be so")):
        standin.mode, standin.answer = mode, answer
        [c] = llm_judge.score_claims(["The tower was completed in 1889 in Paris."], CONTEXTS)
        assert c.judged_by.startswith("offline-embedding-lexical-v1 (fallback") and c.supported
        assert c.evidence == "The Eiffel Tower was completed in 1889."
    assert llm_judge.failures == 2
    scored = llm_judge.score_answer("The tower was completed in 1889 in Paris [1].", CONTEXTS)
    assert scored["faithfulness"] == 1.0
