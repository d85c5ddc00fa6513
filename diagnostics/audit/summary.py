"""An audit's overall figures from its cases: metrics with bootstrap 95% intervals, faithfulness and reference
coverage (unmeasured cases counted, never averaged as NaN), ragas' judged metrics, where sources were lost, the
verdict counts, and the summary with its lever (diagnostics/audit/verdicts.py)."""

from __future__ import annotations

from diagnostics.audit.attribution import LOST_STAGES
from diagnostics.audit.levers import Config
from diagnostics.audit.verdicts import dominant
from diagnostics.metrics import bootstrap_ci, mean


def summarize(cases: list[dict], ks: list[int], config: Config | None = None) -> dict:
    """Overall metrics with bootstrap 95% intervals, the where-lost breakdown, verdicts, and the lever (from
    the failing cases only)."""

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
    coverage = [c["generation"]["correctness"]["coverage"] for c in cases if c.get("generation", {}).get("correctness")]
    if coverage:
        overall["reference_coverage"] = stat(coverage)
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
            lost_counts[item["stage"]] = lost_counts.get(item["stage"], 0) + 1
    verdicts: dict[str, int] = {}
    for c in cases:
        verdicts[c["verdict"]] = verdicts.get(c["verdict"], 0) + 1
    return {
        "overall": overall,
        "where_lost": lost_counts,
        "verdicts": verdicts,
        "unmeasured": unmeasured,
        "judge_unmeasured": judge_unmeasured,
        "summary": dominant(cases, config),
    }
