"""Experiments: audit several variants of the pipeline on the same golden cases and say which is better.

The variants (small TOML files, examples/variants/) are parsed and checked in diagnostics/ladder/variants.py;
the comparison, its winners and its Markdown table are in diagnostics/ladder/analysis.py. This module runs them.

Every variant is audited with the service's own code (diagnostics.audit.run.Auditor) on the same cases; each is
compared with the first by a paired bootstrap per metric (diagnostics.audit.compare); a winner is named per metric
only when the intervals say so, else "inconclusive"; and the cases whose verdict flipped are listed. Question
vectors are computed once per embedding model and shared by every variant (CachingEmbedder), so retrieval-only
variants cost one embedding of the questions in all. Faithfulness is scored with one scorer for every variant
(the settings' embedding model), so a variant with another embedding model is judged by the same yardstick.
"""

from __future__ import annotations

import tempfile
import time
from collections import OrderedDict
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np

from core.embedding import Embedder, get_embedder
from core.errors import CollectionNotFoundError, InvalidRequestError
from core.settings import Settings
from core.sparse import Bm25Encoder
from core.store import Store
from diagnostics.audit.golden import GoldenSet
from diagnostics.audit.run import Auditor
from diagnostics.judges.base import Judge
from diagnostics.judges.factory import make_judge
from diagnostics.ladder.analysis import analyse
from diagnostics.ladder.variants import Variant, VariantError
from diagnostics.metrics import DEFAULT_KS
from engine.answer import Answerer
from engine.generation.extractive import ExtractiveGenerator
from engine.generation.llm import LLMGenerator
from engine.params import retrieval_params
from engine.rerank import CrossEncoderReranker
from engine.retrieval import Retriever
from engine.rewrite import build_rewriter


class CachingEmbedder:
    """An Embedder that remembers the vectors it computed (by exact text), so each question is embedded once
    for all the variants that use this model. Everything else is the wrapped embedder's."""

    def __init__(self, inner: Embedder, max_items: int = 50_000):
        self.inner, self.max_items = inner, max_items
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self.computed = 0  # texts actually sent to the model
        self.reused = 0

    def __getattr__(self, name):  # dim, name, tokenizer, count_tokens, fingerprint, ...
        return getattr(self.inner, name)

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        texts = list(texts)
        missing = [t for t in dict.fromkeys(texts) if t not in self._cache]
        if missing:
            for t, v in zip(missing, self.inner.encode(missing)):
                self._cache[t] = v
            self.computed += len(missing)
            while len(self._cache) > self.max_items:
                self._cache.popitem(last=False)
        self.reused += len(texts) - len(missing)
        if not texts:
            return self.inner.encode([])
        return np.stack([self._cache[t] for t in texts])


class ExperimentRunner:
    """Runs variants against one store. Embedders (cached) and the reranker are shared between variants."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        embedder: Embedder | None = None,
        judge_cache: Path | None = None,
        reranker: CrossEncoderReranker | None = None,
    ):
        self.settings, self.store = settings, store
        self._embedders: dict[str, CachingEmbedder] = {}
        base = embedder or get_embedder(settings)
        self._embedders[settings.embedding_model] = CachingEmbedder(base)
        self.bm25 = Bm25Encoder.from_settings(settings)
        # One yardstick for every variant: faithfulness by the settings' embedding model.
        self._scorer: Judge | None = None  # the faithfulness judge of the settings, built when first needed
        self.judge_cache = judge_cache or settings.data_dir / "judge_cache.jsonl"
        self._reranker = reranker  # the service's, when it has one; else loaded by the first variant that reranks

    def embedder_for(self, model: str) -> CachingEmbedder:
        if model not in self._embedders:
            self._embedders[model] = CachingEmbedder(
                get_embedder(self.settings.model_copy(update={"embedding_model": model}))
            )
        return self._embedders[model]

    def _generator(self, variant: Variant, s: Settings, embedder):
        """The variant's generator: an LLM when it names one or an endpoint is configured, else extractive."""
        gen = (variant.generation or {}).get("generator")
        if gen == "llm" or (gen is None and s.llm_base_url):
            if not s.llm_base_url:
                raise VariantError(f"{variant.name}: generator llm needs base_url (or RAG_LLM_BASE_URL)")
            text = (variant.generation or {}).get("prompt_text")
            if text is None:
                return LLMGenerator(s)
            with tempfile.TemporaryDirectory() as tmp:  # the generator reads its prompt once, from a file
                path = Path(tmp) / "prompt.md"
                path.write_text(text, encoding="utf-8")
                return LLMGenerator(s.model_copy(update={"prompt_template": str(path)}))
        return ExtractiveGenerator(embedder, self.bm25)

    def run_variant(
        self,
        variant: Variant,
        golden: GoldenSet,
        ks: Iterable[int],
        generate: bool = False,
        progress: Callable[[int], None] | None = None,
    ) -> dict:
        s = variant.settings(self.settings)
        spec = self.store.get_spec(s.collection)
        if spec is None:
            raise CollectionNotFoundError(f"{variant.name}: no collection named {s.collection!r}")
        # A collection is queried with the model that built it (a tuned retriever's collection, for one).
        embedder = self.embedder_for(spec.embedding["model"])
        params = retrieval_params(s, **variant.retrieval)
        gen = generate or variant.generates
        if params.mode != "sparse":  # one batched pass over the questions; every case then hits the cache
            embedder.encode([c.question for c in golden.cases])
        reranker = None
        if params.rerank:
            if not s.rerank_model:
                raise InvalidRequestError("rerank_unavailable", f"{variant.name}: rerank needs RAG_RERANK_MODEL")
            self._reranker = self._reranker or CrossEncoderReranker(s.rerank_model, s.embedding_device)
            reranker = self._reranker
        generator = self._generator(variant, s, embedder) if gen else ExtractiveGenerator(embedder, self.bm25)
        judge = None
        if gen and variant.judge is not None:
            from diagnostics.judges.ragas_metrics import RagasJudge

            judge = RagasJudge(s, self.judge_cache)
        # The same rewrite stage as the service and `rag audit`, so conversation turns are searched alike.
        rewriter = build_rewriter(s, self.store, embedder, self.bm25)
        answerer = Answerer(Retriever(self.store, embedder, self.bm25, reranker), generator, rewriter)
        report = Auditor(answerer, self.store, self.scorer() if gen else None, judge).run(
            golden, s.collection, params, ks, gen, progress=progress
        )
        report["variant"] = variant.describe()
        return report

    def scorer(self) -> Judge:
        """The settings' faithfulness judge (RAG_FAITHFULNESS_JUDGE), one for every variant: the same yardstick."""
        if self._scorer is None:
            self._scorer = make_judge(self.settings, self._embedders[self.settings.embedding_model], self.bm25)
        return self._scorer

    def run(
        self,
        golden: GoldenSet,
        variants: Sequence[Variant],
        ks: Iterable[int] = DEFAULT_KS,
        generate: bool = False,
        progress: Callable[[str, int], None] | None = None,
    ) -> tuple[dict, list[dict]]:
        """Audit every variant on the same cases and compare each with the first: (experiment, reports)."""
        t0 = time.perf_counter()
        reports = []
        for v in variants:
            tick = (lambda n, name=v.name: progress(name, n)) if progress else None
            reports.append(self.run_variant(v, golden, ks, generate, tick))
        result = analyse(reports)
        result["seconds"] = round(time.perf_counter() - t0, 2)
        result["embedding_cache"] = {
            m: {"computed": e.computed, "reused": e.reused} for m, e in self._embedders.items()
        }
        return result, reports
