"""Compare an audit with a baseline audit: paired per-case deltas with bootstrap intervals, and the cases
whose verdict flipped. A small golden set is usually inconclusive, and the labels say so."""

from __future__ import annotations

from diagnostics.audit.run import GOOD
from diagnostics.metrics import paired_bootstrap


def compare(current: dict, baseline: dict) -> dict:
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
    return {
        "baseline_created_at": baseline.get("created_at"),
        "paired_cases": len(paired),
        "only_in_current": sorted({c["id"] for c in current["cases"]} - set(base)),
        "only_in_baseline": sorted(set(base) - {c["id"] for c in current["cases"]}),
        "metrics": metrics,
        "flipped": flipped,
    }
