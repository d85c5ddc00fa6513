"""Everything heavy the service needs, built once at start-up: the engine, the job system, limits, metrics."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from core.embedding import get_embedder
from core.settings import Settings
from engine.engine import Engine
from ingest.pipeline import Ingestor
from service.jobs import JobManager
from service.metrics import Metrics
from service.ratelimit import RateLimiter

log = logging.getLogger("rag.service")


@dataclass
class ServiceState:
    settings: Settings
    engine: Engine
    jobs: JobManager
    metrics: Metrics
    limiter: RateLimiter | None = None
    ready: bool = False

    @property
    def store(self):
        return self.engine.store

    @property
    def retriever(self):
        return self.engine.retriever

    @property
    def answerer(self):
        return self.engine.answerer

    @classmethod
    def build(cls, settings: Settings) -> "ServiceState":
        """Load models, open the store, start the job worker."""
        engine = Engine.build(settings)
        # Ingest jobs get their own embedder instance, so a long ingest batch never holds the query one.
        ingest_embedder = get_embedder(settings, role="ingest")

        def run_job(paths: list[Path], collection: str, tick) -> object:
            return Ingestor(settings, engine.store, ingest_embedder, engine.bm25).run(paths, collection, progress=tick)

        job_manager = JobManager(settings.data_dir / "jobs", run_job)
        if not settings.api_keys:
            log.warning("NO API KEYS CONFIGURED: the API is open to anyone who can reach it. Set RAG_API_KEYS.")
        limiter = RateLimiter(settings.rate_limit_per_minute) if settings.rate_limit_per_minute else None
        return cls(settings, engine, job_manager, Metrics(), limiter)

    def close(self) -> None:
        self.jobs.shutdown()
        self.engine.close()
