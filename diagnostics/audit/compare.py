"""Compare an audit with a baseline audit: paired per-case deltas with bootstrap intervals, and the cases
whose verdict flipped. A small golden set is usually inconclusive, and the labels say so.

Settings are compared first (`differences`). Verdicts compare only between audits that judged alike (both
generating, with the same judge): a retrieval-only audit against a generating one would show
"wrong_answer -> retrieved fixed", which says nothing. Metrics compare over the paired cases; a different
golden set (its hash) is named, since the pairing then rests on case ids alone."""

from __future__ import annotations

import hashlib
import json

from diagnostics.audit.verdicts import GOOD
from diagnostics.metrics import paired_bootstrap

# Settings whose difference is worth naming; those in VERDICT_SETTINGS make verdicts incomparable.
COMPARED_SETTINGS = ("generate", "faithfulness_scorer", "judge", "ks", "mode", "fusion", "cut", "rerank", "generator")
VERDICT_SETTINGS = ("generate", "faithfulness_scorer", "judge")


def golden_hash(report: dict) -> str:
    """A short hash of the golden set a report ran on (case ids, questions, expected sources)."""
    cases = [[c.get("id"), c.get("question"), c.get("expected")] for c in report.get("cases", [])]
    return hashlib.sha256(json.dumps(cases, sort_keys=True, default=str).encode()).hexdigest()[:12]


def differences(current: dict, baseline: dict) -> list[dict]:
    """[{"setting", "current", "baseline"}] for the settings that differ, and the golden set if it does."""
    a, b = current.get("settings", {}), baseline.get("settings", {})
    out = [{"setting": k, "current": a.get(k), "baseline": b.get(k)} for k in COMPARED_SETTINGS if a.get(k) != b.get(k)]
    ga, gb = golden_hash(current), golden_hash(baseline)
    if ga != gb:
        out.append({"setting": "golden_set", "current": ga, "baseline": gb})
    return out


def compare(current: dict, baseline: dict) -> dict:
    diffs = differences(current, baseline)
    verdicts_comparable = not any(d["setting"] in VERDICT_SETTINGS for d in diffs)
    base = {c["id"]: c for c in baseline["cases"]}
    paired = [(c, base[c["id"]]) for c in current["cases"] if c["id"] in base]
    metrics = {}
    for name in current.get("overall", {}):
        pairs = [
            (c["metrics"].get(name, c["span"].get(name)), b["metrics"].get(name, b["span"].get(name)))
            for c, b in paired
        ]
        pairs = [(x, y) for x, y in pairs if x is not None and y is not None]
        if name.startswith("judge_"):
            continue  # judged metrics are compared by their means in the reports, not paired here
        if name == "faithfulness":
            pairs = [
                (c["generation"]["faithfulness"], b["generation"]["faithfulness"])
                for c, b in paired
                if c.get("generation", {}).get("faithfulness") is not None
                and b.get("generation", {}).get("faithfulness") is not None
            ]
        if pairs:
            result = paired_bootstrap([x for x, _ in pairs], [y for _, y in pairs])
            metrics[name] = {
                "current": round(sum(x for x, _ in pairs) / len(pairs), 4),
                "baseline": round(sum(y for _, y in pairs) / len(pairs), 4),
                "delta": round(result["delta"], 4),
                "ci95": [round(v, 4) for v in result["ci95"]],
                "label": result["label"],
                "n": len(pairs),
            }
    flipped = [
        {
            "id": c["id"],
            "baseline": b["verdict"],
            "current": c["verdict"],
            "direction": "fixed"
            if c["verdict"] in GOOD and b["verdict"] not in GOOD
            else "broken"
            if c["verdict"] not in GOOD and b["verdict"] in GOOD
            else "changed",
        }
        for c, b in paired
        if c["verdict"] != b["verdict"]
    ]
    if not verdicts_comparable:
        flipped = []  # verdicts judged differently do not compare
    no_change = bool(paired) and not flipped and all(m["delta"] == 0 for m in metrics.values())
    judged = [d for d in diffs if d["setting"] in VERDICT_SETTINGS]
    why = ", ".join(f"{d['setting']} {d['current']} vs {d['baseline']}" for d in judged)
    return {
        "differences": diffs,
        "verdicts_comparable": verdicts_comparable,
        "not_comparable": None if verdicts_comparable else f"verdicts not compared: {why}",
        "no_change": no_change,
        "baseline_created_at": baseline.get("created_at"),
        "paired_cases": len(paired),
        "only_in_current": sorted({c["id"] for c in current["cases"]} - set(base)),
        "only_in_baseline": sorted(set(base) - {c["id"] for c in current["cases"]}),
        "metrics": metrics,
        "flipped": flipped,
    }
