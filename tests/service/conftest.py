"""A real uvicorn server over HTTP on loopback, with a real embedded Qdrant store and the real model."""

from __future__ import annotations

import subprocess
import tempfile
import threading
import time
from pathlib import Path

import httpx
import pytest
import uvicorn

from core.settings import Settings
from core.store import open_store
from ingest.pipeline import Ingestor
from service.app import create_app
from tests.conftest import ROOT, free_port, scifact_docs, write_corpus


class LiveServer:
    """uvicorn serving the app on a free loopback port, on its own copy of the settings' data dir
    (the embedded store has one owner, so two servers never share one)."""

    def __init__(self, settings: Settings):
        copy = Path(tempfile.mkdtemp(prefix="live-")) / "data"
        subprocess.run(["cp", "-a", "--sparse=always", str(settings.data_dir), str(copy)], check=True)
        settings = settings.model_copy(update={"data_dir": copy})
        self.settings = settings
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        config = uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning")
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


def ingest_fixture_corpus(settings: Settings, embedder, tmp: Path) -> None:
    """The project's docs/ into collection `docs`, and 40 SciFact abstracts into `scifact`."""
    corpus = write_corpus(tmp / "corpus.jsonl", scifact_docs(40))
    with open_store(settings) as store:
        Ingestor(settings, store, embedder).run([ROOT / "docs"], "docs")
        Ingestor(settings, store, embedder).run([corpus], "scifact")


@pytest.fixture(scope="module")
def base_settings(tmp_path_factory, embedder) -> Settings:
    tmp = tmp_path_factory.mktemp("api")
    settings = Settings(data_dir=tmp / "data", collection="docs", _env_file=None)
    ingest_fixture_corpus(settings, embedder, tmp)
    return settings


@pytest.fixture(scope="module")
def live(base_settings):
    server = LiveServer(base_settings)
    yield server
    server.stop()
