"""The attribution rules, as pure functions over plain data: where an expected source was lost, the verdict
of a case, and the dominant failure of an audit with its lever. No model, no store: every branch is
tested on hand-built inputs (tests/diagnostics/test_attribution.py).

Where it was lost. `where_lost` walks RULES in pipeline order (label, index, candidates, fusion, rerank, cut)
and the first rule that explains the loss names the stage. "Inside the cut" means the document's best chunk
ranked within the first `cut` chunks (the API's top_k) of that stage's list. When the golden set anchors the
document with a quote or span, the ranks are those of the chunk holding it (the audit computes them so), so a
document whose answering chunk no retriever returned is a candidates miss, not fusion's. The "reach" of the
stage after fusion is the cut, or the reranker's window (`rerank_candidates`) when reranking: what fusion put
inside the window, the reranker owns.

- `stale_label`: the golden set's quote or span is not in the document's stored text (the label went stale,
  or was never right): a golden-set failure, never a retrieval one.
- `failed_to_ingest`: not in the index, and an ingest record says its file failed (with the parse reason).
- `not_in_index`: not in the index, but the corpus listing has it (re-run ingest).
- `not_in_corpus`: not in the index, and not in the corpus listing. Without a listing or ingest records the
  audit cannot tell a corpus gap from an index gap (or a misspelt id): it says `not_in_corpus` and marks the
  item uncertain.
- `needed_history` (a conversation's turn, the rewrite stage before retrieval): the question was searched as
  asked, without the conversation, and joined to the previous user turn it would have been inside the cut.
- `rewrite_lost_subject`: the rewritten question missed it, and the question as asked (or joined to the
  conversation that carries its subject) had it inside the cut (the reason names the words the rewrite dropped).
- `not_in_<mode>_candidates` (single-retriever modes) / `not_in_any_candidates` (hybrid): no retriever
  returned its (answering) chunk among the candidates.
- `dropped_by_fusion`: a retriever had it inside the reach and the fused list did not.
- `dropped_by_reranker`: fusion put it inside the reranker's window and the reranker left it outside the cut.
- `below_cut`: it was retrieved, but no stage had it inside the reach.
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
    "stale_label",
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
    window: int | None = None  # fused chunks the reranker reorders (rerank_candidates); required with rerank

    def __post_init__(self) -> None:
        if self.rerank and not self.window:
            raise ValueError("a reranking pipeline needs its window (rerank_candidates)")

    @property
    def reach(self) -> int:
        """How deep in the fused list a chunk may still reach the generator: the reranker's window, else the cut."""
        return max(self.window, self.cut) if self.rerank else self.cut


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
    stale_label: str | None = None  # why the label points at nothing in the stored document (with the closest text)
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


def rule_label(ev: Evidence, p: Pipeline) -> dict | None:
    if ev.indexed and ev.stale_label:
        return {"stage": "stale_label", "reason": ev.stale_label}
    return None


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
    asked = "joined to the conversation" if ev.extra.get("other_query") else "as asked"
    reason = f"the rewritten question {rw['query'][:200]!r} missed it; the question {asked} had it inside the cut"
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
    had = [r for r in ("sparse", "dense") if _inside(ev.ranks.get(r), p.reach)]
    if had and not _inside(ev.ranks.get("fused"), p.reach):
        fused = ev.ranks.get("fused")
        where = f"fused rank {fused.chunk}" if _present(fused) else "not in the fused list"
        inside = f"inside the reranker's window ({p.reach})" if p.rerank else "inside the cut"
        return {"stage": "dropped_by_fusion", "reason": f"{' and '.join(had)} had it {inside}; {where}"}
    return None


def rule_reranker(ev: Evidence, p: Pipeline) -> dict | None:
    if not p.rerank:
        return None
    before = ev.ranks.get("fused" if p.mode == "hybrid" else p.mode)
    if _inside(before, p.reach) and not _inside(ev.ranks.get("rerank"), p.cut):
        after = ev.ranks.get("rerank")
        return {
            "stage": "dropped_by_reranker",
            "reason": f"rank {before.chunk} before the reranker (inside its window of {p.reach}), "
            + (f"{after.chunk} after (the cut is {p.cut})" if _present(after) else "absent after"),
        }
    return None


def rule_below_cut(ev: Evidence, p: Pipeline) -> dict | None:
    return {"stage": "below_cut"}


RULES: list[Rule] = [
    rule_label,
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
