"""Golden sets on the server: a case labelled or edited, the set written out, its cases paged, its history."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

SOURCE_HELP = "Sources: doc_id, and a quote or a [start, end) span, grade (validated by the loader)."


class CaseFields(BaseModel):
    """What the labelling form and the case editor send: the same fields, the same checks."""

    model_config = ConfigDict(extra="forbid")

    question: str = Field(min_length=1, max_length=4000)
    expected: list[dict] = Field([], max_length=50, description=SOURCE_HELP)
    answer: str | None = Field(None, max_length=8000, description="Reference answer.")
    unanswerable: bool = Field(False, description="The corpus cannot answer it: expected is empty, decline is right.")
    tags: list[str] = Field([], max_length=20)


class LabelRequest(CaseFields):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "query_id": "3f2a...",
                    "question": "What happens to a corrupt PDF during ingest?",
                    "expected": [{"doc_id": "docs/ingesting.md", "quote": "fails that file alone", "grade": 2}],
                    "answer": "The file fails alone; the rest of the job goes on.",
                }
            ]
        },
    )
    id: str | None = Field(None, max_length=128, description="Case id; default q-<query id> or a new one.")
    query_id: str | None = Field(None, max_length=64, description="The logged query this case comes from.")
    audit_id: str | None = Field(None, max_length=64, description="Or the audit (and case) it comes from.")
    audit_case: str | None = Field(None, max_length=128)


class CaseEdit(CaseFields):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "question": "What happens to a corrupt PDF during ingest?",
                    "expected": [{"doc_id": "docs/ingesting.md", "quote": "fails that file alone", "grade": 3}],
                    "version": 1,
                }
            ]
        },
    )
    id: str | None = Field(None, max_length=128, description="The case's id, if given: the one in the path.")
    version: int | None = Field(
        None, ge=1, description="The version edited: 409 case_changed when the case changed since (no check if null)."
    )


class GoldenSetOut(BaseModel):
    collection: str
    file: str = Field(description="The set written out as a file (golden/<collection>.jsonl), as errors name it.")
    rows: list[dict[str, Any]] = Field(description="The cases in the audit loader's format, in order.")
    error: str | None = Field(description="The loader's complaint about the set; null when it loads.")


class GoldenCaseOut(BaseModel):
    id: str
    case: dict[str, Any] = Field(description="The case in the audit loader's format.")
    version: int = Field(description="Bumped by every change: send it back to edit or delete safely.")
    position: int = Field(description="Where it sits when the set is written out.")
    updated_at: float
    updated_by: str = Field(description="Who changed it last: the API key's owner id, 'open' or 'import'.")


class CaseAdded(GoldenCaseOut):
    file: str
    rows: int = Field(description="Cases in the set now.")
    change_id: int


class CaseUpdated(GoldenCaseOut):
    change_id: int | None = Field(description="The history entry; null when nothing changed.")


class GoldenPage(BaseModel):
    collection: str
    total: int = Field(description="Cases matching the search.")
    size: int = Field(description="Cases in the set.")
    limit: int = Field(description="The most cases the set may hold.")
    items: list[GoldenCaseOut]


class GoldenChangeOut(BaseModel):
    id: int
    case_id: str = Field(description="Empty for the import of the old file.")
    action: str = Field(description="create, update, delete, revert or import.")
    at: float
    who: str = Field(description="The API key's owner id ('key:<hash>'), 'open' or 'import'.")
    before: dict[str, Any] | None = Field(description="The case before the change; null: it did not exist.")
    after: dict[str, Any] | None = Field(description="The case after it; null: it was deleted.")
    reverts: int | None = Field(description="The change a revert undid.")
    reverted_by: int | None = Field(None, description="The revert that undid this change, if any.")


class ChangeDone(GoldenChangeOut):
    rows: int = Field(description="Cases in the set now.")


class HistoryPage(BaseModel):
    collection: str
    items: list[GoldenChangeOut]
    next_before: int | None = Field(description="Pass as `before` for the next (older) page; null at the end.")
