"""The web UI at /ui: static files shipped in the package (service/ui/, plain JS modules, nothing fetched
from elsewhere: the Content-Security-Policy says so), plus two helpers it needs under /v1 (so the API key
applies): chunk texts of an audit case, and the audit plots and baseline comparison drawn server-side with
diagnostics/audit/report.py's SVG and diagnostics/audit/compare.py."""

from __future__ import annotations

import re
import uuid
from pathlib import Path

from fastapi import APIRouter, Query
from fastapi.responses import FileResponse, RedirectResponse
from pydantic import BaseModel, Field

from core.errors import InvalidRequestError
from diagnostics.audit.compare import compare
from diagnostics.audit.report import bars, curve
from diagnostics.audit.run import GOOD, LEVERS, LOST_STAGES
from engine.retrieval import PAYLOAD_FIELDS
from service.deps import AccessDep, StateDep
from service.errors import ERRORS
from service.schemas.common import CollectionPath
from service.schemas.ui import AuditViewOut, ChunkOut, ViewReport

router = APIRouter()
UI_DIR = Path(__file__).resolve().parent.parent / "ui"
ASSET = re.compile(r"^[a-z0-9_-]{1,64}\.(js|css|svg|png|ico)$")
HEADERS = {
    "Cache-Control": "no-cache",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
    "script-src 'self'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
}
PLOT_WIDTH = 360  # the UI's plots: the width of a 390 px phone's page, less its margins


@router.get("/ui", include_in_schema=False)
def ui_index() -> FileResponse:
    return FileResponse(UI_DIR / "index.html", media_type="text/html", headers=HEADERS)


@router.get("/", include_in_schema=False)
def root() -> RedirectResponse:
    """A person who opens the service's address lands on the UI."""
    return RedirectResponse("/ui")


@router.get("/ui/", include_in_schema=False)
def ui_slash() -> RedirectResponse:
    return RedirectResponse("/ui")


@router.get("/ui/assets/{name}", include_in_schema=False)
def ui_asset(name: str) -> FileResponse:
    path = UI_DIR / name
    if not ASSET.match(name) or not path.is_file():
        raise InvalidRequestError("not_found", f"no UI asset {name[:64]!r}", 404)
    media = {"js": "text/javascript", "css": "text/css", "svg": "image/svg+xml"}.get(name.rsplit(".", 1)[1])
    return FileResponse(path, media_type=media, headers=HEADERS)


@router.get(
    "/v1/collections/{collection}/chunks",
    tags=["ui"],
    response_model=list[ChunkOut],
    response_model_exclude_unset=True,
    responses=ERRORS,
)
def get_chunks(
    collection: CollectionPath,
    state: StateDep,
    access: AccessDep,
    ids: list[str] = Query(..., max_length=100, description="Chunk ids (as in an audit case's `retrieved`)."),
) -> list[dict]:
    """Chunk texts by id, in the order asked (missing ones are left out): what the generator saw."""
    access.check(collection)
    state.engine.require_collection(collection)
    valid = [i for i in ids if _is_uuid(i)]  # chunk ids are UUIDs; anything else names no chunk
    hits = {h.id: h for h in state.store.get_points(collection, valid, PAYLOAD_FIELDS)} if valid else {}
    return [{"chunk_id": i, **hits[i].payload} for i in ids if i in hits]


def _is_uuid(text: str) -> bool:
    try:
        return str(uuid.UUID(text)) == text.lower()
    except ValueError:
        return False


class AuditView(BaseModel):
    report: ViewReport = Field(
        description="An audit report (GET /v1/audits/{id}); cases may be trimmed to ids, metrics, span, verdict."
    )
    baseline: ViewReport | None = Field(None, description="Another report to compare with.")


@router.post("/v1/ui/audit-view", tags=["ui"], response_model=AuditViewOut, responses={**ERRORS, 413: ERRORS[400]})
def audit_view(req: AuditView, state: StateDep, access: AccessDep) -> dict:
    """SVG plots of a report (recall@k with its interval, where lost, verdicts), the comparison with a
    baseline (paired deltas, flipped verdicts), and the lever of each verdict and lost stage. The body is at
    most RAG_MAX_AUDIT_VIEW_MB (413 `body_too_large`), each report at most RAG_AUDIT_MAX_CASES cases (413
    `too_many_cases`); a report of another shape is a 422 `invalid_request`."""
    limit = state.settings.audit_max_cases
    for name, report in (("report", req.report), ("baseline", req.baseline)):
        if report is not None and len(report.cases) > limit:
            raise InvalidRequestError("too_many_cases", f"{name}: {len(report.cases)} cases; the limit is {limit}", 413)
    r = req.report.model_dump()
    overall = r.get("overall", {})
    ks = r.get("settings", {}).get("ks", [])
    points = [
        (k, overall[f"recall@{k}"]["mean"], *overall[f"recall@{k}"]["ci95"])
        for k in ks
        if f"recall@{k}" in overall and None not in (overall[f"recall@{k}"]["mean"], *overall[f"recall@{k}"]["ci95"])
    ]
    lost = [(k, n) for k, n in r.get("where_lost", {}).items() if n]
    verdicts = sorted(r.get("verdicts", {}).items(), key=lambda x: -x[1])
    # Drawn at PLOT_WIDTH and never scaled down by the page (style.css), so their 11-12 px labels stay readable
    # at phone width; the report's HTML keeps its wider plots.
    bar = {"width": PLOT_WIDTH, "label_w": 165}
    out = {
        "plots": {
            "recall": curve(points, width=PLOT_WIDTH, height=220),
            "where_lost": bars(lost, color="#e15759", **bar) if lost else "<p>no expected source was lost</p>",
            "verdicts": bars(verdicts, color="#f28e2b", colors={v: "#59a14f" for v in GOOD}, **bar),
        },
        "levers": LEVERS,
        "good": sorted(GOOD),
        "lost_stages": list(LOST_STAGES),
        "comparison": None,
    }
    if req.baseline is not None:
        out["comparison"] = compare(_full(r), _full(req.baseline.model_dump()))
    return out


def _full(report: dict) -> dict:
    """compare() reads overall, and per case metrics, span, verdict and generation: fill what was trimmed."""
    cases = [{"metrics": {}, "span": {}, **c, "generation": c.get("generation") or {}} for c in report.get("cases", [])]
    return {**report, "cases": cases}
