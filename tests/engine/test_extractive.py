"""The extractive generator: markers inside quoted sentences are not citations; its cost is bounded."""

from __future__ import annotations

from core.settings import Settings
from core.sparse import Bm25Encoder
from engine.generation.citations import check_citations, strip_citation_markers
from engine.generation.extractive import MAX_EMBEDDED, ExtractiveGenerator, compose, lexical_preselect
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
