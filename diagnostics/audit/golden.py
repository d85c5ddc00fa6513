"""Golden sets: real questions with the sources (and answers) they expect. JSONL, one case a line:

    {"id": "q1", "question": "...",
     "expected": [{"doc_id": "docs/ingesting.md", "quote": "fails that file alone", "grade": 2},
                  {"doc_id": "docs/overview.md", "span": [120, 260]}],
     "answer": "optional reference answer", "tags": ["optional"]}

Expected sources are anchored on document ids and their text (a quote, or a [start, end) character span
of the document text), never on chunk ids, so a golden set survives re-chunking. `grade` (default 1) is
graded relevance for nDCG. An empty `expected` means the corpus cannot answer: the right behaviour is to
decline. A case with `"needs_label": true` is a stub to label; audits skip it and say so.

A case can be a turn of a conversation: `"history": [{"role": "user"|"assistant"|"system", "content": ...}]`
holds the turns before `question` (or `"turns"` holds the whole conversation, ending with the user's question,
and `question` is left out). The audit then runs the service's rewrite stage first (engine/rewrite.py).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from core.errors import RagError
from engine.rewrite import ROLES, Turn


class GoldenSetError(RagError):
    code = "golden_set_invalid"
    http_status = 422


@dataclass(frozen=True)
class Expected:
    doc_id: str
    grade: int = 1
    quote: str | None = None
    span: tuple[int, int] | None = None


@dataclass(frozen=True)
class Case:
    id: str
    question: str
    expected: tuple[Expected, ...]
    answer: str | None = None
    tags: tuple[str, ...] = ()
    history: tuple[Turn, ...] = ()  # the conversation before the question

    @property
    def relevance(self) -> dict[str, int]:
        """{doc_id: grade}; a document named twice keeps its highest grade."""
        rel: dict[str, int] = {}
        for e in self.expected:
            rel[e.doc_id] = max(rel.get(e.doc_id, 0), e.grade)
        return rel


@dataclass
class GoldenSet:
    cases: list[Case]
    stubs: list[str] = field(default_factory=list)  # ids skipped as unlabelled


def _fail(path: Path, lineno: int, message: str) -> GoldenSetError:
    return GoldenSetError(f"{path}, line {lineno}: {message}")


def _expected(path: Path, lineno: int, i: int, raw) -> Expected:
    where = f"expected[{i}]"
    if not isinstance(raw, dict):
        raise _fail(path, lineno, f"{where} must be an object with a doc_id")
    doc_id = raw.get("doc_id")
    if not isinstance(doc_id, str) or not doc_id:
        raise _fail(path, lineno, f"{where}.doc_id must be a non-empty string")
    grade = raw.get("grade", 1)
    if not isinstance(grade, int) or isinstance(grade, bool) or grade < 1:
        raise _fail(path, lineno, f"{where}.grade must be a whole number >= 1")
    quote = raw.get("quote")
    if quote is not None and (not isinstance(quote, str) or not quote.strip()):
        raise _fail(path, lineno, f"{where}.quote must be a non-empty string")
    span = raw.get("span")
    if span is not None:
        ok = (
            isinstance(span, list)
            and len(span) == 2
            and all(isinstance(x, int) for x in span)
            and 0 <= span[0] < span[1]
        )
        if not ok:
            raise _fail(path, lineno, f"{where}.span must be [start, end] with 0 <= start < end")
        span = (span[0], span[1])
    return Expected(doc_id, grade, quote, span)


def _turns(path: Path, lineno: int, name: str, raw) -> list[Turn]:
    if not isinstance(raw, list):
        raise _fail(path, lineno, f"{name} must be a list of {{role, content}} turns")
    out = []
    for i, t in enumerate(raw):
        text = t.get("content", t.get("text")) if isinstance(t, dict) else None
        if not isinstance(text, str) or t.get("role") not in ROLES:
            raise _fail(path, lineno, f"{name}[{i}] must be {{role: user|assistant|system, content: string}}")
        out.append(Turn(t["role"], text))
    return out


def _conversation(path: Path, lineno: int, row: dict) -> tuple[object, list[Turn]]:
    """(question, history) of a row: `question` + optional `history`, or `turns` ending with the question."""
    if "turns" not in row:
        return row.get("question"), _turns(path, lineno, "history", row.get("history", []))
    if "history" in row:
        raise _fail(path, lineno, "give either turns or history, not both")
    turns = _turns(path, lineno, "turns", row["turns"])
    if not turns or turns[-1].role != "user":
        raise _fail(path, lineno, "turns must end with the user's question")
    q = row.get("question")
    if q is not None and (not isinstance(q, str) or q.strip() != turns[-1].text.strip()):
        raise _fail(path, lineno, "question differs from the last turn; give one of them")
    return turns[-1].text, turns[:-1]


def load_golden(path: Path) -> GoldenSet:
    """Read and validate a golden set. Raises GoldenSetError naming the line and the field."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise GoldenSetError(f"cannot read golden set {path}: {exc}") from exc
    cases, stubs, seen = [], [], {}
    for lineno, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise _fail(path, lineno, f"not valid JSON ({exc.msg})") from None
        if not isinstance(row, dict):
            raise _fail(path, lineno, "each line must be a JSON object")
        cid = row.get("id")
        if not isinstance(cid, (str, int)) or isinstance(cid, bool) or str(cid) == "":
            raise _fail(path, lineno, "id must be a non-empty string")
        cid = str(cid)
        if cid in seen:
            raise _fail(path, lineno, f"duplicate id {cid!r} (first on line {seen[cid]})")
        seen[cid] = lineno
        if row.get("needs_label"):
            stubs.append(cid)
            continue
        question, history = _conversation(path, lineno, row)
        if not isinstance(question, str) or not question.strip():
            raise _fail(path, lineno, "question must be a non-empty string")
        raw_expected = row.get("expected", [])
        if not isinstance(raw_expected, list):
            raise _fail(path, lineno, "expected must be a list")
        answer = row.get("answer")
        if answer is not None and not isinstance(answer, str):
            raise _fail(path, lineno, "answer must be a string")
        tags = row.get("tags", [])
        if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
            raise _fail(path, lineno, "tags must be a list of strings")
        expected = tuple(_expected(path, lineno, i, e) for i, e in enumerate(raw_expected))
        cases.append(Case(cid, question.strip(), expected, answer, tuple(tags), tuple(history)))
    if not cases:
        raise GoldenSetError(f"{path}: no labelled cases")
    return GoldenSet(cases, stubs)


def case_to_json(case: Case) -> dict:
    d = asdict(case)
    d["expected"] = [
        {k: (list(v) if k == "span" and v else v) for k, v in e.items() if v is not None} for e in d["expected"]
    ]
    d["tags"] = list(case.tags)
    if d["answer"] is None:
        del d["answer"]
    d["history"] = [{"role": t.role, "content": t.text} for t in case.history]
    if not d["history"]:
        del d["history"]
    return d


def import_beir(queries: Path, qrels: Path) -> list[dict]:
    """A BEIR split (queries.jsonl + qrels/<split>.tsv) as golden-set rows, in qrels order."""
    texts = {}
    for line in Path(queries).read_text().splitlines():
        if line.strip():
            row = json.loads(line)
            texts[str(row["_id"])] = row["text"]
    rel: dict[str, list[dict]] = {}
    for i, line in enumerate(Path(qrels).read_text().splitlines()):
        parts = line.strip().split("\t")
        if i == 0 and not parts[-1].lstrip("-").isdigit():
            continue  # header
        qid, doc_id, grade = parts[0], parts[1], int(parts[2])
        if grade > 0:
            rel.setdefault(qid, []).append({"doc_id": doc_id, "grade": grade})
    missing = [q for q in rel if q not in texts]
    if missing:
        raise GoldenSetError(f"{qrels}: {len(missing)} query ids have no text in {queries} (e.g. {missing[0]})")
    return [{"id": q, "question": texts[q], "expected": exp} for q, exp in rel.items()]


def import_mtrag(conversations: Path) -> list[dict]:
    """MTRAG conversations (conversations.jsonl: id, turns ending with the user's question, relevant passage
    ids, labels) as golden-set rows: the last turn is the question, the earlier ones its history; `relevant`
    empty = unanswerable (expected []). Tags keep the labels: collection, multi_turn (or first_turn),
    answerability, question_type."""
    rows = []
    for lineno, line in enumerate(Path(conversations).read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            r = json.loads(line)
            turns = r["turns"]
            if not turns or turns[-1]["role"] != "user":
                raise ValueError("the last turn is not the user's")
            history = [{"role": t["role"], "content": t["text"]} for t in turns[:-1]]
            kinds = ["first_turn"] if len(turns) == 1 else [f"multi_turn:{k}" for k in r.get("multi_turn", [])]
            tags = [f"collection:{r['collection']}"] if r.get("collection") else []
            tags += kinds + [f"answerability:{a}" for a in r.get("answerability", [])]
            tags += [f"question_type:{q}" for q in r.get("question_type", [])]
            expected = [{"doc_id": d} for d in r["relevant"]]
            row = {"id": str(r["id"]), "question": turns[-1]["text"], "expected": expected}
        except (KeyError, TypeError, ValueError) as exc:
            raise GoldenSetError(f"{conversations}, line {lineno}: not an MTRAG conversation ({exc})") from None
        if history:
            row["history"] = history
        if r.get("reference_answer"):
            row["answer"] = r["reference_answer"]
        rows.append({**row, "tags": tags})
    return rows
