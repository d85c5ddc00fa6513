"""A few hundred malformed files through the ingest job: no crash, every file accounted for as ingested
or failed with a reason, memory bounded."""

from __future__ import annotations

import io
import random
import resource
import zipfile

import pytest

from core.store import open_store
from ingest.pipeline import Ingestor
from tests.helpers.files import make_docx, make_pdf


def _mutations(tmp, rng):
    pdf = make_pdf(tmp / "seed.pdf", ["Seed text for mutation."]).read_bytes()
    docx_bytes = make_docx(tmp / "seed.docx").read_bytes()
    (tmp / "seed.pdf").unlink()
    (tmp / "seed.docx").unlink()
    yield "trunc.pdf", pdf[: rng.randrange(1, len(pdf))]
    flipped = bytearray(pdf)
    for _ in range(20):
        flipped[rng.randrange(len(flipped))] = rng.randrange(256)
    yield "flipped.pdf", bytes(flipped)
    yield "trunc.docx", docx_bytes[: rng.randrange(1, len(docx_bytes))]
    yield "random.docx", bytes(rng.randrange(256) for _ in range(rng.randrange(1, 4000)))
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("word/document.xml", "<" * 10)
    yield "badxml.docx", buf.getvalue()
    yield "invalid-utf8.txt", bytes([0xC3, 0x28, 0xA0, 0xA1]) * rng.randrange(1, 500) + b" words here"
    yield "nul.md", b"text\x00" * rng.randrange(1, 100)
    yield "zero.html", b""
    yield "deep.html", b"<div>" * rng.randrange(500, 5000) + b"deep text" + b"</div>" * 10
    yield "hugeline.txt", b"x" * rng.randrange(100_000, 2_000_000)
    yield "notjson.jsonl", bytes(rng.randrange(32, 127) for _ in range(rng.randrange(1, 2000)))
    yield "wrongext.pdf", b"<html><body>not a pdf</body></html>"
    yield "wrongext.docx", b"%PDF-1.4 not a docx"


@pytest.mark.slow
def test_hundreds_of_malformed_files(tmp_path, settings, embedder):
    rng = random.Random(7)
    folder = tmp_path / "junk"
    folder.mkdir()
    n = 0
    for round_ in range(20):
        for name, data in _mutations(tmp_path, rng):
            (folder / f"{round_:02d}-{name}").write_bytes(data)
            n += 1
    assert n >= 250
    with open_store(settings) as store:
        report = Ingestor(settings, store, embedder).run([folder], "junk")
    assert len(report.files) == n  # every file accounted for
    for f in report.files:
        assert f.status in ("added", "failed") and (f.status != "failed" or f.reason), f
    assert report.count("failed") > n / 2
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    assert rss_mb < 6000, f"peak memory {rss_mb:.0f} MB"
