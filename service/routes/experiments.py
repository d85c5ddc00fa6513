"""Experiments as API jobs: `POST /v1/experiments` with a golden set and 2+ pipeline variants in the body (TOML
text or the same fields as JSON, never a server path), then poll `GET /v1/experiments/{id}` (or `/v1/jobs/{id}`)
for progress and the comparison; `POST /v1/jobs/{id}/cancel` stops one. Same code as `rag experiment`
(diagnostics/ladder/experiment.py); jobs of the one job system, bounded like audits."""

from __future__ import annotations

import json
from dataclasses import replace

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from core.errors import InvalidRequestError
from diagnostics.ladder.experiment import (
    DEFAULT_TABLE_METRICS,
    ExperimentRunner,
    Variant,
    VariantError,
    check_variants,
    load_variant_text,
    parse_variant,
    to_markdown,
)
from service.deps import AccessDep, StateDep
from service.jobs import JobContext, Outcome, Runner
from service.routes.audits import _golden, check_cases, require_judge, visible_job
from service.routes.documents import OwnerDep, job_visible
from service.routes.query import ERRORS
from service.schemas import CollectionName

router = APIRouter(tags=["experiments"])

MAX_VARIANTS = 8
MAX_TOML_CHARS = 50_000
BASELINE_TOML = 'name = "baseline"\ndescription = "the service\'s defaults"\n'


class ExperimentRequest(BaseModel):
    """An experiment. Kept with the job and handed to the run as it is (the variants are parsed again there)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "collection": "docs",
                    "ks": [1, 3, 5, 10],
                    "cases": [
                        {
                            "id": "q1",
                            "question": "What happens to a corrupt PDF?",
                            "expected": [{"doc_id": "docs/ingesting.md"}],
                        }
                    ],
                    "variants": [
                        {"toml": BASELINE_TOML},
                        {"name": "top10", "toml": "[retrieval]\ntop_k = 10\n"},
                        {"name": "rrf-k60", "retrieval": {"fusion": "rrf", "rrf_k": 60}},
                    ],
                }
            ]
        },
    )
    collection: CollectionName | None = Field(None, description="The variants' collection unless one names its own.")
    cases: list[dict] = Field(min_length=1, description="Golden-set cases, in the JSONL format's fields.")
    variants: list[dict] = Field(
        min_length=2,
        max_length=MAX_VARIANTS,
        description='Each {"toml": "<variant TOML>", "name": optional} or the variant\'s fields as JSON '
        "(name, description, collection, retrieval, generation, judge). The first is the baseline. No server "
        "paths or endpoints: built-in prompt names or `generation.prompt_text`.",
    )
    ks: list[int] = Field([1, 3, 5, 10], min_length=1, max_length=20)
    generate: bool = Field(False, description="Generate and judge answers in every variant.")
    metrics: list[str] | None = Field(
        None, max_length=20, description=f"Metrics in the markdown table; default {', '.join(DEFAULT_TABLE_METRICS)}."
    )


def parse_variants(items: list[dict]) -> list[Variant]:
    """The request's variants, parsed as untrusted (no server file, no endpoint). Raises `invalid_variant`."""
    try:
        json.dumps(items, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate ("\ud800" in JSON) would reach the report, and no response takes it
        raise InvalidRequestError("invalid_text", "a variant is not valid Unicode text (a lone surrogate)") from None
    out = []
    try:
        for i, item in enumerate(items):
            where, default = f"variants[{i}]", f"variant-{i + 1}"
            if "toml" not in item:
                out.append(parse_variant(item, where, default_name=default, trusted=False))
                continue
            text, name = item["toml"], item.get("name")
            if set(item) - {"toml", "name"}:
                extra = ", ".join(sorted(set(item) - {"toml", "name"}))
                raise VariantError(f"{where}: with toml, only name may be given beside it (got {extra})")
            if not isinstance(text, str) or len(text) > MAX_TOML_CHARS:
                raise VariantError(f"{where}: toml must be TOML text of at most {MAX_TOML_CHARS} characters")
            if name is not None and (not isinstance(name, str) or not name.strip()):
                raise VariantError(f"{where}: name must be a non-empty string")
            variant = load_variant_text(text, where, default_name=(name or default).strip())
            if name is not None and variant.name != name.strip():
                raise VariantError(f"{where}: named twice ({name.strip()!r} and, in the TOML, {variant.name!r})")
            out.append(variant)
        return check_variants(out)
    except VariantError as exc:
        raise InvalidRequestError("invalid_variant", str(exc)) from None


@router.post("/v1/experiments", status_code=202, responses=ERRORS)
def start_experiment(req: ExperimentRequest, state: StateDep, access: AccessDep, owner: OwnerDep) -> dict:
    """Audit each variant on the same cases and compare each with the first (paired bootstrap per metric)."""
    s = state.settings
    collection = req.collection or s.collection
    check_cases(s, req.cases, req.ks)
    variants = parse_variants(req.variants)
    for v in variants:  # every collection a variant runs on: the key's to read, and there
        access.check(v.collection or collection)
        state.engine.require_collection(v.collection or collection)
    golden = _golden(req.cases)
    if req.generate or any(v.generates for v in variants):
        require_judge(s)
    for v in variants:  # what the job would fail on, said now
        state.engine.params(**v.retrieval)  # rerank_unavailable
        gen = (v.generation or {}).get("generator")
        if gen == "llm" and (v.generates or req.generate) and not s.llm_base_url:
            raise InvalidRequestError(
                "invalid_variant", f"{v.name}: generator llm needs the service's LLM endpoint (RAG_LLM_BASE_URL)"
            )
    state.jobs.check_queue(owner)
    request = {**req.model_dump(mode="json"), "collection": collection}
    total = len(golden.cases) * len(variants)
    job = state.jobs.submit("experiment", collection, owner, request=request, progress={"cases": 0, "total": total})
    return {k: v for k, v in job.items() if k not in ("report", "files")}


@router.get("/v1/experiments/{experiment_id}", responses=ERRORS)
def get_experiment(experiment_id: str, state: StateDep, access: AccessDep) -> dict:
    """The job; once it has succeeded, `report` is the comparison (`rag experiment`'s experiment.json) with
    `markdown`, its table."""
    return visible_job(state, access, experiment_id, "experiment", lambda job: job_visible(job, access))


def experiment_runner(engine) -> Runner:
    """Run an experiment job on the service's store, embedder and reranker; it stops between cases when asked."""

    def run(ctx: JobContext) -> Outcome:
        req = ExperimentRequest.model_validate(ctx.request)
        golden = _golden(req.cases)
        variants = [replace(v, collection=v.collection or ctx.collection) for v in parse_variants(req.variants)]
        settings = engine.settings.model_copy(update={"collection": ctx.collection})
        runner = ExperimentRunner(settings, engine.store, engine.retriever.embedder, reranker=engine.retriever.reranker)

        ctx.check_stop()
        result, _ = runner.run(golden, variants, req.ks, req.generate, progress=lambda _variant, n: ctx.count_cases(n))
        metrics = req.metrics or list(DEFAULT_TABLE_METRICS)
        return Outcome({**result, "table_metrics": metrics, "markdown": to_markdown(result, metrics)}, "succeeded")

    return run
