"""What an experiment concludes: each variant compared with the first by a paired bootstrap per metric
(diagnostics.audit.compare), a winner per metric only when the intervals say so (else "inconclusive"), the
cases whose verdict flipped; and the comparison as Markdown and files (experiment.json, experiment.md)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Sequence

from diagnostics.audit.compare import compare
from diagnostics.audit.run import GOOD
from diagnostics.metrics import paired_bootstrap

DEFAULT_TABLE_METRICS = ("ndcg@10", "recall@10", "mrr", "hit@5", "faithfulness", "judge_faithfulness")


def case_values(report: dict, metric: str) -> dict[str, float]:
    """Case id -> value of a metric ("ndcg@10", "span_recall@5", "faithfulness", "judge_faithfulness")."""
    out = {}
    for c in report["cases"]:
        gen = c.get("generation") or {}
        if metric == "faithfulness":
            v = gen.get("faithfulness")
        elif metric.startswith("judge_"):
            v = (gen.get("judge") or {}).get(metric[len("judge_") :], {}).get("value")
        else:
            v = c["metrics"].get(metric, c["span"].get(metric))
        if v is not None:
            out[c["id"]] = float(v)
    return out


def paired(current: dict, baseline: dict, metric: str) -> dict | None:
    """Paired bootstrap of a metric over the cases both reports measured; None when none are shared."""
    a, b = case_values(current, metric), case_values(baseline, metric)
    ids = [i for i in a if i in b]
    if not ids:
        return None
    r = paired_bootstrap([a[i] for i in ids], [b[i] for i in ids])
    return {
        "current": round(sum(a[i] for i in ids) / len(ids), 4),
        "baseline": round(sum(b[i] for i in ids) / len(ids), 4),
        "delta": round(r["delta"], 4),
        "ci95": [round(x, 4) for x in r["ci95"]],
        "label": r["label"],
        "n": len(ids),
    }


def winner(metric: str, names: list[str], reports: list[dict], comparisons: dict[str, dict]) -> dict:
    """The winner of one metric, or None with the reason ("inconclusive").

    A challenger wins when its paired interval against the baseline (the first variant) is above 0 and, if
    several are, when it also beats the runner-up by a paired interval above 0. The baseline wins when every
    challenger is significantly worse. Anything else is inconclusive: the cases cannot tell them apart.
    """
    base, others = names[0], names[1:]
    labels = {n: (comparisons[n].get(metric) or {}).get("label") for n in others}
    improved = sorted((n for n in others if labels[n] == "improved"), key=lambda n: -comparisons[n][metric]["delta"])
    if improved:
        best = improved[0]
        if len(improved) > 1:
            second = improved[1]
            vs = paired(reports[names.index(best)], reports[names.index(second)], metric)
            if vs is None or vs["label"] != "improved":
                return {
                    "winner": None,
                    "verdict": "inconclusive",
                    "reason": f"{best} and {second} both beat {base}, but not each other",
                }
        return {"winner": best, "verdict": "winner", "reason": f"beats {base} (paired 95% interval above 0)"}
    if others and all(labels[n] == "regressed" for n in others):
        return {"winner": base, "verdict": "winner", "reason": "every other variant is significantly worse"}
    measured = [n for n in others if labels[n] is not None]
    if not measured:
        return {"winner": None, "verdict": "unmeasured", "reason": "no paired cases measure this metric"}
    return {"winner": None, "verdict": "inconclusive", "reason": "no paired 95% interval excludes 0"}


def analyse(reports: list[dict]) -> dict:
    """Compare each report with the first: metrics, winners per metric, verdicts, flipped cases."""
    names = [r["variant"]["name"] for r in reports]
    base = reports[0]
    comparisons: dict[str, dict] = {}
    flipped: dict[str, list[dict]] = {}
    questions = {c["id"]: c["question"] for c in base["cases"]}
    for name, rep in zip(names[1:], reports[1:]):
        comp = compare(rep, base)
        metrics = dict(comp["metrics"])
        for metric in rep.get("overall", {}):
            if metric.startswith("judge_") and metric in base.get("overall", {}):
                if (pb := paired(rep, base, metric)) is not None:
                    metrics[metric] = pb
        comparisons[name] = metrics
        flipped[name] = [{**f, "question": questions.get(f["id"], "")} for f in comp["flipped"]]
    all_metrics = [m for m in base.get("overall", {}) if all(m in r.get("overall", {}) for r in reports)]
    winners = {m: winner(m, names, reports, comparisons) for m in all_metrics}
    return {
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "baseline": names[0],
        "cases": len(base["cases"]),
        "variants": [
            {
                **r["variant"],
                "settings": r["settings"],
                "overall": {m: r["overall"][m] for m in r.get("overall", {})},
                "verdicts": r["verdicts"],
                "good": sum(n for v, n in r["verdicts"].items() if v in GOOD),
                "seconds": r["seconds"],
            }
            for r in reports
        ],
        "comparisons": comparisons,
        "winners": winners,
        "flipped": flipped,
    }


def to_markdown(result: dict, metrics: Sequence[str] | None = None, max_flipped: int = 15) -> str:
    """The comparison table (mean per variant; delta and 95% interval against the baseline) and the flips."""
    names = [v["name"] for v in result["variants"]]
    available = list(result["winners"])
    chosen = [m for m in (metrics or DEFAULT_TABLE_METRICS) if m in available] or available
    lines = [
        f"Experiment: {len(names)} variants on {result['cases']} cases; baseline **{names[0]}**; "
        "delta and paired-bootstrap 95% interval against the baseline.",
        "",
        "| metric | " + " | ".join(names) + " | winner |",
        "|---|" + "---|" * (len(names) + 1),
    ]
    for m in chosen:
        first = result["variants"][0]["overall"][m]["mean"]
        cells = [f"{first:.4f}" if first is not None else "-"]
        for name in names[1:]:
            c = result["comparisons"][name].get(m)
            cells.append(
                f"{c['current']:.4f} ({c['delta']:+.4f} [{c['ci95'][0]:+.4f}, {c['ci95'][1]:+.4f}] {c['label']})"
                if c
                else "-"
            )
        w = result["winners"][m]
        lines.append(f"| {m} | " + " | ".join(cells) + f" | {w['winner'] or w['verdict']} |")
    lines += ["", "| variant | good verdicts | verdicts | seconds |", "|---|---|---|---|"]
    for v in result["variants"]:
        verdicts = ", ".join(f"{k} {n}" for k, n in sorted(v["verdicts"].items(), key=lambda x: -x[1]))
        lines.append(f"| {v['name']} | {v['good']} / {result['cases']} | {verdicts} | {v['seconds']} |")
    for name, flips in result["flipped"].items():
        fixed = sum(f["direction"] == "fixed" for f in flips)
        broken = sum(f["direction"] == "broken" for f in flips)
        lines += ["", f"**{name} vs {names[0]}**: {len(flips)} verdicts flipped ({fixed} fixed, {broken} broken)"]
        for f in flips[:max_flipped]:
            lines.append(f"- {f['id']} {f['direction']}: {f['baseline']} -> {f['current']}: {f['question'][:90]}")
        if len(flips) > max_flipped:
            lines.append(f"- ... {len(flips) - max_flipped} more in experiment.json")
    return "\n".join(lines) + "\n"


def write_experiment(result: dict, reports: list[dict], out_dir: Path, metrics: Sequence[str] | None = None) -> dict:
    """experiment.json, experiment.md, and each variant's full audit under variants/<name>/."""
    from diagnostics.audit.report import write_reports

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for rep in reports:
        safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in rep["variant"]["name"])
        write_reports(rep, out_dir / "variants" / safe)
    paths = {"json": out_dir / "experiment.json", "md": out_dir / "experiment.md"}
    paths["json"].write_text(json.dumps(result, indent=2, default=str))
    paths["md"].write_text(to_markdown(result, metrics))
    return paths
