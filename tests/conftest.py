"""Shared fixtures: real settings in a temp dir, the real embedding model, real slices of SciFact."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from core.embedding import Embedder, get_embedder
from core.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("RAG_SHARED_DATA", ROOT.parent / "shared" / "data"))
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


def free_port() -> int:
    """A loopback port nobody listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until_up(url: str, proc: subprocess.Popen, what: str, timeout_s: float = 120) -> None:
    """Poll `url` until it answers 200; fail if `proc` exits first or the time runs out."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        assert proc.poll() is None and time.monotonic() < deadline, f"{what} did not come up"
        time.sleep(0.3)


def write_corpus(path: Path, docs: list[dict]) -> Path:
    path.write_text("".join(json.dumps(d) + "\n" for d in docs))
    return path


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
