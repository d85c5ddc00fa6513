"""What /v1/query and /v1/chat/completions share: the question and history checks, the stage timings and
the rewrite for the query log, and running a server-sent-event stream up to its first event."""

from __future__ import annotations

import itertools
import json
import logging
from dataclasses import asdict
from typing import Iterator

from core.errors import InvalidRequestError, RagError
from engine.answer import AnswerResult
from engine.rewrite import Turn
from service.state import ServiceState

log = logging.getLogger("rag.service")


def drop_nul(text: str) -> str:
    """Text without NUL characters: they carry no meaning in a question, and no database keeps them (the
    question is answered and logged without them)."""
    return text.replace("\x00", "") if "\x00" in text else text


def validate_question(state: ServiceState, question: str) -> str:
    q = drop_nul(question).strip()
    try:
        q.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate ("\ud800" in JSON): no tokenizer or store takes it
        raise InvalidRequestError("invalid_text", "the question is not valid Unicode text (a lone surrogate)") from None
    if not q:
        raise InvalidRequestError("empty_question", "the question is empty")
    if len(q) > state.settings.max_question_chars:
        raise InvalidRequestError(
            "question_too_long",
            f"the question has {len(q)} characters; the limit is {state.settings.max_question_chars}",
        )
    return q


def history_from(state: ServiceState, turns: list[Turn] | None) -> list[Turn] | None:
    """The conversation before the question, checked; None when there is none."""
    if not turns:
        return None
    if len(turns) > state.settings.max_history_turns:
        raise InvalidRequestError(
            "history_too_long", f"the history has {len(turns)} turns; the limit is {state.settings.max_history_turns}"
        )
    for t in turns:
        try:
            t.text.encode("utf-8")
        except UnicodeEncodeError:
            raise InvalidRequestError("invalid_text", "a history turn is not valid Unicode text") from None
    return [Turn(t.role, drop_nul(t.text)) if "\x00" in t.text else t for t in turns]


def rewrite_log(result: AnswerResult) -> dict:
    """The rewrite stage for the query log's options (nothing when the question came alone)."""
    return {"rewrite": asdict(result.rewrite)} if result.rewrite else {}


def record(state: ServiceState, result: AnswerResult) -> None:
    """The answer's stage timings into the service's metrics."""
    for stage, ms in result.timings_ms.items():
        state.metrics.stages.labels(stage).observe(ms)


def sse(event: str, data: object) -> str:
    return f"event: {event}\ndata: {json.dumps(data)}\n\n"


def started(events: Iterator[str], on_error) -> Iterator[str]:
    """Run a stream up to its first event now, so a failure there (retrieval: a vanished collection, a store
    error) is an HTTP error before any byte is sent; a failure after that becomes one last event,
    `on_error({"code", "message"})`, since the status line is gone by then."""
    first = next(events, None)  # raises before the response starts

    def rest() -> Iterator[str]:
        try:
            yield from events
        except RagError as exc:
            yield on_error({"code": exc.code, "message": str(exc)})
        except Exception:
            log.exception("stream failed mid-way")
            yield on_error({"code": "internal_error", "message": "internal error; the service log has the details"})

    return itertools.chain([] if first is None else [first], rest())
