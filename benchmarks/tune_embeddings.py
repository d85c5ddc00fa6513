"""A retriever tuned on SciFact train, measured on SciFact test, through `rag tune-embeddings`.

    cp -a /tmp/scifact-data /tmp/tune-data        # the store has one owner: work on a copy
    RAG_DATA_DIR=/tmp/tune-data python benchmarks/tune_embeddings.py --work /tmp/tune [--epochs 1]

Imports the BEIR splits as golden sets (under --work, never in the repository), then runs
`rag tune-embeddings train.jsonl --eval test.jsonl --corpus corpus.jsonl`: pairs from an audit of the 809
train questions (hard negatives from its candidates), one epoch of MultipleNegativesRankingLoss on the CPU,
a new collection `scifact-tuned` embedded with the tuned model (the source collection untouched), and
dense and hybrid audits of both collections on the 300 test questions. Prints the summary.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

from diagnostics.audit.golden import import_beir

ROOT = Path(__file__).resolve().parents[1]
SCIFACT = Path(os.environ.get("RAG_SHARED_DATA", ROOT.parent / "shared" / "data")) / "scifact"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", type=Path, required=True, help="Scratch folder for golden sets, model, reports.")
    ap.add_argument("--collection", default="scifact")
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--negatives", type=int, default=1)
    ap.add_argument("--train-max-seq-length", type=int, default=128)
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    for split in ("train", "test"):
        rows = import_beir(SCIFACT / "queries.jsonl", SCIFACT / "qrels" / f"{split}.tsv")
        (args.work / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    cmd = [
        sys.executable, "-m", "cli", "tune-embeddings", str(args.work / "train.jsonl"),
        "--eval", str(args.work / "test.jsonl"),
        "--corpus", str(SCIFACT / "corpus.jsonl"),
        "--collection", args.collection,
        "--out", str(args.work / "model"),
        "--report", str(args.work / "report"),
        "--epochs", str(args.epochs),
        "--batch-size", str(args.batch_size),
        "--negatives", str(args.negatives),
        "--train-max-seq-length", str(args.train_max_seq_length),
    ]  # fmt: skip
    subprocess.run(cmd, check=True, cwd=ROOT)
    print((args.work / "report" / "summary.json").read_text())


if __name__ == "__main__":
    main()
