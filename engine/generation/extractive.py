"""The built-in generator for when no LLM endpoint is configured: it answers with the retrieved sentences
that best answer the question, each cited, so it is faithful by construction; and it says so when none do.
"""

from __future__ import annotations

import re
from typing import Iterator, Sequence

import numpy as np

from core.embedding import Embedder
from core.sparse import Bm25Encoder
from core.text import sentences
from engine.generation.prompt import DECLINE

MIN_SCORE = 0.35  # below this (0.8 * cosine + 0.2 * term overlap) no sentence is taken to answer
MAX_SENTENCES = 3
MARGIN = 0.08  # sentences within this of the best one are kept too


def _sentences(text: str) -> list[str]:
    return [s for s in sentences(text, min_words=4) if not s.startswith("#")]  # a heading is not an answer


class ExtractiveGenerator:
    name = "extractive"

    def __init__(self, embedder: Embedder, bm25: Bm25Encoder):
        self.embedder, self.bm25 = embedder, bm25

    def select(self, question: str, sources: Sequence[tuple[str, str]]) -> list[tuple[int, str, float]]:
        """(source number, sentence, score) of the chosen sentences, in source order; empty = no answer."""
        cands = [(i, s) for i, (_, text) in enumerate(sources, 1) for s in _sentences(text)]
        if not cands:
            return []
        vecs = self.embedder.encode([question] + [s for _, s in cands])
        cos = vecs[1:] @ vecs[0]
        q_terms = set(self.bm25.term_counts(question))
        overlap = np.array([len(q_terms & set(self.bm25.term_counts(s))) / max(len(q_terms), 1) for _, s in cands])
        scores = 0.8 * cos + 0.2 * overlap
        best = float(scores.max())
        if best < MIN_SCORE:
            return []
        order = [int(i) for i in np.argsort(-scores)[:MAX_SENTENCES] if scores[i] >= best - MARGIN]
        return [(cands[i][0], cands[i][1], float(scores[i])) for i in sorted(order)]

    def generate(self, question: str, sources: Sequence[tuple[str, str]]) -> str:
        chosen = self.select(question, sources)
        if not chosen:
            return DECLINE
        return " ".join(f"{s.rstrip()} [{n}]" for n, s, _ in chosen)

    def stream(self, question: str, sources: Sequence[tuple[str, str]]) -> Iterator[str]:
        answer = self.generate(question, sources)
        for piece in re.findall(r"\S+\s*", answer):
            yield piece
