// rag-why web UI: a plain ES module, no dependencies, nothing fetched from anywhere but this service.
// The API key is entered once, kept in sessionStorage and sent as X-API-Key; every page sees what the key sees.

const KEY = "rag-why.key";
const OPEN = "rag-why.open";
const AUDITS = "rag-why.audits";
const main = document.getElementById("main");

// ---------- small helpers ----------
function h(tag, attrs, ...kids) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v == null || v === false) continue;
    if (k.startsWith("on") && typeof v === "function") el.addEventListener(k.slice(2), v);
    else if (k === "class") el.className = v;
    else if (k === "svg") el.innerHTML = v; // SVG drawn by this service (diagnostics/report.py), escaped there
    else if (k === "value") el.value = v;
    else if (k === "checked") el.checked = !!v;
    else if (v === true) el.setAttribute(k, "");
    else el.setAttribute(k, v);
  }
  for (const kid of kids.flat(Infinity)) {
    if (kid == null || kid === false) continue;
    el.append(kid instanceof Node ? kid : String(kid));
  }
  return el;
}
const fmtTime = (t) => (t ? new Date(t * 1000).toLocaleString() : "");
const fmt = (x, d = 3) => (x == null ? "–" : Number(x).toFixed(d));
const stripCitations = (s) => (s || "").replace(/\s*\[\d+(?:\s*,\s*\d+)*\]/g, "").trim();
const enc = encodeURIComponent;

function hashParts() {
  const [path, query] = location.hash.slice(1).split("?");
  return { path: path || "/queries", params: new URLSearchParams(query || "") };
}
function go(hash) {
  if (location.hash === hash) render();
  else location.hash = hash;
}

class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

async function api(path, opts = {}) {
  const headers = {};
  const key = sessionStorage.getItem(KEY);
  if (key) headers["X-API-Key"] = key;
  let body;
  if (opts.body !== undefined) {
    headers["Content-Type"] = "application/json";
    body = JSON.stringify(opts.body);
  }
  const r = await fetch(path, { method: opts.method || "GET", headers, body });
  const text = await r.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = null;
  }
  if (!r.ok) {
    const err = (data && data.error) || { code: `http_${r.status}`, message: text.slice(0, 300) };
    if (r.status === 401 && !opts.signin) {
      sessionStorage.removeItem(KEY);
      sessionStorage.removeItem(OPEN);
      go("#/signin");
    }
    throw new ApiError(r.status, err.code, err.message);
  }
  return data;
}

function show(...kids) {
  // the page's content; arrays are flattened, null/false left out
  main.replaceChildren(...kids.flat(Infinity).filter((k) => k != null && k !== false));
}

function errorBox(e) {
  return h("div", { class: "alert", role: "alert" }, e instanceof ApiError ? `${e.message} (${e.code})` : String(e));
}

let collectionsCache = null;
async function collections() {
  if (!collectionsCache) collectionsCache = (await api("/v1/collections")).map((c) => c.name);
  return collectionsCache;
}

function verdictBadge(v, good) {
  const cls = good && good.includes(v) ? "good" : v === "retrieved" ? "good" : "bad";
  return h("span", { class: `badge ${cls}` }, v);
}

function feedbackButtons(item, onDone) {
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

function signalBadges(item) {
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

// ---------- pages ----------
async function signin() {
  const err = h("div");
  const input = h("input", { type: "password", id: "api-key", name: "api-key", autocomplete: "off", required: true, class: "wide" });
  const form = h(
    "form",
    { class: "card signin", id: "signin-form" },
    h("h1", {}, "Sign in"),
    h("p", { class: "muted" }, "Enter your API key once; it is kept for this browser tab only and sent as X-API-Key."),
    h("label", { class: "field", for: "api-key" }, "API key", input),
    err,
    h("p", {}, h("button", { type: "submit" }, "Sign in")),
  );
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    err.replaceChildren();
    sessionStorage.setItem(KEY, input.value.trim());
    collectionsCache = null;
    try {
      await api("/v1/collections", { signin: true });
      go("#/queries");
    } catch (e) {
      sessionStorage.removeItem(KEY);
      err.replaceChildren(errorBox(e.status === 401 ? "That key was not accepted." : e));
      input.focus();
    }
  });
  show(form);
  input.focus();
}

function filtersForm(params, names, fields) {
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

async function queriesPage(params) {
  const names = await collections();
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
      result.replaceChildren(
        h("p", { class: "answer", id: "ask-answer" }, r.answer || "(no answer)"),
        h(
          "p",
          { class: "row" },
          r.query_id
            ? [h("span", { class: "small muted" }, "query ", h("code", { id: "ask-query-id" }, r.query_id)), feedbackButtons(item), h("a", { class: "button", href: `#/label/q/${r.query_id}`, id: "ask-label" }, "Label this query")]
            : h("span", { class: "small muted" }, "The query log is off: nothing was recorded."),
        ),
      );
      list.replaceChildren(await queryTable(params));
    } catch (e) {
      result.replaceChildren(errorBox(e));
    }
  });
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

function stageRanks(stages) {
  return ["sparse", "dense", "fused", "rerank"]
    .filter((s) => stages && stages[s])
    .map((s) => h("span", { class: "badge" }, `${s} #${stages[s].rank}`));
}

async function queryPage(id) {
  const r = await api(`/v1/queries/${enc(id)}`);
  const comment = h("textarea", { id: "fb-comment", name: "comment", placeholder: "What was wrong? (optional)" });
  const doc = h("input", { type: "text", id: "fb-doc", name: "correct_doc_id", placeholder: "the document that answers it (optional)", class: "wide" });
  const status = h("div", { role: "status" });
  const send = async (rating) => {
    try {
      await api("/v1/feedback", { method: "POST", body: { query_id: id, rating, comment: comment.value || null, correct_doc_id: doc.value || null } });
      status.replaceChildren(h("div", { class: "ok" }, "Feedback saved."));
    } catch (e) {
      status.replaceChildren(errorBox(e));
    }
  };
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
    h("p", { class: "answer" }, r.answer || "(none)"),
    h("p", {}, h("a", { class: "button", href: `#/label/q/${id}` }, "Label this query")),
    h("h2", {}, "Feedback"),
    r.feedback.length
      ? h("ul", {}, r.feedback.map((f) => h("li", {}, f.rating > 0 ? "▲ " : "▼ ", f.comment || "", f.correct_doc_id ? ` (answer in ${f.correct_doc_id})` : "", h("span", { class: "small muted" }, ` ${fmtTime(f.created_at)}`))))
      : h("p", { class: "muted" }, "None yet."),
    h("div", { class: "card soft" }, h("label", { class: "field" }, "Comment", comment), h("label", { class: "field" }, "Correct document id", doc),
      h("p", { class: "row" }, h("button", { type: "button", onclick: () => send(1) }, "▲ Good"), h("button", { type: "button", onclick: () => send(-1) }, "▼ Wrong")), status),
    h("h2", {}, "Contexts the generator saw"),
    r.contexts.map((c, i) =>
      h("div", { class: "passage" }, h("div", {}, h("b", {}, `[${i + 1}] ${c.title || c.doc_id}`), " ", h("span", { class: "small muted" }, c.doc_id), " ", stageRanks(c.stages)), h("div", { class: "text" }, c.text)),
    ),
  );
}

async function candidatesPage(params) {
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

// ---------- labeling ----------
function draftKey(target) {
  return `rag-why.draft.${target}`;
}

async function labelPage(target) {
  // target: {queryId} or {auditId, caseId}
  let source;
  if (target.queryId) {
    const r = await api(`/v1/queries/${enc(target.queryId)}`);
    const fbDoc = (r.feedback || []).map((f) => f.correct_doc_id).find(Boolean);
    source = { collection: r.collection, question: r.question, answer: r.declined ? "" : stripCitations(r.answer), contexts: r.contexts, extra: fbDoc ? [{ doc_id: fbDoc, quote: "", grade: 1 }] : [], id: `q-${target.queryId.slice(0, 12)}`, from: `logged query ${target.queryId}`, expected: [] };
  } else {
    const job = await api(`/v1/audits/${enc(target.auditId)}`);
    const c = ((job.report || {}).cases || []).find((x) => String(x.id) === target.caseId);
    if (!c) throw new ApiError(404, "case_not_found", `no case ${target.caseId} in audit ${target.auditId}`);
    const ids = c.retrieved.map((x) => x.chunk_id);
    const texts = ids.length ? await api(`/v1/collections/${enc(job.collection)}/chunks?${ids.map((i) => `ids=${enc(i)}`).join("&")}`) : [];
    const byId = Object.fromEntries(texts.map((t) => [t.chunk_id, t]));
    const contexts = c.retrieved.map((x) => ({ ...x, text: (byId[x.chunk_id] || {}).text || "" }));
    const gen = c.generation || {};
    source = { collection: job.collection, question: c.question, answer: gen.declined ? "" : stripCitations(gen.answer), contexts, extra: [], id: String(c.id), from: `audit ${target.auditId}, case ${c.id}`, expected: c.expected || [] };
  }
  const dkey = draftKey(target.queryId ? `q.${target.queryId}` : `a.${target.auditId}.${target.caseId}`);
  const st = JSON.parse(sessionStorage.getItem(dkey) || "null") || {
    id: source.id,
    question: source.question,
    picks: source.contexts.map((c) => {
      const exp = source.expected.find((e) => e.doc_id === c.doc_id);
      return { on: !!exp, grade: exp ? exp.grade || 1 : 1, quote: "" };
    }),
    extra: source.extra,
    unanswerable: false,
    answer: source.answer || "",
    useAnswer: !!source.answer,
    tags: target.queryId ? "from-log" : "from-audit",
  };
  const save = () => sessionStorage.setItem(dkey, JSON.stringify(st));

  const err = h("div", { id: "label-error" });
  const done = h("div", { id: "label-done", "aria-live": "polite" });
  const un = h("input", { type: "checkbox", id: "unanswerable", checked: st.unanswerable });
  const passages = source.contexts.map((c, i) => {
    const p = st.picks[i];
    const box = h("input", { type: "checkbox", id: `pick-${i + 1}`, checked: p.on });
    const grade = h("select", { id: `grade-${i + 1}`, "aria-label": `Grade of passage ${i + 1}` }, [[1, "1 relevant"], [2, "2 highly relevant"], [3, "3 the answer"]].map(([v, t]) => h("option", { value: v, selected: p.grade === v }, t)));
    const quote = h("input", { type: "text", id: `quote-${i + 1}`, class: "wide", value: p.quote, placeholder: "quote (empty: the whole passage, anchored by its character span)" });
    const text = h("div", { class: "text", id: `text-${i + 1}` }, c.text);
    const useSel = h("button", { type: "button", class: "secondary", id: `use-selection-${i + 1}` }, "Use selected text as quote");
    const fs = h(
      "fieldset",
      { class: `passage${p.on ? " picked" : ""}`, "data-index": i + 1 },
      h("legend", {}, `[${i + 1}] ${c.title || c.doc_id}`),
      h("div", { class: "small muted" }, c.doc_id, ` · chars ${c.start}–${c.end} · `, stageRanks(c.stages)),
      text,
      h("div", { class: "row" }, h("label", { class: "inline", for: `pick-${i + 1}` }, box, "Answers it ", h("kbd", {}, String(i + 1))), h("label", {}, "Grade", grade), useSel),
      h("label", { class: "field", for: `quote-${i + 1}` }, "Quote", quote),
    );
    const sync = () => {
      p.on = box.checked;
      p.grade = Number(grade.value);
      p.quote = quote.value;
      fs.classList.toggle("picked", p.on);
      save();
    };
    box.addEventListener("change", sync);
    grade.addEventListener("change", sync);
    quote.addEventListener("input", sync);
    useSel.addEventListener("mousedown", (ev) => ev.preventDefault()); // keep the selection
    useSel.addEventListener("click", () => {
      const s = window.getSelection();
      const t = s && text.contains(s.anchorNode) ? s.toString().trim() : "";
      if (t) {
        quote.value = t;
        box.checked = true;
        sync();
      } else {
        quote.focus();
      }
    });
    fs.toggle = () => {
      box.checked = !box.checked;
      sync();
    };
    return fs;
  });
  const extraList = h("div", { id: "extra-sources" });
  const drawExtra = () => {
    extraList.replaceChildren(
      ...st.extra.map((e, j) => {
        const doc = h("input", { type: "text", value: e.doc_id, "aria-label": "Document id", placeholder: "document id" });
        const quote = h("input", { type: "text", value: e.quote, "aria-label": "Quote", placeholder: "quote (optional)", class: "wide" });
        const grade = h("select", { "aria-label": "Grade" }, [1, 2, 3].map((v) => h("option", { value: v, selected: e.grade === v }, v)));
        const sync = () => {
          Object.assign(e, { doc_id: doc.value.trim(), quote: quote.value, grade: Number(grade.value) });
          save();
        };
        [doc, quote].forEach((x) => x.addEventListener("input", sync));
        grade.addEventListener("change", sync);
        const rm = h("button", { type: "button", class: "secondary", onclick: () => { st.extra.splice(j, 1); save(); drawExtra(); } }, "Remove");
        return h("div", { class: "row card" }, h("label", {}, "Document", doc), h("label", { style: "flex:1 1 14rem" }, "Quote", quote), h("label", {}, "Grade", grade), rm);
      }),
    );
  };
  drawExtra();
  const qIn = h("textarea", { id: "label-question", value: st.question });
  const idIn = h("input", { type: "text", id: "label-id", value: st.id });
  const ans = h("textarea", { id: "label-answer", value: st.answer });
  const useAns = h("input", { type: "checkbox", id: "use-answer", checked: st.useAnswer });
  const tags = h("input", { type: "text", id: "label-tags", value: st.tags });
  const sync = () => {
    Object.assign(st, { question: qIn.value, id: idIn.value.trim(), answer: ans.value, useAnswer: useAns.checked, unanswerable: un.checked, tags: tags.value });
    passages.forEach((fs) => fs.classList.toggle("disabled", st.unanswerable));
    save();
  };
  [qIn, idIn, ans, tags].forEach((x) => x.addEventListener("input", sync));
  [useAns, un].forEach((x) => x.addEventListener("change", sync));
  passages.forEach((fs) => fs.classList.toggle("disabled", st.unanswerable));

  const saveBtn = h("button", { type: "submit", id: "label-save" }, "Append to golden set");
  const form = h(
    "form",
    { id: "label-form" },
    h("h1", {}, "Label"),
    h("p", { class: "muted small" }, `From ${source.from} · collection ${source.collection} · appended to golden/${source.collection}.jsonl`),
    h("p", { class: "small muted" }, "Keys: ", h("kbd", {}, "1"), "–", h("kbd", {}, "9"), " pick a passage, ", h("kbd", {}, "u"), " unanswerable, ", h("kbd", {}, "Ctrl"), "+", h("kbd", {}, "Enter"), " save (outside text fields for letters and digits)."),
    h("div", { class: "row" }, h("label", { style: "flex:1 1 24rem" }, "Question", qIn), h("label", {}, "Case id", idIn)),
    h("h2", {}, "Which passages answer it?"),
    h("label", { class: "inline card soft", for: "unanswerable" }, un, "Unanswerable from this corpus (the right answer is to decline) ", h("kbd", {}, "u")),
    passages,
    h("h3", {}, "Another source"),
    extraList,
    h("button", { type: "button", class: "secondary", id: "add-source", onclick: () => { st.extra.push({ doc_id: "", quote: "", grade: 1 }); save(); drawExtra(); } }, "Add a source by document id"),
    h("h2", {}, "Reference answer"),
    h("label", { class: "inline", for: "use-answer" }, useAns, "Keep a reference answer (accept the logged one or write your own)"),
    ans,
    h("div", { class: "row" }, h("label", { style: "flex:1 1 20rem" }, "Tags (comma-separated)", tags)),
    err,
    h("p", { class: "row" }, saveBtn),
    done,
  );
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    sync();
    err.replaceChildren();
    const expected = [];
    if (!st.unanswerable) {
      source.contexts.forEach((c, i) => {
        const p = st.picks[i];
        if (!p.on) return;
        const e = { doc_id: c.doc_id, grade: p.grade };
        if (p.quote.trim()) e.quote = p.quote.trim();
        else e.span = [c.start, c.end];
        expected.push(e);
      });
      st.extra.filter((e) => e.doc_id || e.quote).forEach((e) => {
        const x = { doc_id: e.doc_id, grade: e.grade };
        if (e.quote !== "") x.quote = e.quote;
        expected.push(x);
      });
    }
    const body = {
      id: st.id || null,
      question: st.question,
      expected,
      answer: st.useAnswer ? st.answer : null,
      unanswerable: st.unanswerable,
      tags: st.tags.split(",").map((t) => t.trim()).filter(Boolean),
    };
    if (target.queryId) body.query_id = target.queryId;
    else Object.assign(body, { audit_id: target.auditId, audit_case: target.caseId });
    saveBtn.disabled = true;
    try {
      const r = await api(`/v1/golden/${enc(source.collection)}/cases`, { method: "POST", body });
      sessionStorage.removeItem(dkey);
      done.replaceChildren(
        h("div", { class: "ok", role: "status" }, `Saved case ${r.case.id} to ${r.file} (${r.rows} cases).`),
        h("p", { class: "row" }, h("button", { type: "button", id: "audit-now", onclick: () => startAudit(source.collection, true) }, "Audit this golden set"), h("a", { href: "#/candidates" }, "Next to label")),
      );
      done.querySelector("button").focus();
    } catch (e) {
      err.replaceChildren(errorBox(e)); // the form keeps every edit; fix and save again
      saveBtn.disabled = false;
      err.scrollIntoView({ block: "center" });
    }
  });
  show(form);
  document.onkeydown = (ev) => { // the page's shortcuts; render() clears them on the next page
    const typing = /^(INPUT|TEXTAREA|SELECT)$/.test(ev.target.tagName) && ev.target.type !== "checkbox";
    if ((ev.ctrlKey || ev.metaKey) && ev.key === "Enter") {
      ev.preventDefault();
      form.requestSubmit();
    } else if (!typing && !ev.ctrlKey && !ev.metaKey && !ev.altKey) {
      if (/^[1-9]$/.test(ev.key) && passages[Number(ev.key) - 1]) {
        ev.preventDefault();
        passages[Number(ev.key) - 1].toggle();
        passages[Number(ev.key) - 1].querySelector("input").focus();
      } else if (ev.key === "u") {
        ev.preventDefault();
        un.checked = !un.checked;
        sync();
      }
    }
  };
  qIn.focus();
}

// ---------- audits ----------
function knownAudits() {
  return JSON.parse(sessionStorage.getItem(AUDITS) || "[]");
}
function rememberAudit(job) {
  const list = knownAudits().filter((a) => a.id !== job.id);
  list.unshift({ id: job.id, collection: job.collection, created_at: job.created_at });
  sessionStorage.setItem(AUDITS, JSON.stringify(list.slice(0, 50)));
}

async function startAudit(collection, generate) {
  const g = await api(`/v1/golden/${enc(collection)}`);
  if (g.error) throw new ApiError(422, "golden_set_invalid", g.error);
  const job = await api("/v1/audits", { method: "POST", body: { collection, cases: g.rows, generate } });
  rememberAudit(job);
  go(`#/audit/${job.id}`);
}

async function auditsPage() {
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

function slim(report) {
  return {
    settings: report.settings,
    overall: report.overall,
    where_lost: report.where_lost,
    verdicts: report.verdicts,
    created_at: report.created_at,
    cases: (report.cases || []).map((c) => ({ id: c.id, metrics: c.metrics, span: c.span, verdict: c.verdict, generation: c.generation ? { faithfulness: c.generation.faithfulness } : {} })),
  };
}

async function auditPage(id, params) {
  const job = await api(`/v1/audits/${enc(id)}`);
  rememberAudit(job);
  if (job.status === "queued" || job.status === "running") {
    const p = job.progress || {};
    show(
      h("h1", {}, `Audit ${id}`),
      h("p", { id: "audit-status" }, `${job.status}: ${p.cases || 0} of ${p.total || "?"} cases`),
      h("progress", { max: p.total || 1, value: p.cases || 0, "aria-label": "Audit progress" }),
    );
    const here = location.hash;
    setTimeout(() => {
      if (location.hash === here) render();
    }, 800);
    return;
  }
  if (!job.report) {
    show(h("h1", {}, `Audit ${id}`), errorBox(`${job.status}: ${job.error || "no report"}`));
    return;
  }
  const r = job.report;
  const baselineId = params.get("baseline");
  let baseline = null;
  if (baselineId) baseline = (await api(`/v1/audits/${enc(baselineId)}`)).report;
  const view = await api("/v1/ui/audit-view", { method: "POST", body: { report: slim(r), baseline: baseline ? slim(baseline) : null } });
  const others = knownAudits().filter((a) => a.id !== id && a.collection === job.collection);
  const baseSel = h("select", { id: "baseline", "aria-label": "Baseline audit" }, h("option", { value: "" }, "no baseline"), others.map((a) => h("option", { value: a.id, selected: a.id === baselineId }, `${a.id.slice(0, 8)} · ${fmtTime(a.created_at)}`)));
  baseSel.addEventListener("change", () => go(`#/audit/${id}${baseSel.value ? `?baseline=${baseSel.value}` : ""}`));
  const s = r.settings;
  const cmp = view.comparison;
  show(
    h("h1", {}, `Audit: ${r.collection}`),
    h("p", { class: "muted small" }, `${r.golden.cases} cases · ${r.created_at} · ${s.mode}, ${s.fusion}, generator sees the top ${s.cut}${s.generate ? ` · generator ${s.generator}` : " · retrieval only"} · ${r.seconds} s · audit ${id}`),
    h("p", { class: "summary", id: "audit-summary" }, r.summary.text),
    h(
      "div",
      { class: "plots" },
      h("figure", { id: "plot-recall" }, h("figcaption", {}, "Recall@k (band: bootstrap 95% interval)"), h("div", { svg: view.plots.recall })),
      h("figure", { id: "plot-where-lost" }, h("figcaption", {}, "Where expected sources were lost"), h("div", { svg: view.plots.where_lost })),
      h("figure", { id: "plot-verdicts" }, h("figcaption", {}, "Verdicts"), h("div", { svg: view.plots.verdicts })),
    ),
    h(
      "div",
      { class: "row" },
      h("div", { style: "flex:1 1 18rem" }, h("h2", {}, "Verdicts"), h("table", { id: "verdict-counts" }, h("tbody", {}, Object.entries(r.verdicts).sort((a, b) => b[1] - a[1]).map(([v, n]) => h("tr", {}, h("td", {}, verdictBadge(v, view.good)), h("td", { class: "num" }, n)))))),
      h("div", { style: "flex:1 1 18rem" }, h("h2", {}, "Where lost"), h("table", { id: "where-lost" }, h("tbody", {}, Object.entries(r.where_lost).filter(([, n]) => n).map(([k, n]) => h("tr", {}, h("td", {}, k), h("td", { class: "num" }, n)))))),
    ),
    h("h2", {}, "Overall"),
    h("div", { class: "table-wrap" }, h("table", {}, h("thead", {}, h("tr", {}, h("th", {}, "metric"), h("th", { class: "num" }, "mean"), h("th", {}, "95% interval"), h("th", { class: "num" }, "n"))), h("tbody", {}, Object.entries(r.overall).map(([k, m]) => h("tr", {}, h("td", {}, k), h("td", { class: "num" }, fmt(m.mean)), h("td", { class: "small" }, m.ci95 ? `[${fmt(m.ci95[0])}, ${fmt(m.ci95[1])}]` : ""), h("td", { class: "num" }, m.n)))))),
    h("h2", {}, "Against a baseline"),
    h("p", { class: "row" }, baseSel),
    cmp
      ? h(
          "div",
          { id: "comparison" },
          h("p", { class: "small muted" }, `${cmp.paired_cases} paired cases`),
          h("div", { class: "table-wrap" }, h("table", {}, h("thead", {}, h("tr", {}, ["metric", "baseline", "current", "delta [95% CI]", ""].map((t) => h("th", {}, t)))), h("tbody", {}, Object.entries(cmp.metrics).map(([k, m]) => h("tr", {}, h("td", {}, k), h("td", { class: "num" }, fmt(m.baseline)), h("td", { class: "num" }, fmt(m.current)), h("td", {}, `${m.delta >= 0 ? "+" : ""}${fmt(m.delta)} [${fmt(m.ci95[0])}, ${fmt(m.ci95[1])}]`), h("td", {}, h("span", { class: `badge ${m.label === "improved" ? "good" : m.label === "regressed" ? "bad" : ""}` }, m.label))))))),
          h("h3", {}, "Flipped cases"),
          cmp.flipped.length ? h("ul", {}, cmp.flipped.map((f) => h("li", {}, h("a", { href: `#/case/${id}/${enc(f.id)}` }, f.id), `: ${f.baseline} → ${f.current} `, h("span", { class: `badge ${f.direction === "fixed" ? "good" : f.direction === "broken" ? "bad" : ""}` }, f.direction)))) : h("p", { class: "muted" }, "No verdict flipped."),
        )
      : h("p", { class: "muted small" }, others.length ? "Pick an earlier audit of this collection to compare." : "Run another audit of this collection to compare."),
    h("h2", {}, "Cases"),
    h(
      "div",
      { class: "table-wrap" },
      h(
        "table",
        { class: "stack", id: "audit-cases" },
        h("thead", {}, h("tr", {}, ["id", "question", "verdict", "expected", "lost at"].map((t) => h("th", {}, t)))),
        h(
          "tbody",
          {},
          r.cases.map((c) =>
            h(
              "tr",
              { "data-case-id": c.id },
              h("td", { "data-label": "id" }, h("a", { href: `#/case/${id}/${enc(c.id)}` }, c.id)),
              h("td", { "data-label": "question" }, c.question),
              h("td", { "data-label": "verdict" }, verdictBadge(c.verdict, view.good), h("div", { class: "small muted" }, c.verdict_detail)),
              h("td", { "data-label": "expected", class: "small" }, c.expected.map((e) => e.doc_id).join(", ") || "(none: should decline)"),
              h("td", { "data-label": "lost at", class: "small" }, c.lost.map((l) => `${l.doc_id}: ${l.stage}`).join("; ")),
            ),
          ),
        ),
      ),
    ),
  );
}

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

async function casePage(auditId, caseId) {
  const job = await api(`/v1/audits/${enc(auditId)}`);
  const r = job.report || { cases: [] };
  const c = r.cases.find((x) => String(x.id) === caseId);
  if (!c) throw new ApiError(404, "case_not_found", `no case ${caseId} in audit ${auditId}`);
  const view = await api("/v1/ui/audit-view", { method: "POST", body: { report: { settings: r.settings, cases: [] } } });
  const ids = c.retrieved.map((x) => x.chunk_id);
  const texts = ids.length ? await api(`/v1/collections/${enc(job.collection)}/chunks?${ids.map((i) => `ids=${enc(i)}`).join("&")}`) : [];
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
      { class: `passage${x.expected ? " picked" : ""}`, "data-rank": n },
      h("div", {}, h("b", {}, `[${n}] ${x.title || x.doc_id}`), " ", h("span", { class: "small muted" }, x.doc_id), " ", x.expected ? h("span", { class: "badge good" }, "expected") : null, cited.has(n) ? h("span", { class: "badge warn" }, "cited") : null, " ", stageRanks(x.stages)),
      h("div", { class: "text" }, highlight(text, marks, "cited")),
    );
  });
  const unsupported = claims.filter((cl) => !cl.supported).map((cl) => cl.claim);
  show(
    h("p", { class: "small" }, h("a", { href: `#/audit/${auditId}` }, "← audit"), ` · case ${c.id}`),
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
    h("p", {}, h("a", { class: "button", href: `#/label/a/${auditId}/${enc(c.id)}` }, "Label this case")),
  );
}

// ---------- experiments ----------
const EXPERIMENTS = "rag-why.experiments";
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

function knownExperiments() {
  return JSON.parse(sessionStorage.getItem(EXPERIMENTS) || "[]");
}
function rememberExperiment(job) {
  const list = knownExperiments().filter((a) => a.id !== job.id);
  list.unshift({ id: job.id, collection: job.collection, created_at: job.created_at });
  sessionStorage.setItem(EXPERIMENTS, JSON.stringify(list.slice(0, 50)));
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

async function experimentsPage() {
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
      rememberExperiment(job);
      go(`#/experiment/${job.id}`);
    } catch (e) {
      err.replaceChildren(errorBox(e)); // every edit stays; fix and run again
      runBtn.disabled = false;
    }
  });
  const known = knownExperiments();
  show(
    h("h1", {}, "Experiments"),
    h("p", { class: "muted" }, "Audit 2–4 variants of the pipeline on the same golden cases; each is compared with the first by a paired bootstrap, and a winner is named per metric only when the 95% interval says so."),
    form,
    h("h2", {}, "Experiments started here"),
    known.length
      ? h("ul", { id: "experiment-list" }, known.map((a) => h("li", {}, h("a", { href: `#/experiment/${a.id}` }, a.id), ` · ${a.collection} · ${fmtTime(a.created_at)}`)))
      : h("p", { class: "muted" }, "None in this tab yet."),
  );
}

function comparisonTable(r, all) {
  const names = r.variants.map((v) => v.name);
  const available = Object.keys(r.winners);
  const chosen = all ? available : (r.table_metrics || []).filter((m) => available.includes(m));
  const metrics = chosen.length ? chosen : available;
  const labelBadge = (label) => h("span", { class: `badge ${label === "improved" ? "good" : label === "regressed" ? "bad" : ""}` }, label);
  return h(
    "table",
    { id: "experiment-table" },
    h("thead", {}, h("tr", {}, h("th", {}, "metric"), names.map((n, i) => h("th", {}, i === 0 ? `${n} (baseline)` : n)), h("th", {}, "winner"))),
    h(
      "tbody",
      {},
      metrics.map((m) => {
        const w = r.winners[m];
        return h(
          "tr",
          { "data-metric": m },
          h("td", {}, m),
          h("td", { class: "num" }, fmt((r.variants[0].overall[m] || {}).mean, 4)),
          names.slice(1).map((n) => {
            const c = r.comparisons[n][m];
            return h("td", { class: "small" }, c ? [h("b", {}, fmt(c.current, 4)), ` ${c.delta >= 0 ? "+" : ""}${fmt(c.delta, 4)} [${fmt(c.ci95[0], 3)}, ${fmt(c.ci95[1], 3)}] `, labelBadge(c.label)] : "–");
          }),
          h("td", { class: "winner" }, h("span", { class: `badge ${w.winner ? "good" : "warn"}`, title: w.reason }, w.winner || w.verdict)),
        );
      }),
    ),
  );
}

async function experimentPage(id) {
  const job = await api(`/v1/experiments/${enc(id)}`);
  rememberExperiment(job);
  if (job.status === "queued" || job.status === "running") {
    const p = job.progress || {};
    const cancel = h("button", { type: "button", class: "secondary", id: "exp-cancel" }, "Cancel");
    const err = h("div");
    cancel.addEventListener("click", async () => {
      cancel.disabled = true;
      try {
        await api(`/v1/jobs/${enc(id)}/cancel`, { method: "POST" });
      } catch (e) {
        err.replaceChildren(errorBox(e));
      }
    });
    show(
      h("h1", {}, `Experiment ${id}`),
      h("p", { id: "experiment-status" }, `${job.status}: ${p.cases || 0} of ${p.total || "?"} case runs (cases × variants)`),
      h("progress", { max: p.total || 1, value: p.cases || 0, "aria-label": "Experiment progress" }),
      h("p", {}, cancel),
      err,
    );
    const here = location.hash;
    setTimeout(() => {
      if (location.hash === here) render();
    }, 800);
    return;
  }
  if (!job.report) {
    show(h("h1", {}, `Experiment ${id}`), errorBox(`${job.status}: ${job.error || "no result"}`), h("p", {}, h("a", { href: "#/experiments" }, "← experiments")));
    return;
  }
  const r = job.report;
  const tableWrap = h("div", { class: "table-wrap" }, comparisonTable(r, false));
  const allBox = h("input", { type: "checkbox", id: "exp-all-metrics" });
  allBox.addEventListener("change", () => tableWrap.replaceChildren(comparisonTable(r, allBox.checked)));
  const settingsOf = (v) => {
    const s = v.settings || {};
    return `${s.mode}, ${s.fusion}${s.fusion === "rrf" ? ` k=${s.rrf_k}` : ""}, top ${s.cut ?? s.top_k}${s.rerank ? ", rerank" : ""}${s.generate ? `, generator ${s.generator}` : ""}`;
  };
  show(
    h("p", { class: "small" }, h("a", { href: "#/experiments" }, "← experiments")),
    h("h1", {}, `Experiment: ${job.collection}`),
    h("p", { class: "summary", id: "experiment-summary" }, `${r.variants.length} variants on ${r.cases} cases, compared with the baseline, ${r.baseline} (${r.seconds} s). Each metric's winner is named only when the paired 95% interval excludes 0.`),
    h("h2", {}, "Comparison"),
    h("p", { class: "small muted" }, "Mean per variant; for the others, the delta against the baseline with its paired-bootstrap 95% interval."),
    tableWrap,
    h("label", { class: "inline small", for: "exp-all-metrics" }, allBox, "Show every metric"),
    h("h2", {}, "Variants"),
    h(
      "div",
      { class: "table-wrap" },
      h(
        "table",
        { class: "stack", id: "experiment-variants" },
        h("thead", {}, h("tr", {}, ["variant", "collection", "settings", "good verdicts", "seconds"].map((t) => h("th", {}, t)))),
        h(
          "tbody",
          {},
          r.variants.map((v) =>
            h(
              "tr",
              { "data-variant": v.name },
              h("td", { "data-label": "variant" }, h("b", {}, v.name), v.description ? h("div", { class: "small muted" }, v.description) : null),
              h("td", { "data-label": "collection" }, v.collection || job.collection),
              h("td", { "data-label": "settings", class: "small" }, settingsOf(v)),
              h("td", { class: "num", "data-label": "good verdicts" }, `${v.good} / ${r.cases}`),
              h("td", { class: "num", "data-label": "seconds" }, v.seconds),
            ),
          ),
        ),
      ),
    ),
    h("h2", {}, "Flipped cases"),
    h(
      "div",
      { id: "experiment-flipped" },
      Object.entries(r.flipped).map(([name, flips]) => [
        h("h3", {}, `${name} vs ${r.baseline}: ${flips.length} flipped (${flips.filter((f) => f.direction === "fixed").length} fixed, ${flips.filter((f) => f.direction === "broken").length} broken)`),
        flips.length
          ? h("ul", {}, flips.map((f) => h("li", { "data-case-id": f.id }, h("b", {}, f.id), `: ${f.baseline} → ${f.current} `, h("span", { class: `badge ${f.direction === "fixed" ? "good" : f.direction === "broken" ? "bad" : ""}` }, f.direction), h("div", { class: "small muted" }, f.question))))
          : h("p", { class: "muted small" }, "No verdict flipped."),
      ]),
    ),
    h("details", {}, h("summary", {}, "The table as Markdown (rag experiment's experiment.md)"), h("pre", { class: "md", id: "experiment-markdown" }, r.markdown)),
  );
}

// ---------- router ----------
const ROUTES = [
  [/^\/signin$/, () => signin()],
  [/^\/queries$/, (m, p) => queriesPage(p)],
  [/^\/query\/([\w-]+)$/, (m) => queryPage(m[1])],
  [/^\/candidates$/, (m, p) => candidatesPage(p)],
  [/^\/label\/q\/([\w-]+)$/, (m) => labelPage({ queryId: m[1] })],
  [/^\/label\/a\/([\w-]+)\/(.+)$/, (m) => labelPage({ auditId: m[1], caseId: decodeURIComponent(m[2]) })],
  [/^\/audits$/, () => auditsPage()],
  [/^\/audit\/([\w-]+)$/, (m, p) => auditPage(m[1], p)],
  [/^\/case\/([\w-]+)\/(.+)$/, (m) => casePage(m[1], decodeURIComponent(m[2]))],
  [/^\/experiments$/, () => experimentsPage()],
  [/^\/experiment\/([\w-]+)$/, (m) => experimentPage(m[1])],
];

async function signedIn() {
  if (sessionStorage.getItem(KEY) || sessionStorage.getItem(OPEN)) return true;
  try {
    await api("/v1/collections", { signin: true }); // an open API needs no key
    sessionStorage.setItem(OPEN, "1");
    return true;
  } catch {
    return false;
  }
}

async function render() {
  const { path, params } = hashParts();
  document.onkeydown = null;
  const ok = path === "/signin" || (await signedIn());
  if (!ok) return go("#/signin");
  const who = document.getElementById("who");
  const out = document.getElementById("signout");
  who.textContent = sessionStorage.getItem(KEY) ? "signed in with an API key" : sessionStorage.getItem(OPEN) ? "open API (no keys configured)" : "";
  out.hidden = !sessionStorage.getItem(KEY);
  for (const a of document.querySelectorAll("#nav a")) {
    const under = { audits: /^\/(audit|case)\//, experiments: /^\/experiment\// }[a.dataset.page];
    if (path.startsWith(`/${a.dataset.page}`) || (under && under.test(path))) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
  for (const [re, page] of ROUTES) {
    const m = path.match(re);
    if (m) {
      try {
        await page(m, params);
      } catch (e) {
        show(h("h1", {}, "Something went wrong"), errorBox(e));
      }
      document.title = `rag-why · ${(main.querySelector("h1") || {}).textContent || ""}`;
      return;
    }
  }
  go("#/queries");
}

document.getElementById("signout").addEventListener("click", () => {
  sessionStorage.clear();
  collectionsCache = null;
  go("#/signin");
});
window.addEventListener("hashchange", render);
render();
