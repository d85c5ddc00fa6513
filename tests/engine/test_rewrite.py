"""The rewrite stage (engine/rewrite.py) on a real slice of MTRAG in a real Qdrant Edge store with the real model:
a follow-up that needs the previous turn gets it, a change of subject is searched as it is, rewriting off
searches the last turn alone; and the LLM rewrite falls back to the offline one when the endpoint errors,
times out or answers nonsense (a wire-level stand-in)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from core.settings import Settings
from core.store import open_store
from diagnostics.metrics import dedupe
from engine.engine import Engine
from engine.rewrite import LLMRewriter, OfflineRewriter, Turn, clean_condensed, condense_messages
from ingest.pipeline import Ingestor
from tests.conftest import SHARED, params, write_corpus

MTRAG = SHARED / "mtrag_conv"

# A follow-up (MTRAG 5f07a39c...<::>3): "When did it take place?" alone finds another competition; with the
# previous user turn it finds the one passage judged relevant.
FOLLOW_UP = {
    "history": [Turn("user", "Was the competition only about drama?"), Turn("assistant", "No, it also had music.")],
    "question": "When did it take place?",
    "relevant": "837276776_5495-6381-0-886",
}
# A change of subject inside a conversation (MTRAG 6d5958e4...<::>2, multi_turn N/A): joining ruins it.
SWITCH = {
    "history": [Turn("user", "How do I get to the Rocky Pond Mountains from my location?")],
    "question": "Tell me something about the Demography of the city of California.",
    "relevant": "a44b35108fdd6f71-3030-3742",
}
# Those two relevant passages and the passages either way of asking ranks near them in the full corpus.
SLICE = """137bcc1fc50c7c4c-2-2083 227562-0-1232 285fe3dbf58502a3-2894-4972 351d62c973f5a12e-2-2050
36b7136502b2dd4e-1511-3485 41168a49b304126a-9796-12013 4ca4f6c354dd369d-45569-47579 56df24d8b0785408-2-2170
5c71e6545742ee6d-13584-15653 5c71e6545742ee6d-15163-17271 62964e3a38783558-23004-25068 72c7fac84f54ad1e-2-1991
78d445a57a406361-2-2260 792d6c04fa5e52e8-11124-13055 79594f3dadc4e72c-1435-2562 7d4d64e7f6aff125-3194-5132
800606077_2642-3345-0-699 819151867_17461-18060-0-597 821378931_12872-14017-0-1145 827511898_5035-5553-0-518
834324633_34077-35207-0-1130 834494107_17127-18103-0-976 834494107_18311-18603-0-292 837276776_10268-10676-0-406
837276776_5495-6381-0-886 837276776_7652-8353-0-700 843539824_24681-31248-5453-6564 846499272_66983-67197-0-214
850581185_1481-2154-0-673 852859365_1626-2287-0-661 931b40532cbc7ee0-1806-3526 996844e4b20e6000-1292-2971
996844e4b20e6000-2-1706 a44b35108fdd6f71-3030-3742 a9f98ebeeb44016b-2964-4953 c8db6e06ff46669e-50302-52227
d3feb09e0ecafbac-1751-3461 e1fb7e359e42d556-13332-15599 fe8c82cdf4a51f27-3063-5393 fe8c82cdf4a51f27-4768-6684
ibmcld_02872-7-1746""".split()


def mtrag_slice(path: Path, ids: list[str] = SLICE) -> Path:
    """The named MTRAG passages as a BEIR corpus.jsonl (made at run time; the data stay in ../shared)."""
    if not (MTRAG / "corpus.jsonl").exists():
        pytest.skip(f"MTRAG not found at {MTRAG}")
    wanted, rows = set(ids), []
    for line in open(MTRAG / "corpus.jsonl"):
        row = json.loads(line)
        if row["_id"] in wanted:
            rows.append(row)
    assert len(rows) == len(wanted)
    return write_corpus(path, rows)


@pytest.fixture(scope="module")
def engine(tmp_path_factory, embedder):
    tmp = tmp_path_factory.mktemp("rewrite")
    settings = Settings(data_dir=tmp / "data", collection="mtrag", _env_file=None)
    with open_store(settings) as store:
        Ingestor(settings, store, embedder).run([mtrag_slice(tmp / "corpus.jsonl")], "mtrag")
    eng = Engine.build(settings)
    yield eng
    eng.close()


def top_docs(result, n: int = 5) -> list[str]:
    return dedupe([c.doc_id for c in result.retrieval.contexts])[:n]


def test_follow_up_is_joined_to_the_previous_turn_and_finds_its_passage(engine):
    p = params(top_k=20)
    off = engine.answerer.ask("mtrag", FOLLOW_UP["question"], p, False, FOLLOW_UP["history"], rewrite=False)
    on = engine.answerer.ask("mtrag", FOLLOW_UP["question"], p, False, FOLLOW_UP["history"])
    assert off.rewrite.method == "off" and off.rewrite.query == FOLLOW_UP["question"]
    assert FOLLOW_UP["relevant"] not in top_docs(off)
    rw = on.rewrite
    assert rw.method == "offline" and not rw.standalone and rw.history_turns == 1
    assert rw.query == "Was the competition only about drama? When did it take place?"
    assert rw.signals["terms"] < 6 and rw.signals["dense_joined"] > rw.signals["dense_question"]
    assert FOLLOW_UP["relevant"] in top_docs(on)
    assert on.question == FOLLOW_UP["question"] and "rewrite" in on.timings_ms


def test_change_of_subject_is_searched_as_it_is(engine):
    p = params(top_k=20)
    result = engine.answerer.ask("mtrag", SWITCH["question"], p, False, SWITCH["history"])
    rw = result.rewrite
    assert rw.standalone and rw.query == SWITCH["question"] and "change of subject" in rw.reason
    assert rw.signals["dense_question"] > rw.signals["dense_joined"]
    assert SWITCH["relevant"] in top_docs(result)
    joined = engine.answerer.ask("mtrag", f"{SWITCH['history'][0].text} {SWITCH['question']}", p, False)
    assert SWITCH["relevant"] not in top_docs(joined)  # what always joining would have done


def test_no_history_no_rewrite_and_long_questions_stand_alone(engine):
    p = params()
    assert engine.answerer.ask("mtrag", "When did it take place?", p, False).rewrite is None
    rw = engine.answerer.rewrite(
        "mtrag",
        "What is the Jewish population of the country according to the latest national census figures?",
        [Turn("user", "when were cahokia and chaco canyon abandoned")],
        p,
    )
    assert rw.standalone and rw.signals == {"terms": rw.signals["terms"]} and rw.signals["terms"] >= 6
    only_assistant = engine.answerer.rewrite("mtrag", "And then?", [Turn("assistant", "Hello!")], p)
    assert only_assistant.method == "none" and only_assistant.query == "And then?"


def test_offline_decision_follows_its_settings(engine):
    calls = []

    def probe(collection, texts, filters):
        calls.append(list(texts))
        return [0.50, 0.49]

    history = [Turn("user", "How do I renew a passport?")]
    strict = OfflineRewriter(engine.bm25, probe, standalone_terms=6, dense_margin=0.0)
    assert strict.rewrite("c", "How long?", history, params()).standalone  # joined is worse by 0.01
    lenient = OfflineRewriter(engine.bm25, probe, standalone_terms=6, dense_margin=-0.03)
    assert lenient.rewrite("c", "How long?", history, params()).query == "How do I renew a passport? How long?"
    assert calls == [["How long?", "How do I renew a passport? How long?"]] * 2
    short_enough = OfflineRewriter(engine.bm25, probe, standalone_terms=2)
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
def llm_rewriter(engine, standin):
    settings = engine.settings.model_copy(
        update={"llm_base_url": standin.url, "llm_model": "stand-in", "rewrite_llm_timeout_s": 0.5}
    )
    offline = OfflineRewriter.from_settings(settings, engine.bm25, engine.answerer.rewriter.probe)
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
