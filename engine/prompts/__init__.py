"""Prompts are files the user can edit. The service's built-in system prompt is `default.md` in this folder;
`strict.md` is another; `reasoning.md` is the instruction appended when reasoning is on. A prompt names the
decline sentence as `{decline}` (the exact sentence the service detects declines by).

Reasoning: with reasoning on, the model writes its reasoning between <reasoning> tags before the answer.
Reasoning models also emit <think> blocks of their own. Either way the reasoning is removed from the text
before anything else sees it (the answer the app receives, the citations check, the audit), in one piece
(`strip_reasoning`) or as a stream (`ReasoningFilter`).
"""

from __future__ import annotations

import re
from pathlib import Path

from core.errors import ConfigError

PROMPTS_DIR = Path(__file__).resolve().parent
DEFAULT = "default"
REASONING = "reasoning"
REASONING_TAGS = ("reasoning", "think", "thinking")

_BLOCK = re.compile(r"<(" + "|".join(REASONING_TAGS) + r")>.*?(?:</\1>|\Z)", re.S | re.I)
_CLOSE = re.compile(r"</(" + "|".join(REASONING_TAGS) + r")>", re.I)


def builtin_prompts() -> list[str]:
    """Names of the prompt files shipped here (without .md)."""
    return sorted(p.stem for p in PROMPTS_DIR.glob("*.md"))


def prompt_file(name_or_path: str | Path) -> Path:
    """A prompt file: an existing path, or the name of a built-in prompt. Raises ConfigError otherwise."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    builtin = PROMPTS_DIR / f"{name_or_path}.md"
    if builtin.is_file():
        return builtin
    raise ConfigError(
        f"prompt {str(name_or_path)!r} is neither a file nor a built-in prompt ({', '.join(builtin_prompts())})"
    )


def read_prompt(name_or_path: str | Path) -> str:
    """The text of a prompt file, without trailing whitespace. Raises ConfigError when missing or empty."""
    path = prompt_file(name_or_path)
    try:
        text = path.read_text(encoding="utf-8").rstrip()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read prompt {path}: {exc}") from exc
    if not text.strip():
        raise ConfigError(f"prompt {path} is empty")
    return text


def strip_reasoning(text: str) -> str:
    """The answer without its reasoning: <reasoning>/<think>/<thinking> blocks (an unclosed one runs to the
    end) and a leading block whose opening tag the server's chat template wrote."""
    close = _CLOSE.search(text)
    if close and not re.search(f"<{close.group(1)}>", text[: close.start()], re.I):
        text = text[close.end() :]  # the server's chat template opened the block; the model closed it
    return _BLOCK.sub("", text).strip()


class ReasoningFilter:
    """Streaming `strip_reasoning`: feed pieces as they come, get back only what lies outside reasoning.

    A tag split across pieces is held back until it is complete; an unclosed block is dropped at the end.
    """

    _OPEN = tuple(f"<{t}>" for t in REASONING_TAGS)

    def __init__(self) -> None:
        self.buf = ""
        self.inside: str | None = None  # the closing tag we wait for
        self.started = False  # anything visible sent yet (leading whitespace after reasoning is dropped)

    def _partial_at_end(self, tags: tuple[str, ...]) -> int:
        """Length of the longest suffix of the buffer that is a proper prefix of one of `tags`."""
        low = self.buf.lower()
        best = 0
        for tag in tags:
            for n in range(1, len(tag)):
                if low.endswith(tag[:n]):
                    best = max(best, n)
        return best

    def feed(self, piece: str) -> str:
        self.buf += piece
        out = []
        while True:
            low = self.buf.lower()
            if self.inside is None:
                hits = [(low.find(t), t) for t in self._OPEN if t in low]
                if hits:
                    pos, tag = min(hits)
                    out.append(self.buf[:pos])
                    self.buf = self.buf[pos + len(tag) :]
                    self.inside = "</" + tag[1:]
                    continue
                keep = self._partial_at_end(self._OPEN)
                out.append(self.buf[: len(self.buf) - keep])
                self.buf = self.buf[len(self.buf) - keep :]
                break
            pos = low.find(self.inside)
            if pos < 0:
                keep = self._partial_at_end((self.inside,))
                self.buf = self.buf[len(self.buf) - keep :]
                break
            self.buf = self.buf[pos + len(self.inside) :]
            self.inside = None
        return self._visible("".join(out))

    def _visible(self, text: str) -> str:
        if not self.started:
            text = text.lstrip()
            self.started = bool(text)
        return text

    def finish(self) -> str:
        """What is left to send at the end of the stream (nothing from an unclosed reasoning block)."""
        rest = "" if self.inside is not None else self.buf
        self.buf = ""
        return self._visible(rest)
