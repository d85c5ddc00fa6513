"""The built-in generator for when no LLM endpoint is configured: it answers with the retrieved sentences
that best answer the question, each cited, so it is faithful by construction; and it says so when none do.

Cost is bounded: the sentences of the contexts (at most MAX_SCANNED, in rank order) are first ranked
lexically, by BM25 over the candidate sentences themselves (term weights from Qdrant's own BM25 tokenizer,
IDF from these sentences); only the best MAX_EMBEDDED of them, topped up with the earliest sentences of the
best-ranked contexts when fewer share a term with the question, are embedded and scored as before
(0.8 * cosine + 0.2 * term overlap). Embedding every sentence of every context made the answer cost grow
with top_k (28 s at top_k 300); this keeps it at one small batch. `max_embedded=None` is the exhaustive
selection, kept for comparison (`python benchmarks/concurrency.py agreement`). Measured against it on 60
SciFact test questions, top_k 5 (store 70% ingested, busy 2-core box):

| embedded | same sentences | mean Jaccard | same top sentence | cites a relevant abstract | select ms p50 |
|---|---|---|---|---|---|
| all (~22) | - | - | - | 56.7% | 537 |
| 12 | 85% | 0.92 | 98% | 56.7% | 314 |
| 8 (default) | 70% | 0.82 | 88% | 56.7% | 209 |
| 6 | 63% | 0.76 | 85% | 56.7% | 293 (noise) |
"""

from __future__ import annotations

import math
import re
from typing import Iterator, Sequence

import numpy as np

from core.embedding import Embedder
from core.sparse import Bm25Encoder
from core.text import sentences
from engine.generation.citations import strip_citation_markers
from engine.generation.prompt import DECLINE

MIN_SCORE = 0.35  # below this (0.8 * cosine + 0.2 * term overlap) no sentence is taken to answer
MAX_SENTENCES = 3
MARGIN = 0.08  # sentences within this of the best one are kept too
MAX_EMBEDDED = 8  # sentences embedded per answer, chosen lexically (see the module docstring)
MAX_SCANNED = 400  # sentences looked at per answer, in rank order
BM25_K, BM25_B = 1.2, 0.75


def _sentences(text: str) -> list[str]:
    return [s for s in sentences(text, min_words=4) if not s.startswith("#")]  # a heading is not an answer


def lexical_preselect(q_terms: set[int], sent_terms: Sequence[dict[int, int]], n: int) -> list[int]:
    """Indexes (ascending) of the `n` candidate sentences to embed: the best by BM25 against the question,
    IDF computed over the candidates; when fewer than `n` share a term with the question, the earliest of
    the others fill the remaining places (the earliest come from the best-ranked contexts)."""
    if len(sent_terms) <= n:
        return list(range(len(sent_terms)))
    total = len(sent_terms)
    lengths = [sum(tc.values()) for tc in sent_terms]
    avg = max(sum(lengths) / total, 1.0)
    df = {t: sum(1 for tc in sent_terms if t in tc) for t in q_terms}
    idf = {t: math.log(1 + (total - d + 0.5) / (d + 0.5)) for t, d in df.items() if d}
    scores = []
    for i, tc in enumerate(sent_terms):
        norm = BM25_K * (1 - BM25_B + BM25_B * lengths[i] / avg)
        s = sum(w * tc[t] * (BM25_K + 1) / (tc[t] + norm) for t, w in idf.items() if t in tc)
        scores.append(s)
    ranked = sorted((i for i in range(total) if scores[i] > 0), key=lambda i: (-scores[i], i))[:n]
    chosen = set(ranked)
    for i in range(total):
        if len(chosen) >= n:
            break
        chosen.add(i)
    return sorted(chosen)


def compose(chosen: Sequence[tuple[int, str, float]]) -> str:
    """The answer: each chosen sentence quoted with its source number. Markers inside a quoted sentence
    (`[2]` citing the source's own references) are removed, so only our own markers are citations."""
    parts = []
    for n, sentence, _ in chosen:
        quoted = strip_citation_markers(sentence).rstrip()
        if quoted:
            parts.append(f"{quoted} [{n}]")
    return " ".join(parts) if parts else DECLINE


class ExtractiveGenerator:
    name = "extractive"

    def __init__(
        self,
        embedder: Embedder,
        bm25: Bm25Encoder,
        max_embedded: int | None = MAX_EMBEDDED,
        max_scanned: int | None = MAX_SCANNED,
    ):
        self.embedder, self.bm25 = embedder, bm25
        self.max_embedded, self.max_scanned = max_embedded, max_scanned

    def select(self, question: str, sources: Sequence[tuple[str, str]]) -> list[tuple[int, str, float]]:
        """(source number, sentence, score) of the chosen sentences, in source order; empty = no answer."""
        cands: list[tuple[int, str]] = []
        for i, (_, text) in enumerate(sources, 1):
            cands.extend((i, s) for s in _sentences(text))
            if self.max_scanned is not None and len(cands) >= self.max_scanned:
                cands = cands[: self.max_scanned]
                break
        if not cands:
            return []
        q_terms = set(self.bm25.term_counts(question))
        sent_terms = [self.bm25.term_counts(s) for _, s in cands]
        if self.max_embedded is not None and len(cands) > self.max_embedded:
            keep = lexical_preselect(q_terms, sent_terms, self.max_embedded)
            cands, sent_terms = [cands[i] for i in keep], [sent_terms[i] for i in keep]
        vecs = self.embedder.encode([question] + [s for _, s in cands])
        cos = vecs[1:] @ vecs[0]
        overlap = np.array([len(q_terms & tc.keys()) / max(len(q_terms), 1) for tc in sent_terms])
        scores = 0.8 * cos + 0.2 * overlap
        best = float(scores.max())
        if best < MIN_SCORE:
            return []
        order = [int(i) for i in np.argsort(-scores)[:MAX_SENTENCES] if scores[i] >= best - MARGIN]
        return [(cands[i][0], cands[i][1], float(scores[i])) for i in sorted(order)]

    def generate(self, question: str, sources: Sequence[tuple[str, str]]) -> str:
        return compose(self.select(question, sources))

    def stream(self, question: str, sources: Sequence[tuple[str, str]]) -> Iterator[str]:
        answer = self.generate(question, sources)
        for piece in re.findall(r"\S+\s*", answer):
            yield piece
