"""Optional OpenTelemetry tracing, off by default, in the OpenInference conventions that Phoenix and Langfuse read.

On when `otel_endpoint` is set (RAG_OTEL_ENDPOINT, or the standard OTEL_EXPORTER_OTLP_ENDPOINT): spans go over
OTLP/HTTP (protobuf) to `<endpoint>/v1/traces` (an endpoint that already ends in /v1/traces is used as it is),
batched in the background. `configure(settings)` (called by Engine.build) switches it on or off for the
process; nothing of OpenTelemetry's SDK is imported while it is off.

What a query gives (engine/answer.py, engine/retrieval.py; an audit case adds a CHAIN root and its judge):

    rag.query        CHAIN      input.value (the question as asked), output.value (the answer)
      rewrite        CHAIN      with history only: the question searched
      retrieve       RETRIEVER  retrieval.documents.N.document.{id,score,content,metadata}: the contexts
        embed        EMBEDDING  embedding.model_name, embedding.embeddings.0.embedding.text
        sparse       RETRIEVER  its candidates (the stages run in one Qdrant batch: each stage span has the
        dense        RETRIEVER  batch's start and end, `rag.batched` true)
        fusion       RETRIEVER  rag.fusion: dbsf / rrf
        rerank       RERANKER   reranker.{query,model_name,top_k,input_documents,output_documents}
      generate       LLM        llm.model_name, llm.token_count.{prompt,completion,total} (engine/generation/
                                usage.py: null counts are left out), llm.input_messages for an LLM endpoint

Off, each hook is one global check returning a shared no-op object (`span()`), and callers build attributes only
when `span.recording`: measured in the README (Tracing).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Iterable, Sequence

from openinference.semconv.trace import OpenInferenceSpanKindValues, SpanAttributes

if TYPE_CHECKING:
    from core.settings import Settings

# OpenInference's names, from openinference-semantic-conventions.
KIND = SpanAttributes.OPENINFERENCE_SPAN_KIND
_K = OpenInferenceSpanKindValues
CHAIN, RETRIEVER, EMBEDDING, RERANKER, LLM = (
    _K.CHAIN.value,
    _K.RETRIEVER.value,
    _K.EMBEDDING.value,
    _K.RERANKER.value,
    _K.LLM.value,
)
EVALUATOR = _K.EVALUATOR.value
INPUT, OUTPUT = SpanAttributes.INPUT_VALUE, SpanAttributes.OUTPUT_VALUE

_tracer = None
_provider = None
_endpoint: str | None = None
_max_documents = 10
_content = True


class _Off:
    """The span while tracing is off: a context manager and a handle that do nothing."""

    recording = False

    def __enter__(self) -> "_Off":
        return self

    def __exit__(self, *exc) -> bool:
        return False

    def set(self, attributes: dict[str, Any]) -> None:
        pass

    def end(self) -> None:
        pass


OFF = _Off()


class _Span:
    """A live span: `set` drops None values (OpenTelemetry refuses them) and text when content is not captured."""

    recording = True

    def __init__(self, span):
        self.span = span

    def set(self, attributes: dict[str, Any]) -> None:
        self.span.set_attributes(clean(attributes))

    def end(self) -> None:
        self.span.end()


class _Current(_Span):
    """A span that is current inside `with` (start_as_current_span's manager), ended on leaving it."""

    def __init__(self, manager):
        super().__init__(None)
        self._manager = manager

    def __enter__(self) -> "_Current":
        self.span = self._manager.__enter__()
        return self

    def __exit__(self, *exc) -> bool:
        return bool(self._manager.__exit__(*exc))


def clean(attributes: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for k, v in attributes.items():
        if v is None or (not _content and _is_content(k)):
            continue
        out[k] = v if isinstance(v, (str, bool, int, float)) else json.dumps(v, default=str)
    return out


def _is_content(key: str) -> bool:
    return key in (INPUT, OUTPUT, "reranker.query") or key.endswith((".content", ".embedding.text"))


def enabled() -> bool:
    return _tracer is not None


def span(name: str, kind: str, attributes: dict[str, Any] | None = None):
    """A span, current inside `with` (its children nest under it); OFF when tracing is off."""
    if _tracer is None:
        return OFF
    return _Current(_tracer.start_as_current_span(name, attributes=clean({KIND: kind, **(attributes or {})})))


def start(name: str, kind: str, attributes: dict[str, Any] | None = None, parent=None):
    """A span started now and ended by the caller (`.end()`), not made current: for work that yields (streams).
    `parent`: a span from `start` (default: the current one)."""
    if _tracer is None:
        return OFF
    from opentelemetry import trace

    context = trace.set_span_in_context(parent.span) if isinstance(parent, _Span) else None
    attrs = clean({KIND: kind, **(attributes or {})})
    return _Span(_tracer.start_span(name, context=context, attributes=attrs))


def current(handle):
    """`with current(handle):` makes a span from `start` the parent of the spans opened inside, without ending it."""
    if not isinstance(handle, _Span):
        return OFF
    from opentelemetry import trace

    return trace.use_span(handle.span, end_on_exit=False)


def record(name: str, kind: str, start_ns: int, end_ns: int, attributes: dict[str, Any]) -> None:
    """A span of work already done (its start and end given), under the current span."""
    if _tracer is None:
        return
    s = _tracer.start_span(name, start_time=start_ns, attributes=clean({KIND: kind, **attributes}))
    s.end(end_time=end_ns)


def documents(prefix: str, docs: Iterable[tuple[str, float, str | None, dict | None]]) -> dict[str, Any]:
    """OpenInference's document list: `<prefix>.N.document.{id,score,content,metadata}`, the first
    `otel_max_documents` only (a span holds at most 128 attributes)."""
    out: dict[str, Any] = {}
    for i, (doc_id, score, content, metadata) in enumerate(docs):
        if i >= _max_documents:
            break
        p = f"{prefix}.{i}.document"
        out[f"{p}.id"], out[f"{p}.score"] = str(doc_id), float(score)
        if content is not None:
            out[f"{p}.content"] = content
        if metadata:
            out[f"{p}.metadata"] = json.dumps(metadata)
    return out


def messages(prefix: str, items: Sequence[dict]) -> dict[str, Any]:
    """OpenInference's message list: `<prefix>.N.message.{role,content}`."""
    out: dict[str, Any] = {}
    for i, m in enumerate(items):
        out[f"{prefix}.{i}.message.role"] = m.get("role")
        out[f"{prefix}.{i}.message.content"] = m.get("content")
    return out


def traces_url(endpoint: str) -> str:
    endpoint = endpoint.rstrip("/")
    return endpoint if endpoint.endswith("/v1/traces") else f"{endpoint}/v1/traces"


def configure(settings: "Settings") -> bool:
    """Tracing on (an OTLP/HTTP exporter to the settings' endpoint) or off, for this process; the last call wins.
    Returns whether it is on."""
    global _tracer, _provider, _endpoint, _max_documents, _content
    endpoint = settings.otel_endpoint
    _max_documents, _content = settings.otel_max_documents, settings.otel_capture_content
    if not endpoint:
        if _provider is not None:
            _provider.shutdown()
        _tracer = _provider = _endpoint = None
        return False
    if _provider is not None and endpoint == _endpoint:
        return True
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    if _provider is not None:
        _provider.shutdown()
    headers = None  # unset: the exporter reads OTEL_EXPORTER_OTLP_HEADERS itself
    if settings.otel_headers is not None:
        pairs = [p.partition("=") for p in settings.otel_headers.get_secret_value().split(",") if p.strip()]
        headers = {k.strip(): v.strip() for k, _, v in pairs}
    resource = Resource.create(
        {"service.name": settings.otel_service_name, "openinference.project.name": settings.otel_service_name}
    )
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=traces_url(endpoint), headers=headers)))
    _provider, _endpoint = provider, endpoint
    _tracer = provider.get_tracer("rag-why")
    return True


def flush(timeout_ms: int = 10_000) -> bool:
    """Send what is batched now (tests, the end of a CLI run)."""
    return _provider.force_flush(timeout_ms) if _provider is not None else True
