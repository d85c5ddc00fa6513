"""Fine-tuning data: chat examples whose prompts are exactly what the service sends, validated against the
published chat format; behaviour failures picked by default; retriever pairs with hard negatives from the
audit; and one real (tiny) contrastive training step."""

from __future__ import annotations

import json
import re

import pytest

from core.sparse import Bm25Encoder
from diagnostics.audit.golden import Case, Expected, GoldenSet
from diagnostics.audit.run import Auditor
from diagnostics.ladder.chat_format import validate_chat_jsonl
from diagnostics.ladder.finetune import behaviour_failure, chat_examples, write_jsonl
from diagnostics.ladder.pairs import retriever_pairs, validate_pairs_jsonl
from diagnostics.ladder.tune_embeddings import batches, split_golden, train
from engine.answer import Answerer, sources_of
from engine.generation.extractive import ExtractiveGenerator
from engine.generation.prompt import DECLINE, SYSTEM, user_message
from engine.retrieval import Retriever
from tests.conftest import ingest_kb, params

DOCS = {
    "tides.md": "Tides are caused by the gravity of the moon pulling on the oceans. Spring tides follow a full moon.",
    "bread.md": "Bread is baked from flour, water, salt and yeast. Sourdough uses a wild starter.",
    "chess.md": "Chess is a board game for two players who move sixteen pieces each.",
    "apples.md": "Apples grow in orchards. The Granny Smith apple is green and sour.",
    "volcano.md": "Volcanoes erupt molten lava and ash.",
}
CASES = [
    Case("t", "What causes tides?", (Expected("kb/tides.md"),), "The gravity of the moon causes tides."),
    Case("b", "What is bread made from?", (Expected("kb/bread.md"),), "Flour, water, salt and yeast. Also a starter."),
    Case("c", "How many players play chess?", (Expected("kb/chess.md"),), "Two players [9]."),
    Case("n", "Who won the 1998 World Cup?", ()),  # unanswerable: the completion declines
    Case("x", "What colour is a Granny Smith?", (Expected("kb/apples.md"),)),  # no reference answer
]


@pytest.fixture(scope="module")
def kb(tmp_path_factory, embedder):
    settings, store = ingest_kb(tmp_path_factory.mktemp("finetune"), DOCS, embedder)
    retriever = Retriever(store, embedder, Bm25Encoder.from_settings(settings))
    yield settings, store, retriever
    store.close()


def test_chat_export_is_what_the_service_sends_and_validates(kb, tmp_path):
    settings, store, retriever = kb
    p = params(top_k=3)
    examples, skipped = chat_examples(GoldenSet(CASES), retriever, settings, "kb", p, include_all=True)
    assert {s["id"]: s["reason"] for s in skipped} == {"x": "no reference answer in the golden set"}
    path = tmp_path / "ft.jsonl"
    assert write_jsonl(examples, path) == 4
    lines = path.read_text().splitlines()
    assert len(lines) == 4  # one example a line
    rows = [json.loads(line) for line in lines]
    assert all(set(r) == {"messages"} for r in rows)  # bookkeeping keys are not written
    for case, row in zip([c for c in CASES if c.id != "x"], rows):
        msgs = row["messages"]
        assert [m["role"] for m in msgs] == ["system", "user", "assistant"]
        contexts = retriever.retrieve("kb", case.question, p).contexts
        assert msgs[0]["content"] == SYSTEM  # exactly the built-in prompt file
        assert msgs[1]["content"] == user_message(case.question, sources_of(contexts))
        numbers = [i for i, c in enumerate(contexts, 1) if c.doc_id in case.relevance]
        if case.relevance:
            # Every sentence of the reference is cited, to a source holding an expected document.
            cited = [int(n) for n in re.findall(r"\[(\d+)\]", msgs[2]["content"])]
            assert cited and set(cited) <= set(numbers)
            assert msgs[2]["content"].count("[") == msgs[2]["content"].count(".")
        else:
            assert msgs[2]["content"] == DECLINE
    assert "[9]" not in rows[2]["messages"][2]["content"]  # the reference's own numbering is replaced
    v = validate_chat_jsonl(path)
    assert v["ok"] and v["examples"] == 4 and v["format_errors"] == {}
    assert v["tokens"]["min"] > 50 and v["tokens"]["total"] >= 4 * v["tokens"]["min"]
    assert v["warnings"] == ["4 examples: OpenAI requires at least 10"]


def test_validator_catches_format_errors(tmp_path):
    good = {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a [1]"}]}
    bad = [
        {"messages": [{"role": "robot", "content": "q"}, {"role": "assistant", "content": "a"}]},
        {"messages": [{"role": "user", "content": "q"}]},
        {"messages": [{"role": "user", "content": 3}, {"role": "assistant", "content": "a"}]},
        {"messages": []},
        {"prompt": "q", "completion": "a"},
        {"messages": [{"role": "user", "content": "q", "weight": 1}, {"role": "assistant", "content": "a"}]},
    ]
    path = tmp_path / "mixed.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in [good] * 20 + bad) + "not json\n")
    v = validate_chat_jsonl(path, count=lambda t: len(t.split()), tokenizer="words")
    assert not v["ok"]
    assert v["format_errors"]["unrecognized_role"] == [21] and v["format_errors"]["invalid_json"] == [27]
    assert v["format_errors"]["invalid_weight"] == [26] and v["format_errors"]["missing_messages_list"] == [24, 25]
    path.write_text("".join(json.dumps(good) + "\n" for _ in range(20)))
    v = validate_chat_jsonl(path, count=lambda t: len(t.split()), tokenizer="words")
    assert v["ok"] and v["warnings"] == ["20 examples: 50-100 are recommended for a clear improvement"]
    assert v["tokens"]["max"] == 3 + (3 + 1) + (3 + 2)  # the cookbook's count: 3 per message, 3 for the reply


def test_behaviour_failures_are_picked_and_knowledge_failures_are_not(kb):
    settings, store, retriever = kb
    audited = {
        "t": {"verdict": "unsupported_claims", "generation": {"answer": "x [1]", "cited": [1]}},
        "b": {"verdict": "retrieval_miss"},
        "c": {"verdict": "answered_well", "generation": {"answer": "Two players.", "cited": [], "declined": False}},
        "n": {"verdict": "should_have_declined", "generation": {"answer": "France [1]", "cited": [1]}},
        "x": {"verdict": "wrong_answer"},
    }
    assert behaviour_failure(audited["c"]) == "format: an answer without citations"
    examples, skipped = chat_examples(GoldenSet(CASES), retriever, settings, "kb", params(top_k=3), audited)
    assert sorted(e["_case"] for e in examples) == ["c", "n", "t"]
    reasons = {s["id"]: s["reason"] for s in skipped}
    assert reasons == {"b": "knowledge failure (retrieval_miss)", "x": "knowledge failure (wrong_answer)"}


def test_pairs_take_hard_negatives_from_the_audit(kb, embedder, tmp_path):
    settings, store, retriever = kb
    gold = GoldenSet(CASES)
    answerer = Answerer(retriever, ExtractiveGenerator(embedder, retriever.bm25))
    report = Auditor(answerer, store).run(gold, "kb", params(top_k=4), (1, 3))
    rows, skipped = retriever_pairs(gold, report, store, "kb", negatives=2)
    assert sorted(r["id"] for r in rows) == ["b", "c", "t", "x"] and [s["id"] for s in skipped] == ["n"]
    for r in rows:
        assert DOCS[r["positive_doc"].split("/")[1]] in r["positive"]
        assert len(r["negatives"]) == 2 and r["positive_doc"] not in r["negative_docs"]
        audited = next(c for c in report["cases"] if c["id"] == r["id"])
        others = [x["doc_id"] for x in audited["retrieved"] if x["doc_id"] != r["positive_doc"]]
        assert r["negative_docs"] == sorted(others[:2])  # the best-ranked other documents
    path = tmp_path / "pairs.jsonl"
    write_jsonl(rows, path)
    assert validate_pairs_jsonl(path) == {"ok": True, "pairs": 4, "errors": {}}


def test_batches_never_repeat_a_question_or_positive():
    rows = [{"question": f"q{i % 3}", "positive": f"p{i % 4}", "negatives": ["n"]} for i in range(24)]
    out = batches(rows, 8)
    assert sum(len(b) for b in out) == 24
    for b in out:
        assert len({r["question"] for r in b}) == len(b) and len({r["positive"] for r in b}) == len(b)


def test_split_is_stable_and_disjoint():
    gold = GoldenSet([Case(str(i), f"q{i}", ()) for i in range(200)])
    train_set, held = split_golden(gold, 0.25)
    again, held2 = split_golden(gold, 0.25)
    assert [c.id for c in held.cases] == [c.id for c in held2.cases]
    assert not {c.id for c in train_set.cases} & {c.id for c in held.cases}
    assert 30 < len(held.cases) < 70


def test_one_contrastive_step_trains_and_saves_a_loadable_model(tmp_path, embedder):
    rows = [
        {"question": "What causes tides?", "positive": DOCS["tides.md"], "negatives": [DOCS["bread.md"]]},
        {"question": "What is bread made from?", "positive": DOCS["bread.md"], "negatives": [DOCS["chess.md"]]},
        {"question": "How many chess players?", "positive": DOCS["chess.md"], "negatives": [DOCS["apples.md"]]},
    ]
    stats = train("all-MiniLM-L6-v2", rows, tmp_path / "m", batch_size=3, lr=1e-4, max_seq_length=64)
    assert stats["steps"] == 1 and stats["finite"] and stats["pairs"] == 3
    from sentence_transformers import SentenceTransformer

    tuned = SentenceTransformer(str(tmp_path / "m"), device="cpu")
    assert tuned.max_seq_length == embedder.max_seq_length  # training truncation is not saved
    v = tuned.encode(["What causes tides?"], normalize_embeddings=True)
    base = embedder.encode(["What causes tides?"])
    assert v.shape == base.shape and 0.9 < float(v[0] @ base[0]) < 0.99999  # moved, not replaced
