"""Jobs: ingest jobs, audits and experiments as the API shows them (`GET /v1/jobs/{id}` and each kind's own
routes), what submitting an audit or an experiment answers, and the audits and experiments listed. Nothing in
them names a server path. A report is the audit's or the experiment's own JSON (what `rag audit` and
`rag experiment` write), open-ended, so it is a plain object here."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field


class JobStatus(BaseModel):
    """A job without its files and report: what it is, where it stands, and why it stopped."""

    id: str
    kind: Literal["ingest", "audit", "experiment"] = "ingest"
    collection: str
    status: Literal["queued", "running", "succeeded", "partial", "failed", "cancelled", "interrupted"] = Field(
        description="partial: some files failed; failed: every file failed (or the job could not run); "
        "cancelled / interrupted: stopped early, `reason` says why."
    )
    created_at: float
    started_at: float | None = None
    finished_at: float | None = None
    progress: dict[str, int]
    reason: str | None = Field(
        None, description="Why it stopped early: cancelled, time_limit, shutdown, replica_gone, lost_lock."
    )
    error: str | None = None
    cancel_requested: bool = False


class JobOut(JobStatus):
    """An ingest job, an audit or an experiment (`kind`), with its files and report."""

    files: list[str] = Field(description="The upload names (relative paths) of an ingest job.")
    report: dict | None = None


class AuditSubmitted(JobStatus):
    faithfulness_judge: dict[str, Any] | None = Field(
        description="The judge that scores faithfulness (kind, name, measured agreement); null when the audit "
        "does not generate."
    )


class JobReport(JobStatus):
    """An audit or an experiment; once it has succeeded, `report` holds its report (an experiment's with
    `markdown`, its table)."""

    report: dict[str, Any] | None


class JobListed(JobStatus):
    golden_hash: str | None = Field(description="A short hash of the golden set: runs compare only on the same set.")
    cases: int


class AuditListed(JobListed):
    settings: dict[str, Any] = Field(description="The settings it ran with (as requested until it has run).")
    verdicts: dict[str, int] | None = Field(description="Cases per verdict, once it has run.")
    summary: str | None


class ExperimentListed(JobListed):
    variants: list[str] | None = Field(description="The variants' names, once it has run; the first is the baseline.")
    collections: list[str]


class AuditPage(BaseModel):
    items: list[AuditListed]
    next_before: float | None = Field(description="`before` for the next page; null on the last one.")


class ExperimentPage(BaseModel):
    items: list[ExperimentListed]
    next_before: float | None = Field(description="`before` for the next page; null on the last one.")
