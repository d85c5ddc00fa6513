"""Fine-tuning data from a golden set: chat examples for the generator (checked against the published chat
format in diagnostics/ladder/chat_format.py); (question, positive, hard negatives) pairs for the retriever are in
diagnostics/ladder/pairs.py.

Chat examples (`chat_examples`, OpenAI's chat fine-tuning format: one JSON object a line, {"messages": [...]})
hold exactly the prompt the service sends (engine/generation/prompt.build_messages: the system prompt file,
the few-shot examples, the numbered sources the retriever returns now, the question) and, as the assistant's
turn, the reference answer with a citation on every sentence (to the source of an expected document that
shares most terms with the sentence), or the decline sentence for a question the corpus cannot answer.

Which cases: fine-tuning teaches behaviour, not knowledge. By default only cases whose audit verdict is a
behaviour failure are suggested (unsupported claims, declining wrongly or not at all, answers that cite
nothing or cite sources that were not given); retrieval misses and wrong answers are knowledge failures a
fine-tuned generator cannot fix, and are left out with their reason.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Iterable, Sequence

from core.settings import Settings
from core.sparse import Bm25Encoder
from diagnostics.audit.golden import Case, GoldenSet
from engine.answer import sources_of
from engine.generation.citations import CITATION
from engine.generation.prompt import DECLINE, build_messages, load_fewshot, system_prompt
from engine.params import RetrievalParams
from engine.retrieval import Context, Retriever

BEHAVIOUR_VERDICTS = {"unsupported_claims", "should_have_declined", "retrieved_but_not_used"}
KNOWLEDGE_VERDICTS = {"retrieval_miss", "not_in_corpus", "wrong_answer"}


def behaviour_failure(case_report: dict) -> str | None:
    """Why an audited case is a behaviour failure (a reason to fine-tune on it), or None."""
    v = case_report.get("verdict")
    if v in BEHAVIOUR_VERDICTS:
        return v
    gen = case_report.get("generation") or {}
    if gen.get("invalid_citations"):
        return "format: cites sources that were not given"
    if gen.get("answer") and not gen.get("declined") and not gen.get("error") and not gen.get("cited"):
        return "format: an answer without citations"
    return None


def cite_reference(answer: str, contexts: Sequence[Context], rel: dict[str, int], bm25: Bm25Encoder) -> str | None:
    """The reference answer with each sentence cited to the expected-document source sharing most terms with
    it; None when no expected document is among the sources (nothing to cite: a knowledge failure)."""
    numbered = [
        (i, set(bm25.term_counts(c.title + "\n" + c.text))) for i, c in enumerate(contexts, 1) if c.doc_id in rel
    ]
    if not numbered:
        return None
    plain = CITATION.sub("", answer).strip()
    parts = [p for p in re.split(r"(?<=[.!?])\s+", plain) if p.strip()]
    out = []
    for sentence in parts:
        terms = set(bm25.term_counts(sentence))
        best = max(numbered, key=lambda item: (len(terms & item[1]), -item[0]))[0]
        body = sentence.rstrip()
        end = body[-1] if body[-1] in ".!?" else ""
        out.append(f"{body[: len(body) - len(end)].rstrip()} [{best}]{end}")
    return " ".join(out)


def chat_examples(
    golden: GoldenSet,
    retriever: Retriever,
    settings: Settings,
    collection: str,
    params: RetrievalParams,
    verdicts: dict[str, dict] | None = None,
    include_all: bool = False,
) -> tuple[list[dict], list[dict]]:
    """(examples, skipped): chat fine-tuning examples and the cases left out with their reasons.

    `verdicts`: case id -> that case's audit report entry (with generation), to pick behaviour failures.
    With `include_all` every case with a reference answer (or no expected source) is used.
    """
    system = system_prompt(settings.prompt_template, settings.llm_reasoning)
    fewshot = load_fewshot(settings.fewshot_path)
    examples, skipped = [], []
    for case in golden.cases:
        audited = (verdicts or {}).get(case.id)
        reason = behaviour_failure(audited) if audited else None
        if not include_all:
            if audited is None:
                skipped.append({"id": case.id, "reason": "not audited"})
                continue
            if reason is None:
                v = audited.get("verdict")
                why = "knowledge failure" if v in KNOWLEDGE_VERDICTS else "no behaviour failure"
                skipped.append({"id": case.id, "reason": f"{why} ({v})"})
                continue
        contexts = retriever.retrieve(collection, case.question, params).contexts
        completion = _completion(case, contexts, retriever.bm25)
        if isinstance(completion, dict):
            skipped.append({"id": case.id, **completion})
            continue
        messages = build_messages(case.question, sources_of(contexts), fewshot, system)
        messages.append({"role": "assistant", "content": completion})
        examples.append({"messages": messages, "_case": case.id, "_why": reason or "all"})
    return examples, skipped


def _completion(case: Case, contexts: list[Context], bm25: Bm25Encoder) -> str | dict:
    rel = case.relevance
    if not rel:
        return DECLINE
    if not case.answer:
        return {"reason": "no reference answer in the golden set"}
    cited = cite_reference(case.answer, contexts, rel, bm25)
    if cited is None:
        return {"reason": "knowledge failure: no expected document among the sources (fix retrieval first)"}
    return cited


def write_jsonl(rows: Iterable[dict], path: Path) -> int:
    """Rows as JSONL (keys starting with '_' are bookkeeping and left out). Returns the count."""
    n = 0
    with open(path, "w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps({k: v for k, v in row.items() if not k.startswith("_")}, ensure_ascii=False) + "\n")
            n += 1
    return n
