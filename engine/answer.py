"""Question in, answer with checked citations out: retrieval, then generation, with timings per stage.

The API, the chat facade and the audits all go through `Answerer`, so they run the very same code. With a
conversation (`history`: the turns before the question), a rewrite stage runs first (engine/rewrite.py): it
decides what retrieval searches and the generator answers, and the result carries it (`AnswerResult.rewrite`).
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from typing import Iterator, Protocol, Sequence

from core import tracing
from engine.generation.citations import CITATION, check_citations
from engine.generation.llm import GenerationError
from engine.generation.prompt import DECLINE
from engine.generation.usage import Usage
from engine.retrieval import Context, RetrievalParams, RetrievalResult, Retriever
from engine.rewrite import Rewrite, Rewriter, Turn, unchanged


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
    usage: Usage | None = None  # token counts and who counted them (engine/generation/usage.py)


@dataclass
class AnswerResult:
    question: str
    collection: str
    retrieval: RetrievalResult
    generation: Generation | None
    timings_ms: dict[str, float]
    rewrite: Rewrite | None = None  # set when the question came with history (or rewriting was turned off)


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
    return Generation(generator, checked.text, citations, checked.invalid, is_decline(checked.text))


def _query_attributes(result: AnswerResult, history: Sequence[Turn] | None) -> dict:
    """The root span of a query: the question as asked, the answer, what was searched."""
    gen = result.generation
    return {
        tracing.INPUT: result.question,
        tracing.OUTPUT: gen.answer if gen else None,
        "rag.collection": result.collection,
        "rag.query": result.rewrite.query if result.rewrite else None,
        "rag.history_turns": len(history or ()),
        "rag.contexts": len(result.retrieval.contexts),
        "metadata": {"timings_ms": result.timings_ms},
    }


def is_decline(answer: str) -> bool:
    """The answer declines: it says the decline sentence and nothing else of substance. An answer that holds the
    decline sentence beside a made-up answer ("The sources do not contain the answer. But it is 42.") is an
    answer, not a decline."""
    text = " ".join(CITATION.sub("", answer).split()).lower()
    marker = DECLINE.lower().rstrip(".")
    if marker not in text:
        return False
    rest = text.replace(marker, " ")
    return len(re.findall(r"\w+", rest)) <= 3


class Answerer:
    def __init__(self, retriever: Retriever, generator: Generator, rewriter: Rewriter | None = None):
        self.retriever, self.generator, self.rewriter = retriever, generator, rewriter

    def rewrite(
        self,
        collection: str,
        question: str,
        history: Sequence[Turn] | None,
        params: RetrievalParams,
        rewrite: bool = True,
    ) -> Rewrite | None:
        """The rewrite stage: None without history (the question is searched as it is)."""
        if not history:
            return None
        if not rewrite or self.rewriter is None:
            return unchanged(question, "off", "rewriting is off: the last user turn alone is searched")
        with tracing.span("rewrite", tracing.CHAIN) as sp:
            rw = self.rewriter.rewrite(collection, question, history, params)
            if sp.recording:
                sp.set({tracing.INPUT: question, tracing.OUTPUT: rw.query, "rag.rewrite.method": rw.method})
                sp.set({"rag.rewrite.standalone": rw.standalone, "rag.rewrite.reason": rw.reason})
        return rw

    def ask(
        self,
        collection: str,
        question: str,
        params: RetrievalParams,
        generate: bool = True,
        history: Sequence[Turn] | None = None,
        rewrite: bool = True,
    ) -> AnswerResult:
        """Answer `question`; with `history` (the turns before it) the rewrite stage decides what is searched."""
        t0 = time.perf_counter()
        with tracing.span("rag.query", tracing.CHAIN) as root:
            rw = self.rewrite(collection, question, history, params, rewrite)
            query = rw.query if rw else question
            retrieval = self.retriever.retrieve(collection, query, params)
            timings = ({"rewrite": rw.ms} if rw else {}) | dict(retrieval.timings_ms)
            generation = None
            if generate:
                t = time.perf_counter()
                generation = self.generate(query, retrieval.contexts)
                timings["generation"] = round((time.perf_counter() - t) * 1000, 3)
            timings["total"] = round((time.perf_counter() - t0) * 1000, 3)
            result = AnswerResult(question, collection, retrieval, generation, timings, rw)
            if root.recording:
                root.set(_query_attributes(result, history))
        return result

    def generate(self, question: str, contexts: list[Context]) -> Generation:
        """Answer from these contexts; generator failures are returned in `error`, not raised."""
        with tracing.span("generate", tracing.LLM) as sp:
            generation = self._generate(question, contexts)
            if sp.recording:
                sp.set(self._llm_attributes(question, contexts, generation))
        return generation

    def _llm_attributes(self, question: str, contexts: list[Context], g: Generation) -> dict:
        """OpenInference's LLM span: the model, the messages an endpoint was sent, the answer, the token counts
        (null counts left out: unknown)."""
        u = g.usage
        attrs = {
            "llm.model_name": getattr(self.generator, "model", None) or self.generator.name,
            "llm.system": "openai" if hasattr(self.generator, "prompt_messages") else None,
            tracing.INPUT: question,
            tracing.OUTPUT: g.answer,
            "llm.token_count.prompt": u.prompt_tokens if u else None,
            "llm.token_count.completion": u.completion_tokens if u else None,
            "llm.token_count.total": u.total_tokens if u else None,
            "rag.usage.source": u.source if u else None,
            "rag.usage.tokenizer": u.tokenizer if u else None,
            "rag.generator": g.generator,
            "rag.declined": g.declined,
            "rag.cited": [c.number for c in g.citations],
            "rag.error": g.error["code"] if g.error else None,
        }
        prompt = getattr(self.generator, "prompt_messages", None)
        if prompt is not None and contexts:
            attrs.update(tracing.messages("llm.input_messages", prompt(question, sources_of(contexts))))
        if g.answer is not None:
            attrs.update(tracing.messages("llm.output_messages", [{"role": "assistant", "content": g.answer}]))
        return attrs

    def _generate(self, question: str, contexts: list[Context]) -> Generation:
        if not contexts:
            return Generation(self.generator.name, DECLINE, declined=True, usage=Usage.none())
        counted = getattr(self.generator, "generate_counted", None)  # a generator that cannot count: unknown
        try:
            if counted is not None:
                raw, usage = counted(question, sources_of(contexts))
            else:
                raw, usage = self.generator.generate(question, sources_of(contexts)), Usage.unknown()
        except GenerationError as exc:
            return Generation(self.generator.name, error={"code": exc.code, "message": str(exc)}, usage=Usage.unknown())
        generation = finish(raw, contexts, self.generator.name)
        generation.usage = usage
        return generation

    def stream(
        self,
        collection: str,
        question: str,
        params: RetrievalParams,
        history: Sequence[Turn] | None = None,
        rewrite: bool = True,
    ) -> Iterator[tuple[str, object]]:
        """Events: ("retrieval", RetrievalResult), ("token", str)..., then ("final", AnswerResult)."""
        # Traced with spans started and ended here, never current across a yield (the consumer may resume this
        # generator on another thread, in another context); a stream dropped mid-way still ends them.
        root, llm = tracing.start("rag.query", tracing.CHAIN), tracing.OFF
        try:
            t0 = time.perf_counter()
            with tracing.current(root):
                rw = self.rewrite(collection, question, history, params, rewrite)
                asked, question = question, (rw.query if rw else question)
                retrieval = self.retriever.retrieve(collection, question, params)
            yield "retrieval", retrieval
            t = time.perf_counter()
            llm = tracing.start("generate", tracing.LLM, parent=root)
            pieces: list[str] = []
            generation: Generation
            if not retrieval.contexts:
                generation = Generation(self.generator.name, DECLINE, declined=True, usage=Usage.none())
                yield "token", DECLINE
            else:
                usage = Usage.unknown()
                streamer = getattr(self.generator, "stream_counted", None) or self.generator.stream
                try:
                    for piece in streamer(question, sources_of(retrieval.contexts)):
                        if isinstance(piece, Usage):  # the counts come last
                            usage = piece
                            continue
                        pieces.append(piece)
                        yield "token", piece
                    generation = finish("".join(pieces), retrieval.contexts, self.generator.name)
                    generation.usage = usage
                except GenerationError as exc:
                    generation = Generation(
                        self.generator.name,
                        answer="".join(pieces) or None,
                        error={"code": exc.code, "message": str(exc)},
                        usage=Usage.unknown(),
                    )
            if llm.recording:
                llm.set(self._llm_attributes(question, retrieval.contexts, generation))
            llm.end()
            llm = tracing.OFF
            timings = ({"rewrite": rw.ms} if rw else {}) | dict(retrieval.timings_ms)
            timings["generation"] = round((time.perf_counter() - t) * 1000, 3)
            timings["total"] = round((time.perf_counter() - t0) * 1000, 3)
            result = AnswerResult(asked, collection, retrieval, generation, timings, rw)
            if root.recording:
                root.set(_query_attributes(result, history))
            yield "final", result
        finally:
            llm.end()
            root.end()
