"""The retrieval why, measured by intervention (issue 17): for every source the audit says retrieval lost, pull
the lever its stage names and count how often the source then reaches the cut; pull a placebo (another
stage's lever) on the same losses for comparison.

    python benchmarks/lever_interventions.py [--relevant 200] [--docs 100] [--long 40] [--per-run 80] [--out FILE]
    (measured with those defaults: 397 losses, 7.3 min on 2 busy cores, 6 of them ingesting twice)
    python benchmarks/lever_interventions.py --from-json FILE   # the tables of a saved run again

This does not re-check the attribution rule's own predicate ("a retriever had it inside the cut, fusion did
not"): it changes the configuration and retrieves again, as an engineer following the lever would.

Corpus: SciFact abstracts (test's relevant ones, then others) and long documents of three abstracts each (one
section per abstract), ingested twice: with the default chunking (collection `bench`) and with smaller chunks
(`bench_small`, --small-chunk tokens) for the chunking lever. Questions: SciFact test and train queries,
SciFact titles, fragments of abstract sentences, SciFact claims (dev, train) with their evidence sentence as
the quote, and section questions on the long documents.

Failures are built with real configurations, then audited (the service's own Auditor, retrieval only); what
the audit attributes, not what was built, decides the stage a loss is counted under:
- RRF weighted 0.001 against the retriever that finds the source (the other one ranks it below 10): fusion.
- a cut of 3 on the default hybrid retrieval: the source is retrieved, fused below 3.
- single-retriever modes (sparse only, dense only) with --single-candidates (20) candidates: what that
  retriever does not return among them (its lever keeps the 20, and adds the other retriever).
- reranking with `stand-in:demote-listed` (a named stand-in reranker that keeps fusion's order but puts the
  expected document's chunks last) over a window of 30.
- wrong passage, three ways, each when the document is inside the cut and the quote is not: a long document's
  section title asked, the quote the first sentence of the next section (long_other_section); the first ten
  words of a section's middle sentence asked, the quote that sentence (long_middle_sentence); a SciFact claim
  asked, the quote its evidence sentence in a plain abstract (claim_evidence).

Interventions (each a retrieval with one setting changed; the cut is the new top_k where it changes):
- equal_weights: fusion weights equal (RRF, equal; a dbsf run goes to RRF with equal weights)
- finder_alone: the retriever that ranked the source's chunk best, alone
- rerank_off: rerank off
- top_k_up: top_k raised to the reranker's window when reranking, else to 10
- hybrid: hybrid mode
- smaller_chunks: the same settings on the collection chunked smaller
- unchanged: the same settings again (a sanity check: 0 expected)
Levers by stage: dropped_by_fusion -> equal_weights (and finder_alone); dropped_by_reranker -> rerank_off;
below_cut -> top_k_up; not_in_sparse/dense_candidates -> hybrid; wrong_passage -> smaller_chunks (and top_k_up).
The placebo is smaller_chunks (wrong_passage's lever), for wrong_passage equal_weights (fusion's lever): both
change the retrieval, but not at the stage the audit blamed. Every intervention's hit rate per stage is printed too.

Caveats: finder_alone is close to the rule's predicate (the finder had the chunk inside the cut, so alone it
shows it); a hit is the source reaching the cut, not the answer getting better; the chunking lever is one size
(--small-chunk); a "raise top_k" lever always rescues what is retrieved at all if raised far enough, so its
rate is only meaningful at the one raise it names (the window, or 10).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from collections import Counter, defaultdict
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.attribution_at_scale import (  # noqa: E402
    DATA,
    CachedEmbedder,
    DemoteListed,
    first_sentence,
    load_jsonl,
    qrels,
    stage_chunk_rank,
)
from core.embedding import get_embedder  # noqa: E402

CLAIMS = DATA.parent / "scifact_claims"
from core.settings import Settings  # noqa: E402
from core.sparse import Bm25Encoder  # noqa: E402
from core.store import open_store  # noqa: E402
from core.text import sentences  # noqa: E402
from diagnostics.audit.golden import Case, Expected, GoldenSet  # noqa: E402
from diagnostics.audit.run import Auditor  # noqa: E402
from engine.answer import Answerer  # noqa: E402
from engine.generation.extractive import ExtractiveGenerator  # noqa: E402
from engine.params import retrieval_params  # noqa: E402
from engine.retrieval import Retriever  # noqa: E402
from ingest.pipeline import Ingestor  # noqa: E402

CUT = 5
WINDOW = 30
INTERVENTIONS = ("equal_weights", "finder_alone", "rerank_off", "top_k_up", "hybrid", "smaller_chunks", "unchanged")
LEVERS = {
    "dropped_by_fusion": ("equal_weights", "finder_alone"),
    "dropped_by_reranker": ("rerank_off",),
    "below_cut": ("top_k_up",),
    "not_in_sparse_candidates": ("hybrid",),
    "not_in_dense_candidates": ("hybrid",),
    "wrong_passage": ("smaller_chunks", "top_k_up"),
}
PLACEBO = {stage: "equal_weights" if stage == "wrong_passage" else "smaller_chunks" for stage in LEVERS}


def _norm(text: str) -> str:
    return " ".join(text.lower().split())


def reaches_cut(contexts, doc: str, quote: str | None) -> bool:
    """The document is among the chunks shown, and with a quote, those chunks of it hold the quote (joined, so a
    quote across a chunk boundary counts, as in the audit)."""
    mine = sorted((c for c in contexts if c.doc_id == doc), key=lambda c: c.start)
    if not mine:
        return False
    return quote is None or _norm(quote) in _norm(" ".join(c.text for c in mine))


def intervene(name: str, params, lost: dict, settings):
    """(collection suffix, params) of the intervention, or None where it does not apply (finder_alone with no
    retriever that returned the source)."""
    if name == "equal_weights":
        return "", replace(params, fusion="rrf", weights=None, rrf_k=settings.rrf_k)
    if name == "finder_alone":
        ranks = lost.get("chunk_ranks", {})
        found = [(ranks[r], r) for r in ("sparse", "dense") if ranks.get(r) is not None]
        return ("", replace(params, mode=min(found)[1])) if found else None
    if name == "rerank_off":
        return "", replace(params, rerank=False)
    if name == "top_k_up":
        top = max(params.rerank_candidates, 10) if params.rerank else 10
        top = top if top > params.top_k else params.top_k * 2
        return "", replace(params, top_k=top, candidates=max(params.candidates, top))
    if name == "hybrid":
        return "", replace(params, mode="hybrid")
    if name == "smaller_chunks":
        return "_small", params
    if name == "unchanged":
        return "", params
    raise ValueError(name)


def build_corpus(args, rng, by_id, corpus):
    test = qrels("test")
    rel_all = sorted({d for ds in test.values() for d in ds})
    rel = rel_all[: args.relevant]
    others = [d["_id"] for d in corpus if d["_id"] not in set(rel_all)]
    subset = rel + others[: args.docs]
    outside = [d for d in others[args.docs :] if len(by_id[d]["text"]) > 400]
    rng.shuffle(outside)
    long_docs = []
    for k in range(args.long):
        parts = [(by_id[d]["title"], by_id[d]["text"]) for d in outside[3 * k : 3 * k + 3]]
        long_docs.append((f"long/l{k:03d}.md", parts))
    return subset, long_docs


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--relevant", type=int, default=200, help="SciFact test's relevant abstracts in the corpus")
    ap.add_argument("--docs", type=int, default=100, help="other SciFact abstracts in the corpus")
    ap.add_argument("--long", type=int, default=40, help="long documents of three abstracts each")
    ap.add_argument("--small-chunk", type=int, default=80, help="chunk size (tokens) of the smaller-chunks lever")
    ap.add_argument("--per-run", type=int, default=80, help="cases per failure construction")
    ap.add_argument(
        "--single-candidates", type=int, default=20, help="candidates of the single-retriever runs (and their levers)"
    )
    ap.add_argument("--titles", type=int, default=250)
    ap.add_argument("--fragments", type=int, default=300)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--work", default=None, help="keep the store here (a rerun re-ingests nothing); default a tmp dir")
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--from-json", type=Path, default=None, help="print the tables of a saved --out, run nothing")
    args = ap.parse_args()
    if args.from_json:
        rows = json.loads(args.from_json.read_text())["losses"]
        print_tables(summarize(rows), rows)
        return
    rng = random.Random(args.seed)
    t0 = time.perf_counter()

    corpus = load_jsonl(DATA / "corpus.jsonl")
    by_id = {d["_id"]: d for d in corpus}
    subset, long_docs = build_corpus(args, rng, by_id, corpus)
    sub = set(subset)
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="lever-int-"))
    work.mkdir(parents=True, exist_ok=True)
    settings = Settings(data_dir=work / "data", _env_file=None)
    small = Settings(
        data_dir=work / "data", chunk_max_tokens=args.small_chunk, chunk_overlap_tokens=args.small_chunk // 5,
        _env_file=None,
    )  # fmt: skip
    (work / "kb" / "long").mkdir(parents=True, exist_ok=True)
    with open(work / "kb" / "corpus.jsonl", "w") as fh:
        for d in subset:
            fh.write(json.dumps(by_id[d]) + "\n")
    for doc_id, parts in long_docs:
        (work / "kb" / doc_id).write_text("\n\n".join(f"# {t}\n\n{x}" for t, x in parts) + "\n")
    model = get_embedder(settings)
    bm25 = Bm25Encoder.from_settings(settings)
    store = open_store(settings)
    t = time.perf_counter()
    paths = [work / "kb" / "corpus.jsonl", work / "kb" / "long"]
    for s, coll in ((settings, "bench"), (small, "bench_small")):
        Ingestor(s, store, model).run(paths, coll)
    ingest_s = time.perf_counter() - t
    n_chunks = {c: store.count(c) for c in ("bench", "bench_small")}
    print(
        f"ingested {len(subset)} abstracts and {len(long_docs)} long documents twice: {n_chunks['bench']} chunks "
        f"(default chunking), {n_chunks['bench_small']} ({args.small_chunk}-token chunks) in {ingest_s:.0f} s"
    )
    corpus_ids = sub | {d for d, _ in long_docs}
    embedder = CachedEmbedder(model)
    demoter = DemoteListed()
    retriever = Retriever(store, embedder, bm25, demoter)
    base = retrieval_params(settings, top_k=CUT)

    # Questions: (qid, question, {doc: quote or None}).
    queries = {q["_id"]: q["text"] for q in load_jsonl(DATA / "queries.jsonl")}
    pool = []
    for split in ("test", "train"):
        for q, ds in qrels(split).items():
            if ds <= sub:
                pool.append((f"{split}:{q}", queries[q], {d: None for d in ds}))
    for d in rng.sample(subset, min(args.titles, len(subset))):
        pool.append((f"title:{d}", by_id[d]["title"], {d: None}))
    for d in rng.sample(subset, min(args.fragments, len(subset))):
        sents = sentences(by_id[d]["text"], min_words=8)
        if len(sents) >= 3:
            pool.append((f"frag:{d}", " ".join(sents[len(sents) // 2].split()[:10]), {d: None}))
    # SciFact claims (dev = BEIR test) with their evidence sentence: the passage that answers, on plain abstracts.
    abstracts = {str(d["doc_id"]): d["abstract"] for d in load_jsonl(CLAIMS / "corpus_sentences.jsonl")}
    for split in ("dev", "train"):
        for cl in load_jsonl(CLAIMS / f"claims_{split}.jsonl"):
            for doc, sets in cl["evidence"].items():
                if doc in sub and sets and _norm(abstracts[doc][sets[0]["sentences"][0]]) in _norm(by_id[doc]["text"]):
                    pool.append(
                        (f"claim:{split}:{cl['id']}", cl["claim"], {doc: abstracts[doc][sets[0]["sentences"][0]]})
                    )
    for doc_id, parts in long_docs:
        for j, (title, text) in enumerate(parts):
            other = first_sentence(parts[(j + 1) % len(parts)][1])
            if other:  # a section's title, the quote in the next section
                pool.append((f"sec:{doc_id}:{j}", title, {doc_id: other}))
            sents = sentences(text, min_words=10)
            if len(sents) >= 3:  # a middle sentence's first words, the quote that sentence
                s = sents[len(sents) // 2]
                pool.append((f"mid:{doc_id}:{j}", " ".join(s.split()[:10]), {doc_id: s}))
    rng.shuffle(pool)
    embedder.encode([q for _, q, _ in pool])
    t = time.perf_counter()
    probe = {qid: retriever.retrieve("bench", q, base) for qid, q, _ in pool}
    print(f"probe: {len(pool)} questions ({time.perf_counter() - t:.0f} s)")

    # The failure constructions: run name -> (params, [cases]).
    runs = {
        "rrf_against_sparse": retrieval_params(settings, top_k=CUT, fusion="rrf", weights=(0.001, 1.0)),
        "rrf_against_dense": retrieval_params(settings, top_k=CUT, fusion="rrf", weights=(1.0, 0.001)),
        "cut3": retrieval_params(settings, top_k=3),
        "sparse_only": retrieval_params(settings, top_k=CUT, mode="sparse", candidates=args.single_candidates),
        "dense_only": retrieval_params(settings, top_k=CUT, mode="dense", candidates=args.single_candidates),
        "rerank_demote": retrieval_params(settings, top_k=CUT, rerank=True, rerank_candidates=WINDOW),
        "long_other_section": base,
        "long_middle_sentence": base,
        "claim_evidence": base,
    }
    cases: dict[str, list[Case]] = defaultdict(list)

    def add(run: str, qid: str, question: str, doc: str, quote: str | None) -> None:
        if len(cases[run]) < args.per_run:
            cases[run].append(Case(f"{run}:{qid}:{doc}", question, (Expected(doc, quote=quote),)))

    for qid, question, rel in pool:
        st = probe[qid].stages
        for doc, quote in rel.items():
            s, d, f = (stage_chunk_rank(st[n], doc) for n in ("sparse", "dense", "fused"))
            inside = lambda r, k=CUT: r is not None and r <= k  # noqa: E731
            if quote is not None:
                shown = probe[qid].contexts
                if doc in {c.doc_id for c in shown} and not reaches_cut(shown, doc, quote):
                    kind = {"sec": "long_other_section", "mid": "long_middle_sentence", "claim": "claim_evidence"}
                    add(kind[qid.split(":")[0]], qid, question, doc, quote)
                continue
            if inside(s) and (d is None or d > 10):
                add("rrf_against_sparse", qid, question, doc, None)
            if inside(d) and (s is None or s > 10):
                add("rrf_against_dense", qid, question, doc, None)
            if f is not None and f > 3:
                add("cut3", qid, question, doc, None)
            if s is None or s > args.single_candidates:
                add("sparse_only", qid, question, doc, None)
            if d is None or d > args.single_candidates:
                add("dense_only", qid, question, doc, None)
            if inside(f, WINDOW):
                add("rerank_demote", qid, question, doc, None)
    # Demote, for each rerank case's question, the expected document's chunks (both chunkings).
    for coll in ("bench", "bench_small"):
        state = store.index_state(coll)
        for c in cases["rerank_demote"]:
            doc = c.expected[0].doc_id
            hits = store.get_points(coll, sorted(state[doc]["chunks"]), ["text"])
            demoter.demote.setdefault(c.question, set()).update(h.payload["text"] for h in hits)
    print("cases per construction: " + ", ".join(f"{r} {len(cs)}" for r, cs in cases.items()))

    losses = []
    t = time.perf_counter()
    auditor = Auditor(Answerer(retriever, ExtractiveGenerator(embedder, bm25)), store)
    for run, params in runs.items():
        if not cases[run]:
            continue
        report = auditor.run(GoldenSet(cases[run]), "bench", params, (1, params.top_k), False, corpus_ids)
        for c, rc in zip(cases[run], report["cases"]):
            for item in rc["lost"]:
                e = c.expected[0]
                losses.append({"run": run, "case": c, "params": params, "lost": item, "quote": e.quote})
    audit_s = time.perf_counter() - t
    print(f"audited: {sum(len(c) for c in cases.values())} cases, {len(losses)} lost sources ({audit_s:.0f} s)")

    t = time.perf_counter()
    rows = []
    for loss in losses:
        c, item = loss["case"], loss["lost"]
        row = {"id": c.id, "run": loss["run"], "stage": item["stage"], "hits": {}}
        for name in INTERVENTIONS:
            got = intervene(name, loss["params"], item, settings)
            if got is None:
                continue
            suffix, p = got
            res = retriever.retrieve("bench" + suffix, c.question, p)
            row["hits"][name] = reaches_cut(res.contexts[: p.top_k], item["doc_id"], loss["quote"])
        rows.append(row)
    interv_s = time.perf_counter() - t

    summary = summarize(rows)
    print_tables(summary, rows)
    seconds = {
        "ingest": round(ingest_s),
        "audit": round(audit_s),
        "interventions": round(interv_s),
        "total": round(time.perf_counter() - t0),
    }
    print(f"\nseconds: {json.dumps(seconds)}")
    if args.out:
        out = {"summary": summary, "seconds": seconds, "chunks": n_chunks, "losses": rows}
        args.out.write_text(json.dumps(out, indent=1))
    store.close()


def _rate(rows, name) -> tuple[int, float | None]:
    vals = [r["hits"][name] for r in rows if name in r["hits"]]
    return len(vals), (round(sum(vals) / len(vals), 3) if vals else None)


def summarize(rows: list[dict]) -> dict:
    out = {}
    for stage in sorted({r["stage"] for r in rows}):
        rs = [r for r in rows if r["stage"] == stage]
        entry = {
            "n": len(rs),
            "runs": dict(Counter(r["run"] for r in rs).most_common()),
            "by_intervention": {n: _rate(rs, n)[1] for n in INTERVENTIONS},
            "applicable": {n: _rate(rs, n)[0] for n in INTERVENTIONS},
        }
        if stage in LEVERS:
            entry["levers"] = {n: _rate(rs, n)[1] for n in LEVERS[stage]}
            entry["placebo"] = {PLACEBO[stage]: _rate(rs, PLACEBO[stage])[1]}
        out[stage] = entry
    return out


def print_tables(summary: dict, rows: list[dict]) -> None:
    fmt = lambda x: "-" if x is None else f"{x:.3f}"  # noqa: E731
    by_run = defaultdict(list)
    for r in rows:
        by_run[(r["stage"], r["run"])].append(r)
    print("\n| stage the audit named | n | its lever: hit rate | placebo: hit rate | unchanged (sanity) | from runs |")
    print("|---|---|---|---|---|---|")
    for stage, s in summary.items():
        if "levers" not in s:
            continue
        lev = "; ".join(f"{n} {fmt(v)}" for n, v in s["levers"].items())
        pl = "; ".join(f"{n} {fmt(v)}" for n, v in s["placebo"].items())
        runs = ", ".join(f"{r} {n}" for r, n in s["runs"].items())
        print(f"| {stage} | {s['n']} | {lev} | {pl} | {fmt(s['by_intervention']['unchanged'])} | {runs} |")
    print("\nBy construction:\n")
    print("| stage | construction | n | its lever: hit rate | placebo: hit rate |")
    print("|---|---|---|---|---|")
    for (stage, run), rs in sorted(by_run.items()):
        if stage in LEVERS:
            lev = "; ".join(f"{n} {fmt(_rate(rs, n)[1])}" for n in LEVERS[stage])
            print(f"| {stage} | {run} | {len(rs)} | {lev} | {PLACEBO[stage]} {fmt(_rate(rs, PLACEBO[stage])[1])} |")
    by_kind = defaultdict(list)
    for r in rows:
        by_kind[(r["stage"], r["id"].split(":")[1])].append(r)
    print("\nBy question kind (test/train: SciFact queries; frag: ten words of an abstract sentence; title: an")
    print("abstract's title; sec: a long document's section title; claim: a SciFact claim):\n")
    print("| stage | question kind | n | its lever: hit rate | placebo: hit rate |")
    print("|---|---|---|---|---|")
    for (stage, kind), rs in sorted(by_kind.items()):
        if stage in LEVERS:
            lev = "; ".join(f"{n} {fmt(_rate(rs, n)[1])}" for n in LEVERS[stage])
            print(f"| {stage} | {kind} | {len(rs)} | {lev} | {PLACEBO[stage]} {fmt(_rate(rs, PLACEBO[stage])[1])} |")
    other = {st: s for st, s in summary.items() if "levers" not in s}
    if other:
        print("\nStages with no lever measured here: " + ", ".join(f"{st} ({s['n']})" for st, s in other.items()))
    print("\nEvery intervention's hit rate per stage (n where it does not apply to every loss):\n")
    print("| stage | n | " + " | ".join(INTERVENTIONS) + " |")
    print("|---|---|" + "---|" * len(INTERVENTIONS))
    for stage, s in summary.items():
        cells = []
        for n in INTERVENTIONS:
            v, k = s["by_intervention"][n], s["applicable"][n]
            mark = "**" if n in LEVERS.get(stage, ()) else ""
            cells.append(f"{mark}{fmt(v)}{mark}" + (f" (n {k})" if k != s["n"] else ""))
        print(f"| {stage} | {s['n']} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
