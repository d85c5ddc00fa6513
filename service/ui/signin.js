// The sign-in page: the API key, checked against the service before it is kept.

import { KEY, api, resetCollections } from "./api.js";
import { errorBox, h, show } from "./dom.js";
import { go } from "./nav.js";

export async function signin() {
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
    resetCollections();
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
