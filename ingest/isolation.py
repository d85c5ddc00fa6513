"""Parse files in a separate worker process, so that one hostile file cannot hang the job or take its
memory: each parse has a time limit, and the worker an address-space limit. A worker that runs over its
time, or dies, is replaced; the file fails with a reason and the job goes on."""

from __future__ import annotations

import multiprocessing
import resource
from multiprocessing.pool import Pool
from pathlib import Path

from ingest.documents import Document
from ingest.parsers import parse_file
from rag.errors import ParseError


def _limit_memory(max_mb: int) -> None:
    limit = max_mb * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def _parse(path: str, doc_id: str, max_bytes: int) -> list[Document]:
    try:
        return parse_file(Path(path), doc_id, max_bytes)
    except MemoryError:
        raise ParseError("parsing this file needs more memory than the parser's limit (RAG_PARSE_MEMORY_MB)") from None


class IsolatedParser:
    def __init__(self, timeout_s: float, memory_mb: int):
        self.timeout_s, self.memory_mb = timeout_s, memory_mb
        self._pool: Pool | None = None

    def _get_pool(self) -> Pool:
        if self._pool is None:
            # spawn, not fork: the parent holds torch threads and a Qdrant shard that a fork must not copy.
            ctx = multiprocessing.get_context("spawn")
            self._pool = ctx.Pool(1, initializer=_limit_memory, initargs=(self.memory_mb,))
        return self._pool

    def parse(self, path: Path, doc_id: str, max_bytes: int) -> list[Document]:
        """Documents of one file; raises ParseError (also for a timeout or a crashed worker)."""
        result = self._get_pool().apply_async(_parse, (str(path), doc_id, max_bytes))
        try:
            return result.get(timeout=self.timeout_s)
        except multiprocessing.TimeoutError:
            self._reset()
            raise ParseError(f"parsing took longer than {self.timeout_s:g} s (RAG_PARSE_TIMEOUT_S); "
                             "the file was abandoned") from None
        except ParseError:
            raise
        except Exception as exc:  # the worker died or raised something a parser should not
            self._reset()
            raise ParseError(f"the parser failed: {type(exc).__name__}: {exc}") from exc

    def _reset(self) -> None:
        if self._pool is not None:
            self._pool.terminate()
            self._pool = None

    def close(self) -> None:
        if self._pool is not None:
            self._pool.close()
            self._pool.join()
            self._pool = None
