"""A faithfulness judge that is a local model: any sentence-transformers CrossEncoder or Hugging Face
sequence-classification model on disk (MiniCheck, HHEM, an NLI model, or the consistency cross-encoder
`rag judge train` builds from your own corpus, diagnostics/judges/model_train.py).

Each claim is the hypothesis, a window of the contexts the premise: every sentence, and runs of 2 and 3
sentences of one context. The windows sharing the most content words with the claim (`max_windows` of them)
are scored, all (window, claim) pairs of an answer in one batched call; the claim's score is its best window's
probability of the supporting label, and that window is its evidence (`source`: its 1-based context number).

The probability of 'supported' comes from the model's output named by `label`: a label name matched against
config.id2label (case-insensitively), or an index; a model with one output logit is read through a sigmoid.
A `judge.json` beside the weights (written by `rag judge train`) may give the name, label, threshold,
window settings and measured agreement; arguments (the RAG_JUDGE_MODEL_* settings) override it.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Sequence

import numpy as np

from core.errors import ConfigError
from core.text import sentences
from diagnostics.judges.base import ClaimSupport, Judge

JUDGE_FILE = "judge.json"
# Names that mean 'the hypothesis follows from the premise', tried when no label is given.
SUPPORT_LABELS = ("entailment", "entailed", "supported", "support", "consistent", "factual")
WORD = re.compile(r"\w+")
STOP = frozenset(
    "the a an and or of to in on at for by with from as is are was were be been being this that these those it its "
    "their there which who whom whose what when where than then also not no into over under after before about "
    "has have had do does did can could may might will would should shall".split()
)


def terms(text: str) -> set[str]:
    """Content words, crudely stemmed (first 6 letters): what the window pre-selection matches on."""
    return {w[:6] for w in WORD.findall(text.lower()) if (len(w) > 2 or w.isdigit()) and w not in STOP}


def context_windows(contexts: Sequence[str], sizes: Sequence[int] = (1, 2, 3)) -> list[tuple[int, str, int]]:
    """(1-based context number, text, sentences) of every run of `sizes` consecutive sentences of one context."""
    out: list[tuple[int, str, int]] = []
    for ci, ctx in enumerate(contexts, 1):
        sents = sentences(ctx, min_words=3) or [" ".join(ctx.split())]
        seen = set()
        for k in sizes:
            if k > len(sents) and k != 1:
                continue
            for i in range(0, max(1, len(sents) - k + 1)):
                text = " ".join(sents[i : i + k])
                if text and text not in seen:
                    seen.add(text)
                    out.append((ci, text, min(k, len(sents))))
    return out


def best_windows(claim: str, window_terms: list[set[str]], sizes: list[int], k: int) -> list[int]:
    """Indexes of the (at most) `k` windows holding most of the claim's content words, shorter first on ties."""
    want = terms(claim)
    if not want:
        return sorted(range(len(window_terms)), key=lambda i: sizes[i])[:k]
    overlap = [len(want & t) for t in window_terms]
    keyed = sorted(range(len(window_terms)), key=lambda i: (-overlap[i], sizes[i], i))
    # Windows sharing no content word with the claim are read only when none shares one.
    return [i for i in keyed[:k] if overlap[i] > 0] or keyed[:k]


def resolve_label(id2label: dict, num_labels: int, label: str | int | None) -> int:
    """The output index that means 'supported'. Raises ConfigError naming the model's labels when unclear."""
    names = {int(i): str(n) for i, n in (id2label or {}).items()}
    if label is None:
        if num_labels == 1:
            return 0
        for want in SUPPORT_LABELS:
            for i, n in names.items():
                if n.lower() == want:
                    return i
        raise ConfigError(
            f"the judge model has {num_labels} outputs {names}: say which one means supported "
            "(RAG_JUDGE_MODEL_LABEL: a name or an index)"
        )
    text = str(label).strip()
    if text.lstrip("-").isdigit():
        idx = int(text)
        if not 0 <= idx < num_labels:
            raise ConfigError(f"judge model label index {idx} is out of range: the model has {num_labels} outputs")
        return idx
    for i, n in names.items():
        if n.lower() == text.lower():
            return i
    raise ConfigError(f"the judge model has no label {text!r}; its labels: {names}")


class ModelJudge(Judge):
    """A local classifier as the faithfulness judge; `score` is its probability that the claim is supported."""

    def __init__(
        self,
        model,
        label: str | int | None = None,
        threshold: float = 0.5,
        name: str | None = None,
        agreement: dict | None = None,
        sizes: Sequence[int] = (1, 2, 3),
        max_windows: int = 8,
        batch_size: int = 32,
    ):
        self.model = model
        config = model.model.config
        self.num_labels = int(model.num_labels)
        self.label_index = resolve_label(getattr(config, "id2label", {}), self.num_labels, label)
        self.threshold = float(threshold)
        self.name = name or f"model:{Path(str(getattr(config, '_name_or_path', 'local'))).name}"
        self.agreement = agreement or {}
        self.sizes, self.max_windows, self.batch_size = tuple(sizes), int(max_windows), int(batch_size)

    @classmethod
    def load(
        cls,
        path: str | Path,
        label: str | int | None = None,
        threshold: float | None = None,
        max_length: int | None = None,
    ) -> "ModelJudge":
        """The model at `path` with its judge.json (if any); `label` and `threshold` override that file."""
        path = Path(path)
        if not (path / "config.json").exists():
            raise ConfigError(f"no model at {path} (a folder with config.json and the weights)")
        meta = json.loads((path / JUDGE_FILE).read_text()) if (path / JUDGE_FILE).exists() else {}
        from sentence_transformers import CrossEncoder

        length = max_length or meta.get("max_length")
        model = CrossEncoder(str(path), device="cpu", local_files_only=True, max_length=length)
        windows = meta.get("windows") or {}
        return cls(
            model,
            label=label if label is not None else meta.get("label"),
            threshold=threshold if threshold is not None else meta.get("threshold", 0.5),
            name=meta.get("name") or f"model:{path.name}",
            agreement=meta.get("agreement"),
            sizes=windows.get("sizes", (1, 2, 3)),
            max_windows=windows.get("max_windows", 8),
        )

    def logits(self, pairs: list[tuple[str, str]]) -> np.ndarray:
        """Raw model outputs of (premise, hypothesis) pairs: [n] or [n, labels]."""
        import torch

        return np.asarray(
            self.model.predict(
                pairs,
                batch_size=self.batch_size,
                activation_fn=torch.nn.Identity(),
                show_progress_bar=False,
                convert_to_numpy=True,
            ),
            dtype=np.float64,
        )

    def probabilities(self, pairs: list[tuple[str, str]]) -> np.ndarray:
        """P(supported) of each (premise, hypothesis) pair."""
        if not pairs:
            return np.zeros(0)
        z = self.logits(pairs)
        if z.ndim == 1 or z.shape[1] == 1:
            return 1.0 / (1.0 + np.exp(-z.reshape(-1)))
        z = z - z.max(axis=1, keepdims=True)
        p = np.exp(z)
        return (p / p.sum(axis=1, keepdims=True))[:, self.label_index]

    def score_claims(self, claims: Sequence[str], contexts: Sequence[str]) -> list[ClaimSupport]:
        """One ClaimSupport per claim. Raises ValueError when there are no contexts to check against."""
        if not contexts:
            raise ValueError("faithfulness needs at least one context")
        return self.score_each([(claim, contexts) for claim in claims])

    def score_each(self, items: Sequence[tuple[str, Sequence[str]]]) -> list[ClaimSupport]:
        """Each (claim, its contexts) scored; every (window, claim) pair of them in one batched model call."""
        if any(not contexts for _, contexts in items):
            raise ValueError("faithfulness needs at least one context")
        cache: dict[tuple, tuple] = {}
        pairs, owners, windows = [], [], []
        for ci, (claim, contexts) in enumerate(items):
            key = tuple(contexts)
            if key not in cache:
                wins = context_windows(contexts, self.sizes)
                cache[key] = (wins, [terms(t) for _, t, _ in wins], [k for _, _, k in wins])
            wins, win_terms, win_sizes = cache[key]
            windows.append(wins)
            for wi in best_windows(claim, win_terms, win_sizes, self.max_windows):
                pairs.append((wins[wi][1], claim))
                owners.append((ci, wi))
        probs = self.probabilities(pairs)
        best: dict[int, tuple[float, int]] = {}
        for (ci, wi), p in zip(owners, probs):
            if ci not in best or p > best[ci][0]:
                best[ci] = (float(p), wi)
        out = []
        for ci, (claim, _) in enumerate(items):
            p, wi = best[ci]
            source, text, _ = windows[ci][wi]
            out.append(ClaimSupport(claim, round(p, 4), p >= self.threshold, source, text))
        return out


__all__ = ["JUDGE_FILE", "ModelJudge", "context_windows", "resolve_label", "terms"]
