"""The prompt: instructions, optional few-shot examples, numbered sources quoted as material, the question."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

from core.errors import ConfigError
from engine.prompts import DEFAULT, REASONING, read_prompt

DECLINE = "The sources do not contain the answer."


def system_prompt(template: str | Path | None = None, reasoning: bool = False) -> str:
    """The system prompt from a prompt file (engine/prompts/: a path or a built-in name; None = the built-in
    default), with the decline sentence filled in, plus the reasoning instruction when reasoning is on."""
    text = read_prompt(template or DEFAULT).replace("{decline}", DECLINE)
    return text + "\n" + read_prompt(REASONING) if reasoning else text


SYSTEM = system_prompt()  # the built-in prompt: engine/prompts/default.md


def format_sources(texts: Sequence[tuple[str, str]]) -> str:
    """(title, text) pairs -> numbered, quoted sources."""
    blocks = []
    for i, (title, text) in enumerate(texts, 1):
        safe = text.replace("</source>", "</ source>")  # a document cannot close its own quote
        blocks.append(f'<source id="{i}" title="{title.replace(chr(34), chr(39))}">\n{safe}\n</source>')
    return "\n\n".join(blocks)


def user_message(question: str, sources: Sequence[tuple[str, str]]) -> str:
    return f"Sources:\n\n{format_sources(sources)}\n\nQuestion: {question}"


def load_fewshot(path: Path | None) -> list[dict]:
    """Examples from a JSONL file of {"question", "sources": [str], "answer"}; raises ConfigError if malformed."""
    if path is None:
        return []
    examples = []
    try:
        for lineno, line in enumerate(Path(path).read_text().splitlines(), 1):
            if line.strip():
                row = json.loads(line)
                examples.append(
                    {
                        "question": str(row["question"]),
                        "sources": [str(s) for s in row["sources"]],
                        "answer": str(row["answer"]),
                    }
                )
    except (OSError, json.JSONDecodeError, KeyError, TypeError) as exc:
        raise ConfigError(f"few-shot file {path}: line {locals().get('lineno', '?')}: {exc}") from exc
    return examples


def build_messages(
    question: str, sources: Sequence[tuple[str, str]], fewshot: Sequence[dict] = (), system: str = SYSTEM
) -> list[dict]:
    messages = [{"role": "system", "content": system}]
    for ex in fewshot:
        messages.append({"role": "user", "content": user_message(ex["question"], [("", s) for s in ex["sources"]])})
        messages.append({"role": "assistant", "content": ex["answer"]})
    messages.append({"role": "user", "content": user_message(question, sources)})
    return messages
