"""A chat fine-tuning file checked against OpenAI's published format, with its token counts."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

MIN_EXAMPLES = 10  # OpenAI refuses fewer
RECOMMENDED_EXAMPLES = (50, 100)
MAX_EXAMPLE_TOKENS = 65_536  # per example, gpt-4o-mini's training context; longer examples are truncated
ROLES = {"system", "user", "assistant", "tool", "function"}
MESSAGE_KEYS = {"role", "content", "name", "weight", "function_call", "tool_calls", "tool_call_id"}

O200K_URL = "https://openaipublic.blob.core.windows.net/encodings/o200k_base.tiktoken"


def _tiktoken_cached() -> bool:
    """Whether tiktoken's o200k_base table is already on disk: we never let it download (offline by design)."""
    import hashlib
    import os
    import tempfile

    cache = os.environ.get("TIKTOKEN_CACHE_DIR") or os.environ.get("DATA_GYM_CACHE_DIR")
    cache = cache or os.path.join(tempfile.gettempdir(), "data-gym-cache")
    return os.path.exists(os.path.join(cache, hashlib.sha1(O200K_URL.encode()).hexdigest()))


def token_counter(fallback: Callable[[str], int] | None = None) -> tuple[str, Callable[[str], int]]:
    """(name, count): OpenAI's o200k_base tokenizer when tiktoken's table is on disk, else `fallback` (named
    approximate), else about four characters a token."""
    if _tiktoken_cached():
        import tiktoken

        enc = tiktoken.get_encoding("o200k_base")
        return "tiktoken o200k_base", lambda text: len(enc.encode(text))
    if fallback is not None:
        return "approximate (the embedding model's tokenizer; no tiktoken table on disk)", fallback
    return "approximate (4 characters a token)", lambda text: max(1, len(text) // 4)


def validate_chat_jsonl(
    path: Path, count: Callable[[str], int] | None = None, tokenizer: str | None = None, epochs: int = 3
) -> dict:
    """Check a chat fine-tuning file against OpenAI's published format (the checks of OpenAI's cookbook,
    "Data preparation and analysis for chat model fine-tuning"): one JSON object a line with a non-empty
    `messages` list; each message a known role with string content and only known keys; `weight` 0 or 1 and
    only on assistant turns; at least one assistant turn per example. Adds token counts (per message 3
    tokens of overhead, 3 for the reply's priming, as the cookbook counts) and warnings under the minimum
    (10) and recommended (50-100) example counts.
    """
    if count is None:
        tokenizer, count = token_counter()
    errors: dict[str, list[int]] = {}
    lengths, assistant_lengths = [], []

    def fail(kind: str, lineno: int) -> None:
        errors.setdefault(kind, []).append(lineno)

    lines = Path(path).read_text(encoding="utf-8").splitlines()
    n = 0
    for lineno, line in enumerate(lines, 1):
        if not line.strip():
            fail("blank_line", lineno)
            continue
        n += 1
        try:
            ex = json.loads(line)
        except json.JSONDecodeError:
            fail("invalid_json", lineno)
            continue
        if not isinstance(ex, dict):
            fail("data_type", lineno)
            continue
        messages = ex.get("messages")
        if not isinstance(messages, list) or not messages:
            fail("missing_messages_list", lineno)
            continue
        if set(ex) - {"messages", "tools", "parallel_tool_calls", "functions"}:
            fail("unknown_example_keys", lineno)
        tokens = 3
        for m in messages:
            if not isinstance(m, dict) or "role" not in m or ("content" not in m and "tool_calls" not in m):
                fail("message_missing_key", lineno)
                continue
            if set(m) - MESSAGE_KEYS:
                fail("message_unrecognized_key", lineno)
            if m["role"] not in ROLES:
                fail("unrecognized_role", lineno)
            content = m.get("content")
            if content is not None and not isinstance(content, str):
                fail("missing_content", lineno)
                content = ""
            if "weight" in m and (m["role"] != "assistant" or m["weight"] not in (0, 1)):
                fail("invalid_weight", lineno)
            t = count(content or "")
            tokens += 3 + t + (1 if "name" in m else 0)
            if m["role"] == "assistant":
                assistant_lengths.append(t)
        if not any(isinstance(m, dict) and m.get("role") == "assistant" for m in messages):
            fail("example_missing_assistant_message", lineno)
        lengths.append(tokens)
    warnings = []
    if n < MIN_EXAMPLES:
        warnings.append(f"{n} examples: OpenAI requires at least {MIN_EXAMPLES}")
    elif n < RECOMMENDED_EXAMPLES[0]:
        warnings.append(
            f"{n} examples: {RECOMMENDED_EXAMPLES[0]}-{RECOMMENDED_EXAMPLES[1]} are recommended for a clear improvement"
        )
    too_long = sum(1 for t in lengths if t > MAX_EXAMPLE_TOKENS)
    if too_long:
        warnings.append(f"{too_long} examples over {MAX_EXAMPLE_TOKENS} tokens will be truncated")
    stats = {
        "tokenizer": tokenizer,
        "total": sum(lengths),
        "min": min(lengths, default=0),
        "max": max(lengths, default=0),
        "mean": round(sum(lengths) / len(lengths), 1) if lengths else 0,
        "assistant_mean": round(sum(assistant_lengths) / len(assistant_lengths), 1) if assistant_lengths else 0,
        "billed_for_epochs": {"epochs": epochs, "tokens": epochs * sum(min(t, MAX_EXAMPLE_TOKENS) for t in lengths)},
    }
    return {"ok": not errors and n > 0, "examples": n, "format_errors": errors, "tokens": stats, "warnings": warnings}
