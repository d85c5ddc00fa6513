"""Queries racing re-ingests, edits and deletes of the very documents they retrieve, over real HTTP.

A writer thread cycles each document through new versions (upload jobs) and deletions (the DELETE route)
while query threads hammer /v1/query on loopback (bounded in count and time). What must hold:

- no query fails: every answer is a 200 (the retriever skips points that vanish between its two calls);
- no torn or invented context: every context's text is a piece of one version of its document that was
  written (each sentence carries its document, version and number, and a chunk holds one version only);
- deletes and edits are seen: a query that starts after a DELETE returned, and ends before that document is
  uploaded again, returns nothing of it; one that starts after a version's job finished, and ends before
  the next change, returns only that version's chunks;
- right after the race, every context returned is a point of the collection.
"""

from __future__ import annotations

import re
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from core.settings import Settings
from core.sparse import SparseVec
from core.store.base import CollectionSpec, PointData, QuerySpec
from core.store.edge import EdgeStore
from tests.helpers.service import LiveServer

TOPICS = {
    "glacier.txt": ("glacier", "ice flow", "meltwater", "crevasse", "moraine"),
    "volcano.txt": ("volcano", "magma", "lava dome", "ash plume", "caldera"),
    "coral.txt": ("coral reef", "bleaching", "polyp", "lagoon", "algae"),
}
STABLE = "tides.txt"  # never changed: queries always have something to find
QUESTIONS = [
    "How fast does glacier ice flow and what happens to meltwater?",
    "What does the survey say about the volcano magma and ash plume?",
    "Why does coral reef bleaching happen in the lagoon?",
    "moraine crevasse caldera polyp",
    "How do tides depend on the moon?",
]
TAG = re.compile(r"\[(\w+)-v(\d+)-s(\d+)\]")
CYCLES = 2
QUERY_THREADS = 3
MAX_QUERIES = 2000
RACE_LIMIT_S = 60
SETTLE_LIMIT_S = 8


def version_text(name: str, v: int) -> str:
    """About 600 model tokens (three or four chunks); every sentence tagged [stem-vN-sI]."""
    words = TOPICS.get(name, ("tide", "moon", "ocean", "gravity", "coast"))
    stem = name.split(".")[0]
    lines = [
        f"Survey edition {v} of the {words[i % 5]} notes that the {words[(i + 1) % 5]} changed by {i * v + 3} "
        f"units over the season, as measured at station {i} [{stem}-v{v}-s{i}]."
        for i in range(30)
    ]
    return "\n\n".join(" ".join(lines[j : j + 3]) for j in range(0, 30, 3)) + "\n"


def norm(text: str) -> str:
    return " ".join(text.split())


class Log:
    """What the writer did, with monotonic times: (doc, kind, version, started, finished)."""

    def __init__(self):
        self.lock, self.events = threading.Lock(), []

    def add(self, doc: str, kind: str, version: int, started: float, finished: float) -> None:
        with self.lock:
            self.events.append((doc, kind, version, started, finished))

    def state_during(self, doc: str, t0: float, t1: float):
        """("present", v) or ("absent", None) when `doc` was settled in that state for all of [t0, t1];
        None when a change to it may have overlapped."""
        settled = None
        with self.lock:
            events = sorted((e for e in self.events if e[0] == doc), key=lambda e: e[3])
        for _, kind, version, started, finished in events:
            if started <= t1 and finished >= t0:
                return None  # a change ran during the query
            if finished < t0:
                settled = ("present", version) if kind == "upload" else ("absent", None)
        return settled


@pytest.fixture(scope="module")
def race_live():
    data = Path(tempfile.mkdtemp(prefix="race-")) / "data"
    data.mkdir(parents=True)
    server = LiveServer(Settings(data_dir=data, collection="race", _env_file=None))
    yield server
    server.stop()


def upload(live, files: dict[str, str]) -> dict:
    r = live.http.post(
        "/v1/collections/race/documents",
        files=[("files", (name, text.encode(), "text/plain")) for name, text in files.items()],
    )
    assert r.status_code == 202, r.text
    deadline = time.monotonic() + 120
    while (job := live.http.get(f"/v1/jobs/{r.json()['id']}").json())["status"] in ("queued", "running"):
        assert time.monotonic() < deadline, job
        time.sleep(0.05)
    assert job["status"] == "succeeded", job
    return job


def test_queries_racing_updates_and_deletes(race_live):
    live = race_live
    written: dict[str, dict[int, str]] = {name: {} for name in [*TOPICS, STABLE]}  # doc -> version -> text
    log = Log()
    t = time.monotonic()
    first = {name: version_text(name, 0) for name in written}
    for name, text in first.items():
        written[name][0] = norm(text)
    upload(live, first)
    for name in written:
        log.add(name, "upload", 0, t, time.monotonic())

    results: list[tuple[float, float, int, dict | str]] = []  # (start, end, status, body or text)
    res_lock = threading.Lock()
    stop, hammer_done = threading.Event(), threading.Event()

    def hammer(k: int) -> None:
        import httpx

        with httpx.Client(base_url=live.url, timeout=60) as http:
            i = k
            while not stop.is_set():
                with res_lock:
                    if len(results) >= MAX_QUERIES:
                        hammer_done.set()
                        return
                body = {"question": QUESTIONS[i % len(QUESTIONS)], "collection": "race", "top_k": 8}
                body["generate"] = i % 2 == 0
                t0 = time.monotonic()
                r = http.post("/v1/query", json=body)
                t1 = time.monotonic()
                with res_lock:
                    results.append((t0, t1, r.status_code, r.json() if r.status_code == 200 else r.text))
                i += QUERY_THREADS

    def settle() -> None:
        """Hold the document's state until some query has run wholly inside it (so the checks below have
        cases on a slow machine too); at most SETTLE_LIMIT_S."""
        since, deadline = time.monotonic(), time.monotonic() + SETTLE_LIMIT_S
        time.sleep(0.1)
        while time.monotonic() < deadline and not stop.is_set() and not hammer_done.is_set():
            with res_lock:
                if any(r[0] > since for r in results):
                    return
            time.sleep(0.02)

    def writer() -> None:
        for v in range(1, CYCLES + 1):
            for name in TOPICS:
                if stop.is_set():
                    return
                text = version_text(name, v)
                written[name][v] = norm(text)
                t0 = time.monotonic()
                upload(live, {name: text})  # an edit: new chunks written, the old ones deleted
                log.add(name, "upload", v, t0, time.monotonic())
                settle()
                t0 = time.monotonic()
                r = live.http.delete(f"/v1/collections/race/documents/{name}")
                log.add(name, "delete", v, t0, time.monotonic())
                assert r.status_code == 200, r.text
                settle()

    threads = [threading.Thread(target=hammer, args=(k,)) for k in range(QUERY_THREADS)]
    for th in threads:
        th.start()
    errors: list[BaseException] = []

    def guarded_writer() -> None:
        try:
            writer()
        except BaseException as exc:  # reported below, after the query threads stop
            errors.append(exc)

    w = threading.Thread(target=guarded_writer)
    w.start()
    w.join(timeout=RACE_LIMIT_S)
    stop.set()
    for th in threads:
        th.join(timeout=60)
    w.join(timeout=60)
    assert not errors, errors
    assert not w.is_alive(), "the writer did not finish in time"

    bad = [(status, body) for _, _, status, body in results if status != 200]
    assert not bad, bad[:3]

    checked_absent = checked_version = 0
    for t0, t1, _, body in results:
        by_doc: dict[str, set[int]] = {}
        for ctx in body["contexts"]:
            doc, text = ctx["doc_id"], norm(ctx["text"])
            tags = TAG.findall(text)
            assert tags, text
            versions = {int(v) for stem, v, _ in tags}
            assert {stem for stem, _, _ in tags} == {doc.split(".")[0]} and len(versions) == 1, text
            (v,) = versions
            assert text in written[doc][v], (doc, v, text)  # a piece of a version that was written
            by_doc.setdefault(doc, set()).add(v)
        if body.get("answer") and body["generation"]["citations"]:
            for c in body["generation"]["citations"]:
                assert body["contexts"][c["number"] - 1]["chunk_id"] == c["chunk_id"]
        for doc in TOPICS:
            state = log.state_during(doc, t0, t1)
            if state == ("absent", None):
                assert doc not in by_doc, (doc, by_doc)
                checked_absent += 1
            elif state is not None and doc in by_doc:
                assert by_doc[doc] == {state[1]}, (doc, state, by_doc[doc])
                checked_version += 1
    assert checked_absent > 0 and checked_version > 0, (checked_absent, checked_version)

    # Quiet now: every context a query returns is a point of the collection.
    store = live.server.config.app.state.rag.store
    ids = {h.id for h in store.scroll("race", ["doc_id"])}
    for q in QUESTIONS:
        body = live.http.post("/v1/query", json={"question": q, "collection": "race", "top_k": 8}).json()
        assert body["contexts"] and all(c["chunk_id"] in ids for c in body["contexts"])


def test_edge_shard_reads_racing_writes_need_no_lock(tmp_path):
    """The store alone (core/store/edge.py takes no lock around shard calls): threads query and fetch
    payloads while others replace and delete the same points. No call fails and no payload is torn; ids
    a query returned may be gone by the fetch, which the retriever skips."""
    store = EdgeStore(tmp_path / "data")
    store.ensure_collection("race", CollectionSpec(dense_dim=8, embedding={}, chunker={}, sparse={}))
    rng = np.random.default_rng(0)

    def points(doc: int, v: int) -> list[PointData]:
        return [
            PointData(
                f"{doc:08x}-0000-4000-8000-{v:06x}{i:06x}",
                rng.standard_normal(8).tolist(),
                SparseVec([doc % 7, 10 + i % 5], [1.0, 1.0]),
                {"doc_id": f"d{doc}", "text": f"d{doc} v{v} {i}"},
            )
            for i in range(20)
        ]

    for doc in range(20):
        store.upsert("race", points(doc, 0))
    deadline, errors, missed, rounds = time.monotonic() + 4, [], [0], [0]

    def reader() -> None:
        r = np.random.default_rng(threading.get_ident() % 1000)
        while time.monotonic() < deadline:
            try:
                specs = [
                    QuerySpec(dense=r.standard_normal(8).tolist(), limit=50, with_payload=["doc_id"]),
                    QuerySpec(sparse=SparseVec([int(r.integers(7)), 11], [1.0, 1.0]), limit=50, with_payload=True),
                ]
                hits = [h for res in store.query_batch("race", specs) for h in res]
                got = store.get_points("race", [h.id for h in hits], ["doc_id", "text"])
                for h in got:
                    assert h.payload["text"].startswith(h.payload["doc_id"] + " v"), h.payload
                missed[0] += len({h.id for h in hits}) - len(got)
                rounds[0] += 1
            except BaseException as exc:  # collected; the test fails below with them
                errors.append(exc)

    def writer(k: int) -> None:
        v = 1
        while time.monotonic() < deadline:
            try:
                doc = (v * 2 + k) % 20  # each writer its own documents: each ends with one version
                store.upsert("race", points(doc, v * 2 + k))
                store.delete_where("race", {"doc_id": f"d{doc}"})
                store.upsert("race", points(doc, v * 2 + k + 1000))
                if v % 5 == 0:
                    store.flush()
                v += 1
            except BaseException as exc:
                errors.append(exc)

    threads = [threading.Thread(target=reader) for _ in range(3)] + [
        threading.Thread(target=writer, args=(k,)) for k in range(2)
    ]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=60)
    try:
        assert not errors, errors[:3]
        assert rounds[0] > 20
        assert store.count("race") == 20 * 20  # each document ends with exactly one version
    finally:
        store.close()
