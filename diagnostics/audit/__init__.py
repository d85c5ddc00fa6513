"""The audit, in the order it runs: golden set (golden) -> run (run: every case through the engine) -> metrics
(diagnostics.metrics) -> where lost and verdicts (attribution) -> reports (report) and comparisons (compare)."""
