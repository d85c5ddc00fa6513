"""Throughput and latency of /v1/query under concurrency, and what the bounded extractive answer keeps.

    # load: serve a copy of a data dir holding a SciFact collection, c = 1, 4, 8, 16, two kinds of query
    python benchmarks/concurrency.py load --data-dir /tmp/scifact-data [--collection scifact] \\
        [--levels 1,4,8,16] [--requests 300] [--seconds 120] [--label after] [--out result.json]
    # the code before (another checkout): its CLI, its tree first on the path
    python benchmarks/concurrency.py load --data-dir /tmp/scifact-data --tree /tmp/before \\
        --serve "python -m rag serve" --label before

    # agreement: sentences the bounded extractive answer picks vs the exhaustive one, on SciFact test questions
    python benchmarks/concurrency.py agreement --data-dir /tmp/scifact-data [--top-k 5,20] [--limit 300]

`load` copies --data-dir to a temporary folder (the embedded store has one owner; the original is never
served), starts the service on it on a free loopback port, warms it with 20 SciFact *train* questions, then
for each mode (retrieval: generate=false; default: the default query, extractive answer, top_k 5) and each
concurrency c sends --requests questions from c client threads (each with its own keep-alive connection),
bounded by --seconds per run: the SciFact test questions, then train's, each level its own (the service
remembers a question's vector, so a question asked again would be cheaper). It prints one JSON document (the
machine, the load average before and after, every run's requests/s, p50/p95/p99, errors) and a markdown table.
The clients run on the same machine as the service, so they take some CPU too.

`agreement` opens a copy of the store in-process, retrieves each SciFact test question's contexts, and runs
the extractive selection twice: exhaustive (every sentence embedded, the old behaviour) and bounded (the
default). It reports how often they choose the same sentences, the mean Jaccard overlap, how often they
agree to decline, how often each cites a relevant abstract (SciFact qrels), and the time per selection.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np
from serving import free_port, wait_until_up  # benchmarks/serving.py, beside this script

from engine.generation.extractive import MAX_EMBEDDED

ROOT = Path(__file__).resolve().parents[1]
SCIFACT = Path(os.environ.get("RAG_SHARED_DATA", ROOT.parent / "shared" / "data")) / "scifact"
MODES = {"retrieval": {"generate": False}, "default": {}}


def machine() -> dict:
    cpu = next(
        (ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines() if "model name" in ln),
        platform.processor(),
    )
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "cores_usable": len(os.sched_getaffinity(0)),
        "memory_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1e9, 1),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def questions(split: str) -> list[str]:
    qrels = SCIFACT / "qrels" / f"{split}.tsv"
    ids = list(dict.fromkeys(ln.split("\t")[0] for ln in qrels.read_text().splitlines()[1:] if ln.strip()))
    by_id = {}
    with open(SCIFACT / "queries.jsonl") as fh:
        for ln in fh:
            q = json.loads(ln)
            by_id[q["_id"]] = q["text"]
    return [by_id[i] for i in ids if i in by_id]


def qrels(split: str) -> dict[str, set[str]]:
    rel: dict[str, set[str]] = {}
    for ln in (SCIFACT / "qrels" / f"{split}.tsv").read_text().splitlines()[1:]:
        parts = ln.split("\t")
        if len(parts) >= 3 and int(parts[2]) > 0:
            rel.setdefault(parts[0], set()).add(parts[1])
    return rel


def copy_store(src: Path) -> tuple[Path, Path]:
    tmp = Path(tempfile.mkdtemp(prefix="concurrency-"))
    dst = tmp / "data"
    subprocess.run(["cp", "-a", "--sparse=always", str(src), str(dst)], check=True)
    for stale in ("lock", "owner"):
        (dst / stale).unlink(missing_ok=True)
    return tmp, dst


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_level(url: str, body: dict, qs: list[str], c: int, n: int, limit_s: float, pid: int) -> dict:
    lat: list[float] = []
    errors: list[str] = []
    lock, nxt = threading.Lock(), [0]
    cpu0, t0 = cpu_seconds(pid), time.perf_counter()

    def worker() -> None:
        with httpx.Client(base_url=url, timeout=120) as http:
            while time.perf_counter() - t0 < limit_s:
                with lock:
                    i = nxt[0]
                    if i >= n:
                        return
                    nxt[0] += 1
                t = time.perf_counter()
                try:
                    r = http.post("/v1/query", json={"question": qs[i % len(qs)], **body})
                    ok = r.status_code == 200
                    why = f"{r.status_code} {r.text[:200]}"
                except httpx.HTTPError as exc:
                    ok, why = False, repr(exc)
                with lock:
                    lat.append((time.perf_counter() - t) * 1000)
                    if not ok:
                        errors.append(why)

    threads = [threading.Thread(target=worker) for _ in range(c)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    wall, cpu = time.perf_counter() - t0, cpu_seconds(pid) - cpu0
    p = lambda q: round(float(np.percentile(lat, q)), 1) if lat else None  # noqa: E731
    return {
        "c": c,
        "requests": len(lat),
        "errors": len(errors),
        "first_error": errors[0] if errors else None,
        "seconds": round(wall, 1),
        "req_per_s": round(len(lat) / wall, 2) if wall else None,
        "p50_ms": p(50),
        "p95_ms": p(95),
        "p99_ms": p(99),
        # The service's CPU time per request: cores / this bounds requests/s on this machine.
        "server_cpu_ms_per_req": round(cpu * 1000 / len(lat), 1) if lat else None,
        "server_cores_busy": round(cpu / wall, 2) if wall else None,
    }


def load(args) -> dict:
    tmp, data = copy_store(Path(args.data_dir))
    port = free_port()
    env = {
        **os.environ,
        "RAG_DATA_DIR": str(data),
        "RAG_PORT": str(port),
        "RAG_HOST": "127.0.0.1",
        "RAG_COLLECTION": args.collection,
        "HF_HUB_OFFLINE": "1",
    }
    cwd = ROOT
    if args.tree:
        cwd = Path(args.tree)
        env["PYTHONPATH"] = str(cwd) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    cmd = [sys.executable if w == "python" else w for w in shlex.split(args.serve)]
    log = open(tmp / "serve.log", "wb")
    server = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    result = {"label": args.label, "serve": args.serve, "tree": str(cwd), "machine": machine(), "runs": {}}
    try:
        try:
            wait_until_up(f"{url}/readyz", server, "the service")
        except RuntimeError as exc:
            raise SystemExit(f"{exc}:\n{(tmp / 'serve.log').read_text()[-3000:]}") from None
        test, train = questions("test"), questions("train")
        result["load_avg_before"] = os.getloadavg()
        for mode in args.modes.split(","):
            run_level(url, MODES[mode], train[:20], 2, 20, 120, server.pid)  # warm-up, questions not measured
            # Each level asks questions no earlier level asked (the service remembers question vectors):
            # the test questions first, then train's beyond the warm-up ones.
            pool, levels = test + train[20:], [int(x) for x in args.levels.split(",")]
            result["runs"][mode] = [
                run_level(
                    url,
                    MODES[mode],
                    pool[k * args.requests :][: args.requests],
                    c,
                    args.requests,
                    args.seconds,
                    server.pid,
                )
                for k, c in enumerate(levels)
            ]
            print(json.dumps({mode: result["runs"][mode]}), file=sys.stderr)
        result["load_avg_after"] = os.getloadavg()
    finally:
        server.terminate()
        try:
            server.wait(timeout=60)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()
        shutil.rmtree(tmp, ignore_errors=True)
    return result


def table(result: dict) -> str:
    rows = [
        f"| {result['label']} | {mode} | {r['c']} | {r['req_per_s']} | {r['p50_ms']} | {r['p95_ms']} | "
        f"{r['p99_ms']} | {r['server_cpu_ms_per_req']} | {r['server_cores_busy']} | {r['requests']} | {r['errors']} |"
        for mode, runs in result["runs"].items()
        for r in runs
    ]
    head = "| code | query | c | req/s | p50 ms | p95 ms | p99 ms | CPU ms/req | cores busy | requests | errors |"
    return "\n".join([head, "|---" * 11 + "|", *rows])


def agreement(args) -> dict:
    from core.settings import Settings
    from engine.engine import Engine
    from engine.generation.extractive import ExtractiveGenerator

    tmp, data = copy_store(Path(args.data_dir))
    settings = Settings(data_dir=data, collection=args.collection, _env_file=None)
    engine = Engine.build(settings)
    rel = qrels("test")
    ids = list(rel)[: args.limit]
    by_id = {json.loads(ln)["_id"]: json.loads(ln)["text"] for ln in open(SCIFACT / "queries.jsonl")}
    old = ExtractiveGenerator(engine.embedder, engine.bm25, max_embedded=None, max_scanned=None)
    out = {"machine": machine(), "questions": len(ids), "by_top_k": {}}
    runs = [(int(k), int(m)) for k in args.top_k.split(",") for m in args.max_embedded.split(",")]
    try:
        for k, m in runs:
            new = ExtractiveGenerator(engine.embedder, engine.bm25, max_embedded=m)
            st = {"same": 0, "jaccard": [], "both_decline": 0, "one_declines": 0, "top_same": 0}
            st.update({"old_relevant": 0, "new_relevant": 0, "old_ms": [], "new_ms": []})
            params = engine.params(top_k=k)
            for qid in ids:
                q = by_id[qid]
                ctxs = engine.retriever.retrieve(args.collection, q, params).contexts
                sources = [(c.title, c.text) for c in ctxs]
                t = time.perf_counter()
                a = old.select(q, sources)
                st["old_ms"].append((time.perf_counter() - t) * 1000)
                t = time.perf_counter()
                b = new.select(q, sources)
                st["new_ms"].append((time.perf_counter() - t) * 1000)
                sa, sb = {(n, s) for n, s, _ in a}, {(n, s) for n, s, _ in b}
                st["same"] += sa == sb
                if not sa and not sb:
                    st["both_decline"] += 1
                elif not sa or not sb:
                    st["one_declines"] += 1
                st["jaccard"].append(len(sa & sb) / len(sa | sb) if sa | sb else 1.0)
                top = lambda sel: max(sel, key=lambda x: x[2])[:2] if sel else None  # noqa: E731
                st["top_same"] += top(a) == top(b)
                st["old_relevant"] += any(ctxs[n - 1].doc_id in rel[qid] for n, _, _ in a)
                st["new_relevant"] += any(ctxs[n - 1].doc_id in rel[qid] for n, _, _ in b)
            n = len(ids)
            out["by_top_k"][f"top_k={k} max_embedded={m}"] = {
                "identical_selection": round(st["same"] / n, 3),
                "mean_jaccard": round(float(np.mean(st["jaccard"])), 3),
                "top_sentence_same": round(st["top_same"] / n, 3),
                "both_decline": st["both_decline"],
                "only_one_declines": st["one_declines"],
                "cites_relevant_abstract_old": round(st["old_relevant"] / n, 3),
                "cites_relevant_abstract_new": round(st["new_relevant"] / n, 3),
                "select_ms_old_p50_p95": [round(float(np.percentile(st["old_ms"], q)), 1) for q in (50, 95)],
                "select_ms_new_p50_p95": [round(float(np.percentile(st["new_ms"], q)), 1) for q in (50, 95)],
            }
            print(
                json.dumps({f"top_k={k} max_embedded={m}": out["by_top_k"][f"top_k={k} max_embedded={m}"]}),
                file=sys.stderr,
            )
    finally:
        engine.close()
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    lp = sub.add_parser("load")
    lp.add_argument("--data-dir", required=True, help="holds the collection; copied, never served itself")
    lp.add_argument("--collection", default="scifact")
    lp.add_argument("--levels", default="1,4,8,16")
    lp.add_argument("--modes", default="retrieval,default")
    lp.add_argument("--requests", type=int, default=300, help="per run")
    lp.add_argument("--seconds", type=float, default=120, help="per run")
    lp.add_argument("--serve", default="python -m cli serve", help="the serve command ('python' = this one)")
    lp.add_argument("--tree", help="run the command in this checkout, with it first on PYTHONPATH")
    lp.add_argument("--label", default="after")
    lp.add_argument("--out", help="also write the JSON here")
    ap_ = sub.add_parser("agreement")
    ap_.add_argument("--data-dir", required=True)
    ap_.add_argument("--collection", default="scifact")
    ap_.add_argument("--top-k", default="5,20")
    ap_.add_argument("--max-embedded", default=str(MAX_EMBEDDED), help="bounds to compare, e.g. 6,8,12")
    ap_.add_argument("--limit", type=int, default=300)
    ap_.add_argument("--out")
    args = ap.parse_args()
    result = load(args) if args.cmd == "load" else agreement(args)
    text = json.dumps(result, indent=2)
    print(text)
    if args.cmd == "load":
        print(table(result))
    if args.out:
        Path(args.out).write_text(text)


if __name__ == "__main__":
    main()
