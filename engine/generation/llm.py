"""Generation through the `openai` client against any OpenAI-compatible server (OpenAI, vLLM, Ollama,
llama.cpp). Endpoint failures become GenerationError with a stable code; the caller still has retrieval.
"""

from __future__ import annotations

from typing import Iterator, Sequence

import openai

from core.errors import RagError
from core.settings import Settings
from engine.generation.prompt import build_messages, load_fewshot, system_prompt
from engine.generation.usage import Usage
from engine.prompts import ReasoningFilter, strip_reasoning


class GenerationError(RagError):
    code = "llm_error"
    http_status = 502

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


def _translate(exc: Exception) -> GenerationError:
    if isinstance(exc, openai.APITimeoutError):
        return GenerationError("llm_timeout", f"the LLM endpoint did not answer in time: {exc}")
    if isinstance(exc, openai.APIConnectionError):
        return GenerationError("llm_unavailable", f"cannot reach the LLM endpoint: {exc}")
    if isinstance(exc, openai.RateLimitError):
        return GenerationError("llm_rate_limited", "the LLM endpoint is rate limiting us (429)")
    if isinstance(exc, openai.APIStatusError):
        return GenerationError("llm_error", f"the LLM endpoint answered {exc.status_code}: {exc.message}")
    return GenerationError(
        "llm_bad_response", f"the LLM endpoint's answer could not be read: {type(exc).__name__}: {exc}"
    )


class LLMGenerator:
    def __init__(self, settings: Settings):
        self.model = settings.llm_model
        self.name = f"openai-compatible:{settings.llm_model}"
        self.max_tokens, self.temperature = settings.llm_max_tokens, settings.llm_temperature
        self.fewshot = load_fewshot(settings.fewshot_path)
        self.system = system_prompt(settings.prompt_template, settings.llm_reasoning)
        key = settings.llm_api_key.get_secret_value() if settings.llm_api_key else "not-needed"
        self.client = openai.OpenAI(
            base_url=settings.llm_base_url,
            api_key=key,
            timeout=settings.llm_timeout_s,
            max_retries=settings.llm_max_retries,
        )

    def _messages(self, question: str, sources: Sequence[tuple[str, str]]) -> list[dict]:
        return build_messages(question, sources, self.fewshot, self.system)

    def prompt_messages(self, question: str, sources: Sequence[tuple[str, str]]) -> list[dict]:
        """The messages the endpoint is sent (the LLM span's llm.input_messages)."""
        return self._messages(question, sources)

    def generate(self, question: str, sources: Sequence[tuple[str, str]]) -> str:
        """The answer text, reasoning removed (engine/prompts); raises GenerationError."""
        return self.generate_counted(question, sources)[0]

    def generate_counted(self, question: str, sources: Sequence[tuple[str, str]]) -> tuple[str, Usage]:
        """The answer text and the endpoint's own token counts (null when it returns none)."""
        try:
            resp = self.client.chat.completions.create(
                model=self.model,
                messages=self._messages(question, sources),
                max_tokens=self.max_tokens,
                temperature=self.temperature,
            )
            content = resp.choices[0].message.content
            usage = self._usage(resp)
        except Exception as exc:  # every failure of the endpoint, including malformed bodies
            raise _translate(exc) from exc
        if content is None:
            raise GenerationError("llm_bad_response", "the LLM endpoint returned no message content")
        return strip_reasoning(content), usage

    def _usage(self, resp) -> Usage:
        """The endpoint's `usage` (its model's tokenizer, reasoning tokens included) or unknown."""
        u = getattr(resp, "usage", None)
        prompt, completion = getattr(u, "prompt_tokens", None), getattr(u, "completion_tokens", None)
        if not isinstance(prompt, int) or not isinstance(completion, int):
            return Usage.unknown()
        model = getattr(resp, "model", None) or self.model
        return Usage.counted(prompt, completion, "llm_server", model)

    def stream(self, question: str, sources: Sequence[tuple[str, str]]) -> Iterator[str]:
        """Tokens as they come, reasoning held back; raises GenerationError, also mid-way when the stream is cut."""
        for piece in self.stream_counted(question, sources):
            if isinstance(piece, str):
                yield piece

    def stream_counted(self, question: str, sources: Sequence[tuple[str, str]]) -> Iterator[str | Usage]:
        """As `stream`, then the endpoint's token counts (asked for with stream_options.include_usage; unknown
        when the endpoint sends none)."""
        visible = ReasoningFilter()
        usage = Usage.unknown()
        try:
            stream = self.client.chat.completions.create(
                model=self.model,
                messages=self._messages(question, sources),
                max_tokens=self.max_tokens,
                temperature=self.temperature,
                stream=True,
                stream_options={"include_usage": True},
            )
            finished = False
            for chunk in stream:
                if getattr(chunk, "usage", None) is not None:
                    usage = self._usage(chunk)
                if not chunk.choices:
                    continue
                choice = chunk.choices[0]
                if choice.delta and choice.delta.content and (piece := visible.feed(choice.delta.content)):
                    yield piece
                finished = finished or choice.finish_reason is not None
        except GenerationError:
            raise
        except Exception as exc:
            raise _translate(exc) from exc
        if not finished:
            # A connection closed mid-way looks like the end of the stream to the client; a complete
            # stream always says why it finished.
            raise GenerationError("llm_stream_cut", "the LLM stream ended before the endpoint said it was finished")
        if rest := visible.finish():
            yield rest
        yield usage
