"""What a job runner sees and returns (JobContext, Outcome, Stopped), the job states and stop reasons, the
job errors, and the two helpers every job path needs: who owns a job (`owner_of`) and a message without
server paths (`scrub`)."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from core.errors import InvalidRequestError

ACTIVE = ("queued", "running")
FINISHED = ("succeeded", "partial", "failed", "cancelled", "interrupted")
# Why a job stopped early -> its status, and what to tell the caller.
STOPS = {
    "cancelled": ("cancelled", "cancelled by the caller"),
    "time_limit": ("interrupted", "stopped at the job time limit; submit the files again to finish"),
    "chunk_limit": (
        "interrupted",
        "stopped at the job's chunk limit (RAG_JOB_MAX_CHUNKS); submit the remaining files in another upload",
    ),
    "shutdown": ("interrupted", "the service shut down while this job ran; submit the files again to finish"),
    "lost_lock": ("interrupted", "this replica lost its database connection; submit the files again to finish"),
    "replica_gone": ("interrupted", "the service stopped while this job ran; submit the files again to finish"),
}


def owner_of(api_key: str | None) -> str:
    """Who a job belongs to: a hash of the API key (never the key), or "open" when the API is open."""
    return "key:" + hashlib.sha256(api_key.encode()).hexdigest()[:16] if api_key else "open"


_ABS_PATH = re.compile(r"(?<![\w.:/~-])(?:/[^\s/'\"<>:;,()]+){2,}/?")


def scrub(message: str | None, roots: list[Path] = ()) -> str | None:
    """`message` without server file-system paths: below a known root, the path relative to it; any other
    absolute path, its last part."""
    if message is None:
        return None
    for root in sorted((str(r).rstrip("/") for r in roots), key=len, reverse=True):
        message = message.replace(root + "/", "")
    return _ABS_PATH.sub(lambda m: Path(m.group().rstrip("/")).name, message)


def storable(report: dict | None) -> dict | None:
    """The report as JSON any database takes: NaN and infinities (PostgreSQL's JSONB refuses them) become null."""
    if report is None:
        return None
    return json.loads(json.dumps(report, default=str), parse_constant=lambda _: None)


class Stopped(Exception):
    """Raised from a progress callback to stop a job that has no stop hook of its own (an audit)."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass
class Outcome:
    report: dict | None
    status: str  # succeeded | partial | failed
    stopped: str | None = None  # a key of STOPS


@dataclass
class JobContext:
    """What a runner gets: the job, its uploads folder, a progress callback and the stop question."""

    id: str
    kind: str
    collection: str
    files: list[str]
    request: dict
    folder: Path
    tick: Callable[[str, int], None]
    stop: Callable[[], str | None]

    def check_stop(self) -> None:
        """Raise Stopped when the job is asked to stop (cancel, limit, shutdown)."""
        if (reason := self.stop()) is not None:
            raise Stopped(reason)

    def count_cases(self, n: int) -> None:
        """Progress of an audit or experiment (n more cases done), then stop if asked."""
        self.tick("cases", n)
        self.check_stop()


Runner = Callable[[JobContext], Outcome]


class JobNotFound(InvalidRequestError):
    def __init__(self, job_id: str):
        super().__init__("job_not_found", f"no job {job_id[:64]!r}", 404)


class TooManyJobs(InvalidRequestError):
    def __init__(self, limit: int):
        super().__init__("too_many_jobs", f"this API key has {limit} jobs queued; wait for some to finish", 429)
