// The hash router's plumbing: where we are, and going somewhere (app.js registers the renderer).

let renderer = () => {};
export function onRender(fn) {
  renderer = fn;
}
export function render() {
  return renderer();
}

export function hashParts() {
  const [path, query] = location.hash.slice(1).split("?");
  return { path: path || "/queries", params: new URLSearchParams(query || "") };
}
export function go(hash) {
  if (location.hash === hash) render();
  else location.hash = hash;
}
