"""What the web UI reads besides the resources: chunk texts by id, and an audit report's plots and levers."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class ChunkOut(BaseModel):
    """A stored chunk's text and where it lies (fields the chunk does not have, such as `page`, are left out)."""

    model_config = ConfigDict(extra="allow")

    chunk_id: str
    doc_id: str | None = None
    title: str | None = None
    source: str | None = None
    text: str | None = None
    start: int | None = None
    end: int | None = None
    heading_path: list[str] | None = None
    page: int | None = None


class AuditPlots(BaseModel):
    recall: str = Field(description="SVG: recall@k with its 95% interval.")
    where_lost: str = Field(description="SVG (or a sentence when nothing was lost): cases lost per stage.")
    verdicts: str = Field(description="SVG: cases per verdict.")


class AuditViewOut(BaseModel):
    plots: AuditPlots
    levers: dict[str, str] = Field(description="What to change, per verdict and lost stage.")
    good: list[str] = Field(description="The verdicts that are not failures.")
    lost_stages: list[str]
    comparison: dict[str, Any] | None = Field(description="Against the baseline (diagnostics.audit.compare).")
