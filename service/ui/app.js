// rag-why web UI: a plain ES module, no dependencies, nothing fetched from anywhere but this service.
// The API key is entered once, kept in sessionStorage and sent as X-API-Key; every page sees what the key sees.
// This entry holds the router and the shared boot; each page is a module of its own (no build step).

import { KEY, OPEN, api, resetCollections } from "./api.js";
import { errorBox, h, main, show } from "./dom.js";
import { go, hashParts, onRender } from "./nav.js";
import { signin } from "./signin.js";
import { queriesPage, queryPage } from "./log.js";
import { candidatesPage } from "./candidates.js";
import { labelPage } from "./label.js";
import { auditsPage } from "./audits.js";
import { auditPage } from "./audit.js";
import { casePage, experimentCasePage } from "./case.js";
import { experimentsPage } from "./experiments.js";
import { experimentPage } from "./experiment.js";
import { goldenCasePage, goldenPage } from "./golden.js";

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
  [/^\/golden$/, (m, p) => goldenPage(p)],
  [/^\/golden\/([\w-]+)\/case\/(.+)$/, (m) => goldenCasePage(m[1], decodeURIComponent(m[2]))],
  [/^\/experiments$/, () => experimentsPage()],
  [/^\/experiment\/([\w-]+)$/, (m) => experimentPage(m[1])],
  [/^\/experiment\/([\w-]+)\/case\/([^/]+)\/(.+)$/, (m) => experimentCasePage(m[1], decodeURIComponent(m[2]), decodeURIComponent(m[3]))],
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
    const under = { audits: /^\/(audit|case)\//, experiments: /^\/experiment\//, golden: /^\/golden\// }[a.dataset.page];
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
  resetCollections();
  go("#/signin");
});
onRender(render);
window.addEventListener("hashchange", render);
render();
