// The golden set of a collection, as the server holds it: cases searched and paged, edited with the labelling
// checks (the audit's loader, the index), deleted, and the history of every change with an undo of each.

import { api, collections } from "./api.js";
import { enc, errorBox, fmtTime, h, show } from "./dom.js";
import { go } from "./nav.js";
import { sourceOut, sourcesEditor } from "./widgets.js";

const PAGE = 50;

const anchor = (e) => (e.quote ? `“${e.quote}”` : e.span ? `chars ${e.span[0]}–${e.span[1]}` : "whole document");

function sourcesText(c) {
  if (c.needs_label) return h("span", { class: "badge warn" }, "stub: to label");
  const exp = c.expected || [];
  if (!exp.length) return h("span", { class: "badge" }, "unanswerable");
  return h("ul", { class: "plain small" }, exp.map((e) => h("li", {}, h("b", {}, e.doc_id), ` · ${anchor(e)} · grade ${e.grade || 1}`)));
}

function summary(ch) {
  // what a change did, in a few words
  if (ch.action === "import") return `imported ${ch.after.cases} cases from ${ch.after.file}`;
  const b = ch.before, a = ch.after;
  if (!b) return `added: ${a.question}`;
  if (!a) return `deleted: ${b.question}`;
  const what = ["question", "expected", "answer", "tags"].filter((k) => JSON.stringify(b[k]) !== JSON.stringify(a[k]));
  return `changed ${what.join(", ") || "nothing"}`;
}

function historyTable(collection, items, onUndo) {
  if (!items.length) return h("p", { class: "muted" }, "No changes yet.");
  return h(
    "div",
    { class: "table-wrap" },
    h(
      "table",
      { class: "stack", id: "golden-history" },
      h("thead", {}, h("tr", {}, ["#", "When", "Who", "Case", "What", ""].map((t) => h("th", {}, t)))),
      h(
        "tbody",
        {},
        items.map((ch) =>
          h(
            "tr",
            { "data-change-id": ch.id, "data-action": ch.action },
            h("td", { class: "num", "data-label": "#" }, ch.id),
            h("td", { class: "small", "data-label": "When" }, fmtTime(ch.at)),
            h("td", { class: "small mono", "data-label": "Who" }, ch.who),
            h("td", { "data-label": "Case" }, ch.case_id ? h("a", { href: `#/golden/${enc(collection)}/case/${enc(ch.case_id)}` }, ch.case_id) : ""),
            h("td", { "data-label": "What" }, h("b", {}, ch.action === "revert" ? `undo of #${ch.reverts}` : ch.action), " ", h("span", { class: "small" }, summary(ch))),
            h(
              "td",
              {},
              ch.action === "import"
                ? null
                : ch.reverted_by
                  ? h("span", { class: "small muted" }, `undone by #${ch.reverted_by}`)
                  : h("button", { type: "button", class: "secondary undo", "data-undo": ch.id, onclick: () => onUndo(ch) }, "Undo"),
            ),
          ),
        ),
      ),
    ),
  );
}

async function undo(collection, ch, status, redraw) {
  try {
    const r = await api(`/v1/golden/${enc(collection)}/history/${ch.id}/revert`, { method: "POST" });
    status.replaceChildren(h("div", { class: "ok", role: "status" }, `Undid change #${ch.id} (case ${ch.case_id}); ${r.rows} cases now.`));
    await redraw();
  } catch (e) {
    status.replaceChildren(errorBox(e));
  }
}

export async function goldenPage(params) {
  const names = await collections();
  const collection = params.get("collection") || names[0];
  if (!collection) return show(h("h1", {}, "Golden set"), h("p", { class: "muted" }, "No collections visible to this key."));
  const q = params.get("q") || "";
  const offset = Math.max(0, Number(params.get("offset")) || 0);
  const status = h("div", { id: "golden-status", "aria-live": "polite" });
  const list = h("div", { id: "golden-list" });
  const hist = h("div", { id: "golden-history-box" });
  const base = `/v1/golden/${enc(collection)}`;

  const drawHistory = async () => {
    const data = await api(`${base}/history?limit=30`);
    hist.replaceChildren(historyTable(collection, data.items, (ch) => undo(collection, ch, status, redraw)));
  };
  const drawList = async () => {
    const p = new URLSearchParams({ limit: String(PAGE), offset: String(offset) });
    if (q) p.set("q", q);
    const data = await api(`${base}/cases?${p}`);
    const del = async (it) => {
      try {
        const r = await api(`${base}/cases/${enc(it.id)}?version=${it.version}`, { method: "DELETE" });
        status.replaceChildren(
          h("div", { class: "ok", role: "status" }, `Deleted case ${it.id}. `, h("button", { type: "button", class: "secondary", id: "golden-undo", onclick: () => undo(collection, r, status, redraw) }, "Undo")),
        );
        await redraw();
      } catch (e) {
        status.replaceChildren(errorBox(e));
      }
    };
    const pager = h(
      "p",
      { class: "row small" },
      `${data.total} of ${data.size} cases${q ? ` match “${q}”` : ""} · at most ${data.limit}`,
      offset > 0 ? h("a", { href: `#/golden?${new URLSearchParams({ collection, q, offset: String(Math.max(0, offset - PAGE)) })}` }, "← previous") : null,
      offset + PAGE < data.total ? h("a", { href: `#/golden?${new URLSearchParams({ collection, q, offset: String(offset + PAGE) })}` }, "next →") : null,
    );
    list.replaceChildren(
      pager,
      data.items.length
        ? h(
            "div",
            { class: "table-wrap" },
            h(
              "table",
              { class: "stack", id: "golden-cases" },
              h("thead", {}, h("tr", {}, ["Case", "Question", "Sources", "Reference answer", "Changed", ""].map((t) => h("th", {}, t)))),
              h(
                "tbody",
                {},
                data.items.map((it) =>
                  h(
                    "tr",
                    { "data-case-id": it.id },
                    h("td", { "data-label": "Case", class: "small" }, it.id, h("div", { class: "muted" }, `v${it.version}`)),
                    h("td", { "data-label": "Question" }, it.case.question || ""),
                    h("td", { "data-label": "Sources" }, sourcesText(it.case)),
                    h("td", { "data-label": "Reference answer" }, h("div", { class: "trunc small" }, it.case.answer || "")),
                    h("td", { "data-label": "Changed", class: "small" }, fmtTime(it.updated_at), h("div", { class: "muted mono" }, it.updated_by)),
                    h(
                      "td",
                      {},
                      h("span", { class: "row", style: "gap:.3rem" }, h("a", { class: "button secondary", href: `#/golden/${enc(collection)}/case/${enc(it.id)}` }, "Edit"), h("button", { type: "button", class: "secondary delete-case", onclick: () => del(it) }, "Delete")),
                    ),
                  ),
                ),
              ),
            ),
          )
        : h("p", { class: "muted" }, q ? "No case matches." : "No cases yet: label queries from the log or audit cases."),
    );
  };
  const redraw = async () => {
    await Promise.all([drawList(), drawHistory()]);
  };

  const search = h("input", { type: "search", name: "q", id: "golden-q", value: q, placeholder: "question words, document id, tag…", "aria-label": "Search cases" });
  const collSel = h("select", { name: "collection", id: "golden-collection", "aria-label": "Collection" }, names.map((n) => h("option", { value: n, selected: n === collection }, n)));
  const form = h("form", { class: "row card soft", id: "golden-search", role: "search" }, h("label", {}, "Collection", collSel), h("label", { style: "flex:1 1 18rem" }, "Search", search), h("button", { type: "submit", class: "secondary" }, "Search"));
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const p = new URLSearchParams({ collection: collSel.value });
    if (search.value.trim()) p.set("q", search.value.trim());
    go(`#/golden?${p}`);
  });
  if (params.get("saved")) status.replaceChildren(h("div", { class: "ok", role: "status" }, `Saved case ${params.get("saved")}.`));
  await redraw();
  show(
    h("h1", {}, `Golden set · ${collection}`),
    h("p", { class: "muted" }, "The cases audits of this collection run on, kept on the server with every change: who, when, before and after. Any change can be undone."),
    form,
    status,
    list,
    h("h2", {}, "History"),
    hist,
  );
}

export async function goldenCasePage(collection, caseId) {
  const base = `/v1/golden/${enc(collection)}`;
  const it = await api(`${base}/cases/${enc(caseId)}`);
  const c = it.case;
  const st = {
    question: c.question || (Array.isArray(c.turns) && c.turns.length ? c.turns[c.turns.length - 1].content || "" : ""),
    sources: (c.expected || []).map((e) => ({ doc_id: e.doc_id, quote: e.quote || "", span: e.span || null, grade: e.grade || 1 })),
    unanswerable: !c.needs_label && (c.expected || []).length === 0,
    answer: c.answer || "",
    tags: (c.tags || []).filter((t) => t !== "unanswerable").join(", "),
  };
  const err = h("div", { id: "case-error" });
  const qIn = h("textarea", { id: "case-question-input", value: st.question });
  const un = h("input", { type: "checkbox", id: "case-unanswerable", checked: st.unanswerable });
  const sources = sourcesEditor(st.sources, () => {}, "case-sources");
  const ans = h("textarea", { id: "case-answer-input", value: st.answer, placeholder: "Reference answer (optional; empty: none)" });
  const tags = h("input", { type: "text", id: "case-tags", value: st.tags, class: "wide" });
  const saveBtn = h("button", { type: "submit", id: "case-save" }, "Save changes");
  const toggle = () => sources.classList.toggle("disabled", un.checked);
  un.addEventListener("change", toggle);
  toggle();
  const form = h(
    "form",
    { id: "case-form" },
    h("p", { class: "small" }, h("a", { href: `#/golden?collection=${enc(collection)}` }, `← golden set of ${collection}`)),
    h("h1", {}, `Case ${it.id}`),
    h("p", { class: "muted small" }, `Version ${it.version} · changed ${fmtTime(it.updated_at)} by ${it.updated_by}`, c.source && c.source.query_id ? [" · from ", h("a", { href: `#/query/${c.source.query_id}` }, "a logged query")] : null),
    c.needs_label ? h("p", { class: "alert", role: "note" }, "A stub: audits skip it until it is labelled; saving labels it.") : null,
    h("label", { class: "field", for: "case-question-input" }, "Question", qIn),
    h("h2", {}, "Sources that answer it"),
    h("label", { class: "inline card soft", for: "case-unanswerable" }, un, "Unanswerable from this corpus (the right answer is to decline)"),
    sources,
    h("button", { type: "button", class: "secondary", id: "case-add-source", onclick: () => { st.sources.push({ doc_id: "", quote: "", span: null, grade: 1 }); sources.redraw(); } }, "Add a source"),
    h("h2", {}, "Reference answer"),
    ans,
    h("div", { class: "row" }, h("label", { style: "flex:1 1 20rem" }, "Tags (comma-separated)", tags)),
    err,
    h("p", { class: "row" }, saveBtn),
  );
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    err.replaceChildren();
    const body = {
      question: qIn.value,
      expected: un.checked ? [] : st.sources.filter((e) => e.doc_id || e.quote || e.span).map(sourceOut),
      answer: ans.value.trim() ? ans.value : null,
      unanswerable: un.checked,
      tags: tags.value.split(",").map((t) => t.trim()).filter(Boolean),
      version: it.version,
    };
    saveBtn.disabled = true;
    try {
      const r = await api(`${base}/cases/${enc(it.id)}`, { method: "PUT", body });
      go(`#/golden?${new URLSearchParams({ collection, saved: `${r.id} v${r.version}` })}`);
    } catch (e) {
      err.replaceChildren(errorBox(e)); // every edit is kept; fix and save again
      saveBtn.disabled = false;
      err.scrollIntoView({ block: "center" });
    }
  });
  const hist = h("div", { id: "case-history" });
  const drawHistory = async () => {
    const data = await api(`${base}/history?${new URLSearchParams({ case_id: it.id, limit: "20" })}`);
    hist.replaceChildren(historyTable(collection, data.items, (ch) => undo(collection, ch, err, () => goldenCasePage(collection, caseId).catch(() => go(`#/golden?collection=${enc(collection)}`)))));
  };
  await drawHistory();
  show(form, h("h2", {}, "History of this case"), hist);
  qIn.focus();
}
