"""The audit: every golden question through the service's own retrieval and generation code, scored
case by case, with where each lost source was lost and a verdict that pins the failure on retrieval or
generation.

Definitions. Retrieval fetches `params.candidates` fused chunks (the API's own settings); documents rank
by their best chunk. Metrics at k are over that document ranking. The generator sees the first `cut`
chunks (the API's top_k), and "where lost" explains every expected document absent from those chunks.

Over ~300 lines on purpose: one case's path (rewrite, retrieval, label checks, evidence per expected source,
generation, judging) reads top to bottom here; the rules it feeds are pure modules beside it.
"""

from __future__ import annotations

import re
import time
import uuid
from dataclasses import asdict, replace
from typing import Callable, Iterable

from core import tracing
from core.store import Store
from diagnostics.audit.attribution import LOST_STAGES, Evidence, Pipeline, StageRank, where_lost
from diagnostics.audit.correctness import correctness, token_f1
from diagnostics.audit.golden import Case, Expected, GoldenSet
from diagnostics.audit.ingest_records import failed_files, failure_for
from diagnostics.audit.labels import doc_chunks, duplicate_sources, holding, similar_id, stale_reason
from diagnostics.audit.levers import LEVERS, Config
from diagnostics.audit.summary import summarize
from diagnostics.audit.verdicts import GOOD, case_lever, verdict
from diagnostics.judges.base import TRUSTED_BALANCED_ACCURACY, Judge, judge_card
from diagnostics.metrics import DEFAULT_KS, case_metrics, dedupe
from engine.answer import Answerer, Generation
from engine.params import RetrievalParams
from engine.retrieval import Context, StageList
from engine.rewrite import Rewrite, join_previous

__all__ = ["GOOD", "LEVERS", "LOST_STAGES", "Auditor", "summarize", "token_f1", "verdict", "where_lost"]

SCHEMA_VERSION = 1


def _tokens(text: str) -> list[str]:
    return re.findall(r"\w+", text.lower())


def _norm(text: str) -> str:
    return " ".join(text.lower().split())


def _anchor_covered(e: Expected, ctxs: list[Context]) -> tuple[bool, bool]:
    """(covered, partly): is the expected quote or span inside these chunks? A quote counts when it is in
    one chunk or in the joined text of the document's chunks (a quote across a chunk boundary); a span when
    the chunks' union covers it (partly: they overlap it without covering it)."""
    mine = sorted((c for c in ctxs if c.doc_id == e.doc_id), key=lambda c: c.start)
    if not mine:
        return False, False
    if e.quote:
        q = _norm(e.quote)
        if any(q in _norm(c.text) for c in mine) or q in _norm(" ".join(c.text for c in mine)):
            return True, False
        return False, False
    lo, hi = e.span
    pos, overlap = lo, False
    for c in mine:
        if c.start < hi and lo < c.end:
            overlap = True
        if c.start <= pos < c.end:
            pos = c.end
    return pos >= hi, overlap and pos < hi


def _stage_ranks(doc_id: str, stages: dict[str, StageList], chunks: set[str] | None = None) -> dict[str, StageRank]:
    """The document's rank in each stage, and the rank of its best chunk, or, with `chunks` (the chunks holding
    the golden quote/span), of the best of those: the passage that answers, not the document's best match."""
    out = {}
    for name, stage in stages.items():
        docs = dedupe([d for _, d, _ in stage.hits])
        chunk = next(
            (
                i
                for i, (cid, d, _) in enumerate(stage.hits, 1)
                if d == doc_id and (chunks is None or str(cid) in chunks)
            ),
            None,
        )
        out[name] = StageRank(docs.index(doc_id) + 1 if doc_id in docs else None, chunk)
    return out


class Auditor:
    def __init__(self, answerer: Answerer, store: Store, scorer: Judge | None = None, judge=None):
        """`scorer`: the faithfulness judge (diagnostics/judges/factory.py: claims, faithfulness, correctness);
        `judge`: an optional RagasJudge for LLM-judged metrics, whose faithfulness then decides `unsupported_claims`."""
        self.answerer, self.store, self.scorer, self.judge = answerer, store, scorer, judge

    def run(
        self,
        golden: GoldenSet,
        collection: str,
        params: RetrievalParams,
        ks: Iterable[int] = DEFAULT_KS,
        generate: bool = False,
        corpus: set[str] | None = None,
        progress: Callable[[int], None] | None = None,
        ingest_records: list[dict] | None = None,
    ) -> dict:
        """Audit every case; returns the report dict (schema in the README).

        `corpus`: the document ids the collection was built from (tells not_in_corpus from not_in_index);
        `ingest_records`: ingest reports or job records (`rag ingest --json`, `GET /v1/jobs/{id}`), whose
        failed files explain documents missing from the index (failed_to_ingest, with the reason).
        """
        ks = sorted(set(ks))
        t0 = time.perf_counter()
        ctx = {
            "indexed": set(self.store.index_state(collection)),
            "corpus": corpus,
            "failures": failed_files(ingest_records or []),
            "pipeline": Pipeline(
                params.mode, params.top_k, params.rerank, params.rerank_candidates if params.rerank else None
            ),
        }
        config = Config(
            mode=params.mode,
            fusion=params.fusion,
            cut=params.top_k,
            rerank=params.rerank,
            reranker=self.answerer.retriever.reranker is not None,
            window=params.rerank_candidates if params.rerank else None,
            generator=(
                None if not generate else "extractive" if self.answerer.generator.name == "extractive" else "llm"
            ),
        )
        cases = []
        session = uuid.uuid4().hex  # the audit's cases, one trace each, grouped as a session in Phoenix/Langfuse
        for case in golden.cases:
            with tracing.span("audit.case", tracing.CHAIN) as sp:
                c = self._case(case, collection, params, ks, generate, ctx)
                if sp.recording:
                    sp.set({"session.id": session, tracing.INPUT: case.question, tracing.OUTPUT: c["verdict"]})
                    sp.set({"rag.case_id": case.id, "rag.collection": collection, "rag.verdict": c["verdict"]})
                    sp.set({"metadata": {"metrics": c["metrics"], "lost": [x["stage"] for x in c["lost"]]}})
            c["lever"] = case_lever(c, config)
            cases.append(c)
            if progress:
                progress(1)
        decided_by = None
        if generate:
            decided_by = self._decider(collection)
        report = {
            "schema_version": SCHEMA_VERSION,
            "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "collection": collection,
            "settings": {
                "ks": ks,
                "cut": params.top_k,
                "generate": generate,
                "mode": params.mode,
                "fusion": params.fusion,
                "rrf_k": params.rrf_k,
                "weights": params.weights,
                "candidates": params.candidates,
                "rerank": params.rerank,
                "rerank_candidates": params.rerank_candidates if params.rerank else None,
                "reranker": getattr(self.answerer.retriever.reranker, "name", None) if params.rerank else None,
                "reranker_configured": self.answerer.retriever.reranker is not None,
                "generator": self.answerer.generator.name if generate else None,
                "faithfulness_scorer": self.scorer.name if (generate and self.scorer) else None,
                "judge": self.judge.name if (generate and self.judge) else None,
                "unsupported_claims_decided_by": decided_by,
                "corpus_listing": corpus is not None,
                "ingest_records": len(ingest_records or []),
            },
            "golden": {"cases": len(golden.cases), "stubs_skipped": golden.stubs},
            "cases": cases,
            "seconds": 0.0,
        }
        report.update(summarize(cases, ks, config))
        if decided_by:
            report["summary"]["text"] += f" Unsupported claims decided by {decided_by['text']}."
        report["seconds"] = round(time.perf_counter() - t0, 2)
        return report

    def _decider(self, collection: str) -> dict | None:
        """Which judge decides unsupported_claims, its measured agreement with human labels, whether that shows it
        can tell entailment (`trusted`), and, when it cannot, the one command that builds a judge for this corpus."""
        if self.judge is not None:
            return {
                "judge": self.judge.name,
                "agreement": None,
                "trusted": False,
                "text": f"the configured judge {self.judge.name} (its agreement with human labels is not measured "
                "here; cases it could not score fall back to the offline judge)",
            }
        if self.scorer is None:
            return None
        agreement = getattr(self.scorer, "agreement", None)
        card = judge_card(self.scorer.name, agreement)
        text = f"the judge {self.scorer.name}"
        if agreement:
            text += (
                " ("
                + "; ".join(
                    f"{name}: balanced accuracy {a.get('balanced_accuracy')}, ROC AUC {a.get('roc_auc')}"
                    for name, a in agreement.items()
                )
                + ")"
            )
        else:
            text += " (agreement with human labels never measured: see benchmarks/faithfulness_agreement.py)"
        if not card["trusted"]:
            text += (
                f"; below {TRUSTED_BALANCED_ACCURACY} balanced accuracy it cannot reliably tell a contradiction, so "
                "its wrong_answer and unsupported_claims verdicts are marked uncertain. A judge trained on this "
                f"corpus: `rag judge train -c {collection}`, then RAG_FAITHFULNESS_JUDGE=model"
            )
        return {"judge": self.scorer.name, "agreement": agreement, "trusted": card["trusted"], "text": text}

    def _retrieve(self, case: Case, collection: str, params: RetrievalParams):
        """(what the generator sees, the stage lists, the deep chunk ranking for metrics, timings).

        Without rerank, one call with top_k = candidates: its first top_k chunks are exactly the service's.
        With rerank, the service's own call (the reranker reorders the same window, rerank_candidates, as in
        the service), plus a deep call without rerank for the metrics: the ranking is the reranked window,
        then the rest of the fused list."""
        retriever = self.answerer.retriever
        deep = retriever.retrieve(collection, case.question, replace(params, top_k=params.candidates, rerank=False))
        if not params.rerank:
            return deep.contexts[: params.top_k], deep.stages, deep.contexts, deep.timings_ms
        served = retriever.retrieve(collection, case.question, params)
        stages = {**deep.stages, **served.stages}
        by_id = {c.chunk_id: c for c in deep.contexts}
        window = [cid for cid, _, _ in served.stages["rerank"].hits]
        ranking = [by_id[c] for c in window if c in by_id] + [c for c in deep.contexts if c.chunk_id not in window]
        return served.contexts, stages, ranking, served.timings_ms

    def _rewrite_evidence(
        self, case: Case, rw: Rewrite | None, collection, params: RetrievalParams, cut_docs: set[str]
    ) -> dict[str, dict]:
        """The rewrite stage's evidence per expected document missed ({} without history or misses): whether
        the other way of asking (joined to the previous user turn when the question was searched as asked;
        the question as asked when it was rewritten) had it inside the cut, and the question's words the
        rewrite dropped."""
        missed = [d for d in case.relevance if d not in cut_docs]
        if rw is None or not missed:
            return {}
        joined = join_previous(case.question, case.history)[0]
        # The other ways of asking: searched as asked -> joined to the conversation; rewritten -> the question as
        # asked, then joined to the conversation (a subject carried in the history that the rewrite dropped).
        others = [joined] if rw.standalone else [case.question, joined]
        info = {"standalone": rw.standalone, "query": rw.query, "method": rw.method}
        tried = [o for o in dict.fromkeys(others) if o != rw.query]
        if not tried:
            return {}
        found_by: dict[str, str] = {}
        for other in tried:
            hits = {c.doc_id for c in self.answerer.retriever.retrieve(collection, other, params).contexts}
            found_by.update({d: other for d in missed if d in hits and d not in found_by})
            if len(found_by) == len(missed):
                break
        kept = set(_tokens(rw.query))
        out = {}
        for d in missed:
            other = found_by.get(d)
            lost_words = []
            if other is not None and not rw.standalone:
                lost_words = list(dict.fromkeys(w for w in _tokens(other) if w not in kept and len(w) > 2))
                lost_words = [w for w in lost_words if w in set(_tokens(case.question)) | self._subject(case)]
            out[d] = {"rewrite": info, "other_in_cut": other is not None, "lost_words": lost_words}
            if other is not None and other != case.question:
                out[d]["other_query"] = other
        return out

    def _subject(self, case: Case) -> set[str]:
        """Content words of the conversation's user turns (where a dropped subject comes from)."""
        return {w for turn in case.history if turn.role == "user" for w in _tokens(turn.text) if len(w) > 3}

    def _case(self, case: Case, collection, params: RetrievalParams, ks, generate, ctx) -> dict:
        # A turn of a conversation: the service's rewrite stage decides what is searched (and answered).
        rw = self.answerer.rewrite(collection, case.question, case.history, params) if case.history else None
        searched = replace(case, question=rw.query) if rw else case
        shown, stages, ranking_ctx, timings = self._retrieve(searched, collection, params)
        ranking = dedupe([c.doc_id for c in ranking_ctx])
        cut_docs = {c.doc_id for c in shown}
        rel = case.relevance
        extra = self._rewrite_evidence(case, rw, collection, params, cut_docs)
        lost, satisfied = [], set()
        shown_passages: dict[str, list[int]] = {}
        for note in duplicate_sources(case.expected):
            lost.append({"doc_id": None, "stage": None, "uncertain": f"golden set: {note}; the highest grade counts"})
        for doc_id in rel:
            indexed = doc_id in ctx["indexed"]
            anchors = [e for e in case.expected if e.doc_id == doc_id and (e.quote or e.span)]
            stale_label, holders = None, None
            if anchors and indexed:  # the label checked against the stored document, not trusted
                chunks = doc_chunks(self.store, collection, doc_id)
                reasons = [stale_reason(e, chunks) for e in anchors]
                live = [e for e, r in zip(anchors, reasons) if r is None]
                if not live:
                    stale_label = "; ".join(r for r in reasons if r)
                elif len(live) < len(anchors):
                    note = (
                        f"{doc_id}: {len(anchors) - len(live)} of {len(anchors)} quotes/spans are not in the document"
                    )
                    lost.append({"doc_id": doc_id, "stage": None, "uncertain": note})
                anchors = live
                holders = set().union(*(holding(e, chunks) for e in live)) if live else None
            covered = [_anchor_covered(e, shown) for e in anchors]
            passage_rank = None
            if anchors and not any(c for c, _ in covered):
                passage_rank = next(
                    (i for i, c in enumerate(ranking_ctx, 1) if any(_anchor_covered(e, [c])[0] for e in anchors)),
                    None,
                )
            ev = Evidence(
                doc_id=doc_id,
                ranks=_stage_ranks(doc_id, stages, holders),
                in_cut=doc_id in cut_docs,
                indexed=indexed,
                in_corpus=None if ctx["corpus"] is None else doc_id in ctx["corpus"],
                ingest_failure=failure_for(doc_id, ctx["failures"]),
                anchored=bool(anchors),
                anchor_covered=not anchors or any(c for c, _ in covered),
                anchor_partial=any(p for _, p in covered),
                passage_rank=passage_rank,
                stale_label=stale_label,
                extra=extra.get(doc_id, {}),
            )
            item = where_lost(ev, ctx["pipeline"])
            if item is None:
                satisfied.add(doc_id)
                if anchors:
                    shown_passages[doc_id] = [
                        i
                        for i, c in enumerate(shown, 1)
                        if c.doc_id == doc_id and (holders is None or str(c.chunk_id) in holders)
                    ] or [i for i, c in enumerate(shown, 1) if c.doc_id == doc_id]
                if ev.anchor_partial and not all(c for c, _ in covered):
                    item_note = f"{doc_id}: an expected span is only partly inside the chunks shown"
                    lost.append({"doc_id": doc_id, "stage": None, "uncertain": item_note})
            else:
                if item["stage"] == "not_in_corpus" and item.get("uncertain"):
                    near = similar_id(doc_id, ctx["indexed"])
                    if near:
                        item["uncertain"] += f"; the index holds a similar id, {near!r}: a misspelt label?"
                lost.append(item)
        notes = [x for x in lost if x["stage"] is None]
        lost = [x for x in lost if x["stage"] is not None]
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
            "span": self._spans(case, ranking_ctx, ks),
            "lost": lost,
            "timings_ms": timings,
        }
        if rw is not None:
            out["rewrite"] = asdict(rw)
        gen = None
        if generate:
            gen = self._generation(searched, shown)
            out["timings_ms"] = {**timings, **gen.pop("timings_ms", {})}  # every stage, generation and judge too
            out["generation"] = gen
        v = verdict(rel, lost, satisfied, gen, shown_passages)
        out["verdict"], out["verdict_detail"] = v["verdict"], v["detail"]
        out["uncertain"] = v["uncertain"] + [x["uncertain"] for x in notes]
        return out

    @staticmethod
    def _spans(case: Case, contexts: list[Context], ks) -> dict:
        """Span-level recall@k: the share of expected quotes/spans inside the first k chunks."""
        anchored = [e for e in case.expected if e.quote or e.span]
        if not anchored:
            return {}
        return {
            f"span_recall@{k}": sum(_anchor_covered(e, contexts[:k])[0] for e in anchored) / len(anchored) for k in ks
        }

    def _generation(self, case: Case, shown: list[Context]) -> dict:
        t0 = time.perf_counter()
        try:
            g = self.answerer.generate(case.question, shown)
        except Exception as exc:  # our own code (prompt building, citation parsing), not the endpoint
            g = Generation(
                self.answerer.generator.name,
                error={"code": "internal_error", "message": f"{type(exc).__name__}: {str(exc)[:300]}"},
            )
        t1 = time.perf_counter()
        gen_ms = round((t1 - t0) * 1000, 3)
        out = {
            "generator": g.generator,
            "answer": g.answer,
            "declined": g.declined,
            "error": g.error,
            "cited": [c.number for c in g.citations],
            "invalid_citations": g.invalid_citations,
            "cited_docs": sorted({c.doc_id for c in g.citations}),
        }
        scorer = self.scorer
        margin = getattr(scorer, "margin", 0.05)
        if g.answer and not g.declined and not g.error and scorer and shown:
            with tracing.span("judge", tracing.EVALUATOR) as sp:
                scored = scorer.score_answer(g.answer, [c.text for c in shown])
                if sp.recording:
                    sp.set({tracing.INPUT: g.answer, tracing.OUTPUT: scored["faithfulness"], "rag.judge": scorer.name})
                    claims = [{"claim": c.claim, "supported": c.supported, "score": c.score} for c in scored["claims"]]
                    sp.set({"rag.faithfulness": scored["faithfulness"], "metadata": {"claims": claims}})
            out["faithfulness"] = scored["faithfulness"]
            out["claims"] = [
                {
                    **asdict(c),
                    "doc_id": shown[c.source - 1].doc_id if c.source else None,
                    "uncertain": abs(c.score - scorer.threshold) < margin,
                }
                for c in scored["claims"]
            ]
        if self.judge is not None:
            answer = None if (g.error or g.declined) else g.answer
            with tracing.span("judge", tracing.EVALUATOR) as sp:
                out["judge"] = self.judge.judge(case.question, answer, [c.text for c in shown], case.answer)
                if sp.recording:
                    sp.set({tracing.INPUT: answer, tracing.OUTPUT: out["judge"], "rag.judge": self.judge.name})
            faith = out["judge"].get("faithfulness", {})
            if "value" in faith:
                v = faith["value"]
                out["judge_unsupported"] = (
                    [] if v >= 1.0 else [{"claim": f"{self.judge.name} judged the answer {v:.2f} faithful"}]
                )
        if case.answer and g.answer and not g.error and not g.declined and scorer:
            out["correctness"] = correctness(scorer, g.answer, case.answer, margin)
        if scorer is not None:
            out["judge_card"] = judge_card(scorer.name, getattr(scorer, "agreement", None))
        out["timings_ms"] = {"generation": gen_ms, "judge": round((time.perf_counter() - t1) * 1000, 3)}
        return out
