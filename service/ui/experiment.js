// One experiment: progress while it runs (cancel), then the comparison table, variants and flipped cases.

import { api } from "./api.js";
import { enc, errorBox, fmt, h, show } from "./dom.js";
import { render } from "./nav.js";

function comparisonTable(r, all) {
  const names = r.variants.map((v) => v.name);
  const available = Object.keys(r.winners);
  const chosen = all ? available : (r.table_metrics || []).filter((m) => available.includes(m));
  const metrics = chosen.length ? chosen : available;
  const labelBadge = (label) => h("span", { class: `badge ${label === "improved" ? "good" : label === "regressed" ? "bad" : ""}` }, label);
  return h(
    "table",
    { id: "experiment-table", class: "stack" }, // at phone width each metric is a card of labelled lines
    h("thead", {}, h("tr", {}, h("th", {}, "metric"), names.map((n, i) => h("th", {}, i === 0 ? `${n} (baseline)` : n)), h("th", {}, "winner"))),
    h(
      "tbody",
      {},
      metrics.map((m) => {
        const w = r.winners[m];
        return h(
          "tr",
          { "data-metric": m },
          h("td", { class: "metric" }, m),
          h("td", { class: "num", "data-label": `${names[0]} (baseline)` }, fmt((r.variants[0].overall[m] || {}).mean, 4)),
          names.slice(1).map((n) => {
            const c = r.comparisons[n][m];
            return h("td", { class: "small", "data-label": n }, c ? [h("b", {}, fmt(c.current, 4)), ` ${c.delta >= 0 ? "+" : ""}${fmt(c.delta, 4)} [${fmt(c.ci95[0], 3)}, ${fmt(c.ci95[1], 3)}] `, labelBadge(c.label)] : "–");
          }),
          h("td", { class: "winner", "data-label": "winner" }, h("span", { class: `badge ${w.winner ? "good" : "warn"}`, title: w.reason }, w.winner || w.verdict)),
        );
      }),
    ),
  );
}

export async function experimentPage(id) {
  const job = await api(`/v1/experiments/${enc(id)}`);
  if (job.status === "queued" || job.status === "running") {
    const p = job.progress || {};
    const cancel = h("button", { type: "button", class: "secondary", id: "exp-cancel" }, "Cancel");
    const err = h("div");
    cancel.addEventListener("click", async () => {
      cancel.disabled = true;
      try {
        await api(`/v1/jobs/${enc(id)}/cancel`, { method: "POST" });
      } catch (e) {
        err.replaceChildren(errorBox(e));
      }
    });
    show(
      h("h1", {}, `Experiment ${id}`),
      h("p", { id: "experiment-status" }, `${job.status}: ${p.cases || 0} of ${p.total || "?"} case runs (cases × variants)`),
      h("progress", { max: p.total || 1, value: p.cases || 0, "aria-label": "Experiment progress" }),
      h("p", {}, cancel),
      err,
    );
    const here = location.hash;
    setTimeout(() => {
      if (location.hash === here) render();
    }, 800);
    return;
  }
  if (!job.report) {
    show(h("h1", {}, `Experiment ${id}`), errorBox(`${job.status}: ${job.error || "no result"}`), h("p", {}, h("a", { href: "#/experiments" }, "← experiments")));
    return;
  }
  const r = job.report;
  // A flipped case opens as the variant ran it (an experiment run before it kept its flipped cases: plain text)
  const caseLink = (variant, caseId) =>
    ((r.flipped_cases || {})[variant] || {})[String(caseId)]
      ? h("a", { href: `#/experiment/${id}/case/${enc(variant)}/${enc(String(caseId))}`, class: "case-link" }, h("b", {}, caseId))
      : h("b", {}, caseId);
  const tableWrap = h("div", { class: "table-wrap" }, comparisonTable(r, false));
  const allBox = h("input", { type: "checkbox", id: "exp-all-metrics" });
  allBox.addEventListener("change", () => tableWrap.replaceChildren(comparisonTable(r, allBox.checked)));
  const settingsOf = (v) => {
    const s = v.settings || {};
    return `${s.mode}, ${s.fusion}${s.fusion === "rrf" ? ` k=${s.rrf_k}` : ""}, top ${s.cut ?? s.top_k}${s.rerank ? ", rerank" : ""}${s.generate ? `, generator ${s.generator}` : ""}`;
  };
  show(
    h("p", { class: "small" }, h("a", { href: "#/experiments" }, "← experiments")),
    h("h1", {}, `Experiment: ${job.collection}`),
    h("p", { class: "summary", id: "experiment-summary" }, `${r.variants.length} variants on ${r.cases} cases, compared with the baseline, ${r.baseline} (${r.seconds} s). Each metric's winner is named only when the paired 95% interval excludes 0.`),
    h("h2", {}, "Comparison"),
    h("p", { class: "small muted" }, "Mean per variant; for the others, the delta against the baseline with its paired-bootstrap 95% interval."),
    tableWrap,
    h("label", { class: "inline small", for: "exp-all-metrics" }, allBox, "Show every metric"),
    h("h2", {}, "Variants"),
    h(
      "div",
      { class: "table-wrap" },
      h(
        "table",
        { class: "stack", id: "experiment-variants" },
        h("thead", {}, h("tr", {}, ["variant", "collection", "settings", "good verdicts", "seconds"].map((t) => h("th", {}, t)))),
        h(
          "tbody",
          {},
          r.variants.map((v) =>
            h(
              "tr",
              { "data-variant": v.name },
              h("td", { "data-label": "variant" }, h("b", {}, v.name), v.description ? h("div", { class: "small muted" }, v.description) : null),
              h("td", { "data-label": "collection" }, v.collection || job.collection),
              h("td", { "data-label": "settings", class: "small" }, settingsOf(v)),
              h("td", { class: "num", "data-label": "good verdicts" }, `${v.good} / ${r.cases}`),
              h("td", { class: "num", "data-label": "seconds" }, v.seconds),
            ),
          ),
        ),
      ),
    ),
    h("h2", {}, "Flipped cases"),
    h(
      "div",
      { id: "experiment-flipped" },
      Object.entries(r.flipped).map(([name, flips]) => [
        h("h3", {}, `${name} vs ${r.baseline}: ${flips.length} flipped (${flips.filter((f) => f.direction === "fixed").length} fixed, ${flips.filter((f) => f.direction === "broken").length} broken)`),
        flips.length
          ? h("ul", {}, flips.map((f) => h("li", { "data-case-id": f.id }, caseLink(name, f.id), `: ${f.baseline} → ${f.current} `, h("span", { class: `badge ${f.direction === "fixed" ? "good" : f.direction === "broken" ? "bad" : ""}` }, f.direction), h("div", { class: "small muted" }, f.question))))
          : h("p", { class: "muted small" }, "No verdict flipped."),
      ]),
    ),
    h("details", {}, h("summary", {}, "The table as Markdown (rag experiment's experiment.md)"), h("pre", { class: "md", id: "experiment-markdown" }, r.markdown)),
  );
}
