"""The service under test over real HTTP: a live uvicorn server on its own copy of a data dir, API-key headers,
waiting for a job to end, and a database URL as the settings hold it."""

from __future__ import annotations

import subprocess
import tempfile
import threading
import time
from pathlib import Path

import httpx
import uvicorn
from pydantic import SecretStr

from core.settings import Settings
from service.app import create_app
from service.serving import protocol_for
from tests.helpers.serving import free_port


class LiveServer:
    """uvicorn serving the app on a free loopback port, on its own copy of the settings' data dir
    (the embedded store has one owner, so two servers never share one)."""

    def __init__(self, settings: Settings, **uvicorn_options):
        """`uvicorn_options`: more of uvicorn.Config's (limit_concurrency, timeout_keep_alive, ...)."""
        copy = Path(tempfile.mkdtemp(prefix="live-")) / "data"
        subprocess.run(["cp", "-a", "--sparse=always", str(settings.data_dir), str(copy)], check=True)
        settings = settings.model_copy(update={"data_dir": copy})
        self.settings = settings
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        config = uvicorn.Config(
            create_app(settings),
            host="127.0.0.1",
            port=port,
            log_level="warning",
            http=protocol_for(settings),  # as `rag serve`: slow clients are cut off
            **uvicorn_options,
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 60
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.05)
        self.http = httpx.Client(base_url=self.url, timeout=60)

    def stop(self) -> None:
        self.http.close()
        self.server.should_exit = True
        self.thread.join(timeout=30)


def headers(key: str) -> dict:
    return {"X-API-Key": key}


def finish(live, job_id: str, key: str = "ka", timeout: float = 300) -> dict:
    deadline = time.monotonic() + timeout
    while (job := live.http.get(f"/v1/jobs/{job_id}", headers=headers(key)).json())["status"] in ("queued", "running"):
        assert time.monotonic() < deadline, job
        time.sleep(0.2)
    return job


def secret(url: str | None) -> SecretStr | None:
    return SecretStr(url) if url else None


def docs_corpus(tmp: Path, embedder, scifact: int = 0, **overrides) -> Settings:
    """Settings on a new data dir holding the project's docs/ (collection `docs`) and, with `scifact`, that many
    SciFact abstracts (collection `scifact`), ingested by the real pipeline; `overrides` are more settings."""
    from core.store import open_store
    from ingest.pipeline import Ingestor
    from tests.conftest import ROOT, scifact_docs, write_corpus

    settings = Settings(data_dir=tmp / "data", collection="docs", _env_file=None, **overrides)
    with open_store(settings) as store:
        Ingestor(settings, store, embedder).run([ROOT / "docs"], "docs")
        if scifact:
            corpus = write_corpus(tmp / "c.jsonl", scifact_docs(scifact))
            Ingestor(settings, store, embedder).run([corpus], "scifact")
    return settings


def serve_per_database(request, settings: Settings):
    """A live server on `settings` with the database `request.param` names ("sqlite": the data dir's file;
    "postgresql": the test database); for fixtures parametrized over both. Stopped after the test."""
    url = None if request.param == "sqlite" else request.getfixturevalue("pg_url")
    server = LiveServer(settings.model_copy(update={"database_url": secret(url)}))
    yield server
    server.stop()
