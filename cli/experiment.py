"""`rag experiment GOLDEN --variant a.toml --variant b.toml ...`: audit each variant on the same cases,
compare each with the first (paired bootstrap), name a winner per metric or say "inconclusive", list flips."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from cli.support import err, errors, out, parse_ks, settings_for
from diagnostics.metrics import DEFAULT_KS


def experiment(
    golden: Path = typer.Argument(..., help="Golden set JSONL."),
    variant: list[Path] = typer.Option(..., "--variant", "-v", help="A variant TOML; the first is the baseline."),
    collection: Optional[str] = typer.Option(None, "--collection", "-c", help="Default collection of the variants."),
    k: str = typer.Option(",".join(map(str, DEFAULT_KS)), "--k", help="Cut-offs for the metrics."),
    generate: bool = typer.Option(
        False, "--generate", help="Generate and judge answers in every variant (variants with [generation] always do)."
    ),
    metrics: str = typer.Option(
        "ndcg@10,recall@10,mrr,hit@5,faithfulness,judge_faithfulness", "--metrics", help="Metrics in the table."
    ),
    out_dir: Path = typer.Option(Path("experiment"), "--out", help="Where experiment.json/.md and the audits go."),
) -> None:
    """Compare pipeline variants (retrieval, prompt, few-shot, reasoning, generator, judge) on one golden set."""
    from core.store import open_store
    from diagnostics.audit.golden import load_golden
    from diagnostics.ladder.analysis import to_markdown, write_experiment
    from diagnostics.ladder.experiment import ExperimentRunner
    from diagnostics.ladder.variants import load_variants

    settings = settings_for(collection)
    ks = parse_ks(k)
    chosen = [m.strip() for m in metrics.split(",") if m.strip()]
    with errors():
        gold = load_golden(golden)
        variants = load_variants(variant)
        with open_store(settings) as store:
            runner = ExperimentRunner(settings, store)
            columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()]
            with Progress(*columns, console=err, transient=True, disable=not err.is_terminal) as bar:
                tasks = {v.name: bar.add_task(v.name, total=len(gold.cases)) for v in variants}
                result, reports = runner.run(
                    gold, variants, ks, generate, progress=lambda name, n: bar.advance(tasks[name], n)
                )
    paths = write_experiment(result, reports, out_dir, chosen)
    out.print(to_markdown(result, chosen))
    out.print(f"reports: {paths['md']}, {paths['json']}, {out_dir / 'variants'}/ ({result['seconds']} s)")
