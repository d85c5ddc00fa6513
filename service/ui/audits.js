// Audits: the golden sets to audit, every audit on the server this key may read, starting one.

import { api, collections } from "./api.js";
import { enc, errorBox, fmtTime, h, show } from "./dom.js";
import { go } from "./nav.js";

// The history lives on the server (GET /v1/audits): audits from the API, the CLI and other tabs alike.
export async function knownAudits() {
  return (await api("/v1/audits?limit=100")).items;
}

function settingsText(a) {
  const s = a.settings || {};
  const parts = [s.mode, s.fusion, s.cut != null ? `top ${s.cut}` : null, s.generate ? `generator ${s.generator || "on"}` : "retrieval only"];
  return parts.filter(Boolean).join(", ");
}

function auditRow(a) {
  const verdicts = a.verdicts ? Object.entries(a.verdicts).map(([v, n]) => `${v} ${n}`).join(", ") : "";
  return h(
    "tr",
    {},
    h("td", {}, h("a", { href: `#/audit/${a.id}` }, a.id.slice(0, 8))),
    h("td", {}, a.collection),
    h("td", {}, a.status),
    h("td", { class: "num" }, a.cases),
    h("td", { class: "small" }, settingsText(a)),
    h("td", { class: "small mono", title: "the golden set's hash: runs compare only on the same set" }, a.golden_hash || ""),
    h("td", { class: "small" }, verdicts),
    h("td", { class: "small" }, fmtTime(a.created_at)),
  );
}

// No cases sent: the server audits the collection's golden set as it holds it (its database, shared by replicas).
export async function startAudit(collection, generate) {
  const job = await api("/v1/audits", { method: "POST", body: { collection, generate } });
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
      h("p", { class: "small muted" }, `Golden set: ${labelled} labelled cases${g.rows.length - labelled ? `, ${g.rows.length - labelled} stubs` : ""} · `, h("a", { href: `#/golden?collection=${enc(name)}` }, "edit it")),
      g.error ? errorBox(g.error) : null,
      h("div", { class: "row" }, h("label", { class: "inline", for: `generate-${name}` }, gen, "Generate and judge answers"), btn),
      err,
    );
  });
  const openId = h("input", { type: "text", id: "open-audit", placeholder: "audit id", "aria-label": "Audit id" });
  const known = await knownAudits();
  show(
    h("h1", {}, "Audits"),
    h("h2", {}, "Golden sets"),
    cards.length ? cards : h("p", { class: "muted" }, "No collections visible to this key."),
    h("h2", {}, "Audits"),
    known.length
      ? h("div", { class: "table-wrap" }, h("table", { id: "audit-list" }, h("thead", {}, h("tr", {}, ["audit", "collection", "status", "cases", "settings", "golden set", "verdicts", "started"].map((x) => h("th", {}, x)))), h("tbody", {}, known.map(auditRow))))
      : h("p", { class: "muted" }, "No audits yet."),
    h("form", { class: "row", onsubmit: (ev) => { ev.preventDefault(); if (openId.value.trim()) go(`#/audit/${openId.value.trim()}`); } }, openId, h("button", { type: "submit", class: "secondary" }, "Open")),
  );
}
