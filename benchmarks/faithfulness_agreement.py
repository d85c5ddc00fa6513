"""Agreement of the offline faithfulness judges with human labels.

    python benchmarks/faithfulness_agreement.py [--limit N] [--judge heuristic|learned|model|both]
        [--model-path P] [--write-agreement]

Judges: `heuristic` (diagnostics/judges/heuristic.py, hand-set weights), `learned` (the trained logistic
regression of diagnostics/judges/logistic.py; retrain with `python -m diagnostics.judges.logistic_train`) and `model`
(diagnostics/judges/model.py: the model at --model-path, else the one `rag judge train` saved under
RAG_DATA_DIR/judges/consistency). For the learned and model judges the threshold is their own (chosen on
SciFact claims train, or on held-out synthetic claims, when they were trained); QAGS is never used for
training or for choosing anything. `--write-agreement` stores the learned or model judge's measured figures
with it (its weights file, its judge.json), so audit reports can state them.

- SciFact claims (../shared/data/scifact_claims): a claim against the abstract it cites. Supported = the
  annotators' SUPPORT evidence; unsupported = CONTRADICT evidence, or no evidence in a cited abstract.
  The threshold is chosen on train (max balanced accuracy) and reported on dev.
- QAGS (../shared/data/qags): each summary sentence against its article; supported = a majority of the 3
  annotators said yes. Never used for tuning.
Reports balanced accuracy at the threshold and ROC AUC (threshold-free).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from core.embedding import get_embedder
from core.settings import Settings
from core.sparse import Bm25Encoder
from diagnostics.judges.factory import trained_model_dir
from diagnostics.judges.heuristic import FaithfulnessScorer
from diagnostics.judges.logistic import MODEL_PATH, LearnedFaithfulnessScorer, load_model
from diagnostics.judges.logistic_train import scifact_claim_pairs
from diagnostics.judges.model import JUDGE_FILE, ModelJudge
from diagnostics.metrics import balanced_accuracy, roc_auc

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def scifact_pairs(split: str, limit: int | None):
    pairs = scifact_claim_pairs(DATA, split)
    return pairs[:limit] if limit else pairs


def qags_pairs(limit: int | None):
    pairs = []
    for line in open(DATA / "qags" / "mturk_cnndm.jsonl"):
        row = json.loads(line)
        for s in row["summary_sentences"]:
            yes = sum(r["response"] == "yes" for r in s["responses"])
            pairs.append((s["sentence"], [row["article"]], 1 if yes * 2 > len(s["responses"]) else 0))
    return pairs[:limit] if limit else pairs


def score(scorer: FaithfulnessScorer, pairs) -> tuple[list[float], list[int]]:
    """Each claim scored against its contexts (claims sharing contexts in one call: the same scores, faster;
    the model judge takes every pair in one batched call)."""
    if isinstance(scorer, ModelJudge):
        return [c.score for c in scorer.score_each([(c, ctx) for c, ctx, _ in pairs])], [y for _, _, y in pairs]
    groups: dict[tuple, list[int]] = {}
    for i, (_, ctx, _) in enumerate(pairs):
        groups.setdefault(tuple(ctx), []).append(i)
    scores = [0.0] * len(pairs)
    for ctx, idx in groups.items():
        for i, c in zip(idx, scorer.score_claims([pairs[i][0] for i in idx], list(ctx))):
            scores[i] = c.score
    return scores, [label for _, _, label in pairs]


def evaluate(scorer, limit: int | None, tune_threshold: bool, train: bool = True) -> dict:
    """Figures on SciFact claims dev and QAGS (and SciFact train unless `train` is False: the model judge's
    threshold was chosen elsewhere, and scoring 919 more pairs with a cross-encoder on CPU takes minutes)."""
    result: dict = {"judge": scorer.name}
    best = scorer.threshold
    if train:
        train_s, train_y = score(scorer, scifact_pairs("train", limit))
        if tune_threshold:
            grid = [round(t, 2) for t in np.arange(0.30, 0.90, 0.01)]
            best = max(grid, key=lambda t: balanced_accuracy(train_s, train_y, t))
        result["threshold_chosen_on_scifact_train"] = best
        result["scifact_train"] = {
            "pairs": len(train_y),
            "positives": int(sum(train_y)),
            "balanced_accuracy": round(balanced_accuracy(train_s, train_y, best), 4),
            "roc_auc": round(roc_auc(train_s, train_y), 4),
        }
    else:
        result["threshold"] = best
    for name, pairs in (("scifact_dev", scifact_pairs("dev", limit)), ("qags_cnndm", qags_pairs(limit))):
        t0 = time.monotonic()
        s, y = score(scorer, pairs)
        result[name] = {
            "pairs": len(y),
            "positives": int(sum(y)),
            "balanced_accuracy": round(balanced_accuracy(s, y, best), 4),
            "balanced_accuracy_at_default_threshold": round(balanced_accuracy(s, y, scorer.threshold), 4),
            "roc_auc": round(roc_auc(s, y), 4),
            "seconds": round(time.monotonic() - t0, 1),
        }
    return result


def agreement_of(res: dict) -> dict:
    """The figures a judge stores with itself: {data set: {pairs, balanced_accuracy, roc_auc}}."""
    return {
        stored: {k: res[name][k] for k in ("pairs", "balanced_accuracy", "roc_auc")}
        for name, stored in (("scifact_dev", "scifact_claims_dev"), ("qags_cnndm", "qags_cnndm"))
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--limit", type=int, default=None, help="first N pairs of each set (quick runs)")
    ap.add_argument("--judge", choices=["heuristic", "learned", "model", "both"], default="both")
    ap.add_argument("--model-path", type=Path, default=None, help="the model judge (default: rag judge train's)")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads for the model judge")
    ap.add_argument("--write-agreement", action="store_true", help="store the learned/model judge's figures with it")
    args = ap.parse_args()
    settings = Settings()
    if args.judge == "model":
        import torch

        if args.threads:
            torch.set_num_threads(args.threads)
        path = args.model_path or trained_model_dir(settings)
        res = evaluate(ModelJudge.load(path), args.limit, tune_threshold=False, train=False)
        if args.write_agreement and not args.limit and (path / JUDGE_FILE).exists():
            meta = json.loads((path / JUDGE_FILE).read_text())
            meta["agreement"] = agreement_of(res)
            (path / JUDGE_FILE).write_text(json.dumps(meta, indent=1) + "\n")
        print(json.dumps({"model": res}, indent=2))
        return
    embedder, bm25 = get_embedder(settings), Bm25Encoder.from_settings(settings)
    out = {}
    if args.judge in ("heuristic", "both"):
        out["heuristic"] = evaluate(FaithfulnessScorer(embedder, bm25), args.limit, tune_threshold=True)
    if args.judge in ("learned", "both"):
        model = load_model()
        if model is None:
            raise SystemExit(f"no trained judge at {MODEL_PATH}: run python -m diagnostics.judges.logistic_train")
        res = evaluate(LearnedFaithfulnessScorer(embedder, bm25, model), args.limit, tune_threshold=False)
        out["learned"] = res
        if args.write_agreement and not args.limit:
            model["agreement"] = agreement_of(res)
            MODEL_PATH.write_text(json.dumps(model, indent=1) + "\n")
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
