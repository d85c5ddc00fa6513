"""The runners of the three job kinds, built once at start-up (service/state.py): `ingest_runner` (uploads ->
the ingest pipeline), `audit_runner` (diagnostics/audit, as `rag audit`) and `experiment_runner`
(diagnostics/ladder/experiment.py, as `rag experiment`). Each stops between files or cases when asked."""

from __future__ import annotations

import os
import shutil
from dataclasses import replace
from pathlib import Path

from core.errors import InvalidRequestError
from core.settings import Settings
from diagnostics.audit.run import Auditor
from diagnostics.judges.factory import make_judge
from diagnostics.ladder.analysis import DEFAULT_TABLE_METRICS, to_markdown
from diagnostics.ladder.experiment import ExperimentRunner
from service.jobs.context import JobContext, Outcome, Runner, scrub
from service.jobs.requests import AuditRequest, ExperimentRequest, golden_from_cases, parse_variants


def ingest_runner(settings: Settings, store, embedder, bm25, uploads: Path) -> Runner:
    """Run an ingest job: link its uploads into the collection's work folder (one ingest job per collection
    runs at a time; the staged files stay until the job ends, so a replica that takes the job over after this
    one died finds them), ingest them. Document ids are the upload names (`2023/summary.txt`). A file that
    makes more chunks than the job may embed (`job_max_chunks`) fails alone, before it is embedded."""
    from ingest.pipeline import Ingestor

    limited = settings.model_copy(update={"max_file_chunks": min(settings.max_file_chunks, settings.job_max_chunks)})

    def run(ctx: JobContext) -> Outcome:
        work = uploads / ctx.collection
        shutil.rmtree(work, ignore_errors=True)  # what a crashed job left
        work.mkdir(parents=True)
        try:
            for name in ctx.files:
                dest = work / name
                dest.parent.mkdir(parents=True, exist_ok=True)
                try:
                    link(ctx.folder / name, dest)
                except FileNotFoundError:
                    raise InvalidRequestError(
                        "upload_missing", f"the upload {name!r} is not on this replica (is uploads_dir shared?)"
                    ) from None
            # A top-level file's document id is its name; a folder's files get "<folder>/<relative path>".
            tops = sorted({name.split("/", 1)[0] for name in ctx.files})
            report = Ingestor(limited, store, embedder, bm25).run(
                [work / t for t in tops], ctx.collection, progress=ctx.tick, stop=ctx.stop
            )
        finally:
            shutil.rmtree(work, ignore_errors=True)
        out = report.to_dict()
        roots = [work, work.resolve(), uploads, uploads.resolve(), Path(settings.data_dir).absolute()]
        for f in out["files"]:
            f["path"] = scrub(f["path"], roots)
            f["reason"] = scrub(f["reason"], roots)
            if f["reason"] and limited.max_file_chunks < settings.max_file_chunks:
                f["reason"] = f["reason"].replace(
                    "(RAG_MAX_FILE_CHUNKS)", "(RAG_JOB_MAX_CHUNKS: chunks one upload may make)"
                )
        return Outcome(out, report.status, report.stopped)

    return run


def link(src: Path, dest: Path) -> None:
    """`dest` becomes `src`'s content: a hard link (the same file system: no copy), else a copy."""
    try:
        os.link(src, dest)
    except FileNotFoundError:
        raise
    except OSError:
        shutil.copyfile(src, dest)


def audit_runner(engine) -> Runner:
    """Run an audit job on the service's engine; it stops between cases when asked (cancel, limit, shutdown)."""

    def run(ctx: JobContext) -> Outcome:
        req = AuditRequest.model_validate(ctx.request)
        golden = golden_from_cases(req.cases)
        scorer = make_judge(engine.settings, engine.retriever.embedder, engine.retriever.bm25) if req.generate else None
        judge = None
        if req.judge and req.generate:
            from diagnostics.judges.ragas_metrics import RagasJudge

            judge = RagasJudge(engine.settings, engine.settings.data_dir / "judge_cache.jsonl")

        ctx.check_stop()
        report = Auditor(engine.answerer, engine.store, scorer, judge).run(
            golden,
            ctx.collection,
            engine.params(rerank=req.rerank),
            req.ks,
            req.generate,
            set(req.corpus) if req.corpus is not None else None,
            progress=ctx.count_cases,
            ingest_records=req.ingest_reports,
        )
        return Outcome(report, "succeeded")

    return run


def experiment_runner(engine) -> Runner:
    """Run an experiment job on the service's store, embedder and reranker; it stops between cases when asked."""

    def run(ctx: JobContext) -> Outcome:
        req = ExperimentRequest.model_validate(ctx.request)
        golden = golden_from_cases(req.cases)
        variants = [replace(v, collection=v.collection or ctx.collection) for v in parse_variants(req.variants)]
        settings = engine.settings.model_copy(update={"collection": ctx.collection})
        runner = ExperimentRunner(settings, engine.store, engine.retriever.embedder, reranker=engine.retriever.reranker)

        ctx.check_stop()
        tick = lambda _variant, n: ctx.count_cases(n)  # noqa: E731
        result, reports = runner.run(golden, variants, req.ks, req.generate, progress=tick)
        metrics = req.metrics or list(DEFAULT_TABLE_METRICS)
        report = {**result, "table_metrics": metrics, "markdown": to_markdown(result, metrics)}
        return Outcome({**report, "flipped_cases": flipped_cases(result, reports)}, "succeeded")

    return run


def flipped_cases(result: dict, reports: list[dict]) -> dict[str, dict[str, dict]]:
    """Every case whose verdict flipped in some variant, as each variant ran it (variant name -> case id -> the
    audit's case: ranks per stage, lost sources, the answer and its claims), so the UI opens it like an audit's
    case. Only the flipped ones: the experiment keeps its size when most verdicts hold."""
    ids = {str(f["id"]) for flips in result["flipped"].values() for f in flips}
    return {r["variant"]["name"]: {str(c["id"]): c for c in r["cases"] if str(c["id"]) in ids} for r in reports}
