"""Write an audit as report.json (the stable schema), report.md, and a self-contained report.html whose
plots are inline SVG (no scripts, no network)."""

from __future__ import annotations

import html
import json
from pathlib import Path

from diagnostics.audit.run import GOOD, LOST_STAGES


def write_reports(report: dict, out_dir: Path) -> dict[str, Path]:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"json": out_dir / "report.json", "md": out_dir / "report.md", "html": out_dir / "report.html"}
    paths["json"].write_text(json.dumps(report, indent=2, default=str))
    paths["md"].write_text(to_markdown(report))
    paths["html"].write_text(to_html(report))
    return paths


def failing(r: dict) -> list[dict]:
    """The cases that need action (a failure, or a label to fix), in report order."""
    return [c for c in r["cases"] if c["verdict"] not in GOOD]


def ranks_text(item: dict) -> str:
    """'sparse 3, dense -, fused 14, rerank 12': the lost source's chunk rank in each stage that ran."""
    ranks = item.get("chunk_ranks") or item.get("ranks") or {}
    return ", ".join(f"{stage} {'-' if rank is None else rank}" for stage, rank in ranks.items())


def case_card_lines(c: dict) -> list[str]:
    """One failing case as Markdown: verdict, where lost with the stage ranks, the lever, what is uncertain."""
    lines = [f"### {c['id']}: {c['verdict']}", "", f"> {c['question']}", "", f"- **Why**: {c['verdict_detail']}"]
    for item in c["lost"]:
        where = f"- **Lost**: {item['doc_id']} at `{item['stage']}`"
        where += f" ({ranks_text(item)})" if ranks_text(item) else ""
        where += f": {item['reason']}" if item.get("reason") else ""
        lines.append(where)
    answer = (c.get("generation") or {}).get("answer")
    if answer:
        lines.append(f"- **Answer**: {answer[:300]}")
    if c.get("lever"):
        lines.append(f"- **Lever (where to act)**: {c['lever']}")
    lines += [f"- **Uncertain**: {u}" for u in c.get("uncertain") or []]
    return lines + [""]


def _fmt(m: dict) -> str:
    if m["mean"] is None:
        return f"unmeasured ({m.get('unmeasured', 0)} cases)"
    text = f"{m['mean']:.3f} [{m['ci95'][0]:.3f}, {m['ci95'][1]:.3f}]"
    return text + (f", {m['unmeasured']} unmeasured" if m.get("unmeasured") else "")


def to_markdown(r: dict) -> str:
    s = r["settings"]
    lines = [
        f"# Retrieval audit: {r['collection']}",
        "",
        f"{r['golden']['cases']} cases, {r['created_at']}; mode {s['mode']}, fusion {s['fusion']} (k={s['rrf_k']}), "
        f"{s['candidates']} candidates, generator sees the top {s['cut']} chunks"
        + (f"; generator {s['generator']}, faithfulness by {s['faithfulness_scorer']}" if s["generate"] else "")
        + (f"; reranker {s.get('reranker')} over the top {s.get('rerank_candidates')}" if s.get("rerank") else "")
        + ".",
        "",
        f"**{r['summary']['text']}**",
        "",
    ]
    if r["summary"].get("lever"):
        lines += [f"**Lever (where to act)**: {r['summary']['lever']}", ""]
    if r["golden"]["stubs_skipped"]:
        lines += [f"{len(r['golden']['stubs_skipped'])} unlabelled stubs skipped.", ""]
    bad = failing(r)
    lines += [f"## Failing cases ({len(bad)})", ""]
    for c in bad:
        lines += case_card_lines(c)
    if not bad:
        lines += ["None.", ""]
    lines += ["## Overall (mean, bootstrap 95% interval)", "", "| metric | value | n |", "|---|---|---|"]
    lines += [f"| {k} | {_fmt(m)} | {m['n']} |" for k, m in r["overall"].items()]
    for metric, items in r.get("judge_unmeasured", {}).items():
        reasons = sorted({i["reason"] for i in items})
        lines += ["", f"Judge {metric} unmeasured for {len(items)} cases: " + "; ".join(reasons[:3])]
    if r.get("unmeasured"):
        lines += [
            "",
            f"Faithfulness unmeasured for {len(r['unmeasured'])} cases (no answer to score): "
            + ", ".join(r["unmeasured"][:20]),
        ]
    lines += ["", "## Verdicts", "", "| verdict | cases |", "|---|---|"]
    lines += [f"| {v} | {n} |" for v, n in sorted(r["verdicts"].items(), key=lambda x: -x[1])]
    lines += ["", "## Where expected sources were lost", "", "| stage | sources |", "|---|---|"]
    lines += [f"| {k} | {n} |" for k, n in r["where_lost"].items() if n]
    if "comparison" in r:
        c = r["comparison"]
        lines += [
            "",
            f"## Against the baseline ({c['paired_cases']} paired cases)",
            "",
        ]
        if c.get("differences"):
            lines += [
                "Settings that differ: "
                + "; ".join(f"{d['setting']} {d['current']} (baseline {d['baseline']})" for d in c["differences"]),
                "",
            ]
        if c.get("not_comparable"):
            lines += [f"**Not comparable**: {c['not_comparable']}.", ""]
        if c.get("no_change"):
            lines += ["**No change**: every paired delta is 0 and no verdict flipped.", ""]
        lines += [
            "| metric | baseline | current | delta [95% CI] | |",
            "|---|---|---|---|---|",
        ]
        lines += [
            f"| {k} | {m['baseline']:.3f} | {m['current']:.3f} | {m['delta']:+.3f} [{m['ci95'][0]:+.3f}, {m['ci95'][1]:+.3f}] | {m['label']} |"
            for k, m in c["metrics"].items()
        ]
        if c["flipped"]:
            lines += ["", "Verdicts that flipped:", ""]
            lines += [f"- `{f['id']}`: {f['baseline']} -> {f['current']} ({f['direction']})" for f in c["flipped"]]
    lines += [
        "",
        "## All cases",
        "",
        "| id | verdict | detail | expected | retrieved | lever |",
        "|---|---|---|---|---|---|",
    ]
    for c in r["cases"]:
        expected = ", ".join(e["doc_id"] for e in c["expected"]) or "(none)"
        got = ", ".join(dict.fromkeys(x["doc_id"] for x in c["retrieved"]))
        detail = c["verdict_detail"] + (" (uncertain: " + "; ".join(c["uncertain"]) + ")" if c.get("uncertain") else "")
        cells = [c["id"], c["verdict"], detail, expected, got, c.get("lever") or ""]
        lines.append("| " + " | ".join(str(x).replace("|", "/").replace("\n", " ") for x in cells) + " |")
    return "\n".join(lines) + "\n"


def bars(
    items: list[tuple[str, float]],
    width: int = 560,
    bar_h: int = 22,
    color: str = "#4e79a7",
    colors: dict[str, str] | None = None,
    label_w: int = 200,
) -> str:
    """Horizontal bars: labels in the first label_w units, the bars and their values after them."""
    if not items:
        return "<p>nothing to plot</p>"
    top = max(v for _, v in items) or 1
    h = bar_h * len(items) + 10
    out = [
        f'<svg class="plot" role="img" width="{width}" height="{h}" viewBox="0 0 {width} {h}" xmlns="http://www.w3.org/2000/svg">'
    ]
    for i, (label, v) in enumerate(items):
        y = 5 + i * bar_h
        w = (width - label_w - 60) * v / top
        out.append(f'<text x="0" y="{y + 15}" font-size="12">{html.escape(label)}</text>')
        fill = (colors or {}).get(label, color)
        out.append(f'<rect x="{label_w}" y="{y + 3}" width="{w:.1f}" height="{bar_h - 8}" fill="{fill}"/>')
        out.append(f'<text x="{label_w + 5 + w:.1f}" y="{y + 15}" font-size="12">{v:g}</text>')
    out.append("</svg>")
    return "".join(out)


def curve(points: list[tuple[int, float, float, float]], width: int = 560, height: int = 260) -> str:
    """Recall@k with its interval band: points are (k, mean, lo, hi)."""
    if not points:
        return "<p>nothing to plot</p>"
    left, bottom, right, top = 50, height - 30, width - 20, 15
    ks = [p[0] for p in points]
    x = lambda k: left + (right - left) * (ks.index(k) / max(len(ks) - 1, 1))  # noqa: E731
    y = lambda v: bottom - (bottom - top) * v  # noqa: E731
    band = (
        " ".join(f"{x(k):.1f},{y(hi):.1f}" for k, _, _, hi in points)
        + " "
        + " ".join(f"{x(k):.1f},{y(lo):.1f}" for k, _, lo, _ in reversed(points))
    )
    line = " ".join(f"{x(k):.1f},{y(m):.1f}" for k, m, _, _ in points)
    out = [
        f'<svg class="plot" role="img" width="{width}" height="{height}" viewBox="0 0 {width} {height}" xmlns="http://www.w3.org/2000/svg">',
        f'<line x1="{left}" y1="{bottom}" x2="{right}" y2="{bottom}" stroke="#999"/>',
        f'<line x1="{left}" y1="{top}" x2="{left}" y2="{bottom}" stroke="#999"/>',
        f'<polygon points="{band}" fill="#4e79a7" fill-opacity="0.2"/>',
        f'<polyline points="{line}" fill="none" stroke="#4e79a7" stroke-width="2"/>',
    ]
    for v in (0, 0.5, 1):
        out.append(f'<text x="{left - 8}" y="{y(v) + 4:.1f}" font-size="11" text-anchor="end">{v}</text>')
    for k, m, _, _ in points:
        out.append(f'<circle cx="{x(k):.1f}" cy="{y(m):.1f}" r="3.5" fill="#4e79a7"/>')
        out.append(f'<text x="{x(k):.1f}" y="{bottom + 16}" font-size="11" text-anchor="middle">k={k}</text>')
        out.append(f'<text x="{x(k):.1f}" y="{y(m) - 8:.1f}" font-size="11" text-anchor="middle">{m:.2f}</text>')
    out.append("</svg>")
    return "".join(out)


def to_html(r: dict) -> str:
    esc = html.escape
    points = [
        (k, r["overall"][f"recall@{k}"]["mean"], *r["overall"][f"recall@{k}"]["ci95"])
        for k in r["settings"]["ks"]
        if f"recall@{k}" in r["overall"]
    ]
    lost = [(k, n) for k, n in r["where_lost"].items() if n] or [(k, 0) for k in LOST_STAGES[:1]]
    verdicts = sorted(r["verdicts"].items(), key=lambda x: -x[1])
    rows = []
    for c in r["cases"]:
        cls = "ok" if c["verdict"] in GOOD else "bad"
        expected = (
            "<br>".join(esc(e["doc_id"] + (f" “{e['quote'][:60]}”" if e.get("quote") else "")) for e in c["expected"])
            or "(none)"
        )
        got = "<br>".join(f"{x['rank']}. {'✔ ' if x['expected'] else ''}{esc(x['doc_id'])}" for x in c["retrieved"])
        lost_txt = "<br>".join(f"{esc(x['doc_id'])}: {esc(x['stage'])}" for x in c["lost"])
        answer = esc((c.get("generation") or {}).get("answer") or "")
        m = c["metrics"]
        score = f"{m['ndcg@' + str(max(r['settings']['ks']))]:.2f}" if m else ""
        rows.append(
            f'<tr class="{cls}"><td>{esc(c["id"])}</td><td>{esc(c["question"])}</td><td>{expected}</td>'
            f"<td>{got}</td><td>{lost_txt}</td><td>{score}</td><td><b>{esc(c['verdict'])}</b><br>"
            f"<small>{esc(c['verdict_detail'])}</small></td><td><small>{answer}</small></td></tr>"
        )
    overall = "".join(f"<tr><td>{esc(k)}</td><td>{_fmt(m)}</td><td>{m['n']}</td></tr>" for k, m in r["overall"].items())
    cards = "".join(_card_html(c) for c in failing(r)) or "<p>None.</p>"
    lever = r["summary"].get("lever")
    lever_html = f'<p class="lever"><b>Lever (where to act)</b>: {esc(lever)}</p>' if lever else ""
    comparison = ""
    if "comparison" in r:
        crow = "".join(
            f"<tr><td>{esc(k)}</td><td>{m['baseline']:.3f}</td><td>{m['current']:.3f}</td>"
            f"<td>{m['delta']:+.3f} [{m['ci95'][0]:+.3f}, {m['ci95'][1]:+.3f}]</td><td>{m['label']}</td></tr>"
            for k, m in r["comparison"]["metrics"].items()
        )
        flips = "".join(
            f"<li>{esc(f['id'])}: {esc(f['baseline'])} → {esc(f['current'])} ({f['direction']})</li>"
            for f in r["comparison"]["flipped"]
        )
        comparison = (
            f"<h2>Against the baseline</h2><table><tr><th>metric</th><th>baseline</th><th>current</th>"
            f"<th>delta [95% CI]</th><th></th></tr>{crow}</table><ul>{flips}</ul>"
        )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1"><title>Retrieval audit: {esc(r["collection"])}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em auto; padding: 0 1em; max-width: 1200px; color: #222; overflow-wrap: anywhere; }}
table {{ border-collapse: collapse; margin: 1em 0; display: block; max-width: 100%; overflow-x: auto; }} td, th {{ border: 1px solid #ddd; padding: 4px 8px; vertical-align: top; }}
svg {{ max-width: 100%; height: auto; }} figure {{ margin: 0; max-width: 100%; }}
.card {{ border: 1px solid #e8c4bc; border-left: 6px solid #e15759; background: #fff8f6; padding: .6em 1em; margin: .8em 0; }}
.card h3 {{ margin: .2em 0; font-size: 1.05em; }} .card dl {{ margin: .3em 0; }} .card dt {{ font-weight: 600; margin-top: .3em; }} .card dd {{ margin: 0 0 0 1em; }}
.lever {{ padding: .5em; background: #fdf6e3; }}
tr.bad td {{ background: #fff3f0; }} tr.ok td {{ background: #f3fbf3; }} .summary {{ font-size: 1.15em; padding: .6em; background: #eef3fa; }}
.plots {{ display: flex; gap: 2em; flex-wrap: wrap; }}
</style></head><body>
<h1>Retrieval audit: {esc(r["collection"])}</h1>
<p>{r["golden"]["cases"]} cases, {esc(r["created_at"])}, mode {esc(str(r["settings"]["mode"]))}, fusion {esc(str(r["settings"]["fusion"]))}, generator sees the top {r["settings"]["cut"]} chunks.</p>
<p class="summary">{esc(r["summary"]["text"])}</p>
{lever_html}
<h2 id="failing">Failing cases ({len(failing(r))})</h2>
{cards}
<div class="plots">
<figure id="recall-curve"><figcaption>Recall@k (band: bootstrap 95% interval)</figcaption>{curve(points)}</figure>
<figure id="where-lost"><figcaption>Where expected sources were lost</figcaption>{bars(lost, color="#e15759")}</figure>
<figure id="verdicts"><figcaption>Verdicts</figcaption>{bars(verdicts, color="#f28e2b", colors={v: "#59a14f" for v in GOOD})}</figure>
</div>
<h2>Overall</h2><table><tr><th>metric</th><th>mean [95% CI]</th><th>n</th></tr>{overall}</table>
{comparison}
<h2>All cases</h2>
<table id="cases"><tr><th>id</th><th>question</th><th>expected</th><th>retrieved (✔ = expected)</th><th>lost at</th><th>nDCG</th><th>verdict</th><th>answer</th></tr>
{"".join(rows)}</table>
</body></html>
"""


def _card_html(c: dict) -> str:
    """One failing case: verdict, where each source was lost with its rank in every stage, the lever, doubts."""
    esc = html.escape
    parts = [f"<dt>Why</dt><dd>{esc(c['verdict_detail'])}</dd>"]
    for item in c["lost"]:
        text = f"{esc(item['doc_id'])} at <code>{esc(item['stage'])}</code>"
        text += f" ({esc(ranks_text(item))})" if ranks_text(item) else ""
        text += f": {esc(item['reason'])}" if item.get("reason") else ""
        parts.append(f"<dt>Where lost</dt><dd>{text}</dd>")
    answer = (c.get("generation") or {}).get("answer")
    if answer:
        parts.append(f"<dt>Answer</dt><dd><small>{esc(answer[:400])}</small></dd>")
    if c.get("lever"):
        parts.append(f"<dt>Lever (where to act)</dt><dd>{esc(c['lever'])}</dd>")
    parts += [f"<dt>Uncertain</dt><dd>{esc(u)}</dd>" for u in c.get("uncertain") or []]
    return (
        f'<section class="card" id="case-{esc(c["id"])}"><h3>{esc(c["id"])}: {esc(c["verdict"])}</h3>'
        f"<p>{esc(c['question'])}</p><dl>{''.join(parts)}</dl></section>"
    )
