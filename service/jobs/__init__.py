"""One job system for ingest jobs, audits and experiments, persisted in the service database (service/db).

- **Queue** (`manager.py`, `claims.py`): a job is a row. Idle workers (`job_workers` per process, any kind)
  claim the next one with `SELECT ... FOR UPDATE SKIP LOCKED` (PostgreSQL; SQLite's writes are serial) and a
  compare-and-set to `running`. Claims are fair across owners (API keys) and kinds: the owner with the fewest
  jobs running goes first, then the one served least recently, FIFO within an owner; the last free worker of a
  process takes only an owner with nothing running, so one key's long jobs never hold every worker. Two
  ingest jobs never run at once in one collection (their uploads share the collection's work folder).
- **Liveness** (`liveness.py`): each process (replica) holds a lock for as long as it lives: a session-level
  advisory lock on PostgreSQL, an flock'ed file next to a SQLite database. A running job names its replica;
  only when that replica's lock can be taken (the process is gone) is the job queued again for another
  replica to take over, until it has had `job_max_attempts` runs, then marked `interrupted`. Checked at
  start-up and whenever a worker is idle (`recovery.py`), so a live replica's job is never touched.
- **Replicas** (`replicas.py`): the embedded store has one owner, so start-up refuses a second replica with
  an embedded store on the same database, and `replicas` > 1 without a Qdrant server.
- **Stops** (`running.py`): the ingest pipeline (and the audit's progress callback) asks `stop()` between
  files and writes: a cancel (`cancelled`), the time limit or shutdown (`interrupted`, with the reason).
- **Truth**: an ingest job ends with the report's status: succeeded, partial (some files failed) or failed.
- **Bounds** (`recovery.py`): finished jobs are kept `job_keep_last` per kind per owner and `job_keep_days`;
  queued jobs per owner `job_max_queued_per_key`; an owner's uploads held at once `max_upload_key_mb`; the
  chunks one ingest job embeds `job_max_chunks`.
- **Uploads** wait in `uploads/.staging/<job id>/<name>` (a folder per request: concurrent uploads never
  share a file), are linked to `uploads/<collection>/<name>` when the job starts (so a document's source is
  the same from one upload to the next, and re-uploading is idempotent), and are deleted when it ends.
- Nothing a client sees names a server path: `files` are upload names, reports and errors are scrubbed.
- **Runners** (`runners.py`) of each kind, with the audit and experiment requests and their checks
  (`requests.py`); what a runner gets and returns is in `context.py`.

The names below are re-exported for convenience; the service imports them from their modules.
"""

from service.jobs.context import (
    ACTIVE,
    FINISHED,
    STOPS,
    JobContext,
    JobNotFound,
    Outcome,
    Runner,
    Stopped,
    TooManyJobs,
    owner_of,
    scrub,
)
from service.jobs.manager import JobManager

__all__ = [
    "ACTIVE",
    "FINISHED",
    "STOPS",
    "JobContext",
    "JobManager",
    "JobNotFound",
    "Outcome",
    "Runner",
    "Stopped",
    "TooManyJobs",
    "owner_of",
    "scrub",
]
