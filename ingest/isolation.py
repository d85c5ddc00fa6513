"""Parse files in a separate worker process, so that one hostile file cannot hang the job or take its
memory: each parse has a time limit, and the worker an address-space limit. A worker that runs over its
time is killed and replaced; one that dies (out of memory, killed) fails that file; the job goes on."""

from __future__ import annotations

import multiprocessing
import resource
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

from core.errors import ParseError
from ingest.documents import Document
from ingest.parsers import parse_file


def _init_worker(max_mb: int) -> None:
    limit = max_mb * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    # Die with the parent: a job killed with SIGKILL must not leave its parser behind (Linux only).
    try:
        import ctypes
        import signal

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _parse(path: str, source: str, max_bytes: int) -> list[Document]:
    try:
        return parse_file(Path(path), source, max_bytes)
    except MemoryError:
        raise ParseError("parsing this file needs more memory than the parser's limit (RAG_PARSE_MEMORY_MB)") from None


class IsolatedParser:
    def __init__(self, timeout_s: float, memory_mb: int):
        self.timeout_s, self.memory_mb = timeout_s, memory_mb
        self._pool: ProcessPoolExecutor | None = None

    def _get_pool(self) -> ProcessPoolExecutor:
        if self._pool is None:
            # spawn, not fork: the parent holds torch threads and a Qdrant shard that a fork must not copy.
            self._pool = ProcessPoolExecutor(
                1, mp_context=multiprocessing.get_context("spawn"), initializer=_init_worker, initargs=(self.memory_mb,)
            )
        return self._pool

    def parse(self, path: Path, source: str, max_bytes: int) -> list[Document]:
        """Documents of one file; raises ParseError (also for a timeout or a dead worker)."""
        future = self._get_pool().submit(_parse, str(path), source, max_bytes)
        try:
            return future.result(timeout=self.timeout_s)
        except FutureTimeout:
            self._kill()
            raise ParseError(
                f"parsing took longer than {self.timeout_s:g} s (RAG_PARSE_TIMEOUT_S); the file was abandoned"
            ) from None
        except BrokenProcessPool:
            self._kill()
            raise ParseError("the parser process died while parsing this file (out of memory, or killed)") from None
        except ParseError:
            raise
        except Exception as exc:  # a parser raised something it should not: this file fails, the worker lives
            raise ParseError(f"the parser failed: {type(exc).__name__}: {exc}") from exc

    def _kill(self) -> None:
        pool, self._pool = self._pool, None
        if pool is None:
            return
        # The executor has no public way to stop a running task: kill its (single) worker, then shut down.
        for proc in list((getattr(pool, "_processes", None) or {}).values()):
            proc.kill()
        pool.shutdown(wait=True, cancel_futures=True)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
