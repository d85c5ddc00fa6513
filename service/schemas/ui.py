"""What the web UI reads besides the resources: chunk texts by id, and an audit report's plots and levers."""

from __future__ import annotations

from typing import Annotated, Any

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


# POST /v1/ui/audit-view's request: an audit report (GET /v1/audits/{id}), trimmed or not, checked for the shape
# the plots and the comparison read, and bounded in what they cost (a metric is a paired bootstrap per case pair).
MAX_VIEW_METRICS = 256  # overall metrics; a 20-cut-off audit with generation has about 130
MAX_VIEW_BARS = 64  # verdicts, lost stages
Score = Annotated[float, Field(allow_inf_nan=False)]
Count = Annotated[int, Field(ge=0, le=10**9)]
Label = Annotated[str, Field(max_length=128)]


class ViewInterval(BaseModel):
    model_config = ConfigDict(extra="allow")
    mean: Score | None = None
    ci95: list[Score | None] = Field([None, None], min_length=2, max_length=2)


class ViewSettings(BaseModel):
    model_config = ConfigDict(extra="allow")
    ks: list[Annotated[int, Field(ge=1, le=1000)]] = Field([], max_length=20)


class ViewGeneration(BaseModel):
    model_config = ConfigDict(extra="allow")
    faithfulness: Score | None = None


class ViewCase(BaseModel):
    model_config = ConfigDict(extra="allow")
    id: Annotated[str, Field(max_length=256)] | int
    metrics: dict[Label, Score | None] = Field({}, max_length=MAX_VIEW_METRICS)
    span: dict[Label, Score | None] = Field({}, max_length=MAX_VIEW_METRICS)
    verdict: Label | None = None
    generation: ViewGeneration | None = None


class ViewReport(BaseModel):
    """An audit report as the view reads it; other fields pass through as they are."""

    model_config = ConfigDict(extra="allow")
    settings: ViewSettings = ViewSettings()
    overall: dict[Label, ViewInterval] = Field({}, max_length=MAX_VIEW_METRICS)
    where_lost: dict[Label, Count] = Field({}, max_length=MAX_VIEW_BARS)
    verdicts: dict[Label, Count] = Field({}, max_length=MAX_VIEW_BARS)
    cases: list[ViewCase] = Field([], description="At most RAG_AUDIT_MAX_CASES (413 too_many_cases).")
