// To label: unlabelled logged queries, ranked by how likely they are to be wrong.

import { api, collections } from "./api.js";
import { errorBox, fmt, h, show } from "./dom.js";
import { filtersForm } from "./widgets.js";

export async function candidatesPage(params) {
  const names = await collections();
  const p = new URLSearchParams(params);
  if (!p.get("since")) p.set("since", "7d");
  p.set("limit", p.get("limit") || "50");
  let body;
  try {
    const items = await api(`/v1/queries/candidates?${p}`);
    body = items.length
      ? h(
          "div",
          { class: "table-wrap" },
          h(
            "table",
            { class: "stack", id: "candidates" },
            h("thead", {}, h("tr", {}, ["Score", "Why", "Question", "Collection", "Asked", ""].map((t) => h("th", {}, t)))),
            h(
              "tbody",
              {},
              items.map((it) =>
                h(
                  "tr",
                  { "data-query-id": it.id },
                  h("td", { class: "num", "data-label": "Score" }, fmt(it.score, 2)),
                  h("td", { "data-label": "Why" }, Object.entries(it.signals).map(([k, v]) => h("span", { class: `badge ${v > 0 ? "bad" : "good"}`, title: `+${v}` }, k.replaceAll("_", " ")))),
                  h("td", { "data-label": "Question" }, h("a", { href: `#/query/${it.id}` }, it.question)),
                  h("td", { "data-label": "Collection" }, it.collection),
                  h("td", { class: "num", "data-label": "Asked" }, it.times_asked),
                  h("td", {}, h("a", { class: "button", href: `#/label/q/${it.id}` }, "Label")),
                ),
              ),
            ),
          ),
        )
      : h("p", { class: "muted" }, "Nothing to label in this window.");
  } catch (e) {
    body = errorBox(e);
  }
  show(
    h("h1", {}, "To label"),
    h("p", { class: "muted" }, "Unlabelled queries ranked by thumbs-down, declines, unsupported claims, low top scores and retrievers that disagree; one per distinct question."),
    filtersForm(p, names, [{ name: "since", label: "Since", options: [["24h", "24 hours"], ["7d", "7 days"], ["30d", "30 days"], ["365d", "a year"]] }]),
    body,
  );
}
