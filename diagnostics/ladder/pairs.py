"""Retriever training pairs from an audited golden set: (question, positive passage, hard negatives).

Pairs (`retriever_pairs`) take the positive passage from the expected document's best retrieved chunk (or
its chunk holding the quote/span, else its first chunk) and hard negatives from the audit's candidates:
the best-ranked chunks of other documents. Passages are written as ingest embeds them (title > headings,
then the text: ingest.points.embed_text).
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

from core.store import Store
from diagnostics.audit.golden import Case, GoldenSet
from ingest.points import embed_text


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
