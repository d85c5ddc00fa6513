"""Ingest records for the audit: which files failed to ingest, and why.

An expected document missing from the index is `failed_to_ingest` (with the parse reason) when an ingest
record names its file as failed. Records are what `rag ingest --json` prints (an ingest report: `files`,
each with `path`, `status`, `reason`) or service job records (`GET /v1/jobs/{id}`, or the JSON files under
`RAG_DATA_DIR/jobs`: the report is under `report`). A document's id is `<folder name>/<relative path>` or
the file's name, so a failed file explains the document ids its path ends with. A failed BEIR corpus file
(one file, many documents) cannot be matched to ids this way: pass --corpus too.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable


def load_ingest_records(paths: Iterable[Path | str]) -> list[dict]:
    """Ingest reports or job records from JSON files, or from every *.json in a folder (a jobs folder).
    Raises ValueError for a file that is not a JSON object or list of them."""
    out: list[dict] = []
    for p in map(Path, paths):
        files = sorted(p.glob("*.json")) if p.is_dir() else [p]
        for f in files:
            try:
                data = json.loads(f.read_text())
            except (OSError, json.JSONDecodeError) as exc:
                raise ValueError(f"ingest record {f}: {exc}") from exc
            rows = data if isinstance(data, list) else [data]
            if not all(isinstance(r, dict) for r in rows):
                raise ValueError(f"ingest record {f}: expected a JSON object (an ingest report or a job)")
            out.extend(rows)
    return out


def failed_files(records: Iterable[dict]) -> list[tuple[str, str]]:
    """(path, reason) of every file a record reports failed, latest record last. A later record in which the
    same file succeeded clears it."""
    state: dict[str, str | None] = {}
    for rec in records:
        report = rec.get("report") if isinstance(rec.get("report"), dict) else rec
        for f in report.get("files") or []:
            if not isinstance(f, dict) or "path" not in f:
                continue
            if f.get("status") == "failed":
                state[str(f["path"])] = str(f.get("reason") or "failed (no reason recorded)")
            elif f.get("status") in ("added", "updated", "unchanged"):
                state[str(f["path"])] = None
    return [(p, r) for p, r in state.items() if r is not None]


def failure_for(doc_id: str, failures: list[tuple[str, str]]) -> str | None:
    """The reason the file holding `doc_id` failed, or None when no record names it."""
    for path, reason in failures:
        norm = path.replace("\\", "/")
        if norm == doc_id or norm.endswith("/" + doc_id):
            return f"{path}: {reason}"
    return None
