"""Pipeline variants, parsed and checked. A variant is a small TOML file (examples/variants/):

    name = "hybrid-rrf60"               # default: the file name
    description = "RRF k=60 instead of DBSF"
    collection = "scifact"              # default: the settings' collection
    [retrieval]                         # any of: mode, fusion, rrf_k, weights, top_k, candidates, rerank,
    fusion = "rrf"                      #   rerank_candidates (engine/params.py); unset = the settings
    rrf_k = 60
    [generation]                        # present = this variant generates answers
    generator = "llm"                   # "llm" (an OpenAI-compatible endpoint) or "extractive"
    prompt = "strict"                   # a prompt file (relative to this TOML) or a built-in name (engine/prompts)
    # prompt_text = "..."               # or the system prompt itself ({decline} = the decline sentence)
    fewshot = "fewshot.jsonl"           # relative to this TOML
    reasoning = true                    # reasoning in <reasoning> tags, stripped from the answer
    base_url = "http://localhost:8080/v1"
    model = "qwen2.5-7b-instruct"       # also: temperature, max_tokens
    [judge]                             # ragas judge of the answers (needs an endpoint)
    enabled = true                      # also: base_url, model

API keys never go in a variant: they come from the settings (RAG_LLM_API_KEY, RAG_JUDGE_API_KEY).

A variant sent to the API (`POST /v1/experiments`: TOML text or the same fields as JSON) is untrusted: it may
name built-in prompts and carry its prompt as `prompt_text`, but no file on the server (a prompt or few-shot
path) and no endpoint (`base_url`: the service's own are used, with its keys); `parse_variant(trusted=False)`.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from core.errors import ConfigError, InvalidRequestError
from core.settings import COLLECTION_NAME_PATTERN, Settings
from engine.params import retrieval_params
from engine.prompts import builtin_prompts, prompt_file

RETRIEVAL_KEYS = {"mode", "fusion", "rrf_k", "weights", "top_k", "candidates", "rerank", "rerank_candidates"}
# [generation] key -> Settings field
GENERATION_KEYS = {
    "generator": None,
    "prompt": "prompt_template",
    "prompt_text": None,  # the prompt itself, instead of a file (handed to the generator in a temporary file)
    "fewshot": "fewshot_path",
    "reasoning": "llm_reasoning",
    "base_url": "llm_base_url",
    "model": "llm_model",
    "temperature": "llm_temperature",
    "max_tokens": "llm_max_tokens",
}
JUDGE_KEYS = {"enabled": None, "base_url": "judge_base_url", "model": "judge_model"}
TOP_KEYS = {"name", "description", "collection", "retrieval", "generation", "judge"}
MAX_PROMPT_CHARS = 20_000


class VariantError(ConfigError):
    code = "variant_invalid"


@dataclass(frozen=True)
class Variant:
    name: str
    description: str = ""
    collection: str | None = None
    retrieval: dict = field(default_factory=dict)
    generation: dict | None = None  # None: retrieval only (unless the experiment generates for all)
    judge: dict | None = None
    source: str | None = None  # the TOML file

    @property
    def generates(self) -> bool:
        return self.generation is not None

    def settings(self, base: Settings) -> Settings:
        """The base settings with this variant's generation, judge and collection overrides."""
        update: dict = {}
        for key, value in (self.generation or {}).items():
            if GENERATION_KEYS[key]:
                update[GENERATION_KEYS[key]] = value
        for key, value in (self.judge or {}).items():
            if JUDGE_KEYS[key]:
                update[JUDGE_KEYS[key]] = value
        if self.collection:
            update["collection"] = self.collection
        return base.model_copy(update=update)

    def describe(self) -> dict:
        return {
            "name": self.name,
            "description": self.description,
            "collection": self.collection,
            "retrieval": self.retrieval,
            "generation": {k: str(v) if isinstance(v, Path) else v for k, v in (self.generation or {}).items()}
            if self.generation is not None
            else None,
            "judge": self.judge,
            "source": self.source,
        }


def _check_type(where: str, key: str, value, types: tuple, what: str) -> None:
    if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
        raise VariantError(f"{where}: {key} must be {what} (got {value!r})")


def parse_variant(
    data: dict, where: str = "variant", base_dir: Path | None = None, default_name: str = "", trusted: bool = True
) -> Variant:
    """A variant from a parsed TOML table (or the same fields as JSON). Raises VariantError naming the file and
    the key. Untrusted (from the API): no file on this machine (prompt paths, few-shot files) and no endpoint
    (base_url) may be named; built-in prompt names and inline `prompt_text` are fine."""
    if not isinstance(data, dict):
        raise VariantError(f"{where}: a variant is a table of fields (got {type(data).__name__})")
    unknown = set(data) - TOP_KEYS
    if unknown:
        expected = ", ".join(sorted(TOP_KEYS))
        raise VariantError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}; expected {expected}")
    name = data.get("name", default_name)
    _check_type(where, "name", name, (str,), "a non-empty string")
    if not name.strip():
        raise VariantError(f"{where}: name must be a non-empty string")
    description = data.get("description", "")
    _check_type(where, "description", description, (str,), "a string")
    collection = data.get("collection")
    if collection is not None:
        _check_type(where, "collection", collection, (str,), "a collection name")
        if not re.fullmatch(COLLECTION_NAME_PATTERN, collection):
            raise VariantError(f"{where}: collection must be 1-64 of A-Z a-z 0-9 - _ (got {collection[:80]!r})")

    def table(section: str, allowed) -> dict | None:
        raw = data.get(section)
        if raw is None:
            return None
        if not isinstance(raw, dict):
            raise VariantError(f"{where}: [{section}] must be a table")
        bad = set(raw) - set(allowed)
        if bad:
            raise VariantError(
                f"{where}: unknown key(s) in [{section}]: {', '.join(sorted(bad))}; "
                f"expected {', '.join(sorted(allowed))}"
            )
        return dict(raw)

    retrieval = table("retrieval", RETRIEVAL_KEYS) or {}
    for key in ("top_k", "candidates", "rrf_k", "rerank_candidates"):
        if key in retrieval:
            _check_type(where, f"retrieval.{key}", retrieval[key], (int,), "a whole number")
    for key in ("rerank",):
        if key in retrieval:
            _check_type(where, f"retrieval.{key}", retrieval[key], (bool,), "true or false")
    if "mode" in retrieval and retrieval["mode"] not in ("hybrid", "dense", "sparse"):
        raise VariantError(f"{where}: retrieval.mode must be hybrid, dense or sparse (got {retrieval['mode']!r})")
    if "fusion" in retrieval and retrieval["fusion"] not in ("rrf", "dbsf"):
        raise VariantError(f"{where}: retrieval.fusion must be rrf or dbsf (got {retrieval['fusion']!r})")
    if "weights" in retrieval:
        w = retrieval["weights"]
        if not (isinstance(w, list) and len(w) == 2 and all(isinstance(x, (int, float)) for x in w)):
            raise VariantError(f"{where}: retrieval.weights must be two numbers [sparse, dense] (got {w!r})")
        retrieval["weights"] = [float(x) for x in w]
    try:  # every value a retrieval can run with, checked by the one place that builds parameters
        retrieval_params(Settings(_env_file=None), **retrieval)
    except InvalidRequestError as exc:
        raise VariantError(f"{where}: [retrieval]: {exc}") from None

    generation = table("generation", GENERATION_KEYS)
    if generation is not None:
        gen = generation.get("generator", "llm")
        if gen not in ("llm", "extractive"):
            raise VariantError(f"{where}: generation.generator must be llm or extractive (got {gen!r})")
        for key in ("prompt", "prompt_text", "fewshot", "base_url", "model"):
            if key in generation:
                _check_type(where, f"generation.{key}", generation[key], (str,), "a string")
        if "reasoning" in generation:
            _check_type(where, "generation.reasoning", generation["reasoning"], (bool,), "true or false")
        if "temperature" in generation:
            _check_type(where, "generation.temperature", generation["temperature"], (int, float), "a number")
        if "max_tokens" in generation:
            _check_type(where, "generation.max_tokens", generation["max_tokens"], (int,), "a whole number")
        if "prompt_text" in generation:
            text = generation["prompt_text"]
            if "prompt" in generation:
                raise VariantError(f"{where}: generation: set prompt or prompt_text, not both")
            if not text.strip() or len(text) > MAX_PROMPT_CHARS:
                raise VariantError(f"{where}: generation.prompt_text must have 1 to {MAX_PROMPT_CHARS} characters")
        if not trusted:
            _check_untrusted(where, generation, judge=False)
        base = base_dir or Path(".")
        if "fewshot" in generation:
            path = Path(generation["fewshot"])
            generation["fewshot"] = path if path.is_absolute() else base / path
            if not generation["fewshot"].is_file():
                raise VariantError(f"{where}: generation.fewshot: no file {generation['fewshot']}")
        if "prompt" in generation:
            rel = base / generation["prompt"]
            if rel.is_file():
                generation["prompt"] = str(rel)
            try:
                prompt_file(generation["prompt"])
            except ConfigError as exc:
                raise VariantError(f"{where}: generation.prompt: {exc}") from None
    judge = table("judge", JUDGE_KEYS)
    if judge is not None:
        if not trusted:
            _check_untrusted(where, judge, judge=True)
        if "enabled" in judge:
            _check_type(where, "judge.enabled", judge["enabled"], (bool,), "true or false")
        if not judge.get("enabled", True):
            judge = None
    return Variant(name.strip(), description, collection, retrieval, generation, judge, source=where)


def _check_untrusted(where: str, table: dict, judge: bool) -> None:
    """Refuse what an API client must not name: a server file, an endpoint (the server's keys would go there)."""
    section = "judge" if judge else "generation"
    if "base_url" in table:
        raise VariantError(
            f"{where}: {section}.base_url: a variant sent to the API cannot name an endpoint; "
            "the service's own (RAG_LLM_BASE_URL, RAG_JUDGE_BASE_URL) is used"
        )
    if judge:
        return
    if "fewshot" in table:
        raise VariantError(f"{where}: generation.fewshot names a file; a variant sent to the API cannot name files")
    prompt = table.get("prompt")
    if prompt is not None and prompt not in builtin_prompts():
        raise VariantError(
            f"{where}: generation.prompt: {prompt[:64]!r} is not a built-in prompt ({', '.join(builtin_prompts())}); "
            "a variant sent to the API cannot name files: send the prompt itself as prompt_text"
        )


def load_variant_text(text: str, where: str = "variant", default_name: str = "", trusted: bool = False) -> Variant:
    """A variant from TOML text (the API's): untrusted unless said otherwise, so it names no server file."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise VariantError(f"{where}: not valid TOML ({exc})") from None
    except RecursionError:  # arrays or tables nested a thousand deep: no variant is
        raise VariantError(f"{where}: not valid TOML (nested too deeply)") from None
    return parse_variant(data, where, None, default_name=default_name, trusted=trusted)


def check_variants(variants: list[Variant]) -> list[Variant]:
    """At least two variants (the first is the baseline), with distinct names."""
    if len(variants) < 2:
        raise VariantError("an experiment needs at least two variants (the first is the baseline)")
    names = [v.name for v in variants]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise VariantError(f"variant names must differ: {', '.join(dup)} named twice (set name = ... in the TOML)")
    return variants


def load_variant(path: Path) -> Variant:
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise VariantError(f"cannot read variant {path}: {exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise VariantError(f"{path}: not valid TOML ({exc})") from None
    return parse_variant(data, str(path), path.parent, default_name=path.stem)


def load_variants(paths: Sequence[Path]) -> list[Variant]:
    """Variants from TOML files; at least two, with distinct names (the first is the baseline)."""
    return check_variants([load_variant(p) for p in paths])
