"""`rag export finetune|pairs GOLDEN` and `rag tune-embeddings GOLDEN`: fine-tuning data from a golden set,
and a retriever tuned on it, measured against the collection it came from."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from cli.support import EXIT_ERROR, err, errors, open_engine, out, settings_for

export_app = typer.Typer(help="Fine-tuning data from a golden set.", no_args_is_help=True)


def _audit(engine, gold, collection: str, params, generate: bool) -> dict:
    from diagnostics.audit.run import Auditor
    from diagnostics.judges.heuristic import FaithfulnessScorer
    from diagnostics.metrics import DEFAULT_KS

    scorer = FaithfulnessScorer(engine.embedder, engine.bm25) if generate else None
    return Auditor(engine.answerer, engine.store, scorer).run(gold, collection, params, DEFAULT_KS, generate)


def _print_validation(v: dict) -> None:
    t = v["tokens"]
    out.print(
        f"validated: {v['examples']} examples, format {'ok' if not v['format_errors'] else 'ERRORS'}; tokens per "
        f"example {t['min']}-{t['max']} (mean {t['mean']}), {t['total']} in all, "
        f"~{t['billed_for_epochs']['tokens']} billed for {t['billed_for_epochs']['epochs']} epochs; "
        f"tokenizer: {t['tokenizer']}"
    )
    for kind, lines in v["format_errors"].items():
        err.print(f"[bold red]format error[/] {kind}: lines {lines[:10]}")
    for w in v["warnings"]:
        err.print(f"[yellow]warning[/]: {w}")


@export_app.command("finetune")
def export_finetune(
    golden: Path = typer.Argument(..., help="Golden set JSONL (reference answers give the completions)."),
    fmt: str = typer.Option("openai-chat", "--format", help="Output format: openai-chat."),
    out_path: Path = typer.Option(Path("finetune.jsonl"), "--out", "-o", help="JSONL to write."),
    collection: Optional[str] = typer.Option(None, "--collection", "-c"),
    report: Optional[Path] = typer.Option(
        None, "--report", help="An audit report.json (with --generate) whose verdicts pick the cases; else one is run."
    ),
    include_all: bool = typer.Option(
        False, "--all", help="Every case with a reference answer, not only behaviour failures."
    ),
) -> None:
    """Chat fine-tuning JSONL whose prompts are exactly what the service sends; behaviour failures by default."""
    from diagnostics.audit.golden import load_golden
    from diagnostics.ladder.chat_format import token_counter, validate_chat_jsonl
    from diagnostics.ladder.finetune import chat_examples, write_jsonl

    if fmt != "openai-chat":
        err.print(f"[bold red]error[/]: --format supports openai-chat (got {fmt!r})")
        raise typer.Exit(EXIT_ERROR)
    settings = settings_for(collection)
    with errors():
        gold = load_golden(golden)
        with open_engine(settings) as engine:
            params = engine.params()
            verdicts = None
            if not include_all:
                audited = (
                    json.loads(report.read_text())
                    if report
                    else _audit(engine, gold, settings.collection, params, True)
                )
                verdicts = {c["id"]: c for c in audited["cases"]}
            examples, skipped = chat_examples(
                gold, engine.retriever, settings, settings.collection, params, verdicts, include_all
            )
            n = write_jsonl(examples, out_path)
            tokenizer, count = token_counter(lambda t: engine.embedder.count_tokens([t])[0] if t else 0)
            validation = validate_chat_jsonl(out_path, count, tokenizer)
    out.print(f"wrote {n} examples to {out_path}; {len(skipped)} cases left out")
    reasons: dict[str, int] = {}
    for s in skipped:
        reasons[s["reason"]] = reasons.get(s["reason"], 0) + 1
    for r, c in sorted(reasons.items(), key=lambda x: -x[1]):
        out.print(f"  left out {c}: {r}")
    if settings.llm_reasoning:
        err.print("[yellow]warning[/]: reasoning is on: the prompts ask for reasoning the reference completions lack")
    _print_validation(validation)
    if not validation["ok"] and n:
        raise typer.Exit(EXIT_ERROR)


@export_app.command("pairs")
def export_pairs(
    golden: Path = typer.Argument(..., help="Golden set JSONL."),
    out_path: Path = typer.Option(Path("pairs.jsonl"), "--out", "-o", help="JSONL to write."),
    collection: Optional[str] = typer.Option(None, "--collection", "-c"),
    negatives: int = typer.Option(3, "--negatives", help="Hard negatives per pair, from the audit's candidates."),
    depth: int = typer.Option(10, "--depth", help="Chunks the audit keeps per question to take negatives from."),
) -> None:
    """(question, positive passage, hard negatives) for contrastive retriever training."""
    from diagnostics.audit.golden import load_golden
    from diagnostics.ladder.finetune import write_jsonl
    from diagnostics.ladder.pairs import retriever_pairs, validate_pairs_jsonl

    settings = settings_for(collection)
    with errors():
        gold = load_golden(golden)
        with open_engine(settings) as engine:
            audited = _audit(engine, gold, settings.collection, engine.params(top_k=depth), False)
            rows, skipped = retriever_pairs(gold, audited, engine.store, settings.collection, negatives)
    n = write_jsonl(rows, out_path)
    v = validate_pairs_jsonl(out_path) if n else {"ok": False, "errors": {}}
    out.print(f"wrote {n} pairs to {out_path} ({len(skipped)} left out); format {'ok' if v['ok'] else v['errors']}")


def tune_embeddings(
    golden: Path = typer.Argument(..., help="Golden set JSONL to train on (and hold out from)."),
    base: Optional[str] = typer.Option(None, "--base", help="Model to start from; default: the collection's."),
    out_dir: Path = typer.Option(..., "--out", help="Where the tuned model is saved."),
    corpus: list[Path] = typer.Option(..., "--corpus", help="The files the collection was built from (re-ingested)."),
    collection: Optional[str] = typer.Option(None, "--collection", "-c", help="The source collection (untouched)."),
    new_collection: Optional[str] = typer.Option(None, "--new-collection", help="Default: <collection>-tuned."),
    eval_golden: Optional[Path] = typer.Option(None, "--eval", help="Held-out golden set; else --holdout of GOLDEN."),
    holdout: float = typer.Option(0.2, "--holdout", help="Share of GOLDEN held out when --eval is not given."),
    epochs: int = typer.Option(1, "--epochs"),
    batch_size: int = typer.Option(32, "--batch-size"),
    negatives: int = typer.Option(1, "--negatives", help="Hard negatives per pair in training."),
    lr: float = typer.Option(2e-5, "--lr"),
    max_seq_length: int = typer.Option(0, "--train-max-seq-length", help="Truncate passages in training (0: off)."),
    report_dir: Path = typer.Option(Path("tune-embeddings"), "--report", help="Where pairs and comparisons go."),
) -> None:
    """Fine-tune the embedding model on the golden set's questions, build a new collection, audit both."""
    from diagnostics.audit.golden import load_golden
    from diagnostics.ladder.analysis import to_markdown, write_experiment
    from diagnostics.ladder.experiment import ExperimentRunner
    from diagnostics.ladder.finetune import write_jsonl
    from diagnostics.ladder.pairs import retriever_pairs
    from diagnostics.ladder.tune_embeddings import build_collection, split_golden, train
    from diagnostics.ladder.variants import Variant

    settings = settings_for(collection)
    src = settings.collection
    target = new_collection or f"{src}-tuned"
    report_dir.mkdir(parents=True, exist_ok=True)
    with errors():
        gold = load_golden(golden)
        train_set, held = (gold, load_golden(eval_golden)) if eval_golden else split_golden(gold, holdout)
        with open_engine(settings) as engine:
            spec = engine.require_collection(src)
            base_model = base or spec.embedding["model"]
            audited = _audit(engine, train_set, src, engine.params(top_k=max(10, negatives + 5)), False)
            rows, _ = retriever_pairs(train_set, audited, engine.store, src, max(negatives, 3))
            write_jsonl(rows, report_dir / "pairs.jsonl")
            out.print(f"{len(rows)} training pairs from {len(train_set.cases)} questions; {len(held.cases)} held out")
            stats = train(
                base_model,
                rows,
                out_dir,
                epochs,
                batch_size,
                lr,
                negatives,
                max_seq_length=max_seq_length or None,
                progress=lambda s, n, loss: (
                    err.print(f"step {s}/{n} loss {loss:.4f}") if s % 5 == 0 or s == n else None
                ),
            )
            out.print(
                f"trained in {stats['seconds']} s ({stats['steps']} steps); loss {stats['loss_first_fifth']} -> "
                f"{stats['loss_last_fifth']}"
            )
            built = build_collection(settings, engine.store, out_dir, corpus, src, target)
            out.print(f"built {target}: {built['points']} points in {built['seconds']} s ({built['status']})")
            runner = ExperimentRunner(settings, engine.store, engine.embedder)
            results = {}
            for mode in ("dense", "hybrid"):
                variants = [
                    Variant(f"{src}-{mode}", collection=src, retrieval={"mode": mode}),
                    Variant(f"{target}-{mode}", collection=target, retrieval={"mode": mode}),
                ]
                result, reports = runner.run(held, variants)
                write_experiment(result, reports, report_dir / mode)
                results[mode] = result
                out.print(to_markdown(result, ["ndcg@10", "recall@10", "mrr"]))
    (report_dir / "summary.json").write_text(
        json.dumps(
            {
                "train": stats,
                "collection": built,
                "held_out": len(held.cases),
                "ndcg@10": {
                    m: {v["name"]: v["overall"]["ndcg@10"]["mean"] for v in r["variants"]} for m, r in results.items()
                },
            },
            indent=2,
        )
    )
