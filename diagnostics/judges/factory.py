"""The faithfulness judge of audits, chosen by `faithfulness_judge` (one interface: diagnostics.judges.heuristic.Judge).

- heuristic: embedding + lexical evidence, hand-set weights (diagnostics/judges/heuristic.py); the default.
- trained: a logistic regression over the same evidence, trained on SciFact claims (diagnostics/judges/logistic.py).
- model: a local cross-encoder or sequence-classification model (diagnostics/judges/model.py): the one at
  RAG_JUDGE_MODEL_PATH, else the one `rag judge train` built under the data directory.
- llm: a claim-by-claim prompt to an OpenAI-compatible endpoint (diagnostics/judges/llm.py), with the
  heuristic deciding any claim the endpoint could not judge.
Each reports per-claim support with the evidence sentence, and its measured agreement with human labels.
"""

from __future__ import annotations

import json
from pathlib import Path

from core.embedding import Embedder
from core.errors import ConfigError
from core.settings import Settings
from core.sparse import Bm25Encoder
from diagnostics.judges.base import Judge
from diagnostics.judges.heuristic import FaithfulnessScorer
from diagnostics.judges.logistic import LearnedFaithfulnessScorer, load_model

KINDS = ("heuristic", "trained", "model", "llm")


def trained_model_dir(settings: Settings, name: str = "consistency") -> Path:
    """Where `rag judge train` keeps a judge's weights (never in the repository)."""
    return settings.data_dir / "judges" / name


def make_judge(settings: Settings, embedder: Embedder, bm25: Bm25Encoder, kind: str | None = None) -> Judge:
    """The judge `kind` names (default: the setting). Raises ConfigError when it cannot be built."""
    kind = kind or settings.faithfulness_judge
    if kind == "heuristic":
        return FaithfulnessScorer(embedder, bm25)
    if kind == "trained":
        model = load_model()
        if model is None:
            raise ConfigError("faithfulness_judge='trained' but its weights are missing from the package")
        return LearnedFaithfulnessScorer(embedder, bm25, model)
    if kind == "model":
        path = settings.judge_model_path or trained_model_dir(settings)
        if not Path(path).exists():
            raise ConfigError(
                "faithfulness_judge='model' needs a model: set RAG_JUDGE_MODEL_PATH to a local cross-encoder or "
                "sequence-classification model, or build one with `rag judge train`"
            )
        from diagnostics.judges.model import ModelJudge

        return ModelJudge.load(path, label=settings.judge_model_label, threshold=settings.judge_model_threshold)
    if kind == "llm":
        from diagnostics.judges.llm import LLMJudge

        return LLMJudge(settings, settings.data_dir / "llm_judge_cache.jsonl", FaithfulnessScorer(embedder, bm25))
    raise ConfigError(f"unknown faithfulness judge {kind!r}; one of {', '.join(KINDS)}")


def judge_card(settings: Settings) -> dict:
    """The configured judge's kind, name and measured agreement with human labels, without loading it.

    Raises ConfigError when the judge cannot be built (no model, no endpoint), so an API audit fails at once.
    """
    kind = settings.faithfulness_judge
    if kind == "heuristic":
        return {"kind": kind, "name": FaithfulnessScorer.name, "agreement": FaithfulnessScorer.agreement}
    if kind == "trained":
        model = load_model()
        if model is None:
            raise ConfigError("faithfulness_judge='trained' but its weights are missing from the package")
        return {"kind": kind, "name": model["name"], "agreement": model.get("agreement") or {}}
    if kind == "model":
        path = Path(settings.judge_model_path or trained_model_dir(settings))
        if not path.exists():
            raise ConfigError(
                "faithfulness_judge='model' needs a model: set RAG_JUDGE_MODEL_PATH or run `rag judge train`"
            )
        card = json.loads((path / "judge.json").read_text()) if (path / "judge.json").exists() else {}
        return {"kind": kind, "name": card.get("name", path.name), "agreement": card.get("agreement") or {}}
    if kind == "llm":
        if not (settings.judge_base_url or settings.llm_base_url):
            raise ConfigError("the LLM judge needs an endpoint: set RAG_JUDGE_BASE_URL or RAG_LLM_BASE_URL")
        return {"kind": kind, "name": f"llm-claims:{settings.judge_model or settings.llm_model}", "agreement": {}}
    raise ConfigError(f"unknown faithfulness judge {kind!r}; one of {', '.join(KINDS)}")
