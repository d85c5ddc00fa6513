"""The audit: every golden question through the service's own retrieval and generation code, scored
case by case, with where each lost source was lost and a verdict that pins the failure on retrieval or
generation.

Definitions. Retrieval fetches `params.candidates` fused chunks (the API's own settings); documents rank
by their best chunk. Metrics at k are over that document ranking. The generator sees the first `cut`
chunks (the API's top_k), and "where lost" explains every expected document absent from those chunks.
"""

from __future__ import annotations

import re
import time
from dataclasses import asdict, replace
from typing import Callable, Iterable

from core.store import Store
from diagnostics.faithfulness import FaithfulnessScorer, split_claims
from diagnostics.golden import Case, GoldenSet
from diagnostics.metrics import bootstrap_ci, case_metrics, dedupe, mean
from engine.answer import Answerer
from engine.params import RetrievalParams
from engine.retrieval import Context, RetrievalResult

SCHEMA_VERSION = 1
LOST_STAGES = (
    "not_in_corpus",
    "not_in_index",
    "not_in_sparse_candidates",
    "not_in_dense_candidates",
    "not_in_any_candidates",
    "dropped_by_fusion",
    "dropped_by_reranker",
    "below_cut",
)
GOOD = {"answered_well", "correctly_declined", "retrieved"}
CORRECT_COSINE, CORRECT_F1 = 0.7, 0.5

LEVERS = {
    "not_in_corpus": (
        "fix the corpus: the expected documents are not in it (a corpus gap, or a golden set naming the wrong"
        " ids)"
    ),
    "not_in_index": "re-run ingest: the documents exist but are not in the index",
    "not_in_sparse_candidates": "fix retrieval: keyword search misses these questions; try hybrid or dense mode",
    "not_in_dense_candidates": (
        "fix retrieval: the embedding misses these questions; try hybrid mode, another embedding model, or "
        "smaller chunks"
    ),
    "not_in_any_candidates": (
        "fix retrieval: neither retriever finds the source; look at chunking (is the answer split across "
        "chunks?), vocabulary mismatch, filters"
    ),
    "dropped_by_fusion": (
        "fix fusion: a retriever found the source and fusion ranked it away; tune RRF k and weights, or more "
        "candidates"
    ),
    "dropped_by_reranker": (
        "fix the reranker: it pushes the right source out; try another model or more rerank candidates"
    ),
    "below_cut": "fix ranking: the source is retrieved just below the cut; raise top_k or add a reranker",
    "retrieved_but_not_used": "fix the prompt: the right source reached the generator and it did not use it",
    "unsupported_claims": (
        "fix the prompt (stay within the sources, cite every claim); if this persists across many cases, it "
        "is behaviour, not knowledge: consider fine-tuning the generator"
    ),
    "should_have_declined": (
        "fix the prompt: the generator answers questions the corpus cannot answer; make declining explicit"
    ),
    "wrong_answer": "check the golden answers and the prompt: the answer is grounded but disagrees with the reference",
    "generation_error": "fix the LLM endpoint: generation failed",
}


def _tokens(text: str) -> list[str]:
    return re.findall(r"\w+", text.lower())


def token_f1(a: str, b: str) -> float:
    ta, tb = _tokens(a), _tokens(b)
    if not ta or not tb:
        return 0.0
    common = sum(min(ta.count(t), tb.count(t)) for t in set(ta))
    if common == 0:
        return 0.0
    p, r = common / len(ta), common / len(tb)
    return 2 * p * r / (p + r)


def _norm(text: str) -> str:
    return " ".join(text.lower().split())


def where_lost(
    doc_id: str,
    result: RetrievalResult,
    params: RetrievalParams,
    cut_docs: set[str],
    indexed: set[str],
    corpus: set[str] | None,
) -> dict:
    """The stage that lost an expected document, with its rank in every stage (None = absent)."""
    ranks = {}
    for name, stage in result.stages.items():
        docs = dedupe([d for _, d, _ in stage.hits])
        ranks[name] = docs.index(doc_id) + 1 if doc_id in docs else None
    if doc_id in cut_docs:
        stage = None
    elif doc_id not in indexed:
        stage = "not_in_index" if corpus is not None and doc_id in corpus else "not_in_corpus"
    elif params.mode != "hybrid":
        stage = f"not_in_{params.mode}_candidates" if ranks.get(params.mode) is None else "below_cut"
    elif ranks.get("sparse") is None and ranks.get("dense") is None:
        stage = "not_in_any_candidates"
    elif ranks.get("fused") is None:
        stage = "dropped_by_fusion"
    elif params.rerank:
        stage = "dropped_by_reranker" if ranks.get("rerank") is not None else "dropped_by_fusion"
    else:
        stage = "below_cut"
    return {"doc_id": doc_id, "stage": stage, "ranks": ranks}


class Auditor:
    def __init__(self, answerer: Answerer, store: Store, scorer: FaithfulnessScorer | None = None, judge=None):
        """`judge`: an optional RagasJudge for LLM-judged metrics on generated answers."""
        self.answerer, self.store, self.scorer, self.judge = answerer, store, scorer, judge

    def run(
        self,
        golden: GoldenSet,
        collection: str,
        params: RetrievalParams,
        ks: Iterable[int] = (1, 3, 5, 10),
        generate: bool = False,
        corpus: set[str] | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> dict:
        """Audit every case; returns the report dict (see docs/audit-report.md for its schema)."""
        ks = sorted(set(ks))
        t0 = time.perf_counter()
        indexed = set(self.store.index_state(collection))
        cut = params.top_k
        deep = replace(params, top_k=params.candidates)
        cases = []
        for case in golden.cases:
            cases.append(self._case(case, collection, deep, cut, ks, generate, indexed, corpus))
            if progress:
                progress(1)
        report = {
            "schema_version": SCHEMA_VERSION,
            "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "collection": collection,
            "settings": {
                "ks": ks,
                "cut": cut,
                "generate": generate,
                "mode": params.mode,
                "fusion": params.fusion,
                "rrf_k": params.rrf_k,
                "weights": params.weights,
                "candidates": params.candidates,
                "rerank": params.rerank,
                "generator": self.answerer.generator.name if generate else None,
                "faithfulness_scorer": self.scorer.name if (generate and self.scorer) else None,
                "judge": self.judge.name if (generate and self.judge) else None,
            },
            "golden": {"cases": len(golden.cases), "stubs_skipped": golden.stubs},
            "cases": cases,
            "seconds": 0.0,
        }
        report.update(summarize(cases, ks))
        report["seconds"] = round(time.perf_counter() - t0, 2)
        return report

    def _case(self, case: Case, collection, params, cut, ks, generate, indexed, corpus) -> dict:
        result = self.answerer.retriever.retrieve(collection, case.question, params)
        ranking = dedupe([c.doc_id for c in result.contexts])
        shown = result.contexts[:cut]
        cut_docs = {c.doc_id for c in shown}
        rel = case.relevance
        out: dict = {
            "id": case.id,
            "question": case.question,
            "tags": list(case.tags),
            "expected": [{k: v for k, v in asdict(e).items() if v is not None} for e in case.expected],
            "retrieved": [
                {
                    "rank": c.rank,
                    "doc_id": c.doc_id,
                    "chunk_id": c.chunk_id,
                    "title": c.title,
                    "start": c.start,
                    "end": c.end,
                    "expected": c.doc_id in rel,
                    "stages": {n: asdict(h) for n, h in c.stages.items()},
                }
                for c in shown
            ],
            "metrics": case_metrics(ranking, rel, ks) if rel else {},
            "span": self._spans(case, result.contexts, ks),
            "lost": [where_lost(d, result, params, cut_docs, indexed, corpus) for d in rel if d not in cut_docs],
            "timings_ms": result.timings_ms,
        }
        gen = None
        if generate:
            gen = self._generation(case, shown)
            out["generation"] = gen
        out["verdict"], out["verdict_detail"] = verdict(case, out["lost"], cut_docs, gen)
        return out

    @staticmethod
    def _spans(case: Case, contexts: list[Context], ks) -> dict:
        """Span-level recall@k: the share of expected quotes/spans inside the first k chunks."""
        anchored = [e for e in case.expected if e.quote or e.span]
        if not anchored:
            return {}

        def covered(e, ctxs) -> bool:
            for c in ctxs:
                if c.doc_id != e.doc_id:
                    continue
                if e.quote and _norm(e.quote) in _norm(c.text):
                    return True
                if e.span and c.start < e.span[1] and e.span[0] < c.end:
                    return True
            return False

        return {f"span_recall@{k}": sum(covered(e, contexts[:k]) for e in anchored) / len(anchored) for k in ks}

    def _generation(self, case: Case, shown: list[Context]) -> dict:
        g = self.answerer.generate(case.question, shown)
        out = {
            "generator": g.generator,
            "answer": g.answer,
            "declined": g.declined,
            "error": g.error,
            "cited": [c.number for c in g.citations],
            "invalid_citations": g.invalid_citations,
            "cited_docs": sorted({c.doc_id for c in g.citations}),
        }
        if g.answer and not g.declined and not g.error and self.scorer and shown:
            scored = self.scorer.score_answer(g.answer, [c.text for c in shown])
            out["faithfulness"] = scored["faithfulness"]
            out["claims"] = [asdict(c) for c in scored["claims"]]
        if self.judge is not None:
            answer = None if (g.error or g.declined) else g.answer
            out["judge"] = self.judge.judge(case.question, answer, [c.text for c in shown], case.answer)
        if case.answer and g.answer and not g.error:
            plain = " ".join(split_claims(g.answer)) or g.answer
            f1 = token_f1(plain, case.answer)
            cos = None
            if self.scorer:
                v = self.scorer.embedder.encode([plain, case.answer])
                cos = float(v[0] @ v[1])
            out["correctness"] = {
                "token_f1": round(f1, 4),
                "cosine": round(cos, 4) if cos is not None else None,
                "correct": f1 >= CORRECT_F1 or (cos is not None and cos >= CORRECT_COSINE),
            }
        return out


def verdict(case: Case, lost: list[dict], cut_docs: set[str], gen: dict | None) -> tuple[str, str]:
    """(verdict, detail) for one case: retrieval is judged first, generation only on good retrieval."""
    rel = case.relevance
    if rel:
        if all(item["stage"] == "not_in_corpus" for item in lost) and len(lost) == len(rel):
            return "not_in_corpus", ", ".join(sorted(rel)) + " not in the corpus"
        if not (set(rel) & cut_docs):
            return "retrieval_miss", "/".join(sorted({item["stage"] for item in lost}))
    if gen is None:
        return "retrieved", (
            "an expected source is in the contexts"
            if rel
            else "no expected sources (unanswerable case); run with --generate to judge the answer"
        )
    if gen.get("error"):
        return "generation_error", gen["error"]["code"]
    if not rel:  # the corpus cannot answer this one
        if gen["declined"]:
            return "correctly_declined", "declined a question the corpus cannot answer"
        return "should_have_declined", "answered a question the golden set marks as unanswerable"
    if gen["declined"]:
        return "retrieved_but_not_used", "declined although an expected source was in the contexts"
    unsupported = [c["claim"] for c in gen.get("claims", []) if not c["supported"]]
    if unsupported:
        return (
            "unsupported_claims",
            f"{len(unsupported)} claim(s) not supported by the contexts: {unsupported[0][:120]}",
        )
    if not set(gen["cited_docs"]) & set(rel):
        return "retrieved_but_not_used", "the answer cites no expected source"
    corr = gen.get("correctness")
    if corr and not corr["correct"]:
        return "wrong_answer", f"grounded, but far from the reference answer (token F1 {corr['token_f1']})"
    return "answered_well", "cites an expected source; every claim supported"


def summarize(cases: list[dict], ks: list[int]) -> dict:
    """Overall metrics with bootstrap 95% intervals, the where-lost breakdown, verdicts, and the lever."""

    def stat(vals: list[float]) -> dict:
        lo, hi = bootstrap_ci(vals)
        return {"mean": round(mean(vals), 4), "ci95": [round(lo, 4), round(hi, 4)], "n": len(vals)}

    # Unanswerable cases have no metrics: take the names from the first case that has them.
    names = next((list(c["metrics"]) for c in cases if c["metrics"]), [])
    overall = {name: stat([c["metrics"][name] for c in cases if c["metrics"]]) for name in names}
    span_names = sorted({k for c in cases for k in c["span"]}, key=lambda n: int(n.split("@")[1]))
    for name in span_names:
        overall[name] = stat([c["span"][name] for c in cases if c["span"]])
    faith = [c["generation"]["faithfulness"] for c in cases if c.get("generation", {}).get("faithfulness") is not None]
    unmeasured = [c["id"] for c in cases if "generation" in c and c["generation"].get("faithfulness") is None]
    if faith:
        overall["faithfulness"] = {**stat(faith), "unmeasured": len(unmeasured)}
    judged: dict[str, list[float]] = {}
    judge_unmeasured: dict[str, list[dict]] = {}
    for c in cases:
        for metric, res in c.get("generation", {}).get("judge", {}).items():
            if "value" in res:
                judged.setdefault(metric, []).append(res["value"])
            else:
                judge_unmeasured.setdefault(metric, []).append({"id": c["id"], "reason": res["unmeasured"]})
    for metric in sorted(set(judged) | set(judge_unmeasured)):
        vals = judged.get(metric, [])
        base = stat(vals) if vals else {"mean": None, "ci95": None, "n": 0}
        overall[f"judge_{metric}"] = {**base, "unmeasured": len(judge_unmeasured.get(metric, []))}
    lost_counts = {s: 0 for s in LOST_STAGES}
    for c in cases:
        for item in c["lost"]:
            lost_counts[item["stage"]] += 1
    verdicts: dict[str, int] = {}
    for c in cases:
        verdicts[c["verdict"]] = verdicts.get(c["verdict"], 0) + 1
    failures = {v: n for v, n in verdicts.items() if v not in GOOD}
    summary = {
        "dominant_failure": None,
        "lever": None,
        "text": f"{sum(n for v, n in verdicts.items() if v in GOOD)} of {len(cases)} cases fine.",
    }
    if failures:
        ranked = sorted(failures.items(), key=lambda x: -x[1])
        n_bad = sum(failures.values())

        def lever_key(v: str) -> str:
            if v != "retrieval_miss":
                return v
            misses = {st: n for st, n in lost_counts.items() if n}
            return max(misses, key=misses.get) if misses else "not_in_any_candidates"

        if len(ranked) > 1 and ranked[0][1] == ranked[1][1]:
            tied = [v for v, n in ranked if n == ranked[0][1]]
            summary = {
                "dominant_failure": None,
                "lever": "; ".join(LEVERS[lever_key(v)] for v in tied),
                "text": f"{n_bad} of {len(cases)} cases failed, no single dominant failure ("
                + ", ".join(f"{v.replace('_', ' ')}: {n}" for v, n in ranked)
                + ").",
            }
        else:
            dominant, count = ranked[0]
            key = lever_key(dominant)
            summary = {
                "dominant_failure": dominant if dominant != "retrieval_miss" else f"retrieval_miss ({key})",
                "lever": LEVERS[key],
                "text": f"{n_bad} of {len(cases)} cases failed; the commonest failure ({count}) is "
                f"{dominant.replace('_', ' ')}"
                + (f", mostly {key.replace('_', ' ')}" if key != dominant else "")
                + f". Lever: {LEVERS[key]}.",
            }
        if len(cases) < 50:
            summary["text"] += (
                f" With {len(cases)} cases, differences under ~{round(100 / len(cases) ** 0.5)} points are noise."
            )
    return {
        "overall": overall,
        "where_lost": lost_counts,
        "verdicts": verdicts,
        "unmeasured": unmeasured,
        "judge_unmeasured": judge_unmeasured,
        "summary": summary,
    }
