"""Question in, answer with checked citations out: retrieval, then generation, with timings per stage.

The API, the chat facade and the audits all go through `Answerer`, so they run the very same code.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Iterator, Protocol, Sequence

from engine.generation.citations import check_citations
from engine.generation.llm import GenerationError
from engine.generation.prompt import DECLINE
from engine.retrieval import Context, RetrievalParams, RetrievalResult, Retriever


class Generator(Protocol):
    name: str

    def generate(self, question: str, sources: Sequence[tuple[str, str]]) -> str: ...

    def stream(self, question: str, sources: Sequence[tuple[str, str]]) -> Iterator[str]: ...


@dataclass
class Citation:
    number: int
    doc_id: str
    chunk_id: str
    title: str
    source: str
    start: int
    end: int
    snippet: str


@dataclass
class Generation:
    generator: str
    answer: str | None = None
    citations: list[Citation] = field(default_factory=list)
    invalid_citations: list[int] = field(default_factory=list)
    declined: bool = False
    error: dict | None = None  # {"code", "message"} when the generator failed


@dataclass
class AnswerResult:
    question: str
    collection: str
    retrieval: RetrievalResult
    generation: Generation | None
    timings_ms: dict[str, float]


def sources_of(contexts: Sequence[Context]) -> list[tuple[str, str]]:
    return [(c.title, c.text) for c in contexts]


def finish(raw: str, contexts: Sequence[Context], generator: str) -> Generation:
    """Parse and check the citations of a raw answer."""
    checked = check_citations(raw, len(contexts))
    citations = []
    for n in checked.cited:
        c = contexts[n - 1]
        snippet = c.text if len(c.text) <= 300 else c.text[:297] + "..."
        citations.append(Citation(n, c.doc_id, c.chunk_id, c.title, c.source, c.start, c.end, snippet))
    declined = DECLINE.lower().rstrip(".") in checked.text.lower()
    return Generation(generator, checked.text, citations, checked.invalid, declined)


class Answerer:
    def __init__(self, retriever: Retriever, generator: Generator):
        self.retriever, self.generator = retriever, generator

    def ask(self, collection: str, question: str, params: RetrievalParams, generate: bool = True) -> AnswerResult:
        t0 = time.perf_counter()
        retrieval = self.retriever.retrieve(collection, question, params)
        timings = dict(retrieval.timings_ms)
        generation = None
        if generate:
            t = time.perf_counter()
            generation = self.generate(question, retrieval.contexts)
            timings["generation"] = round((time.perf_counter() - t) * 1000, 3)
        timings["total"] = round((time.perf_counter() - t0) * 1000, 3)
        return AnswerResult(question, collection, retrieval, generation, timings)

    def generate(self, question: str, contexts: list[Context]) -> Generation:
        """Answer from these contexts; generator failures are returned in `error`, not raised."""
        if not contexts:
            return Generation(self.generator.name, DECLINE, declined=True)
        try:
            raw = self.generator.generate(question, sources_of(contexts))
        except GenerationError as exc:
            return Generation(self.generator.name, error={"code": exc.code, "message": str(exc)})
        return finish(raw, contexts, self.generator.name)

    def stream(self, collection: str, question: str, params: RetrievalParams) -> Iterator[tuple[str, object]]:
        """Events: ("retrieval", RetrievalResult), ("token", str)..., then ("final", AnswerResult)."""
        t0 = time.perf_counter()
        retrieval = self.retriever.retrieve(collection, question, params)
        yield "retrieval", retrieval
        t = time.perf_counter()
        pieces: list[str] = []
        generation: Generation
        if not retrieval.contexts:
            generation = Generation(self.generator.name, DECLINE, declined=True)
            yield "token", DECLINE
        else:
            try:
                for piece in self.generator.stream(question, sources_of(retrieval.contexts)):
                    pieces.append(piece)
                    yield "token", piece
                generation = finish("".join(pieces), retrieval.contexts, self.generator.name)
            except GenerationError as exc:
                generation = Generation(
                    self.generator.name, answer="".join(pieces) or None, error={"code": exc.code, "message": str(exc)}
                )
        timings = dict(retrieval.timings_ms)
        timings["generation"] = round((time.perf_counter() - t) * 1000, 3)
        timings["total"] = round((time.perf_counter() - t0) * 1000, 3)
        yield "final", AnswerResult(question, collection, retrieval, generation, timings)
