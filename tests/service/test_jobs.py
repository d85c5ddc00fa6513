"""The job system on real databases (a SQLite file, and a fresh PostgreSQL database per test): claims are
exactly-once and fair across API keys, cancels, time limits and shutdowns end jobs with the truth, a live
replica's job is never interrupted and a gone one's is, records are bounded and survive a restart.

The runners here are plain functions that record what ran: the system under test is the job system."""

from __future__ import annotations

import threading
import time

import pytest
from pydantic import SecretStr
from sqlalchemy import text, update

from core.settings import Settings
from service.db import Database, Job, database_url
from service.jobs.context import Outcome, TooManyJobs, scrub
from service.jobs.manager import JobManager


@pytest.fixture(params=["sqlite", "postgres"])
def make_settings(request, tmp_path):
    url = None if request.param == "sqlite" else request.getfixturevalue("pg_url")

    def make(**kw) -> Settings:
        return Settings(data_dir=tmp_path / "data", database_url=url, job_poll_s=0.05, _env_file=None, **kw)

    return make


class Recorder:
    """Runners that record each run; `hold` keeps a job running until released (or until it is told to stop)."""

    def __init__(self):
        self.runs: list[tuple[str, str, str]] = []  # (job id, replica, owner's collection)
        self.lock = threading.Lock()
        self.started = threading.Event()
        self.release = threading.Event()

    def quick(self, replica_of):
        def run(ctx):
            with self.lock:
                self.runs.append((ctx.id, replica_of(), ctx.collection))
            time.sleep(0.01)
            ctx.tick("files", 1)
            return Outcome({"ran": ctx.id}, "succeeded")

        return run

    def hold(self, ctx):
        with self.lock:
            self.runs.append((ctx.id, "", ctx.collection))
        self.started.set()
        while not self.release.is_set():
            if (reason := ctx.stop()) is not None:
                return Outcome({"stopped": reason}, "partial", reason)
            ctx.tick("files", 1)
            time.sleep(0.02)
        return Outcome({"done": True}, "succeeded")


def manager(settings: Settings, runners: dict, start: bool = True) -> JobManager:
    db = Database(database_url(settings))
    db.migrate()
    return JobManager(db, settings, runners, start=start)


def wait_for(jobs: JobManager, job_id: str, statuses=("succeeded",), timeout: float = 30) -> dict:
    deadline = time.monotonic() + timeout
    while (job := jobs.get(job_id))["status"] not in statuses:
        assert time.monotonic() < deadline, job
        time.sleep(0.02)
    return job


def close(*managers: JobManager) -> None:
    for m in managers:
        m.shutdown(timeout_s=10)
        m.db.close()


def test_two_replicas_run_each_job_exactly_once(make_settings):
    settings = make_settings()
    rec = Recorder()
    a = manager(settings, {"ingest": rec.quick(lambda: "a")}, start=False)
    b = manager(settings, {"ingest": rec.quick(lambda: "b")}, start=False)
    ids = [(a if i % 2 else b).submit("ingest", f"c{i % 5}", f"key:{i % 3}")["id"] for i in range(40)]
    a.start(), b.start()
    try:
        done = [wait_for(a, i) for i in ids]
        ran = [r[0] for r in rec.runs]
        assert sorted(ran) == sorted(ids)  # every job ran, and none twice
        assert {d["report"]["ran"] for d in done} == set(ids)
        with a.db.session() as s:
            replicas = {r for (r,) in s.execute(text("SELECT DISTINCT replica FROM jobs"))}
        assert replicas == {a.replica, b.replica}  # both replicas took work
    finally:
        close(a, b)


def test_claims_are_fair_across_api_keys(make_settings):
    settings = make_settings()
    rec = Recorder()
    order = []
    runner = rec.quick(lambda: "a")

    def run(ctx):
        order.append(ctx.request["owner"])
        return runner(ctx)

    jobs = manager(settings.model_copy(update={"job_workers": 1}), {"ingest": run}, start=False)
    for i in range(6):
        jobs.submit("ingest", f"a{i}", "key:A", request={"owner": "A"})
    for i in range(2):
        jobs.submit("ingest", f"b{i}", "key:B", request={"owner": "B"})
    jobs.start()
    try:
        deadline = time.monotonic() + 30
        while len(order) < 8:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        # B's jobs, queued after all of A's, do not wait for them: the keys take turns.
        assert order == ["A", "B", "A", "B", "A", "A", "A", "A"]
    finally:
        close(jobs)


def test_one_ingest_job_per_collection_at_a_time(make_settings):
    settings = make_settings()
    rec = Recorder()
    a = manager(settings, {"ingest": rec.hold})
    b = manager(settings, {"ingest": rec.hold})
    try:
        first = a.submit("ingest", "same", "key:A")["id"]
        assert rec.started.wait(10)
        second = b.submit("ingest", "same", "key:B")["id"]
        other = b.submit("ingest", "other", "key:B")["id"]
        wait_for(b, other, ("running",))
        time.sleep(0.5)
        assert b.get(second)["status"] == "queued"  # its collection is busy
        rec.release.set()
        wait_for(a, first), wait_for(a, second), wait_for(a, other)
    finally:
        rec.release.set()
        close(a, b)


def test_cancel_time_limit_and_shutdown_end_with_the_reason(make_settings):
    settings = make_settings(job_time_limit_s=0.5)
    rec = Recorder()
    jobs = manager(settings, {"ingest": rec.hold})
    try:
        limited = jobs.submit("ingest", "c", "key:A")["id"]
        job = wait_for(jobs, limited, ("interrupted",))
        assert job["reason"] == "time_limit" and "time limit" in job["error"]
        assert job["report"] == {"stopped": "time_limit"}  # what was done is kept
    finally:
        close(jobs)

    settings = make_settings(job_time_limit_s=60)
    rec = Recorder()
    jobs = manager(settings, {"ingest": rec.hold})
    try:
        running = jobs.submit("ingest", "c", "key:A")["id"]
        assert rec.started.wait(10)
        queued = jobs.submit("ingest", "c", "key:A")["id"]  # waits: same collection
        assert jobs.cancel(queued)["status"] == "cancelled"
        asked = jobs.cancel(running)
        assert asked["status"] == "running" and asked["cancel_requested"]
        job = wait_for(jobs, running, ("cancelled",))
        assert job["reason"] == "cancelled" and job["error"] == "cancelled by the caller"
        assert rec.runs and queued not in [r[0] for r in rec.runs]  # the queued one never ran
        with pytest.raises(Exception) as refused:
            jobs.cancel(running)
        assert getattr(refused.value, "code", None) == "job_finished"

        rec.started.clear()
        last = jobs.submit("ingest", "c", "key:A")["id"]
        assert rec.started.wait(10)
        t0 = time.monotonic()
        jobs.shutdown(timeout_s=10)
        assert time.monotonic() - t0 < 3  # prompt: the runner was told at its next stop() question
        job = jobs.get(last)
        assert job["status"] == "interrupted" and job["reason"] == "shutdown"
    finally:
        jobs.db.close()


def test_a_live_replica_keeps_its_job_a_gone_one_loses_it(make_settings):
    """(A replica killed for real, SIGKILL on a process, is in test_replicas.py.)"""
    settings = make_settings()
    rec = Recorder()
    a = manager(settings.model_copy(update={"job_workers": 1}), {"ingest": rec.hold})  # busy with one job
    b = None
    try:
        running = a.submit("ingest", "c", "key:A")["id"]
        assert rec.started.wait(10)
        # Jobs a replica that is gone ran: it holds no lock (no process, no session) any more. One had its
        # last run (job_max_attempts 2: it was taken over once already); the other is taken over.
        orphan = a.submit("ingest", "d", "key:A")["id"]
        again = a.submit("ingest", "e", "key:A", progress={"files_total": 3})["id"]
        with a.db.session() as s:
            gone = dict(status="running", replica="gone:1:abc", started_at=1.0)
            s.execute(update(Job).where(Job.id == orphan).values(**gone, progress={"attempts": 1}))
            s.execute(update(Job).where(Job.id == again).values(**gone, progress={"files_total": 3, "files": 2}))
        b = manager(settings, {"ingest": rec.hold})  # a replica starting while a's job runs
        assert b.get(running)["status"] == "running"  # a is alive: its job stays
        job = b.get(orphan)
        assert job["status"] == "interrupted" and job["reason"] == "replica_gone"
        assert "submit the files again" in job["error"]
        taken = wait_for(b, again, ("running",))  # queued again, and claimed by a live replica
        assert taken["progress"]["attempts"] == 1 and taken["progress"]["files_total"] == 3
        assert b.sweep() == [] and b.get(running)["status"] == "running"
        rec.release.set()
        assert wait_for(b, running)["report"] == {"done": True}
        assert wait_for(b, again)["report"] == {"done": True}
        assert [r[0] for r in rec.runs].count(again) == 1  # exactly once after the takeover
    finally:
        rec.release.set()
        close(a, *([b] if b else []))


def test_a_key_with_nothing_running_is_not_kept_waiting(make_settings):
    """Issue 21: one key's long jobs (of any kind) never hold every worker; the last free one is kept for a
    key with nothing running, whose job starts at once."""
    settings = make_settings(job_workers=2)
    rec = Recorder()
    jobs = manager(settings, {"ingest": rec.hold, "audit": rec.hold, "experiment": rec.quick(lambda: "a")})
    try:
        held = [jobs.submit(kind, f"a{i}", "key:A")["id"] for i, kind in enumerate(["ingest", "audit", "ingest"])]
        wait_for(jobs, held[0], ("running",))
        time.sleep(0.5)
        assert [jobs.get(i)["status"] for i in held] == ["running", "queued", "queued"]  # the last worker waits
        t0 = time.monotonic()
        other = jobs.submit("experiment", "b", "key:B")["id"]
        wait_for(jobs, other)
        assert time.monotonic() - t0 < 2  # not behind A's jobs
        assert [jobs.get(i)["status"] for i in held] == ["running", "queued", "queued"]
    finally:
        rec.release.set()
        close(jobs)


def test_retention_is_per_key(make_settings):
    settings = make_settings(job_keep_last=2)
    rec = Recorder()
    jobs = manager(settings, {"audit": rec.quick(lambda: "a")})
    try:
        theirs = jobs.submit("audit", "b", "key:B")["id"]
        wait_for(jobs, theirs)
        mine = []
        for i in range(5):
            mine.append(jobs.submit("audit", "a", "key:A")["id"])
            wait_for(jobs, mine[-1])
        jobs.prune()
        assert [jobs.get(i) is None for i in mine] == [True, True, True, False, False]
        assert jobs.get(theirs)["status"] == "succeeded"  # A's five audits did not push B's out
    finally:
        close(jobs)


def test_an_embedded_store_has_one_replica(make_settings, tmp_path):
    """Issue 20: a second replica with an embedded store on the same database is refused, naming the fix; so
    is RAG_REPLICAS above 1 without a Qdrant server. With a server there is no such lock."""
    from core.errors import ConfigError
    from service.jobs import replicas

    base = make_settings()
    db = Database(database_url(base))
    # Replicas share a database named by URL: on SQLite, the data dir's file named explicitly (without a URL
    # the data dir's own store lock decides, test_api's test_serve_refuses_a_store_owned_by_another_process).
    assert replicas.guard(base.model_copy(update={"database_url": None}), db) is None
    settings = base.model_copy(update={"database_url": SecretStr(db.url.render_as_string(hide_password=False))})
    first = replicas.guard(settings, db)
    try:
        other = settings.model_copy(update={"data_dir": tmp_path / "other"})
        with pytest.raises(ConfigError, match="RAG_QDRANT_URL") as refused:
            replicas.guard(other, db)
        assert "another replica with an embedded Qdrant store" in str(refused.value)
        assert replicas.guard(settings.model_copy(update={"qdrant_url": "http://qdrant:6333"}), db) is None
    finally:
        first.release()
    again = replicas.guard(settings, db)  # the first one has gone: the next one is alone
    again.release()
    with pytest.raises(ConfigError, match="RAG_QDRANT_URL"):
        replicas.check_layout(base.model_copy(update={"replicas": 2}))
    served = base.model_copy(update={"replicas": 2, "qdrant_url": "http://qdrant:6333"})
    if base.database_url is None:
        with pytest.raises(ConfigError, match="RAG_DATABASE_URL"):
            replicas.check_layout(served)
    else:
        replicas.check_layout(served)
    db.close()


def test_records_are_bounded_and_survive_a_restart(make_settings):
    settings = make_settings(job_keep_last=3, job_keep_days=1, job_max_queued_per_key=2)
    rec = Recorder()
    jobs = manager(settings, {"ingest": rec.quick(lambda: "a"), "audit": rec.quick(lambda: "a")})
    try:
        ids = []
        for i in range(5):
            ids.append(jobs.submit("ingest", f"c{i}", "key:A")["id"])
            wait_for(jobs, ids[-1])
        audit = jobs.submit("audit", "c", "key:A", request={"cases": 1})["id"]
        wait_for(jobs, audit)
        assert [jobs.get(i) is None for i in ids] == [True, True, False, False, False]  # the newest 3 ingest jobs
        with jobs.db.session() as s:  # one of them is older than job_keep_days
            s.execute(update(Job).where(Job.id == ids[2]).values(finished_at=time.time() - 2 * 86400))
        assert jobs.prune() == 1 and jobs.get(ids[2]) is None
    finally:
        close(jobs)

    again = manager(settings, {"ingest": rec.hold}, start=False)  # a restart
    try:
        assert again.get(ids[4])["report"] == {"ran": ids[4]} and again.get(audit)["kind"] == "audit"
        again.submit("ingest", "c", "key:A", upload_bytes=300_000)
        again.submit("ingest", "c", "key:A", upload_bytes=200_000)
        with pytest.raises(TooManyJobs):
            again.submit("ingest", "c", "key:A")
        again.submit("ingest", "c", "key:B")  # another key has its own queue
        assert again.upload_budget("key:A") == int(settings.max_upload_key_mb * 1e6) - 500_000
    finally:
        close(again)


def test_scrub_removes_server_paths(tmp_path):
    root = tmp_path / "uploads" / "docs"
    msg = f"document id 'a.md' already belongs to {root}/2023/a.md; see [Errno 2] '/etc/ssl/x.pem' at http://h/x/y"
    assert (
        scrub(msg, [root]) == "document id 'a.md' already belongs to 2023/a.md; see [Errno 2] 'x.pem' at http://h/x/y"
    )
    assert str(tmp_path) not in scrub(f"RuntimeError: cannot open {tmp_path}/other/f.txt", [root])


def test_a_job_stopped_by_a_lost_database_session_is_queued_again_and_resumed(make_settings):
    """The replica's database session lost mid-job (the database cut for real: test_fault_postgres.py): the job
    stops (`lost_lock`), is queued again once the lock is held again, and runs to its end; the workers claim
    nothing while the lock is lost."""
    settings = make_settings(job_workers=1)
    rec = Recorder()
    jm = manager(settings, {"ingest": rec.hold})
    real_ok, lost = jm.liveness.ok, threading.Event()
    jm.liveness.ok = lambda: False if lost.is_set() else real_ok()
    try:
        job_id = jm.submit("ingest", "c", "key:A", progress={"files_total": 2})["id"]
        assert rec.started.wait(10)
        lost.set()
        job = wait_for(jm, job_id, ("queued",))
        assert job["progress"] == {"files_total": 2, "attempts": 1}
        time.sleep(0.3)
        assert jm.get(job_id)["status"] == "queued"  # not claimed while the lock is lost
        rec.release.set()
        lost.clear()
        assert wait_for(jm, job_id)["report"] == {"done": True}
        assert [r[0] for r in rec.runs].count(job_id) == 2
    finally:
        rec.release.set()
        close(jm)
