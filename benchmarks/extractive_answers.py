"""Which sentences the extractive generator quotes, and when it declines: before/after on SciFact, MTRAG and the docs.

    # 1. contexts: retrieve each question's contexts once, with the service's default retrieval
    RAG_DATA_DIR=/tmp/scifact rag ingest ../shared/data/scifact/corpus.jsonl -c scifact  # ~25 min on 2 cores
    RAG_DATA_DIR=/tmp/mtrag rag ingest ../shared/data/mtrag_conv/corpus.jsonl -c mtrag
    python benchmarks/extractive_answers.py contexts --data-dir /tmp/scifact --split train --out /tmp/ctx-train.json
    python benchmarks/extractive_answers.py contexts --data-dir /tmp/scifact --split test --out /tmp/ctx-test.json
    python benchmarks/extractive_answers.py contexts --source mtrag --collection mtrag --data-dir /tmp/mtrag \
        --split tune --out /tmp/ctx-mtrag-tune.json        # and --split report --out /tmp/ctx-mtrag-report.json
    # 2. tune on train data only: coverage weight x decline threshold; prints the defaults the rule picks
    python benchmarks/extractive_answers.py tune --contexts /tmp/ctx-train.json /tmp/ctx-mtrag-tune.json \
        [--cache /tmp/emb.npz]
    # 3. held out: before (the generator at --before-rev) vs after (this tree, its defaults)
    python benchmarks/extractive_answers.py report --contexts /tmp/ctx-test.json /tmp/ctx-mtrag-report.json \
        [--cache /tmp/emb.npz]
    # 4. the docs golden set, audited in-process with the before and the after generator (verdict counts)
    RAG_DATA_DIR=/tmp/docs rag ingest docs -c docs
    python benchmarks/extractive_answers.py golden --data-dir /tmp/docs

(A big corpus.jsonl can pass RAG_FILE_EMBED_TIMEOUT_S, 1800 s, on a busy box: raise it or split the file.)

Question sets, each from the service's retrieval (hybrid, the settings' defaults, top_k 5):
- SciFact answerable: each claim with its top 5 contexts. Every claim has a cited abstract; "with a relevant
  context" counts only the claims whose top 5 hold one (qrels): the others have no right sentence to quote.
- SciFact unanswerable: the same claim asked of the collection without its cited abstracts: the top 5
  contexts that are neither marked relevant (qrels) nor cited by the claim (scifact_claims `cited_doc_ids`,
  `evidence`), i.e. the ranking with those documents dropped (an approximation: fusion's score normalisation
  would move slightly without them). SciFact's labels are incomplete, so a few may still hold an answer.
  test = scifact_claims dev, as in BEIR.
- MTRAG: the conversations labelled ANSWERABLE (with relevant passages) or UNANSWERABLE (PARTIAL and
  UNDERSPECIFIED left out), the question rewritten from the history by the service's own rewrite stage
  (offline), in benchmarks/conversations.py's hash halves: tune (train) and report (held out).

Measures: decline rates; precision = the share of answered questions whose cited sentences come from a
relevant document (any of them: `precision_any`; all of them: `precision_all`); `cites_relevant` = the
share of all answerable questions whose answer cites a relevant document (declines count as misses; the
measure of `benchmarks/concurrency.py agreement`); select ms = the time of one selection (sentence split,
scoring, one embedding batch) on this machine, without the cache, the two generators in turn. The
threshold -1 row is the selection alone (never declines). `--cache` holds sentence vectors keyed by text
and changes no result.

The "before" generator is the module as of --before-rev (default: the commit before issue 17's change),
loaded from git, so both run side by side on the same contexts and the same embedder.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("RAG_SHARED_DATA", ROOT.parent / "shared" / "data"))
SCIFACT, CLAIMS, MTRAG = SHARED / "scifact", SHARED / "scifact_claims", SHARED / "mtrag_conv"
BEFORE_REV = "71b1192"  # engine/generation/extractive.py before issue 17's change
WEIGHTS = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5)
THRESHOLDS = (0.30, 0.35, 0.38, 0.40, 0.45, 0.50)
TOP_K, KEPT = 5, 15


def settings_for(data_dir: str | None, collection: str):
    from core.settings import Settings

    kw = {"collection": collection, "_env_file": None}
    if data_dir:
        kw["data_dir"] = Path(data_dir)
    return Settings(**kw)


# ---------------------------------------------------------------- contexts


def split_questions(split: str) -> dict[str, dict]:
    """qid -> {question, relevant, excluded} for a BEIR SciFact split (test = scifact_claims dev)."""
    text = {}
    for ln in open(SCIFACT / "queries.jsonl"):
        q = json.loads(ln)
        text[q["_id"]] = q["text"]
    out: dict[str, dict] = {}
    for ln in (SCIFACT / "qrels" / f"{split}.tsv").read_text().splitlines()[1:]:
        parts = ln.split("\t")
        if len(parts) >= 3 and int(parts[2]) > 0:
            out.setdefault(parts[0], {"question": text[parts[0]], "relevant": [], "excluded": []})["relevant"].append(
                parts[1]
            )
    claims_file = CLAIMS / f"claims_{'dev' if split == 'test' else split}.jsonl"
    cited = {}
    for ln in open(claims_file):
        c = json.loads(ln)
        cited[str(c["id"])] = [str(d) for d in c.get("cited_doc_ids", [])] + list(c.get("evidence", {}))
    for qid, q in out.items():
        q["excluded"] = sorted(set(q["relevant"]) | set(cited.get(qid, [])))
    return out


def mtrag_questions(half: str) -> dict[str, dict]:
    """MTRAG conversations of one half (benchmarks/conversations.py's hash split: tune / report) labelled
    ANSWERABLE (with relevant passages) or UNANSWERABLE; PARTIAL and UNDERSPECIFIED are left out."""
    from conversations import split_of  # benchmarks/conversations.py, beside this script

    out = {}
    for ln in open(MTRAG / "conversations.jsonl"):
        r = json.loads(ln)
        label = r["answerability"][0]
        if split_of(r["id"]) != half or label not in ("ANSWERABLE", "UNANSWERABLE"):
            continue
        if (label == "ANSWERABLE") != bool(r["relevant"]):
            continue
        out[r["id"]] = {
            "question": r["turns"][-1]["text"],
            "history": [(t["role"], t["text"]) for t in r["turns"][:-1]],
            "relevant": r["relevant"],
            "answerable": label == "ANSWERABLE",
        }
    return out


def contexts(args) -> None:
    from engine.engine import Engine
    from engine.rewrite import Turn

    settings = settings_for(args.data_dir, args.collection)
    qs = split_questions(args.split) if args.source == "scifact" else mtrag_questions(args.split)
    engine = Engine.build(settings)
    try:
        params = engine.params(top_k=KEPT if args.source == "scifact" else TOP_K)
        for qid, q in qs.items():
            if q.get("history"):  # the service's own rewrite stage (offline without an LLM) decides the query
                turns = [Turn(role, text) for role, text in q["history"]]
                q["question"] = engine.answerer.rewrite(args.collection, q["question"], turns, params).query
            ctxs = engine.retriever.retrieve(args.collection, q["question"], params).contexts
            q["contexts"] = [{"doc_id": c.doc_id, "title": c.title, "text": c.text} for c in ctxs]
    finally:
        engine.close()
    data = {"source": args.source, "split": args.split, "top_k": TOP_K, "questions": qs}
    Path(args.out).write_text(json.dumps(data))
    print(f"{len(qs)} questions -> {args.out}", file=sys.stderr)


def question_sets(path: str, limit: int | None = None) -> tuple[list[dict], list[dict]]:
    """(answerable, unanswerable): {qid, question, relevant, sources [(title, text)], doc_ids}."""
    data = json.loads(Path(path).read_text())
    ans, una = [], []
    for qid, q in list(data["questions"].items())[:limit]:
        if data.get("source") == "mtrag":  # labelled one way or the other, asked of the whole collection
            item = {
                "qid": qid,
                "question": q["question"],
                "relevant": set(q["relevant"]),
                "sources": [(c["title"], c["text"]) for c in q["contexts"]],
                "doc_ids": [c["doc_id"] for c in q["contexts"]],
            }
            (ans if q["answerable"] else una).append(item)
            continue
        top = q["contexts"][:TOP_K]
        rest = [c for c in q["contexts"] if c["doc_id"] not in set(q["excluded"])][:TOP_K]
        for bucket, ctxs in ((ans, top), (una, rest)):
            bucket.append(
                {
                    "qid": qid,
                    "question": q["question"],
                    "relevant": set(q["relevant"]),
                    "sources": [(c["title"], c["text"]) for c in ctxs],
                    "doc_ids": [c["doc_id"] for c in ctxs],
                }
            )
    return ans, una


# ---------------------------------------------------------------- generators


class CachedEmbedder:
    """The real embedder, remembering vectors by text (tuning runs the same sentences many times)."""

    def __init__(self, inner, path: str | None = None):
        self.inner, self.path, self.vecs = inner, path, {}
        if path and Path(path).exists():
            z = np.load(path)
            self.vecs = dict(zip(z["keys"].tolist(), z["vecs"]))

    @staticmethod
    def _key(text: str) -> str:
        return hashlib.sha1(text.encode()).hexdigest()

    def encode(self, texts):
        keys = [self._key(t) for t in texts]
        todo = {k: t for k, t in zip(keys, texts) if k not in self.vecs}
        if todo:
            self.vecs.update(zip(todo, self.inner.encode(list(todo.values()))))
        return np.stack([self.vecs[k] for k in keys])

    def encode_query(self, text):
        return self.encode([text])[0]

    def save(self) -> None:
        if self.path:
            keys = list(self.vecs)
            np.savez(self.path, keys=np.array(keys), vecs=np.stack([self.vecs[k] for k in keys]))


def before_module(rev: str):
    """engine/generation/extractive.py as of `rev`, imported under another name."""
    src = subprocess.run(
        ["git", "show", f"{rev}:engine/generation/extractive.py"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    path = Path(tempfile.mkdtemp(prefix="extractive-before-")) / "extractive_before.py"
    path.write_text(src)
    spec = importlib.util.spec_from_file_location("extractive_before", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def models(data_dir: str | None = None):
    from core.embedding import get_embedder
    from core.sparse import Bm25Encoder

    settings = settings_for(data_dir, "scifact")
    return get_embedder(settings), Bm25Encoder.from_settings(settings)


# ---------------------------------------------------------------- measures


def run_selection(gen, items: list[dict]) -> list[dict]:
    """Per question: the best score over the embedded sentences (None: nothing to score), the chosen
    sentences (source numbers) at the generator's own threshold, and the selection time."""
    out = []
    for it in items:
        t = time.perf_counter()
        chosen = gen.select(it["question"], it["sources"])
        ms = (time.perf_counter() - t) * 1000
        out.append(
            {"chosen": [n for n, _, _ in chosen], "best": max((s for _, _, s in chosen), default=None), "ms": ms}
        )
    return out


def scored_best(gen, items: list[dict], holder=None, attr: str = "min_score") -> list[tuple[float | None, list[int]]]:
    """Per question, with the decline threshold off: (best score, source numbers of the chosen sentences). The
    threshold is `holder.attr`: the generator's min_score, or, for the before module, its constant MIN_SCORE."""
    holder = gen if holder is None else holder
    keep = getattr(holder, attr)
    setattr(holder, attr, -1.0)
    try:
        res = run_selection(gen, items)
    finally:
        setattr(holder, attr, keep)
    return [(r["best"], r["chosen"]) for r in res]


def summarize(ans: list[dict], ans_sel, una_sel, thr: float) -> dict:
    """Decline rates and precision when every question whose best score is below `thr` declines."""
    answered = rel_any = rel_all = rel_ctx = rel_ctx_declined = 0
    for it, (best, chosen) in zip(ans, ans_sel):
        has_rel = any(d in it["relevant"] for d in it["doc_ids"])
        rel_ctx += has_rel
        if best is None or best < thr or not chosen:
            rel_ctx_declined += has_rel
            continue
        answered += 1
        hits = [it["doc_ids"][n - 1] in it["relevant"] for n in chosen]
        rel_any += any(hits)
        rel_all += all(hits)
    n = len(ans)
    una_declined = sum(1 for best, chosen in una_sel if best is None or best < thr or not chosen)
    return {
        "threshold": round(thr, 3),
        "declined_answerable": round(1 - answered / n, 3),
        "declined_answerable_with_relevant_context": round(rel_ctx_declined / max(rel_ctx, 1), 3),
        "declined_unanswerable": round(una_declined / max(len(una_sel), 1), 3),
        "precision_any": round(rel_any / max(answered, 1), 3),
        "precision_all": round(rel_all / max(answered, 1), 3),
        "cites_relevant": round(rel_any / n, 3),
    }


def table(rows: list[dict], cols: list[str]) -> str:
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(str(r.get(c, "")) for c in cols) + " |" for r in rows]
    return "\n".join(lines)


COLS = [
    "set",
    "generator",
    "coverage_weight",
    "threshold",
    "declined_answerable",
    "declined_answerable_with_relevant_context",
    "declined_unanswerable",
    "precision_any",
    "precision_all",
    "cites_relevant",
]


def set_name(path: str) -> str:
    data = json.loads(Path(path).read_text())
    return f"{data.get('source', 'scifact')} {data['split']}"


def tune(args) -> dict:
    """On the train sets: per coverage weight, precision at threshold 0 (which sentence is quoted), then the
    threshold rule: the highest threshold that declines at most --max-false-declines of the answerable
    questions with a relevant context, on every set."""
    from engine.generation.extractive import ExtractiveGenerator

    embedder, bm25 = models()
    cached = CachedEmbedder(embedder, args.cache)
    sets = {set_name(p): question_sets(p, args.limit) for p in args.contexts}
    grid = [round(t, 3) for t in np.arange(0.30, 0.5001, 0.01)]
    rows, picks = [], []
    try:
        for w in WEIGHTS:
            gen = ExtractiveGenerator(cached, bm25, coverage_weight=w)
            per_set = {name: (ans, scored_best(gen, ans), scored_best(gen, una)) for name, (ans, una) in sets.items()}
            ok = [
                t
                for t in grid
                if all(
                    summarize(ans, a, u, t)["declined_answerable_with_relevant_context"] <= args.max_false_declines
                    for ans, a, u in per_set.values()
                )
            ]
            thr = max(ok) if ok else None
            pick = {"coverage_weight": w, "threshold": thr}
            for name, (ans, a, u) in per_set.items():
                pick[f"precision@0 {name}"] = summarize(ans, a, u, -1.0)["precision_any"]
                for t in THRESHOLDS + ((thr,) if thr is not None else ()):
                    rows.append({"set": name, "generator": "after", "coverage_weight": w, **summarize(ans, a, u, t)})
                if thr is not None:
                    r = summarize(ans, a, u, thr)
                    pick[f"declined ans/unans {name}"] = (
                        f"{r['declined_answerable_with_relevant_context']}/{r['declined_unanswerable']}"
                    )
            picks.append(pick)
            print(f"coverage_weight={w} done", file=sys.stderr)
        old = before_module(args.before_rev)
        gen = old.ExtractiveGenerator(cached, bm25)
        for name, (ans, una) in sets.items():
            a, u = scored_best(gen, ans, old, "MIN_SCORE"), scored_best(gen, una, old, "MIN_SCORE")
            for t in (-1.0, *THRESHOLDS):
                rows.append(
                    {
                        "set": name,
                        "generator": f"before ({args.before_rev})",
                        "coverage_weight": 0.2,
                        **summarize(ans, a, u, t),
                    }
                )
    finally:
        cached.save()
    print(
        "\nPer coverage weight: precision at threshold 0, the threshold rule's pick and its decline rates "
        f"(answerable with a relevant context / unanswerable), at most {args.max_false_declines:.0%} false declines"
    )
    print(table(picks, list(picks[0])))
    print("\nAll rows (threshold -1 = never declines)")
    print(table(rows, COLS))
    return {"sets": {k: [len(a), len(u)] for k, (a, u) in sets.items()}, "picks": picks, "rows": rows}


def report(args) -> dict:
    """Held out: before vs after at their own defaults, and the after generator at other thresholds."""
    from engine.generation.extractive import COVERAGE_WEIGHT, MIN_SCORE, ExtractiveGenerator

    embedder, bm25 = models()
    old = before_module(args.before_rev)
    before, after = old.ExtractiveGenerator(embedder, bm25), ExtractiveGenerator(embedder, bm25)
    gens = {f"before ({args.before_rev})": (before, old.MIN_SCORE, 0.2), "after": (after, MIN_SCORE, COVERAGE_WEIGHT)}
    sets = {set_name(p): question_sets(p, args.limit) for p in args.contexts}
    first = next(iter(sets.values()))[0]
    ms = {name: [] for name in gens}
    for it in first[: args.timed]:  # the real embedder, no cache; the two generators in turn, question by question
        for name, (gen, _, _) in gens.items():
            ms[name] += [r["ms"] for r in run_selection(gen, [it])]
    timing = {name: [round(float(np.percentile(v, p)), 1) for p in (50, 95)] for name, v in ms.items()}
    rows = []
    cached = CachedEmbedder(embedder, args.cache)
    try:
        for set_, (ans, una) in sets.items():
            for name, (gen, thr, w) in gens.items():
                gen.embedder = cached
                if name == "after":
                    a, u = scored_best(gen, ans), scored_best(gen, una)
                    ts = sorted({thr, -1.0, *THRESHOLDS})
                else:
                    a, u = scored_best(gen, ans, old, "MIN_SCORE"), scored_best(gen, una, old, "MIN_SCORE")
                    ts = [-1.0, thr]
                for t in ts:
                    row = {"set": set_, "generator": name, "coverage_weight": w, **summarize(ans, a, u, t)}
                    row["default"] = "yes" if t == thr else ""
                    rows.append(row)
    finally:
        cached.save()
        before.embedder = after.embedder = embedder
    print({k: f"{len(a)} answerable, {len(u)} unanswerable" for k, (a, u) in sets.items()})
    print(f"select ms p50/p95 over the first {len(first[: args.timed])} questions of {next(iter(sets))}: {timing}")
    print(table(rows, COLS + ["default"]))
    return {"sets": {k: [len(a), len(u)] for k, (a, u) in sets.items()}, "select_ms_p50_p95": timing, "rows": rows}


def golden(args) -> dict:
    """Audit the golden set in-process twice (before / after generator), count the verdicts."""
    from collections import Counter

    from cli.audit import _corpus_ids
    from diagnostics.audit.golden import load_golden
    from diagnostics.audit.run import Auditor
    from diagnostics.judges.factory import make_judge
    from engine.engine import Engine

    settings = settings_for(args.data_dir, args.collection)
    gold = load_golden(Path(args.golden))
    corpus = _corpus_ids([Path(p) for p in args.corpus], settings)
    engine = Engine.build(settings)
    out = {}
    try:
        after = engine.answerer.generator
        before = before_module(args.before_rev).ExtractiveGenerator(engine.embedder, engine.bm25)
        judge = make_judge(settings, engine.embedder, engine.bm25, "heuristic")
        for name, gen in ((f"before ({args.before_rev})", before), ("after", after)):
            engine.answerer.generator = gen
            rep = Auditor(engine.answerer, engine.store, judge).run(
                gold, args.collection, engine.params(), (1, 3, 5, 10), True, corpus
            )
            out[name] = {
                "verdicts": dict(Counter(c["verdict"] for c in rep["cases"])),
                "cases": {c["id"]: c["verdict"] for c in rep["cases"]},
                "answers": {c["id"]: (c.get("generation") or {}).get("answer") for c in rep["cases"]},
            }
        engine.answerer.generator = after
    finally:
        engine.close()
    names = list(out)
    verdicts = sorted({v for o in out.values() for v in o["verdicts"]})
    print(
        table(
            [{"verdict": v, **{n: out[n]["verdicts"].get(v, 0) for n in names}} for v in verdicts], ["verdict", *names]
        )
    )
    changed = [
        f"{cid}: {out[names[0]]['cases'][cid]} -> {out[names[1]]['cases'][cid]}"
        for cid in out[names[0]]["cases"]
        if out[names[0]]["cases"][cid] != out[names[1]]["cases"].get(cid)
    ]
    print("changed: " + ("; ".join(changed) or "none"))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("contexts")
    c.add_argument("--data-dir", required=True, help="holds the collection (opened, not copied)")
    c.add_argument("--source", choices=("scifact", "mtrag"), default="scifact")
    c.add_argument("--collection", default="scifact", help="scifact / mtrag")
    c.add_argument("--split", choices=("train", "test", "tune", "report"), required=True, help="mtrag: tune/report")
    c.add_argument("--out", required=True)
    for name in ("tune", "report"):
        p = sub.add_parser(name)
        p.add_argument("--contexts", nargs="+", required=True, help="files written by `contexts`")
        p.add_argument("--cache", help="embedding cache (.npz), reused across runs")
        p.add_argument("--limit", type=int)
        p.add_argument("--before-rev", default=BEFORE_REV)
        if name == "report":
            p.add_argument("--timed", type=int, default=100, help="questions timed without the cache, per generator")
        else:
            p.add_argument("--max-false-declines", type=float, default=0.05)
    g = sub.add_parser("golden")
    g.add_argument("--data-dir", required=True)
    g.add_argument("--collection", default="docs")
    g.add_argument("--golden", default=str(ROOT / "examples" / "golden-docs.jsonl"))
    g.add_argument("--corpus", nargs="*", default=[str(ROOT / "docs")])
    g.add_argument("--before-rev", default=BEFORE_REV)
    for p in sub.choices.values():
        p.add_argument("--json", help="also write the result here")
    args = ap.parse_args()
    result = {"contexts": contexts, "tune": tune, "report": report, "golden": golden}[args.cmd](args)
    if args.json and result is not None:
        Path(args.json).write_text(json.dumps(result, indent=2, default=str))


if __name__ == "__main__":
    main()
