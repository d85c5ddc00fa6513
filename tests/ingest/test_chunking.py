"""The chunker: spans exact, bounds kept, structure followed, overlap present, ids stable."""

from __future__ import annotations

import re
from dataclasses import dataclass

import pytest

from ingest.chunking import ChunkerSettings, chunk_text, sections
from tests.conftest import scifact_docs


@dataclass
class _Span:
    start: int
    end: int


class WordCounter:
    """A whitespace tokenizer: one token per word. Enough to check the packing logic by hand."""

    def count_tokens(self, texts):
        return [len(t.split()) for t in texts]

    def token_spans(self, text):
        return [_Span(m.start(), m.end()) for m in re.finditer(r"\S+", text)]


DOC = """# Guide

Intro sentence one. Intro sentence two.

## Empty

### Install

Step one is here. Step two is here. Step three is here.

```
# not a heading
```

## Use

Last words."""


def test_sections_follow_headings_and_skip_code_fences():
    got = [(path, DOC[s:e].split("\n")[0]) for path, s, e in sections(DOC)]
    assert got == [
        (("Guide",), "# Guide"),
        (("Guide", "Empty", "Install"), "## Empty"),  # an empty section joins the next one
        (("Guide", "Use"), "## Use"),
    ]


def test_text_without_headings_is_one_section():
    assert sections("just text") == [((), 0, 9)]


def test_chunks_are_exact_spans_within_bounds():
    text = " ".join(f"Sentence number {i} has six words." for i in range(100))
    chunks = chunk_text(text, WordCounter(), ChunkerSettings(max_tokens=20, overlap_tokens=6))
    assert len(chunks) > 5
    for c in chunks:
        assert text[c.start : c.end] == c.text
        assert c.n_tokens <= 20
    assert [c.position for c in chunks] == list(range(len(chunks)))
    assert chunks[0].start == 0 and chunks[-1].end == len(text)


def test_overlap_repeats_trailing_sentences():
    text = " ".join(f"Sentence number {i} has six words." for i in range(10))
    a, b, *_ = chunk_text(text, WordCounter(), ChunkerSettings(max_tokens=18, overlap_tokens=6))
    # 18 tokens = 3 sentences; the next chunk starts with the last one (6 tokens of overlap).
    assert a.text.endswith("Sentence number 2 has six words.")
    assert b.text.startswith("Sentence number 2 has six words.")
    assert b.start < a.end


def test_no_overlap_when_zero():
    text = " ".join(f"Sentence number {i} has six words." for i in range(10))
    chunks = chunk_text(text, WordCounter(), ChunkerSettings(max_tokens=18, overlap_tokens=0))
    assert all(x.end < y.start for x, y in zip(chunks, chunks[1:]))


def test_prefers_paragraph_boundaries():
    para = "One two three four five. Six seven eight nine ten."
    text = "\n\n".join([para] * 3)  # 10 words per paragraph
    chunks = chunk_text(text, WordCounter(), ChunkerSettings(max_tokens=25, overlap_tokens=0))
    # 25 tokens would fit 2.5 paragraphs; the chunk ends at the paragraph break instead.
    assert chunks[0].text == para + "\n\n" + para


def test_heading_path_and_sections_not_crossed():
    chunks = chunk_text(DOC, WordCounter(), ChunkerSettings(max_tokens=50, overlap_tokens=5))
    assert [c.heading_path for c in chunks] == [("Guide",), ("Guide", "Empty", "Install"), ("Guide", "Use")]
    assert "# not a heading" in chunks[1].text


def test_sentence_longer_than_budget_is_cut_at_token_boundaries():
    text = "## Long\n\n" + " ".join(f"w{i}" for i in range(95))
    chunks = chunk_text(text, WordCounter(), ChunkerSettings(max_tokens=30, overlap_tokens=5))
    assert all(c.n_tokens <= 30 for c in chunks)
    words = " ".join(c.text for c in chunks).split()
    assert words[0] == "##" and "w94" in words and all(f"w{i}" in words for i in range(95))


def test_settings_are_validated():
    with pytest.raises(ValueError, match="max_tokens"):
        ChunkerSettings(max_tokens=0)
    with pytest.raises(ValueError, match="overlap_tokens"):
        ChunkerSettings(max_tokens=10, overlap_tokens=10)


def test_real_tokenizer_on_scifact_keeps_model_bounds(embedder):
    settings = ChunkerSettings(max_tokens=200, overlap_tokens=40)
    for doc in scifact_docs(40):
        chunks = chunk_text(doc["text"], embedder, settings)
        assert chunks, doc["_id"]
        for c in chunks:
            assert doc["text"][c.start : c.end] == c.text
            # The sum of per-sentence counts is what the model sees for the joined text.
            assert embedder.count_tokens([c.text])[0] <= settings.max_tokens
        covered = set()
        for c in chunks:
            covered.update(range(c.start, c.end))
        assert all(i in covered for i, ch in enumerate(doc["text"]) if not ch.isspace())
