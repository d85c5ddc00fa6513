"""The extractive generator: markers inside quoted sentences are not citations; its cost is bounded; headings
and table rows are never quoted; term coverage is IDF-weighted; the decline threshold is a setting."""

from __future__ import annotations

import numpy as np

from core.settings import Settings
from core.sparse import Bm25Encoder
from engine.generation.citations import check_citations, strip_citation_markers
from engine.generation.extractive import (
    MAX_EMBEDDED,
    MIN_SCORE,
    ExtractiveGenerator,
    candidates,
    compose,
    idf_coverage,
    lexical_preselect,
)
from engine.generation.prompt import DECLINE


def test_markers_inside_a_quoted_sentence_are_not_credited():
    chosen = [
        (1, "Aspirin lowered the risk of stroke [2], as earlier trials showed [3, 4].", 0.9),
        (3, "The effect held in older patients[5][2].", 0.8),
    ]
    answer = compose(chosen)
    assert answer == (
        "Aspirin lowered the risk of stroke, as earlier trials showed. [1] The effect held in older patients. [3]"
    )
    checked = check_citations(answer, n_sources=5)
    assert checked.cited == [1, 3] and checked.invalid == []


def test_strip_citation_markers_leaves_other_brackets():
    assert strip_citation_markers("Levels [n = 12] rose [7] (p < 0.05) [a].") == "Levels [n = 12] rose (p < 0.05) [a]."
    assert compose([]) == DECLINE
    assert compose([(1, "[2]", 0.9)]) == DECLINE  # nothing of our own left to quote


def test_lexical_preselect_is_bounded_and_prefers_shared_terms():
    q = {1, 2, 3}
    sents = [{9: 1}, {1: 1, 9: 2}, {8: 1}, {1: 1, 2: 1, 3: 1}, {7: 1}, {2: 1}, {6: 1}]
    assert lexical_preselect(q, sents, 3) == [1, 3, 5]
    # Fewer matches than places: the earliest other sentences (best-ranked contexts) fill the rest.
    assert lexical_preselect(q, sents, 5) == [0, 1, 2, 3, 5]
    assert lexical_preselect(q, sents[:2], 5) == [0, 1]


class CountingEmbedder:
    """The real embedder, counting the texts it is asked to embed."""

    def __init__(self, inner):
        self.inner, self.texts = inner, 0

    def encode(self, texts):
        self.texts += len(texts)
        return self.inner.encode(texts)

    def encode_query(self, text):
        return self.encode([text])[0]


def test_answer_cost_is_bounded_at_a_large_top_k(embedder):
    bm25 = Bm25Encoder.from_settings(Settings(_env_file=None))
    filler = [
        (f"Report {i}", f"Station {i} logged routine weather for the month. Nothing unusual was seen at site {i}.")
        for i in range(299)
    ]
    answer_src = ("Rover", "The lunar rover drove 35 kilometres across the Moon in three days. It was built in 1971.")
    sources = filler[:150] + [answer_src] + filler[150:]  # 300 sources, ~600 sentences
    counting = CountingEmbedder(embedder)
    gen = ExtractiveGenerator(counting, bm25)
    chosen = gen.select("How far did the lunar rover drive on the Moon?", sources)
    assert counting.texts <= MAX_EMBEDDED + 1
    assert chosen and chosen[0][0] == 151 and "35 kilometres" in chosen[0][1]
    exhaustive = CountingEmbedder(embedder)
    chosen_all = ExtractiveGenerator(exhaustive, bm25, max_embedded=None, max_scanned=None).select(
        "How far did the lunar rover drive on the Moon?", sources
    )
    assert exhaustive.texts > 500 and [c[:2] for c in chosen_all] == [c[:2] for c in chosen]


# Issue 17: which sentences may answer, what they are scored on, when the generator declines.

DOC = """# Configuration

| variable | default | meaning |
|---|---|---|
| `RAG_ROVER_KM` | 35 | how far the lunar rover drove on the Moon |
Settings are read once at start.
## How far did the lunar rover drive on the Moon
The lunar rover drove 35 kilometres across the Moon in three days.
It was built in 1971 by Boeing and General Motors.
"""


def test_table_rows_and_headings_are_never_answer_sentences(embedder):
    heading = "How far did the lunar rover drive on the Moon"
    assert candidates(DOC) == [
        ("Settings are read once at start.", "Configuration"),  # the table row ended the sentence before it
        ("The lunar rover drove 35 kilometres across the Moon in three days.", heading),
        ("It was built in 1971 by Boeing and General Motors.", heading),
    ]
    bm25 = Bm25Encoder.from_settings(Settings(_env_file=None))
    gen = ExtractiveGenerator(embedder, bm25, max_embedded=None, max_scanned=None)
    # The heading repeats the question word for word and the table row shares its terms: neither is quoted.
    chosen = gen.select("How far did the lunar rover drive on the Moon?", [("Rover", DOC)])
    assert chosen and all(not s.startswith(("#", "|")) and "RAG_ROVER_KM" not in s for _, s, _ in chosen)
    assert "35 kilometres" in chosen[0][1]


class SameVector:
    """Every text gets the same vector: cosine ties, so only the term coverage tells sentences apart."""

    def encode(self, texts):
        return np.ones((len(texts), 4)) / 2.0

    def encode_query(self, text):
        return self.encode([text])[0]


def test_coverage_prefers_the_sentence_holding_the_questions_rare_terms():
    bm25 = Bm25Encoder.from_settings(Settings(_env_file=None))
    q = "Does the vaccine trial report myocarditis in adolescents?"
    sents = [
        "The vaccine trial enrolled adults and adolescents in the trial arm of the vaccine study.",  # 3 common terms
        "Myocarditis was seen in two participants of the trial.",  # the rare term (and a common one)
        "The vaccine trial gave results for adolescents after one year of vaccine follow-up.",
        "Adolescents in the vaccine trial were followed for a year after the vaccine trial began.",
    ]
    q_terms = set(bm25.term_counts(q))
    cov = idf_coverage(q_terms, [set(bm25.term_counts(s)) for s in sents])
    assert int(np.argmax(cov)) == 1
    # A plain share of terms would prefer the first sentence (3 of 5 terms against 2 of 5).
    gen = ExtractiveGenerator(SameVector(), bm25, max_embedded=None, min_score=0.0)
    chosen = gen.select(q, [("Trial", " ".join(sents))])
    assert max(chosen, key=lambda c: c[2])[1].startswith("Myocarditis")
    assert idf_coverage(set(), [{1}, {2}]).tolist() == [0.0, 0.0]


def test_the_decline_threshold_comes_from_the_settings(tmp_path, monkeypatch, embedder):
    from engine.engine import Engine

    monkeypatch.setenv("RAG_EXTRACTIVE_MIN_SCORE", "0.9")
    settings = Settings(data_dir=tmp_path / "data", _env_file=None)
    assert settings.extractive_min_score == 0.9
    assert Settings(_env_file=None, extractive_min_score=0.2).extractive_min_score == 0.2
    engine = Engine.build(settings)
    try:
        gen = engine.answerer.generator
        assert gen.min_score == 0.9
        sources = [("Rover", "The lunar rover drove 35 kilometres across the Moon in three days.")]
        question = "How far did the lunar rover drive on the Moon?"
        best = max(s for _, _, s in gen.scored(question, sources))
        assert MIN_SCORE <= best < 0.9  # answered at the default threshold, declined at 0.9
        assert gen.generate(question, sources) == DECLINE
        assert ExtractiveGenerator(embedder, gen.bm25).generate(question, sources).endswith("[1]")
    finally:
        engine.close()


def test_the_question_is_embedded_once_per_query(embedder):
    """Retrieval embeds the question; the extractive answer scores sentences against the same vector, so only
    the sentences go to the model (issue 18). The vector is the one a plain encode gives."""
    question = "How far did the lunar rover drive on the Moon, in kilometres?"
    calls = embedder.batching["requests"]
    vec = embedder.encode_query(question)  # what retrieval does
    assert embedder.batching["requests"] == calls + 1
    assert np.allclose(vec, embedder.encode([question])[0], atol=1e-5)
    calls = embedder.batching["requests"]
    gen = ExtractiveGenerator(embedder, Bm25Encoder.from_settings(Settings(_env_file=None)), max_scanned=None)
    chosen = gen.select(question, [("Rover", DOC)])
    assert embedder.batching["requests"] == calls + 1  # the sentences, in one call; the question was not re-run
    assert chosen and "35 kilometres" in chosen[0][1]
    # Another question over the same passage: its sentences' vectors are remembered, only the question is new.
    again = gen.select("Who built the lunar rover, and when?", [("Rover", DOC)])
    assert embedder.batching["requests"] == calls + 2
    assert any("1971" in sentence for _, sentence, _ in again)
    fresh = ExtractiveGenerator(embedder, Bm25Encoder.from_settings(Settings(_env_file=None)), max_scanned=None)
    assert fresh.select("Who built the lunar rover, and when?", [("Rover", DOC)]) == again  # same choice, same scores
