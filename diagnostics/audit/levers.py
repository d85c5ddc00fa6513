"""The lever of each failure: what to change, named only with knobs the configuration that ran has.

`LEVERS` is the generic text of each lost stage and verdict (what the failure means). `lever(key, config)`
fits it to what ran: the generator kind (the extractive generator has no prompt: its levers are its decline
threshold or an LLM), whether a reranker is configured and on ("add a reranker" only when none is), the
retrieval mode and the fusion in force (RRF's k and weights exist only under RRF). A pure function: tested
on hand-built configurations (tests/diagnostics/test_levers.py).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Config:
    """What the audited pipeline ran, as far as levers care (the report's `settings`)."""

    mode: str = "hybrid"
    fusion: str = "dbsf"
    cut: int = 5
    rerank: bool = False  # the reranker ran
    reranker: bool = False  # a reranker is configured (rerank_model), whether or not it ran
    window: int | None = None  # rerank_candidates, when it ran
    generator: str | None = None  # "extractive" | "llm" | None (retrieval only)

    @classmethod
    def from_settings(cls, s: dict) -> "Config":
        """From a report's `settings` (older reports lack some keys: the generic defaults stand in)."""
        gen = s.get("generator")
        return cls(
            mode=s.get("mode") or "hybrid",
            fusion=s.get("fusion") or "dbsf",
            cut=s.get("cut") or 5,
            rerank=bool(s.get("rerank")),
            reranker=bool(s.get("reranker_configured", s.get("reranker"))),
            window=s.get("rerank_candidates"),
            generator=None if gen is None else ("extractive" if gen == "extractive" else "llm"),
        )


LEVERS = {
    "stale_label": (
        "fix the label: the golden set's quote or span is not in the document's stored text (the document changed, "
        "or the label was never right); the closest passage is shown"
    ),
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
        "fix the rewrite: the rewritten question lost the subject and missed a source that the question as asked, "
        "or joined to the conversation, found (the condense prompt, or RAG_REWRITE_DENSE_MARGIN for the offline join)"
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
        "fix fusion: a retriever had the source within reach and fusion ranked it out; tune the fusion method, "
        "RRF k and weights"
    ),
    "dropped_by_reranker": (
        "fix the reranker: it had the right source in its window and left it outside the cut; try another model"
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
    "bad_label": "fix the golden set: its labels point at text the documents do not hold (see the closest passages)",
    "generation_error": "fix the LLM endpoint: generation failed",
    "internal_error": "fix the service: our own code failed while building the prompt or reading the answer",
}

CONFIGURE_LLM = "configure an LLM (RAG_LLM_BASE_URL and RAG_LLM_MODEL, any OpenAI-compatible server)"


def _ranking_knobs(c: Config) -> str:
    """What can move a retrieved source into the cut, in this configuration."""
    knobs = [f"raise top_k (now {c.cut})"]
    if c.rerank:
        knobs.append(f"rerank a wider window (rerank_candidates, now {c.window})" if c.window else "rerank more")
        knobs.append("try another reranker model (RAG_RERANK_MODEL)")
    elif c.reranker:
        knobs.append("turn the configured reranker on (rerank: true, or RAG_RERANK=true)")
    else:
        knobs.append("add a reranker (RAG_RERANK_MODEL, a local CrossEncoder; none is configured)")
    return ", ".join(knobs[:-1]) + " or " + knobs[-1]


def _fusion_knobs(c: Config) -> str:
    if c.fusion == "rrf":
        return "tune RRF: rrf_k and rrf_weights (sparse, dense) toward the retriever that found it"
    return (
        f"fusion is {c.fusion}, which has no weights: try fusion = rrf with rrf_weights toward the retriever "
        "that found it"
    )


def lever(key: str, config: Config | None = None) -> str:
    """The lever for a lost stage or a verdict, naming only knobs `config` has (generic text without one)."""
    if config is None or key not in LEVERS:
        return LEVERS.get(key, "")
    c = config
    if key == "below_cut":
        return f"fix ranking: the source is retrieved, but no stage ranks it inside the cut; {_ranking_knobs(c)}"
    if key == "wrong_passage":
        tail = "a reranker on" if c.reranker and not c.rerank else ("" if c.rerank else "a reranker")
        # Measured by intervention (benchmarks/lever_interventions.py): top_k up brought the passage in 25% of
        # the time, smaller chunks 2%: lead with what works.
        return (
            "fix passage ranking: the right document reached the generator, but not the passage that holds the "
            f"answer; raise top_k (now {c.cut}) so more chunks of a document reach it"
            + (f", or {tail}" if tail else "")
            + "; smaller chunks (RAG_CHUNK_MAX_TOKENS) rarely help"
        )
    if key == "dropped_by_fusion":
        return f"fix fusion: a retriever had the source within reach and fusion ranked it out; {_fusion_knobs(c)}"
    if key == "dropped_by_reranker":
        return (
            "fix the reranker: it had the right source in its window and left it outside the cut; try another "
            "model (RAG_RERANK_MODEL) or compare with rerank off"
        )
    if key in ("not_in_sparse_candidates", "not_in_dense_candidates") and c.mode == "hybrid":
        return LEVERS["not_in_any_candidates"]
    if c.generator == "extractive":
        if key == "retrieved_but_not_used":
            return (
                "the extractive generator (no prompt) picked other sentences or declined: it ranks sentences by "
                f"similarity to the question and cannot rephrase; {CONFIGURE_LLM}"
            )
        if key == "unsupported_claims":
            return (
                "the extractive generator quotes the sources verbatim, so an unsupported claim is more likely the "
                "judge's error than a hallucination: read the case; a judge trained on your corpus "
                "(`rag judge train`) is more reliable"
            )
        if key == "should_have_declined":
            return (
                "the extractive generator answers whenever a sentence resembles the question: raise its decline "
                f"threshold (RAG_EXTRACTIVE_MIN_SCORE), or {CONFIGURE_LLM}"
            )
        if key == "wrong_answer":
            return (
                "check the golden answer; the extractive generator quotes sentences and cannot compose the "
                f"reference's facts: {CONFIGURE_LLM}"
            )
    return LEVERS[key]
