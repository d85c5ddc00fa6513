// Labeling: a logged query or an audit case becomes a golden case (a draft is kept per target).
// The answer shown is a reference only when it was judged good: never a thumbs-down's or a decline's.

import { ApiError, api } from "./api.js";
import { startAudit } from "./audits.js";
import { enc, errorBox, h, show, stripCitations } from "./dom.js";
import { sourceOut, sourcesEditor, stageRanks } from "./widgets.js";

const GOOD_ANSWER = ["answered_well", "grounded"]; // an audit's verdicts whose answer may be the reference

function draftKey(target) {
  return `rag-why.draft.${target}`;
}

export async function labelPage(target) {
  // target: {queryId} or {auditId, caseId}
  let source;
  if (target.queryId) {
    const r = await api(`/v1/queries/${enc(target.queryId)}`);
    const fbDoc = (r.feedback || []).map((f) => f.correct_doc_id).find(Boolean);
    const thumbsDown = (r.feedback || []).some((f) => f.rating < 0);
    const answer = r.declined || thumbsDown || r.generation_error ? "" : stripCitations(r.answer);
    source = { collection: r.collection, question: r.question, answer, contexts: r.contexts, extra: fbDoc ? [{ doc_id: fbDoc, quote: "", grade: 1, fromFeedback: true }] : [], id: `q-${target.queryId.slice(0, 12)}`, from: `logged query ${target.queryId}`, expected: [], labelled: r.labelled_case_id };
  } else {
    const job = await api(`/v1/audits/${enc(target.auditId)}`);
    const c = ((job.report || {}).cases || []).find((x) => String(x.id) === target.caseId);
    if (!c) throw new ApiError(404, "case_not_found", `no case ${target.caseId} in audit ${target.auditId}`);
    const ids = c.retrieved.map((x) => x.chunk_id);
    const texts = ids.length ? await api(`/v1/collections/${enc(job.collection)}/chunks?${ids.map((i) => `ids=${enc(i)}`).join("&")}`) : [];
    const byId = Object.fromEntries(texts.map((t) => [t.chunk_id, t]));
    const contexts = c.retrieved.map((x) => ({ ...x, text: (byId[x.chunk_id] || {}).text || "" }));
    const gen = c.generation || {};
    const answer = gen.declined || !GOOD_ANSWER.includes(c.verdict) ? "" : stripCitations(gen.answer);
    let labelled = null;
    try {
      labelled = (await api(`/v1/golden/${enc(job.collection)}/cases/${enc(String(c.id))}`)).id;
    } catch (e) {
      if (!(e instanceof ApiError && e.status === 404)) throw e;
    }
    source = { collection: job.collection, question: c.question, answer, contexts, extra: [], id: String(c.id), from: `audit ${target.auditId}, case ${c.id}`, expected: c.expected || [], labelled };
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
  const extraList = sourcesEditor(st.extra, save, "extra-sources");
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
  ans.addEventListener("input", () => { // a reference typed or edited here is meant to be kept
    if (ans.value.trim() && !useAns.checked) {
      useAns.checked = true;
      sync();
    }
  });
  [useAns, un].forEach((x) => x.addEventListener("change", sync));
  passages.forEach((fs) => fs.classList.toggle("disabled", st.unanswerable));

  const saveBtn = h("button", { type: "submit", id: "label-save" }, "Append to golden set");
  const form = h(
    "form",
    { id: "label-form" },
    h("h1", {}, "Label"),
    h("p", { class: "muted small" }, `From ${source.from} · collection ${source.collection} · added to its golden set`),
    source.labelled
      ? h("div", { class: "alert", role: "note", id: "label-labelled" }, `This question is labelled already: case ${source.labelled}. Saving adds another case; `, h("a", { href: `#/golden/${enc(source.collection)}/case/${enc(source.labelled)}` }, `edit ${source.labelled} instead`), ".")
      : null,
    h("p", { class: "small muted" }, "Keys: ", h("kbd", {}, "1"), "–", h("kbd", {}, "9"), " pick a passage, ", h("kbd", {}, "u"), " unanswerable, ", h("kbd", {}, "Ctrl"), "+", h("kbd", {}, "Enter"), " save (outside text fields for letters and digits)."),
    h("div", { class: "row" }, h("label", { style: "flex:1 1 24rem" }, "Question", qIn), h("label", {}, "Case id", idIn)),
    h("h2", {}, "Which passages answer it?"),
    h("label", { class: "inline card soft", for: "unanswerable" }, un, "Unanswerable from this corpus (the right answer is to decline) ", h("kbd", {}, "u")),
    passages,
    h("h3", {}, "Another source"),
    extraList,
    h("button", { type: "button", class: "secondary", id: "add-source", onclick: () => { st.extra.push({ doc_id: "", quote: "", grade: 1 }); save(); extraList.redraw(); } }, "Add a source by document id"),
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
      const picked = new Set();
      source.contexts.forEach((c, i) => {
        const p = st.picks[i];
        if (!p.on) return;
        const e = { doc_id: c.doc_id, grade: p.grade };
        if (p.quote.trim()) e.quote = p.quote.trim();
        else e.span = [c.start, c.end];
        expected.push(e);
        picked.add(c.doc_id);
      });
      // A whole document typed (or named by the feedback) that a picked passage anchors already is not listed
      // again: twice, with other grades, the set would be refused.
      st.extra.filter((e) => (e.doc_id || e.quote) && !(picked.has(e.doc_id) && !e.quote && !e.span)).forEach((e) => expected.push(sourceOut(e)));
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
        h("div", { class: "ok", role: "status" }, `Saved case ${r.case.id} to the golden set of ${source.collection} (${r.rows} cases).`),
        h("p", { class: "row" }, h("button", { type: "button", id: "audit-now", onclick: () => startAudit(source.collection, true) }, "Audit this golden set"), h("a", { href: "#/candidates" }, "Next to label"), h("a", { href: `#/golden?collection=${enc(source.collection)}` }, "The golden set")),
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
