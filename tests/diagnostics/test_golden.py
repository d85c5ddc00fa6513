"""Golden sets: the documented format, clear errors for malformed sets, the BEIR importer."""

from __future__ import annotations

import json

import pytest

from diagnostics.audit.golden import GoldenSetError, import_beir, load_golden
from tests.conftest import SCIFACT


def write(tmp_path, rows):
    p = tmp_path / "golden.jsonl"
    p.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows))
    return p


def test_valid_set_with_stub(tmp_path):
    g = load_golden(
        write(
            tmp_path,
            [
                {
                    "id": "a",
                    "question": "Q?",
                    "expected": [{"doc_id": "d1", "quote": "q", "grade": 2}, {"doc_id": "d2", "span": [0, 5]}],
                    "answer": "A.",
                    "tags": ["t"],
                },
                {"id": 7, "question": "Unanswerable?"},
                {"id": "s", "question": "stub", "needs_label": True},
            ],
        )
    )
    assert [c.id for c in g.cases] == ["a", "7"] and g.stubs == ["s"]
    assert g.cases[0].relevance == {"d1": 2, "d2": 1} and g.cases[0].expected[1].span == (0, 5)
    assert g.cases[1].expected == ()


@pytest.mark.parametrize(
    "row, message",
    [
        ("{not json", "line 2: not valid JSON"),
        ('["a list"]', "line 2: each line must be a JSON object"),
        ({"question": "no id"}, "line 2: id must be"),
        ({"id": "b", "question": ""}, "line 2: question must be"),
        ({"id": "b", "question": "Q", "expected": {"doc_id": "x"}}, "line 2: expected must be a list"),
        ({"id": "b", "question": "Q", "expected": [{"quote": "x"}]}, r"line 2: expected\[0\].doc_id"),
        ({"id": "b", "question": "Q", "expected": [{"doc_id": "x", "grade": 0}]}, r"expected\[0\].grade"),
        ({"id": "b", "question": "Q", "expected": [{"doc_id": "x", "span": [5, 2]}]}, r"expected\[0\].span"),
        ({"id": "b", "question": "Q", "tags": "t"}, "line 2: tags must be"),
        ({"id": "a", "question": "again"}, "line 2: duplicate id 'a' \\(first on line 1\\)"),
    ],
)
def test_malformed_sets_name_line_and_field(tmp_path, row, message):
    path = write(tmp_path, [{"id": "a", "question": "fine"}, row])
    with pytest.raises(GoldenSetError, match=message):
        load_golden(path)


def test_empty_set(tmp_path):
    with pytest.raises(GoldenSetError, match="no labelled cases"):
        load_golden(write(tmp_path, [{"id": "s", "question": "q", "needs_label": True}]))


def test_beir_import_roundtrip(tmp_path):
    rows = import_beir(SCIFACT / "queries.jsonl", SCIFACT / "qrels" / "test.tsv")
    assert len(rows) == 300 and sum(len(r["expected"]) for r in rows) == 339
    path = write(tmp_path, rows)
    g = load_golden(path)
    assert len(g.cases) == 300 and g.cases[0].question
