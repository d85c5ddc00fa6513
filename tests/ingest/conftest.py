"""Fixtures of the ingest tests: the real embedded store in the test's data dir, and an Ingestor over it."""

from __future__ import annotations

import pytest

from core.store import open_store
from ingest.pipeline import Ingestor


@pytest.fixture
def store(settings):
    with open_store(settings) as s:
        yield s


@pytest.fixture
def ingestor(settings, store, embedder):
    return Ingestor(settings, store, embedder)
