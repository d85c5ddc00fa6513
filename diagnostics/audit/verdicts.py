"""The verdict of a case and the dominant failure of an audit, as pure functions over plain data (the
where_lost items of diagnostics/audit/attribution.py and the generation record of the audit run). Every
branch is tested on hand-built inputs (tests/diagnostics/test_attribution.py, test_verdicts.py).

Retrieval is judged first; generation only when an expected source reached the generator with its passage.
A label that points at nothing (`stale_label`) is the golden set's failure (`bad_label`), never retrieval's.
On the generator's side:
- `answered_well` only when the answer covers the reference answer; with no reference, `grounded`
  (every claim supported, an expected source used, correctness not measured).
- `retrieved_but_not_used` when the expected passage was shown and the answer neither cites it nor has a
  sentence it supports (or the answer declined with it in hand).
- `wrong_answer` / `unsupported_claims` / `retrieved_but_not_used` are decided with the faithfulness judge:
  under a judge whose measured agreement with human labels does not show it can tell entailment (`trusted`
  false), the verdict is kept and marked uncertain, naming the judge's agreement. A good verdict is not marked
  for the judge alone; its correctness check adds what it doubts (polarity, hedges, numbers).
"""

from __future__ import annotations

from diagnostics.audit.attribution import LOST_STAGES
from diagnostics.audit.levers import LEVERS, Config, lever

# `grounded`: not a failure, but correctness was not measured (no reference answer); counted apart in the text.
GOOD = {"answered_well", "correctly_declined", "retrieved", "grounded"}
# Verdicts that are not failures of the service, but of the golden set: they need a label, not a fix.
TO_LABEL = {"unlabelled_source", "bad_label"}
VERDICTS = (
    "answered_well",
    "grounded",
    "retrieved",
    "correctly_declined",
    "retrieval_miss",
    "not_in_corpus",
    "retrieved_but_not_used",
    "unsupported_claims",
    "wrong_answer",
    "should_have_declined",
    "unlabelled_source",
    "bad_label",
    "generation_error",
    "internal_error",
)


def _v(verdict: str, detail: str, uncertain: list[str] | None = None) -> dict:
    return {"verdict": verdict, "detail": detail, "uncertain": list(dict.fromkeys(uncertain or []))}


def _judge_doubt(gen: dict) -> list[str]:
    """The uncertainty a judge that cannot tell entailment adds to the verdicts it decides."""
    judge = gen.get("judge_card") or {}
    if not judge or judge.get("trusted"):
        return []
    measured = judge.get("agreement_text") or "whose agreement with human labels was never measured"
    return [
        f"decided by the judge {judge.get('name')}, {measured}: it cannot reliably tell a contradiction, a wrong "
        "number or a paraphrase; read the answer"
    ]


def verdict(
    expected: dict[str, int],
    lost: list[dict],
    satisfied: set[str],
    gen: dict | None,
    passages_shown: dict[str, list[int]] | None = None,
) -> dict:
    """{"verdict", "detail", "uncertain": [reasons]} for one case.

    `expected`: {doc_id: grade} (empty: the corpus cannot answer); `lost`: where_lost items; `satisfied`:
    expected documents inside the cut with their passage; `gen`: the generation record (None in
    retrieval-only audits) with `error`, `declined`, `claims` (each with `supported`, `doc_id`, maybe
    `uncertain`), `cited_docs`, maybe `correctness` ({"correct", "coverage", ...}) and `judge_card`
    ({"name", "trusted", "agreement_text"}); `passages_shown`: {doc_id: context numbers} of the expected
    documents whose quote/span the generator saw.
    """
    uncertain = sorted({item["uncertain"] for item in lost if item.get("uncertain")})
    if expected:
        stale = [item for item in lost if item["stage"] == "stale_label"]
        if stale and not satisfied:
            return _v("bad_label", "; ".join(f"{i['doc_id']}: {i.get('reason', '')}" for i in stale)[:600], uncertain)
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
    doubt = _judge_doubt(gen)
    if gen.get("judge_unsupported") is not None:  # an LLM judge decided (answer-level faithfulness)
        unsupported = gen["judge_unsupported"]
        doubt = []
    if not expected:  # the corpus cannot answer this one
        if gen["declined"]:
            return _v("correctly_declined", "declined a question the corpus cannot answer", uncertain)
        if claims and not unsupported:
            uncertain.append(
                "every claim of the answer is supported by the retrieved sources: if they answer the question, "
                "the golden set should list them"
            )
        return _v("should_have_declined", "answered a question the golden set marks as unanswerable", uncertain)
    shown = {d: n for d, n in (passages_shown or {}).items() if d in satisfied}
    if gen["declined"]:
        where = "; ".join(f"{d} was context [{']['.join(map(str, n))}]" for d, n in shown.items())
        return _v(
            "retrieved_but_not_used",
            "declined although an expected source was in the contexts" + (f" ({where})" if where else ""),
            uncertain,
        )
    if unsupported:
        first = unsupported[0]["claim"] if isinstance(unsupported[0], dict) else str(unsupported[0])
        return _v(
            "unsupported_claims",
            f"{len(unsupported)} claim(s) not supported by the contexts: {first[:120]}",
            uncertain + doubt,
        )
    corr = gen.get("correctness")
    used = (set(gen.get("cited_docs") or []) | {c.get("doc_id") for c in claims if c.get("supported")}) & set(expected)
    # Passage level: the contexts the answer cites or draws a supported sentence from.
    drawn = set(gen.get("cited") or []) | {c.get("source") for c in claims if c.get("supported") and c.get("source")}
    passage_unused = bool(shown) and not any(set(n) & drawn for n in shown.values())
    if passage_unused and not (corr is not None and corr["correct"]):
        # the golden set names the passage, the generator had it, and the answer did not draw on it
        where = "; ".join(f"{d} (context [{']['.join(map(str, n))}])" for d, n in shown.items())
        drew = ", ".join(f"[{n}]" for n in sorted(drawn)) or "no context"
        others = sorted({c.get("doc_id") for c in claims if c.get("doc_id")} | set(gen.get("cited_docs") or []))
        drew += f" from {', '.join(others)}" if others else ""
        return _v(
            "retrieved_but_not_used",
            f"the expected passage of {where} was shown; the answer neither cites it nor has a sentence it "
            f"supports (it draws on {drew})",
            uncertain + doubt,
        )
    if not used:
        others = sorted({c.get("doc_id") for c in claims if c.get("doc_id")} | set(gen.get("cited_docs") or []))
        if corr is not None and not corr["correct"]:
            return _v(
                "retrieved_but_not_used",
                f"answers from {', '.join(others) or 'other sources'}, not the expected source, and misses the "
                "reference",
                uncertain + doubt,
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
    if corr is None:  # the judge's doubt is not added to a good verdict: only to the failures it decides
        return _v(
            "grounded",
            "uses an expected source, every claim supported; correctness not measured (no reference answer)",
            uncertain,
        )
    uncertain += corr.get("uncertain", [])
    if not corr["correct"]:
        missing = corr.get("missing_facts") or []
        detail = f"grounded, but covers {corr['covered']} of {corr['reference_claims']} reference claim(s)"
        if missing:
            detail += "; the answer never states: " + ", ".join(missing[:5])
        return _v("wrong_answer", detail, uncertain + doubt)
    return _v("answered_well", "uses an expected source, every claim supported, covers the reference", uncertain)


# ---------------------------------------------------------------------------------------------------- summary


def lever_stage(cases: list[dict]) -> dict[str, int]:
    """Where sources were lost, counted over the retrieval misses only (a source lost in a case that failed
    for another reason, or in a good case, does not outvote the real misses)."""
    counts: dict[str, int] = {}
    for c in cases:
        if c["verdict"] != "retrieval_miss":
            continue
        for item in c["lost"]:
            counts[item["stage"]] = counts.get(item["stage"], 0) + 1
    return counts


def dominant(cases: list[dict], config: Config | None = None) -> dict:
    """{"dominant_failure", "lever", "text", "uncertain_cases"} from the failing cases only; the lever names
    only knobs `config` (what ran) has."""
    verdicts: dict[str, int] = {}
    for c in cases:
        verdicts[c["verdict"]] = verdicts.get(c["verdict"], 0) + 1
    failures = {v: n for v, n in verdicts.items() if v not in GOOD and v not in TO_LABEL}
    n_good = sum(n for v, n in verdicts.items() if v in GOOD)
    to_label = sum(n for v, n in verdicts.items() if v in TO_LABEL)
    n_uncertain = sum(1 for c in cases if c.get("uncertain"))
    stages = lever_stage(cases)
    tail = ""
    if verdicts.get("grounded"):
        tail += (
            f" {verdicts['grounded']} of the fine case(s) are grounded only: no reference answer, so correctness "
            "was not measured."
        )
    if to_label:
        kinds = ", ".join(f"{v}: {verdicts[v]}" for v in sorted(TO_LABEL) if verdicts.get(v))
        tail += f" {to_label} case(s) need a label or a golden-set fix, not a service fix ({kinds})."
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
        if to_label and not n_good:
            summary["lever"] = lever("bad_label" if verdicts.get("bad_label") else "unlabelled_source", config)
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
            lever="; ".join(dict.fromkeys(lever(key(v), config) for v in tied)),
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
            lever=lever(k, config),
            text=f"{n_bad} of {len(cases)} cases failed; the commonest failure ({count}) is {top.replace('_', ' ')}"
            + (f", mostly {k.replace('_', ' ')}" if k != top else "")
            + f". Lever: {lever(k, config)}."
            + tail,
        )
    if len(cases) < 50:
        noise = round(100 / len(cases) ** 0.5)
        summary["text"] += f" With {len(cases)} cases, differences under ~{noise} points are noise."
    return summary


def case_lever(case: dict, config: Config | None = None) -> str | None:
    """The lever of one case: its verdict's, or for a retrieval miss, its first lost stage's."""
    v = case["verdict"]
    if v in GOOD:
        return None
    if v == "retrieval_miss":
        stages = sorted({i["stage"] for i in case["lost"]}, key=LOST_STAGES.index)
        return lever(stages[0], config) if stages else None
    return lever(v, config) if v in LEVERS else None
