"""The core every layer stands on: settings, errors, text splitting, the models (dense, BM25) and the Qdrant store."""

__version__ = "0.1.0"
