"""What an audit or an experiment job is asked to do (the request bodies, kept with the job and handed to its
runner as they are), and the checks both the routes (at submit, so a bad request is a 4xx now) and the
runners (in the job) apply: the cases' bounds, the golden set, the variants, the judge."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from core.errors import ConfigError, InvalidRequestError
from core.settings import Settings
from diagnostics.audit.golden import GoldenSet, GoldenSetError, load_golden
from diagnostics.judges.factory import judge_card
from diagnostics.ladder.analysis import DEFAULT_TABLE_METRICS
from diagnostics.ladder.variants import Variant, VariantError, check_variants, load_variant_text, parse_variant
from diagnostics.metrics import DEFAULT_KS
from service.schemas.common import CollectionName

MAX_VARIANTS = 8
MAX_TOML_CHARS = 50_000
BASELINE_TOML = 'name = "baseline"\ndescription = "the service\'s defaults"\n'
CASE_EXAMPLE = {"id": "q1", "question": "What happens to a corrupt PDF?", "expected": [{"doc_id": "docs/ingesting.md"}]}


class AuditRequest(BaseModel):
    """An audit. The whole request is kept with the job and handed to the run as it is, so a new option is a
    new field here and its use in `audit_runner`."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"collection": "docs", "ks": list(DEFAULT_KS), "generate": True, "cases": [CASE_EXAMPLE]}]
        }
    )
    collection: CollectionName | None = None
    cases: list[dict] = Field(min_length=1, description="Golden-set cases, in the JSONL format's fields.")
    ks: list[int] = Field(list(DEFAULT_KS), min_length=1, max_length=20)
    generate: bool = False
    rerank: bool | None = Field(None, description="Audit with the reranker on or off; default: the service's.")
    judge: bool = Field(False, description="With generate: the ragas LLM judge (RAG_JUDGE_*) decides faithfulness.")
    corpus: list[str] | None = Field(
        None,
        max_length=1_000_000,
        description="Document ids the collection was built from: tells not_in_corpus from not_in_index.",
    )
    ingest_reports: list[dict] | None = Field(
        None,
        max_length=1000,
        description="Ingest reports or job records (`rag ingest --json`, GET /v1/jobs/{id}): documents whose file "
        "failed are reported failed_to_ingest with the reason.",
    )


class ExperimentRequest(BaseModel):
    """An experiment. Kept with the job and handed to the run as it is (the variants are parsed again there)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "collection": "docs",
                    "ks": list(DEFAULT_KS),
                    "cases": [CASE_EXAMPLE],
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
    ks: list[int] = Field(list(DEFAULT_KS), min_length=1, max_length=20)
    generate: bool = Field(False, description="Generate and judge answers in every variant.")
    metrics: list[str] | None = Field(
        None, max_length=20, description=f"Metrics in the markdown table; default {', '.join(DEFAULT_TABLE_METRICS)}."
    )


def golden_from_cases(cases: list[dict]) -> GoldenSet:
    """The request's cases as a golden set, validated with the very loader the CLI uses."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "golden.jsonl"
        path.write_text("\n".join(json.dumps(c) for c in cases))
        try:
            return load_golden(path)
        except GoldenSetError as exc:  # named as the request has them, never by the server's temporary file
            raise GoldenSetError(str(exc).replace(f"{path}, line ", "case ").replace(str(path), "cases")) from None


def check_cases(s: Settings, cases: list[dict], ks: list[int]) -> None:
    """The bounds of an audit (and an experiment): cut-offs, number of cases, question length."""
    if any(k < 1 or k > 1000 for k in ks):
        raise InvalidRequestError("invalid_parameters", "ks must be whole numbers from 1 to 1000")
    if len(cases) > s.audit_max_cases:
        raise InvalidRequestError("too_many_cases", f"{len(cases)} cases; the limit is {s.audit_max_cases}", 413)
    for case in cases:
        question = case.get("question")
        if isinstance(question, str) and len(question) > s.max_question_chars:
            raise InvalidRequestError(
                "question_too_long",
                f"case {str(case.get('id'))[:64]!r}: the question is over {s.max_question_chars} characters",
            )


def require_judge(s: Settings) -> dict:
    """The configured faithfulness judge's card (name, measured agreement); 409 judge_unavailable if it cannot
    be built (no model trained, no endpoint)."""
    try:
        return judge_card(s)
    except ConfigError as exc:
        raise InvalidRequestError("judge_unavailable", str(exc), 409) from None


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
