"""A real uvicorn server over HTTP on loopback, with a real embedded Qdrant store and the real model."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.settings import Settings
from core.store import open_store
from ingest.pipeline import Ingestor
from tests.conftest import ROOT, scifact_docs, write_corpus
from tests.helpers.service import LiveServer


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
