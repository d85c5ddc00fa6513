"""The engine, assembled once from the settings: store, models, retriever, generator, answerer.

The service wraps it with HTTP, jobs and limits; the CLI's audit uses it directly. Nothing here knows HTTP.
"""

from __future__ import annotations

from dataclasses import dataclass

from core import tracing
from core.embedding import Embedder, get_embedder
from core.errors import CollectionNotFoundError, InvalidRequestError
from core.settings import Settings
from core.sparse import Bm25Encoder
from core.store import CollectionSpec, Store, open_store
from engine.answer import Answerer
from engine.generation.extractive import ExtractiveGenerator
from engine.generation.llm import LLMGenerator
from engine.params import RetrievalParams, retrieval_params
from engine.rerank import CrossEncoderReranker
from engine.retrieval import Retriever
from engine.rewrite import build_rewriter


@dataclass
class Engine:
    settings: Settings
    store: Store
    embedder: Embedder
    bm25: Bm25Encoder
    retriever: Retriever
    answerer: Answerer

    @classmethod
    def build(cls, settings: Settings, store: Store | None = None) -> "Engine":
        """Load the models and open the store (unless one is given). Raises ConfigError, StoreLockedError.
        Tracing follows the settings (core/tracing.py: on when otel_endpoint is set)."""
        tracing.configure(settings)
        store = store or open_store(settings)
        try:
            embedder = get_embedder(settings)
            bm25 = Bm25Encoder.from_settings(settings)
            reranker = (
                CrossEncoderReranker(settings.rerank_model, settings.embedding_device)
                if settings.rerank_model
                else None
            )
            retriever = Retriever(store, embedder, bm25, reranker)
            generator = (
                LLMGenerator(settings)
                if settings.llm_base_url
                else ExtractiveGenerator(embedder, bm25, min_score=settings.extractive_min_score)
            )
        except Exception:
            store.close()
            raise
        rewriter = build_rewriter(settings, store, embedder, bm25)
        return cls(settings, store, embedder, bm25, retriever, Answerer(retriever, generator, rewriter))

    def params(self, **overrides) -> RetrievalParams:
        """Retrieval parameters: the settings plus these overrides (see engine.params.retrieval_params).

        Raises InvalidRequestError: "invalid_parameters", or "rerank_unavailable" with no reranker configured.
        """
        params = retrieval_params(self.settings, **overrides)
        if params.rerank and self.retriever.reranker is None:
            raise InvalidRequestError("rerank_unavailable", "no reranker is configured (set RAG_RERANK_MODEL)")
        return params

    def require_collection(self, name: str) -> CollectionSpec:
        """The collection's spec; raises CollectionNotFoundError (404) when there is none."""
        spec = self.store.get_spec(name)
        if spec is None:
            raise CollectionNotFoundError(f"no collection named {name!r}")
        return spec

    def manifest(self, collection: str, params: RetrievalParams) -> dict:
        """What answered: the collection's build settings, the store, retrieval parameters, the generator."""
        spec = self.store.get_spec(collection)
        return {
            "embedding": spec.embedding if spec else None,
            "chunker": spec.chunker if spec else None,
            "sparse": spec.sparse if spec else None,
            "store": self.store.backend,
            "retrieval": {**params.describe(), "reranker": getattr(self.retriever.reranker, "name", None)},
            "generator": self.answerer.generator.name,
        }

    def close(self) -> None:
        self.store.close()
