"""Golden labels checked against what the index holds, not trusted: does each expected document exist, does
each quote or span point at text the document holds, and which chunks hold it.

Used by the audit (a label that points at nothing is `stale_label`, the golden set's failure, with the
closest passage and its similarity) and at label time by the service (refused before anything is written).
The matching is the audit's own: case and whitespace are ignored, a quote may cross a chunk boundary.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass

from core.store import Store
from core.text import sentences
from diagnostics.audit.golden import Expected

FIELDS = ["doc_id", "text", "start", "end", "position"]


def norm(text: str) -> str:
    return " ".join(text.lower().split())


@dataclass(frozen=True)
class Chunk:
    id: str
    text: str
    start: int
    end: int


def doc_chunks(store: Store, collection: str, doc_id: str) -> list[Chunk]:
    """The document's chunks as stored, in document order."""
    hits = store.scroll(collection, FIELDS, {"doc_id": doc_id})
    chunks = [
        Chunk(str(h.id), h.payload.get("text", ""), h.payload.get("start", 0), h.payload.get("end", 0)) for h in hits
    ]
    return sorted(chunks, key=lambda c: (c.start, c.end))


def holding(e: Expected, chunks: list[Chunk]) -> set[str]:
    """Ids of the chunks holding the quote (a quote across a boundary: both chunks) or overlapping the span."""
    if e.span:
        lo, hi = e.span
        return {c.id for c in chunks if c.start < hi and lo < c.end}
    if not e.quote:
        return set()
    q = norm(e.quote)
    inside = {c.id for c in chunks if q in norm(c.text)}
    if inside:
        return inside
    # across a boundary: the shortest run of consecutive chunks whose joined text holds it
    for i in range(len(chunks)):
        joined = ""
        for j in range(i, min(i + 3, len(chunks))):
            joined += " " + chunks[j].text
            if q in norm(joined):
                return {c.id for c in chunks[i : j + 1]}
    return set()


def closest_passage(quote: str, chunks: list[Chunk]) -> tuple[str, float] | None:
    """The document sentence most like the quote, and their similarity: the share of the quote's words the
    sentence holds (0-1), ties broken by difflib's character ratio. Headings are not candidates."""
    words = set(re.findall(r"\w+", quote.lower()))
    q = norm(quote)
    best, best_key = None, None
    for c in chunks:
        for s in sentences(c.text, min_words=1) or [c.text]:
            s = s.strip()
            if not s or s.startswith("#"):
                continue
            share = len(words & set(re.findall(r"\w+", s.lower()))) / max(len(words), 1)
            key = (round(share, 3), difflib.SequenceMatcher(None, q, norm(s)).ratio())
            if best_key is None or key > best_key:
                best, best_key = s, key
    return None if best is None else (best, best_key[0])


def stale_reason(e: Expected, chunks: list[Chunk]) -> str | None:
    """Why this anchor points at nothing in the stored document, with the closest passage; None when it holds."""
    if not chunks or not (e.quote or e.span):
        return None
    if e.span:
        end = max(c.end for c in chunks)
        if e.span[0] >= end or e.span[1] > end:
            return f"the span {list(e.span)} is beyond the document's end ({end} characters)"
        return None
    if holding(e, chunks):
        return None
    reason = f"the quote {e.quote[:120]!r} is not in the document"
    near = closest_passage(e.quote, chunks)
    if near:
        reason += f"; closest sentence (holds {near[1]:.0%} of its words): {near[0][:200]!r}"
    return reason


def similar_id(doc_id: str, known: list[str] | set[str]) -> str | None:
    """An id of the index that looks like a misspelling of `doc_id` (or None)."""
    found = difflib.get_close_matches(doc_id, list(known), n=1, cutoff=0.8)
    return found[0] if found else None


def duplicate_sources(expected: tuple[Expected, ...] | list[Expected]) -> list[str]:
    """Documents a case lists twice with different grades (the audit keeps the highest)."""
    grades: dict[str, set[int]] = {}
    for e in expected:
        grades.setdefault(e.doc_id, set()).add(e.grade)
    return [f"{d} is listed with grades {sorted(g)}" for d, g in grades.items() if len(g) > 1]


def check_expected(store: Store, collection: str, expected: list[Expected]) -> list[dict]:
    """Problems of a case's labels before it is written: [{"doc_id", "problem", "message", "closest"?}] for
    unknown documents, quotes/spans that point at nothing, and a document listed twice with other grades."""
    problems = [{"doc_id": None, "problem": "duplicate_source", "message": m} for m in duplicate_sources(expected)]
    cache: dict[str, list[Chunk]] = {}
    for e in expected:
        if e.doc_id not in cache:
            cache[e.doc_id] = doc_chunks(store, collection, e.doc_id)
        chunks = cache[e.doc_id]
        if not chunks:
            problems.append(
                {
                    "doc_id": e.doc_id,
                    "problem": "unknown_document",
                    "message": f"no document {e.doc_id!r} in {collection!r}",
                }
            )
            continue
        reason = stale_reason(e, chunks)
        if reason:
            item = {"doc_id": e.doc_id, "problem": "anchor_not_found", "message": reason}
            near = closest_passage(e.quote, chunks) if e.quote else None
            if near:
                item["closest"] = {"text": near[0][:500], "similarity": near[1]}
            problems.append(item)
    # one message per document for duplicates of the same problem
    seen, out = set(), []
    for p in problems:
        key = (p["doc_id"], p["problem"], p["message"])
        if key not in seen:
            seen.add(key)
            out.append(p)
    return out
