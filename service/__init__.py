"""REST API (issue 3)."""
