"""`rag audit` and `rag golden ...`: the command-line face of the diagnostics."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from cli.support import (
    EXIT_BELOW_GATE,
    EXIT_ERROR,
    err,
    errors,
    locked_message,
    open_engine,
    out,
    parse_ks,
    settings_for,
)
from core.settings import Settings
from diagnostics.metrics import DEFAULT_KS

golden_app = typer.Typer(help="Golden sets: import, and grow them from audits.", no_args_is_help=True)


@golden_app.command("import-beir")
def golden_import_beir(
    queries: Path = typer.Argument(..., help="BEIR queries.jsonl"),
    qrels: Path = typer.Argument(..., help="BEIR qrels/<split>.tsv"),
    out_path: Path = typer.Option(..., "--out", "-o", help="Golden set JSONL to write."),
) -> None:
    """Turn a BEIR split into a golden set (relevance grades kept)."""
    from diagnostics.audit.golden import import_beir

    with errors():
        rows = import_beir(queries, qrels)
    out_path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out.print(f"wrote {len(rows)} cases to {out_path}")


@golden_app.command("import-mtrag")
def golden_import_mtrag(
    conversations: Path = typer.Argument(..., help="MTRAG conversations.jsonl"),
    out_path: Path = typer.Option(..., "--out", "-o", help="Golden set JSONL to write."),
) -> None:
    """Turn MTRAG conversations into a golden set: the last turn is the question, the earlier ones its history."""
    from diagnostics.audit.golden import import_mtrag

    with errors():
        rows = import_mtrag(conversations)
    out_path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    n_conv = sum(1 for r in rows if r.get("history"))
    out.print(f"wrote {len(rows)} cases ({n_conv} with history, {sum(not r['expected'] for r in rows)} unanswerable)")


@golden_app.command("stubs")
def golden_stubs(
    report: Path = typer.Argument(..., help="An audit's report.json."),
    out_path: Path = typer.Option(..., "--out", "-o", help="JSONL of stubs to label, appended to."),
    worst: int = typer.Option(20, help="How many of the worst cases."),
) -> None:
    """Export the worst cases of an audit as golden-set stubs (needs_label) to review and label."""
    from diagnostics.audit.run import GOOD

    data = json.loads(report.read_text())
    # Cases to label (unlabelled_source) first, then the worst failures.
    ranked = sorted(
        data["cases"],
        key=lambda c: (
            c["verdict"] in GOOD,
            c["verdict"] != "unlabelled_source",
            min(c["metrics"].values(), default=1.0),
        ),
    )
    stubs = []
    for c in ranked[:worst]:
        if c["verdict"] in GOOD:
            continue
        stub = {
            "id": f"{c['id']}-review",
            "question": c["question"],
            "needs_label": True,
            "expected": c["expected"],
            "retrieved": [x["doc_id"] for x in c["retrieved"]],
            "audit_verdict": c["verdict"],
        }
        if c["verdict"] == "unlabelled_source":
            gen = c.get("generation") or {}
            used = {x.get("doc_id") for x in gen.get("claims", []) if x.get("supported")}
            used |= set(gen.get("cited_docs", []))
            known = {e["doc_id"] for e in c["expected"]}
            stub["suggested_sources"] = sorted(d for d in used if d and d not in known)
        stubs.append(stub)
    with open(out_path, "a") as fh:
        fh.writelines(json.dumps(s) + "\n" for s in stubs)
    out.print(f"appended {len(stubs)} stubs to {out_path}")


GATE_METRICS = ("mrr", "hit@", "recall@", "precision@", "ndcg@", "span_recall@", "faithfulness", "reference_coverage")


def _parse_gates(gates: list[str], ks: list[int] | None = None) -> dict[str, float]:
    """{metric: minimum}; metric names are case-insensitive (nDCG@10 = ndcg@10) and checked before the run, so
    a misspelt gate fails at once with the names it could be, not after a long audit."""
    parsed = {}
    for g in gates:
        name, sep, value = g.partition("=")
        try:
            parsed[name.strip().lower()] = float(value)
        except ValueError:
            sep = ""
        if not sep:
            err.print(f"[bold red]error[/]: --fail-under takes METRIC=VALUE, e.g. ndcg@10=0.6 (got {g!r})")
            raise typer.Exit(EXIT_ERROR)
    for name in parsed:
        base, at, k = name.partition("@")
        known = (name in GATE_METRICS) if not at else (f"{base}@" in GATE_METRICS and k.isdigit())
        if known and at and ks is not None and int(k) not in ks:
            err.print(f"[bold red]error[/]: --fail-under {name}: the audit measures k in {ks}; add it with --k")
            raise typer.Exit(EXIT_ERROR)
        if not known:
            names = ", ".join(m + ("K" if m.endswith("@") else "") for m in GATE_METRICS)
            err.print(f"[bold red]error[/]: --fail-under: no metric {name!r}; the metrics are {names}")
            raise typer.Exit(EXIT_ERROR)
    return parsed


def audit(
    golden: Optional[Path] = typer.Argument(
        None, help="Golden set JSONL. With --submit it may be left out: the server's golden set of the collection."
    ),
    collection: Optional[str] = typer.Option(None, "--collection", "-c"),
    k: str = typer.Option(",".join(map(str, DEFAULT_KS)), "--k", help="Cut-offs for the metrics."),
    generate: bool = typer.Option(False, "--generate", help="Also generate and judge the answers."),
    judge: bool = typer.Option(
        False,
        "--judge",
        help="With --generate: add ragas's LLM-judged metrics "
        "(RAG_JUDGE_* or RAG_LLM_* endpoint); judgments are cached under the data dir.",
    ),
    out_dir: Path = typer.Option(Path("audit"), "--out", help="Where report.json/.md/.html go."),
    baseline: Optional[Path] = typer.Option(None, "--baseline", help="An earlier report.json to compare with."),
    fail_under: list[str] = typer.Option([], "--fail-under", help="METRIC=VALUE: exit 3 if below (CI gate)."),
    corpus: list[Path] = typer.Option(
        [], "--corpus", help="Files the collection was built from, to tell 'not in the corpus' from 'not in the index'."
    ),
    ingest_report: list[Path] = typer.Option(
        [],
        "--ingest-report",
        help="Ingest records (`rag ingest --json` output, job JSON, or a jobs folder): documents whose file failed "
        "are reported failed_to_ingest with the reason.",
    ),
    rerank: Optional[bool] = typer.Option(
        None, "--rerank/--no-rerank", help="Audit with the reranker (RAG_RERANK_MODEL) on or off; default: settings."
    ),
    submit: Optional[str] = typer.Option(
        None,
        "--submit",
        metavar="URL",
        help="Run the audit on a running service (which owns the store) as a job: POST /v1/audits, wait for it, "
        "write the same reports here and exit with the same codes.",
    ),
    api_key: Optional[str] = typer.Option(None, "--api-key", envvar="RAG_API_KEY", help="API key for --submit."),
) -> None:
    """Audit retrieval (and with --generate, the answers) against a golden set; write the reports."""
    from diagnostics.audit.golden import load_golden
    from diagnostics.audit.ingest_records import load_ingest_records
    from diagnostics.audit.run import Auditor
    from diagnostics.judges.factory import make_judge

    if golden is None and not submit:
        err.print("[bold red]error[/]: GOLDEN is needed (a golden set JSONL); only --submit may audit the server's set")
        raise typer.Exit(EXIT_ERROR)
    settings = settings_for(collection)
    ks = parse_ks(k)
    gates = _parse_gates(fail_under, ks)
    with errors():
        gold = load_golden(golden) if golden is not None else None
        base = json.loads(baseline.read_text()) if baseline else None
        corpus_ids = _corpus_ids(corpus, settings) if corpus else None
        try:
            records = load_ingest_records(ingest_report)
        except ValueError as exc:
            err.print(f"[bold red]error[/]: {exc}")
            raise typer.Exit(EXIT_ERROR) from None
    if submit:
        body = {"ks": ks, "generate": generate, "judge": judge, "rerank": rerank}
        if collection:
            body["collection"] = collection
        if golden is not None:  # the rows as the file has them: the server validates them with the same loader
            lines = golden.read_text(encoding="utf-8").splitlines()
            body["cases"] = [json.loads(line) for line in lines if line.strip()]
        if corpus_ids is not None:
            body["corpus"] = sorted(corpus_ids)
        if records:
            body["ingest_reports"] = records
        with errors():
            report = submit_audit(submit, api_key, body)
        _finish(report, base, out_dir, gates)
        return
    # The same audit through the running service, for the store_locked message: what to paste instead.
    args = [str(golden)] + (["-c", collection] if collection else []) + (["--k", k] if ks != list(DEFAULT_KS) else [])
    args += ["--generate"] * generate + ["--judge"] * judge
    args += [] if rerank is None else ["--rerank" if rerank else "--no-rerank"]
    args += [] if out_dir == Path("audit") else ["--out", str(out_dir)]
    args += ["--baseline", str(baseline)] if baseline else []
    args += [a for g in fail_under for a in ("--fail-under", g)]
    args += [a for c in corpus for a in ("--corpus", str(c))]
    args += [a for r in ingest_report for a in ("--ingest-report", str(r))]
    with errors(locked=lambda exc: locked_message(exc, "audit", args, settings)):
        with open_engine(settings) as engine:
            params = engine.params(rerank=rerank)
            scorer = make_judge(settings, engine.embedder, engine.bm25) if generate else None
            ragas_judge = None
            if judge:
                from diagnostics.judges.ragas_metrics import RagasJudge

                ragas_judge = RagasJudge(settings, settings.data_dir / "judge_cache.jsonl")
            columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()]
            with Progress(*columns, console=err, transient=True, disable=not err.is_terminal) as bar:
                task = bar.add_task("cases", total=len(gold.cases))
                report = Auditor(engine.answerer, engine.store, scorer, ragas_judge).run(
                    gold,
                    settings.collection,
                    params,
                    ks,
                    generate,
                    corpus_ids,
                    progress=lambda n: bar.advance(task, n),
                    ingest_records=records,
                )
    _finish(report, base, out_dir, gates)


def _finish(report: dict, base: dict | None, out_dir: Path, gates: dict[str, float]) -> None:
    """The reports written, the summary and the failing cases printed, and the gate (exit 3 below it): the same
    for an audit run here and one run on the service (--submit)."""
    from diagnostics.audit.compare import compare
    from diagnostics.audit.report import write_reports
    from diagnostics.audit.run import GOOD

    if base:
        report["comparison"] = compare(report, base)
    paths = write_reports(report, out_dir)
    out.print(report["summary"]["text"])
    for name, m in report["overall"].items():
        out.print(
            f"  {name:<22} "
            + (
                f"{m['mean']:.3f}  [{m['ci95'][0]:.3f}, {m['ci95'][1]:.3f}]"
                if m["mean"] is not None
                else f"unmeasured ({m.get('unmeasured', 0)} cases)"
            )
        )
    out.print(f"reports: {paths['md']}, {paths['html']}, {paths['json']} ({report['seconds']} s)")
    bad = [c for c in report["cases"] if c["verdict"] not in GOOD]
    if bad:  # last, where a terminal leaves the eye: what failed and where to act
        out.print(f"failing cases ({len(bad)}), with the lever for each:", markup=False)
        for c in bad:
            out.print(f"  {c['id']}  {c['verdict']}: {c.get('lever') or c['verdict_detail']}", markup=False)
    overall = report["overall"]
    failed = [
        f"{n} {overall[n]['mean'] or 0:.3f} < {v}" if n in overall else n
        for n, v in gates.items()
        if n not in overall or overall[n]["mean"] is None or overall[n]["mean"] < v
    ]
    if failed:
        err.print(
            "[bold red]below the gate[/]: " + "; ".join(f if " < " in f else f"{f} (no such metric)" for f in failed)
        )
        raise typer.Exit(EXIT_BELOW_GATE)


def submit_audit(url: str, api_key: Optional[str], body: dict, poll_s: float = 0.5) -> dict:
    """POST /v1/audits, then poll the job (a progress bar on a terminal, a line per change elsewhere) until it
    ends; returns its report. Raises StoreError (unreachable service, refused request, a job that did not
    succeed). Ctrl-C cancels the job on the service."""
    import time

    import httpx

    from core.errors import StoreError

    def refused(r: httpx.Response) -> StoreError:
        try:
            e = r.json()["error"]
            return StoreError(f"the service refused the audit ({r.status_code} {e['code']}): {e['message']}")
        except (ValueError, KeyError, TypeError):
            return StoreError(f"the service refused the audit ({r.status_code}): {r.text[:500]}")

    headers = {"X-API-Key": api_key} if api_key else {}
    base = url.rstrip("/")
    with httpx.Client(base_url=base, headers=headers, timeout=120) as http:
        try:
            r = http.post("/v1/audits", json=body)
        except httpx.TransportError as exc:
            raise StoreError(f"cannot reach the service at {base}: {exc}") from None
        if r.status_code != 202:
            raise refused(r)
        job = r.json()
        err.print(f"audit {job['id']} {job['status']} on {base} ({job['progress'].get('total', '?')} cases)")
        columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()]
        seen = None
        try:
            with Progress(*columns, console=err, transient=True, disable=not err.is_terminal) as bar:
                task = bar.add_task("cases", total=job["progress"].get("total"))
                while True:
                    progress = job.get("progress") or {}
                    bar.update(task, completed=progress.get("cases", 0), description=job["status"])
                    if not err.is_terminal and (job["status"], progress.get("cases")) != seen:
                        seen = (job["status"], progress.get("cases"))
                        print(f"progress status={seen[0]} cases={seen[1]}/{progress.get('total')}", file=sys.stderr)
                    if job["status"] not in ("queued", "running"):
                        break
                    time.sleep(poll_s)
                    try:
                        r = http.get(f"/v1/audits/{job['id']}")
                    except httpx.TransportError as exc:
                        raise StoreError(f"lost the service at {base} while audit {job['id']} ran: {exc}") from None
                    if r.status_code != 200:
                        raise refused(r)
                    job = r.json()
        except KeyboardInterrupt:
            http.post(f"/v1/jobs/{job['id']}/cancel")
            err.print(f"cancelled audit {job['id']} on {base}")
            raise typer.Exit(130) from None
    if job["status"] != "succeeded" or not job.get("report"):
        why = job.get("error") or job.get("reason") or "no report"
        raise StoreError(f"audit {job['id']} on {base} ended {job['status']}: {why}")
    return job["report"]


def _corpus_ids(paths: list[Path], settings: Settings) -> set[str]:
    """Document ids of the given corpus files, as ingest would assign them (BEIR ids read from the file)."""
    from ingest.identity import discover
    from ingest.parsers import parse_file

    ids = set()
    for path, doc_id, skip in discover(paths):
        if skip:
            continue
        if path.suffix == ".jsonl":
            ids.update(d.doc_id for d in parse_file(path, doc_id, 10**10))
        else:
            ids.add(doc_id)
    return ids
