"""The attribution rules, as pure functions over plain data: where an expected source was lost, the verdict
of a case, and the dominant failure of an audit with its lever. No model, no store: every branch is
tested on hand-built inputs (tests/diagnostics/test_attribution.py).

Where it was lost. `where_lost` walks RULES in pipeline order (index, candidates, fusion, rerank, cut) and
the first rule that explains the loss names the stage. "Inside the cut" means the document's best chunk
ranked within the first `cut` chunks (the API's top_k) of that stage's list.

- `failed_to_ingest`: not in the index, and an ingest record says its file failed (with the parse reason).
- `not_in_index`: not in the index, but the corpus listing has it (re-run ingest).
- `not_in_corpus`: not in the index, and not in the corpus listing. Without a listing or ingest records the
  audit cannot tell a corpus gap from an index gap: it says `not_in_corpus` and marks the item uncertain.
- `needed_history` (a conversation's turn, the rewrite stage before retrieval): the question was searched as
  asked, without the conversation, and joined to the previous user turn it would have been inside the cut.
- `rewrite_lost_subject`: the rewritten question missed it, and the question as asked had it inside the cut
  (the reason names the question's words the rewrite dropped).
- `not_in_<mode>_candidates` (single-retriever modes) / `not_in_any_candidates` (hybrid): no retriever
  returned any of its chunks among the candidates.
- `dropped_by_fusion`: a retriever had it inside the cut and the fused list did not.
- `dropped_by_reranker`: the list the reranker reordered had it inside the cut, and the reranker moved it
  out. The reranker reorders the same window as the service (`rerank_candidates`).
- `below_cut`: it was retrieved, but no stage had it inside the cut.
- `wrong_passage`: the document is inside the cut, but none of the chunks the generator saw holds the
  expected quote or span (right document, wrong passage: a chunking/passage-ranking failure).

Extending: a stage that runs before retrieval (e.g. a conversation rewrite; a miss the standalone question
would have found = `needed_history`) is one more rule function inserted into RULES before
`rule_candidates`, reading what it needs from `Evidence.extra`, plus its entry in LOST_STAGES and LEVERS.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterable

LOST_STAGES = (
    "not_in_corpus",
    "failed_to_ingest",
    "not_in_index",
    "needed_history",
    "rewrite_lost_subject",
    "not_in_sparse_candidates",
    "not_in_dense_candidates",
    "not_in_any_candidates",
    "dropped_by_fusion",
    "dropped_by_reranker",
    "below_cut",
    "wrong_passage",
)
GOOD = {"answered_well", "correctly_declined", "retrieved"}
# Verdicts that are not failures of the service, but of the golden set: they need a label, not a fix.
TO_LABEL = {"unlabelled_source"}
VERDICTS = (
    "answered_well",
    "retrieved",
    "correctly_declined",
    "retrieval_miss",
    "not_in_corpus",
    "retrieved_but_not_used",
    "unsupported_claims",
    "wrong_answer",
    "should_have_declined",
    "unlabelled_source",
    "generation_error",
    "internal_error",
)

LEVERS = {
    "not_in_corpus": (
        "fix the corpus: the expected documents are not in it (a corpus gap, or a golden set naming the wrong ids)"
    ),
    "failed_to_ingest": "fix ingest: the documents' files failed to parse (see the reasons); repair them and re-ingest",
    "not_in_index": "re-run ingest: the documents exist but are not in the index",
    "needed_history": (
        "fix the rewrite: these questions do not stand alone and were searched without the conversation "
        "(engine/rewrite.py: RAG_REWRITE, rewrite_standalone_terms, rewrite_dense_margin, or an LLM rewrite)"
    ),
    "rewrite_lost_subject": (
        "fix the rewrite: the rewritten question lost the question's subject and missed a source the question "
        "as asked found (the condense prompt, or RAG_REWRITE_DENSE_MARGIN for the offline join)"
    ),
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
        "fix fusion: a retriever had the source inside the cut and fusion ranked it out; tune the fusion method, "
        "RRF k and weights"
    ),
    "dropped_by_reranker": (
        "fix the reranker: it moved the right source from inside the cut to outside it; try another model"
    ),
    "below_cut": (
        "fix ranking: the source is retrieved, but no stage ranks it inside the cut; raise top_k or add (or "
        "improve) a reranker"
    ),
    "wrong_passage": (
        "fix chunking or passage ranking: the right document reached the generator, but not the passage that "
        "holds the answer; try smaller chunks, more chunks per document, or a reranker"
    ),
    "retrieved_but_not_used": "fix the prompt: the right source reached the generator and it did not use it",
    "unsupported_claims": (
        "fix the prompt (stay within the sources, cite every claim); if this persists across many cases, it "
        "is behaviour, not knowledge: consider fine-tuning the generator"
    ),
    "should_have_declined": (
        "fix the prompt: the generator answers questions the corpus cannot answer; make declining explicit"
    ),
    "wrong_answer": (
        "check the golden answers and the prompt: the answer is grounded but does not state the reference's facts"
    ),
    "unlabelled_source": (
        "label the golden set: the answer is supported by retrieved documents the golden set does not list "
        "(export them with `rag golden stubs`)"
    ),
    "generation_error": "fix the LLM endpoint: generation failed",
    "internal_error": "fix the service: our own code failed while building the prompt or reading the answer",
}

NOT_INDEXED_UNCERTAIN = (
    "no corpus listing (--corpus) or ingest record names this document: it may be missing from the corpus or "
    "only from the index"
)


@dataclass(frozen=True)
class StageRank:
    """An expected document's position in one stage: its rank among the stage's documents, and the rank of
    its best chunk among the stage's chunks (both from 1; None = absent from the stage's list)."""

    doc: int | None
    chunk: int | None


@dataclass(frozen=True)
class Pipeline:
    """What the audited retrieval ran."""

    mode: str  # hybrid | dense | sparse
    cut: int  # chunks the generator sees (top_k)
    rerank: bool = False


@dataclass
class Evidence:
    """Everything known about one expected document of one case."""

    doc_id: str
    ranks: dict[str, StageRank]  # by stage: sparse, dense, fused, rerank (only the stages that ran)
    in_cut: bool  # one of its chunks is among those the generator saw
    indexed: bool
    in_corpus: bool | None = None  # None: no corpus listing given
    ingest_failure: str | None = None  # the parse reason when an ingest record says its file failed
    anchored: bool = False  # the golden set gives quotes/spans for this document
    anchor_covered: bool = True  # ... and one of them is inside the chunks the generator saw
    anchor_partial: bool = False  # a span only partly inside them
    passage_rank: int | None = None  # rank of the best chunk holding the anchor, in the whole ranking
    extra: dict = field(default_factory=dict)  # for stages added later (e.g. a conversation rewrite)


Rule = Callable[[Evidence, Pipeline], "dict | None"]


def _inside(rank: StageRank | None, cut: int) -> bool:
    return rank is not None and rank.chunk is not None and rank.chunk <= cut


def _present(rank: StageRank | None) -> bool:
    return rank is not None and rank.chunk is not None


def rule_in_cut(ev: Evidence, p: Pipeline) -> dict | None:
    if not ev.in_cut:
        return None
    if ev.anchored and not ev.anchor_covered:
        where = f"the chunk holding it ranked {ev.passage_rank}" if ev.passage_rank else "no retrieved chunk holds it"
        return {"stage": "wrong_passage", "reason": f"the expected quote/span is not in the chunks shown; {where}"}
    return {"stage": None}


def rule_index(ev: Evidence, p: Pipeline) -> dict | None:
    if ev.indexed:
        return None
    if ev.ingest_failure is not None:
        return {"stage": "failed_to_ingest", "reason": ev.ingest_failure}
    if ev.in_corpus is True:
        return {"stage": "not_in_index"}
    if ev.in_corpus is False:
        return {"stage": "not_in_corpus"}
    return {"stage": "not_in_corpus", "uncertain": NOT_INDEXED_UNCERTAIN}


def rule_rewrite(ev: Evidence, p: Pipeline) -> dict | None:
    """The conversation rewrite (a stage before retrieval). `ev.extra`: "rewrite" ({"standalone", "query",
    "method"}) for a case with history, "other_in_cut" (the other way of asking, joined to the previous user
    turn when searched as asked, the question as asked when rewritten, had it inside the cut), "lost_words"."""
    rw = ev.extra.get("rewrite")
    if not rw or ev.extra.get("other_in_cut") is not True:
        return None
    if rw["standalone"]:
        return {
            "stage": "needed_history",
            "reason": f"searched as asked ({rw['method']}); joined to the previous user turn it was inside the cut",
        }
    reason = f"the rewritten question {rw['query'][:200]!r} missed it; the question as asked had it inside the cut"
    if ev.extra.get("lost_words"):
        reason += "; the rewrite dropped: " + ", ".join(ev.extra["lost_words"])
    return {"stage": "rewrite_lost_subject", "reason": reason}


def rule_candidates(ev: Evidence, p: Pipeline) -> dict | None:
    retrievers = ("sparse", "dense") if p.mode == "hybrid" else (p.mode,)
    if any(_present(ev.ranks.get(r)) for r in retrievers):
        return None
    return {"stage": "not_in_any_candidates" if p.mode == "hybrid" else f"not_in_{p.mode}_candidates"}


def rule_fusion(ev: Evidence, p: Pipeline) -> dict | None:
    if p.mode != "hybrid":
        return None
    had = [r for r in ("sparse", "dense") if _inside(ev.ranks.get(r), p.cut)]
    if had and not _inside(ev.ranks.get("fused"), p.cut):
        fused = ev.ranks.get("fused")
        where = f"fused rank {fused.chunk}" if _present(fused) else "not in the fused list"
        return {"stage": "dropped_by_fusion", "reason": f"{' and '.join(had)} had it inside the cut; {where}"}
    return None


def rule_reranker(ev: Evidence, p: Pipeline) -> dict | None:
    if not p.rerank:
        return None
    before = ev.ranks.get("fused" if p.mode == "hybrid" else p.mode)
    if _inside(before, p.cut) and not _inside(ev.ranks.get("rerank"), p.cut):
        after = ev.ranks.get("rerank")
        return {
            "stage": "dropped_by_reranker",
            "reason": f"rank {before.chunk} before the reranker, "
            + (f"{after.chunk} after" if _present(after) else "absent after"),
        }
    return None


def rule_below_cut(ev: Evidence, p: Pipeline) -> dict | None:
    return {"stage": "below_cut"}


RULES: list[Rule] = [
    rule_in_cut,
    rule_index,
    rule_rewrite,
    rule_candidates,
    rule_fusion,
    rule_reranker,
    rule_below_cut,
]


def where_lost(ev: Evidence, p: Pipeline, rules: Iterable[Rule] | None = None) -> dict | None:
    """The stage that lost the document, or None when it reached the generator with its passage:
    {"doc_id", "stage", "ranks": {stage: doc rank}, "chunk_ranks": {stage: chunk rank}, and maybe
    "reason" and "uncertain"}."""
    for rule in RULES if rules is None else rules:
        found = rule(ev, p)
        if found is not None:
            if found["stage"] is None:
                return None
            out = {
                "doc_id": ev.doc_id,
                "stage": found["stage"],
                "ranks": {n: r.doc for n, r in ev.ranks.items()},
                "chunk_ranks": {n: r.chunk for n, r in ev.ranks.items()},
            }
            for key in ("reason", "uncertain"):
                if found.get(key):
                    out[key] = found[key]
            return out
    raise AssertionError("the last rule always matches")  # pragma: no cover


# ---------------------------------------------------------------------------------------------------- verdict


def _v(verdict: str, detail: str, uncertain: list[str] | None = None) -> dict:
    return {"verdict": verdict, "detail": detail, "uncertain": list(uncertain or [])}


def verdict(expected: dict[str, int], lost: list[dict], satisfied: set[str], gen: dict | None) -> dict:
    """{"verdict", "detail", "uncertain": [reasons]} for one case. Retrieval is judged first, generation only
    when an expected source reached the generator with its passage.

    `expected`: {doc_id: grade} (empty: the corpus cannot answer); `lost`: where_lost items; `satisfied`:
    expected documents inside the cut with their passage; `gen`: the generation record (None in
    retrieval-only audits) with `error`, `declined`, `claims` (each with `supported`, `doc_id`, maybe
    `uncertain`), `cited_docs`, and maybe `correctness` ({"correct", "coverage", ...}).
    """
    uncertain = sorted({item["uncertain"] for item in lost if item.get("uncertain")})
    if expected:
        if len(lost) == len(expected) and all(item["stage"] == "not_in_corpus" for item in lost):
            return _v("not_in_corpus", ", ".join(sorted(expected)) + " not in the corpus", uncertain)
        if not satisfied:
            stages = sorted({item["stage"] for item in lost}, key=LOST_STAGES.index)
            return _v("retrieval_miss", "/".join(stages), uncertain)
    if gen is None:
        detail = (
            "an expected source is in the contexts"
            if expected
            else "no expected sources (unanswerable case); run with --generate to judge the answer"
        )
        return _v("retrieved", detail, uncertain)
    error = gen.get("error")
    if error:
        if error.get("code") == "internal_error":
            return _v("internal_error", error.get("message", "internal error"), uncertain)
        return _v("generation_error", error["code"], uncertain)
    claims = gen.get("claims") or []
    unsupported = [c for c in claims if not c["supported"]]
    uncertain += [f"claim near the judge's threshold: {c['claim'][:100]}" for c in claims if c.get("uncertain")]
    if gen.get("judge_unsupported") is not None:  # an LLM judge decided (answer-level faithfulness)
        unsupported = gen["judge_unsupported"]
    if not expected:  # the corpus cannot answer this one
        if gen["declined"]:
            return _v("correctly_declined", "declined a question the corpus cannot answer", uncertain)
        if claims and not unsupported:
            uncertain.append(
                "every claim of the answer is supported by the retrieved sources: if they answer the question, "
                "the golden set should list them"
            )
        return _v("should_have_declined", "answered a question the golden set marks as unanswerable", uncertain)
    if gen["declined"]:
        return _v("retrieved_but_not_used", "declined although an expected source was in the contexts", uncertain)
    if unsupported:
        first = unsupported[0]["claim"] if isinstance(unsupported[0], dict) else str(unsupported[0])
        return _v(
            "unsupported_claims",
            f"{len(unsupported)} claim(s) not supported by the contexts: {first[:120]}",
            uncertain,
        )
    corr = gen.get("correctness")
    used = (set(gen.get("cited_docs") or []) | {c.get("doc_id") for c in claims if c.get("supported")}) & set(expected)
    if not used:
        others = sorted({c.get("doc_id") for c in claims if c.get("doc_id")} | set(gen.get("cited_docs") or []))
        if corr is not None and not corr["correct"]:
            return _v(
                "retrieved_but_not_used",
                f"answers from {', '.join(others) or 'other sources'}, not the expected source, and misses the "
                "reference",
                uncertain,
            )
        if claims:
            if corr is None:
                uncertain.append(
                    "no reference answer: cannot tell a missing label from an ignored source; label the case"
                )
            return _v(
                "unlabelled_source",
                f"every claim is supported by {', '.join(others) or 'retrieved sources'}, which the golden set "
                "does not list",
                uncertain,
            )
        return _v("retrieved_but_not_used", "the answer cites no expected source", uncertain)
    if corr is not None:
        uncertain += corr.get("uncertain", [])
        if not corr["correct"]:
            return _v(
                "wrong_answer",
                f"grounded, but covers {corr['covered']} of {corr['reference_claims']} reference claim(s)",
                uncertain,
            )
    return _v("answered_well", "uses an expected source; every claim supported", uncertain)


# ---------------------------------------------------------------------------------------------------- summary


def lever_stage(cases: list[dict]) -> dict[str, int]:
    """Where sources were lost, counted over the failing cases only (a good case's lost extra source does
    not outvote the real miss)."""
    counts: dict[str, int] = {}
    for c in cases:
        if c["verdict"] in GOOD or c["verdict"] in TO_LABEL:
            continue
        for item in c["lost"]:
            counts[item["stage"]] = counts.get(item["stage"], 0) + 1
    return counts


def dominant(cases: list[dict]) -> dict:
    """{"dominant_failure", "lever", "text", "uncertain_cases"} from the failing cases only."""
    verdicts: dict[str, int] = {}
    for c in cases:
        verdicts[c["verdict"]] = verdicts.get(c["verdict"], 0) + 1
    failures = {v: n for v, n in verdicts.items() if v not in GOOD and v not in TO_LABEL}
    n_good = sum(n for v, n in verdicts.items() if v in GOOD)
    to_label = sum(n for v, n in verdicts.items() if v in TO_LABEL)
    n_uncertain = sum(1 for c in cases if c.get("uncertain"))
    stages = lever_stage(cases)
    tail = ""
    if to_label:
        tail += f" {to_label} case(s) need a label (unlabelled_source)."
    if n_uncertain:
        tail += f" {n_uncertain} case(s) carry an uncertain attribution (see `uncertain`)."
    summary = {
        "dominant_failure": None,
        "lever": None,
        "text": f"{n_good} of {len(cases)} cases fine." + tail,
        "where_lost_in_failures": stages,
        "uncertain_cases": n_uncertain,
    }
    if not failures:
        return summary

    def key(v: str) -> str:
        if v != "retrieval_miss":
            return v
        return max(stages, key=lambda s: (stages[s], -LOST_STAGES.index(s))) if stages else "not_in_any_candidates"

    ranked = sorted(failures.items(), key=lambda x: (-x[1], x[0]))
    n_bad = sum(failures.values())
    if len(ranked) > 1 and ranked[0][1] == ranked[1][1]:
        tied = [v for v, n in ranked if n == ranked[0][1]]
        summary.update(
            lever="; ".join(dict.fromkeys(LEVERS[key(v)] for v in tied)),
            text=f"{n_bad} of {len(cases)} cases failed, no single dominant failure ("
            + ", ".join(f"{v.replace('_', ' ')}: {n}" for v, n in ranked)
            + ")."
            + tail,
        )
    else:
        top, count = ranked[0]
        k = key(top)
        summary.update(
            dominant_failure=top if top != "retrieval_miss" else f"retrieval_miss ({k})",
            lever=LEVERS[k],
            text=f"{n_bad} of {len(cases)} cases failed; the commonest failure ({count}) is {top.replace('_', ' ')}"
            + (f", mostly {k.replace('_', ' ')}" if k != top else "")
            + f". Lever: {LEVERS[k]}."
            + tail,
        )
    if len(cases) < 50:
        noise = round(100 / len(cases) ** 0.5)
        summary["text"] += f" With {len(cases)} cases, differences under ~{noise} points are noise."
    return summary
