"""The LLM faithfulness judge: each claim against the numbered sentences of the contexts, through any
OpenAI-compatible endpoint (RAG_JUDGE_* settings, else RAG_LLM_*).

The model is asked for "yes N" (sentence N supports the claim) or "no". When the endpoint returns log
probabilities (OpenAI, vLLM, llama.cpp do), the claim's score is P(yes) / (P(yes) + P(no)) among the first
token's alternatives, which ranks claims (ROC AUC) and holds even when a small model rambles ("The claim is
not supported by ..."); otherwise the reply is read (yes/no, or "is (not) supported") and the score is 1 or
0. A claim the endpoint could not judge (down, timed out, a reply with neither) is scored by the fallback
judge, and says so in `judged_by`. Judgments are cached on disk, keyed by model, prompt version and the exact inputs.

Measured against human labels by benchmarks/faithfulness_agreement.py --judge llm; the real llama.cpp run is
in tests/diagnostics/test_llm_judge_real.py (marked llm).
"""

from __future__ import annotations

import math
import re
import time
from pathlib import Path
from typing import Sequence

import openai

from core.errors import ConfigError
from core.settings import Settings
from core.text import sentences
from diagnostics.judges.base import ClaimSupport, Judge
from diagnostics.judges.ragas_metrics import JsonlCache

PROMPT_VERSION = "claim-yes-no-v1"
SYSTEM = (
    "You check facts. You get numbered source sentences and one claim. Reply on one line: 'yes N' when "
    "sentence N states the claim or it follows directly from the sentences, or 'no' when the sentences do "
    "not say it or say otherwise. Reply with nothing else."
)
REPLY = re.compile(r"^\W*(yes|no)\b[^\d\n]{0,24}(\d+)?", re.I)
# Small models often answer in a sentence ("The claim is not supported by ..."): read that too.
SENTENCE_REPLY = re.compile(r"\b(?:is|are)\s+(not\s+)?(?:supported|stated|true)\b", re.I)
MAX_CONTEXT_CHARS = 6000


def _numbered(contexts: Sequence[str]) -> list[tuple[int, str]]:
    """(context number, sentence) for every context sentence, up to MAX_CONTEXT_CHARS in all."""
    out, size = [], 0
    for i, c in enumerate(contexts, 1):
        for s in sentences(c, min_words=3) or [c]:
            if size + len(s) > MAX_CONTEXT_CHARS:
                return out
            out.append((i, s))
            size += len(s)
    return out


def parse_reply(text: str, n_sentences: int) -> tuple[bool, int | None] | None:
    """("yes"?, 1-based sentence number or None) from the model's reply; None when it is neither yes nor no."""
    m = REPLY.match(text or "")
    if not m:
        said = SENTENCE_REPLY.search(text or "")
        return (not said.group(1), None) if said else None
    number = int(m.group(2)) if m.group(2) else None
    return m.group(1).lower() == "yes", number if number and 1 <= number <= n_sentences else None


def yes_probability(choice) -> float | None:
    """P(yes) / (P(yes) + P(no)) from the first generated token's top log probabilities, when given."""
    content = getattr(getattr(choice, "logprobs", None), "content", None)
    if not content:
        return None
    probs = {"yes": 0.0, "no": 0.0}
    for alt in content[0].top_logprobs or []:
        word = alt.token.strip().lower()
        if word in probs:
            probs[word] += math.exp(alt.logprob)
    total = probs["yes"] + probs["no"]
    return probs["yes"] / total if total > 0 else None


class LLMJudge(Judge):
    threshold = 0.5

    def __init__(self, settings: Settings, cache_path: Path | None, fallback: Judge | None = None):
        base_url = settings.judge_base_url or settings.llm_base_url
        if not base_url:
            raise ConfigError("the LLM judge needs an endpoint: set RAG_JUDGE_BASE_URL or RAG_LLM_BASE_URL")
        key = settings.judge_api_key or settings.llm_api_key
        self.model = settings.judge_model or settings.llm_model
        self.name = f"llm-claims:{self.model}"
        self.client = openai.OpenAI(
            base_url=base_url,
            api_key=key.get_secret_value() if key else "not-needed",
            timeout=settings.llm_timeout_s,
            max_retries=settings.llm_max_retries,
        )
        self.cache = JsonlCache(cache_path) if cache_path else None
        self.fallback = fallback
        self.agreement = {}
        self.calls, self.seconds, self.failures = 0, 0.0, 0

    def _ask(self, claim: str, numbered: list[tuple[int, str]]) -> dict | None:
        """{"score", "sentence"} from the endpoint (or the cache); None when it could not judge."""
        sources = "\n".join(f"[{n}] {s}" for n, (_, s) in enumerate(numbered, 1))
        messages = [
            {"role": "system", "content": SYSTEM},
            {"role": "user", "content": f"Sources:\n{sources}\n\nClaim: {claim}\nIs the claim supported?"},
        ]
        key = JsonlCache.key(PROMPT_VERSION, self.model, messages)
        if self.cache and (hit := self.cache.get(key)) is not None:
            return hit
        t0 = time.perf_counter()
        self.calls += 1
        try:
            resp = self.client.chat.completions.create(
                model=self.model, messages=messages, max_tokens=8, temperature=0.0, logprobs=True, top_logprobs=10
            )
            choice = resp.choices[0]
            parsed = parse_reply(choice.message.content or "", len(numbered))
            p = yes_probability(choice)
        except Exception:  # the endpoint down, slow or malformed: the fallback judge decides this claim
            parsed, p = None, None
        finally:
            self.seconds += time.perf_counter() - t0
        if parsed is None and p is None:
            self.failures += 1
            return None
        # P(yes) of the first token when the endpoint gives it (also when the words that follow ramble).
        score = p if p is not None else float(parsed[0])
        result = {"score": round(score, 4), "sentence": parsed[1] if parsed else None}
        if self.cache:
            self.cache.put(key, result)
        return result

    def score_claims(self, claims: Sequence[str], contexts: Sequence[str]) -> list[ClaimSupport]:
        if not contexts:
            raise ValueError("faithfulness needs at least one context")
        numbered = _numbered(contexts)
        out = []
        for claim in claims:
            got = self._ask(claim, numbered)
            if got is None:
                if self.fallback is None:
                    out.append(ClaimSupport(claim, 0.0, False, None, None, judged_by="unjudged"))
                else:
                    c = self.fallback.score_claims([claim], contexts)[0]
                    c.judged_by = f"{self.fallback.name} (fallback: the LLM judge could not judge it)"
                    out.append(c)
                continue
            src, evidence = numbered[got["sentence"] - 1] if got["sentence"] else (None, None)
            out.append(ClaimSupport(claim, got["score"], got["score"] >= self.threshold, src, evidence))
        return out
