"""The `rag` command: the top layer, over the service, the diagnostics, ingest and the engine."""
