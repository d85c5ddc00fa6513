"""What several test modules share and that is not a fixture (fixtures are in the conftest.py files): files made
at run time, the MTRAG slice, the live server and API helpers, the wire-level LLM stand-in, and the servers the
tests and the benchmarks start (serving.py, which benchmarks/serving.py re-exports for the scripts)."""
