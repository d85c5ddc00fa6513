"""Retrieval audits against a golden set (issue 4)."""
