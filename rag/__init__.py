"""Shared core of the RAG service: settings, errors, models, and the Qdrant store."""

__version__ = "0.1.0"
