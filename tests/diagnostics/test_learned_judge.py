"""The trained offline judge ships with the package, loads offline, and behaves like a judge."""

from __future__ import annotations

from core.settings import Settings
from core.sparse import Bm25Encoder
from diagnostics.judges.factory import make_judge
from diagnostics.judges.logistic import FEATURES, MODEL_PATH, LearnedFaithfulnessScorer, load_model


def test_weights_ship_small_with_their_agreement():
    model = load_model()
    assert model is not None and MODEL_PATH.stat().st_size < 100_000
    assert model["features"] == list(FEATURES) and len(model["coef"]) == len(FEATURES)
    assert 0 < model["threshold"] < 1 and "scifact_claims_dev" in model["agreement"]


def test_default_offline_judge_is_the_heuristic_that_transfers(embedder):
    settings = Settings(_env_file=None)
    judge = make_judge(settings, embedder, Bm25Encoder.from_settings(settings))
    assert not isinstance(judge, LearnedFaithfulnessScorer)
    assert judge.agreement["qags_cnndm"]["roc_auc"] > load_model()["agreement"]["qags_cnndm"]["roc_auc"]


def test_trained_judge_loads_offline_and_separates_claims(embedder):
    settings = Settings(_env_file=None)
    judge = make_judge(settings, embedder, Bm25Encoder.from_settings(settings), "trained")
    assert isinstance(judge, LearnedFaithfulnessScorer) and judge.name == load_model()["name"]
    context = ["The Eiffel Tower was completed in 1889. It is 330 metres tall and stands in Paris."]
    good, invented, negated = judge.score_claims(
        [
            "The Eiffel Tower was completed in 1889.",
            "The Eiffel Tower was designed by Leonardo da Vinci in 1503.",
            "The Eiffel Tower was not completed.",
        ],
        context,
    )
    assert good.supported and not invented.supported
    assert good.score > negated.score and invented.missing_numbers == ["1503"]
    scored = judge.score_answer("The tower stands in Paris [1]. It was built on the Moon [1].", context)
    assert scored["claims"][0].source == 1 and 0 <= scored["faithfulness"] <= 1
