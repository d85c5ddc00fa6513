"""The audit on a real store with the real model: each where-lost stage produced by a fault injected on
purpose, and verdicts for generators that are right, answer from nothing, or contradict their sources."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.sparse import Bm25Encoder
from diagnostics.audit.golden import Case, Expected, GoldenSet
from diagnostics.audit.run import GOOD, Auditor
from diagnostics.judges.heuristic import FaithfulnessScorer
from engine.answer import Answerer
from engine.generation.extractive import ExtractiveGenerator
from engine.retrieval import Retriever
from ingest.pipeline import Ingestor
from tests.conftest import ingest_kb, params

DOCS = {
    "volcano.md": "Volcanoes erupt molten lava and ash.",
    "trail.md": "The mountain trail is steep and rocky.",
    "kitchen.md": "Fire safety rules for kitchens and restaurants.",
    "brigade.md": "The mountain fire brigade trains every week.",
    "apples.md": "Apples grow in orchards. The Granny Smith apple is green and sour.",
    "bread.md": "Bread is baked from flour, water, salt and yeast.",
    "tides.md": "Tides are caused by the gravity of the moon.",
    "chess.md": "Chess is a board game for two players.",
}
# Semantically about volcanoes, without a single term in common with volcano.md.
INDIRECT = "mountain that explodes with fire"


class Scripted:
    """A generator stand-in, named as such, that gives a fixed answer: to test verdicts, not models."""

    def __init__(self, name: str, answer: str):
        self.name, self.answer = name, answer

    def generate(self, question, sources):
        return self.answer

    def stream(self, question, sources):
        yield self.answer


class LastReranker:
    """A reranker stand-in that ranks passages mentioning volcanoes last."""

    name = "stand-in:last"

    def score(self, question, passages):
        return [-1.0 if "Volcano" in p else 1.0 for p in passages]


@pytest.fixture(scope="module")
def env(tmp_path_factory, embedder):
    settings, store = ingest_kb(tmp_path_factory.mktemp("audit"), DOCS, embedder)
    bm25 = Bm25Encoder.from_settings(settings)
    retriever = Retriever(store, embedder, bm25)
    yield store, retriever, FaithfulnessScorer(embedder, bm25), ExtractiveGenerator(embedder, bm25)
    store.close()


def audit(env, cases, params, generator=None, generate=False, corpus=None):
    store, retriever, scorer, extractive = env
    answerer = Answerer(retriever, generator or extractive)
    return Auditor(answerer, store, scorer).run(GoldenSet(cases), "kb", params, (1, 3), generate, corpus)


def case(q, *docs, answer=None):
    return Case(q[:10], q, tuple(Expected(d) for d in docs), answer)


def lost_stage(report):
    [c] = report["cases"]
    [item] = c["lost"]
    return item["stage"], c["verdict"]


def test_not_in_corpus(env):
    r = audit(env, [case("volcano eruption", "kb/etna.md")], params(top_k=3, candidates=8))
    assert lost_stage(r) == ("not_in_corpus", "not_in_corpus")


def test_not_in_index(env):
    store = env[0]
    store.delete_where("kb", {"doc_id": "kb/chess.md"})
    r = audit(
        env,
        [case("board game for two players", "kb/chess.md")],
        params(top_k=3, candidates=8),
        corpus={f"kb/{n}" for n in DOCS},
    )
    assert lost_stage(r) == ("not_in_index", "retrieval_miss")
    assert r["summary"]["dominant_failure"] == "retrieval_miss (not_in_index)"


def test_not_in_sparse_candidates(env):
    r = audit(env, [case(INDIRECT, "kb/volcano.md")], params(mode="sparse", top_k=3, candidates=8))
    assert lost_stage(r) == ("not_in_sparse_candidates", "retrieval_miss")


def test_not_in_dense_candidates(env):
    r = audit(env, [case("green sour apples in orchards", "kb/tides.md")], params(mode="dense", top_k=1, candidates=2))
    assert lost_stage(r) == ("not_in_dense_candidates", "retrieval_miss")


def test_not_in_any_candidates(env):
    r = audit(env, [case("green sour apples in orchards", "kb/tides.md")], params(top_k=1, candidates=2))
    assert lost_stage(r) == ("not_in_any_candidates", "retrieval_miss")


def test_dropped_by_fusion(env):
    # Only dense finds volcano.md; with the dense weight near 0 and 3 fused slots, the three keyword
    # matches fill them.
    p = params(top_k=3, candidates=3, fusion="rrf", weights=(1.0, 0.001))
    r = audit(env, [case(INDIRECT, "kb/volcano.md")], p)
    stage, verdict = lost_stage(r)
    assert (stage, verdict) == ("dropped_by_fusion", "retrieval_miss")
    ranks = r["cases"][0]["lost"][0]["ranks"]
    assert ranks["dense"] is not None and ranks["sparse"] is None and ranks["fused"] is None


def test_dropped_by_reranker(env):
    _, retriever, _, _ = env
    retriever.reranker = LastReranker()
    try:
        r = audit(
            env,
            [case("volcanoes erupt lava", "kb/volcano.md")],
            params(top_k=1, candidates=8, rerank=True, rerank_candidates=8),
        )
    finally:
        retriever.reranker = None
    assert lost_stage(r) == ("dropped_by_reranker", "retrieval_miss")


def test_below_cut(env):
    r = audit(env, [case("volcanoes erupt lava", "kb/trail.md")], params(top_k=1, candidates=8))
    stage, _ = lost_stage(r)
    assert stage == "below_cut" and r["cases"][0]["lost"][0]["ranks"]["fused"] > 1


P = params(top_k=2, candidates=8)


def test_right_generator_answers_well(env):
    gen = Scripted("stand-in:right", "Volcanoes erupt molten lava and ash [1].")
    r = audit(env, [case("What do volcanoes erupt?", "kb/volcano.md", answer="molten lava and ash")], P, gen, True)
    c = r["cases"][0]
    assert c["verdict"] == "answered_well", c["verdict_detail"]
    assert c["generation"]["faithfulness"] == 1.0 and c["generation"]["correctness"]["correct"]


def test_generator_answering_from_nothing(env):
    gen = Scripted("stand-in:nothing", "The Eiffel Tower was completed in 1889 by Gustave Eiffel [1].")
    r = audit(env, [case("What do volcanoes erupt?", "kb/volcano.md")], P, gen, True)
    c = r["cases"][0]
    assert c["verdict"] == "unsupported_claims"
    claim = c["generation"]["claims"][0]
    assert not claim["supported"] and claim["missing_numbers"] == ["1889"] and "Eiffel" in claim["missing_names"]
    assert r["summary"]["lever"].startswith("fix the prompt")


def test_generator_contradicting_its_sources(env):
    gen = Scripted("stand-in:contradict", "Volcanoes never erupt lava or ash [1].")
    r = audit(env, [case("What do volcanoes erupt?", "kb/volcano.md")], P, gen, True)
    c = r["cases"][0]
    assert c["verdict"] == "unsupported_claims" and c["generation"]["claims"][0]["negation_mismatch"]


def test_unanswerable_cases(env):
    declining = audit(env, [case("What is the price of the enterprise licence?")], P, None, True)
    assert declining["cases"][0]["verdict"] == "correctly_declined"
    eager = Scripted("stand-in:eager", "Apples grow in orchards [1].")
    r = audit(env, [case("What is the price of the enterprise licence?")], P, eager, True)
    assert r["cases"][0]["verdict"] == "should_have_declined"


def test_retrieved_but_not_used(env):
    gen = Scripted("stand-in:decliner", "The sources do not contain the answer.")
    r = audit(env, [case("What do volcanoes erupt?", "kb/volcano.md")], P, gen, True)
    assert r["cases"][0]["verdict"] == "retrieved_but_not_used"


def test_report_files(env, tmp_path):
    from diagnostics.audit.compare import compare
    from diagnostics.audit.report import write_reports

    cases = [
        case("What do volcanoes erupt?", "kb/volcano.md"),
        case("Where do apples grow?", "kb/apples.md"),
        case(INDIRECT, "kb/volcano.md"),
    ]
    base = audit(env, cases, params(mode="sparse", top_k=2, candidates=8))
    cur = audit(env, cases, params(mode="dense", top_k=2, candidates=8))
    cur["comparison"] = compare(cur, base)
    flipped = {f["id"]: f["direction"] for f in cur["comparison"]["flipped"]}
    assert flipped == {INDIRECT[:10]: "fixed"}
    assert cur["comparison"]["metrics"]["recall@3"]["label"] == "inconclusive"  # 3 cases show nothing
    paths = write_reports(cur, tmp_path)
    assert Path(paths["json"]).exists() and "## Against the baseline" in Path(paths["md"]).read_text()
    html = Path(paths["html"]).read_text()
    assert html.count("<svg") == 3 and "recall-curve" in html


def test_html_report_renders_plots_in_headless_chromium(env, tmp_path):
    """Open report.html in a real headless browser (Playwright driving Debian's chromium): each plot's colours
    are drawn, the failing cases come first as cards with where lost, the stage ranks and the lever, and at
    phone width (390 px) nothing scrolls sideways."""
    import shutil

    from PIL import Image

    from diagnostics.audit.report import write_reports

    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip("chromium is not installed (.ci/run installs it)")
    from playwright.sync_api import sync_playwright

    cases = [
        case("What do volcanoes erupt?", "kb/volcano.md"),
        case(INDIRECT, "kb/volcano.md"),
        case("Where do apples grow?", "kb/apples.md"),
    ]
    report = audit(env, cases, params(mode="sparse", top_k=1, candidates=8))
    bad = [c for c in report["cases"] if c["verdict"] not in GOOD]
    assert bad, "the sparse audit at a cut of 1 must miss the indirect question"
    html = write_reports(report, tmp_path)["html"]
    md = (tmp_path / "report.md").read_text()
    assert md.index("## Failing cases") < md.index("## Overall") and "Lever (where to act)" in md
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=browser, args=["--no-sandbox", "--disable-gpu"])
        try:
            page = b.new_page(viewport={"width": 1280, "height": 900})
            page.goto(html.as_uri())
            shot = tmp_path / "shot.png"
            page.screenshot(path=str(shot), full_page=True)
            cards = page.locator("section.card")
            assert cards.count() == len(bad)
            first = cards.first.inner_text()
            assert "Where lost" in first and "Lever (where to act)" in first and "sparse" in first
            phone = b.new_page(viewport={"width": 390, "height": 844})
            phone.goto(html.as_uri())
            phone.screenshot(path=str(tmp_path / "phone.png"), full_page=True)
            assert phone.evaluate("document.documentElement.scrollWidth") <= 390
        finally:
            b.close()
    pixels = set(Image.open(shot).convert("RGB").getdata())
    for name, rgb in {
        "recall curve": (0x4E, 0x79, 0xA7),
        "where-lost bars": (0xE1, 0x57, 0x59),
        "verdict bars": (0x59, 0xA1, 0x4F),
    }.items():
        assert rgb in pixels, f"the {name} did not render"


def test_ragas_judge_caches_and_reports_unmeasured(env, tmp_path):
    """ragas's LLM-judged metrics through an OpenAI-compatible endpoint (the wire-level stand-in, which
    returns schema-valid JSON): values parsed, cached so a rerun makes no judge call, and cases the judge
    cannot score reported as unmeasured with a reason, never as NaN."""
    from core.settings import Settings
    from diagnostics.judges.ragas_metrics import RagasJudge
    from tests.helpers.llm_standin import StandIn

    standin = StandIn()
    try:
        settings = Settings(
            _env_file=None, judge_base_url=standin.url, judge_model="judge", llm_max_retries=0, llm_timeout_s=5
        )
        cases = [
            case("What do volcanoes erupt?", "kb/volcano.md", answer="molten lava and ash"),
            case("Where do apples grow?", "kb/apples.md"),
        ]
        judge = RagasJudge(settings, tmp_path / "cache.jsonl")
        store, retriever, scorer, extractive = env
        run = lambda j: Auditor(Answerer(retriever, extractive), store, scorer, j).run(  # noqa: E731
            GoldenSet(cases), "kb", P, (1, 3), True
        )
        first = run(judge)
        assert first["overall"]["judge_faithfulness"]["n"] == 2
        assert first["overall"]["judge_context_recall"] == {"mean": 1.0, "ci95": [1.0, 1.0], "n": 1, "unmeasured": 1}
        assert first["judge_unmeasured"]["context_recall"][0]["reason"] == "no reference answer in the golden set"
        calls = judge.calls
        assert calls >= 4 and len(standin.requests) >= calls

        again = RagasJudge(settings, tmp_path / "cache.jsonl")  # a new process would read the same cache
        second = run(again)
        assert again.calls == 0 and second["overall"]["judge_faithfulness"] == first["overall"]["judge_faithfulness"]

        standin.mode = "500"
        failing = RagasJudge(settings, tmp_path / "other-cache.jsonl")
        broken = run(failing)
        assert broken["overall"]["judge_faithfulness"]["mean"] is None
        assert broken["overall"]["judge_faithfulness"]["unmeasured"] == 2
        assert "judge failed" in broken["judge_unmeasured"]["faithfulness"][0]["reason"]
    finally:
        standin.close()


def test_overall_metrics_when_the_first_case_is_unanswerable(env):
    r = audit(
        env, [case("What is the price of the enterprise licence?"), case("Where do apples grow?", "kb/apples.md")], P
    )
    assert r["overall"]["recall@1"]["n"] == 1 and r["overall"]["recall@1"]["mean"] == 1.0


# ---- issue 9: attribution that is right (end to end on the real store; the rules' branches are in
# test_attribution.py)


class Raising:
    """A generator stand-in that raises: `exc` decides whether it plays a prompt bug or an endpoint failure."""

    def __init__(self, name, exc):
        self.name, self.exc = name, exc

    def generate(self, question, sources):
        raise self.exc

    def stream(self, question, sources):
        raise self.exc


class CountingLastReranker(LastReranker):
    name = "stand-in:last-counting"

    def __init__(self):
        self.windows = []

    def score(self, question, passages):
        self.windows.append(len(passages))
        return super().score(question, passages)


def test_verbose_right_answer_is_answered_well(env):
    gen = Scripted(
        "stand-in:verbose",
        "Volcanoes erupt molten lava and ash [1]. Lava and ash come out of a volcano when it erupts [1].",
    )
    r = audit(env, [case("What do volcanoes erupt?", "kb/volcano.md", answer="Volcanoes erupt lava.")], P, gen, True)
    c = r["cases"][0]
    assert c["verdict"] == "answered_well", c["verdict_detail"]
    corr = c["generation"]["correctness"]
    assert corr["correct"] and corr["coverage"] == 1.0 and corr["token_f1"] < 0.5


def test_prompt_bug_is_internal_error_not_the_endpoint(env):
    from engine.generation.llm import GenerationError

    bug = Raising("stand-in:prompt-bug", KeyError("title"))
    r = audit(env, [case("What do volcanoes erupt?", "kb/volcano.md")], P, bug, True)
    c = r["cases"][0]
    assert c["verdict"] == "internal_error" and "KeyError" in c["verdict_detail"]
    assert r["summary"]["lever"].startswith("fix the service")
    down = Raising("stand-in:endpoint-down", GenerationError("llm_timeout", "slow"))
    r = audit(env, [case("What do volcanoes erupt?", "kb/volcano.md")], P, down, True)
    assert r["cases"][0]["verdict"] == "generation_error" and r["summary"]["lever"].startswith("fix the LLM endpoint")


def test_audit_reranks_the_services_window(env):
    _, retriever, _, _ = env
    retriever.reranker = CountingLastReranker()
    try:
        r = audit(
            env,
            [case("volcanoes erupt lava", "kb/volcano.md")],
            params(top_k=1, candidates=8, rerank=True, rerank_candidates=4),
        )
        windows = retriever.reranker.windows
    finally:
        retriever.reranker = None
    assert windows == [4]  # the service's window, not the candidates
    assert lost_stage(r) == ("dropped_by_reranker", "retrieval_miss")
    assert r["settings"]["reranker"] == "stand-in:last-counting" and r["settings"]["rerank_candidates"] == 4


def test_failed_to_ingest_with_the_reason(env, tmp_path, embedder):
    from core.settings import Settings

    store = env[0]
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "etna.pdf").write_bytes(b"%PDF-1.4 truncated")
    report = Ingestor(Settings(data_dir=tmp_path / "unused", _env_file=None), store, embedder).run([broken], "kb")
    r = audit(env, [case("volcano eruption", "broken/etna.pdf")], params(top_k=3, candidates=8))
    assert lost_stage(r) == ("not_in_corpus", "not_in_corpus") and r["cases"][0]["uncertain"]
    store_, retriever, scorer, extractive = env
    r = Auditor(Answerer(retriever, extractive), store_, scorer).run(
        GoldenSet([case("volcano eruption", "broken/etna.pdf")]),
        "kb",
        params(top_k=3, candidates=8),
        (1, 3),
        ingest_records=[report.to_dict()],
    )
    item = r["cases"][0]["lost"][0]
    assert item["stage"] == "failed_to_ingest" and "etna.pdf" in item["reason"]
    assert r["summary"]["dominant_failure"] == "retrieval_miss (failed_to_ingest)"


def test_right_document_wrong_passage(env, tmp_path, embedder):
    from core.settings import Settings

    store, retriever, scorer, extractive = env
    long = tmp_path / "long"
    long.mkdir()
    (long / "guide.md").write_text(
        "# Volcanoes\n\nVolcanoes erupt molten lava and ash.\n\n# Baking\n\nBread is baked from flour and yeast.\n"
    )
    Ingestor(Settings(data_dir=tmp_path / "unused", _env_file=None), store, embedder).run([long], "long")
    wrong = Case("wp", "What do volcanoes erupt?", (Expected("long/guide.md", quote="baked from flour"),))
    right = Case("rp", "What do volcanoes erupt?", (Expected("long/guide.md", quote="molten lava"),))
    r = Auditor(Answerer(retriever, extractive), store, scorer).run(
        GoldenSet([wrong, right]), "long", params(top_k=1, candidates=4), (1, 3), True
    )
    by_id = {c["id"]: c for c in r["cases"]}
    assert by_id["wp"]["verdict"] == "retrieval_miss" and by_id["wp"]["lost"][0]["stage"] == "wrong_passage"
    assert by_id["rp"]["verdict"] == "grounded" and by_id["rp"]["lost"] == []  # no reference: correctness unmeasured
    assert r["summary"]["lever"].startswith("fix passage ranking")
    # the heuristic judge cannot tell entailment: the report says so and gives the command for a better one
    assert (
        "rag judge train -c long" in r["summary"]["text"]
        and not r["settings"]["unsupported_claims_decided_by"]["trusted"]
    )
