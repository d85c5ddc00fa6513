// One audit: progress while it runs, then its plots, verdicts, metrics, a baseline comparison and cases.

import { api } from "./api.js";
import { knownAudits } from "./audits.js";
import { enc, errorBox, fmt, fmtTime, h, show } from "./dom.js";
import { go, render } from "./nav.js";
import { verdictBadge } from "./widgets.js";

function slim(report) {
  return {
    settings: report.settings,
    overall: report.overall,
    where_lost: report.where_lost,
    verdicts: report.verdicts,
    created_at: report.created_at,
    cases: (report.cases || []).map((c) => ({ id: c.id, question: c.question, expected: c.expected, metrics: c.metrics, span: c.span, verdict: c.verdict, generation: c.generation ? { faithfulness: c.generation.faithfulness } : {} })),
  };
}

export async function auditPage(id, params) {
  const job = await api(`/v1/audits/${enc(id)}`);
  if (job.status === "queued" || job.status === "running") {
    const p = job.progress || {};
    show(
      h("h1", {}, `Audit ${id}`),
      h("p", { id: "audit-status" }, `${job.status}: ${p.cases || 0} of ${p.total || "?"} cases`),
      h("progress", { max: p.total || 1, value: p.cases || 0, "aria-label": "Audit progress" }),
    );
    const here = location.hash;
    setTimeout(() => {
      if (location.hash === here) render();
    }, 800);
    return;
  }
  if (!job.report) {
    show(h("h1", {}, `Audit ${id}`), errorBox(`${job.status}: ${job.error || "no report"}`));
    return;
  }
  const r = job.report;
  const baselineId = params.get("baseline");
  let baseline = null;
  if (baselineId) baseline = (await api(`/v1/audits/${enc(baselineId)}`)).report;
  const view = await api("/v1/ui/audit-view", { method: "POST", body: { report: slim(r), baseline: baseline ? slim(baseline) : null } });
  const listed = await knownAudits();
  const others = listed.filter((a) => a.id !== id && a.collection === job.collection && a.status === "succeeded");
  const mine = listed.find((a) => a.id === id);
  const label = (a) => `${a.id.slice(0, 8)} · ${fmtTime(a.created_at)} · ${a.settings?.generate ? "generating" : "retrieval only"}${mine && a.golden_hash !== mine.golden_hash ? " · other golden set" : ""}`;
  const baseSel = h("select", { id: "baseline", "aria-label": "Baseline audit" }, h("option", { value: "" }, "no baseline"), others.map((a) => h("option", { value: a.id, selected: a.id === baselineId }, label(a))));
  baseSel.addEventListener("change", () => go(`#/audit/${id}${baseSel.value ? `?baseline=${baseSel.value}` : ""}`));
  const s = r.settings;
  const cmp = view.comparison;
  const lost = Object.entries(r.where_lost || {}).filter(([, n]) => n); // no heading over an empty table
  show(
    h("h1", {}, `Audit: ${r.collection}`),
    h("p", { class: "muted small" }, `${r.golden.cases} cases · ${r.created_at} · ${s.mode}, ${s.fusion}, generator sees the top ${s.cut}${s.generate ? ` · generator ${s.generator}` : " · retrieval only"} · ${r.seconds} s · audit ${id}`),
    h("p", { class: "summary", id: "audit-summary" }, r.summary.text),
    h(
      "div",
      { class: "plots" },
      h("figure", { id: "plot-recall" }, h("figcaption", {}, "Recall@k (band: bootstrap 95% interval)"), h("div", { svg: view.plots.recall })),
      h("figure", { id: "plot-where-lost" }, h("figcaption", {}, "Where expected sources were lost"), h("div", { svg: view.plots.where_lost })),
      h("figure", { id: "plot-verdicts" }, h("figcaption", {}, "Verdicts"), h("div", { svg: view.plots.verdicts })),
    ),
    h(
      "div",
      { class: "row" },
      h("div", { style: "flex:1 1 18rem" }, h("h2", {}, "Verdicts"), h("table", { id: "verdict-counts" }, h("tbody", {}, Object.entries(r.verdicts).sort((a, b) => b[1] - a[1]).map(([v, n]) => h("tr", {}, h("td", {}, verdictBadge(v, view.good)), h("td", { class: "num" }, n)))))),
      lost.length ? h("div", { style: "flex:1 1 18rem" }, h("h2", {}, "Where lost"), h("table", { id: "where-lost" }, h("tbody", {}, lost.map(([k, n]) => h("tr", {}, h("td", {}, k), h("td", { class: "num" }, n)))))) : null,
    ),
    h("h2", {}, "Overall"),
    h("div", { class: "table-wrap" }, h("table", {}, h("thead", {}, h("tr", {}, h("th", {}, "metric"), h("th", { class: "num" }, "mean"), h("th", {}, "95% interval"), h("th", { class: "num" }, "n"))), h("tbody", {}, Object.entries(r.overall).map(([k, m]) => h("tr", {}, h("td", {}, k), h("td", { class: "num" }, fmt(m.mean)), h("td", { class: "small" }, m.ci95 ? `[${fmt(m.ci95[0])}, ${fmt(m.ci95[1])}]` : ""), h("td", { class: "num" }, m.n)))))),
    h("h2", {}, "Against a baseline"),
    h("p", { class: "row" }, baseSel),
    cmp
      ? h(
          "div",
          { id: "comparison" },
          h("p", { class: "small muted" }, `${cmp.paired_cases} paired cases`),
          (cmp.differences || []).length ? h("p", { class: "small", id: "comparison-differences" }, "Settings that differ: " + cmp.differences.map((d) => `${d.setting} ${d.current} (baseline ${d.baseline})`).join("; ")) : null,
          cmp.not_comparable ? h("p", { class: "error", id: "comparison-not-comparable" }, `Not comparable: ${cmp.not_comparable}`) : null,
          cmp.no_change ? h("p", { id: "comparison-no-change" }, "No change: every paired delta is 0 and no verdict flipped.") : null,
          h("div", { class: "table-wrap" }, h("table", {}, h("thead", {}, h("tr", {}, ["metric", "baseline", "current", "delta [95% CI]", ""].map((t) => h("th", {}, t)))), h("tbody", {}, Object.entries(cmp.metrics).map(([k, m]) => h("tr", {}, h("td", {}, k), h("td", { class: "num" }, fmt(m.baseline)), h("td", { class: "num" }, fmt(m.current)), h("td", {}, `${m.delta >= 0 ? "+" : ""}${fmt(m.delta)} [${fmt(m.ci95[0])}, ${fmt(m.ci95[1])}]`), h("td", {}, h("span", { class: `badge ${m.label === "improved" ? "good" : m.label === "regressed" ? "bad" : ""}` }, m.label))))))),
          h("h3", {}, "Flipped cases"),
          cmp.flipped.length ? h("ul", {}, cmp.flipped.map((f) => h("li", {}, h("a", { href: `#/case/${id}/${enc(f.id)}` }, f.id), `: ${f.baseline} → ${f.current} `, h("span", { class: `badge ${f.direction === "fixed" ? "good" : f.direction === "broken" ? "bad" : ""}` }, f.direction)))) : h("p", { class: "muted" }, "No verdict flipped."),
        )
      : h("p", { class: "muted small" }, others.length ? "Pick an earlier audit of this collection to compare." : "Run another audit of this collection to compare."),
    h("h2", {}, "Cases"),
    h(
      "div",
      { class: "table-wrap" },
      h(
        "table",
        { class: "stack", id: "audit-cases" },
        h("thead", {}, h("tr", {}, ["id", "question", "verdict", "expected", "lost at"].map((t) => h("th", {}, t)))),
        h(
          "tbody",
          {},
          r.cases.map((c) =>
            h(
              "tr",
              { "data-case-id": c.id },
              h("td", { "data-label": "id" }, h("a", { href: `#/case/${id}/${enc(c.id)}` }, c.id)),
              h("td", { "data-label": "question" }, c.question),
              h("td", { "data-label": "verdict" }, verdictBadge(c.verdict, view.good), h("div", { class: "small muted" }, c.verdict_detail)),
              h("td", { "data-label": "expected", class: "small" }, c.expected.map((e) => e.doc_id).join(", ") || "(none: should decline)"),
              h("td", { "data-label": "lost at", class: "small" }, c.lost.map((l) => `${l.doc_id}: ${l.stage}`).join("; ")),
            ),
          ),
        ),
      ),
    ),
  );
}
