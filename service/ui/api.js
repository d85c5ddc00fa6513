// Calls to this service: the API key (kept in sessionStorage, sent as X-API-Key), errors, the collections.

import { go } from "./nav.js";

export const KEY = "rag-why.key";
export const OPEN = "rag-why.open";

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

export async function api(path, opts = {}) {
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

let collectionsCache = null;
export async function collections() {
  if (!collectionsCache) collectionsCache = (await api("/v1/collections")).map((c) => c.name);
  return collectionsCache;
}
export function resetCollections() {
  collectionsCache = null;
}
