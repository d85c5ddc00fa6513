"""Everything heavy the service needs, built once at start-up."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from ingest.pipeline import Ingestor
from rag.config import Settings
from rag.embedding import get_embedder
from rag.sparse import Bm25Encoder
from rag.store import Store, open_store
from service.answer import Answerer
from service.generation.extractive import ExtractiveGenerator
from service.generation.llm import LLMGenerator
from service.jobs import JobManager
from service.metrics import Metrics
from service.ratelimit import RateLimiter
from service.retrieval import CrossEncoderReranker, Retriever

log = logging.getLogger("rag.service")


@dataclass
class ServiceState:
    settings: Settings
    store: Store
    retriever: Retriever
    answerer: Answerer
    jobs: JobManager | None
    metrics: Metrics
    limiter: RateLimiter | None = None
    ready: bool = False

    @classmethod
    def build(cls, settings: Settings, jobs: bool = True) -> "ServiceState":
        """Load models and open the store. `jobs=False` (the CLI's audit) starts no job worker."""
        store = open_store(settings)
        embedder = get_embedder(settings)
        bm25 = Bm25Encoder.from_settings(settings)
        reranker = CrossEncoderReranker(settings.rerank_model, settings.embedding_device) if settings.rerank_model else None
        retriever = Retriever(store, embedder, bm25, reranker)
        generator = LLMGenerator(settings) if settings.llm_base_url else ExtractiveGenerator(embedder, bm25)
        ingest_embedder = get_embedder(settings, role="ingest")

        def run_job(paths: list[Path], collection: str, tick) -> object:
            return Ingestor(settings, store, ingest_embedder, bm25).run(paths, collection, progress=tick)

        job_manager = JobManager(settings.data_dir / "jobs", run_job) if jobs else None
        if jobs and not settings.api_keys:
            log.warning("NO API KEYS CONFIGURED: the API is open to anyone who can reach it. Set RAG_API_KEYS.")
        limiter = RateLimiter(settings.rate_limit_per_minute) if settings.rate_limit_per_minute else None
        return cls(settings, store, retriever, Answerer(retriever, generator), job_manager, Metrics(), limiter)

    def close(self) -> None:
        if self.jobs:
            self.jobs.shutdown()
        self.store.close()
