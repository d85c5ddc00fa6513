"""The `rag` command. Library errors become one clear message and a non-zero exit here, nowhere else."""

from __future__ import annotations

import json
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from rag.config import Settings
from rag.errors import RagError

app = typer.Typer(help="A RAG service that can tell you why it answered wrong.", no_args_is_help=True)
err = Console(stderr=True, soft_wrap=True)
out = Console(soft_wrap=True)

EXIT_FILES_FAILED = 1
EXIT_ERROR = 2


@contextmanager
def _errors() -> Iterator[None]:
    try:
        yield
    except RagError as exc:
        err.print(f"[bold red]error[/] ({exc.code}): {exc}")
        raise typer.Exit(EXIT_ERROR) from None


def _settings(collection: Optional[str]) -> Settings:
    settings = Settings()
    return settings.model_copy(update={"collection": collection}) if collection else settings


@app.command()
def ingest(
    paths: list[Path] = typer.Argument(..., help="Files and folders to ingest."),
    collection: Optional[str] = typer.Option(None, "--collection", "-c", help="Target collection."),
    sync: bool = typer.Option(False, "--sync", help="Also delete documents whose files under PATHS are gone."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON on stdout."),
    submit: Optional[str] = typer.Option(
        None, "--submit", metavar="URL", help="Send the files to a running service (which owns the store) as a job."
    ),
    api_key: Optional[str] = typer.Option(None, "--api-key", help="API key for --submit."),
) -> None:
    """Parse, chunk, embed and upsert documents. Unchanged documents cost nothing; failed files are listed."""
    from ingest.pipeline import Ingestor
    from rag.embedding import get_embedder
    from rag.store import open_store

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
    with _errors():
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

    from ingest.pipeline import discover
    from rag.errors import StoreError

    files = [f for f, _, skip in discover(paths) if skip is None and f.is_file()]
    headers = {"X-API-Key": api_key} if api_key else {}
    with httpx.Client(base_url=url.rstrip("/"), headers=headers, timeout=300) as http:
        handles = [open(f, "rb") for f in files]
        try:
            r = http.post(f"/v1/collections/{collection}/documents", files=[("files", (f.name, h)) for f, h in zip(files, handles)])
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
    from rag.store import open_store

    settings = _settings(collection)
    with _errors(), open_store(settings) as store:
        if store.get_spec(settings.collection) is None:
            from rag.errors import CollectionNotFoundError

            raise CollectionNotFoundError(f"no collection named {settings.collection!r}")
        before = store.count(settings.collection)
        store.delete_where(settings.collection, {"doc_id": doc_ids})
        store.flush()
        gone = before - store.count(settings.collection)
    out.print(f"deleted {gone} chunks of {len(doc_ids)} document id(s) from {settings.collection}")


@app.command()
def collections() -> None:
    """List collections with their point counts and the settings they were built with."""
    from rag.store import open_store

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
    from rag.store import open_store

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
    from service.state import ServiceState

    settings = Settings()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    with _errors():
        state = ServiceState.build(settings)
    uvicorn.run(create_app(settings, state), host=host or settings.host, port=port or settings.port, log_level="info")


golden_app = typer.Typer(help="Golden sets: import, and grow them from audits.", no_args_is_help=True)
app.add_typer(golden_app, name="golden")
EXIT_BELOW_GATE = 3


@golden_app.command("import-beir")
def golden_import_beir(
    queries: Path = typer.Argument(..., help="BEIR queries.jsonl"),
    qrels: Path = typer.Argument(..., help="BEIR qrels/<split>.tsv"),
    out_path: Path = typer.Option(..., "--out", "-o", help="Golden set JSONL to write."),
) -> None:
    """Turn a BEIR split into a golden set (relevance grades kept)."""
    from diagnostics.golden import import_beir

    with _errors():
        rows = import_beir(queries, qrels)
    out_path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out.print(f"wrote {len(rows)} cases to {out_path}")


@golden_app.command("stubs")
def golden_stubs(
    report: Path = typer.Argument(..., help="An audit's report.json."),
    out_path: Path = typer.Option(..., "--out", "-o", help="JSONL of stubs to label, appended to."),
    worst: int = typer.Option(20, help="How many of the worst cases."),
) -> None:
    """Export the worst cases of an audit as golden-set stubs (needs_label) to review and label."""
    from diagnostics.audit import GOOD

    data = json.loads(report.read_text())
    ranked = sorted(data["cases"], key=lambda c: (c["verdict"] in GOOD, min(c["metrics"].values(), default=1.0)))
    stubs = [{"id": f"{c['id']}-review", "question": c["question"], "needs_label": True,
              "expected": c["expected"], "retrieved": [x["doc_id"] for x in c["retrieved"]],
              "audit_verdict": c["verdict"]} for c in ranked[:worst] if c["verdict"] not in GOOD]
    with open(out_path, "a") as fh:
        fh.writelines(json.dumps(s) + "\n" for s in stubs)
    out.print(f"appended {len(stubs)} stubs to {out_path}")


def _parse_gates(gates: list[str]) -> dict[str, float]:
    parsed = {}
    for g in gates:
        name, sep, value = g.partition("=")
        try:
            parsed[name.strip()] = float(value)
        except ValueError:
            sep = ""
        if not sep:
            err.print(f"[bold red]error[/]: --fail-under takes METRIC=VALUE, e.g. ndcg@10=0.6 (got {g!r})")
            raise typer.Exit(EXIT_ERROR)
    return parsed


@app.command()
def audit(
    golden: Path = typer.Argument(..., help="Golden set JSONL."),
    collection: Optional[str] = typer.Option(None, "--collection", "-c"),
    k: str = typer.Option("1,3,5,10", "--k", help="Cut-offs for the metrics."),
    generate: bool = typer.Option(False, "--generate", help="Also generate and judge the answers."),
    out_dir: Path = typer.Option(Path("audit"), "--out", help="Where report.json/.md/.html go."),
    baseline: Optional[Path] = typer.Option(None, "--baseline", help="An earlier report.json to compare with."),
    fail_under: list[str] = typer.Option([], "--fail-under", help="METRIC=VALUE: exit 3 if below (CI gate)."),
    corpus: list[Path] = typer.Option([], "--corpus", help="Files the collection was built from, to tell "
                                      "'not in the corpus' from 'not in the index'."),
) -> None:
    """Audit retrieval (and with --generate, the answers) against a golden set; write the reports."""
    from diagnostics.audit import Auditor
    from diagnostics.compare import compare
    from diagnostics.faithfulness import FaithfulnessScorer
    from diagnostics.golden import load_golden
    from diagnostics.report import write_reports
    from service.retrieval import RetrievalParams
    from service.state import ServiceState

    settings = _settings(collection)
    gates = _parse_gates(fail_under)
    try:
        ks = sorted({int(x) for x in k.split(",") if x.strip()})
    except ValueError:
        err.print(f"[bold red]error[/]: --k takes whole numbers separated by commas (got {k!r})")
        raise typer.Exit(EXIT_ERROR) from None
    with _errors():
        gold = load_golden(golden)
        base = json.loads(baseline.read_text()) if baseline else None
        corpus_ids = _corpus_ids(corpus, settings) if corpus else None
        state = ServiceState.build(settings, jobs=False)
        try:
            if state.store.get_spec(settings.collection) is None:
                from rag.errors import CollectionNotFoundError

                raise CollectionNotFoundError(f"no collection named {settings.collection!r}")
            params = RetrievalParams(mode=settings.retrieval_mode, fusion=settings.fusion, rrf_k=settings.rrf_k,
                                     weights=settings.rrf_weights, top_k=settings.top_k, candidates=settings.candidates)
            scorer = FaithfulnessScorer(state.retriever.embedder, state.retriever.bm25)
            columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()]
            with Progress(*columns, console=err, transient=True, disable=not err.is_terminal) as bar:
                task = bar.add_task("cases", total=len(gold.cases))
                report = Auditor(state.answerer, state.store, scorer).run(
                    gold, settings.collection, params, ks, generate, corpus_ids, progress=lambda n: bar.advance(task, n))
        finally:
            state.close()
    if base:
        report["comparison"] = compare(report, base)
    paths = write_reports(report, out_dir)
    out.print(report["summary"]["text"])
    for name, m in report["overall"].items():
        out.print(f"  {name:<16} {m['mean']:.3f}  [{m['ci95'][0]:.3f}, {m['ci95'][1]:.3f}]")
    out.print(f"reports: {paths['md']}, {paths['html']}, {paths['json']} ({report['seconds']} s)")
    failed = [f"{n} {report['overall'][n]['mean']:.3f} < {v}" for n, v in gates.items()
              if n not in report["overall"] or report["overall"][n]["mean"] < v]
    if failed:
        err.print("[bold red]below the gate[/]: " + "; ".join(f if " < " in f else f"{f} (no such metric)" for f in failed))
        raise typer.Exit(EXIT_BELOW_GATE)


def _corpus_ids(paths: list[Path], settings: Settings) -> set[str]:
    """Document ids of the given corpus files, as ingest would assign them (BEIR ids read from the file)."""
    from ingest.parsers import parse_file
    from ingest.pipeline import discover

    ids = set()
    for path, doc_id, skip in discover(paths):
        if skip:
            continue
        if path.suffix == ".jsonl":
            ids.update(d.doc_id for d in parse_file(path, doc_id, 10**10))
        else:
            ids.add(doc_id)
    return ids


def main() -> None:  # pragma: no cover
    sys.exit(app())
