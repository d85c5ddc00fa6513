"""Experiments: variant files, the paired comparison and its winner, flipped cases, the shared question
vectors, and a generating variant against the wire-level LLM stand-in whose reasoning must not reach the
answer or the citations check."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from core.settings import Settings
from diagnostics.audit.golden import Case, Expected, GoldenSet
from diagnostics.ladder.analysis import analyse, to_markdown, write_experiment
from diagnostics.ladder.experiment import CachingEmbedder, ExperimentRunner
from diagnostics.ladder.variants import Variant, VariantError, load_variant, load_variants
from engine.generation.prompt import SYSTEM, system_prompt
from engine.prompts import ReasoningFilter, builtin_prompts, read_prompt, strip_reasoning
from tests.conftest import ingest_kb
from tests.helpers.llm_standin import StandIn

DOCS = {
    "volcano.md": "Volcanoes erupt molten lava and ash. Magma rises through the crust before an eruption.",
    "tides.md": "Tides are caused by the gravity of the moon pulling on the oceans.",
    "bread.md": "Bread is baked from flour, water, salt and yeast.",
    "chess.md": "Chess is a board game for two players who move sixteen pieces each.",
    "apples.md": "Apples grow in orchards. The Granny Smith apple is green and sour.",
    "brigade.md": "The mountain fire brigade trains every week.",
}
CASES = [
    Case("q1", "What makes the tides?", (Expected("kb/tides.md"),), "The gravity of the moon causes tides."),
    Case("q2", "What is bread made from?", (Expected("kb/bread.md"),), "Flour, water, salt and yeast."),
    Case("q3", "mountain that explodes with fire", (Expected("kb/volcano.md"),), "A volcano erupts lava."),
    Case("q4", "How many players does chess have?", (Expected("kb/chess.md"),), "Two players."),
]


# -- variant files ---------------------------------------------------------------------------------------


def write(tmp_path: Path, name: str, text: str) -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def test_variant_parses_every_section(tmp_path):
    (tmp_path / "shots.jsonl").write_text('{"question": "q", "sources": ["s"], "answer": "a [1]"}\n')
    (tmp_path / "mine.md").write_text("Answer from the sources. Else say {decline}\n")
    p = write(
        tmp_path,
        "full.toml",
        """
name = "full"
description = "everything"
collection = "other"
[retrieval]
mode = "hybrid"
fusion = "rrf"
rrf_k = 60
weights = [1, 1.5]
top_k = 8
candidates = 50
[generation]
generator = "llm"
prompt = "mine.md"
fewshot = "shots.jsonl"
reasoning = true
base_url = "http://127.0.0.1:9/v1"
model = "m"
temperature = 0.2
[judge]
enabled = true
model = "judge-m"
""",
    )
    v = load_variant(p)
    assert v.name == "full" and v.collection == "other" and v.generates
    assert v.retrieval == {
        "mode": "hybrid",
        "fusion": "rrf",
        "rrf_k": 60,
        "weights": [1.0, 1.5],
        "top_k": 8,
        "candidates": 50,
    }
    s = v.settings(Settings(_env_file=None))
    assert s.collection == "other" and s.llm_reasoning is True and s.llm_model == "m" and s.judge_model == "judge-m"
    assert s.fewshot_path == tmp_path / "shots.jsonl" and s.prompt_template == str(tmp_path / "mine.md")
    assert system_prompt(s.prompt_template).endswith("The sources do not contain the answer.")


def test_variant_name_defaults_to_file_and_retrieval_only(tmp_path):
    v = load_variant(write(tmp_path, "dense-top10.toml", "[retrieval]\nmode = 'dense'\ntop_k = 10\n"))
    assert v.name == "dense-top10" and not v.generates and v.judge is None


@pytest.mark.parametrize(
    "text, message",
    [
        ("colour = 'red'\n", "unknown key(s) colour"),
        ("[retrieval]\nmode = 'fuzzy'\n", "retrieval.mode"),
        ("[retrieval]\nweights = [1]\n", "retrieval.weights"),
        ("[retrieval]\ntop_k = 0\n", "top_k must be greater than 0"),
        ("[retrieval]\ntop_k = '5'\n", "retrieval.top_k must be a whole number"),
        ("[retrieval]\nrerank = 1\n", "retrieval.rerank must be true or false"),
        ("[retrieval]\ntopk = 5\n", "unknown key(s) in [retrieval]: topk"),
        ("[generation]\nprompt = 'no-such-prompt'\n", "generation.prompt"),
        ("[generation]\nfewshot = 'missing.jsonl'\n", "generation.fewshot"),
        ("[generation]\ngenerator = 'gpt'\n", "generation.generator"),
        ("retrieval = 3\n", "[retrieval] must be a table"),
        ("[retrieval\n", "not valid TOML"),
    ],
)
def test_variant_errors_name_the_key(tmp_path, text, message):
    with pytest.raises(VariantError) as exc:
        load_variant(write(tmp_path, "bad.toml", text))
    assert message in str(exc.value) and "bad.toml" in str(exc.value)


def test_variants_need_two_distinct_names(tmp_path):
    a = write(tmp_path, "a.toml", "name = 'same'\n")
    b = write(tmp_path, "b.toml", "name = 'same'\n")
    with pytest.raises(VariantError, match="at least two"):
        load_variants([a])
    with pytest.raises(VariantError, match="same named twice"):
        load_variants([a, b])


def test_shipped_example_variants_parse():
    root = Path(__file__).resolve().parents[2] / "examples" / "variants"
    variants = [load_variant(p) for p in sorted(root.glob("*.toml"))]
    assert len(variants) >= 3 and len({v.name for v in variants}) == len(variants)


def test_builtin_prompt_is_a_file_and_is_what_the_service_sends():
    assert {"default", "strict", "reasoning"} <= set(builtin_prompts())
    assert SYSTEM == read_prompt("default").replace("{decline}", "The sources do not contain the answer.")
    assert system_prompt(reasoning=True).startswith(SYSTEM) and "<reasoning>" in system_prompt(reasoning=True)


# -- paired comparison, winners and flips, on hand-made reports ------------------------------------------


def report(name: str, ndcg: list[float], verdicts: list[str]) -> dict:
    cases = [
        {"id": f"c{i}", "question": f"question {i}", "metrics": {"ndcg@10": v}, "span": {}, "verdict": verdicts[i]}
        for i, v in enumerate(ndcg)
    ]
    mean = sum(ndcg) / len(ndcg)
    return {
        "variant": Variant(name).describe(),
        "settings": {},
        "cases": cases,
        "overall": {"ndcg@10": {"mean": mean, "ci95": [mean, mean], "n": len(ndcg)}},
        "verdicts": {v: verdicts.count(v) for v in set(verdicts)},
        "seconds": 0.1,
    }


N = 40
BASE = [0.5] * N
GOODV = ["retrieved"] * N


def test_a_clearly_better_variant_wins_and_flips_are_listed():
    better = [0.9] * N
    verdicts = ["retrieval_miss"] + GOODV[1:]
    res = analyse([report("base", BASE, verdicts), report("better", better, GOODV), report("same", BASE, GOODV)])
    assert res["winners"]["ndcg@10"]["winner"] == "better"
    c = res["comparisons"]["better"]["ndcg@10"]
    assert c["label"] == "improved" and c["delta"] == pytest.approx(0.4) and c["ci95"][0] > 0
    assert res["comparisons"]["same"]["ndcg@10"]["label"] == "inconclusive"
    assert res["flipped"]["better"] == [
        {
            "id": "c0",
            "baseline": "retrieval_miss",
            "current": "retrieved",
            "direction": "fixed",
            "question": "question 0",
        }
    ]
    md = to_markdown(res)
    assert "| ndcg@10 | 0.5000 | 0.9000 (+0.4000" in md and "| better |" in md and "1 fixed" in md


def test_noise_is_inconclusive():
    noisy = [0.5 + (0.3 if i % 2 else -0.3) for i in range(N)]  # mean equal, large spread
    res = analyse([report("base", BASE, GOODV), report("noisy", noisy, GOODV)])
    assert res["winners"]["ndcg@10"] == {
        "winner": None,
        "verdict": "inconclusive",
        "reason": "no paired 95% interval excludes 0",
    }


def test_baseline_wins_when_every_other_is_worse_and_two_equal_winners_are_inconclusive():
    worse = [0.1] * N
    res = analyse([report("base", BASE, GOODV), report("w1", worse, GOODV), report("w2", worse, GOODV)])
    assert res["winners"]["ndcg@10"]["winner"] == "base"
    better = [0.9] * N
    res = analyse(
        [report("base", BASE, GOODV), report("b1", better, GOODV), report("b2", copy.deepcopy(better), GOODV)]
    )
    assert res["winners"]["ndcg@10"]["verdict"] == "inconclusive" and "b1 and b2" in res["winners"]["ndcg@10"]["reason"]


# -- reasoning stays out of the answer --------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw, answer",
    [
        ("<reasoning>Source [3] is off topic.</reasoning>\n\nThe moon causes tides [1].", "The moon causes tides [1]."),
        ("<think>maybe [4]</think>Two players [1].", "Two players [1]."),
        ("chat template opened it [2]</think>\nTwo players [1].", "Two players [1]."),
        ("<reasoning>never closed [5]", ""),
        ("No reasoning here [1].", "No reasoning here [1]."),
    ],
)
def test_strip_reasoning(raw, answer):
    assert strip_reasoning(raw) == answer


def test_streamed_reasoning_is_held_back_even_when_tags_are_split():
    f = ReasoningFilter()
    pieces = ["<rea", "soning>Source [3", "] says</reas", "oning>\n", "The moon ", "causes tides [1", "]."]
    assert "".join(f.feed(p) for p in pieces) + f.finish() == "The moon causes tides [1]."


# -- on a real store, with the real model ----------------------------------------------------------------


@pytest.fixture(scope="module")
def kb(tmp_path_factory, embedder):
    settings, store = ingest_kb(tmp_path_factory.mktemp("experiment"), DOCS, embedder)
    yield settings, store
    store.close()


def test_retrieval_variants_share_one_embedding_of_the_questions(kb, embedder, tmp_path):
    settings, store = kb
    runner = ExperimentRunner(settings, store, embedder)
    variants = [
        Variant("sparse", retrieval={"mode": "sparse"}),
        Variant("dense", retrieval={"mode": "dense"}),
        Variant("hybrid-top1", retrieval={"mode": "hybrid", "top_k": 1}),
    ]
    result, reports = runner.run(GoldenSet(CASES), variants, ks=(1, 3))
    assert [v["name"] for v in result["variants"]] == ["sparse", "dense", "hybrid-top1"]
    # Each question embedded once, for every variant (sparse needs none, dense and hybrid reuse it).
    assert result["embedding_cache"]["all-MiniLM-L6-v2"]["computed"] == len(CASES)
    assert {r["settings"]["mode"] for r in reports} == {"sparse", "dense", "hybrid"}
    # The indirect question: BM25 has no term in common with the volcano page, dense finds it.
    by = {r["variant"]["name"]: {c["id"]: c for c in r["cases"]} for r in reports}
    assert by["sparse"]["q3"]["verdict"] == "retrieval_miss" and by["dense"]["q3"]["verdict"] == "retrieved"
    assert {
        "id": "q3",
        "baseline": "retrieval_miss",
        "current": "retrieved",
        "direction": "fixed",
        "question": CASES[2].question,
    } in result["flipped"]["dense"]
    paths = write_experiment(result, reports, tmp_path / "exp")
    assert paths["md"].read_text().startswith("Experiment: 3 variants on 4 cases")
    assert (tmp_path / "exp" / "variants" / "dense" / "report.json").exists()


def test_cache_returns_the_models_vectors(embedder):
    cache = CachingEmbedder(embedder)
    a = cache.encode(["tides and the moon", "bread"])
    b = cache.encode(["bread", "tides and the moon"])
    assert cache.computed == 2 and cache.reused == 2
    assert (a[0] == b[1]).all() and abs(float(a[0] @ embedder.encode(["tides and the moon"])[0]) - 1) < 1e-5


def test_llm_variant_with_reasoning_generates_without_leaking_it(kb, embedder, tmp_path):
    settings, store = kb
    llm = StandIn()
    llm.answer = "<reasoning>Source [7] is about chess, [1] about tides.</reasoning>\nThe moon causes the tides [1]."
    try:
        (tmp_path / "r.toml").write_text(
            f"name = 'llm-reasoning'\n[generation]\nbase_url = '{llm.url}'\nmodel = 'standin'\nreasoning = true\n"
            "prompt = 'strict'\n"
        )
        (tmp_path / "x.toml").write_text("name = 'extractive'\n[generation]\ngenerator = 'extractive'\n")
        variants = load_variants([tmp_path / "x.toml", tmp_path / "r.toml"])
        result, reports = ExperimentRunner(settings, store, embedder).run(GoldenSet(CASES[:1]), variants, ks=(1,))
    finally:
        llm.close()
    gen = reports[1]["cases"][0]["generation"]
    assert gen["answer"] == "The moon causes the tides [1]."
    assert gen["invalid_citations"] == [] and gen["cited"] == [1]  # [7] in the reasoning is not a citation
    assert reports[1]["settings"]["generator"] == "openai-compatible:standin"
    assert reports[0]["settings"]["generator"] == "extractive"
    system = llm.requests[0]["messages"][0]["content"]
    assert system == system_prompt("strict", reasoning=True)
    assert "faithfulness" in result["comparisons"]["llm-reasoning"]


def test_streamed_answer_from_the_endpoint_has_no_reasoning():
    from engine.generation.llm import LLMGenerator

    llm = StandIn()
    llm.answer = "<reasoning>Source [2] is about bread.</reasoning> The moon causes the tides [1]."
    try:
        gen = LLMGenerator(Settings(llm_base_url=llm.url, llm_reasoning=True, _env_file=None))
        streamed = "".join(gen.stream("What causes tides?", [("t", "The moon causes tides.")]))
        whole = gen.generate("What causes tides?", [("t", "The moon causes tides.")])
    finally:
        llm.close()
    assert streamed.strip() == whole == "The moon causes the tides [1]."
    assert llm.requests[0]["messages"][0]["content"] == system_prompt(reasoning=True)


@pytest.mark.llm
def test_two_prompts_against_a_real_llm(kb, embedder, tmp_path, llama_server):
    """Two prompt variants through llama.cpp's server (SmolLM2-135M): both generate, every answer is judged
    and its citations checked, and the comparison covers generation. Whether a prompt wins on 4 cases is
    not asserted: with a 135M model and 4 cases it should be, and is, inconclusive."""
    settings, store = kb
    for name, prompt in (("default", "default"), ("strict", "strict")):
        write(
            tmp_path,
            f"{name}.toml",
            f"name = '{name}'\n[generation]\nbase_url = '{llama_server}'\nmodel = 'smollm2'\nprompt = '{prompt}'\n",
        )
    variants = load_variants([tmp_path / "default.toml", tmp_path / "strict.toml"])
    result, reports = ExperimentRunner(settings, store, embedder).run(GoldenSet(CASES), variants, ks=(1, 3))
    for report in reports:
        assert report["settings"]["generator"] == "openai-compatible:smollm2"
        gens = [c["generation"] for c in report["cases"]]
        assert all(g["error"] is None and (g["answer"] or g["declined"]) for g in gens), gens
        assert all(set(g["cited"]) <= {1, 2, 3, 4, 5} for g in gens)  # checked against the 5 sources shown
    comparison = result["comparisons"]["strict"]
    assert "faithfulness" in comparison  # measured on the cases both answered (None when none were)
    print(to_markdown(result, ["ndcg@3", "faithfulness"]))


def test_experiments_rewrite_conversations_like_the_audit(kb, embedder):
    """A conversation turn is searched as the service and `rag audit` search it (the same rewrite stage)."""
    from diagnostics.audit.run import Auditor
    from engine.engine import Engine
    from engine.rewrite import Turn

    settings, store = kb
    turn = Case(
        "c1",
        "How many players does it have?",
        (Expected("kb/chess.md"),),
        history=(Turn("user", "Tell me about chess, the board game."), Turn("assistant", "It is a game.")),
    )
    _, reports = ExperimentRunner(settings, store, embedder).run(GoldenSet([turn]), [Variant("base")], ks=(1,))
    engine = Engine.build(settings, store)
    audited = Auditor(engine.answerer, store).run(GoldenSet([turn]), settings.collection, engine.params(), (1,))
    ran = reports[0]["cases"][0]
    assert "rewrite" in ran and ran["rewrite"]["query"] == audited["cases"][0]["rewrite"]["query"]
    assert [r["doc_id"] for r in ran["retrieved"]] == [r["doc_id"] for r in audited["cases"][0]["retrieved"]]
