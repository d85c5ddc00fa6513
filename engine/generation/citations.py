"""Citations in an answer: `[n]`, `[n, m]` or `[n][m]`. Pure functions."""

from __future__ import annotations

import re
from dataclasses import dataclass

CITATION = re.compile(r"\[(\d+(?:\s*,\s*\d+)*)\]")


@dataclass
class CheckedAnswer:
    text: str  # the answer with citations to sources that were not given removed
    cited: list[int]  # valid source numbers, in order of first use
    invalid: list[int]  # numbers cited that no source has; removed from text


def _tidy(text: str) -> str:
    return re.sub(r"[ \t]+([.,;:!?])", r"\1", re.sub(r"[ \t]{2,}", " ", text)).strip()


def strip_citation_markers(text: str) -> str:
    """`text` with every citation-like marker (`[2]`, `[1, 3]`) removed, spacing tidied.

    For quoting a source: a marker inside a source's own text cites *its* references, not our sources, and
    check_citations would otherwise credit it as a citation of another source of the answer.
    """
    return _tidy(CITATION.sub("", text))


def check_citations(answer: str, n_sources: int) -> CheckedAnswer:
    """Keep citations to sources 1..n_sources; remove and report the others."""
    cited: list[int] = []
    invalid: list[int] = []

    def keep(m: re.Match) -> str:
        nums = [int(x) for x in re.split(r"\s*,\s*", m.group(1))]
        good = [n for n in nums if 1 <= n <= n_sources]
        for n in nums:
            target = cited if n in good else invalid
            if n not in target:
                target.append(n)
        return f"[{', '.join(map(str, good))}]" if good else ""

    text = _tidy(CITATION.sub(keep, answer))
    return CheckedAnswer(text, cited, invalid)
