"""Everything heavy the service needs, built once at start-up: the engine, the job system, limits, metrics."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from core.embedding import get_embedder
from core.settings import Settings
from engine.engine import Engine
from service.db import Database, database_url
from service.jobs import replicas
from service.jobs.manager import JobManager
from service.jobs.runners import audit_runner, experiment_runner, ingest_runner
from service.labels import GoldenStore
from service.metrics import Metrics
from service.querylog.log import QueryLog
from service.ratelimit import RateLimiter, RedisRateLimiter, make_limiter

log = logging.getLogger("rag.service")


@dataclass
class ServiceState:
    settings: Settings
    engine: Engine
    jobs: JobManager
    metrics: Metrics
    limiter: RateLimiter | RedisRateLimiter | None = None  # per process, or shared through Redis
    ready: bool = False
    querylog: QueryLog | None = None  # every query, its feedback; in the jobs' database
    golden: GoldenStore | None = None  # golden sets and their history; in the jobs' database

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
        """Check the replica layout, load models, open the store, start the job workers."""
        db = Database(database_url(settings))
        db.migrate()
        # Before anything heavy: refuses a second replica with an embedded store (service/jobs/replicas.py).
        store_lock = replicas.guard(settings, db)
        engine = Engine.build(settings)
        # Ingest jobs get their own embedder instance, so a long ingest batch never holds the query one.
        ingest_embedder = get_embedder(settings, role="ingest")

        uploads = Path(settings.uploads_dir or Path(settings.data_dir) / "uploads")
        runners = {
            "ingest": ingest_runner(settings, engine.store, ingest_embedder, engine.bm25, uploads),
            "audit": audit_runner(engine),
            "experiment": experiment_runner(engine),
        }
        job_manager = JobManager(db, settings, runners, store_lock=store_lock)
        if not settings.api_keys:
            log.warning("NO API KEYS CONFIGURED: the API is open to anyone who can reach it. Set RAG_API_KEYS.")
        limiter = make_limiter(settings, "rate", settings.rate_limit_per_minute)
        return cls(
            settings,
            engine,
            job_manager,
            Metrics(),
            limiter,
            querylog=QueryLog.build(settings, db, engine),
            golden=GoldenStore(settings, db),
        )

    def close(self) -> None:
        if self.querylog is not None:
            self.querylog.close()
        self.jobs.shutdown()
        self.jobs.db.close()
        self.engine.close()
