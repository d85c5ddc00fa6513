"""Structure-aware chunking, bounded in the embedding model's own tokens. Pure: text in, chunks out.

A document splits into sections at markdown headings (the parsers write every format's headings that
way), sections into paragraphs, paragraphs into sentences and lines. Sentences are packed greedily into
chunks of at most `max_tokens`, preferring to break at a paragraph boundary once a chunk is half full;
each chunk after the first in a section starts with up to `overlap_tokens` of the previous chunk's
trailing sentences. A sentence longer than `max_tokens` alone is cut at token boundaries. Chunks never
cross sections. Every chunk is a span [start, end) of the document text, so offsets are exact.
"""

from __future__ import annotations

import bisect
import re
from dataclasses import asdict, dataclass
from typing import Protocol, Sequence

from core.text import sentence_spans

HEADING = re.compile(r"^(#{1,6})[ \t]+(.+?)[ \t#]*$", re.M)
FENCE = re.compile(r"^(```|~~~)", re.M)
PARAGRAPH_BREAK = re.compile(r"\n[ \t]*\n")
WHITESPACE = re.compile(r"[ \t\n]")
# A unit longer than this is tokenized in pieces cut at whitespace (tokens never span whitespace), once, for
# both its count and its cut points: one tokenizer call over megabytes is several times slower than pieces.
LONG_UNIT_CHARS = 4096


class Span(Protocol):
    start: int
    end: int


class TokenCounter(Protocol):
    def count_tokens(self, texts: Sequence[str]) -> list[int]: ...

    def token_spans(self, text: str) -> Sequence[Span]: ...


@dataclass(frozen=True)
class ChunkerSettings:
    max_tokens: int = 200
    overlap_tokens: int = 40

    def __post_init__(self) -> None:
        if self.max_tokens <= 0:
            raise ValueError("max_tokens must be greater than 0.")
        if not 0 <= self.overlap_tokens < self.max_tokens:
            raise ValueError("overlap_tokens must be at least 0 and smaller than max_tokens.")

    def fingerprint(self) -> dict:
        return {"chunker": "sections-sentences-v1", **asdict(self)}


@dataclass(frozen=True)
class Chunk:
    position: int
    start: int
    end: int
    text: str
    heading_path: tuple[str, ...]
    n_tokens: int


@dataclass(frozen=True)
class _Unit:
    start: int
    end: int
    paragraph: int
    n_tokens: int = 0


def sections(text: str) -> list[tuple[tuple[str, ...], int, int]]:
    """(heading path, start, end) of each section; headings inside code fences do not count."""
    fenced, in_fence = [], False
    for m in FENCE.finditer(text):
        if not in_fence:
            open_at = m.start()
        else:
            fenced.append((open_at, m.end()))
        in_fence = not in_fence
    if in_fence:
        fenced.append((open_at, len(text)))

    # Fenced ranges are sorted and disjoint: the last one starting at or before a heading is the only one
    # that can hold it (a scan over all of them made a text with many headings and fences quadratic).
    fence_starts = [a for a, _ in fenced]
    bounds: list[tuple[int, int, str]] = []  # (offset, level, title)
    for m in HEADING.finditer(text):
        k = bisect.bisect_right(fence_starts, m.start()) - 1
        if k < 0 or not m.start() < fenced[k][1]:
            bounds.append((m.start(), len(m.group(1)), m.group(2).strip()))

    out: list[tuple[tuple[str, ...], int, int]] = []
    path: list[tuple[int, str]] = []
    if not bounds or bounds[0][0] > 0:
        out.append(((), 0, bounds[0][0] if bounds else len(text)))
    for i, (start, level, title) in enumerate(bounds):
        end = bounds[i + 1][0] if i + 1 < len(bounds) else len(text)
        path = [p for p in path if p[0] < level] + [(level, title)]
        out.append((tuple(t for _, t in path), start, end))

    # A heading with nothing under it before the next heading joins the next section.
    merged: list[tuple[tuple[str, ...], int, int]] = []
    carry: int | None = None
    for path_, start, end in out:
        body = text[start:end]
        only_heading = bool(HEADING.fullmatch(body.strip())) if body.strip() else True
        if carry is not None:
            start = carry
            carry = None
        if only_heading and end < len(text):
            carry = start
            continue
        if text[start:end].strip():
            merged.append((path_, start, end))
    return merged


def _units(text: str, start: int, end: int) -> list[_Unit]:
    """Sentences and lines of text[start:end], whitespace trimmed, with their paragraph number."""
    units: list[_Unit] = []
    para_start = start
    breaks = [m for m in PARAGRAPH_BREAK.finditer(text, start, end)]
    spans = []
    for m in breaks:
        spans.append((para_start, m.start()))
        para_start = m.end()
    spans.append((para_start, end))
    for p, (ps, pe) in enumerate(spans):
        units.extend(_Unit(a, b, p) for a, b in sentence_spans(text, ps, pe, lines=True))
    return units


def _token_spans(text: str, unit: _Unit, counter: TokenCounter) -> list[tuple[int, int]]:
    """Absolute [start, end) of every token of a unit, tokenized in pieces of about LONG_UNIT_CHARS cut at
    whitespace, so the cost stays linear in its length."""
    out: list[tuple[int, int]] = []
    a = unit.start
    while a < unit.end:
        b = min(a + LONG_UNIT_CHARS, unit.end)
        if b < unit.end:
            ws = max(text.rfind(" ", a, b), text.rfind("\n", a, b), text.rfind("\t", a, b))
            if ws <= a:  # no whitespace in the window: the piece runs on to the next (one long word is one token)
                m = WHITESPACE.search(text, b, unit.end)
                ws = m.start() if m else unit.end - 1
            b = ws + 1
        out.extend((a + sp.start, a + sp.end) for sp in counter.token_spans(text[a:b]))
        a = b
    return out


def _cut_long(unit: _Unit, spans: list[tuple[int, int]], settings: ChunkerSettings) -> list[_Unit]:
    """Cut a unit of more than max_tokens at token boundaries, into pieces that leave room for a heading."""
    size = settings.max_tokens - settings.overlap_tokens
    out = []
    for i in range(0, len(spans), size):
        group = spans[i : i + size]
        out.append(_Unit(group[0][0], group[-1][1], unit.paragraph, len(group)))
    return out


def _pack(units: list[_Unit], settings: ChunkerSettings) -> list[tuple[int, int]]:
    """Group consecutive units into [i, j) ranges of at most max_tokens, with overlap."""
    groups, i, n = [], 0, len(units)
    while i < n:
        j, total = i, 0
        while j < n and total + units[j].n_tokens <= settings.max_tokens:
            total += units[j].n_tokens
            j += 1
        j = max(j, i + 1)
        if j < n:  # break at the last paragraph boundary past half the budget, if any
            acc = 0
            best = None
            for k in range(i + 1, j):
                acc += units[k - 1].n_tokens
                if units[k].paragraph != units[k - 1].paragraph and acc >= settings.max_tokens // 2:
                    best = k
            j = best or j
        groups.append((i, j))
        if j >= n:
            break
        back, overlap = j, 0
        while back - 1 > i and overlap + units[back - 1].n_tokens <= settings.overlap_tokens:
            back -= 1
            overlap += units[back].n_tokens
        i = back
    return groups


def chunk_text(text: str, counter: TokenCounter, settings: ChunkerSettings) -> list[Chunk]:
    """Split `text` into chunks. Returns them in document order, positions numbered from 0.

    Linear in the length of the text: units are tokenized once, short ones in one batch, long ones in pieces.
    """
    per_section = [(path, _units(text, s, e)) for path, s, e in sections(text)]
    short = [u for _, units in per_section for u in units if u.end - u.start <= LONG_UNIT_CHARS]
    it = iter(counter.count_tokens([text[u.start : u.end] for u in short]))
    chunks: list[Chunk] = []
    for path, units in per_section:
        sized: list[_Unit] = []
        for u in units:
            if u.end - u.start <= LONG_UNIT_CHARS:
                u = _Unit(u.start, u.end, u.paragraph, next(it))
                if u.n_tokens > settings.max_tokens:
                    sized.extend(_cut_long(u, _token_spans(text, u, counter), settings))
                else:
                    sized.append(u)
                continue
            spans = _token_spans(text, u, counter)
            if not spans:  # nothing the tokenizer keeps (control characters): a unit of no tokens
                sized.append(_Unit(u.start, u.end, u.paragraph, 0))
            elif len(spans) > settings.max_tokens:
                sized.extend(_cut_long(u, spans, settings))
            else:
                sized.append(_Unit(u.start, u.end, u.paragraph, len(spans)))
        for i, j in _pack(sized, settings):
            start, end = sized[i].start, sized[j - 1].end
            n_tokens = sum(u.n_tokens for u in sized[i:j])
            chunks.append(Chunk(len(chunks), start, end, text[start:end], path, n_tokens))
    return chunks
