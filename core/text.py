"""The one sentence splitter, for chunking (ingest), the extractive answer (engine) and faithfulness (diagnostics).

A sentence ends at . ! or ? (maybe closed by a quote or bracket) followed by whitespace, at a blank line, or at
a line break before a list item or a heading; other line breaks are wrapping inside a sentence. The chunker
also breaks at every line (`lines=True`), since it packs lines of code and tables as units too.
"""

from __future__ import annotations

import re

_END = r"(?<=[.!?])[\"')\]]*\s+"
SENTENCE_BREAK = re.compile(_END + r"|\n\s*\n|\n(?=\s*(?:[-*+]|\d+\.|#+)\s)")
SENTENCE_OR_LINE_BREAK = re.compile(_END + r"|\n")


def sentence_spans(text: str, start: int = 0, end: int | None = None, lines: bool = False) -> list[tuple[int, int]]:
    """[start, end) spans of the sentences of text[start:end], whitespace trimmed, empty ones dropped."""
    end = len(text) if end is None else end
    spans, s = [], start
    pattern = SENTENCE_OR_LINE_BREAK if lines else SENTENCE_BREAK
    for m in pattern.finditer(text, start, end):
        spans.append((s, m.start()))
        s = m.end()
    spans.append((s, end))
    out = []
    for a, b in spans:
        piece = text[a:b]
        stripped = piece.strip()
        if stripped:
            lead = len(piece) - len(piece.lstrip())
            out.append((a + lead, a + lead + len(stripped)))
    return out


def sentences(text: str, min_words: int = 1) -> list[str]:
    """The sentences of `text`, inner whitespace collapsed, those of fewer than `min_words` words dropped."""
    out = []
    for a, b in sentence_spans(text):
        s = " ".join(text[a:b].split())
        if len(s.split()) >= min_words:
            out.append(s)
    return out
