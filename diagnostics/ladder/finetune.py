"""Fine-tuning data from a golden set: chat examples for the generator, (question, positive, hard negatives)
pairs for the retriever.

Chat examples (`chat_examples`, OpenAI's chat fine-tuning format: one JSON object a line, {"messages": [...]})
hold exactly the prompt the service sends (engine/generation/prompt.build_messages: the system prompt file,
the few-shot examples, the numbered sources the retriever returns now, the question) and, as the assistant's
turn, the reference answer with a citation on every sentence (to the source of an expected document that
shares most terms with the sentence), or the decline sentence for a question the corpus cannot answer.

Which cases: fine-tuning teaches behaviour, not knowledge. By default only cases whose audit verdict is a
behaviour failure are suggested (unsupported claims, declining wrongly or not at all, answers that cite
nothing or cite sources that were not given); retrieval misses and wrong answers are knowledge failures a
fine-tuned generator cannot fix, and are left out with their reason.

Pairs (`retriever_pairs`) take the positive passage from the expected document's best retrieved chunk (or
its chunk holding the quote/span, else its first chunk) and hard negatives from the audit's candidates:
the best-ranked chunks of other documents. Passages are written as ingest embeds them (title > headings,
then the text: ingest.points.embed_text).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from types import SimpleNamespace
from typing import Callable, Iterable, Sequence

from core.settings import Settings
from core.sparse import Bm25Encoder
from core.store import Store
from diagnostics.audit.golden import Case, GoldenSet
from engine.answer import sources_of
from engine.generation.citations import CITATION
from engine.generation.prompt import DECLINE, build_messages, load_fewshot, system_prompt
from engine.params import RetrievalParams
from engine.retrieval import Context, Retriever
from ingest.points import embed_text

BEHAVIOUR_VERDICTS = {"unsupported_claims", "should_have_declined", "retrieved_but_not_used"}
KNOWLEDGE_VERDICTS = {"retrieval_miss", "not_in_corpus", "wrong_answer"}
MIN_EXAMPLES = 10  # OpenAI refuses fewer
RECOMMENDED_EXAMPLES = (50, 100)
MAX_EXAMPLE_TOKENS = 65_536  # per example, gpt-4o-mini's training context; longer examples are truncated
ROLES = {"system", "user", "assistant", "tool", "function"}
MESSAGE_KEYS = {"role", "content", "name", "weight", "function_call", "tool_calls", "tool_call_id"}


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


O200K_URL = "https://openaipublic.blob.core.windows.net/encodings/o200k_base.tiktoken"


def _tiktoken_cached() -> bool:
    """Whether tiktoken's o200k_base table is already on disk: we never let it download (offline by design)."""
    import hashlib
    import os
    import tempfile

    cache = os.environ.get("TIKTOKEN_CACHE_DIR") or os.environ.get("DATA_GYM_CACHE_DIR")
    cache = cache or os.path.join(tempfile.gettempdir(), "data-gym-cache")
    return os.path.exists(os.path.join(cache, hashlib.sha1(O200K_URL.encode()).hexdigest()))


def token_counter(fallback: Callable[[str], int] | None = None) -> tuple[str, Callable[[str], int]]:
    """(name, count): OpenAI's o200k_base tokenizer when tiktoken's table is on disk, else `fallback` (named
    approximate), else about four characters a token."""
    if _tiktoken_cached():
        import tiktoken

        enc = tiktoken.get_encoding("o200k_base")
        return "tiktoken o200k_base", lambda text: len(enc.encode(text))
    if fallback is not None:
        return "approximate (the embedding model's tokenizer; no tiktoken table on disk)", fallback
    return "approximate (4 characters a token)", lambda text: max(1, len(text) // 4)


def validate_chat_jsonl(
    path: Path, count: Callable[[str], int] | None = None, tokenizer: str | None = None, epochs: int = 3
) -> dict:
    """Check a chat fine-tuning file against OpenAI's published format (the checks of OpenAI's cookbook,
    "Data preparation and analysis for chat model fine-tuning"): one JSON object a line with a non-empty
    `messages` list; each message a known role with string content and only known keys; `weight` 0 or 1 and
    only on assistant turns; at least one assistant turn per example. Adds token counts (per message 3
    tokens of overhead, 3 for the reply's priming, as the cookbook counts) and warnings under the minimum
    (10) and recommended (50-100) example counts.
    """
    if count is None:
        tokenizer, count = token_counter()
    errors: dict[str, list[int]] = {}
    lengths, assistant_lengths = [], []

    def fail(kind: str, lineno: int) -> None:
        errors.setdefault(kind, []).append(lineno)

    lines = Path(path).read_text(encoding="utf-8").splitlines()
    n = 0
    for lineno, line in enumerate(lines, 1):
        if not line.strip():
            fail("blank_line", lineno)
            continue
        n += 1
        try:
            ex = json.loads(line)
        except json.JSONDecodeError:
            fail("invalid_json", lineno)
            continue
        if not isinstance(ex, dict):
            fail("data_type", lineno)
            continue
        messages = ex.get("messages")
        if not isinstance(messages, list) or not messages:
            fail("missing_messages_list", lineno)
            continue
        if set(ex) - {"messages", "tools", "parallel_tool_calls", "functions"}:
            fail("unknown_example_keys", lineno)
        tokens = 3
        for m in messages:
            if not isinstance(m, dict) or "role" not in m or ("content" not in m and "tool_calls" not in m):
                fail("message_missing_key", lineno)
                continue
            if set(m) - MESSAGE_KEYS:
                fail("message_unrecognized_key", lineno)
            if m["role"] not in ROLES:
                fail("unrecognized_role", lineno)
            content = m.get("content")
            if content is not None and not isinstance(content, str):
                fail("missing_content", lineno)
                content = ""
            if "weight" in m and (m["role"] != "assistant" or m["weight"] not in (0, 1)):
                fail("invalid_weight", lineno)
            t = count(content or "")
            tokens += 3 + t + (1 if "name" in m else 0)
            if m["role"] == "assistant":
                assistant_lengths.append(t)
        if not any(isinstance(m, dict) and m.get("role") == "assistant" for m in messages):
            fail("example_missing_assistant_message", lineno)
        lengths.append(tokens)
    warnings = []
    if n < MIN_EXAMPLES:
        warnings.append(f"{n} examples: OpenAI requires at least {MIN_EXAMPLES}")
    elif n < RECOMMENDED_EXAMPLES[0]:
        warnings.append(
            f"{n} examples: {RECOMMENDED_EXAMPLES[0]}-{RECOMMENDED_EXAMPLES[1]} are recommended for a clear improvement"
        )
    too_long = sum(1 for t in lengths if t > MAX_EXAMPLE_TOKENS)
    if too_long:
        warnings.append(f"{too_long} examples over {MAX_EXAMPLE_TOKENS} tokens will be truncated")
    stats = {
        "tokenizer": tokenizer,
        "total": sum(lengths),
        "min": min(lengths, default=0),
        "max": max(lengths, default=0),
        "mean": round(sum(lengths) / len(lengths), 1) if lengths else 0,
        "assistant_mean": round(sum(assistant_lengths) / len(assistant_lengths), 1) if assistant_lengths else 0,
        "billed_for_epochs": {"epochs": epochs, "tokens": epochs * sum(min(t, MAX_EXAMPLE_TOKENS) for t in lengths)},
    }
    return {"ok": not errors and n > 0, "examples": n, "format_errors": errors, "tokens": stats, "warnings": warnings}


def _passage(payload: dict) -> str:
    """A chunk as ingest embeds it (title > headings, then the text)."""
    doc = SimpleNamespace(title=payload.get("title") or "")
    chunk = SimpleNamespace(heading_path=payload.get("heading_path") or [], text=payload.get("text") or "")
    return embed_text(doc, chunk)


PASSAGE_FIELDS = ["doc_id", "title", "heading_path", "text", "start", "end", "position"]


def retriever_pairs(
    golden: GoldenSet, report: dict, store: Store, collection: str, negatives: int = 3
) -> tuple[list[dict], list[dict]]:
    """(pairs, skipped): one row per (question, expected document) with its positive passage and up to
    `negatives` hard negatives, the best-ranked retrieved chunks of other documents in the audit `report`."""
    by_id = {c.id: c for c in golden.cases}
    rows, skipped = [], []
    for audited in report["cases"]:
        case = by_id.get(audited["id"])
        if case is None or not case.relevance:
            skipped.append({"id": audited["id"], "reason": "no expected document"})
            continue
        rel = case.relevance
        neg_ids, seen_docs = [], set()
        for r in audited["retrieved"]:
            if r["doc_id"] not in rel and r["doc_id"] not in seen_docs and len(neg_ids) < negatives:
                neg_ids.append(r["chunk_id"])
                seen_docs.add(r["doc_id"])
        got = {h.id: h.payload for h in store.get_points(collection, neg_ids, PASSAGE_FIELDS)} if neg_ids else {}
        hard = [_passage(got[i]) for i in neg_ids if i in got]
        for doc_id in rel:
            positive = _positive(case, doc_id, audited, store, collection)
            if positive is None:
                skipped.append({"id": case.id, "doc_id": doc_id, "reason": "expected document not in the collection"})
                continue
            rows.append(
                {
                    "id": case.id,
                    "question": case.question,
                    "positive": positive,
                    "negatives": hard,
                    "positive_doc": doc_id,
                    "negative_docs": sorted(seen_docs),
                }
            )
    return rows, skipped


def _positive(case: Case, doc_id: str, audited: dict, store: Store, collection: str) -> str | None:
    retrieved = [r["chunk_id"] for r in audited["retrieved"] if r["doc_id"] == doc_id]
    if retrieved:
        hits = store.get_points(collection, retrieved[:1], PASSAGE_FIELDS)
        if hits:
            return _passage(hits[0].payload)
    chunks = sorted(
        (h.payload for h in store.scroll(collection, PASSAGE_FIELDS, {"doc_id": doc_id})),
        key=lambda p: p.get("position", 0),
    )
    if not chunks:
        return None
    for e in case.expected:
        if e.doc_id != doc_id:
            continue
        for p in chunks:
            if e.quote and " ".join(e.quote.lower().split()) in " ".join(p["text"].lower().split()):
                return _passage(p)
            if e.span and p["start"] < e.span[1] and e.span[0] < p["end"]:
                return _passage(p)
    return _passage(chunks[0])


def validate_pairs_jsonl(path: Path) -> dict:
    """Every line a {question, positive, negatives[]} object with non-empty strings."""
    errors: dict[str, list[int]] = {}
    n = 0
    for lineno, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        n += 1
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            errors.setdefault("invalid_json", []).append(lineno)
            continue
        ok = (
            isinstance(row, dict)
            and all(isinstance(row.get(k), str) and row[k].strip() for k in ("question", "positive"))
            and isinstance(row.get("negatives"), list)
            and all(isinstance(x, str) and x.strip() for x in row["negatives"])
        )
        if not ok:
            errors.setdefault("bad_row", []).append(lineno)
    return {"ok": not errors and n > 0, "pairs": n, "errors": errors}
