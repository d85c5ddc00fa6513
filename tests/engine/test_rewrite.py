"""The rewrite stage (engine/rewrite.py) on a real slice of MTRAG in a real Qdrant Edge store with the real model:
a follow-up that needs the previous turn gets it, a change of subject is searched as it is, rewriting off
searches the last turn alone; and the LLM rewrite falls back to the offline one when the endpoint errors,
times out or answers nonsense (a wire-level stand-in)."""

from __future__ import annotations

import time

import pytest

from diagnostics.metrics import dedupe
from engine.rewrite import LLMRewriter, OfflineRewriter, Turn, clean_condensed, condense_messages
from tests.conftest import params
from tests.helpers.mtrag import FOLLOW_UP, SWITCH


def top_docs(result, n: int = 5) -> list[str]:
    return dedupe([c.doc_id for c in result.retrieval.contexts])[:n]


def test_follow_up_is_joined_to_the_previous_turn_and_finds_its_passage(mtrag_engine):
    p = params(top_k=20)
    off = mtrag_engine.answerer.ask("mtrag", FOLLOW_UP["question"], p, False, FOLLOW_UP["history"], rewrite=False)
    on = mtrag_engine.answerer.ask("mtrag", FOLLOW_UP["question"], p, False, FOLLOW_UP["history"])
    assert off.rewrite.method == "off" and off.rewrite.query == FOLLOW_UP["question"]
    assert FOLLOW_UP["relevant"] not in top_docs(off)
    rw = on.rewrite
    assert rw.method == "offline" and not rw.standalone and rw.history_turns == 1
    assert rw.query == "Was the competition only about drama? When did it take place?"
    assert rw.signals["terms"] < 6 and rw.signals["dense_joined"] > rw.signals["dense_question"]
    assert FOLLOW_UP["relevant"] in top_docs(on)
    assert on.question == FOLLOW_UP["question"] and "rewrite" in on.timings_ms


def test_change_of_subject_is_searched_as_it_is(mtrag_engine):
    p = params(top_k=20)
    result = mtrag_engine.answerer.ask("mtrag", SWITCH["question"], p, False, SWITCH["history"])
    rw = result.rewrite
    assert rw.standalone and rw.query == SWITCH["question"] and "change of subject" in rw.reason
    assert rw.signals["dense_question"] > rw.signals["dense_joined"]
    assert SWITCH["relevant"] in top_docs(result)
    joined = mtrag_engine.answerer.ask("mtrag", f"{SWITCH['history'][0].text} {SWITCH['question']}", p, False)
    assert SWITCH["relevant"] not in top_docs(joined)  # what always joining would have done


def test_no_history_no_rewrite_and_long_questions_stand_alone(mtrag_engine):
    p = params()
    assert mtrag_engine.answerer.ask("mtrag", "When did it take place?", p, False).rewrite is None
    rw = mtrag_engine.answerer.rewrite(
        "mtrag",
        "What is the Jewish population of the country according to the latest national census figures?",
        [Turn("user", "when were cahokia and chaco canyon abandoned")],
        p,
    )
    assert rw.standalone and rw.signals == {"terms": rw.signals["terms"]} and rw.signals["terms"] >= 6
    only_assistant = mtrag_engine.answerer.rewrite("mtrag", "And then?", [Turn("assistant", "Hello!")], p)
    assert only_assistant.method == "none" and only_assistant.query == "And then?"


def test_offline_decision_follows_its_settings(mtrag_engine):
    calls = []

    def probe(collection, texts, filters):
        calls.append(list(texts))
        return [0.50, 0.49]

    history = [Turn("user", "How do I renew a passport?")]
    strict = OfflineRewriter(mtrag_engine.bm25, probe, standalone_terms=6, dense_margin=0.0)
    assert strict.rewrite("c", "How long?", history, params()).standalone  # joined is worse by 0.01
    lenient = OfflineRewriter(mtrag_engine.bm25, probe, standalone_terms=6, dense_margin=-0.03)
    assert lenient.rewrite("c", "How long?", history, params()).query == "How do I renew a passport? How long?"
    assert calls == [["How long?", "How do I renew a passport? How long?"]] * 2
    short_enough = OfflineRewriter(mtrag_engine.bm25, probe, standalone_terms=2)
    assert short_enough.rewrite("c", "passport renewal fees", history, params()).standalone
    assert len(calls) == 2  # a question that stands alone costs no probe


def test_clean_condensed_and_prompt():
    assert clean_condensed('Standalone question: "When was the drama competition held?"\nmore', 100) == (
        "When was the drama competition held?"
    )
    assert clean_condensed("<think>hmm</think>\nWhen?", 100) == "When?"
    msgs = condense_messages("When?", [Turn("system", "x"), Turn("user", "Was it about drama?")])
    assert msgs[0]["role"] == "system" and "User: Was it about drama?" in msgs[1]["content"]
    assert "x" not in msgs[1]["content"].split("<conversation>")[1].split("</conversation>")[0]


@pytest.fixture
def llm_rewriter(mtrag_engine, standin):
    settings = mtrag_engine.settings.model_copy(
        update={"llm_base_url": standin.url, "llm_model": "stand-in", "rewrite_llm_timeout_s": 0.5}
    )
    offline = OfflineRewriter.from_settings(settings, mtrag_engine.bm25, mtrag_engine.answerer.rewriter.probe)
    return LLMRewriter(settings, offline)


def test_llm_rewrite_condenses(llm_rewriter, standin):
    standin.mode, standin.answer = "ok", "When did the drama competition take place?"
    rw = llm_rewriter.rewrite("mtrag", FOLLOW_UP["question"], FOLLOW_UP["history"], params())
    assert rw.method == "llm" and rw.query == standin.answer and not rw.standalone and rw.fallback is None
    sent = standin.requests[-1]
    assert sent["model"] == "stand-in" and "Last question: When did it take place?" in sent["messages"][-1]["content"]
    standin.answer = FOLLOW_UP["question"]
    assert llm_rewriter.rewrite("mtrag", FOLLOW_UP["question"], FOLLOW_UP["history"], params()).standalone


@pytest.mark.parametrize(
    "mode, code", [("500", "llm_error"), ("slow", "llm_timeout"), ("malformed", "llm_bad_response")]
)
def test_llm_rewrite_falls_back_to_offline(llm_rewriter, standin, mode, code):
    standin.mode = mode
    t0 = time.monotonic()
    rw = llm_rewriter.rewrite("mtrag", FOLLOW_UP["question"], FOLLOW_UP["history"], params())
    assert time.monotonic() - t0 < 2.5  # the short timeout holds (the stand-in sleeps 3 s), no retries
    assert rw.fallback["code"] == code and rw.method == "offline"
    assert rw.query == "Was the competition only about drama? When did it take place?"
    assert rw.reason.startswith(f"LLM rewrite failed ({code})")


def test_llm_rewrite_empty_answer_falls_back(llm_rewriter, standin):
    standin.mode, standin.answer = "ok", "  \n "
    rw = llm_rewriter.rewrite("mtrag", FOLLOW_UP["question"], FOLLOW_UP["history"], params())
    assert rw.fallback["code"] == "llm_bad_response" and rw.method == "offline"
