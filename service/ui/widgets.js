// Pieces several pages share: badges, feedback buttons, the filters form, stage ranks.

import { api } from "./api.js";
import { fmt, h } from "./dom.js";
import { go, hashParts } from "./nav.js";

export function verdictBadge(v, good) {
  const cls = good && good.includes(v) ? "good" : v === "retrieved" ? "good" : "bad";
  return h("span", { class: `badge ${cls}` }, v);
}

export function feedbackButtons(item, onDone) {
  const fb = item.feedback || { up: 0, down: 0 };
  const status = h("span", { class: "small muted", role: "status" });
  const rate = async (rating, btn) => {
    try {
      await api("/v1/feedback", { method: "POST", body: { query_id: item.id, rating } });
      btn.setAttribute("aria-pressed", "true");
      if (rating > 0) fb.up += 1;
      else fb.down += 1;
      up.textContent = `▲ ${fb.up}`;
      down.textContent = `▼ ${fb.down}`;
      status.textContent = "thanks";
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
