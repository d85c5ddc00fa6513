"""Attribution at scale: inject known faults into a SciFact subset, audit, and measure how often the audit
names the injected fault (precision and recall per label, and the confusion).

    python benchmarks/attribution_at_scale.py [--docs 700] [--per-fault 100] [--gen-cases 100] [--out FILE]

Corpus: SciFact test's relevant abstracts plus the first `--docs` others (a temporary embedded store), 120
long documents built from three SciFact abstracts each (one section per abstract), and 110 corrupt PDFs
that fail to ingest. Questions: SciFact test and train queries, SciFact titles, and fragments of abstract sentences.

A probe retrieval (the service's own hybrid retrieval, default settings) tells which (question, document)
pairs qualify for a fault; the audit then runs with the fault's settings. Faults, by construction:
- none: the expected document is inside the cut (control).
- not_in_corpus: the golden set names an id in no corpus file (a corpus listing is given).
- not_in_index: documents deleted from the index after ingest; the corpus listing has them.
- failed_to_ingest: the expected document's file is a corrupt PDF; the ingest report is given.
- not_in_sparse_candidates / not_in_dense_candidates: single-retriever audits of pairs that retriever does
  not return (real misses first, then documents sharing no term / far in meaning: a wrong label).
- not_in_any_candidates: hybrid; neither retriever returns the expected document.
- dropped_by_fusion: one retriever has it inside the cut, the other ranks it below 10 or not at all, and
  the audit fuses by RRF weighting the finder by 0.001: fusion is what drops it.
- dropped_by_reranker: fused inside the cut; the audit reranks with `stand-in:demote-listed`, a named
  stand-in reranker that keeps fusion's order but puts the listed passages last.
- below_cut: retrieved, but no stage (sparse, dense, fused) has it inside the cut (natural pairs at a cut of
  5, topped up at a cut of 1); also under the demoting reranker when fusion had it outside the cut (the
  reranker did not lose it).
- wrong_passage: a long document is inside the cut through one section, the golden quote is in another.
Generation faults, with scripted stand-in generators named as such, on cases whose source is in the cut:
`stand-in:faithful-verbose` (control: the reference plus an extra sentence of the source ->
answered_well), `stand-in:ignores-source` (answers from another retrieved document ->
retrieved_but_not_used), `stand-in:invents` (a sentence of an abstract outside the corpus ->
unsupported_claims), `stand-in:eager` on questions the corpus cannot answer (-> should_have_declined),
`stand-in:other-labelled` (answers the reference from an unlisted retrieved document with the golden
reference from it -> unlabelled_source), `stand-in:prompt-bug` (raises KeyError -> internal_error),
`stand-in:endpoint-down` (raises llm_timeout -> generation_error).
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from core.embedding import get_embedder  # noqa: E402
from core.settings import Settings  # noqa: E402
from core.sparse import Bm25Encoder  # noqa: E402
from core.store import open_store  # noqa: E402
from core.text import sentences  # noqa: E402
from diagnostics.audit.golden import Case, Expected, GoldenSet  # noqa: E402
from diagnostics.audit.run import Auditor  # noqa: E402
from diagnostics.judges.factory import make_judge  # noqa: E402
from diagnostics.metrics import dedupe  # noqa: E402
from engine.answer import Answerer  # noqa: E402
from engine.generation.extractive import ExtractiveGenerator  # noqa: E402
from engine.generation.llm import GenerationError  # noqa: E402
from engine.params import retrieval_params  # noqa: E402
from engine.retrieval import Retriever  # noqa: E402
from ingest.pipeline import Ingestor  # noqa: E402

DATA = ROOT.parent / "shared" / "data" / "scifact"
CUT = 5


class DemoteListed:
    """A reranker stand-in, named as such: keeps the incoming order, but puts the passages listed for the
    question last."""

    name = "stand-in:demote-listed"

    def __init__(self):
        self.demote: dict[str, set[str]] = {}

    def score(self, question, passages):
        listed = self.demote.get(question, set())
        return [-1e6 - i if p in listed else -float(i) for i, p in enumerate(passages)]


class Scripted:
    """A generator stand-in, named as such, answering each question with a scripted text."""

    def __init__(self, name: str, answers: dict[str, str] | None = None, exc: Exception | None = None):
        self.name, self.answers, self.exc = name, answers or {}, exc

    def generate(self, question, sources):
        if self.exc is not None:
            raise self.exc
        answer = self.answers[question]
        return answer(sources) if callable(answer) else answer

    def stream(self, question, sources):
        yield self.generate(question, sources)


class CachedEmbedder:
    """The embedding model with a per-text cache: a question or context sentence met again (the probe, then
    the audit; the same contexts under several stand-in generators) is not encoded twice. Same vectors."""

    def __init__(self, embedder):
        self.embedder, self.cache = embedder, {}

    def __getattr__(self, name):
        return getattr(self.embedder, name)

    def encode(self, texts):
        todo = [t for t in dict.fromkeys(texts) if t not in self.cache]
        if todo:
            self.cache.update(zip(todo, self.embedder.encode(todo)))
        return np.stack([self.cache[t] for t in texts])


def load_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in open(path) if line.strip()]


def qrels(split: str) -> dict[str, set[str]]:
    out: dict[str, set[str]] = defaultdict(set)
    for line in list(open(DATA / "qrels" / f"{split}.tsv"))[1:]:
        q, d, _ = line.split("\t")
        out[q].add(d)
    return out


def first_sentence(text: str, min_words: int = 8) -> str | None:
    return next((s for s in sentences(text, min_words=3) if len(s.split()) >= min_words), None)


def stage_chunk_rank(stage, doc_id: str) -> int | None:
    return next((i for i, (_, d, _) in enumerate(stage.hits, 1) if d == doc_id), None)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--docs", type=int, default=700, help="SciFact abstracts besides test's relevant ones")
    ap.add_argument("--per-fault", type=int, default=100)
    ap.add_argument("--gen-cases", type=int, default=100, help="cases per generation fault")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument(
        "--relevant", type=int, default=None, help="at most this many of test's relevant abstracts (smoke runs)"
    )
    ap.add_argument(
        "--from-data",
        type=Path,
        default=None,
        help="a data dir holding an ingested full SciFact collection `scifact` (copied, never opened in place)",
    )
    ap.add_argument("--titles", type=int, default=400, help="SciFact titles used as questions")
    ap.add_argument("--fragments", type=int, default=600, help="abstract fragments used as questions")
    ap.add_argument("--out", type=Path, default=None, help="also write the results as JSON here")
    args = ap.parse_args()
    rng = random.Random(args.seed)
    t_start = time.perf_counter()

    corpus = load_jsonl(DATA / "corpus.jsonl")
    by_id = {d["_id"]: d for d in corpus}
    queries = {q["_id"]: q["text"] for q in load_jsonl(DATA / "queries.jsonl")}
    test, train = qrels("test"), qrels("train")
    all_rel = sorted({d for ds in test.values() for d in ds})
    test_rel = all_rel[: args.relevant] if args.relevant else all_rel
    others = [d["_id"] for d in corpus if d["_id"] not in set(all_rel)]
    subset = test_rel + others[: args.docs]
    sub = set(subset)
    outside = [d for d in others[args.docs :] if len(by_id[d]["text"]) > 400]
    rng.shuffle(outside)
    n_long = min(120, args.per_fault + 10)
    long_src, invent_src = outside[: 2 * n_long], outside[360:500]

    tmp = Path(tempfile.mkdtemp(prefix="attr-scale-"))
    settings = Settings(data_dir=tmp / "data", _env_file=None)
    kb = tmp / "corpus"
    kb.mkdir()
    if args.from_data:  # the full collection, already ingested: a copy, never the original
        shutil.copytree(args.from_data, tmp / "data", symlinks=True)
        coll, subset = "scifact", [d["_id"] for d in corpus]
        sub = set(subset)
    else:
        coll = "bench"
        with open(kb / "corpus.jsonl", "w") as fh:
            for d in subset:
                fh.write(json.dumps(by_id[d]) + "\n")
    long_dir = tmp / "long"
    long_dir.mkdir()
    long_docs = []  # (doc_id, [(title, text) per section])
    for k in range(n_long):
        parts = [(by_id[d]["title"], by_id[d]["text"]) for d in long_src[2 * k : 2 * k + 2]]
        (long_dir / f"l{k:03d}.md").write_text("\n\n".join(f"# {t}\n\n{x}" for t, x in parts) + "\n")
        long_docs.append((f"long/l{k:03d}.md", parts))
    broken_dir = tmp / "broken"
    broken_dir.mkdir()
    broken_src = [d for d in others[args.docs :][::-1] if d not in set(outside[:500])][: args.per_fault + 10]
    for d in broken_src:
        (broken_dir / f"{d}.pdf").write_bytes(b"%PDF-1.4\n" + by_id[d]["text"][:200].encode() + b"\n%%EOF-truncated")

    model = get_embedder(settings)
    bm25 = Bm25Encoder.from_settings(settings)
    store = open_store(settings)
    t = time.perf_counter()
    ingestor = Ingestor(settings, store, model)
    paths = ([] if args.from_data else [kb / "corpus.jsonl"]) + [long_dir, broken_dir]
    reports = [ingestor.run([p], coll).to_dict() for p in paths]
    embedder = CachedEmbedder(model)
    ingest_s = time.perf_counter() - t
    failed = sum(r["summary"]["failed"] for r in reports)
    print(
        f"ingested {len(subset)} abstracts, {len(long_docs)} long documents; {failed} files failed ({ingest_s:.0f} s)"
    )

    # not_in_index: delete documents (relevant to some question) from the index; the listing keeps them.
    title_q = {f"title:{d}": by_id[d]["title"] for d in subset}
    pool: list[tuple[str, str, set[str]]] = []  # (qid, question, relevant docs)
    for q, ds in list(test.items()) + list(train.items()):
        if ds <= sub:
            pool.append((q, queries[q], ds))
    for d in rng.sample(subset, min(args.titles, len(subset))):
        pool.append((f"title:{d}", title_q[f"title:{d}"], {d}))
    # Harder questions: the first words of a middle sentence of the abstract (rank anywhere, or one retriever only).
    for d in rng.sample(subset, min(args.fragments, len(subset))):
        sents = sentences(by_id[d]["text"], min_words=8)
        if len(sents) >= 3:
            pool.append((f"frag:{d}", " ".join(sents[len(sents) // 2].split()[:10]), {d}))
    rng.shuffle(pool)
    deleted = [d for q, _, ds in pool if q.startswith("title:") for d in ds][: args.per_fault + 10]
    for d in deleted:
        store.delete_where(coll, {"doc_id": d})
    deleted_set = set(deleted)
    corpus_ids = sub | {d for d, _ in long_docs} | {f"broken/{d}.pdf" for d in broken_src}

    demoter = DemoteListed()
    retriever = Retriever(store, embedder, bm25, demoter)
    base = retrieval_params(settings, top_k=CUT)
    t = time.perf_counter()
    extra_q = [t for _, parts in long_docs for t, _ in parts] + [by_id[d]["title"] for d in broken_src]
    embedder.encode([q for _, q, _ in pool] + extra_q)  # one batched pass: the retrievals then hit the cache
    probe = {}
    for qid, question, _ in pool:
        probe[qid] = retriever.retrieve(coll, question, base)
    print(f"probe: {len(pool)} questions ({time.perf_counter() - t:.0f} s)")

    groups: dict[str, list[tuple[Case, str]]] = defaultdict(list)  # run key -> [(case, true label)]
    used: Counter = Counter()

    def add(key: str, label: str, case: Case) -> bool:
        if used[label] >= args.per_fault:
            return False
        used[label] += 1
        groups[key].append((case, label))
        return True

    def case_of(qid, question, doc, **kw):
        return Case(f"{kw.pop('tag', 'c')}:{qid}:{doc}", question, (Expected(doc, **kw),))

    rng_docs = list(sub - deleted_set)
    for qid, question, rel in pool:
        res = probe[qid]
        st = res.stages
        for doc in sorted(rel):
            if doc in deleted_set:
                add("hybrid", "not_in_index", case_of(qid, question, doc))
                continue
            s, d, f = (stage_chunk_rank(st[n], doc) for n in ("sparse", "dense", "fused"))
            inside = lambda r: r is not None and r <= CUT  # noqa: E731
            if inside(f) and not add("hybrid", "none", case_of(qid, question, doc)):
                add("rerank", "dropped_by_reranker", case_of(qid, question, doc, tag="rr"))
            if inside(d) and (s is None or s > 10):
                add("fusion_sparse_heavy", "dropped_by_fusion", case_of(qid, question, doc, tag="fs"))
            elif inside(s) and (d is None or d > 10):
                add("fusion_dense_heavy", "dropped_by_fusion", case_of(qid, question, doc, tag="fd"))
            if not any(inside(r) for r in (s, d, f)) and f is not None:
                add("hybrid", "below_cut", case_of(qid, question, doc))
                if f <= 30 and used["below_cut_rerank"] < 40:
                    used["below_cut_rerank"] += 1
                    groups["rerank"].append((case_of(qid, question, doc, tag="rb"), "below_cut"))
            elif f is not None and all(r is None or r > 1 for r in (s, d, f)):
                add("hybrid_cut1", "below_cut", case_of(qid, question, doc, tag="c1"))
            if s is None and d is None and f is None:
                add("hybrid", "not_in_any_candidates", case_of(qid, question, doc))
            if s is None:
                add("sparse", "not_in_sparse_candidates", case_of(qid, question, doc, tag="sp"))
            if d is None:
                add("dense", "not_in_dense_candidates", case_of(qid, question, doc, tag="de"))
    # Top up the candidate faults with a wrong label: a document no retriever returned for the question.
    for qid, question, rel in pool:
        st = probe[qid].stages
        docs_in = {n: set(dedupe([x for _, x, _ in st[n].hits])) for n in ("sparse", "dense")}
        y = rng.choice(rng_docs)
        if y in rel:
            continue
        if y not in docs_in["sparse"] and y not in docs_in["dense"]:
            add("hybrid", "not_in_any_candidates", case_of(qid, question, y, tag="wl"))
        if y not in docs_in["sparse"]:
            add("sparse", "not_in_sparse_candidates", case_of(qid, question, y, tag="wls"))
        if y not in docs_in["dense"]:
            add("dense", "not_in_dense_candidates", case_of(qid, question, y, tag="wld"))
    for i, (qid, question, _) in enumerate(pool[: args.per_fault]):
        add("hybrid", "not_in_corpus", case_of(qid, question, f"missing/{i}"))
    for d in broken_src[: args.per_fault]:
        add("hybrid", "failed_to_ingest", Case(f"fi:{d}", by_id[d]["title"], (Expected(f"broken/{d}.pdf"),)))
    # wrong_passage: the question is one section's title; the golden quote is in another section.
    for doc_id, parts in long_docs:
        for j, (title, _) in enumerate(parts):
            quote_wrong = first_sentence(parts[(j + 1) % len(parts)][1])
            quote_right = first_sentence(parts[j][1])
            if not quote_wrong or not quote_right:
                continue
            res = retriever.retrieve(coll, title, base)
            shown = res.contexts[:CUT]
            if doc_id not in {c.doc_id for c in shown}:
                continue
            holds = lambda q: any(q.lower() in " ".join(c.text.split()).lower() for c in shown if c.doc_id == doc_id)  # noqa: E731
            if not holds(quote_wrong):
                add("hybrid", "wrong_passage", Case(f"wp:{doc_id}:{j}", title, (Expected(doc_id, quote=quote_wrong),)))
            if holds(quote_right) and used["none_passage"] < 50:
                used["none_passage"] += 1
                groups["hybrid"].append(
                    (Case(f"rp:{doc_id}:{j}", title, (Expected(doc_id, quote=quote_right),)), "none")
                )

    # The runs: each group's settings.
    run_params = {
        "hybrid": base,
        "hybrid_cut1": retrieval_params(settings, top_k=1),  # the same lists, a cut of 1 chunk
        "sparse": retrieval_params(settings, top_k=CUT, mode="sparse"),
        "dense": retrieval_params(settings, top_k=CUT, mode="dense"),
        "fusion_sparse_heavy": retrieval_params(settings, top_k=CUT, fusion="rrf", rrf_k=60, weights=(1.0, 0.001)),
        "fusion_dense_heavy": retrieval_params(settings, top_k=CUT, fusion="rrf", rrf_k=60, weights=(0.001, 1.0)),
        "rerank": retrieval_params(settings, top_k=CUT, rerank=True, rerank_candidates=30),
    }
    scorer = make_judge(settings, embedder, bm25)
    results = []
    t = time.perf_counter()
    for key, items in groups.items():
        if key == "rerank":
            # The stand-in demotes, for each case's question, the chunks of the document the case expects.
            state = store.index_state(coll)
            demoter.demote = {}
            for c, _ in items:
                doc = c.expected[0].doc_id
                hits = store.get_points(coll, sorted(state[doc]["chunks"]), ["text"])
                demoter.demote.setdefault(c.question, set()).update(h.payload["text"] for h in hits)
        auditor = Auditor(Answerer(retriever, ExtractiveGenerator(embedder, bm25)), store, scorer)
        report = auditor.run(
            GoldenSet([c for c, _ in items]),
            coll,
            run_params[key],
            (1, CUT),
            False,
            corpus_ids,
            ingest_records=reports,
        )
        for (c, label), rc in zip(items, report["cases"]):
            got = rc["lost"][0]["stage"] if rc["lost"] else "none"
            results.append({"id": c.id, "run": key, "true": label, "got": got, "uncertain": bool(rc["uncertain"])})
    retrieval_s = time.perf_counter() - t
    table = confusion(results, "retrieval faults")

    # Generation faults.
    t = time.perf_counter()
    world = (pool, probe, by_id, invent_src, coll, retriever, store, scorer, embedder, bm25, base, corpus_ids)
    gen_results = generation_faults(args, rng, *world)
    gen_s = time.perf_counter() - t
    gen_table = confusion(gen_results, "generation faults (verdicts)")
    summary = {
        "corpus": {"abstracts": len(subset), "long_documents": len(long_docs), "failed_files": failed},
        "judge": scorer.name,
        "seconds": {
            "ingest": round(ingest_s),
            "retrieval_audits": round(retrieval_s),
            "generation_audits": round(gen_s),
            "total": round(time.perf_counter() - t_start),
        },
        "retrieval": table,
        "generation": gen_table,
    }
    print(json.dumps(summary["seconds"]))
    if args.out:
        args.out.write_text(json.dumps({**summary, "cases": results + gen_results}, indent=1))
    store.close()


def generation_faults(
    args, rng, pool, probe, by_id, invent_src, coll, retriever, store, scorer, embedder, bm25, base, corpus_ids
):
    """Scripted stand-in generators on cases whose expected source is in the cut."""
    n = args.gen_cases
    good = []  # (question, doc, reference, other shown doc and its first sentence)
    for qid, question, rel in pool:
        if not qid.startswith("title:"):
            continue
        doc = next(iter(rel))
        shown = probe[qid].contexts[:CUT]
        mine = [c for c in shown if c.doc_id == doc]
        other = [c for c in shown if c.doc_id != doc]
        if not mine or not other:
            continue
        ref = first_sentence(mine[0].text, 6)
        extra = [s for s in sentences(mine[0].text, min_words=6) if s != ref]
        oth = first_sentence(other[0].text, 6)
        if ref and extra and oth:
            good.append((question, doc, ref, extra[0], other[0].doc_id, oth))
        if len(good) >= n:
            break

    verbose, ignores, invents, labelled = {}, {}, {}, {}
    cases_v, cases_i, cases_n, cases_l = [], [], [], []
    for k, (q, doc, ref, extra, odoc, oth) in enumerate(good):
        verbose[q] = lambda src, r=ref, e=extra, d=doc: _cited([r, e], d, src)
        ignores[q] = lambda src, o=oth, d=odoc: _cited([o], d, src)
        inv = first_sentence(by_id[invent_src[k % len(invent_src)]]["text"], 6) or "It rose by 37% in 1998 in Oslo."
        invents[q] = lambda src, i=inv, d=doc: _cited([i], d, src)
        labelled[q] = lambda src, o=oth, d=odoc: _cited([o], d, src)
        cases_v.append(Case(f"gv:{k}", q, (Expected(doc),), ref))
        cases_i.append(Case(f"gi:{k}", q, (Expected(doc),), ref))
        cases_n.append(Case(f"gn:{k}", q, (Expected(doc),), ref))
        cases_l.append(Case(f"gl:{k}", q, (Expected(doc),), oth))
    convs = load_jsonl(DATA.parent / "mtrag_conv" / "conversations.jsonl")
    asks = [c["turns"][-1]["text"] for c in convs if c["turns"] and len(c["turns"][-1]["text"].split()) >= 4]
    unans = [Case(f"gu:{k}", q, ()) for k, q in enumerate(asks[:n])]  # the SciFact corpus cannot answer these
    eager = {c.question: (lambda src: _first_of(src)) for c in unans}
    runs = [
        (Scripted("stand-in:faithful-verbose", verbose), cases_v, "answered_well"),
        (Scripted("stand-in:ignores-source", ignores), cases_i, "retrieved_but_not_used"),
        (Scripted("stand-in:invents", invents), cases_n, "unsupported_claims"),
        (Scripted("stand-in:other-labelled", labelled), cases_l, "unlabelled_source"),
        (Scripted("stand-in:eager", eager), unans, "should_have_declined"),
        (
            Scripted("stand-in:decliner", {c.question: "The sources do not contain the answer." for c in unans}),
            unans,
            "correctly_declined",
        ),
        (Scripted("stand-in:prompt-bug", exc=KeyError("title")), cases_v, "internal_error"),
        (
            Scripted("stand-in:endpoint-down", exc=GenerationError("llm_timeout", "timed out")),
            cases_v,
            "generation_error",
        ),
    ]
    out = []
    for gen, cases, label in runs:
        report = Auditor(Answerer(retriever, gen), store, scorer).run(
            GoldenSet(cases), coll, base, (1, CUT), True, corpus_ids
        )
        for c, rc in zip(cases, report["cases"]):
            out.append(
                {"id": c.id, "run": gen.name, "true": label, "got": rc["verdict"], "uncertain": bool(rc["uncertain"])}
            )
    return out


def _cited(texts: list[str], doc: str, sources) -> str:
    """The sentences, each cited to the first source whose text holds it (else to source 1)."""
    parts = []
    for t in texts:
        n = next((i for i, (_, x) in enumerate(sources, 1) if t in " ".join(x.split())), 1)
        parts.append(f"{t} [{n}]")
    return " ".join(parts)


def _first_of(sources) -> str:
    s = first_sentence(sources[0][1], 6) or sources[0][1][:200]
    return f"{s} [1]"


def confusion(results: list[dict], title: str) -> dict:
    labels = sorted({r["true"] for r in results} | {r["got"] for r in results})
    counts = Counter((r["true"], r["got"]) for r in results)
    per = {}
    print(f"\n{title}: {len(results)} cases")
    print(f"{'label':<26} {'cases':>5} {'named':>5} {'precision':>9} {'recall':>7}  uncertain  most confused with")
    for lab in labels:
        tp = counts[(lab, lab)]
        n_true = sum(v for (t, _), v in counts.items() if t == lab)
        n_got = sum(v for (_, g), v in counts.items() if g == lab)
        prec = tp / n_got if n_got else None
        rec = tp / n_true if n_true else None
        unc = sum(1 for r in results if r["true"] == lab and r["uncertain"])
        wrong = Counter({g: v for (t, g), v in counts.items() if t == lab and g != lab}).most_common(2)
        per[lab] = {
            "cases": n_true,
            "named": n_got,
            "precision": prec,
            "recall": rec,
            "uncertain": unc,
            "confused_with": dict(wrong),
        }
        fmt = lambda x: "-" if x is None else f"{x:.3f}"  # noqa: E731
        print(
            f"{lab:<26} {n_true:>5} {n_got:>5} {fmt(prec):>9} {fmt(rec):>7}  {unc:>9}  "
            + ", ".join(f"{g} ({v})" for g, v in wrong)
        )
    return {"labels": per, "confusion": {f"{t} -> {g}": v for (t, g), v in sorted(counts.items())}}


if __name__ == "__main__":
    main()
