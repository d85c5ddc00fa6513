// Experiments: the form (golden set, 2–4 variant TOMLs, kept as a draft) and the experiments started here.

import { ApiError, api, collections } from "./api.js";
import { enc, errorBox, fmtTime, h, show } from "./dom.js";
import { go } from "./nav.js";

const EXPERIMENT_DRAFT = "rag-why.experiment-draft";
const EXAMPLE_VARIANTS = [
  `# The baseline: the service's defaults. Every other variant is compared with it.
name = "baseline"
description = "the service's defaults"
`,
  `# Ten chunks to the generator instead of five: the lever when an audit says "below_cut".
name = "top10"
description = "top_k 10"
[retrieval]
top_k = 10
`,
  `# Reciprocal rank fusion (k = 60) instead of the default fusion.
# With a reranker configured (RAG_RERANK_MODEL), try rerank = true instead.
name = "rrf-k60"
description = "RRF k=60"
[retrieval]
fusion = "rrf"
rrf_k = 60
`,
  `# Dense retrieval alone: what BM25 adds.
name = "dense-only"
[retrieval]
mode = "dense"
`,
];

// The history lives on the server (GET /v1/experiments): from the API and every tab alike.
async function knownExperiments() {
  return (await api("/v1/experiments?limit=100")).items;
}

function parseCases(text) {
  // JSONL (one case per line) or a JSON array of cases; the server validates the fields
  const t = text.trim();
  if (!t) throw new Error("The golden set is empty: paste JSONL cases, upload a file or use the collection's golden set.");
  if (t.startsWith("[")) {
    try {
      return JSON.parse(t);
    } catch (e) {
      throw new Error(`The golden set is not a JSON array: ${e.message}`);
    }
  }
  const cases = [];
  t.split("\n").forEach((line, i) => {
    if (!line.trim()) return;
    try {
      cases.push(JSON.parse(line));
    } catch (e) {
      throw new Error(`Golden set, line ${i + 1}: not JSON (${e.message})`);
    }
  });
  return cases;
}

export async function experimentsPage() {
  const names = await collections();
  const st = JSON.parse(sessionStorage.getItem(EXPERIMENT_DRAFT) || "null") || { collection: names[0] || "", golden: "", variants: EXAMPLE_VARIANTS.slice(0, 3), ks: "1,3,5,10", generate: false };
  const save = () => sessionStorage.setItem(EXPERIMENT_DRAFT, JSON.stringify(st));
  const collSel = h("select", { id: "exp-collection", "aria-label": "Collection" }, names.map((n) => h("option", { value: n, selected: n === st.collection }, n)));
  const golden = h("textarea", { id: "exp-golden", class: "code", value: st.golden, placeholder: '{"id": "q1", "question": "…", "expected": [{"doc_id": "…"}]}', "aria-label": "Golden set (JSONL)" });
  const file = h("input", { type: "file", id: "exp-golden-file", accept: ".jsonl,.json,.txt", "aria-label": "Upload a golden set" });
  const note = h("span", { class: "small muted", role: "status", id: "exp-golden-note" });
  const loadBtn = h("button", { type: "button", class: "secondary", id: "exp-load-golden" }, "Use the collection's golden set");
  const ks = h("input", { type: "text", id: "exp-ks", value: st.ks, "aria-label": "Cut-offs k" });
  const gen = h("input", { type: "checkbox", id: "exp-generate", checked: st.generate });
  const list = h("div", { class: "variants", id: "exp-variants" });
  const addBtn = h("button", { type: "button", class: "secondary", id: "exp-add-variant" }, "Add a variant");
  const err = h("div", { id: "exp-error" });
  const runBtn = h("button", { type: "submit", id: "exp-run" }, "Run experiment");
  const drawVariants = () => {
    list.replaceChildren(
      ...st.variants.map((text, i) => {
        const ta = h("textarea", { class: "code exp-variant", id: `exp-variant-${i + 1}`, value: text, spellcheck: "false" });
        ta.addEventListener("input", () => {
          st.variants[i] = ta.value;
          save();
        });
        const rm = st.variants.length > 2 ? h("button", { type: "button", class: "secondary", onclick: () => { st.variants.splice(i, 1); save(); drawVariants(); } }, "Remove") : null;
        return h("div", { class: "card" }, h("label", { class: "field", for: `exp-variant-${i + 1}` }, i === 0 ? "Variant 1 (the baseline)" : `Variant ${i + 1}`, ta), rm);
      }),
    );
    addBtn.disabled = st.variants.length >= 4;
  };
  drawVariants();
  addBtn.addEventListener("click", () => {
    st.variants.push(EXAMPLE_VARIANTS[st.variants.length] || "name = \"another\"\n[retrieval]\n");
    save();
    drawVariants();
  });
  golden.addEventListener("input", () => { st.golden = golden.value; save(); });
  ks.addEventListener("input", () => { st.ks = ks.value; save(); });
  gen.addEventListener("change", () => { st.generate = gen.checked; save(); });
  collSel.addEventListener("change", () => { st.collection = collSel.value; save(); });
  file.addEventListener("change", async () => {
    const f = file.files && file.files[0];
    if (!f) return;
    golden.value = st.golden = await f.text();
    save();
    note.textContent = `read ${f.name}`;
  });
  loadBtn.addEventListener("click", async () => {
    err.replaceChildren();
    try {
      const g = await api(`/v1/golden/${enc(collSel.value)}`);
      if (g.error) throw new ApiError(422, "golden_set_invalid", g.error);
      const rows = g.rows.filter((r) => !r.needs_label);
      golden.value = st.golden = rows.map((r) => JSON.stringify(r)).join("\n");
      save();
      note.textContent = `${rows.length} labelled cases from ${g.file}`;
    } catch (e) {
      err.replaceChildren(errorBox(e));
    }
  });
  const form = h(
    "form",
    { id: "experiment-form" },
    h("div", { class: "row" }, h("label", {}, "Collection", collSel), h("label", {}, "Cut-offs k", ks), h("label", { class: "inline", for: "exp-generate" }, gen, "Generate and judge answers")),
    h("h2", {}, "Golden set"),
    h("p", { class: "small muted" }, "One case per line (JSONL), as in a golden set file; or upload one, or take the collection's (labelled in this UI)."),
    golden,
    h("div", { class: "row" }, file, loadBtn, note),
    h("h2", {}, "Variants"),
    h("p", { class: "small muted" }, "Each is a variant TOML (examples/variants/): [retrieval] mode, fusion, rrf_k, weights, top_k, candidates, rerank; [generation] generator, prompt (a built-in name) or prompt_text, model, reasoning. The first is the baseline."),
    list,
    h("p", { class: "row" }, addBtn),
    err,
    h("p", { class: "row" }, runBtn),
  );
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    err.replaceChildren();
    let body;
    try {
      const k = st.ks.split(",").map((x) => x.trim()).filter(Boolean).map(Number);
      body = { collection: collSel.value, cases: parseCases(golden.value), variants: st.variants.map((t) => ({ toml: t })), ks: k, generate: gen.checked };
    } catch (e) {
      err.replaceChildren(errorBox(e.message));
      return;
    }
    runBtn.disabled = true;
    try {
      const job = await api("/v1/experiments", { method: "POST", body });
      go(`#/experiment/${job.id}`);
    } catch (e) {
      err.replaceChildren(errorBox(e)); // every edit stays; fix and run again
      runBtn.disabled = false;
    }
  });
  const known = await knownExperiments();
  show(
    h("h1", {}, "Experiments"),
    h("p", { class: "muted" }, "Audit 2–4 variants of the pipeline on the same golden cases; each is compared with the first by a paired bootstrap, and a winner is named per metric only when the 95% interval says so."),
    form,
    h("h2", {}, "Experiments"),
    known.length
      ? h("ul", { id: "experiment-list" }, known.map((a) => h("li", {}, h("a", { href: `#/experiment/${a.id}` }, a.id.slice(0, 8)), ` · ${a.collection} · ${a.status} · ${a.cases} cases · ${(a.variants || []).join(", ")} · golden set ${a.golden_hash || "?"} · ${fmtTime(a.created_at)}`)))
      : h("p", { class: "muted" }, "No experiments yet."),
  );
}
