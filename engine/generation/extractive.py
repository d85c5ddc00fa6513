"""The built-in generator for when no LLM endpoint is configured: it answers with the retrieved sentences
that best answer the question, each cited, so it is faithful by construction; and it says so when none do.

Answer sentences are the contexts' sentences of 4 words or more; heading lines and table rows never are
(`candidates`). A sentence scores 0.8 * cosine(question, sentence) + 0.2 * coverage, coverage being the
IDF-weighted share of the question's terms that the sentence, or the heading it sits under, holds (IDF over
the scanned sentences: a rare question term outweighs a common one; `idf_coverage`). Below `min_score`
(settings.extractive_min_score, default 0.38) the generator declines. Issue 17 (benchmarks/extractive_answers.py;
before = a plain term share, no heading terms, tables quoted, threshold 0.35):

- the mix (coverage weight 0.2) and the threshold were chosen on train data only: SciFact train (809 claims,
  each also asked of the collection without its cited abstracts as an unanswerable question) and MTRAG's
  tune half (94 answerable, 36 unanswerable questions). 0.38 is the highest threshold that declines at most
  5% of the answerable questions with a relevant context on both: 0.9% / 3.3% of them, and 5.8% / 22% of
  the unanswerable ones. A sentence-similarity score separates the two poorly on SciFact, whose distractors
  are on-topic abstracts: declining half of those costs a quarter of the answerable claims.
- held out, at each default: SciFact test (300) cites a relevant abstract in 70.2% of its answers (before
  69.9%; 43.7% cite only relevant abstracts, before 44.6%; 49.7% of all cited sentences, before 48.9%);
  declines 1.7% of the answerable claims and 5.7% of the unanswerable ones (before 1.3%, 2.3%). MTRAG's
  report half: 95.0% of answers cite a relevant passage (before 94.2%); declines 4.8% of the answerable and
  34.5% of the unanswerable questions (before 1.9%, 20.7%).
  The docs golden set (examples/golden-docs.jsonl): answered_well 13 -> 15 of 23 ("Which file formats can
  be ingested?" quotes the sentence under "Supported formats"); "How do I rotate API keys?" now declines.
- select ms p50 / p95, 100 SciFact test questions, busy 2-core box: 289 / 619 (before 273 / 625).

Cost is bounded: the sentences of the contexts (at most MAX_SCANNED, in rank order) are first ranked
lexically, by the coverage above, ties broken by BM25 over the candidate sentences themselves (term weights
from Qdrant's own BM25 tokenizer, IDF from these sentences); only the best MAX_EMBEDDED of them, topped up
with the earliest sentences of the best-ranked contexts when fewer share a term with the question, are
embedded and scored. Embedding every sentence of every context made the answer cost grow with top_k (28 s
at top_k 300); this keeps it at one small batch. `max_embedded=None` is the exhaustive selection, kept for
comparison (`python benchmarks/concurrency.py agreement`). Measured against it (BM25 preselection, before
issue 17) on 60 SciFact test questions, top_k 5 (store 70% ingested, busy 2-core box):

| embedded | same sentences | mean Jaccard | same top sentence | cites a relevant abstract | select ms p50 |
|---|---|---|---|---|---|
| all (~22) | - | - | - | 56.7% | 537 |
| 12 | 85% | 0.92 | 98% | 56.7% | 314 |
| 8 (default) | 70% | 0.82 | 88% | 56.7% | 209 |
| 6 | 63% | 0.76 | 85% | 56.7% | 293 (noise) |

With coverage-first preselection (issue 17), all 300 SciFact test questions: the bounded selection equals the
exhaustive one in 76.0% (before 75.7%), mean Jaccard 0.86 (0.86), same top sentence 92.0% (93.0%).
"""

from __future__ import annotations

import math
import re
import threading
from collections import OrderedDict
from typing import Iterator, Sequence

import numpy as np

from core.embedding import Embedder
from core.sparse import Bm25Encoder
from core.text import sentences
from engine.generation.citations import strip_citation_markers
from engine.generation.prompt import DECLINE
from engine.generation.usage import Usage

MIN_SCORE = 0.38  # default decline threshold (settings.extractive_min_score): no sentence scores this much
COVERAGE_WEIGHT = 0.2  # score = (1 - w) * cosine + w * IDF-weighted coverage of the question's terms
MAX_SENTENCES = 3
MARGIN = 0.08  # sentences within this of the best one are kept too
MAX_EMBEDDED = 8  # sentences embedded per answer, chosen lexically (see the module docstring)
MAX_SCANNED = 400  # sentences looked at per answer, in rank order
# Sentence vectors remembered across answers (384 floats each: ~30 MB): the passages a corpus is asked about
# come back again and again, and their sentences are what an extractive answer costs (issue 18).
SENTENCE_CACHE = 20_000
BM25_K, BM25_B = 1.2, 0.75
_HEADING = re.compile(r"^ {0,3}#{1,6}\s+(.*?)[\s#]*$")
_TABLE_ROW = re.compile(r"^\s*\|")


def candidates(text: str) -> list[tuple[str, str]]:
    """(sentence, heading) of the answer sentences of a context: its sentences of 4 words or more, each with
    the heading it sits under in this text ("" when none). Heading lines and table rows (lines that start
    with `|`) are never answer sentences: a heading says what a section is about, not what is true, and a
    row torn from its table reads as nothing; a line of either ends the sentence before it."""
    out: list[tuple[str, str]] = []
    heading, block = "", []

    def flush() -> None:
        if block:
            out.extend((s, heading) for s in sentences("\n".join(block), min_words=4) if not s.startswith("#"))
            block.clear()

    for line in text.splitlines():
        m = _HEADING.match(line)
        if m or _TABLE_ROW.match(line):
            flush()
            if m:
                heading = m.group(1).strip()
            continue
        block.append(line)
    flush()
    return out


def idf_coverage(q_terms: set[int], cand_terms: Sequence[set[int] | dict[int, int]]) -> np.ndarray:
    """Per candidate: the IDF-weighted share of the question's terms it holds, IDF over these candidates, so
    a term the question shares with few of them weighs more than one most of them hold, and a term none of
    them holds counts against all. All 0 when the question has no terms."""
    n = len(cand_terms)
    if not q_terms or not n:
        return np.zeros(n)
    df = {t: sum(t in c for c in cand_terms) for t in q_terms}
    idf = {t: math.log(1 + (n - d + 0.5) / (d + 0.5)) for t, d in df.items()}
    total = sum(idf.values())
    return np.array([sum(w for t, w in idf.items() if t in c) / total for c in cand_terms])


def lexical_preselect(
    q_terms: set[int], sent_terms: Sequence[dict[int, int]], n: int, coverage: Sequence[float] | None = None
) -> list[int]:
    """Indexes (ascending) of the `n` candidate sentences to embed: the best by `coverage` (the lexical part of
    the final score) when given, ties broken by BM25 against the question (IDF over the candidates), else by
    BM25 alone; when fewer than `n` share a term with the question, the earliest of the others fill the
    remaining places (the earliest come from the best-ranked contexts)."""
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
    first = coverage if coverage is not None else scores
    ranked = sorted((i for i in range(total) if scores[i] > 0), key=lambda i: (-first[i], -scores[i], i))[:n]
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
        min_score: float = MIN_SCORE,
        coverage_weight: float = COVERAGE_WEIGHT,
    ):
        self.embedder, self.bm25 = embedder, bm25
        self.max_embedded, self.max_scanned = max_embedded, max_scanned
        self._vectors: OrderedDict[str, np.ndarray] = OrderedDict()
        self._vectors_lock = threading.Lock()
        self.min_score, self.coverage_weight = min_score, coverage_weight

    def scored(self, question: str, sources: Sequence[tuple[str, str]]) -> list[tuple[int, str, float]]:
        """(source number, sentence, score) of every sentence embedded, in source order."""
        cands: list[tuple[int, str, str]] = []
        for i, (_, text) in enumerate(sources, 1):
            cands.extend((i, s, h) for s, h in candidates(text))
            if self.max_scanned is not None and len(cands) >= self.max_scanned:
                cands = cands[: self.max_scanned]
                break
        if not cands:
            return []
        q_terms = set(self.bm25.term_counts(question))
        # A sentence's terms for coverage include its section heading's: under "Supported formats", "Plain text
        # (`.txt`), Markdown ..." answers "Which file formats ...?". Its embedding is of the sentence alone.
        heads = {h: self.bm25.term_counts(h) for h in {h for _, _, h in cands if h}}
        sent_terms = []
        for _, s, h in cands:
            tc = self.bm25.term_counts(s)
            for t in heads.get(h, ()):
                tc.setdefault(t, 1)
            sent_terms.append(tc)
        coverage = idf_coverage(q_terms, sent_terms)  # IDF over every scanned sentence, not just those embedded
        keep = list(range(len(cands)))
        if self.max_embedded is not None and len(cands) > self.max_embedded:
            keep = lexical_preselect(q_terms, sent_terms, self.max_embedded, coverage)
        q_vec = self.embedder.encode_query(question)  # retrieval embedded the same question: a cache hit
        cos = self.sentence_vectors([cands[i][1] for i in keep]) @ q_vec
        w = self.coverage_weight
        scores = (1 - w) * cos + w * coverage[keep]
        return [(cands[i][0], cands[i][1], float(sc)) for i, sc in zip(keep, scores)]

    def sentence_vectors(self, texts: list[str]) -> np.ndarray:
        """The sentences' vectors: those embedded for an earlier answer remembered (the last SENTENCE_CACHE),
        the rest embedded in one call."""
        with self._vectors_lock:
            known = {t: self._vectors[t] for t in texts if t in self._vectors}
            for t in known:
                self._vectors.move_to_end(t)
        todo = [t for t in dict.fromkeys(texts) if t not in known]
        if todo:
            fresh = dict(zip(todo, self.embedder.encode(todo)))
            known.update(fresh)
            with self._vectors_lock:
                self._vectors.update(fresh)
                while len(self._vectors) > SENTENCE_CACHE:
                    self._vectors.popitem(last=False)
        return np.stack([known[t] for t in texts]) if texts else self.embedder.encode([])

    def select(self, question: str, sources: Sequence[tuple[str, str]]) -> list[tuple[int, str, float]]:
        """(source number, sentence, score) of the chosen sentences, in source order; empty = no answer."""
        scored = self.scored(question, sources)
        if not scored:
            return []
        best = max(sc for _, _, sc in scored)
        if best < self.min_score:
            return []
        order = sorted(range(len(scored)), key=lambda i: -scored[i][2])[:MAX_SENTENCES]
        return [scored[i] for i in sorted(i for i in order if scored[i][2] >= best - MARGIN)]

    def generate(self, question: str, sources: Sequence[tuple[str, str]]) -> str:
        return compose(self.select(question, sources))

    def generate_counted(self, question: str, sources: Sequence[tuple[str, str]]) -> tuple[str, Usage]:
        answer = self.generate(question, sources)
        return answer, self.usage(question, sources, answer)

    def usage(self, question: str, sources: Sequence[tuple[str, str]], answer: str) -> Usage:
        """Tokens of the embedding model's tokenizer (engine/generation/usage.py): the question and every
        context's title and text read (prompt), the answer written (completion)."""
        texts = [question, *(f"{title}\n{text}" if title else text for title, text in sources), answer]
        counts = self.embedder.count_tokens(texts)
        return Usage.counted(sum(counts[:-1]), counts[-1], "embedding_tokenizer", self.embedder.name)

    def stream(self, question: str, sources: Sequence[tuple[str, str]]) -> Iterator[str]:
        answer = self.generate(question, sources)
        for piece in re.findall(r"\S+\s*", answer):
            yield piece

    def stream_counted(self, question: str, sources: Sequence[tuple[str, str]]) -> Iterator[str | Usage]:
        answer = self.generate(question, sources)
        yield from re.findall(r"\S+\s*", answer)
        yield self.usage(question, sources, answer)
