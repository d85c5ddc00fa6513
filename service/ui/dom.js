// Element helpers and formatting shared by every page.

import { ApiError } from "./api.js";

export const main = document.getElementById("main");

export function h(tag, attrs, ...kids) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v == null || v === false) continue;
    if (k.startsWith("on") && typeof v === "function") el.addEventListener(k.slice(2), v);
    else if (k === "class") el.className = v;
    else if (k === "svg") el.innerHTML = v; // SVG drawn by this service (diagnostics/audit/report.py), escaped there
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
export const fmtTime = (t) => (t ? new Date(t * 1000).toLocaleString() : "");
export const fmt = (x, d = 3) => (x == null ? "–" : Number(x).toFixed(d));
export const stripCitations = (s) => (s || "").replace(/\s*\[\d+(?:\s*,\s*\d+)*\]/g, "").trim();
export const enc = encodeURIComponent;

export function show(...kids) {
  // the page's content; arrays are flattened, null/false left out
  main.replaceChildren(...kids.flat(Infinity).filter((k) => k != null && k !== false));
}

export function errorBox(e) {
  return h("div", { class: "alert", role: "alert" }, e instanceof ApiError ? `${e.message} (${e.code})` : String(e));
}
