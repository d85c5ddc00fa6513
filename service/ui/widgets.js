// Pieces several pages share: badges, feedback buttons, the filters form, stage ranks.

import { api } from "./api.js";
import { fmt, h } from "./dom.js";
import { go, hashParts } from "./nav.js";

export function verdictBadge(v, good) {
  const cls = good && good.includes(v) ? "good" : v === "retrieved" ? "good" : "bad";
  return h("span", { class: `badge ${cls}` }, v);
}

export function feedbackButtons(item, onDone) {
  // One vote per API key and query: a second click replaces this key's vote (the server says which it was).
  const fb = item.feedback || { up: 0, down: 0 };
  const status = h("span", { class: "small muted", role: "status" });
  const rate = async (rating, btn) => {
    try {
      const r = await api("/v1/feedback", { method: "POST", body: { query_id: item.id, rating } });
      const prev = r.previous_rating;
      if (prev !== rating) {
        if (prev > 0) fb.up -= 1;
        else if (prev < 0) fb.down -= 1;
        if (rating > 0) fb.up += 1;
        else fb.down += 1;
      }
      up.setAttribute("aria-pressed", String(rating > 0));
      down.setAttribute("aria-pressed", String(rating < 0));
      up.textContent = `▲ ${fb.up}`;
      down.textContent = `▼ ${fb.down}`;
      status.textContent = prev != null && prev !== rating ? "vote changed" : "thanks";
      if (onDone) onDone();
    } catch (e) {
      status.textContent = e.message;
    }
  };
  const up = h("button", { type: "button", class: "icon", "aria-label": "Thumbs up", title: "Good answer" }, `▲ ${fb.up}`);
  const down = h("button", { type: "button", class: "icon", "aria-label": "Thumbs down", title: "Wrong answer" }, `▼ ${fb.down}`);
  up.addEventListener("click", () => rate(1, up));
  down.addEventListener("click", () => rate(-1, down));
  return h("span", { class: "row", style: "gap:.3rem;align-items:center" }, up, down, status);
}

// Sources of a golden case typed by hand (document id, quote or [start, end) span, grade), edited in place:
// the label page's "another source" and the golden set's case editor share it. `onChange` after each edit.
export function sourcesEditor(list, onChange, id) {
  const box = h("div", { id });
  const draw = () => {
    box.replaceChildren(
      ...list.map((e, j) => {
        const doc = h("input", { type: "text", value: e.doc_id || "", "aria-label": "Document id", placeholder: "document id" });
        const quote = h("input", { type: "text", value: e.quote || "", "aria-label": "Quote", placeholder: "quote (optional)", class: "wide" });
        const span = h("input", { type: "text", value: e.span ? `${e.span[0]}-${e.span[1]}` : "", "aria-label": "Span", placeholder: "start-end", size: 11 });
        const grades = [...new Set([1, 2, 3, e.grade || 1])];
        const grade = h("select", { "aria-label": "Grade" }, grades.map((v) => h("option", { value: v, selected: (e.grade || 1) === v }, v)));
        const sync = () => {
          const m = span.value.match(/^\s*(\d+)\s*[-–,]\s*(\d+)\s*$/);
          Object.assign(e, { doc_id: doc.value.trim(), quote: quote.value, grade: Number(grade.value), span: m ? [Number(m[1]), Number(m[2])] : span.value.trim() || null });
          onChange();
        };
        [doc, quote, span].forEach((x) => x.addEventListener("input", sync));
        grade.addEventListener("change", sync);
        const rm = h("button", { type: "button", class: "secondary", onclick: () => { list.splice(j, 1); onChange(); draw(); } }, "Remove");
        return h("div", { class: "row card source" }, h("label", {}, "Document", doc), h("label", { style: "flex:1 1 14rem" }, "Quote", quote), h("label", {}, "Span", span), h("label", {}, "Grade", grade), rm);
      }),
    );
  };
  draw();
  box.redraw = draw;
  return box;
}

// A typed source as the golden set has it: a quote if one is given, else a span if one is; a span that is no
// [start, end] goes as typed, for the loader to name.
export function sourceOut(e) {
  const x = { doc_id: e.doc_id, grade: e.grade || 1 };
  if (e.quote !== "" && e.quote != null) x.quote = e.quote;
  else if (e.span != null && e.span !== "") x.span = e.span;
  return x;
}

export function signalBadges(item) {
  const out = [];
  if (item.declined) out.push(h("span", { class: "badge warn" }, "declined"));
  if (item.generation_error) out.push(h("span", { class: "badge bad" }, item.generation_error));
  if (item.unsupported_claims) out.push(h("span", { class: "badge bad" }, `${item.unsupported_claims} unsupported`));
  if (item.top_score != null) out.push(h("span", { class: "badge", title: "best dense cosine" }, `top ${fmt(item.top_score, 2)}`));
  if (item.retriever_agreement != null && item.retriever_agreement < 0.5)
    out.push(h("span", { class: "badge warn", title: "top-10 documents shared by BM25 and dense" }, `agree ${fmt(item.retriever_agreement, 2)}`));
  if (item.labelled_case) out.push(h("span", { class: "badge good" }, `labelled ${item.labelled_case}`));
  return out;
}

export function filtersForm(params, names, fields) {
  const form = h("form", { class: "row card soft", "aria-label": "Filters" });
  const sel = (name, label, options) =>
    h(
      "label",
      {},
      label,
      h("select", { name }, options.map(([v, t]) => h("option", { value: v, selected: (params.get(name) || "") === v }, t))),
    );
  form.append(
    sel("collection", "Collection", [["", "all"], ...names.map((n) => [n, n])]),
    ...fields.map((f) => (f.options ? sel(f.name, f.label, f.options) : h("label", {}, f.label, h("input", { type: "search", name: f.name, value: params.get(f.name) || "" })))),
    h("button", { type: "submit", class: "secondary" }, "Apply"),
  );
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const p = new URLSearchParams();
    for (const [k, v] of new FormData(form).entries()) if (v) p.set(k, v);
    go(`#${hashParts().path}?${p}`);
  });
  return form;
}

export function stageRanks(stages) {
  return ["sparse", "dense", "fused", "rerank"]
    .filter((s) => stages && stages[s])
    .map((s) => h("span", { class: "badge" }, `${s} #${stages[s].rank}`));
}

// The answer's citations: `[n]` markers and the contexts they name (context n is the answer's source n).
const CITE = /\[(\d+(?:\s*,\s*\d+)*)\]/g;
const squash = (s) => (s || "").replace(/\s+/g, " ").trim();

export function citedBadge() {
  return h("span", { class: "badge cited-badge", title: "The answer cites this context" }, "cited");
}

// The text before each marker (back to the previous one) is what the marker's sources back.
function citedSegments(answer) {
  const out = new Map(); // n -> [segment]
  let prev = 0;
  for (const m of (answer || "").matchAll(CITE)) {
    const seg = squash(answer.slice(prev, m.index)).replace(/^[\s.,;:!?)]+/, "");
    for (const n of m[1].split(",").map((x) => Number(x.trim()))) out.set(n, [...(out.get(n) || []), seg]);
    prev = m.index + m[0].length;
  }
  return out;
}

// The answer with each [n] a link to its source below, then the numbered list of the sources it cites: the
// document id, the characters of the chunk, and the span quoted from it (the answer's words where they are the
// context's, else the start of the chunk). `prefix` names the ids (one page may hold two answers).
export function citedAnswer(answer, citations, contexts, prefix, attrs = {}) {
  const byN = new Map((citations || []).map((c) => [c.number, c]));
  const jump = (n) => (ev) => {
    ev.preventDefault(); // a hash link would be taken by the router
    const t = document.getElementById(`${prefix}-source-${n}`);
    if (t) {
      t.scrollIntoView({ block: "nearest" });
      t.focus();
    }
  };
  const parts = [];
  let pos = 0;
  const text = answer || "";
  for (const m of text.matchAll(CITE)) {
    const nums = m[1].split(",").map((x) => Number(x.trim()));
    parts.push(text.slice(pos, m.index), "[");
    nums.forEach((n, i) => {
      if (i) parts.push(", ");
      parts.push(byN.has(n) ? h("a", { href: `#${prefix}-source-${n}`, class: "cite", "data-source": n, "aria-label": `source ${n}`, onclick: jump(n) }, String(n)) : String(n));
    });
    parts.push("]");
    pos = m.index + m[0].length;
  }
  parts.push(text.slice(pos));
  const para = h("p", { class: "answer", ...attrs }, parts);
  if (!byN.size) return [para];
  const segments = citedSegments(text);
  const sources = [...byN.values()].sort((a, b) => a.number - b.number).map((c) => {
    const ctx = (contexts || [])[c.number - 1] || {};
    const hay = squash(ctx.text);
    const quoted = (segments.get(c.number) || []).filter((s) => s.length >= 8 && hay.includes(s));
    return h(
      "li",
      { id: `${prefix}-source-${c.number}`, value: c.number, tabindex: "-1", "data-doc-id": c.doc_id },
      h("b", {}, c.title || c.doc_id), " ", h("span", { class: "mono" }, c.doc_id), h("span", { class: "small muted" }, ` · chars ${c.start}–${c.end}`),
      h("blockquote", { class: "quote small" }, quoted.length ? quoted.join(" … ") : c.snippet),
    );
  });
  return [para, h("h3", {}, "Sources"), h("ol", { class: "sources", id: `${prefix}-sources` }, sources)];
}

// The contexts the generator saw, numbered as the answer cites them, each cited one marked. `collapsed`: the
// texts fold under each context's line (the Ask result); else they show (a logged query).
export function contextPassages(contexts, cited, collapsed = false) {
  return (contexts || []).map((c, i) => {
    const n = i + 1;
    const head = [h("b", {}, `[${n}] ${c.title || c.doc_id}`), " ", h("span", { class: "small muted" }, c.doc_id), " ", cited.has(n) ? citedBadge() : null, " ", stageRanks(c.stages)];
    const cls = `passage${cited.has(n) ? " is-cited" : ""}`;
    return collapsed
      ? h("details", { class: cls, "data-rank": n }, h("summary", {}, head), h("div", { class: "text" }, c.text || ""))
      : h("div", { class: cls, "data-rank": n }, h("div", {}, head), h("div", { class: "text" }, c.text || ""));
  });
}
