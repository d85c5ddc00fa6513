"""The optional rerank stage: a model scores (question, passage) pairs and reorders fusion's top window."""

from __future__ import annotations

from typing import Protocol, Sequence


class Reranker(Protocol):
    name: str

    def score(self, question: str, passages: Sequence[str]) -> list[float]: ...


class CrossEncoderReranker:
    """A sentence-transformers CrossEncoder, by model name or path."""

    def __init__(self, model: str, device: str = "cpu"):
        from sentence_transformers import CrossEncoder

        self.name = model
        self.model = CrossEncoder(model, device=device)

    def score(self, question: str, passages: Sequence[str]) -> list[float]:
        return [float(s) for s in self.model.predict([(question, p) for p in passages], show_progress_bar=False)]
