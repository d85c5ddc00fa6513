"""Token counts of one answer, as the OpenAI-compatible responses report them (`usage`), and who counted them.

An LLM endpoint's own `usage` is its model's tokenizer: taken as it is (`source` "llm_server"). The extractive
generator has no model of its own: its counts are the embedding model's tokenizer (the only model that read
anything) over the question and the contexts (prompt) and the answer (completion), `source`
"embedding_tokenizer" with that tokenizer named. An endpoint that returns no usage, or a generator that cannot
count, gives null counts with `source` "unknown": never a 0 that reads as a count. No generator call (no
contexts: the answer is the decline sentence) is a true 0, `source` "none".
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Usage:
    prompt_tokens: int | None
    completion_tokens: int | None
    total_tokens: int | None
    source: str  # "llm_server", "embedding_tokenizer", "none" or "unknown"
    tokenizer: str | None = None  # the model whose tokenizer counted, when known

    @classmethod
    def unknown(cls) -> "Usage":
        return cls(None, None, None, "unknown")

    @classmethod
    def none(cls) -> "Usage":
        return cls(0, 0, 0, "none")

    @classmethod
    def counted(cls, prompt: int | None, completion: int | None, source: str, tokenizer: str | None) -> "Usage":
        if prompt is None or completion is None:
            return cls(prompt, completion, None, source, tokenizer)
        return cls(prompt, completion, prompt + completion, source, tokenizer)
