"""LLM-judged metrics from ragas (faithfulness, context recall, context precision), through the same
OpenAI-compatible settings as generation (or RAG_JUDGE_* overrides).

A case the judge could not score is "unmeasured" with its reason, never a NaN that poisons an average.
Judgments are cached on disk (keyed by metric, judge model and the exact inputs), so a rerun costs nothing.
"""

from __future__ import annotations

import hashlib
import json
import math
import threading
from pathlib import Path

from core.errors import ConfigError
from core.settings import Settings


class JsonlCache:
    """Judgments on disk, one JSON line each ({"key", "value"}), keyed by a hash of what was judged."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.values: dict[str, object] = {}
        if self.path.exists():
            for line in self.path.read_text().splitlines():
                if line.strip():
                    row = json.loads(line)
                    self.values[row["key"]] = row["value"]
        self._lock = threading.Lock()

    @staticmethod
    def key(*parts) -> str:
        return hashlib.sha256(json.dumps(parts, sort_keys=True, ensure_ascii=False).encode()).hexdigest()

    def get(self, key: str):
        return self.values.get(key)

    def put(self, key: str, value) -> None:
        with self._lock:
            self.values[key] = value
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "a") as fh:
                fh.write(json.dumps({"key": key, "value": value}) + "\n")


class RagasJudge:
    def __init__(self, settings: Settings, cache_path: Path):
        base_url = settings.judge_base_url or settings.llm_base_url
        if not base_url:
            raise ConfigError(
                "the judge needs an OpenAI-compatible endpoint: set RAG_JUDGE_BASE_URL or RAG_LLM_BASE_URL"
            )
        try:
            from openai import AsyncOpenAI
            from ragas.llms import llm_factory
            from ragas.metrics.collections import ContextPrecisionWithReference, ContextRecall, Faithfulness
        except ImportError as exc:
            raise ConfigError(f"ragas is not importable ({exc}); install the project's dependencies") from exc
        key = settings.judge_api_key or settings.llm_api_key
        self.model = settings.judge_model or settings.llm_model
        self.name = f"ragas-0.4:{self.model}"
        client = AsyncOpenAI(
            base_url=base_url,
            api_key=key.get_secret_value() if key else "not-needed",
            timeout=settings.llm_timeout_s,
            max_retries=settings.llm_max_retries,
        )
        llm = llm_factory(self.model, client=client)
        self.metrics = {
            "faithfulness": Faithfulness(llm=llm),
            "context_recall": ContextRecall(llm=llm),
            "context_precision": ContextPrecisionWithReference(llm=llm),
        }
        self.cache = JsonlCache(cache_path)
        self.calls = 0  # judge calls actually made (cache misses)

    def judge(self, question: str, answer: str | None, contexts: list[str], reference: str | None) -> dict:
        """{metric: {"value": float} or {"unmeasured": reason}} for the three metrics."""
        out = {}
        for name, metric in self.metrics.items():
            if name == "faithfulness":
                inputs = {"user_input": question, "response": answer, "retrieved_contexts": contexts}
                missing = "no answer to judge" if not answer else None
            else:
                inputs = {"user_input": question, "reference": reference, "retrieved_contexts": contexts}
                missing = "no reference answer in the golden set" if not reference else None
            if missing or not contexts:
                out[name] = {"unmeasured": missing or "no contexts"}
                continue
            key = JsonlCache.key(name, self.model, inputs)
            if (cached := self.cache.get(key)) is not None:
                out[name] = {"value": cached, "cached": True}
                continue
            try:
                self.calls += 1
                value = metric.score(**inputs).value
            except Exception as exc:  # any judge failure: endpoint down, unparsable output, ...
                out[name] = {"unmeasured": f"judge failed: {type(exc).__name__}: {str(exc)[:200]}"}
                continue
            if value is None or (isinstance(value, float) and math.isnan(value)):
                out[name] = {"unmeasured": "the judge returned no score"}
                continue
            out[name] = {"value": float(value)}
            self.cache.put(key, float(value))
        return out
