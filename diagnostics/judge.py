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
        self.cache_path = Path(cache_path)
        self.cache: dict[str, float] = {}
        if self.cache_path.exists():
            for line in self.cache_path.read_text().splitlines():
                if line.strip():
                    row = json.loads(line)
                    self.cache[row["key"]] = row["value"]
        self._lock = threading.Lock()
        self.calls = 0  # judge calls actually made (cache misses)

    def _key(self, metric: str, inputs: dict) -> str:
        blob = json.dumps([metric, self.model, inputs], sort_keys=True, ensure_ascii=False)
        return hashlib.sha256(blob.encode()).hexdigest()

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
            key = self._key(name, inputs)
            if key in self.cache:
                out[name] = {"value": self.cache[key], "cached": True}
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
            with self._lock:
                self.cache[key] = float(value)
                with open(self.cache_path, "a") as fh:
                    fh.write(json.dumps({"key": key, "value": float(value)}) + "\n")
        return out
