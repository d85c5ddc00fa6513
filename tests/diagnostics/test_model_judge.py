"""The model judge (diagnostics/judges/model.py) and `rag judge train` (diagnostics/judges/model_train.py).

Models with known outputs are the shipped MiniLM weights with a fresh head whose weights are zero, so every
output is the head's bias: the label mapping is checked against exact probabilities.
"""

from __future__ import annotations

import json
import math
import random
import shutil

import pytest

from core.embedding import resolve_model_path
from core.errors import ConfigError
from core.settings import DEFAULT_EMBEDDING_MODEL, Settings
from diagnostics.judges.factory import make_judge
from diagnostics.judges.model import JUDGE_FILE, ModelJudge, context_windows
from diagnostics.judges.model_train import Passage, load_labelled, merge, mutate, reorder, synthetic_examples


@pytest.fixture(scope="module")
def encoder():
    """The shipped MiniLM as a sequence classifier (its head is replaced by each test)."""
    from sentence_transformers import CrossEncoder

    return CrossEncoder(resolve_model_path(DEFAULT_EMBEDDING_MODEL), num_labels=1, device="cpu")


def _fixed_head(ce, id2label: dict[int, str], bias: list[float]):
    """`ce` with a fresh head of zero weights: its outputs are always `bias`."""
    import torch

    head = torch.nn.Linear(ce.model.config.hidden_size, len(bias))
    with torch.no_grad():
        head.weight.zero_()
        head.bias.copy_(torch.tensor(bias))
    ce.model.classifier = head
    ce.model.config.num_labels = len(bias)
    ce.model.config.id2label = dict(id2label)
    ce.model.config.label2id = {v: k for k, v in id2label.items()}
    return ce


@pytest.fixture(scope="module")
def saved(encoder, tmp_path_factory):
    """A saved model with one logit, always 1.0 (P = sigmoid(1) = 0.731)."""
    path = tmp_path_factory.mktemp("judge_models") / "one"
    _fixed_head(encoder, {0: "LABEL_0"}, [1.0]).save(str(path))
    return path


def _softmax(z: list[float], i: int) -> float:
    return math.exp(z[i]) / sum(math.exp(v) for v in z)


def test_label_by_name_index_and_single_logit(encoder, saved):
    ctx = ["The drug lowered blood pressure in 40 patients."]
    claim = ["The drug lowered blood pressure."]
    nli = _fixed_head(encoder, {0: "ENTAILMENT", 1: "neutral", 2: "contradiction"}, [2.0, 0.0, -2.0])
    judge = ModelJudge(nli)  # no label given: 'entailment', matched case-insensitively
    assert judge.label_index == 0
    assert judge.score_claims(claim, ctx)[0].score == pytest.approx(_softmax([2, 0, -2], 0), abs=1e-3)
    neutral = ModelJudge(nli, label="Neutral")
    assert neutral.score_claims(claim, ctx)[0].score == pytest.approx(_softmax([2, 0, -2], 1), abs=1e-3)
    assert ModelJudge(nli, label="2").score_claims(claim, ctx)[0].score == pytest.approx(
        _softmax([2, 0, -2], 2), abs=1e-3
    )
    with pytest.raises(ConfigError, match="no label"):
        ModelJudge(nli, label="supported!")
    with pytest.raises(ConfigError, match="out of range"):
        ModelJudge(nli, label=3)
    two = _fixed_head(encoder, {0: "LABEL_0", 1: "LABEL_1"}, [0.0, 1.0])
    with pytest.raises(ConfigError, match="say which one"):
        ModelJudge(two)  # LABEL_0 / LABEL_1 name nothing: the label must be given
    assert ModelJudge(two, label=1).score_claims(claim, ctx)[0].score == pytest.approx(_softmax([0, 1], 1), abs=1e-3)
    one = ModelJudge.load(saved)  # saved and loaded: one logit, read through a sigmoid
    [c] = one.score_claims(claim, ctx)
    assert c.score == pytest.approx(1 / (1 + math.exp(-1)), abs=1e-3) and c.supported  # sigmoid(1) = 0.731


def test_threshold_from_judge_json_and_settings_override(saved, tmp_path):
    path = tmp_path / "one"
    shutil.copytree(saved, path)
    (path / JUDGE_FILE).write_text(json.dumps({"name": "mine", "label": 0, "threshold": 0.9, "agreement": {"x": 1}}))
    judge = ModelJudge.load(path)
    assert (judge.name, judge.threshold, judge.agreement) == ("mine", 0.9, {"x": 1})
    assert not judge.score_claims(["Water boils at 100 degrees."], ["Water boils at 100 degrees."])[0].supported
    assert ModelJudge.load(path, threshold=0.7).threshold == 0.7
    # The audit's way in: RAG_JUDGE_MODEL_PATH and RAG_JUDGE_MODEL_THRESHOLD, which overrides judge.json.
    settings = Settings(faithfulness_judge="model", judge_model_path=path, judge_model_threshold=0.6, _env_file=None)
    judge = make_judge(settings, None, None)
    assert isinstance(judge, ModelJudge) and judge.threshold == 0.6 and judge.name == "mine"
    assert judge.score_claims(["Water boils at 100 degrees."], ["Water boils at 100 degrees."])[0].supported
    with pytest.raises(ConfigError, match="no model"):
        ModelJudge.load(tmp_path / "empty")


def test_score_claims_evidence_and_source_from_the_best_window(saved):
    judge = ModelJudge.load(saved)
    calls = []

    def logits(pairs):  # 'supported' exactly when the premise contains the claim
        calls.append(len(pairs))
        import numpy as np

        return np.array([5.0 if claim.rstrip(" .") in premise else -5.0 for premise, claim in pairs])

    judge.logits = logits
    contexts = [
        "The sky was grey all morning in the city. Cats sleep for most of the day in warm rooms.",
        "Water boils at 100 degrees at sea level. Ice melts when it is warmer than zero degrees.",
    ]
    supported, unsupported = judge.score_claims(
        ["Ice melts when it is warmer than zero degrees.", "Dogs fly to the moon every single morning."], contexts
    )
    assert len(calls) == 1  # every (window, claim) pair of the answer in one call
    assert supported.supported and supported.source == 2 and "Ice melts" in supported.evidence
    assert supported.score > 0.99 and unsupported.score < 0.01 and not unsupported.supported
    answer = judge.score_answer(
        "Ice melts when it is warmer than zero degrees [2]. Dogs fly to the moon daily.", contexts
    )
    assert answer["unsupported"] == 1 and answer["faithfulness"] == 0.5
    with pytest.raises(ValueError):
        judge.score_claims(["A claim of some words."], [])


def test_windows_and_synthetic_claims():
    wins = context_windows(["One two three four. Five six seven eight. Nine ten eleven twelve."], (1, 2, 3))
    assert [k for _, _, k in wins] == [1, 1, 1, 2, 2, 3]
    rng = random.Random(0)
    assert mutate("The dose was 40 mg in 12 patients.", ["other words entirely"], rng) not in (
        None,
        "The dose was 40 mg in 12 patients.",
    )
    assert reorder("In 2010, the rate of infection rose sharply.") == "The rate of infection rose sharply in 2010."
    assert merge("The rate rose.", "The cost fell.") == "The rate rose, and the cost fell."
    passages = [
        Passage(
            f"d{i}", [f"Study {i} enrolled {10 * i + 5} patients in Boston during the trial period."] * 2 + ["End."]
        )
        for i in range(6)
    ]
    ex = synthetic_examples(passages, 20, rng)
    assert sum(label for _, _, label in ex) == 10 and len(ex) == 20
    assert all(claim not in premise for premise, claim, label in ex if label == 0)


def test_labelled_pairs_take_the_window_holding_the_claim(tmp_path):
    ctx = " ".join(f"Sentence number {w} is about topic {w} here." for w in ("one", "two", "three", "four", "five"))
    path = tmp_path / "pairs.jsonl"
    path.write_text(json.dumps({"claim": "Topic five is here.", "context": [ctx], "label": "supported"}) + "\n")
    [(premise, claim, label)] = load_labelled(path)
    assert "topic five" in premise and "topic one" not in premise and label == 1


CORPUS = [
    (
        "Aspirin trial",
        "The aspirin trial enrolled 120 patients in Boston. Bleeding occurred in 14 of them. "
        "Aspirin did not lower mortality after two years. The authors recommend a larger trial in Chicago.",
    ),
    (
        "Vitamin D",
        "Vitamin D was given to 300 children in Oslo. Fractures fell by 25 percent over the winter. "
        "Side effects were rare and mild. Parents reported better sleep in the treated group.",
    ),
    (
        "Statins",
        "Statins reduced cholesterol by 30 percent in adults over 60. Muscle pain was reported by 8 "
        "percent. The effect on dementia was not significant. Researchers in Madrid led the analysis.",
    ),
    (
        "Exercise",
        "Daily walking improved memory in 45 older adults. The benefit lasted for six months. "
        "Participants in London walked for 30 minutes a day. No injuries were reported during the study.",
    ),
]


def test_rag_judge_train_end_to_end(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from cli.main import app

    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("".join(json.dumps({"_id": t, "title": t, "text": x}) + "\n" for t, x in CORPUS))
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text(
        json.dumps({"claim": "Bleeding occurred in 14 patients.", "context": CORPUS[0][1], "label": 1})
        + "\n"
        + json.dumps({"claim": "Bleeding occurred in 41 patients.", "context": CORPUS[0][1], "label": 0})
        + "\n"
    )
    monkeypatch.setenv("RAG_DATA_DIR", str(tmp_path / "data"))
    args = ["judge", "train", "--from", str(corpus), "--pairs", str(pairs), "--name", "tiny", "--max-pairs", "24"]
    res = CliRunner().invoke(app, args + ["--max-length", "64", "--holdout", "0.25", "--json"])
    assert res.exit_code == 0, res.output
    dest = tmp_path / "data" / "judges" / "tiny"
    meta = json.loads((dest / JUDGE_FILE).read_text())
    assert meta["trained_on"]["labelled_pairs"] == 2 and meta["trained_on"]["synthetic_pairs"] == 22
    assert meta["held_out"]["documents"] == 1 and meta["held_out"]["pairs"] == 20
    assert 0.05 <= meta["threshold"] <= 0.95 and meta["max_length"] == 64
    judge = ModelJudge.load(dest)
    assert judge.threshold == meta["threshold"] and judge.name == "tiny-minilm-crossencoder"
    # Only the second context shares words with the claim: only its windows are read.
    [c] = judge.score_claims(["Fractures fell over the winter."], [CORPUS[2][1], CORPUS[1][1]])
    assert 0.0 <= c.score <= 1.0 and c.source == 2 and "Fractures" in c.evidence
    bad = CliRunner().invoke(app, ["judge", "train", "--from", str(pairs.with_name("none.jsonl"))])
    assert bad.exit_code != 0
