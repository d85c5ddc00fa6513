"""The prompt: instructions, optional few-shot examples, numbered sources quoted as material, the question."""

from __future__ import annotations

import json
import re
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


# Whatever a parser lenient about case, spacing and invisible characters would read as a source tag:
# "<source", "</SOURCE >", "< /Source", "<\u200b/source". Its "<" becomes "‹" (U+2039): a person reads the same
# text, and no document can close its quote or open a forged, numbered source (guides/reliability.md).
_ZW = "\u200b\u200c\u200d\u2060\ufeff"
SOURCE_TAG = re.compile(rf"<(?=[\s{_ZW}]*/?[\s{_ZW}]*source\b)", re.IGNORECASE)


def inert(text: str) -> str:
    """The text with every source-tag look-alike neutralised (the only change made to a document)."""
    return SOURCE_TAG.sub("\u2039", text)


def format_sources(texts: Sequence[tuple[str, str]]) -> str:
    """(title, text) pairs -> numbered, quoted sources. A document cannot close its own quote or forge another
    source, whatever the case or spacing of the tag it writes; a title cannot leave its attribute."""
    blocks = []
    for i, (title, text) in enumerate(texts, 1):
        safe_title = " ".join(title.split()).replace('"', "'").replace("<", "\u2039").replace(">", "\u203a")
        blocks.append(f'<source id="{i}" title="{safe_title}">\n{inert(text)}\n</source>')
    return "\n\n".join(blocks)


def user_message(question: str, sources: Sequence[tuple[str, str]]) -> str:
    return f"Sources:\n\n{format_sources(sources)}\n\nQuestion: {inert(question)}"


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
