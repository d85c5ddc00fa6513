"""Prometheus metrics: request latency by route, latency per pipeline stage, outcomes by code."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

BUCKETS_MS = (1, 2.5, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Histogram(
            "rag_request_duration_ms",
            "HTTP request latency",
            ["route", "method"],
            buckets=BUCKETS_MS,
            registry=self.registry,
        )
        self.stages = Histogram(
            "rag_stage_duration_ms",
            "Latency of each pipeline stage",
            ["stage"],
            buckets=BUCKETS_MS,
            registry=self.registry,
        )
        self.outcomes = Counter(
            "rag_requests_total", "Requests by route and outcome", ["route", "outcome"], registry=self.registry
        )
