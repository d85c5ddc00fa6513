// The query log: the Ask form, the filtered list of logged queries, and one query with its feedback.

import { api, collections } from "./api.js";
import { askForm } from "./ask.js";
import { enc, errorBox, fmt, fmtTime, h, show } from "./dom.js";
import { citedAnswer, contextPassages, feedbackButtons, filtersForm, signalBadges } from "./widgets.js";

export async function queriesPage(params) {
  const names = await collections();
  const ask = askForm(names, async () => list.replaceChildren(await queryTable(params)));
  const list = h("div", { id: "query-list" }, await queryTable(params));
  show(
    h("h1", {}, "Query log"),
    ask,
    filtersForm(params, names, [
      { name: "since", label: "Since", options: [["", "any time"], ["24h", "24 hours"], ["7d", "7 days"], ["30d", "30 days"]] },
      { name: "rating", label: "Feedback", options: [["", "any"], ["down", "thumbs down"], ["up", "thumbs up"], ["any", "rated"], ["none", "not rated"]] },
      { name: "declined", label: "Declined", options: [["", "any"], ["true", "declined"], ["false", "answered"]] },
      { name: "labelled", label: "Labelled", options: [["", "any"], ["false", "not yet"], ["true", "labelled"]] },
      { name: "q", label: "Text" },
    ]),
    list,
  );
}

async function queryTable(params) {
  const p = new URLSearchParams(params);
  p.set("limit", "50");
  const data = await api(`/v1/queries?${p}`);
  if (!data.enabled) return h("p", { class: "muted" }, "The query log is off (RAG_QUERY_LOG=false).");
  if (!data.items.length) return h("p", { class: "muted" }, "No logged queries match.");
  return h(
    "div",
    { class: "table-wrap" },
    h("p", { class: "small muted" }, `${data.total} queries`),
    h(
      "table",
      { class: "stack", id: "queries" },
      h("thead", {}, h("tr", {}, ["When", "Collection", "Question", "Answer", "Signals", "Feedback", ""].map((t) => h("th", {}, t)))),
      h(
        "tbody",
        {},
        data.items.map((it) =>
          h(
            "tr",
            { "data-query-id": it.id },
            h("td", { "data-label": "When", class: "small" }, fmtTime(it.created_at)),
            h("td", { "data-label": "Collection" }, it.collection),
            h("td", { "data-label": "Question" }, h("a", { href: `#/query/${it.id}` }, it.question)),
            h("td", { "data-label": "Answer" }, h("div", { class: "trunc small" }, it.answer || "")),
            h("td", { "data-label": "Signals" }, signalBadges(it)),
            h("td", { "data-label": "Feedback" }, feedbackButtons(it)),
            h("td", {}, h("a", { class: "button secondary", href: `#/label/q/${it.id}` }, "Label")),
          ),
        ),
      ),
    ),
  );
}

export async function queryPage(id) {
  const r = await api(`/v1/queries/${enc(id)}`);
  const comment = h("textarea", { id: "fb-comment", name: "comment", placeholder: "What was wrong? (optional)" });
  const doc = h("input", { type: "text", id: "fb-doc", name: "correct_doc_id", placeholder: "the document that answers it (optional)", class: "wide" });
  const status = h("div", { role: "status" });
  const feedbackList = (items) =>
    items.length
      ? h("ul", {}, items.map((f) => h("li", {}, f.rating > 0 ? "▲ " : "▼ ", f.comment || "", f.correct_doc_id ? ` (answer in ${f.correct_doc_id})` : "", h("span", { class: "small muted" }, ` ${fmtTime(f.created_at)}`))))
      : h("p", { class: "muted" }, "None yet.");
  const given = h("div", { id: "feedback-list" }, feedbackList(r.feedback));
  const send = async (rating) => {
    try {
      await api("/v1/feedback", { method: "POST", body: { query_id: id, rating, comment: comment.value || null, correct_doc_id: doc.value || null } });
      status.replaceChildren(h("div", { class: "ok" }, "Feedback saved."));
      given.replaceChildren(feedbackList((await api(`/v1/queries/${enc(id)}`)).feedback)); // the list, with it
    } catch (e) {
      status.replaceChildren(errorBox(e));
    }
  };
  const cited = new Set((r.citations || []).map((c) => c.number));
  show(
    h("h1", {}, r.question),
    h(
      "dl",
      { class: "kv" },
      h("dt", {}, "Collection"), h("dd", {}, r.collection),
      h("dt", {}, "When"), h("dd", {}, fmtTime(r.created_at)),
      h("dt", {}, "Generator"), h("dd", {}, r.generator || "none"),
      h("dt", {}, "Settings"), h("dd", { class: "small" }, `${r.settings.mode}, ${r.settings.fusion}, top ${r.settings.top_k} of ${r.settings.candidates}`),
      h("dt", {}, "Timings"), h("dd", { class: "small" }, Object.entries(r.timings || {}).map(([k, v]) => `${k} ${Math.round(v)} ms`).join(", ")),
      h("dt", {}, "Signals"), h("dd", {}, signalBadges(r), r.faithfulness != null ? h("span", { class: "badge" }, `faithfulness ${fmt(r.faithfulness, 2)}`) : null),
    ),
    h("h2", {}, "Answer"),
    citedAnswer(r.answer || "(none)", r.citations, r.contexts, "query", { id: "query-answer" }),
    h("p", {}, h("a", { class: "button", href: `#/label/q/${id}` }, "Label this query")),
    h("h2", {}, "Feedback"),
    given,
    h("div", { class: "card soft" }, h("label", { class: "field" }, "Comment", comment), h("label", { class: "field" }, "Correct document id", doc),
      h("p", { class: "row" }, h("button", { type: "button", onclick: () => send(1) }, "▲ Good"), h("button", { type: "button", onclick: () => send(-1) }, "▼ Wrong")), status),
    h("h2", {}, "Contexts the generator saw"),
    h("div", { id: "query-contexts" }, contextPassages(r.contexts, cited)),
  );
}
