"""BM25 sparse vectors, computed client-side with Qdrant's own BM25 encoder (from `qdrant-edge-py`).

Documents get term-frequency weights with BM25's (k, b, avg_len) saturation; queries get weight 1 per
unique term. The collection's sparse vector uses Qdrant's IDF modifier, so Qdrant computes
`sum(idf(t) * w_doc(t))` at query time: BM25, with IDF kept current as the corpus changes, on the
embedded store and a server alike. Token ids are the ones the Qdrant server's bm25 produces.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

from qdrant_edge import Bm25, Bm25Config

from core.settings import Settings


@dataclass(frozen=True)
class SparseVec:
    indices: list[int]
    values: list[float]


# Used until a collection has measured its own (SciFact chunks of 200 model tokens average 78 BM25 tokens).
DEFAULT_AVG_LEN = 80.0


class Bm25Encoder:
    def __init__(self, k: float = 1.2, b: float = 0.75, avg_len: float = 80.0, language: str = "english"):
        self.k, self.b, self.avg_len, self.language = k, b, avg_len, language
        self._doc = Bm25(Bm25Config(k=k, b=b, avg_len=avg_len, language=language))
        # With b=0 the weight depends on tf alone, so term frequencies can be read back (see term_counts).
        self._tf = Bm25(Bm25Config(k=k, b=0.0, avg_len=avg_len, language=language))

    @classmethod
    def from_settings(cls, settings: Settings) -> "Bm25Encoder":
        avg_len = settings.bm25_avg_len or DEFAULT_AVG_LEN  # queries do not depend on it; ingest measures it
        return cls(settings.bm25_k, settings.bm25_b, avg_len, settings.bm25_language)

    def embed_document(self, text: str) -> SparseVec:
        v = self._doc.embed_document(text)
        return SparseVec(list(v.indices), list(v.values))

    def embed_query(self, text: str) -> SparseVec:
        v = self._doc.embed_query(text)
        return SparseVec(list(v.indices), list(v.values))

    def term_counts(self, text: str) -> dict[int, int]:
        """Token id -> term frequency, exactly as the encoder tokenizes `text`.

        Inverts w = tf*(k+1)/(tf+k), the b=0 document weight. Used to feed the very same tokens to a
        reference BM25 implementation.
        """
        v = self._tf.embed_document(text)
        k = self.k
        return {int(i): round(k * w / (k + 1 - w)) for i, w in zip(v.indices, v.values)}

    def length(self, text: str) -> int:
        """The document length BM25 normalises by: its tokens as the encoder counts them (stop words removed)."""
        return sum(self.term_counts(text).values())

    def measure_avg_len(self, texts: Iterable[str]) -> float:
        """The average length of these chunk texts, for a collection's `avg_len` (see README, "BM25 avg_len").
        Raises ValueError on no texts."""
        lengths = [self.length(t) for t in texts]
        if not lengths:
            raise ValueError("no texts to measure")
        return round(sum(lengths) / len(lengths), 1)

    def with_avg_len(self, avg_len: float) -> "Bm25Encoder":
        return Bm25Encoder(self.k, self.b, avg_len, self.language)

    def tokens(self, text: str) -> list[str]:
        """The document as a bag of token ids (as strings), each repeated tf times."""
        return [str(i) for i, tf in sorted(self.term_counts(text).items()) for _ in range(tf)]

    @property
    def fingerprint(self) -> dict:
        return {"bm25": "qdrant", "k": self.k, "b": self.b, "avg_len": self.avg_len, "language": self.language}
