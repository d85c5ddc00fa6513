"""Ingest jobs run by the service: one worker thread, state persisted as JSON under data_dir/jobs.

A job found "queued" or "running" when the service starts was interrupted by a stop; it is reported as
"interrupted" (its files are kept, and re-submitting them finishes the work idempotently).
"""

from __future__ import annotations

import json
import os
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable

from ingest.pipeline import IngestReport


class JobManager:
    def __init__(self, jobs_dir: Path, run: Callable[[list[Path], str, Callable[[str, int], None]], IngestReport]):
        self.dir = Path(jobs_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self._run = run
        self._jobs: dict[str, dict] = {}
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ingest")
        for f in self.dir.glob("*.json"):
            job = json.loads(f.read_text())
            if job["status"] in ("queued", "running"):
                job.update(status="interrupted", error="the service stopped while this job ran; submit the files again")
                self._save(job)
            self._jobs[job["id"]] = job

    def _save(self, job: dict) -> None:
        tmp = self.dir / f"{job['id']}.tmp"
        tmp.write_text(json.dumps(job))
        os.replace(tmp, self.dir / f"{job['id']}.json")

    def submit(self, collection: str, files: list[Path]) -> dict:
        job = {
            "id": uuid.uuid4().hex,
            "collection": collection,
            "status": "queued",
            "created_at": time.time(),
            "finished_at": None,
            "files": [str(f) for f in files],
            "progress": {"files": 0, "files_total": len(files), "documents": 0, "chunks": 0},
            "report": None,
            "error": None,
        }
        with self._lock:
            self._jobs[job["id"]] = job
            self._save(job)
        self._pool.submit(self._work, job["id"])
        return dict(job)

    def _work(self, job_id: str) -> None:
        job = self._jobs[job_id]
        job["status"] = "running"
        self._save(job)

        def tick(what: str, n: int) -> None:
            if what == "files_total":
                job["progress"]["files_total"] = n
            else:
                job["progress"][what] += n

        try:
            report = self._run([Path(f) for f in job["files"]], job["collection"], tick)
            job.update(status="succeeded", report=report.to_dict())
        except Exception as exc:  # a job must end with a state, whatever went wrong
            job.update(status="failed", error=f"{type(exc).__name__}: {exc}")
        job["finished_at"] = time.time()
        with self._lock:
            self._save(job)

    def get(self, job_id: str) -> dict | None:
        """The job, from memory or from the jobs folder (which replicas sharing a volume all see)."""
        job = self._jobs.get(job_id)
        if job is None and job_id.isalnum():
            path = self.dir / f"{job_id}.json"
            if path.exists():
                job = json.loads(path.read_text())
        return dict(job) if job else None

    def shutdown(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
