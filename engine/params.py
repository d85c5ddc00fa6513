"""Retrieval parameters: the one place they are built, from the settings plus a request's overrides.

The API, the chat facade, the audit (CLI and API) and the benchmarks all call `retrieval_params`, so a default
lives in the settings object alone (core/settings.py) and nowhere else.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Literal

from core.errors import InvalidRequestError
from core.settings import Settings

Mode = Literal["hybrid", "dense", "sparse"]
# A payload field filters may name: dotted names, `[]` for "any element of a list"; what Qdrant's paths accept.
FILTER_KEY = re.compile(r"^[A-Za-z0-9_-]+(\[\])?(\.[A-Za-z0-9_-]+(\[\])?)*$")
INT64 = (-(2**63), 2**63 - 1)


def _check_filter_value(key: str, value: object) -> None:
    if isinstance(value, bool):
        return
    if isinstance(value, int):
        if not INT64[0] <= value <= INT64[1]:
            raise ValueError(f"filter {key!r}: integers are 64-bit.")
        return
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError(f"filter {key!r}: the value is not valid Unicode text.") from None
        return
    raise ValueError(f"filter {key!r}: a value is a string, an integer, a boolean, or a list of strings or integers.")


def check_filters(filters: dict) -> None:
    """Raises ValueError for filters no store can run: bad field names, 65-bit integers, mixed lists."""
    if not isinstance(filters, dict):
        raise ValueError("filters map payload field names to values.")
    for key, value in filters.items():
        if not isinstance(key, str) or len(key) > 128 or not FILTER_KEY.fullmatch(key):
            raise ValueError("filter field names are 1-128 of A-Z a-z 0-9 - _, dotted, with [] for list elements.")
        if isinstance(value, (list, tuple)):
            kinds = {type(v) for v in value}
            if len(kinds) > 1 or kinds & {bool, float}:
                raise ValueError(f"filter {key!r}: a list holds only strings or only integers.")
            for v in value:
                _check_filter_value(key, v)
        else:
            _check_filter_value(key, value)


@dataclass(frozen=True)
class RetrievalParams:
    mode: Mode
    fusion: Literal["rrf", "dbsf"]
    rrf_k: int
    weights: tuple[float, float] | None  # (sparse, dense); None = equal
    top_k: int
    candidates: int
    rerank: bool
    rerank_candidates: int
    filters: dict | None = None

    def __post_init__(self) -> None:
        if self.top_k <= 0:
            raise ValueError("top_k must be greater than 0.")
        if self.candidates < self.top_k:
            raise ValueError("candidates must be at least top_k.")
        if self.rrf_k < 1:
            raise ValueError("rrf_k must be at least 1.")
        if self.weights is not None:
            if len(self.weights) != 2 or not all(
                isinstance(w, (int, float)) and math.isfinite(w) and w > 0 for w in self.weights
            ):
                raise ValueError("fusion weights are two finite numbers greater than 0: (sparse, dense).")
        if self.rerank_candidates < 1:
            raise ValueError("rerank_candidates must be at least 1.")
        if self.filters is not None:
            check_filters(self.filters)

    @property
    def final_limit(self) -> int:
        """How many fused chunks go on to the next stage: the rerank window when reranking, else top_k."""
        return max(self.top_k, self.rerank_candidates) if self.rerank else self.top_k

    def describe(self) -> dict:
        return {
            "mode": self.mode,
            "fusion": self.fusion,
            "rrf_k": self.rrf_k,
            "weights": self.weights,
            "top_k": self.top_k,
            "candidates": self.candidates,
            "rerank": self.rerank,
            "rerank_candidates": self.rerank_candidates,
        }


def retrieval_params(
    settings: Settings,
    *,
    mode: Mode | None = None,
    fusion: Literal["rrf", "dbsf"] | None = None,
    rrf_k: int | None = None,
    weights: tuple[float, float] | list[float] | None = None,
    top_k: int | None = None,
    candidates: int | None = None,
    rerank: bool | None = None,
    rerank_candidates: int | None = None,
    filters: dict | None = None,
) -> RetrievalParams:
    """The settings' defaults with each given override applied. Candidates are raised to top_k when fewer.

    Raises InvalidRequestError("invalid_parameters") for values no retrieval can run with.
    """
    top = top_k if top_k is not None else settings.top_k
    w = weights if weights is not None else settings.rrf_weights
    try:
        return RetrievalParams(
            mode=mode or settings.retrieval_mode,
            fusion=fusion or settings.fusion,
            rrf_k=rrf_k if rrf_k is not None else settings.rrf_k,
            weights=tuple(w) if w is not None else None,
            top_k=top,
            candidates=max(candidates if candidates is not None else settings.candidates, top),
            rerank=bool(rerank) if rerank is not None else settings.rerank,
            rerank_candidates=rerank_candidates if rerank_candidates is not None else settings.rerank_candidates,
            filters=filters,
        )
    except (ValueError, TypeError) as exc:
        raise InvalidRequestError("invalid_parameters", str(exc)) from exc
