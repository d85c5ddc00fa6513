"""Train a consistency judge from your own corpus, FactCC-style (`rag judge train`; diagnostics/judges/model.py
loads the result).

Examples are made from passages of the corpus (a collection's chunks, or the documents of files given):
the premise is a window of 1-3 consecutive sentences of a passage, as at scoring time, and the claim is
- supported: a sentence of the window as it is, or lightly rewritten (cut at a clause, a few words dropped,
  two sentences of the window merged, a leading phrase moved to the end);
- unsupported: such a sentence with one wrong fact (a number changed, a capitalised name swapped for one of
  another passage, a negation added or removed, content words swapped for another passage's), or a
  sentence moved in from another document (the one, of a few drawn, sharing most words with the window).
Labelled pairs ({claim, context, label}) may be added. The model is a cross-encoder with one logit, started
from the shipped MiniLM weights; the threshold maximises balanced accuracy on held-out synthetic claims
(other passages than the training ones) scored the way the judge scores answers, against the whole passage.
"""

from __future__ import annotations

import json
import math
import random
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np

from core.embedding import resolve_model_path
from core.settings import DEFAULT_EMBEDDING_MODEL
from core.text import sentences
from diagnostics.judges.model import JUDGE_FILE, ModelJudge, best_windows, context_windows, terms
from diagnostics.metrics import balanced_accuracy, roc_auc

AUX = re.compile(r"\b(is|are|was|were|can|may|does|did|has|have|will|could|should)\b")
NUM = re.compile(r"\b\d+(?:\.\d+)?\b")
CAP = re.compile(r"(?<!^)(?<![.!?]\s)\b[A-Z][a-zA-Z]{2,}\b")
CONTENT = re.compile(r"\b[a-z]{5,}\b")
LEADING = re.compile(
    r"^(?:In|During|After|Before|Among|For|At|On|With|Without|Using|Despite|Following|Compared with|Within|Across)\b"
)


def _mutation(kind: str, sent: str, other: list[str], rng: random.Random) -> str | None:
    if kind == "number" and (nums := NUM.findall(sent)):
        n = rng.choice(nums)
        new = str(int(float(n) * rng.choice([2, 3, 0.5]) + rng.choice([1, 7, 13])))
        return re.sub(rf"\b{re.escape(n)}\b", new, sent, count=1)
    if kind == "name" and (names := CAP.findall(sent)):
        pool = [c for o in other for c in CAP.findall(o) if c not in sent]
        return sent.replace(rng.choice(names), rng.choice(pool), 1) if pool else None
    if kind == "negation" and " not " in sent:
        return sent.replace(" not ", " ", 1)
    if kind == "negation" and (m := AUX.search(sent)):
        return sent[: m.end()] + " not" + sent[m.end() :]
    if kind == "swap":
        words = CONTENT.findall(sent)
        pool = [w for o in other for w in CONTENT.findall(o) if w not in sent]
        if len(words) >= 2 and pool:
            out = sent
            for w in rng.sample(words, min(2, len(words))):
                out = re.sub(rf"\b{w}\b", rng.choice(pool), out, count=1)
            return out
    return None


def mutate(sent: str, other: list[str], rng: random.Random) -> str | None:
    """An unsupported variant of `sent`: one wrong fact (a number, a name, a negation, content words from
    `other`). None when no mutation applies."""
    kinds = ["number", "name", "negation", "swap"]
    rng.shuffle(kinds)
    for kind in kinds:
        out = _mutation(kind, sent, other, rng)
        if out and out != sent:
            return out
    return None


def shorten(sent: str, rng: random.Random) -> str:
    """A supported variant: the sentence, maybe cut at a clause or with a few words dropped."""
    words = sent.split()
    r = rng.random()
    if r < 0.35 and "," in sent:
        head = sent.split(",")[0]
        if len(head.split()) >= 5:
            return head.rstrip() + "."
    if r < 0.7 and len(words) > 10:
        i = rng.randrange(1, len(words) - 4)
        return " ".join(words[:i] + words[i + rng.randint(1, 3) :])
    return sent


def reorder(sent: str) -> str | None:
    """'In 2010, the rate rose.' -> 'The rate rose in 2010.' (a paraphrase by reordering); None if no lead."""
    head, sep, tail = sent.partition(", ")
    if not sep or not LEADING.match(head) or len(head.split()) > 10 or len(tail.split()) < 4:
        return None
    tail = tail.rstrip(" .")
    return tail[0].upper() + tail[1:] + " " + head[0].lower() + head[1:] + "."


def merge(a: str, b: str) -> str:
    """Two sentences as one: 'A, and b.'"""
    a = a.rstrip(" .")
    lead = b.split(" ", 1)[0]
    b = b if (len(lead) > 1 and lead[1:].lower() != lead[1:]) else b[:1].lower() + b[1:]
    return f"{a}, and {b}"


@dataclass
class Passage:
    doc_id: str
    sents: list[str]


def passages_from_texts(docs: Iterable[tuple[str, str]], max_sentences: int = 8) -> list[Passage]:
    """Passages of up to `max_sentences` sentences of each (doc_id, text); those of under 2 sentences dropped."""
    out = []
    for doc_id, text in docs:
        sents = sentences(text, min_words=4)
        for i in range(0, len(sents), max_sentences):
            part = sents[i : i + max_sentences]
            if len(part) >= 2:
                out.append(Passage(doc_id, part))
    return out


def passages_from_files(paths: Sequence[Path], exclude: set[str], max_bytes: int) -> list[Passage]:
    """Passages of the documents in files (any format `rag ingest` reads; a .jsonl is a BEIR corpus)."""
    from ingest.parsers import parse_file
    from ingest.pipeline import discover

    docs = []
    for path, source, skip in discover(paths):
        if skip is None:
            docs.extend((d.doc_id, d.text) for d in parse_file(path, source, max_bytes) if d.doc_id not in exclude)
    return passages_from_texts(docs)


def passages_from_store(store, collection: str, exclude: set[str]) -> list[Passage]:
    """Each chunk of a collection is a passage (the contexts an answer is judged against are chunks)."""
    hits = store.scroll(collection, ["doc_id", "text", "position"])
    hits.sort(key=lambda h: (str(h.payload.get("doc_id")), h.payload.get("position") or 0))
    return passages_from_texts(
        ((str(h.payload["doc_id"]), h.payload.get("text") or "") for h in hits if h.payload["doc_id"] not in exclude),
        max_sentences=10**6,
    )


def load_labelled(path: Path) -> list[tuple[str, str, int]]:
    """(premise, claim, label) of a JSONL of {claim, context (text or list of texts), label (1/0 or bool)}.

    The premise is the window of the context the judge would read first: of its longest windows (up to 3
    sentences), the one sharing most content words with the claim."""
    out = []
    for lineno, line in enumerate(open(path), 1):
        if not line.strip():
            continue
        row = json.loads(line)
        ctx = row["context"]
        ctx = " ".join(ctx) if isinstance(ctx, list) else str(ctx)
        label = row["label"]
        if isinstance(label, str):
            label = label.strip().lower() in ("1", "true", "yes", "supported", "support", "entailment")
        claim = str(row["claim"])
        wins = context_windows([ctx])
        longest = max(k for _, _, k in wins)
        wins = [w for w in wins if w[2] == longest]
        pick = best_windows(claim, [terms(t) for _, t, _ in wins], [k for _, _, k in wins], 1)[0]
        out.append((wins[pick][1], claim, int(bool(label))))
    return out


def _window(sents: list[str], j: int, rng: random.Random) -> tuple[int, int]:
    """[start, end) of a window of 1-3 sentences holding sentence j."""
    k = min(len(sents), rng.choice([1, 2, 2, 3]))
    start = rng.randint(max(0, j - k + 1), min(j, len(sents) - k))
    return start, start + k


def _supported(sents: list[str], j: int, window: tuple[int, int], rng: random.Random) -> str:
    sent, r = sents[j], rng.random()
    if r < 0.2:
        return sent
    if r < 0.35 and window[1] - window[0] >= 2:
        others = [i for i in range(*window) if i != j]
        i = rng.choice(others)
        first, second = (sents[i], sent) if i < j else (sent, sents[i])
        return merge(shorten(first, rng), second)
    if r < 0.45 and (moved := reorder(sent)):
        return moved
    return shorten(sent, rng)


def _moved_in(premise: str, passages: list[Passage], doc_id: str, rng: random.Random) -> str | None:
    """A sentence of another document: of 16 drawn, the one sharing most content words with the premise."""
    want = terms(premise)
    drawn = []
    for _ in range(16):
        p = rng.choice(passages)
        if p.doc_id != doc_id:
            drawn.append(rng.choice(p.sents))
    return max(drawn, key=lambda s: len(terms(s) & want)) if drawn else None


def synthetic_examples(
    passages: list[Passage], n: int, rng: random.Random, whole: bool = False, pool: list[Passage] | None = None
) -> list:
    """n examples, half supported: (premise, claim, label), from `passages`; wrong facts and moved-in
    sentences come from `pool` (default: the same passages); `whole`: the premise is the whole passage."""
    pool = pool or passages
    out: list[tuple[str, str, int]] = []
    tries = 0
    while len(out) < n and tries < n * 5:
        tries += 1
        p = rng.choice(passages)
        long = [i for i, s in enumerate(p.sents) if len(s.split()) >= 8]
        if not long:
            continue
        j = rng.choice(long)
        window = (0, len(p.sents)) if whole else _window(p.sents, j, rng)
        premise = " ".join(p.sents[window[0] : window[1]])
        claim = _supported(p.sents, j, window, rng)
        if len(out) % 2 == 0:
            out.append((premise, claim, 1))
            continue
        bad = None
        if rng.random() < 0.7:
            other = rng.choice(pool).sents
            bad = mutate(claim if rng.random() < 0.5 else p.sents[j], other, rng)
        bad = bad or _moved_in(premise, pool, p.doc_id, rng)
        if bad and bad != claim and bad not in premise:
            out.append((premise, bad, 0))
    return out


def _batches(examples: list, tokenizer, batch_size: int, rng: random.Random) -> list[list]:
    """Batches of similar lengths (less padding), in random order."""
    order = list(range(len(examples)))
    rng.shuffle(order)
    pool = batch_size * 50
    batches = []
    for i in range(0, len(order), pool):
        part = sorted(order[i : i + pool], key=lambda k: len(examples[k][0]) + len(examples[k][1]))
        batches.extend(part[b : b + batch_size] for b in range(0, len(part), batch_size))
    rng.shuffle(batches)
    return [[examples[k] for k in b] for b in batches]


def fit(
    examples: list,
    base: str,
    max_length: int,
    epochs: int,
    batch_size: int,
    lr: float,
    seed: int,
    log: Callable[[str], None] = lambda _: None,
    head_lr: float = 2e-3,
):
    """A CrossEncoder (one logit) started from `base`, trained on (premise, claim, label) with BCE."""
    import torch
    from sentence_transformers import CrossEncoder

    torch.manual_seed(seed)
    ce = CrossEncoder(base, num_labels=1, max_length=max_length, device="cpu", local_files_only=True)
    model, tok = ce.model, ce.tokenizer
    rng = random.Random(seed)
    steps = math.ceil(len(examples) / batch_size) * epochs
    # The fresh head (and the pooler, never trained in a sentence-embedding model) learns faster than the body.
    head = [p for n, p in model.named_parameters() if n.startswith("classifier") or ".pooler." in f".{n}"]
    body = [p for n, p in model.named_parameters() if not (n.startswith("classifier") or ".pooler." in f".{n}")]
    groups = [{"params": body, "lr": lr}, {"params": head, "lr": max(lr, head_lr)}]
    opt = torch.optim.AdamW(groups, weight_decay=0.01)
    warm = max(1, steps // 10)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min((s + 1) / warm, max(0.0, (steps - s) / max(1, steps - warm)))
    )
    loss_fn = torch.nn.BCEWithLogitsLoss()
    model.train()
    step, t0, running = 0, time.monotonic(), 0.0
    for _ in range(epochs):
        for batch in _batches(examples, tok, batch_size, rng):
            enc = tok(
                [b[0] for b in batch],
                [b[1] for b in batch],
                truncation=True,
                max_length=max_length,
                padding=True,
                return_tensors="pt",
            )
            logits = model(**enc).logits.view(-1)
            loss = loss_fn(logits, torch.tensor([float(b[2]) for b in batch]))
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            opt.zero_grad()
            step += 1
            running = 0.9 * running + 0.1 * loss.item() if step > 1 else loss.item()
            if step % 25 == 0 or step == steps:
                log(f"step {step}/{steps} loss {running:.3f} {time.monotonic() - t0:.0f} s")
    model.eval()
    return ce


def choose_threshold(scores: Sequence[float], labels: Sequence[int]) -> float:
    grid = [round(float(t), 2) for t in np.arange(0.05, 0.96, 0.01)]
    return max(grid, key=lambda t: (balanced_accuracy(scores, labels, t), -abs(t - 0.5)))


def train_judge(
    passages: list[Passage],
    out: Path,
    *,
    labelled: list | None = None,
    source: str = "",
    max_pairs: int = 4000,
    holdout: float = 0.1,
    epochs: int = 1,
    batch_size: int = 16,
    max_length: int = 128,
    lr: float = 1e-4,
    head_lr: float = 2e-3,
    seed: int = 13,
    base: str | None = None,
    log: Callable[[str], None] = lambda _: None,
) -> dict:
    """Make the examples, train, choose the threshold on held-out passages, save weights + judge.json in `out`."""
    t0 = time.monotonic()
    docs = sorted({p.doc_id for p in passages})
    if len(docs) < 2:
        raise ValueError("training a judge needs passages of at least 2 documents")
    rng = random.Random(seed)
    rng.shuffle(docs)
    n_held_docs = max(1, round(len(docs) * holdout))
    held_docs = set(docs[:n_held_docs])
    train_p = [p for p in passages if p.doc_id not in held_docs]
    held_p = [p for p in passages if p.doc_id in held_docs]
    labelled = labelled or []
    n_synth = max(0, max_pairs - len(labelled))
    examples = synthetic_examples(train_p, n_synth, rng) + labelled
    n_held = min(400, max(20, round(max_pairs * holdout)))
    held = synthetic_examples(held_p, n_held, rng, whole=True, pool=passages)
    base_path = base or resolve_model_path(DEFAULT_EMBEDDING_MODEL)
    log(f"{len(examples)} training pairs ({sum(e[2] for e in examples)} supported) from {len(train_p)} passages")
    ce = fit(examples, base_path, max_length, epochs, batch_size, lr, seed, log, head_lr)
    train_seconds = time.monotonic() - t0
    judge = ModelJudge(ce, label=0, threshold=0.5)
    scores = [c.score for c in judge.score_each([(claim, [premise]) for premise, claim, _ in held])]
    y = [label for _, _, label in held]
    threshold = choose_threshold(scores, y)
    out.mkdir(parents=True, exist_ok=True)
    ce.save(str(out))
    meta = {
        "name": f"{out.name}-minilm-crossencoder",
        "kind": "cross-encoder, one logit (sigmoid), trained FactCC-style on synthetic claims of the corpus",
        "base_model": DEFAULT_EMBEDDING_MODEL if base is None else str(base),
        "label": 0,
        "threshold": threshold,
        "threshold_chosen_on": "held-out synthetic claims (other documents), max balanced accuracy",
        "max_length": max_length,
        "windows": {"sizes": list(judge.sizes), "max_windows": judge.max_windows},
        "trained_on": {
            "source": source,
            "passages": len(train_p),
            "documents": len(docs) - n_held_docs,
            "synthetic_pairs": len(examples) - len(labelled),
            "labelled_pairs": len(labelled),
            "supported": int(sum(e[2] for e in examples)),
            "epochs": epochs,
            "batch_size": batch_size,
            "lr": lr,
            "head_lr": head_lr,
            "seed": seed,
        },
        "held_out": {
            "pairs": len(held),
            "documents": n_held_docs,
            "balanced_accuracy": round(balanced_accuracy(scores, y, threshold), 4),
            "roc_auc": round(roc_auc(scores, y), 4),
        },
        "seconds": {"train": round(train_seconds, 1), "total": round(time.monotonic() - t0, 1)},
        "agreement": {},
    }
    (out / JUDGE_FILE).write_text(json.dumps(meta, indent=1) + "\n")
    return meta


__all__ = [
    "Passage",
    "load_labelled",
    "mutate",
    "passages_from_files",
    "passages_from_store",
    "passages_from_texts",
    "shorten",
    "synthetic_examples",
    "train_judge",
]
