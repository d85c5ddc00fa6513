// One audit case (or an experiment's flipped case, as one variant ran it): expected sources per stage, the answer
// and its claims, the contexts with the cited ones and their evidence marked.

import { ApiError, api } from "./api.js";
import { enc, fmt, h, show, stripCitations } from "./dom.js";
import { citedBadge, stageRanks, verdictBadge } from "./widgets.js";

function highlight(text, phrases, cls) {
  // text with each phrase found in it wrapped in <mark class=cls>; phrases not found are skipped
  // whitespace-insensitive: the answer and the scorer's sentences have line breaks folded into spaces
  let norm = "";
  const map = []; // index in norm -> index in text
  for (let i = 0; i < text.length; i++) {
    if (/\s/.test(text[i])) {
      if (norm.endsWith(" ")) continue;
      norm += " ";
    } else norm += text[i];
    map.push(i);
  }
  const spans = [];
  for (const p of phrases) {
    const t = (p || "").replace(/\s+/g, " ").trim();
    if (t.length < 8) continue;
    const at = norm.indexOf(t);
    if (at >= 0) spans.push([map[at], map[at + t.length - 1] + 1]);
  }
  spans.sort((a, b) => a[0] - b[0]);
  const out = [];
  let pos = 0;
  for (const [a, b] of spans) {
    if (a < pos) continue;
    out.push(text.slice(pos, a), h("mark", { class: cls }, text.slice(a, b)));
    pos = b;
  }
  out.push(text.slice(pos));
  return out;
}

const sentences = (s) => (s || "").split(/(?<=[.!?])\s+/).map((x) => x.trim()).filter(Boolean);

export async function casePage(auditId, caseId) {
  const job = await api(`/v1/audits/${enc(auditId)}`);
  const r = job.report || { cases: [] };
  const c = r.cases.find((x) => String(x.id) === caseId);
  if (!c) throw new ApiError(404, "case_not_found", `no case ${caseId} in audit ${auditId}`);
  await showCase(c, {
    collection: job.collection,
    settings: r.settings,
    back: h("p", { class: "small" }, h("a", { href: `#/audit/${auditId}` }, "← audit"), ` · case ${c.id}`),
    label: `#/label/a/${auditId}/${enc(c.id)}`,
  });
}

// An experiment's flipped case as `variant` ran it, beside the verdict every variant gave it (the experiment keeps
// the flipped cases' records: report.flipped_cases).
export async function experimentCasePage(expId, variant, caseId) {
  const job = await api(`/v1/experiments/${enc(expId)}`);
  const r = job.report || {};
  const kept = r.flipped_cases || {};
  const c = (kept[variant] || {})[caseId];
  if (!c) throw new ApiError(404, "case_not_found", `no flipped case ${caseId} of variant ${variant} in experiment ${expId}`);
  const v = (r.variants || []).find((x) => x.name === variant) || {};
  const others = (r.variants || []).filter((x) => (kept[x.name] || {})[caseId]);
  await showCase(c, {
    collection: v.collection || job.collection,
    settings: v.settings || {},
    back: (view) => [
      h("p", { class: "small" }, h("a", { href: `#/experiment/${expId}` }, "← experiment"), ` · case ${c.id} · variant ${variant}${variant === r.baseline ? " (the baseline)" : ""}`),
      h(
        "p",
        { class: "row small", id: "case-variants" },
        others.map((x) => {
          const verdict = kept[x.name][caseId].verdict;
          const here = x.name === variant;
          return h("span", {}, here ? h("b", {}, x.name) : h("a", { href: `#/experiment/${expId}/case/${enc(x.name)}/${enc(caseId)}` }, x.name), ": ", verdictBadge(verdict, view.good));
        }),
      ),
    ],
    label: null,
  });
}

async function showCase(c, { collection, settings, back, label }) {
  const view = await api("/v1/ui/audit-view", { method: "POST", body: { report: { settings, cases: [] } } });
  const ids = c.retrieved.map((x) => x.chunk_id);
  const texts = ids.length ? await api(`/v1/collections/${enc(collection)}/chunks?${ids.map((i) => `ids=${enc(i)}`).join("&")}`) : [];
  const byId = Object.fromEntries(texts.map((t) => [t.chunk_id, t.text]));
  const gen = c.generation || null;
  const claims = (gen && gen.claims) || [];
  const lever = c.verdict === "retrieval_miss" && c.lost.length ? view.levers[c.lost[0].stage] : view.levers[c.verdict];
  const stagesOrder = ["sparse", "dense", "fused", "rerank"];
  const expectedRows = c.expected.map((e) => {
    const shown = c.retrieved.find((x) => x.doc_id === e.doc_id);
    const lost = c.lost.find((l) => l.doc_id === e.doc_id);
    const ranks = shown ? Object.fromEntries(Object.entries(shown.stages).map(([k, v]) => [k, v.rank])) : (lost && lost.ranks) || {};
    return h(
      "tr",
      {},
      h("td", { "data-label": "document" }, e.doc_id),
      h("td", { "data-label": "anchor", class: "small" }, e.quote ? `“${e.quote}”` : e.span ? `chars ${e.span[0]}–${e.span[1]}` : "whole document"),
      h("td", { class: "num", "data-label": "grade" }, e.grade || 1),
      ...stagesOrder.map((s) => h("td", { class: "num", "data-label": s }, ranks[s] != null ? `#${ranks[s]}` : "–")),
      h("td", { "data-label": "outcome" }, shown ? h("span", { class: "badge good" }, `shown at #${shown.rank}`) : lost ? h("span", { class: "badge bad" }, `lost: ${lost.stage}`) : h("span", { class: "badge" }, "–")),
    );
  });
  const cited = new Set((gen && gen.cited) || []);
  const answerSentences = sentences(stripCitations(gen && gen.answer));
  const contexts = c.retrieved.map((x, i) => {
    const n = i + 1;
    const text = byId[x.chunk_id] || "";
    const evidence = claims.filter((cl) => cl.source === n && cl.supported).map((cl) => cl.evidence);
    const marks = cited.has(n) ? [...evidence, ...answerSentences] : evidence;
    return h(
      "div",
      { class: `passage${x.expected ? " picked" : ""}${cited.has(n) ? " is-cited" : ""}`, "data-rank": n },
      h("div", {}, h("b", {}, `[${n}] ${x.title || x.doc_id}`), " ", h("span", { class: "small muted" }, x.doc_id), " ", x.expected ? h("span", { class: "badge good" }, "expected") : null, cited.has(n) ? citedBadge() : null, " ", stageRanks(x.stages)),
      h("div", { class: "text" }, highlight(text, marks, "cited")),
    );
  });
  const unsupported = claims.filter((cl) => !cl.supported).map((cl) => cl.claim);
  show(
    typeof back === "function" ? back(view) : back,
    h("h1", { id: "case-question" }, c.question),
    h("p", {}, verdictBadge(c.verdict, view.good), " ", h("span", { id: "case-detail" }, c.verdict_detail)),
    lever ? h("p", { class: "summary", id: "case-lever" }, h("b", {}, "Lever: "), lever) : null,
    h("h2", {}, "Expected sources"),
    c.expected.length
      ? h("div", { class: "table-wrap" }, h("table", { class: "stack", id: "case-expected" }, h("thead", {}, h("tr", {}, ["document", "anchor", "grade", ...stagesOrder, "outcome"].map((t) => h("th", {}, t)))), h("tbody", {}, expectedRows)))
      : h("p", { class: "muted" }, "None: the corpus cannot answer this; the right behaviour is to decline."),
    h("h2", {}, "Answer"),
    gen
      ? [
          h("p", { class: "answer", id: "case-answer" }, highlight(gen.answer || (gen.error ? `error: ${gen.error.message}` : ""), unsupported, "unsupported")),
          claims.length
            ? h("ul", { class: "small" }, claims.map((cl) => h("li", {}, cl.supported ? "✓ " : "✗ ", cl.supported ? cl.claim : h("mark", { class: "unsupported" }, cl.claim), cl.source ? h("span", { class: "muted" }, ` — best evidence in [${cl.source}] (score ${fmt(cl.score, 2)})`) : null)))
            : null,
        ]
      : h("p", { class: "muted" }, "Retrieval-only audit: no answer was generated."),
    h("h2", {}, "Contexts the generator saw"),
    h("p", { class: "small muted" }, h("mark", { class: "cited" }, "highlighted"), ": sentences the answer cites or that support its claims."),
    contexts,
    label ? h("p", {}, h("a", { class: "button", href: label }, "Label this case")) : null,
  );
}
