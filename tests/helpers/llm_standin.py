"""A wire-level stand-in for an OpenAI-compatible server, named as such: it speaks the HTTP of
`/v1/chat/completions` (JSON and server-sent events) and misbehaves on demand, so the generation path's
failure handling is tested against real sockets. Asked for JSON (as ragas's judge asks, through
instructor), it returns a minimal instance of the schema in the prompt: plumbing, not judgment. The happy
path is also tested against a real model server (llama.cpp) where one is installed: see tests/service/test_llm_real.py.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def _instance(schema: dict, defs: dict):
    """A minimal instance of a JSON schema (every property filled, lists of one, numbers 1)."""
    if "$ref" in schema:
        return _instance(defs[schema["$ref"].split("/")[-1]], defs)
    for key in ("allOf", "anyOf", "oneOf"):
        if key in schema:
            options = [o for o in schema[key] if o.get("type") != "null"] or schema[key]
            return _instance(options[0], defs)
    if "enum" in schema:
        return schema["enum"][0]
    kind = schema.get("type")
    if kind == "object":
        return {k: _instance(v, defs) for k, v in schema.get("properties", {}).items()}
    if kind == "array":
        return [_instance(schema.get("items", {"type": "string"}), defs)]
    return {"string": "a statement from the stand-in", "integer": 1, "number": 1.0, "boolean": True, "null": None}.get(
        kind, "x"
    )


def _json_answer(messages: list[dict]) -> str:
    """Answer a JSON-mode request (instructor puts the schema in the prompt) with a valid instance."""
    text = "\n".join(m["content"] for m in messages if isinstance(m.get("content"), str))
    start = text.index("json_schema:") + len("json_schema:")
    end = text.index("Make sure to return an instance")
    schema = json.loads(text[start:end])
    return json.dumps(_instance(schema, schema.get("$defs", {})))


class StandIn:
    def __init__(self) -> None:
        self.mode = "ok"
        self.answer = "Cats eat fish [1]. Dogs fly [7]."
        self.requests: list[dict] = []
        self.top_logprobs: dict[str, float] | None = None  # first-token alternatives, when logprobs are asked
        self.usage: dict | None = None  # OpenAI's usage object, sent when set (streamed: when include_usage is asked)
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output clean
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                outer.requests.append(body)
                mode = outer.mode
                if mode == "slow":
                    time.sleep(3)
                if mode in ("429", "500"):
                    self.send_response(int(mode))
                    self.send_header("Content-Type", "application/json")
                    self.end_headers()
                    self.wfile.write(json.dumps({"error": {"message": f"stand-in says {mode}"}}).encode())
                    return
                if mode == "malformed":
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.end_headers()
                    self.wfile.write(b'{"choices": [{"oops": tru')
                    return
                if body.get("stream"):
                    self.send_response(200)
                    self.send_header("Content-Type", "text/event-stream")
                    self.end_headers()
                    words = outer.answer.split(" ")
                    for i, w in enumerate(words):
                        if mode == "cut" and i == 2:
                            self.wfile.write(b'data: {"choices": [{"delta": {"content": "trunc')
                            self.wfile.flush()
                            self.connection.shutdown(2)
                            return
                        chunk = {
                            "id": "x",
                            "object": "chat.completion.chunk",
                            "created": 0,
                            "model": "m",
                            "choices": [{"index": 0, "delta": {"content": w + " "}, "finish_reason": None}],
                        }
                        self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
                    done = {
                        "id": "x",
                        "object": "chat.completion.chunk",
                        "created": 0,
                        "model": "m",
                        "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
                    }
                    self.wfile.write(f"data: {json.dumps(done)}\n\n".encode())
                    if outer.usage and (body.get("stream_options") or {}).get("include_usage"):
                        last = {**done, "choices": [], "usage": outer.usage}  # as OpenAI sends it: no choices
                        self.wfile.write(f"data: {json.dumps(last)}\n\n".encode())
                    self.wfile.write(b"data: [DONE]\n\n")
                    return
                content = _json_answer(body["messages"]) if body.get("response_format") else outer.answer
                resp = {
                    "id": "x",
                    "object": "chat.completion",
                    "created": 0,
                    "model": body["model"],
                    "choices": [
                        {"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}
                    ],
                }
                if outer.usage:
                    resp["usage"] = outer.usage
                if body.get("logprobs") and outer.top_logprobs:
                    alts = [{"token": t, "logprob": lp, "bytes": None} for t, lp in outer.top_logprobs.items()]
                    first = {**alts[0], "top_logprobs": alts}
                    resp["choices"][0]["logprobs"] = {"content": [first]}
                data = json.dumps(resp).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
