"""The `rag` command. Library errors become one clear message and a non-zero exit here, nowhere else."""

from __future__ import annotations

import json
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Optional

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from cli.audit import audit, golden_app
from cli.candidates import golden_candidates
from cli.experiment import experiment
from cli.export import export_app, tune_embeddings
from cli.judge import judge_app
from cli.support import EXIT_ERROR, EXIT_FILES_FAILED, err, locked_message, out
from cli.support import errors as _errors
from cli.support import settings_for as _settings
from core.settings import Settings

app = typer.Typer(help="A RAG service that can tell you why it answered wrong.", no_args_is_help=True)


@app.command()
def ingest(
    paths: list[Path] = typer.Argument(..., help="Files and folders to ingest."),
    collection: Optional[str] = typer.Option(None, "--collection", "-c", help="Target collection."),
    sync: bool = typer.Option(False, "--sync", help="Also delete documents whose files under PATHS are gone."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON on stdout."),
    submit: Optional[str] = typer.Option(
        None, "--submit", metavar="URL", help="Send the files to a running service (which owns the store) as a job."
    ),
    api_key: Optional[str] = typer.Option(None, "--api-key", envvar="RAG_API_KEY", help="API key for --submit."),
) -> None:
    """Parse, chunk, embed and upsert documents. Unchanged documents cost nothing; failed files are listed."""
    from core.embedding import get_embedder
    from core.store import open_store
    from ingest.pipeline import Ingestor

    settings = _settings(collection)
    if submit:
        if sync:
            err.print("[bold red]error[/]: --sync needs the store itself; run it where the store is, not with --submit")
            raise typer.Exit(EXIT_ERROR)
        with _errors():
            report = _submit(submit, api_key, paths, settings.collection)
        if as_json:
            out.print_json(json.dumps(report))
        else:
            out.print(f"job {report['id']} {report['status']}: {json.dumps(report.get('report', {}).get('summary'))}")
            for f in (report.get("report") or {}).get("files", []):
                if f["status"] == "failed":
                    out.print(f"  [red]failed[/] {f['path']}: {f['reason']}")
        failed = report["status"] != "succeeded" or (report.get("report") or {}).get("summary", {}).get("failed")
        raise typer.Exit(EXIT_FILES_FAILED if failed else 0)
    # When the service owns the store: the same ingest sent to it, ready to paste (--sync needs the store itself).
    args = [str(p) for p in paths] + (["-c", collection] if collection else []) + ["--json"] * as_json
    with _errors(locked=None if sync else lambda exc: locked_message(exc, "ingest", args, settings)):
        store = open_store(settings)
        with store:
            embedder = get_embedder(settings)
            with _progress() as tick:
                report = Ingestor(settings, store, embedder).run(paths, settings.collection, sync=sync, progress=tick)
    if as_json:
        out.print_json(json.dumps(report.to_dict()))
    else:
        _print_report(report)
    if report.failed:
        raise typer.Exit(EXIT_FILES_FAILED)


def _submit(url: str, api_key: Optional[str], paths: list[Path], collection: str) -> dict:
    """Upload the files under `paths` to a running service, wait for its job, return the job."""
    import time

    import httpx

    from core.errors import StoreError
    from ingest.identity import discover

    files = [f for f, _, skip in discover(paths) if skip is None and f.is_file()]
    headers = {"X-API-Key": api_key} if api_key else {}
    with httpx.Client(base_url=url.rstrip("/"), headers=headers, timeout=300) as http:
        handles = [open(f, "rb") for f in files]
        try:
            r = http.post(
                f"/v1/collections/{collection}/documents",
                files=[("files", (f.name, h)) for f, h in zip(files, handles)],
            )
        except httpx.TransportError as exc:
            raise StoreError(f"cannot reach the service at {url}: {exc}") from exc
        finally:
            for h in handles:
                h.close()
        if r.status_code != 202:
            raise StoreError(f"the service refused the job ({r.status_code}): {r.text}")
        job = r.json()
        while job["status"] in ("queued", "running"):
            time.sleep(0.5)
            job = http.get(f"/v1/jobs/{job['id']}").json()
    return job


@contextmanager
def _progress():
    """A progress bar on a terminal; elsewhere (jobs, pipes) one log line per batch written, on stderr."""
    if not err.is_terminal:
        counts = {"files": 0, "documents": 0, "chunks": 0, "files_total": 0}

        def log(what: str, n: int) -> None:
            counts[what] = n if what == "files_total" else counts[what] + n
            if what == "chunks":
                print(
                    f"progress files={counts['files']}/{counts['files_total']} documents={counts['documents']} "
                    f"chunks_embedded={counts['chunks']}",
                    file=sys.stderr,
                    flush=True,
                )

        yield log
        return
    columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()]
    with Progress(*columns, console=err, transient=True) as bar:
        files = bar.add_task("files", total=None)
        docs = bar.add_task("documents", total=None)
        chunks = bar.add_task("chunks embedded", total=None)
        tasks = {"files": files, "documents": docs, "chunks": chunks}

        def tick(what: str, n: int) -> None:
            if what == "files_total":
                bar.update(files, total=n)
            else:
                bar.advance(tasks[what], n)

        yield tick


def _print_report(report) -> None:
    s = report.to_dict()["summary"]
    out.print(
        f"[bold]{report.collection}[/]: {s['seen']} files seen, {s['added']} added, {s['updated']} updated, "
        f"{s['unchanged']} unchanged, {s['skipped']} skipped, {s['failed']} failed"
    )
    out.print(
        f"documents: {report.documents_added} added, {report.documents_updated} updated, "
        f"{report.documents_unchanged} unchanged, {report.documents_deleted} deleted; "
        f"chunks: {report.chunks_embedded} embedded, {report.chunks_deleted} deleted; "
        f"{report.points} points in the collection; {report.seconds:.1f} s"
    )
    for f in report.files:
        if f.status in ("failed", "skipped"):
            colour = "red" if f.status == "failed" else "yellow"
            out.print(f"  [{colour}]{f.status}[/] {f.path}: {f.reason}")


@app.command()
def delete(
    doc_ids: list[str] = typer.Argument(..., help="Document ids to delete."),
    collection: Optional[str] = typer.Option(None, "--collection", "-c"),
) -> None:
    """Delete documents (all their chunks) by document id."""
    from core.store import open_store

    settings = _settings(collection)
    with _errors(), open_store(settings) as store:
        if store.get_spec(settings.collection) is None:
            from core.errors import CollectionNotFoundError

            raise CollectionNotFoundError(f"no collection named {settings.collection!r}")
        before = store.count(settings.collection)
        store.delete_where(settings.collection, {"doc_id": doc_ids})
        store.flush()
        gone = before - store.count(settings.collection)
    out.print(f"deleted {gone} chunks of {len(doc_ids)} document id(s) from {settings.collection}")


@app.command()
def collections() -> None:
    """List collections with their point counts and the settings they were built with."""
    from core.store import open_store

    settings = Settings()
    with _errors(), open_store(settings) as store:
        table = Table("collection", "points", "embedding", "chunker", "bm25")
        for name in store.list_collections():
            spec = store.get_spec(name)
            table.add_row(
                name,
                str(store.count(name)),
                f"{spec.embedding['model']} ({spec.dense_dim}d)",
                f"{spec.chunker['max_tokens']}/{spec.chunker['overlap_tokens']} tokens",
                f"k={spec.sparse['k']} b={spec.sparse['b']} avg_len={spec.sparse['avg_len']}",
            )
    out.print(table)


@app.command()
def optimize(collection: Optional[str] = typer.Option(None, "--collection", "-c")) -> None:
    """Build indexes and merge segments (slow on big collections; run it between ingests, not under load)."""
    from core.store import open_store

    settings = _settings(collection)
    with _errors(), open_store(settings) as store:
        store.optimize(settings.collection)
    out.print(f"optimized {settings.collection}")


@app.command()
def serve(
    host: Optional[str] = typer.Option(None, help="Default from RAG_HOST (127.0.0.1)."),
    port: Optional[int] = typer.Option(None, help="Default from RAG_PORT (8000)."),
) -> None:
    """Serve the REST API under uvicorn. The embedding model and the store are loaded once, at start-up."""
    import logging

    import uvicorn

    from service.app import create_app
    from service.serving import protocol_for
    from service.state import ServiceState

    settings = Settings()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    with _errors():
        state = ServiceState.build(settings)
    base = f"http://{host or settings.host}:{port or settings.port}"
    generator = state.answerer.generator.name
    logging.getLogger("rag.service").info(
        "web UI at %s/ui, API docs at %s/docs; answers by the %s generator%s",
        base,
        base,
        generator,
        " (extractive until an LLM is configured: RAG_LLM_BASE_URL=http://host:port/v1 RAG_LLM_MODEL=name)"
        if generator == "extractive"
        else "",
    )
    uvicorn.run(
        create_app(settings, state),
        host=host or settings.host,
        port=port or settings.port,
        log_level="info",
        # Behind a proxy: trust its X-Forwarded-For for the client address (rate limits), and only its; with
        # none configured the header is ignored. See guides/hostile-clients.md.
        proxy_headers=settings.forwarded_allow_ips is not None,
        forwarded_allow_ips=settings.forwarded_allow_ips or "",
        limit_concurrency=settings.limit_concurrency,
        timeout_keep_alive=settings.timeout_keep_alive_s,
        http=protocol_for(settings),  # request heads and bodies of slow clients are timed out (service/serving.py)
    )


app.command()(audit)
golden_app.command("candidates")(golden_candidates)
app.add_typer(golden_app, name="golden")
app.command()(experiment)
app.add_typer(export_app, name="export")
app.command("tune-embeddings")(tune_embeddings)
app.add_typer(judge_app, name="judge")


def main() -> None:  # pragma: no cover
    sys.exit(app())
