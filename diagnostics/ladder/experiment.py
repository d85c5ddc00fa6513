"""Experiments: audit several variants of the pipeline on the same golden cases and say which is better.

A variant is a small TOML file (examples/variants/):

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

Every variant is audited with the service's own code (diagnostics.audit.run.Auditor) on the same cases; each is
compared with the first by a paired bootstrap per metric (diagnostics.audit.compare); a winner is named per metric
only when the intervals say so, else "inconclusive"; and the cases whose verdict flipped are listed. Question
vectors are computed once per embedding model and shared by every variant (CachingEmbedder), so retrieval-only
variants cost one embedding of the questions in all. Faithfulness is scored with one scorer for every variant
(the settings' embedding model), so a variant with another embedding model is judged by the same yardstick.
"""

from __future__ import annotations

import json
import re
import tempfile
import time
import tomllib
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np

from core.embedding import Embedder, get_embedder
from core.errors import CollectionNotFoundError, ConfigError, InvalidRequestError
from core.settings import COLLECTION_NAME_PATTERN, Settings
from core.sparse import Bm25Encoder
from core.store import Store
from diagnostics.audit.compare import compare
from diagnostics.audit.golden import GoldenSet
from diagnostics.audit.run import GOOD, Auditor
from diagnostics.judges.base import Judge
from diagnostics.judges.factory import make_judge
from diagnostics.metrics import paired_bootstrap
from engine.answer import Answerer
from engine.generation.extractive import ExtractiveGenerator
from engine.generation.llm import LLMGenerator
from engine.params import retrieval_params
from engine.prompts import builtin_prompts, prompt_file
from engine.rerank import CrossEncoderReranker
from engine.retrieval import Retriever
from engine.rewrite import build_rewriter

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
DEFAULT_TABLE_METRICS = ("ndcg@10", "recall@10", "mrr", "hit@5", "faithfulness", "judge_faithfulness")
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


class CachingEmbedder:
    """An Embedder that remembers the vectors it computed (by exact text), so each question is embedded once
    for all the variants that use this model. Everything else is the wrapped embedder's."""

    def __init__(self, inner: Embedder, max_items: int = 50_000):
        self.inner, self.max_items = inner, max_items
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self.computed = 0  # texts actually sent to the model
        self.reused = 0

    def __getattr__(self, name):  # dim, name, tokenizer, count_tokens, fingerprint, ...
        return getattr(self.inner, name)

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        texts = list(texts)
        missing = [t for t in dict.fromkeys(texts) if t not in self._cache]
        if missing:
            for t, v in zip(missing, self.inner.encode(missing)):
                self._cache[t] = v
            self.computed += len(missing)
            while len(self._cache) > self.max_items:
                self._cache.popitem(last=False)
        self.reused += len(texts) - len(missing)
        if not texts:
            return self.inner.encode([])
        return np.stack([self._cache[t] for t in texts])


class ExperimentRunner:
    """Runs variants against one store. Embedders (cached) and the reranker are shared between variants."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        embedder: Embedder | None = None,
        judge_cache: Path | None = None,
        reranker: CrossEncoderReranker | None = None,
    ):
        self.settings, self.store = settings, store
        self._embedders: dict[str, CachingEmbedder] = {}
        base = embedder or get_embedder(settings)
        self._embedders[settings.embedding_model] = CachingEmbedder(base)
        self.bm25 = Bm25Encoder.from_settings(settings)
        # One yardstick for every variant: faithfulness by the settings' embedding model.
        self._scorer: Judge | None = None  # the faithfulness judge of the settings, built when first needed
        self.judge_cache = judge_cache or settings.data_dir / "judge_cache.jsonl"
        self._reranker = reranker  # the service's, when it has one; else loaded by the first variant that reranks

    def embedder_for(self, model: str) -> CachingEmbedder:
        if model not in self._embedders:
            self._embedders[model] = CachingEmbedder(
                get_embedder(self.settings.model_copy(update={"embedding_model": model}))
            )
        return self._embedders[model]

    def _generator(self, variant: Variant, s: Settings, embedder):
        """The variant's generator: an LLM when it names one or an endpoint is configured, else extractive."""
        gen = (variant.generation or {}).get("generator")
        if gen == "llm" or (gen is None and s.llm_base_url):
            if not s.llm_base_url:
                raise VariantError(f"{variant.name}: generator llm needs base_url (or RAG_LLM_BASE_URL)")
            text = (variant.generation or {}).get("prompt_text")
            if text is None:
                return LLMGenerator(s)
            with tempfile.TemporaryDirectory() as tmp:  # the generator reads its prompt once, from a file
                path = Path(tmp) / "prompt.md"
                path.write_text(text, encoding="utf-8")
                return LLMGenerator(s.model_copy(update={"prompt_template": str(path)}))
        return ExtractiveGenerator(embedder, self.bm25)

    def run_variant(
        self,
        variant: Variant,
        golden: GoldenSet,
        ks: Iterable[int],
        generate: bool = False,
        progress: Callable[[int], None] | None = None,
    ) -> dict:
        s = variant.settings(self.settings)
        spec = self.store.get_spec(s.collection)
        if spec is None:
            raise CollectionNotFoundError(f"{variant.name}: no collection named {s.collection!r}")
        # A collection is queried with the model that built it (a tuned retriever's collection, for one).
        embedder = self.embedder_for(spec.embedding["model"])
        params = retrieval_params(s, **variant.retrieval)
        gen = generate or variant.generates
        if params.mode != "sparse":  # one batched pass over the questions; every case then hits the cache
            embedder.encode([c.question for c in golden.cases])
        reranker = None
        if params.rerank:
            if not s.rerank_model:
                raise InvalidRequestError("rerank_unavailable", f"{variant.name}: rerank needs RAG_RERANK_MODEL")
            self._reranker = self._reranker or CrossEncoderReranker(s.rerank_model, s.embedding_device)
            reranker = self._reranker
        generator = self._generator(variant, s, embedder) if gen else ExtractiveGenerator(embedder, self.bm25)
        judge = None
        if gen and variant.judge is not None:
            from diagnostics.judges.ragas_metrics import RagasJudge

            judge = RagasJudge(s, self.judge_cache)
        # The same rewrite stage as the service and `rag audit`, so conversation turns are searched alike.
        rewriter = build_rewriter(s, self.store, embedder, self.bm25)
        answerer = Answerer(Retriever(self.store, embedder, self.bm25, reranker), generator, rewriter)
        report = Auditor(answerer, self.store, self.scorer() if gen else None, judge).run(
            golden, s.collection, params, ks, gen, progress=progress
        )
        report["variant"] = variant.describe()
        return report

    def scorer(self) -> Judge:
        """The settings' faithfulness judge (RAG_FAITHFULNESS_JUDGE), one for every variant: the same yardstick."""
        if self._scorer is None:
            self._scorer = make_judge(self.settings, self._embedders[self.settings.embedding_model], self.bm25)
        return self._scorer

    def run(
        self,
        golden: GoldenSet,
        variants: Sequence[Variant],
        ks: Iterable[int] = (1, 3, 5, 10),
        generate: bool = False,
        progress: Callable[[str, int], None] | None = None,
    ) -> tuple[dict, list[dict]]:
        """Audit every variant on the same cases and compare each with the first: (experiment, reports)."""
        t0 = time.perf_counter()
        reports = []
        for v in variants:
            tick = (lambda n, name=v.name: progress(name, n)) if progress else None
            reports.append(self.run_variant(v, golden, ks, generate, tick))
        result = analyse(reports)
        result["seconds"] = round(time.perf_counter() - t0, 2)
        result["embedding_cache"] = {
            m: {"computed": e.computed, "reused": e.reused} for m, e in self._embedders.items()
        }
        return result, reports


def case_values(report: dict, metric: str) -> dict[str, float]:
    """Case id -> value of a metric ("ndcg@10", "span_recall@5", "faithfulness", "judge_faithfulness")."""
    out = {}
    for c in report["cases"]:
        gen = c.get("generation") or {}
        if metric == "faithfulness":
            v = gen.get("faithfulness")
        elif metric.startswith("judge_"):
            v = (gen.get("judge") or {}).get(metric[len("judge_") :], {}).get("value")
        else:
            v = c["metrics"].get(metric, c["span"].get(metric))
        if v is not None:
            out[c["id"]] = float(v)
    return out


def paired(current: dict, baseline: dict, metric: str) -> dict | None:
    """Paired bootstrap of a metric over the cases both reports measured; None when none are shared."""
    a, b = case_values(current, metric), case_values(baseline, metric)
    ids = [i for i in a if i in b]
    if not ids:
        return None
    r = paired_bootstrap([a[i] for i in ids], [b[i] for i in ids])
    return {
        "current": round(sum(a[i] for i in ids) / len(ids), 4),
        "baseline": round(sum(b[i] for i in ids) / len(ids), 4),
        "delta": round(r["delta"], 4),
        "ci95": [round(x, 4) for x in r["ci95"]],
        "label": r["label"],
        "n": len(ids),
    }


def winner(metric: str, names: list[str], reports: list[dict], comparisons: dict[str, dict]) -> dict:
    """The winner of one metric, or None with the reason ("inconclusive").

    A challenger wins when its paired interval against the baseline (the first variant) is above 0 and, if
    several are, when it also beats the runner-up by a paired interval above 0. The baseline wins when every
    challenger is significantly worse. Anything else is inconclusive: the cases cannot tell them apart.
    """
    base, others = names[0], names[1:]
    labels = {n: (comparisons[n].get(metric) or {}).get("label") for n in others}
    improved = sorted((n for n in others if labels[n] == "improved"), key=lambda n: -comparisons[n][metric]["delta"])
    if improved:
        best = improved[0]
        if len(improved) > 1:
            second = improved[1]
            vs = paired(reports[names.index(best)], reports[names.index(second)], metric)
            if vs is None or vs["label"] != "improved":
                return {
                    "winner": None,
                    "verdict": "inconclusive",
                    "reason": f"{best} and {second} both beat {base}, but not each other",
                }
        return {"winner": best, "verdict": "winner", "reason": f"beats {base} (paired 95% interval above 0)"}
    if others and all(labels[n] == "regressed" for n in others):
        return {"winner": base, "verdict": "winner", "reason": "every other variant is significantly worse"}
    measured = [n for n in others if labels[n] is not None]
    if not measured:
        return {"winner": None, "verdict": "unmeasured", "reason": "no paired cases measure this metric"}
    return {"winner": None, "verdict": "inconclusive", "reason": "no paired 95% interval excludes 0"}


def analyse(reports: list[dict]) -> dict:
    """Compare each report with the first: metrics, winners per metric, verdicts, flipped cases."""
    names = [r["variant"]["name"] for r in reports]
    base = reports[0]
    comparisons: dict[str, dict] = {}
    flipped: dict[str, list[dict]] = {}
    questions = {c["id"]: c["question"] for c in base["cases"]}
    for name, rep in zip(names[1:], reports[1:]):
        comp = compare(rep, base)
        metrics = dict(comp["metrics"])
        for metric in rep.get("overall", {}):
            if metric.startswith("judge_") and metric in base.get("overall", {}):
                if (pb := paired(rep, base, metric)) is not None:
                    metrics[metric] = pb
        comparisons[name] = metrics
        flipped[name] = [{**f, "question": questions.get(f["id"], "")} for f in comp["flipped"]]
    all_metrics = [m for m in base.get("overall", {}) if all(m in r.get("overall", {}) for r in reports)]
    winners = {m: winner(m, names, reports, comparisons) for m in all_metrics}
    return {
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "baseline": names[0],
        "cases": len(base["cases"]),
        "variants": [
            {
                **r["variant"],
                "settings": r["settings"],
                "overall": {m: r["overall"][m] for m in r.get("overall", {})},
                "verdicts": r["verdicts"],
                "good": sum(n for v, n in r["verdicts"].items() if v in GOOD),
                "seconds": r["seconds"],
            }
            for r in reports
        ],
        "comparisons": comparisons,
        "winners": winners,
        "flipped": flipped,
    }


def to_markdown(result: dict, metrics: Sequence[str] | None = None, max_flipped: int = 15) -> str:
    """The comparison table (mean per variant; delta and 95% interval against the baseline) and the flips."""
    names = [v["name"] for v in result["variants"]]
    available = list(result["winners"])
    chosen = [m for m in (metrics or DEFAULT_TABLE_METRICS) if m in available] or available
    lines = [
        f"Experiment: {len(names)} variants on {result['cases']} cases; baseline **{names[0]}**; "
        "delta and paired-bootstrap 95% interval against the baseline.",
        "",
        "| metric | " + " | ".join(names) + " | winner |",
        "|---|" + "---|" * (len(names) + 1),
    ]
    for m in chosen:
        first = result["variants"][0]["overall"][m]["mean"]
        cells = [f"{first:.4f}" if first is not None else "-"]
        for name in names[1:]:
            c = result["comparisons"][name].get(m)
            cells.append(
                f"{c['current']:.4f} ({c['delta']:+.4f} [{c['ci95'][0]:+.4f}, {c['ci95'][1]:+.4f}] {c['label']})"
                if c
                else "-"
            )
        w = result["winners"][m]
        lines.append(f"| {m} | " + " | ".join(cells) + f" | {w['winner'] or w['verdict']} |")
    lines += ["", "| variant | good verdicts | verdicts | seconds |", "|---|---|---|---|"]
    for v in result["variants"]:
        verdicts = ", ".join(f"{k} {n}" for k, n in sorted(v["verdicts"].items(), key=lambda x: -x[1]))
        lines.append(f"| {v['name']} | {v['good']} / {result['cases']} | {verdicts} | {v['seconds']} |")
    for name, flips in result["flipped"].items():
        fixed = sum(f["direction"] == "fixed" for f in flips)
        broken = sum(f["direction"] == "broken" for f in flips)
        lines += ["", f"**{name} vs {names[0]}**: {len(flips)} verdicts flipped ({fixed} fixed, {broken} broken)"]
        for f in flips[:max_flipped]:
            lines.append(f"- {f['id']} {f['direction']}: {f['baseline']} -> {f['current']}: {f['question'][:90]}")
        if len(flips) > max_flipped:
            lines.append(f"- ... {len(flips) - max_flipped} more in experiment.json")
    return "\n".join(lines) + "\n"


def write_experiment(result: dict, reports: list[dict], out_dir: Path, metrics: Sequence[str] | None = None) -> dict:
    """experiment.json, experiment.md, and each variant's full audit under variants/<name>/."""
    from diagnostics.audit.report import write_reports

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for rep in reports:
        safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in rep["variant"]["name"])
        write_reports(rep, out_dir / "variants" / safe)
    paths = {"json": out_dir / "experiment.json", "md": out_dir / "experiment.md"}
    paths["json"].write_text(json.dumps(result, indent=2, default=str))
    paths["md"].write_text(to_markdown(result, metrics))
    return paths
