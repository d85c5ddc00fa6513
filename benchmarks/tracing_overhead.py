"""What tracing costs a query (core/tracing.py): off, on (spans exported over OTLP/HTTP to a receiver on
loopback that decodes them), and, run from a checkout without tracing (`--tree DIR`), the code before it.

    python benchmarks/tracing_overhead.py                    # off and on, interleaved rounds, one process
    python benchmarks/tracing_overhead.py --tree /tmp/head   # the same queries on another checkout (off only)

Each query is Answerer.ask on the docs/ collection (hybrid retrieval, extractive answer), the golden set's
questions in turn, rounds interleaved so a busy box's noise lands on both; it prints the median and p90 per
query of each mode, and the cost of one disabled span hook times the hooks a query passes.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


def receiver() -> tuple[str, list[int]]:
    """A loopback OTLP/HTTP receiver that decodes each ExportTraceServiceRequest; returns its URL, span counts."""
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    counts = [0]

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_POST(self):
            req = ExportTraceServiceRequest()
            req.ParseFromString(self.rfile.read(int(self.headers["Content-Length"])))
            counts[0] += sum(len(ss.spans) for rs in req.resource_spans for ss in rs.scope_spans)
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{server.server_address[1]}", counts


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tree", help="Run from this checkout instead (the code before tracing): off only.")
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--per-round", type=int, default=46)
    ap.add_argument("--data-dir", help="An embedded store with the docs collection (default: a fresh one).")
    args = ap.parse_args()
    root = Path(args.tree or Path(__file__).resolve().parents[1]).resolve()
    sys.path.insert(0, str(root))

    from core.settings import Settings
    from engine.engine import Engine

    data = Path(args.data_dir or tempfile.mkdtemp(prefix="trace-bench-"))
    settings = Settings(data_dir=data, collection="docs", _env_file=None)
    if not (data / "collections" / "docs").exists():
        from core.embedding import get_embedder
        from core.store import open_store
        from ingest.pipeline import Ingestor

        with open_store(settings) as store:
            Ingestor(settings, store, get_embedder(settings)).run([root / "docs"], "docs")
    questions = [json.loads(line)["question"] for line in (root / "examples" / "golden-docs.jsonl").open()]
    engine = Engine.build(settings)
    params = engine.params()
    try:
        from core import tracing
    except ImportError:
        tracing = None
    if tracing is not None and Path(tracing.__file__).resolve().parents[1] != root:
        tracing = None  # found through the installed project, not in the tree measured: that tree has none
    modes = ["before"] if tracing is None else ["off", "on"]
    url, counts = receiver() if tracing is not None else (None, [0])
    on = settings.model_copy(update={"otel_endpoint": url}) if tracing is not None else settings

    def ask(i: int) -> float:
        t = time.perf_counter()
        engine.answerer.ask("docs", questions[i % len(questions)], params)
        return (time.perf_counter() - t) * 1000

    for i in range(20):  # warm-up: models, caches
        ask(i)
    times: dict[str, list[float]] = {m: [] for m in modes}
    for r in range(args.rounds):
        for mode in modes:
            if tracing is not None:
                tracing.configure(on if mode == "on" else settings)
            times[mode] += [ask(r * args.per_round + i) for i in range(args.per_round)]
    out = {"tree": str(root)}
    for mode, ts in times.items():
        ts.sort()
        out[mode] = {
            "n": len(ts),
            "p50_ms": round(statistics.median(ts), 2),
            "p90_ms": round(ts[int(0.9 * len(ts))], 2),
        }
    if tracing is not None:
        tracing.configure(on)
        ask(0)
        tracing.flush()
        out["spans_per_query"] = counts[0] / (args.rounds * args.per_round + 1)
        tracing.configure(settings)
        n = 200_000
        t = time.perf_counter()
        for _ in range(n):
            with tracing.span("x", tracing.CHAIN) as sp:
                if sp.recording:
                    pass
        out["off_hook_ns"] = round((time.perf_counter() - t) / n * 1e9, 1)
    engine.close()
    print(json.dumps(out))


if __name__ == "__main__":
    main()
