"""Ingest: files -> documents -> chunks -> vectors -> Qdrant, idempotently."""
