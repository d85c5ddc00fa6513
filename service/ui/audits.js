// Audits: the golden sets to audit, the audits started in this tab, starting one.

import { ApiError, api, collections } from "./api.js";
import { enc, errorBox, fmtTime, h, show } from "./dom.js";
import { go } from "./nav.js";

const AUDITS = "rag-why.audits";

export function knownAudits() {
  return JSON.parse(sessionStorage.getItem(AUDITS) || "[]");
}
export function rememberAudit(job) {
  const list = knownAudits().filter((a) => a.id !== job.id);
  list.unshift({ id: job.id, collection: job.collection, created_at: job.created_at });
  sessionStorage.setItem(AUDITS, JSON.stringify(list.slice(0, 50)));
}

export async function startAudit(collection, generate) {
  const g = await api(`/v1/golden/${enc(collection)}`);
  if (g.error) throw new ApiError(422, "golden_set_invalid", g.error);
  const job = await api("/v1/audits", { method: "POST", body: { collection, cases: g.rows, generate } });
  rememberAudit(job);
  go(`#/audit/${job.id}`);
}

export async function auditsPage() {
  const names = await collections();
  const sets = await Promise.all(names.map(async (n) => ({ name: n, g: await api(`/v1/golden/${enc(n)}`) })));
  const cards = sets.map(({ name, g }) => {
    const labelled = g.rows.filter((r) => !r.needs_label).length;
    const gen = h("input", { type: "checkbox", id: `generate-${name}`, checked: true });
    const err = h("div");
    const btn = h("button", { type: "button", id: `start-audit-${name}`, disabled: !labelled || !!g.error }, "Start audit");
    btn.addEventListener("click", async () => {
      btn.disabled = true;
      try {
        await startAudit(name, gen.checked);
      } catch (e) {
        err.replaceChildren(errorBox(e));
        btn.disabled = false;
      }
    });
    return h(
      "div",
      { class: "card" },
      h("h3", { style: "margin-top:0" }, name),
      h("p", { class: "small muted" }, `${g.file}: ${labelled} labelled cases${g.rows.length - labelled ? `, ${g.rows.length - labelled} stubs` : ""}`),
      g.error ? errorBox(g.error) : null,
      h("div", { class: "row" }, h("label", { class: "inline", for: `generate-${name}` }, gen, "Generate and judge answers"), btn),
      err,
    );
  });
  const openId = h("input", { type: "text", id: "open-audit", placeholder: "audit id", "aria-label": "Audit id" });
  const known = knownAudits();
  show(
    h("h1", {}, "Audits"),
    h("h2", {}, "Golden sets"),
    cards.length ? cards : h("p", { class: "muted" }, "No collections visible to this key."),
    h("h2", {}, "Audits started here"),
    known.length
      ? h("ul", { id: "audit-list" }, known.map((a) => h("li", {}, h("a", { href: `#/audit/${a.id}` }, a.id), ` · ${a.collection} · ${fmtTime(a.created_at)}`)))
      : h("p", { class: "muted" }, "None in this tab yet."),
    h("form", { class: "row", onsubmit: (ev) => { ev.preventDefault(); if (openId.value.trim()) go(`#/audit/${openId.value.trim()}`); } }, openId, h("button", { type: "submit", class: "secondary" }, "Open")),
  );
}
