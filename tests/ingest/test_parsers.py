"""Parsers on real files of every supported type, made here, and on broken ones."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import pytest
from pypdf import PdfReader, PdfWriter

from core.errors import ParseError
from ingest.parsers import parse_file
from tests.helpers.files import make_docx, make_pdf

MAX = 10_000_000


def test_text_and_markdown(tmp_path):
    (tmp_path / "a.txt").write_text("Plain words here.\r\nSecond line.")
    (tmp_path / "b.md").write_text("# Guide Title\n\nIntro.\n\n## Part\n\nBody text.")
    [t] = parse_file(tmp_path / "a.txt", "a.txt", MAX)
    [m] = parse_file(tmp_path / "b.md", "b.md", MAX)
    assert t.text == "Plain words here.\nSecond line." and t.title == "a" and t.doc_type == "text"
    assert m.title == "Guide Title" and "## Part" in m.text and m.doc_type == "markdown"
    assert t.content_hash != m.content_hash and len(t.content_hash) == 64


def test_latin1_text_is_decoded(tmp_path):
    (tmp_path / "l.txt").write_bytes("Café crème, déjà vu, naïve façade – résumé.".encode("cp1252"))
    [d] = parse_file(tmp_path / "l.txt", "l", MAX)
    assert "crème" in d.text


def test_html_keeps_headings_drops_boilerplate(tmp_path):
    body = "".join(
        f"<h2>Chapter {i}</h2><p>{'Rivers carry sediment to the sea over long periods of time. ' * 4}</p>"
        for i in range(3)
    )
    html = (
        "<html><head><title>Rivers</title></head><body><nav><a href='/'>Home</a></nav>"
        f"<article><h1>Rivers</h1>{body}</article><footer>Copyright</footer></body></html>"
    )
    (tmp_path / "r.html").write_text(html)
    [d] = parse_file(tmp_path / "r.html", "r", MAX)
    assert d.title == "Rivers" and "## Chapter 1" in d.text and "sediment" in d.text
    assert "Copyright" not in d.text


def test_pdf_pages_and_title(tmp_path):
    make_pdf(tmp_path / "p.pdf", ["Page one talks about volcanoes.", "Page two talks about glaciers."], title="Earth")
    [d] = parse_file(tmp_path / "p.pdf", "p.pdf", MAX)
    assert d.title == "Earth" and d.metadata == {"pages": 2}
    assert d.page_at(d.text.index("volcanoes")) == 1 and d.page_at(d.text.index("glaciers")) == 2


def test_docx_headings_and_tables(tmp_path):
    [d] = parse_file(make_docx(tmp_path / "s.docx"), "s.docx", MAX)
    assert d.text.startswith("# Solar Panels") and "## Maintenance" in d.text
    assert "efficiency | 21 percent" in d.text and d.title == "Solar Panels"


def test_beir_corpus_keeps_ids(tmp_path):
    rows = [
        {"_id": "42", "title": "T", "text": "Body.", "metadata": {"y": 1}},
        {"_id": "7", "title": "", "text": "Other."},
    ]
    (tmp_path / "corpus.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    docs = parse_file(tmp_path / "corpus.jsonl", "corpus.jsonl", MAX)
    assert [d.doc_id for d in docs] == ["42", "7"] and docs[0].metadata == {"metadata": {"y": 1}}


def _encrypted_pdf(tmp_path: Path) -> Path:
    src = make_pdf(tmp_path / "plain.pdf", ["secret text"])
    w = PdfWriter(clone_from=PdfReader(src))
    w.encrypt("pw")
    out = tmp_path / "enc.pdf"
    with open(out, "wb") as fh:
        w.write(fh)
    return out


def _zip_not_docx(tmp_path: Path) -> Path:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("hello.txt", "not a word document")
    p = tmp_path / "fake.docx"
    p.write_bytes(buf.getvalue())
    return p


@pytest.mark.parametrize(
    "make, reason",
    [
        (lambda t: (t / "e.txt").write_bytes(b"") and None or t / "e.txt", "empty file"),
        (lambda t: (t / "w.txt").write_bytes(b" \n\t\n") and None or t / "w.txt", "empty file"),
        (lambda t: (t / "b.txt").write_bytes(bytes(range(256)) * 20) and None or t / "b.txt", "binary file"),
        (
            lambda t: (t / "x.pdf").write_bytes(b"%PDF-1.4\n1 0 obj garbage") and None or t / "x.pdf",
            "corrupt or unreadable PDF",
        ),
        (
            lambda t: (
                make_pdf(t / "c.pdf", ["some text"]).write_bytes((t / "c.pdf").read_bytes()[:300])
                and None
                or t / "c.pdf"
            ),
            "PDF",
        ),
        (_encrypted_pdf, "encrypted"),
        (lambda t: make_pdf(t / "blank.pdf", [""]), "no text"),
        (_zip_not_docx, "corrupt or unreadable DOCX"),
        (lambda t: (t / "n.docx").write_bytes(b"plain text, not a zip") and None or t / "n.docx", "DOCX"),
        (
            lambda t: (
                (t / "h.html").write_text("<html><body><script>var x=1;</script></body></html>")
                and None
                or t / "h.html"
            ),
            "no text",
        ),
        (
            lambda t: (t / "c.jsonl").write_text('{"_id": "1", "text": "ok"}\n{broken') and None or t / "c.jsonl",
            "line 2",
        ),
        (
            lambda t: (
                (t / "d.jsonl").write_text('{"_id": "1", "text": "a"}\n{"_id": "1", "text": "b"}')
                and None
                or t / "d.jsonl"
            ),
            "duplicate _id",
        ),
        (lambda t: (t / "img.png").write_bytes(b"\x89PNG") and None or t / "img.png", "unsupported file type"),
        (lambda t: (t / "gone.md").symlink_to(t / "nowhere.md") or t / "gone.md", "cannot read file"),
    ],
    ids=[
        "empty",
        "whitespace",
        "binary",
        "garbage-pdf",
        "truncated-pdf",
        "encrypted-pdf",
        "image-only-pdf",
        "zip-not-docx",
        "text-as-docx",
        "html-no-text",
        "jsonl-bad-line",
        "jsonl-dup-id",
        "png",
        "dangling-link",
    ],
)
def test_bad_files_fail_with_a_reason(tmp_path, make, reason):
    path = make(tmp_path)
    with pytest.raises(ParseError, match=reason):
        parse_file(path, path.name, MAX)


def test_size_limit(tmp_path):
    (tmp_path / "big.txt").write_text("word " * 1000)
    with pytest.raises(ParseError, match="over the"):
        parse_file(tmp_path / "big.txt", "big", 1000)


def test_docx_zip_bomb_refused(tmp_path, monkeypatch):
    import ingest.parsers as parsers

    monkeypatch.setattr(parsers, "MAX_DOCX_UNCOMPRESSED", 10_000)
    path = make_docx(tmp_path / "bomb.docx")
    with zipfile.ZipFile(path, "a") as z:
        z.writestr("word/padding.xml", "0" * 50_000)
    with pytest.raises(ParseError, match="zip bomb"):
        parse_file(path, "bomb", MAX)
