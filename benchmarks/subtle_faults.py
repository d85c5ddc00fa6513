"""Generation faults that look like real ones, on SciFact (issue 17): does the faithfulness judge see them, and
does the audit name them?

    python benchmarks/subtle_faults.py [--docs 150] [--cases 150] [--judges heuristic,trained] [--out FILE]
    (measured with --docs 150 --cases 200: 433 abstracts, 200 cases, 5.5 min on 2 busy cores)

Cases: SciFact test (then train) queries whose relevant abstract the service's own hybrid retrieval puts inside
the cut (5 chunks). The reference answer is one sentence of the shown chunk of that abstract (chosen to hold a
number, an entity or a verb a negation can attach to, when one does). Every answer is made by a scripted
stand-in generator, named `stand-in:<fault>`, from that reference, and cited to the context that holds it:

- untouched (control): the reference verbatim                                  -> answered_well
- number: one number changed (x0.6 .. x1.5, or +1/+2 for small counts)          -> unsupported_claims
- entity: one entity (gene/protein token, drug by its suffix, acronym, capitalised name) swapped for one of the
  same kind from an abstract outside the corpus (so no context holds it)       -> unsupported_claims
- negation: one negation added after the first auxiliary ("was" -> "was not"), or removed when the sentence
  has one ("did not" -> "did", "no" -> "a", "without" -> "with")               -> unsupported_claims
- appended: the reference plus one sentence of a neighbouring document: retrieved for the question, not
  relevant, ranked outside the cut (so the generator never saw it), cited to the same context
                                                                                -> unsupported_claims
- paraphrase: right, reworded: synonyms from a small hand list, and "A and B" reordered when both end alike
  (>= 2 edits)                                                                 -> answered_well
- compressed: right, shortened, every claim and key fact kept: explanatory parentheticals ("(also known as
  ...)"), discourse openers, reporting frames ("we found that"), fillers and ", respectively" dropped
  (>= 3 words)                                                                 -> answered_well
- ignores_passage: a sentence of another shown (non-relevant) document, cited to it
                                                                                -> retrieved_but_not_used

Per judge (default `heuristic`; `trained` = the logistic judge of RAG_FAITHFULNESS_JUDGE=trained) and fault:
the share the judge flags unsupported (some claim below its threshold), the share the audit flags at all
(any verdict but answered_well: the judge, or the correctness check's key facts and coverage), both next to
the same cases' untouched answers (the false-positive rate), the ROC AUC of the answer's lowest claim score
against the untouched answers and against the right answers in other words (threshold-free; verbatim answers
are trivially separable, rewordings are the honest negatives), and the verdict confusion. A fault the judge
misses is printed with its answer: that is the finding.

Caveats: the faults are rule-made (a synonym can land in a technical term; an appended neighbour sentence is
not verbatim in the shown contexts but may be supported by them in other words), and the reference is one
sentence, so "wrong" here is the correctness check against that sentence.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.attribution_at_scale import CUT, DATA, CachedEmbedder, Scripted, load_jsonl, qrels  # noqa: E402
from core.embedding import get_embedder  # noqa: E402
from core.settings import Settings  # noqa: E402
from core.sparse import Bm25Encoder  # noqa: E402
from core.store import open_store  # noqa: E402
from core.text import sentences  # noqa: E402
from diagnostics.audit.correctness import key_facts  # noqa: E402
from diagnostics.audit.golden import Case, Expected, GoldenSet  # noqa: E402
from diagnostics.audit.run import Auditor  # noqa: E402
from diagnostics.judges.factory import make_judge  # noqa: E402
from diagnostics.metrics import dedupe  # noqa: E402
from engine.answer import Answerer  # noqa: E402
from engine.params import retrieval_params  # noqa: E402
from engine.retrieval import Retriever  # noqa: E402
from ingest.pipeline import Ingestor  # noqa: E402

FAULTS = {  # fault -> the verdict the audit should give
    "untouched": "answered_well",
    "number": "unsupported_claims",
    "entity": "unsupported_claims",
    "negation": "unsupported_claims",
    "appended": "unsupported_claims",
    "paraphrase": "answered_well",
    "compressed": "answered_well",
    "ignores_passage": "retrieved_but_not_used",
}
RIGHT = {f for f, v in FAULTS.items() if v == "answered_well"}

# --------------------------------------------------------------------------------------- the fault makers

NUM = re.compile(r"(?<![\w.\-/])(\d+(?:\.\d+)?)(?![\w\-]|\.\d)")
DRUG = re.compile(
    r"\b[a-z]{3,}(?:mab|nib|pril|sartan|statin|olol|mycin|cillin|azole|formin|profen|oxetine|parin|cycline|"
    r"platin|taxel|dipine|vir|sone|zumab|ximab|azepam|triptan|prazole)\b"
)
GENE = re.compile(r"\b(?:[A-Za-z]*[A-Z][A-Za-z]*-?\d+[A-Za-z0-9]*(?:-[A-Za-z0-9]+)*|[a-z]\d{2,}[a-z]?)\b")
ACRONYM = re.compile(r"\b[A-Z]{3,6}s?\b")
NAME = re.compile(r"(?<![.!?]\s)(?<!^)\b[A-Z][a-z]{2,}\b")
NOT_ENTITIES = {
    "The", "This", "That", "These", "Those", "What", "Which", "When", "Where", "How", "Why", "Who", "And", "Our",
    "We", "In", "Here", "However", "CI", "OR", "HR", "RR", "SD", "SE", "IQR", "AUC", "RCT", "RCTs", "DNA", "RNA",
    "USA", "BMI", "ROC", "MRI", "PCR", "SEM", "ANOVA", "NS", "AND", "THE", "FOR", "WITH", "NOT", "BUT", "ALL",
    "ARE", "FROM", "THAT",
}  # fmt: skip
ENTITY_KINDS = (("drug", DRUG), ("gene", GENE), ("acronym", ACRONYM), ("name", NAME))

AUX = re.compile(r"\b(is|are|was|were|can|could|may|might|will|would|should|did|does|do|has|have|had)\b(?! not\b)")
NEGATED = [
    (re.compile(r"\b(is|are|was|were|can|could|may|might|will|would|should|did|does|do|has|have|had) not\b"), r"\1"),
    (re.compile(r"\bcannot\b"), "can"),
    (re.compile(r"\bwithout\b"), "with"),
    (re.compile(r"\bno\b(?= \w)"), "a"),
]
SYNONYMS = {
    "increased": "raised", "increase": "rise", "increases": "raises", "decreased": "lowered",
    "decrease": "drop", "decreases": "lowers", "reduced": "lowered", "reduces": "lowers", "reduce": "lower",
    "significantly": "markedly", "demonstrated": "showed", "showed": "demonstrated", "show": "demonstrate",
    "results": "findings", "higher": "greater", "important": "key",
    "observed": "noted", "suggest": "indicate", "suggests": "indicates", "identified": "found",
    "determine": "establish", "used": "employed", "using": "employing", "approximately": "about",
    "individuals": "people", "required": "needed", "requires": "needs", "common": "frequent", "rapid": "fast",
    "large": "big", "several": "multiple", "whereas": "while", "therefore": "thus", "although": "though",
    "revealed": "showed", "enhanced": "boosted", "inhibited": "blocked", "inhibits": "blocks",
    "associated with": "linked to", "compared with": "relative to", "compared to": "relative to",
    "in addition": "also", "a number of": "several", "participants": "subjects", "examined": "studied",
    "investigated": "studied", "evaluated": "assessed", "obtained": "got", "induced": "caused",
    "induces": "causes", "promotes": "favours", "promoted": "favoured", "critical": "crucial",
    "essential": "vital", "regulates": "controls", "regulated": "controlled", "similar": "comparable",
}  # fmt: skip
SYN = re.compile(r"\b(" + "|".join(sorted(map(re.escape, SYNONYMS), key=len, reverse=True)) + r")\b", re.I)
OPENER = re.compile(
    r"^(?:In (?:this|the present|our) (?:study|analysis|trial|work|paper|report)|Here|Overall|In conclusion|"
    r"In summary|Moreover|Furthermore|Additionally|In addition|However|Thus|Therefore|Together|Taken together|"
    r"Collectively|Importantly|Notably|Finally|Surprisingly|Interestingly|In general|Conclusions?|Results?|"
    r"Methods?|Background|Objectives?),?:?\s+"
)
PAREN = re.compile(r"\s*\([^()]*\)")
FRAME = re.compile(
    r"\b(?:we (?:found|show|showed|report|demonstrate|observed|conclude|propose)|it was (?:found|shown)|"
    r"(?:our|these) (?:results|data|findings) (?:show|showed|indicate|suggest|demonstrate)) that\s+",
    re.I,
)
FILLER = re.compile(
    r",?\s*\b(?:nevertheless|indeed|in turn|in particular|specifically|consistently|surprisingly|"
    r"interestingly|importantly|notably|in general)\b,?",
    re.I,
)
HEADER = re.compile(r"^(?:[A-Z]{2,}\s+)+(?=[A-Z]?[a-z])")  # "MAIN OUTCOME MEASUREMENTS Standard ..."


def _case_like(word: str, like: str) -> str:
    return word[0].upper() + word[1:] if like[:1].isupper() else word


def number_fault(ref: str, rng: random.Random) -> str | None:
    """One number (not a year, not inside a gene-like token) changed by a plausible amount."""
    found = [m for m in NUM.finditer(ref) if not (m.group(1).isdigit() and 1900 <= int(m.group(1)) <= 2030)]
    if not found:
        return None
    m = rng.choice(found)
    s = m.group(1)
    # A high percentage only goes down (no 130% of patients).
    factors = [0.6, 0.75] if ref[m.end(1) : m.end(1) + 1] == "%" and float(s) > 60 else [0.6, 0.75, 1.3, 1.5]
    if "." in s:
        places = len(s.split(".")[1])
        new = f"{float(s) * rng.choice(factors):.{places}f}"
        if float(new) == float(s):
            new = f"{float(s) + 10**-places:.{places}f}"
    else:
        n = int(s)
        new = str(n + rng.choice([1, 2]) if n <= 3 else max(1, round(n * rng.choice(factors))))
        if new == s:
            new = str(n + 1)
    return ref[: m.start(1)] + new + ref[m.end(1) :]


def entities(text: str) -> list[tuple[str, str]]:
    """(kind, token) of the text's entities, the most specific kind first, each token once."""
    out, seen = [], set()
    for kind, pat in ENTITY_KINDS:
        for tok in pat.findall(text):
            if tok in NOT_ENTITIES or tok in seen or any(tok in s for s in seen):
                continue
            seen.add(tok)
            out.append((kind, tok))
    return out


def entity_fault(ref: str, pool: dict[str, list[str]], shown_lower: str, rng: random.Random) -> str | None:
    """One entity swapped for one of the same kind that no shown context holds (from another abstract)."""
    for kind, tok in entities(ref):
        options = [e for e in pool.get(kind, []) if e.lower() not in shown_lower and e != tok]
        if options:
            out = re.sub(rf"(?<![\w-]){re.escape(tok)}(?![\w-])", rng.choice(options), ref, count=1)
            if out != ref:
                return out
    return None


def negation_fault(ref: str) -> tuple[str, str] | None:
    """(answer, "removed" | "added"): the sentence's negation removed, else one added after the first auxiliary."""
    for pat, repl in NEGATED:
        if pat.search(ref):
            out = pat.sub(repl, ref, count=1)
            out = re.sub(r"\ba ([aeiouAEIOU])", r"an \1", out)
            return out, "removed"
    m = AUX.search(ref)
    if m:
        return ref[: m.end()] + " not" + ref[m.end() :], "added"
    return None


def paraphrase_fault(ref: str) -> str | None:
    """Synonyms from the hand list and one "A and B" reordered; None under two edits."""
    edits = 0

    def swap(m: re.Match) -> str:
        nonlocal edits
        edits += 1
        return _case_like(SYNONYMS[m.group(1).lower()], m.group(1))

    out = SYN.sub(swap, ref)
    # Reordered only when both words end alike (two adjectives, two plurals): "length and consists" stays.
    m = re.search(r"(?<![\w-])([a-z]{4,}) and ([a-z]{4,})(?![\w-])", out)
    if m and m.group(1) != m.group(2) and m.group(1)[-2:] == m.group(2)[-2:]:
        out = out[: m.start()] + f"{m.group(2)} and {m.group(1)}" + out[m.end() :]
        edits += 1
    return out if edits >= 2 else None


def compress_fault(ref: str) -> str | None:
    """Shortened, every claim and key fact kept: explanatory parentheticals that hold no key fact, a discourse
    opener, a reporting frame ("we found that"), fillers ("nevertheless"), ", respectively". None when under 3
    words go."""
    out = PAREN.sub(lambda m: "" if _explains(m.group(0)) else m.group(0), ref)
    out = OPENER.sub("", out)
    out = FRAME.sub("", out)
    out = FILLER.sub("", out)
    out = re.sub(r",? respectively\b", "", out)
    out = " ".join(out.split()).lstrip(", ")
    if not out:
        return None
    out = out[0].upper() + out[1:]
    return out if len(ref.split()) - len(out.split()) >= 3 and len(out.split()) >= 6 else None


def _explains(paren: str) -> bool:
    """A parenthetical that explains ("for ...", "i.e. ...", "also known as ...") and holds no key fact: safe to
    drop (an enumeration or a qualifier in brackets is content, and stays)."""
    body = paren.strip()[1:-1].strip()
    starts = ("for ", "i.e.", "e.g.", "also ", "that is", "see ", "defined as", "termed", "referred", "hereafter")
    return body.lower().startswith(starts) and not _has_fact(body)


def _has_fact(text: str) -> bool:
    """Holds a key fact as the audit's correctness check reads them (a number, a name, a code-like token)."""
    return bool(re.search(r"\d", text) or key_facts("x " + text) or entities("x " + text))


# --------------------------------------------------------------------------------------- the benchmark


def _cite(sentence: str, anchor: str, sources) -> str:
    """The sentence cited to the context holding `anchor` (the reference, or the other document's sentence)."""
    n = next((i for i, (_, x) in enumerate(sources, 1) if anchor in " ".join(x.split())), 1)
    return f"{sentence} [{n}]"


def clean(sentence: str) -> str:
    """The sentence without a leading all-caps section header (still a substring of its context)."""
    return HEADER.sub("", sentence)


def pick_reference(text: str) -> str | None:
    """The sentence of the shown chunk most faults apply to (a number, an entity, a negation site), 8-60 words."""
    cands = [clean(s) for s in sentences(text, min_words=8)]
    # A bracketed reference number ("... for millennia [3].") would read as a citation: not a reference answer.
    cands = [s for s in cands if 8 <= len(s.split()) <= 60 and not s.endswith(":") and not re.search(r"\[\d", s)]
    if not cands:
        return None

    def score(s: str) -> tuple:
        has_num = any(not (m.isdigit() and 1900 <= int(m) <= 2030) for m in NUM.findall(s))
        rewordable = bool(paraphrase_fault(s)) + bool(compress_fault(s))
        return (has_num + bool(entities(s)) + bool(negation_fault(s)) + rewordable, -len(s))

    return max(cands, key=score)


def build(args, rng):
    corpus = load_jsonl(DATA / "corpus.jsonl")
    by_id = {d["_id"]: d for d in corpus}
    queries = {q["_id"]: q["text"] for q in load_jsonl(DATA / "queries.jsonl")}
    test, train = qrels("test"), qrels("train")
    test_rel = sorted({d for ds in test.values() for d in ds})[: args.relevant]
    others = [d["_id"] for d in corpus if d["_id"] not in set(test_rel)]
    subset = test_rel + others[: args.docs]
    sub = set(subset)
    outside = [d for d in others[args.docs :] if d not in sub]

    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="subtle-faults-"))
    work.mkdir(parents=True, exist_ok=True)
    settings = Settings(data_dir=work / "data", _env_file=None)
    kb = work / "corpus"
    kb.mkdir(exist_ok=True)
    with open(kb / "corpus.jsonl", "w") as fh:
        for d in subset:
            fh.write(json.dumps(by_id[d]) + "\n")
    model = get_embedder(settings)
    bm25 = Bm25Encoder.from_settings(settings)
    store = open_store(settings)
    t = time.perf_counter()
    Ingestor(settings, store, model).run([kb / "corpus.jsonl"], "bench")
    print(f"ingested {len(subset)} SciFact abstracts ({time.perf_counter() - t:.0f} s)")
    embedder = CachedEmbedder(model)
    retriever = Retriever(store, embedder, bm25)
    base = retrieval_params(settings, top_k=CUT)

    # Entities of each kind from abstracts outside the corpus: a swapped-in one no context can hold.
    pool: dict[str, list[str]] = defaultdict(list)
    for d in outside[:1500]:
        for kind, tok in entities(by_id[d]["text"]):
            pool[kind].append(tok)
    pool = {k: sorted(set(v)) for k, v in pool.items()}

    qs = [(q, queries[q], ds) for split in (test, train) for q, ds in split.items() if ds <= sub]
    embedder.encode([q for _, q, _ in qs])
    cases = []
    seen_q = set()
    for qid, question, rel in qs:
        if len(cases) >= args.cases:
            break
        if question in seen_q:
            continue
        res = retriever.retrieve("bench", question, base)
        shown = res.contexts[:CUT]
        doc = next((c.doc_id for c in shown if c.doc_id in rel), None)
        others_shown = [c for c in shown if c.doc_id not in rel]
        if doc is None or not others_shown:
            continue
        mine = next(c for c in shown if c.doc_id == doc)
        ref = pick_reference(mine.text)
        if not ref or ref in {c["ref"] for c in cases}:  # two questions on one abstract: one case
            continue
        shown_text = " ".join(" ".join(c.text.split()) for c in shown)
        fused_docs = dedupe([d for _, d, _ in res.stages["fused"].hits])
        neighbour = next((d for d in fused_docs if d not in rel and d not in {c.doc_id for c in shown}), None)
        neigh = None
        if neighbour is not None:
            neigh = next(
                (
                    clean(s)
                    for s in sentences(by_id[neighbour]["text"], min_words=8)
                    if clean(s) not in shown_text and len(s) < 400
                ),
                None,
            )
        other_sent = next((clean(s) for s in sentences(others_shown[0].text, min_words=8) if s != ref), None)
        seen_q.add(question)
        answers = {"untouched": ref}
        answers["number"] = number_fault(ref, rng)
        answers["entity"] = entity_fault(ref, pool, shown_text.lower(), rng)
        neg = negation_fault(ref)
        answers["negation"] = neg[0] if neg else None
        answers["appended"] = f"{ref} {neigh}" if neigh else None
        answers["paraphrase"] = paraphrase_fault(ref)
        answers["compressed"] = compress_fault(ref)
        answers["ignores_passage"] = other_sent
        cases.append(
            {
                "qid": qid,
                "question": question,
                "doc": doc,
                "ref": ref,
                "answers": {k: v for k, v in answers.items() if v},
                "negation_kind": neg[1] if neg else None,
                "neighbour": neighbour if neigh else None,
                "other_doc": others_shown[0].doc_id,
            }
        )
    world = {"settings": settings, "store": store, "retriever": retriever, "base": base, "corpus_ids": sub}
    return cases, world, embedder, bm25


def audit(cases, world, scorer) -> list[dict]:
    rows = []
    for fault, expected in FAULTS.items():
        todo = [c for c in cases if fault in c["answers"]]
        if not todo:
            continue
        script = {}
        for c in todo:
            ans = c["answers"][fault]
            if fault == "ignores_passage":
                script[c["question"]] = lambda src, a=ans: _cite(a, a, src)
            elif fault == "appended":
                ref, extra = c["ref"], ans[len(c["ref"]) + 1 :]
                script[c["question"]] = lambda src, r=ref, e=extra: f"{_cite(r, r, src)} {_cite(e, r, src)}"
            else:
                script[c["question"]] = lambda src, a=ans, r=c["ref"]: _cite(a, r, src)
        golden = GoldenSet(
            [Case(f"{fault}:{c['qid']}", c["question"], (Expected(c["doc"], quote=c["ref"]),), c["ref"]) for c in todo]
        )
        gen = Scripted(f"stand-in:{fault}", script)
        report = Auditor(Answerer(world["retriever"], gen), world["store"], scorer).run(
            golden, "bench", world["base"], (1, CUT), True, world["corpus_ids"]
        )
        for c, rc in zip(todo, report["cases"]):
            g = rc.get("generation", {})
            claims = g.get("claims") or []
            corr = g.get("correctness") or {}
            rows.append(
                {
                    "judge": scorer.name,
                    "fault": fault,
                    "expected": expected,
                    "qid": c["qid"],
                    "verdict": rc["verdict"],
                    "judge_unsupported": any(not x["supported"] for x in claims),
                    "min_claim_score": min((x["score"] for x in claims), default=None),
                    "correct": corr.get("correct"),
                    "missing_facts": corr.get("missing_facts", []),
                    "uncertain": bool(rc["uncertain"]),
                    "answer": g.get("answer"),
                    "reference": c["ref"],
                    "detail": rc["verdict_detail"][:200],
                    **({"negation_kind": c["negation_kind"]} if fault == "negation" else {}),
                }
            )
    return rows


def auc(pos: list[float], neg: list[float]) -> float | None:
    """P(a fault's lowest claim score < an untouched one's), ties half: the judge's ranking, threshold-free."""
    if not pos or not neg:
        return None
    wins = sum((p < n) + 0.5 * (p == n) for p in pos for n in neg)
    return wins / (len(pos) * len(neg))


def summarize(rows: list[dict]) -> dict:
    out = {}
    for judge in dict.fromkeys(r["judge"] for r in rows):
        mine = [r for r in rows if r["judge"] == judge]
        control = {r["qid"]: r for r in mine if r["fault"] == "untouched"}
        score = lambda r: 1.0 if r["min_claim_score"] is None else r["min_claim_score"]  # noqa: E731
        # The honest negatives for a threshold-free view are right answers in other words: verbatim ones are
        # trivially separable. The threshold that flags 10% of them, and what it would catch.
        reworded = sorted(score(r) for r in mine if r["fault"] in RIGHT - {"untouched"})
        t10 = reworded[int(0.1 * len(reworded))] if reworded else None
        per = {}
        for fault in FAULTS:
            rs = [r for r in mine if r["fault"] == fault]
            if not rs:
                continue
            ctl = [control[r["qid"]] for r in rs if r["qid"] in control]
            flag = lambda r: r["verdict"] != "answered_well"  # noqa: E731
            per[fault] = {
                "n": len(rs),
                "expected": FAULTS[fault],
                "judge_unsupported": _share(rs, lambda r: r["judge_unsupported"]),
                "wrong_answer": _share(rs, lambda r: r["verdict"] == "wrong_answer"),
                "flagged": _share(rs, flag),
                "control_judge_unsupported": _share(ctl, lambda r: r["judge_unsupported"]),
                "control_flagged": _share(ctl, flag),
                "auc": None if fault == "untouched" else auc([score(r) for r in rs], [score(r) for r in ctl]),
                "auc_vs_reworded": auc([score(r) for r in rs], reworded) if fault not in RIGHT else None,
                "recall_at_10pct_reworded": _share(rs, lambda r: score(r) < t10) if t10 is not None else None,
                "threshold_10pct_reworded": t10,
                "expected_verdict": _share(rs, lambda r: r["verdict"] == FAULTS[fault]),
                "verdicts": dict(Counter(r["verdict"] for r in rs).most_common()),
            }
        out[judge] = per
    return out


def _share(rs, pred) -> float | None:
    return round(sum(bool(pred(r)) for r in rs) / len(rs), 3) if rs else None


def print_tables(summary: dict, rows: list[dict]) -> None:
    fmt = lambda x: "-" if x is None else f"{x:.3f}"  # noqa: E731
    for judge, per in summary.items():
        print(f"\n### Judge `{judge}`\n")
        print(
            "| answer | n | judge flags unsupported | audit flags (any verdict but answered_well) | "
            "untouched, same cases: judge / audit flags (FPR) | ROC AUC vs untouched | expected verdict |"
        )
        print("|---|---|---|---|---|---|---|")
        for fault, s in per.items():
            kind = "right" if fault in RIGHT else "fault"
            print(
                f"| {fault} ({kind}) | {s['n']} | {fmt(s['judge_unsupported'])} | {fmt(s['flagged'])} | "
                f"{fmt(s['control_judge_unsupported'])} / {fmt(s['control_flagged'])} | {fmt(s['auc'])} | "
                f"{s['expected']}: {fmt(s['expected_verdict'])} |"
            )
        t10 = next(iter(per.values()))["threshold_10pct_reworded"]
        print(
            f"\nThreshold-free (`{judge}`): the answer's lowest claim score against right answers in other words "
            f"(paraphrase + compressed); the threshold that flags 10% of those is {fmt(t10)}\n"
        )
        print("| answer | n | ROC AUC vs reworded right answers | share under that threshold |")
        print("|---|---|---|---|")
        for fault, s in per.items():
            print(f"| {fault} | {s['n']} | {fmt(s['auc_vs_reworded'])} | {fmt(s['recall_at_10pct_reworded'])} |")
        verdicts = sorted({v for s in per.values() for v in s["verdicts"]})
        print(
            f"\nVerdict confusion (`{judge}`): rows = answer made (expected verdict), columns = the audit's verdict\n"
        )
        print("| answer (expected) | " + " | ".join(verdicts) + " |")
        print("|---|" + "---|" * len(verdicts))
        for fault, s in per.items():
            cells = [str(s["verdicts"].get(v, 0)) for v in verdicts]
            print(f"| {fault} ({s['expected']}) | " + " | ".join(cells) + " |")
        neg = [r for r in rows if r["judge"] == judge and r["fault"] == "negation"]
        if neg:
            parts = []
            for kind in ("added", "removed"):
                k = [r for r in neg if r.get("negation_kind") == kind]
                if k:
                    parts.append(
                        f"{kind} {len(k)}: judge {fmt(_share(k, lambda r: r['judge_unsupported']))}, "
                        f"audit {fmt(_share(k, lambda r: r['verdict'] != 'answered_well'))}"
                    )
            print("\nNegation by kind (flag rates): " + "; ".join(parts))
        comp = [r for r in rows if r["judge"] == judge and r["fault"] == "compressed"]
        dropped = [r for r in comp if r["missing_facts"]]
        if comp:
            print(
                f"Compressed answers that dropped a key fact of the reference (a number or name in brackets): "
                f"{len(dropped)} of {len(comp)}; flagged {sum(r['verdict'] != 'answered_well' for r in dropped)} of "
                f"those, {sum(r['verdict'] != 'answered_well' for r in comp if not r['missing_facts'])} of the "
                f"{len(comp) - len(dropped)} others"
            )
        misses = [r for r in rows if r["judge"] == judge and FAULTS[r["fault"]] != "answered_well" and r["fault"]
                  != "untouched" and r["verdict"] == "answered_well"]  # fmt: skip
        print(f"\nMissed faults (`{judge}`, called answered_well): {len(misses)}")
        for fault, n in Counter(r["fault"] for r in misses).most_common():
            print(f"- {fault}: {n}")
        for fault in dict.fromkeys(r["fault"] for r in misses):
            for r in [m for m in misses if m["fault"] == fault][:3]:
                print(f"  - [{fault}] reference: {r['reference'][:220]}")
                print(f"    answer:    {r['answer'][:300]}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--docs", type=int, default=150, help="SciFact abstracts besides test's relevant ones")
    ap.add_argument("--cases", type=int, default=150)
    ap.add_argument("--relevant", type=int, default=None, help="at most this many of test's relevant abstracts")
    ap.add_argument("--judges", default="heuristic,trained", help="comma-separated faithfulness judge kinds")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--work", default=None, help="keep the store here (a rerun re-ingests nothing); default a tmp dir")
    ap.add_argument("--out", type=Path, default=None, help="also write the results as JSON here")
    args = ap.parse_args()
    rng = random.Random(args.seed)
    t0 = time.perf_counter()
    cases, world, embedder, bm25 = build(args, rng)
    print(f"{len(cases)} cases; answers per fault: " + ", ".join(
        f"{f} {sum(f in c['answers'] for c in cases)}" for f in FAULTS))  # fmt: skip
    rows, seconds = [], {}
    for kind in args.judges.split(","):
        t = time.perf_counter()
        rows += audit(cases, world, make_judge(world["settings"], embedder, bm25, kind))
        seconds[kind] = round(time.perf_counter() - t)
    summary = summarize(rows)
    print_tables(summary, rows)
    seconds["total"] = round(time.perf_counter() - t0)
    print(f"\nseconds: {json.dumps(seconds)}")
    if args.out:
        args.out.write_text(json.dumps({"summary": summary, "seconds": seconds, "cases": rows}, indent=1))
    world["store"].close()


if __name__ == "__main__":
    main()
