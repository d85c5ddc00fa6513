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

    text = CITATION.sub(keep, answer)
    text = re.sub(r"[ \t]+([.,;:!?])", r"\1", re.sub(r"[ \t]{2,}", " ", text)).strip()
    return CheckedAnswer(text, cited, invalid)
