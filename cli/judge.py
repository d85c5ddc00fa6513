"""`rag judge train`: a consistency judge (a cross-encoder) trained on claims made from your own corpus."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from cli.support import EXIT_ERROR, err, errors, out, settings_for

judge_app = typer.Typer(help="The model faithfulness judge (RAG_FAITHFULNESS_JUDGE=model).", no_args_is_help=True)


@judge_app.command("train")
def judge_train(
    collection: Optional[str] = typer.Option(
        None, "--collection", "-c", help="Take passages from this collection's chunks (the default collection)."
    ),
    sources: Optional[list[Path]] = typer.Option(
        None, "--from", help="Take passages from these files or folders instead (what `rag ingest` reads)."
    ),
    pairs: Optional[Path] = typer.Option(None, "--pairs", help="Also train on labelled {claim, context, label} JSONL."),
    name: str = typer.Option("consistency", "--name", help="Saved under RAG_DATA_DIR/judges/NAME."),
    exclude_docs: Optional[Path] = typer.Option(
        None, "--exclude-docs", help="A file of document ids (one a line) to leave out, e.g. ones you evaluate on."
    ),
    max_pairs: int = typer.Option(4000, "--max-pairs", min=16, help="Training pairs (labelled ones included)."),
    epochs: int = typer.Option(1, "--epochs", min=1),
    batch_size: int = typer.Option(16, "--batch-size", min=1),
    max_length: int = typer.Option(128, "--max-length", min=32, help="Tokens of premise + claim."),
    lr: float = typer.Option(1e-4, "--lr", help="Learning rate of the encoder."),
    head_lr: float = typer.Option(2e-3, "--head-lr", help="Learning rate of the fresh classification head."),
    holdout: float = typer.Option(0.1, "--holdout", min=0.01, max=0.5, help="Share of documents held out."),
    threads: int = typer.Option(2, "--threads", min=1, help="Torch CPU threads."),
    seed: int = typer.Option(13, "--seed"),
    as_json: bool = typer.Option(False, "--json", help="Print judge.json on stdout."),
) -> None:
    """Train a cross-encoder from the shipped MiniLM weights on FactCC-style synthetic claims of your corpus;
    use it with RAG_FAITHFULNESS_JUDGE=model."""
    import torch

    from diagnostics.judges.factory import trained_model_dir
    from diagnostics.judges.model_train import load_labelled, passages_from_files, passages_from_store, train_judge

    settings = settings_for(collection)
    exclude = set(exclude_docs.read_text().split()) if exclude_docs else set()
    torch.set_num_threads(threads)
    with errors():
        if sources:
            passages = passages_from_files(sources, exclude, int(settings.max_file_mb * 1e6))
            where = ", ".join(str(s) for s in sources)
        else:
            from core.errors import CollectionNotFoundError
            from core.store import open_store

            with open_store(settings) as store:
                if store.get_spec(settings.collection) is None:
                    raise CollectionNotFoundError(f"no collection named {settings.collection!r}")
                passages = passages_from_store(store, settings.collection, exclude)
            where = f"collection {settings.collection}"
        labelled = load_labelled(pairs) if pairs else []
        if len({p.doc_id for p in passages}) < 2:
            err.print(f"[bold red]error[/]: {where} has too few passages of 2+ sentences in 2+ documents to train on")
            raise typer.Exit(EXIT_ERROR)
        dest = trained_model_dir(settings, name)
        meta = train_judge(
            passages,
            dest,
            labelled=labelled,
            source=where,
            max_pairs=max_pairs,
            holdout=holdout,
            epochs=epochs,
            batch_size=batch_size,
            max_length=max_length,
            lr=lr,
            head_lr=head_lr,
            seed=seed,
            log=lambda line: err.print(line),
        )
    if as_json:
        out.print_json(json.dumps(meta))
        return
    h = meta["held_out"]
    out.print(
        f"judge saved to {dest}: {meta['trained_on']['synthetic_pairs']} synthetic + "
        f"{meta['trained_on']['labelled_pairs']} labelled pairs, {meta['seconds']['total']} s; threshold "
        f"{meta['threshold']} (held-out synthetic: balanced accuracy {h['balanced_accuracy']}, ROC AUC {h['roc_auc']})"
    )
    out.print(f"use it: RAG_FAITHFULNESS_JUDGE=model (or RAG_JUDGE_MODEL_PATH={dest})")
