"""Benchmark scripts (run them as `python benchmarks/NAME.py`); `serving` is also shared with the tests."""
