// The Ask form at the top of the query log: one question to /v1/query, the answer with its [n] markers linked
// to the sources it cites, the contexts (the cited ones marked), its feedback buttons.

import { api } from "./api.js";
import { errorBox, h } from "./dom.js";
import { citedAnswer, contextPassages, feedbackButtons } from "./widgets.js";

// onAsked: awaited after each answer (the log redraws its table); its errors show here like the query's
export function askForm(names, onAsked) {
  const defaultCollection = names[0] || "";
  const q = h("input", { type: "text", id: "ask-question", name: "question", class: "wide", placeholder: "Ask a question…", required: true, "aria-label": "Question" });
  const askIn = h("select", { id: "ask-collection", "aria-label": "Collection" }, names.map((n) => h("option", { value: n }, n)));
  const result = h("div", { id: "ask-result", "aria-live": "polite" });
  const ask = h(
    "form",
    { class: "card", id: "ask-form" },
    h("h2", { style: "margin-top:0" }, "Ask"),
    h("div", { class: "row" }, h("div", { style: "flex:1 1 20rem" }, q), askIn, h("button", { type: "submit" }, "Ask")),
    result,
  );
  ask.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    result.replaceChildren(h("p", { class: "muted" }, "Asking…"));
    try {
      const r = await api("/v1/query", { method: "POST", body: { question: q.value, collection: askIn.value || defaultCollection } });
      const item = { id: r.query_id, feedback: { up: 0, down: 0 } };
      const cited = new Set((r.citations || []).map((c) => c.number));
      result.replaceChildren(
        ...citedAnswer(r.answer || "(no answer)", r.citations, r.contexts, "ask", { id: "ask-answer" }),
        h(
          "p",
          { class: "row" },
          r.query_id
            ? [h("span", { class: "small muted" }, "query ", h("code", { id: "ask-query-id" }, r.query_id)), feedbackButtons(item), h("a", { class: "button", href: `#/label/q/${r.query_id}`, id: "ask-label" }, "Label this query")]
            : h("span", { class: "small muted" }, "The query log is off: nothing was recorded."),
        ),
        (r.contexts || []).length
          ? h("div", { id: "ask-contexts" }, h("h3", {}, `Contexts the generator saw (${r.contexts.length}, ${cited.size} cited)`), contextPassages(r.contexts, cited, true))
          : null,
      );
      await onAsked();
    } catch (e) {
      result.replaceChildren(errorBox(e));
    }
  });
  return ask;
}
