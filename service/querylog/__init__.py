"""The query log: every query the service answers, kept to be rated, triaged and labelled into golden sets.

- Capture (`capture.py`): `/v1/query` (JSON and streamed) and the chat facade give each request a query id up
  front (in the response), then hand the result to `QueryLog.record`, which builds the row at once
  (question, collection, settings, contexts with stage ranks, answer, citations, generator, timings, the
  best dense score and how much the two retrievers agree) and queues it. One background thread scores the
  answer's faithfulness when it is cheap (an LLM's answer; the extractive generator is faithful by
  construction) and writes the row, so the request never waits on the database. A lookup of an id still in
  the queue waits for its write.
- Opt-out (`query_log=false`: no row, `query_id` null), retention (`retention.py`,
  `query_log_retention_days`: older rows and their feedback are purged at start-up and hourly), redaction
  (`query_log_redact_emails` / `_numbers`: the question, answer and feedback comments are stored redacted;
  contexts are corpus text and kept as they are).
- Candidates to label (`candidates.py`): unlabelled queries ranked by signals (thumbs-down, declines,
  unsupported claims, a low top score, retrievers that disagree), one per distinct question.
- Reads (`log.py`, `rows.py`): one query with its feedback, the filtered list, feedback and labels.
Storage is the service database (service/db): SQLite in the data dir, or PostgreSQL by RAG_DATABASE_URL.
"""

from service.querylog.candidates import score_candidate
from service.querylog.capture import build_row, log_query, new_query_id, redact
from service.querylog.log import QueryLog
from service.querylog.rows import QueryNotFound, parse_since

__all__ = [
    "log_query",
    "new_query_id",
    "QueryLog",
    "QueryNotFound",
    "build_row",
    "parse_since",
    "redact",
    "score_candidate",
]
