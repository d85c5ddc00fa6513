"""Golden sets on the server: each collection's cases in the service database (service/db/golden.py), with an
append-only history of every change (who, what, when, the case before and after), so replicas share one set
and a bad edit can be undone.

- A case is the audit loader's JSONL row (diagnostics.audit.golden): every write is validated by that loader
  first (the error names the line the case has when the set is written out, `golden/<collection>.jsonl, line
  N`, never a server path), then by the caller's check (the labels looked up in the index), before the write
  transaction opens. One write is one row and one history entry, never a rewrite of the set.
- `rows()` writes the set out in the loader's format (position order), for audits and experiments.
- A collection's old file, data_dir/golden/<collection>.jsonl, is imported once, on first use (a row in
  golden_sets says it was; replicas starting together take turns on a lock).
- A set holds at most `golden_max_cases` cases (409 `golden_set_full`).
- A revert puts a case back as it was before the change, only while the case is as that change left it (409
  `revert_conflict` otherwise: undo the later change first); it is a change itself, so it can be undone too.
- A query the case was made from is marked labelled in the log (and unmarked when the case is deleted).
"""

from __future__ import annotations

import json
import tempfile
import threading
import time
from pathlib import Path
from typing import Callable

from sqlalchemy import Text, cast, func, or_, select, update

from core.errors import InvalidRequestError
from core.settings import Settings
from diagnostics.audit.golden import Case, GoldenSetError, load_golden
from service.db import Database
from service.db.golden import GoldenCase, GoldenChange, GoldenSet, norm_question
from service.db.querylog import QueryRecord

FOLDER = "golden"
IMPORTED_BY = "import"


def golden_path(settings: Settings, collection: str) -> Path:
    return Path(settings.data_dir) / FOLDER / f"{collection}.jsonl"


def display_name(collection: str) -> str:
    return f"{FOLDER}/{collection}.jsonl"


def file_rows(path: Path) -> list[dict]:
    """A JSONL file's object rows as they are (stubs too); lines that are no JSON object are skipped."""
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(row, dict):
                rows.append(row)
    return rows


def check_row(row: dict, collection: str, line: int) -> Case | None:
    """The row as the audit's loader reads it (None for a `needs_label` stub). Raises GoldenSetError naming
    `golden/<collection>.jsonl, line <line>`: the line the case has when the set is written out."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "case.jsonl"
        path.write_text(json.dumps(row, ensure_ascii=False) + "\n", encoding="utf-8")
        try:
            loaded = load_golden(path)
        except GoldenSetError as exc:
            if row.get("needs_label") and "no labelled cases" in str(exc):
                return None
            message = str(exc).replace(f"{path}, line 1", f"{display_name(collection)}, line {line}")
            raise GoldenSetError(message.replace(str(path), display_name(collection))) from None
    return loaded.cases[0]


def case_row(
    case_id: str, question: str, expected: list[dict], answer: str | None, unanswerable: bool, tags: list[str]
) -> dict:
    """A case's row from a labelling form: an unanswerable case expects nothing and keeps no answer."""
    row: dict = {"id": case_id, "question": question.strip(), "expected": [] if unanswerable else expected}
    if answer and answer.strip() and not unanswerable:
        row["answer"] = answer.strip()
    kept = [t for t in tags if unanswerable or t != "unanswerable"]  # the tag says what `expected` says
    row["tags"] = list(dict.fromkeys([*kept, *(["unanswerable"] if unanswerable else [])]))
    return row


def case_out(c: GoldenCase) -> dict:
    return {
        "id": c.case_id,
        "case": c.data,
        "version": c.version,
        "position": c.position,
        "updated_at": c.updated_at,
        "updated_by": c.updated_by,
    }


def change_out(ch: GoldenChange, reverted_by: int | None = None) -> dict:
    return {
        "id": ch.id,
        "case_id": ch.case_id,
        "action": ch.action,
        "at": ch.at,
        "who": ch.who,
        "before": ch.before,
        "after": ch.after,
        "reverts": ch.reverts,
        "reverted_by": reverted_by,
    }


def _like(text: str) -> str:
    return "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def _not_found(case_id: str) -> InvalidRequestError:
    return InvalidRequestError("case_not_found", f"no case {case_id[:128]!r} in this golden set", 404)


class GoldenStore:
    def __init__(self, settings: Settings, db: Database):
        self.settings, self.db = settings, db
        self._ready: set[str] = set()  # collections known to be imported (a set never goes back)
        self._mutex = threading.Lock()

    # the old file, imported once
    def ensure(self, collection: str) -> None:
        """Import data_dir/golden/<collection>.jsonl into the database if this collection's set was never used."""
        if collection in self._ready:
            return
        with self.db.session(read_only=True) as s:
            done = s.get(GoldenSet, collection) is not None
        if not done:
            with self._mutex, self.db.session() as s:
                self.db.xact_lock(s, "golden", collection)
                if s.get(GoldenSet, collection) is None:
                    self._import(s, collection)
        self._ready.add(collection)

    def ensure_files(self, allowed: Callable[[str], bool] = lambda c: True) -> None:
        """Import every old golden file not imported yet (of the collections `allowed`)."""
        folder = Path(self.settings.data_dir) / FOLDER
        if not folder.is_dir():
            return
        for path in folder.glob("*.jsonl"):
            if path.stem not in self._ready and allowed(path.stem) and len(path.stem) <= 64:
                self.ensure(path.stem)

    def _import(self, s, collection: str) -> None:
        path = golden_path(self.settings, collection)
        rows = file_rows(path) if path.is_file() else []
        now, seen, renamed = time.time(), set(), []
        for n, row in enumerate(rows, 1):
            raw = row.get("id")
            cid = str(raw) if isinstance(raw, (str, int)) and not isinstance(raw, bool) and str(raw) else f"line-{n}"
            if cid in seen or len(cid) > 128:  # the loader would refuse the file: keep the row, under a new id
                new = f"{cid[:100]}~{n}"
                renamed.append({"line": n, "id": cid[:128], "now": new})
                cid = new
            seen.add(cid)
            row = {**row, "id": cid}
            q = row.get("question")
            s.add(
                GoldenCase(
                    collection=collection,
                    case_id=cid,
                    position=n,
                    question_norm=norm_question(q) if isinstance(q, str) else "",
                    data=row,
                    version=1,
                    updated_at=now,
                    updated_by=IMPORTED_BY,
                )
            )
        s.add(GoldenSet(collection=collection, created_at=now, imported=len(rows)))
        if rows:
            note = {"file": display_name(collection), "cases": len(rows), "renamed": renamed}
            s.add(GoldenChange(collection=collection, case_id="", action="import", at=now, who=IMPORTED_BY, after=note))

    # reads
    def rows(self, collection: str) -> list[dict]:
        """The set in the loader's format: each case's row, in position order (stubs too)."""
        self.ensure(collection)
        with self.db.session(read_only=True) as s:
            stmt = select(GoldenCase.data).where(GoldenCase.collection == collection)
            return list(s.scalars(stmt.order_by(GoldenCase.position, GoldenCase.case_id)).all())

    def validate(self, collection: str) -> str | None:
        """The loader's complaint about the set as written out, or None when it loads (or is empty)."""
        rows = self.rows(collection)
        if not rows:
            return None
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "golden.jsonl"
            path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
            try:
                load_golden(path)
            except GoldenSetError as exc:
                return str(exc).replace(str(path), display_name(collection))
        return None

    def count(self, collection: str) -> int:
        self.ensure(collection)
        with self.db.session(read_only=True) as s:
            return self._count(s, collection)

    @staticmethod
    def _count(s, collection: str) -> int:
        return s.scalar(select(func.count()).select_from(GoldenCase).where(GoldenCase.collection == collection))

    def page(self, collection: str, q: str | None = None, limit: int = 50, offset: int = 0) -> dict:
        """Cases in position order; `q`: words of the question, or text anywhere in the case (id, sources,
        answer, tags), case-insensitive."""
        self.ensure(collection)
        stmt = select(GoldenCase).where(GoldenCase.collection == collection)
        if q and q.strip():
            text = q.strip().lower()
            conds = [
                func.lower(GoldenCase.case_id).like(_like(text), escape="\\"),
                func.lower(cast(GoldenCase.data, Text)).like(_like(text), escape="\\"),
            ]
            if norm_question(text):
                conds.append(GoldenCase.question_norm.like(_like(norm_question(text)), escape="\\"))
            stmt = stmt.where(or_(*conds))
        with self.db.session(read_only=True) as s:
            total = s.scalar(select(func.count()).select_from(stmt.subquery()))
            found = s.scalars(stmt.order_by(GoldenCase.position, GoldenCase.case_id).limit(limit).offset(offset))
            items = [case_out(c) for c in found.all()]
            return {"total": total, "size": self._count(s, collection), "items": items}

    def get(self, collection: str, case_id: str) -> dict:
        self.ensure(collection)
        with self.db.session(read_only=True) as s:
            c = s.get(GoldenCase, (collection, case_id))
            if c is None:
                raise _not_found(case_id)
            return case_out(c)

    def history(self, collection: str, case_id: str | None = None, limit: int = 50, before: int | None = None) -> dict:
        """Changes newest first (of one case, or the whole set); `before`: a change id, for the next page."""
        self.ensure(collection)
        stmt = select(GoldenChange).where(GoldenChange.collection == collection)
        if case_id is not None:
            stmt = stmt.where(GoldenChange.case_id == case_id)
        if before is not None:
            stmt = stmt.where(GoldenChange.id < before)
        with self.db.session(read_only=True) as s:
            changes = s.scalars(stmt.order_by(GoldenChange.id.desc()).limit(limit)).all()
            ids = [ch.id for ch in changes]
            undone = (
                dict(
                    s.execute(
                        select(GoldenChange.reverts, func.min(GoldenChange.id))
                        .where(GoldenChange.collection == collection, GoldenChange.reverts.in_(ids))
                        .group_by(GoldenChange.reverts)
                    ).all()
                )
                if ids
                else {}
            )
            items = [change_out(ch, undone.get(ch.id)) for ch in changes]
        return {"items": items, "next_before": items[-1]["id"] if len(items) == limit else None}

    def line_of(self, collection: str, case_id: str | None) -> int:
        """The line a case has (or a new one would have) when the set is written out."""
        self.ensure(collection)
        with self.db.session(read_only=True) as s:
            if case_id is not None and (c := s.get(GoldenCase, (collection, case_id))) is not None:
                before = (
                    select(func.count())
                    .select_from(GoldenCase)
                    .where(
                        GoldenCase.collection == collection,
                        or_(
                            GoldenCase.position < c.position,
                            (GoldenCase.position == c.position) & (GoldenCase.case_id < c.case_id),
                        ),
                    )
                )
                return s.scalar(before) + 1
            return self._count(s, collection) + 1

    # writes: each one row and one history entry, in one transaction that holds the set's lock
    def _change(self, s, collection, case_id, action, who, before, after, position=None, reverts=None) -> GoldenChange:
        ch = GoldenChange(
            collection=collection,
            case_id=case_id,
            action=action,
            at=time.time(),
            who=who,
            before=before,
            after=after,
            position=position,
            reverts=reverts,
        )
        s.add(ch)
        s.flush()
        return ch

    def _full(self, s, collection: str) -> None:
        limit = self.settings.golden_max_cases
        if self._count(s, collection) >= limit:
            raise InvalidRequestError(
                "golden_set_full",
                f"the golden set of {collection!r} holds {limit} cases, the limit (RAG_GOLDEN_MAX_CASES); "
                "delete cases or raise the limit",
                409,
            )

    def _insert(self, s, collection: str, row: dict, who: str, position: int | None = None) -> GoldenCase:
        if position is None:
            top = s.scalar(select(func.max(GoldenCase.position)).where(GoldenCase.collection == collection))
            position = (top or 0) + 1
        c = GoldenCase(
            collection=collection,
            case_id=row["id"],
            position=position,
            question_norm=norm_question(row.get("question") or ""),
            data=row,
            version=1,
            updated_at=time.time(),
            updated_by=who,
        )
        s.add(c)
        s.flush()
        return c

    @staticmethod
    def _mark(s, collection: str, row: dict | None, case_id: str | None) -> None:
        """The logged query a case was made from: labelled by it (`case_id`), or no longer (None)."""
        query_id = ((row or {}).get("source") or {}).get("query_id")
        if isinstance(query_id, str) and query_id:
            s.execute(
                update(QueryRecord)
                .where(QueryRecord.id == query_id, QueryRecord.collection == collection)
                .values(labelled_case=case_id)
            )

    def create(self, collection: str, row: dict, who: str, check: Callable[[Case], None] | None = None) -> dict:
        """Add one case (validated, then `check`ed, before anything is written). 409 `case_exists` when the set
        has its id, `golden_set_full` at the cap."""
        case = check_row(row, collection, self.line_of(collection, None))
        if check is not None and case is not None:
            check(case)
        with self.db.session() as s:
            self.db.xact_lock(s, "golden", collection)
            if s.get(GoldenCase, (collection, row["id"])) is not None:
                raise InvalidRequestError(
                    "case_exists",
                    f"duplicate id {row['id'][:128]!r}: the golden set has a case with this id (edit it instead)",
                    409,
                )
            self._full(s, collection)
            c = self._insert(s, collection, row, who)
            ch = self._change(s, collection, c.case_id, "create", who, None, row, c.position)
            self._mark(s, collection, row, c.case_id)
            return {**case_out(c), "change_id": ch.id, "rows": self._count(s, collection)}

    def replace(
        self,
        collection: str,
        case_id: str,
        build: Callable[[dict], dict],
        who: str,
        version: int | None = None,
        check: Callable[[Case], None] | None = None,
    ) -> dict:
        """Edit a case: `build(old row)` gives the new row, validated and `check`ed before the write. With
        `version`, 409 `case_changed` when someone changed it since."""
        current = self.get(collection, case_id)
        self._same_version(current, version)
        row = build(current["case"])
        case = check_row(row, collection, self.line_of(collection, case_id))
        if check is not None and case is not None:
            check(case)
        with self.db.session() as s:
            self.db.xact_lock(s, "golden", collection)
            c = s.get(GoldenCase, (collection, case_id))
            if c is None:
                raise _not_found(case_id)
            if c.version != current["version"]:  # changed while this edit was checked
                self._same_version(case_out(c), current["version"])
            before = c.data
            if before == row:
                return {**case_out(c), "change_id": None}
            c.data, c.question_norm = row, norm_question(row.get("question") or "")
            c.version, c.updated_at, c.updated_by = c.version + 1, time.time(), who
            ch = self._change(s, collection, case_id, "update", who, before, row, c.position)
            return {**case_out(c), "change_id": ch.id}

    @staticmethod
    def _same_version(current: dict, version: int | None) -> None:
        if version is not None and version != current["version"]:
            raise InvalidRequestError(
                "case_changed",
                f"case {current['id'][:128]!r} was changed since version {version} (now {current['version']}, by "
                f"{current['updated_by']}); reload it and edit again",
                409,
            )

    def delete(self, collection: str, case_id: str, who: str, version: int | None = None) -> dict:
        self.ensure(collection)
        with self.db.session() as s:
            self.db.xact_lock(s, "golden", collection)
            c = s.get(GoldenCase, (collection, case_id))
            if c is None:
                raise _not_found(case_id)
            self._same_version(case_out(c), version)
            ch = self._change(s, collection, case_id, "delete", who, c.data, None, c.position)
            self._mark(s, collection, c.data, None)
            s.delete(c)
            s.flush()
            return {**change_out(ch), "rows": self._count(s, collection)}

    def revert(self, collection: str, change_id: int, who: str) -> dict:
        """Put the case back as it was before change `change_id`; a change recorded like any other."""
        self.ensure(collection)
        with self.db.session() as s:
            self.db.xact_lock(s, "golden", collection)
            ch = s.get(GoldenChange, change_id)
            if ch is None or ch.collection != collection:
                raise InvalidRequestError("change_not_found", f"no change {change_id} in this golden set", 404)
            if ch.action == "import":
                raise InvalidRequestError(
                    "not_revertable", "the import of the old file cannot be undone; delete the cases instead", 409
                )
            c = s.get(GoldenCase, (collection, ch.case_id))
            now = c.data if c is not None else None
            if now != ch.after:
                later = s.scalar(
                    select(func.max(GoldenChange.id)).where(
                        GoldenChange.collection == collection, GoldenChange.case_id == ch.case_id
                    )
                )
                raise InvalidRequestError(
                    "revert_conflict",
                    f"case {ch.case_id[:128]!r} was changed after change {ch.id} (by change {later}); "
                    "undo that change first",
                    409,
                )
            target = ch.before
            if target is None:  # undo a create: the case goes
                out = self._change(s, collection, ch.case_id, "revert", who, now, None, c.position, ch.id)
                self._mark(s, collection, now, None)
                s.delete(c)
            elif c is None:  # undo a delete: the case comes back where it was
                self._full(s, collection)
                c = self._insert(s, collection, target, who, ch.position)
                out = self._change(s, collection, ch.case_id, "revert", who, None, target, c.position, ch.id)
                self._mark(s, collection, target, ch.case_id)
            else:
                c.data, c.question_norm = target, norm_question(target.get("question") or "")
                c.version, c.updated_at, c.updated_by = c.version + 1, time.time(), who
                out = self._change(s, collection, ch.case_id, "revert", who, now, target, c.position, ch.id)
            s.flush()
            return {**change_out(out), "rows": self._count(s, collection)}

    # the log's queries and the set
    def annotate(self, items: list[dict]) -> list[dict]:
        """Set each logged query's `labelled_case_id`: the case made from it, while it exists, else a case of
        its collection's golden set asking the same question (words compared, case ignored); else None."""
        for coll in {it["collection"] for it in items}:
            self.ensure(coll)
        keys = {(it["collection"], norm_question(it.get("question") or "")) for it in items}
        own = {(it["collection"], it["labelled_case"]) for it in items if it.get("labelled_case")}
        exists, by_question = set(), {}
        with self.db.session(read_only=True) as s:
            for coll in {k[0] for k in keys}:
                norms = sorted({k[1] for k in keys if k[0] == coll and k[1]})
                ids = sorted({k[1] for k in own if k[0] == coll})
                for i in range(0, max(len(norms), len(ids), 1), 500):
                    cond = or_(
                        GoldenCase.question_norm.in_(norms[i : i + 500]), GoldenCase.case_id.in_(ids[i : i + 500])
                    )
                    stmt = select(GoldenCase.case_id, GoldenCase.question_norm, GoldenCase.position).where(
                        GoldenCase.collection == coll, cond
                    )
                    for cid, qn, pos in s.execute(stmt).all():
                        exists.add((coll, cid))
                        prev = by_question.get((coll, qn))
                        if prev is None or (pos, cid) < prev:
                            by_question[(coll, qn)] = (pos, cid)
        for it in items:
            coll, mine = it["collection"], it.get("labelled_case")
            if mine and (coll, mine) in exists:
                it["labelled_case_id"] = mine
            else:
                hit = by_question.get((coll, norm_question(it.get("question") or "")))
                it["labelled_case_id"] = hit[1] if hit else None
        return items
