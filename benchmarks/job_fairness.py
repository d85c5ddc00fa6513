"""How long a key's small job waits behind another key's long one (issue 21), before and after.

Starts `rag serve` (API keys ka and kb, the project's docs/ ingested as `docs`) twice: with RAG_JOB_WORKERS=1
("before": one worker, as the old service had one per kind, so a job waited behind every running job of its
kind) and with the default workers ("after": cores + 1, the key with fewest running first, the last free
worker kept for keys with none running). In each:

1. ingest: ka uploads a real .docx holding --docs SciFact abstracts (a large text in a small file); once it
   runs, kb uploads a one-line note to another collection. kb's wait = its submit to its job's end.
2. audit: ka submits an audit of --cases cases on `docs`; once it runs, kb submits a one-case audit.

    python benchmarks/job_fairness.py [--docs 300] [--cases 1000] [--generate] [--only ingest|audit]

Prints one JSON object (seconds).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from serving import free_port, wait_until_up  # benchmarks/serving.py, beside this script

ROOT = Path(__file__).resolve().parents[1]
SCIFACT = Path(os.environ.get("RAG_SHARED_DATA", ROOT.parent / "shared" / "data")) / "scifact" / "corpus.jsonl"
KEYS = {"ka": ["fa", "docs"], "kb": ["fb", "docs"]}


def big_docx(path: Path, n: int) -> int:
    """A .docx of n SciFact abstracts (title as a heading, text as a paragraph); returns its text's length."""
    from docx import Document

    doc, chars = Document(), 0
    with open(SCIFACT) as fh:
        for line, _ in zip(fh, range(n)):
            rec = json.loads(line)
            doc.add_heading(rec["title"], level=2)
            doc.add_paragraph(rec["text"])
            chars += len(rec["title"]) + len(rec["text"])
    doc.save(path)
    return chars


def wait_job(http: httpx.Client, job_id: str, key: str, until=("succeeded", "partial", "failed"), limit=1800):
    deadline = time.monotonic() + limit
    while (job := http.get(f"/v1/jobs/{job_id}", headers={"X-API-Key": key}).json())["status"] not in until:
        if time.monotonic() > deadline:
            raise TimeoutError(job)
        time.sleep(0.1)
    return job


def run(mode: str, workers: str | None, docx: Path, args, tmp: Path) -> dict:
    port = free_port()
    env = {**os.environ, "RAG_DATA_DIR": str(tmp / mode), "RAG_PORT": str(port), "RAG_API_KEYS": json.dumps(KEYS)}
    env.pop("RAG_JOB_WORKERS", None)
    if workers:
        env["RAG_JOB_WORKERS"] = workers
    ingest = [sys.executable, "-m", "cli", "ingest", str(ROOT / "docs")]
    subprocess.run(ingest, env=env, check=True, capture_output=True)
    proc = subprocess.Popen([sys.executable, "-m", "cli", "serve"], env=env, stdout=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    out: dict = {"mode": mode, "job_workers": workers or "default"}
    try:
        wait_until_up(f"{url}/readyz", proc, "rag serve")
        http = httpx.Client(base_url=url, timeout=120)
        if args.only != "audit":
            ingest_behind_ingest(http, docx, out)
        if args.only != "ingest":
            audit_behind_audit(http, args.cases, args.generate, out)
        http.close()
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    return out


def ingest_behind_ingest(http: httpx.Client, docx: Path, out: dict) -> None:
    t0 = time.monotonic()
    files = [("files", ("big.docx", docx.read_bytes()))]
    slow = http.post("/v1/collections/fa/documents", files=files, headers={"X-API-Key": "ka"}).json()
    wait_job(http, slow["id"], "ka", until=("running",))
    t1 = time.monotonic()
    note = [("files", ("note.md", b"# Note\n\nThe lighthouse keeper counts 41 ships a day."))]
    small = http.post("/v1/collections/fb/documents", files=note, headers={"X-API-Key": "kb"}).json()
    wait_job(http, small["id"], "kb")
    out["ingest_small_wait_s"] = round(time.monotonic() - t1, 1)
    done = wait_job(http, slow["id"], "ka")
    out["ingest_slow_s"] = round(time.monotonic() - t0, 1)
    out["ingest_slow_chunks"] = done["progress"].get("chunks")


def audit_behind_audit(http: httpx.Client, cases: int, generate: bool, out: dict) -> None:
    many = [
        {"id": f"q{i}", "question": f"How does the service handle case {i} of an upload?", "expected": [
            {"doc_id": "docs/ingesting.md"}]}
        for i in range(cases)
    ]  # fmt: skip
    t0 = time.monotonic()
    body = {"collection": "docs", "cases": many, "generate": generate}
    slow = http.post("/v1/audits", json=body, headers={"X-API-Key": "ka"}).json()
    wait_job(http, slow["id"], "ka", until=("running",))
    t1 = time.monotonic()
    one = {"collection": "docs", "cases": many[:1], "generate": generate}
    small = http.post("/v1/audits", json=one, headers={"X-API-Key": "kb"}).json()
    wait_job(http, small["id"], "kb")
    out["audit_small_wait_s"] = round(time.monotonic() - t1, 1)
    wait_job(http, slow["id"], "ka")
    out["audit_slow_s"] = round(time.monotonic() - t0, 1)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--docs", type=int, default=300, help="SciFact abstracts in the slow upload's .docx")
    ap.add_argument("--cases", type=int, default=1000, help="cases of the slow audit")
    ap.add_argument("--generate", action="store_true", help="audits generate answers too (slower)")
    ap.add_argument("--only", choices=["ingest", "audit"], help="one scenario")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        docx = Path(tmp) / "big.docx"
        chars = big_docx(docx, args.docs)
        result = {"docx_bytes": docx.stat().st_size, "docx_text_chars": chars, "cpus": os.cpu_count(), "runs": []}
        for mode, workers in (("before", "1"), ("after", None)):
            result["runs"].append(run(mode, workers, docx, args, Path(tmp)))
            print(json.dumps(result["runs"][-1]), file=sys.stderr)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
