"""Golden sets labelled in the web UI: one JSONL file per collection under data_dir/golden/, appended to.

A new case is validated with diagnostics.audit.golden's loader on the whole file as it would be (the same loader
`rag audit` uses) before the file is replaced atomically, so an invalid case never lands and never costs
the file; the error names the file and line as the UI shows them, never a server path.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Callable

from filelock import FileLock

from core.settings import Settings
from diagnostics.audit.golden import Case, GoldenSetError, load_golden

FOLDER = "golden"


def golden_path(settings: Settings, collection: str) -> Path:
    return Path(settings.data_dir) / FOLDER / f"{collection}.jsonl"


def display_name(collection: str) -> str:
    return f"{FOLDER}/{collection}.jsonl"


def read_rows(settings: Settings, collection: str) -> list[dict]:
    """The file's rows as they are (stubs too); unreadable lines are skipped here, reported by `validate`."""
    path = golden_path(settings, collection)
    if not path.exists():
        return []
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return rows


def validate(settings: Settings, collection: str) -> str | None:
    """The loader's complaint about the file, or None when it loads (a missing file is not an error)."""
    path = golden_path(settings, collection)
    if not path.exists():
        return None
    try:
        load_golden(path)
    except GoldenSetError as exc:
        return str(exc).replace(str(path), display_name(collection))
    return None


def append_case(settings: Settings, collection: str, case: dict, check: Callable[[Case], None] | None = None) -> int:
    """Append one case; returns the number of rows in the file. Raises GoldenSetError (file and line named
    as the UI shows them) when the file with the case would not load, and whatever `check` raises on the
    parsed case (the labels looked up in the index) before anything is written."""
    path = golden_path(settings, collection)
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(path) + ".lock", timeout=30):
        before = path.read_text(encoding="utf-8") if path.exists() else ""
        if before and not before.endswith("\n"):
            before += "\n"
        after = before + json.dumps(case, ensure_ascii=False) + "\n"
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{collection}.", suffix=".jsonl")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(after)
            try:
                loaded = load_golden(Path(tmp))
            except GoldenSetError as exc:
                raise GoldenSetError(str(exc).replace(tmp, display_name(collection))) from None
            if check is not None and loaded.cases:
                check(loaded.cases[-1])
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    return sum(1 for line in after.splitlines() if line.strip())
