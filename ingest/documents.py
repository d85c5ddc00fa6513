"""The document: what a parser makes of a file (or of one line of a BEIR corpus)."""

from __future__ import annotations

import bisect
import hashlib
import json
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Document:
    doc_id: str
    title: str
    text: str
    source: str  # the file's path under its ingest root (`docs/guide.md`), never an absolute path
    doc_type: str
    metadata: dict = field(default_factory=dict)
    # Character offset where each page starts, for formats with pages (PDF).
    page_starts: tuple[int, ...] = ()

    @property
    def content_hash(self) -> str:
        """sha256 of everything that ends up in the index: title, text and metadata."""
        blob = json.dumps([self.title, self.text, self.metadata], sort_keys=True, ensure_ascii=False)
        return hashlib.sha256(blob.encode()).hexdigest()

    def page_at(self, offset: int) -> int | None:
        """1-based page holding character `offset`, or None for formats without pages."""
        if not self.page_starts:
            return None
        return max(bisect.bisect_right(self.page_starts, offset), 1)  # O(log pages): a PDF may have thousands
