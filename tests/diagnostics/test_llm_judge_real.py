"""The LLM faithfulness judge against a real OpenAI-compatible server: llama.cpp serving SmolLM2-135M-Instruct
(the `llama_server` fixture in tests/conftest.py; skipped where it is not installed). Marked `llm`.

It measures, on a slice of SciFact claims dev (human labels), the judge's agreement and its seconds per claim,
and records what ragas's structured-output metrics make of so small a model. The figures are written to
$RAG_LLM_JUDGE_REPORT when set (the README quotes a run). The assertions are about the plumbing holding with
a real model (every claim judged or explicitly handed to the fallback, scores in range, log probabilities
read), not about a 135M model being a good judge: it is not, and the report says so.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from core.settings import Settings
from core.sparse import Bm25Encoder
from diagnostics.judges.heuristic import FaithfulnessScorer
from diagnostics.judges.llm import LLMJudge
from diagnostics.judges.logistic_train import scifact_claim_pairs
from diagnostics.judges.ragas_metrics import RagasJudge
from diagnostics.metrics import balanced_accuracy, roc_auc
from tests.conftest import SHARED

pytestmark = pytest.mark.llm
SLICE = 20


@pytest.mark.timeout(1200)
def test_llm_judge_on_a_scifact_claims_slice(tmp_path, llama_server, embedder):
    if not (SHARED / "scifact_claims").exists():
        pytest.skip("SciFact claims are not in the shared data")
    settings = Settings(
        data_dir=tmp_path,
        judge_base_url=llama_server,
        judge_model="smollm2",
        llm_timeout_s=120.0,
        _env_file=None,
    )
    fallback = FaithfulnessScorer(embedder, Bm25Encoder.from_settings(settings))
    judge = LLMJudge(settings, None, fallback)
    pairs = scifact_claim_pairs(SHARED, "dev")
    pos = [p for p in pairs if p[2] == 1][: SLICE // 2]
    neg = [p for p in pairs if p[2] == 0][: SLICE // 2]
    t0 = time.perf_counter()
    claims = [judge.score_claims([claim], contexts)[0] for claim, contexts, _ in pos + neg]
    seconds = time.perf_counter() - t0
    labels = [p[2] for p in pos + neg]
    judged = [c for c in claims if c.judged_by is None]
    assert all(0.0 <= c.score <= 1.0 for c in claims)
    assert len(judged) + judge.failures == len(claims)  # every claim judged, or handed over and counted
    assert len(judged) >= len(claims) // 2, f"the model gave a yes/no for only {len(judged)} of {len(claims)}"
    # llama.cpp returns log probabilities: P(yes) is a graded score, not only 0 and 1.
    assert any(0.0 < c.score < 1.0 for c in judged)
    scores = [c.score for c in claims]
    report = {
        "judge": judge.name,
        "pairs": len(claims),
        "positives": sum(labels),
        "judged_by_llm": len(judged),
        "fallbacks": judge.failures,
        "roc_auc": round(roc_auc(scores, labels), 4),
        "balanced_accuracy_at_0.5": round(balanced_accuracy(scores, labels, 0.5), 4),
        "seconds_per_claim": round(seconds / len(claims), 3),
    }
    print(json.dumps(report, indent=1))
    _record("llm_judge", report)


def _record(name: str, figures: dict) -> None:
    if os.environ.get("RAG_LLM_JUDGE_REPORT"):
        path = Path(os.environ["RAG_LLM_JUDGE_REPORT"])
        old = json.loads(path.read_text()) if path.exists() else {}
        path.write_text(json.dumps({**old, name: figures}, indent=1))


@pytest.mark.timeout(1200)
def test_ragas_with_a_small_model_states_what_failed(tmp_path, llama_server):
    """ragas asks for structured output (JSON of a schema, through instructor): whatever a 135M model manages,
    each metric is a value or `unmeasured` with the reason, never a NaN or an exception."""
    settings = Settings(
        data_dir=tmp_path,
        judge_base_url=llama_server,
        judge_model="smollm2",
        llm_timeout_s=60.0,
        llm_max_retries=0,
        _env_file=None,
    )
    ragas = RagasJudge(settings, tmp_path / "ragas.jsonl")
    context = "The Eiffel Tower was completed in 1889. It stands in Paris and is 330 metres tall."
    t0 = time.perf_counter()
    got = ragas.judge("When was the Eiffel Tower completed?", "It was completed in 1889.", [context], "In 1889.")
    figures = {name: (res["value"] if "value" in res else res["unmeasured"][:200]) for name, res in got.items()}
    figures["seconds"] = round(time.perf_counter() - t0, 1)
    print(json.dumps(figures, indent=1))
    _record("ragas", figures)
    assert set(got) == {"faithfulness", "context_recall", "context_precision"}
    assert all(("value" in res) != ("unmeasured" in res) for res in got.values())
    assert all(0.0 <= res["value"] <= 1.0 for res in got.values() if "value" in res)
