"""Parsers: one file in, documents out. Each failure is a ParseError naming the reason.

Headings are kept as markdown `#` lines in the text, whatever the format, so the chunker sees structure.
"""

from __future__ import annotations

import json
import re
import zipfile
from pathlib import Path
from typing import Callable

from charset_normalizer import from_bytes

from core.errors import ParseError
from ingest.documents import Document

SUPPORTED = {
    ".txt": "text",
    ".md": "markdown",
    ".markdown": "markdown",
    ".html": "html",
    ".htm": "html",
    ".pdf": "pdf",
    ".docx": "docx",
    ".jsonl": "beir",
}
# A DOCX is a zip; refuse ones whose XML would inflate past this (zip bombs).
MAX_DOCX_UNCOMPRESSED = 200 * 1024 * 1024


def _decode(data: bytes) -> str:
    if b"\x00" in data[:8192]:
        raise ParseError("binary file (NUL bytes), not text")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        best = from_bytes(data).best()
        if best is None:
            raise ParseError("not valid text in any encoding that could be detected") from None
        # Short texts leave the single-byte Windows code pages hard to tell apart; Western is the likeliest.
        if best.encoding.startswith("cp125"):
            try:
                return data.decode("cp1252")
            except UnicodeDecodeError:
                pass
        return str(best)


def _clean(text: str) -> str:
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    return re.sub(r"\n{3,}", "\n\n", text).strip()


def _title_from(text: str, fallback: str) -> str:
    m = re.search(r"^#\s+(.+)$", text, flags=re.M)
    return m.group(1).strip() if m else fallback


def _require_text(text: str) -> str:
    if not text.strip():
        raise ParseError("no text in file (empty, or nothing extractable)")
    return text


def parse_text(path: Path, data: bytes, source: str, doc_type: str) -> list[Document]:
    text = _require_text(_clean(_decode(data)))
    title = _title_from(text, path.stem) if doc_type == "markdown" else path.stem
    return [Document(source, title, text, source, doc_type)]


def parse_html(path: Path, data: bytes, source: str, doc_type: str) -> list[Document]:
    import trafilatura

    html = _decode(data)
    try:
        text = trafilatura.extract(
            html, output_format="markdown", include_formatting=True, include_tables=True, favor_recall=True
        )
        meta = trafilatura.extract_metadata(html)
    except (ValueError, RecursionError) as exc:
        raise ParseError(f"HTML could not be parsed: {exc}") from exc
    text = _require_text(_clean(text or ""))
    title = (meta.title if meta and meta.title else None) or _title_from(text, path.stem)
    return [Document(source, title, text, source, doc_type)]


def parse_pdf(path: Path, data: bytes, source: str, doc_type: str) -> list[Document]:
    import io
    import logging

    from pypdf import PdfReader
    from pypdf.errors import PyPdfError

    logging.getLogger("pypdf").setLevel(logging.ERROR)  # its warnings repeat what the ParseError says
    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted:
            raise ParseError("PDF is encrypted")
        pages, starts, pos = [], [], 0
        for page in reader.pages:
            page_text = _clean(page.extract_text() or "")
            starts.append(pos)
            pages.append(page_text)
            pos += len(page_text) + 2
        info = reader.metadata
        title = (info.title if info and info.title else None) or path.stem
    except ParseError:
        raise
    except (PyPdfError, ValueError, KeyError, TypeError, OSError, RecursionError, AttributeError) as exc:
        raise ParseError(f"corrupt or unreadable PDF: {type(exc).__name__}: {exc}") from exc
    text = _require_text("\n\n".join(pages))
    return [Document(source, str(title), text, source, doc_type, {"pages": len(pages)}, tuple(starts))]


def parse_docx(path: Path, data: bytes, source: str, doc_type: str) -> list[Document]:
    import io

    import docx
    from docx.opc.exceptions import PackageNotFoundError

    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            if sum(i.file_size for i in zf.infolist()) > MAX_DOCX_UNCOMPRESSED:
                raise ParseError("DOCX inflates to more than 200 MB (zip bomb?)")
        document = docx.Document(io.BytesIO(data))
    except ParseError:
        raise
    except (zipfile.BadZipFile, PackageNotFoundError, KeyError, ValueError) as exc:
        raise ParseError(f"corrupt or unreadable DOCX: {type(exc).__name__}: {exc}") from exc
    lines = []
    for para in document.paragraphs:
        text = para.text.strip()
        if not text:
            continue
        style = (para.style.name if para.style is not None else "") or ""
        m = re.match(r"Heading (\d)", style)
        if style == "Title":
            lines.append(f"# {text}")
        elif m:
            lines.append("#" * min(int(m.group(1)), 6) + " " + text)
        else:
            lines.append(text)
    for table in document.tables:
        for row in table.rows:
            lines.append(" | ".join(cell.text.strip() for cell in row.cells))
    text = _require_text(_clean("\n\n".join(lines)))
    title = document.core_properties.title or _title_from(text, path.stem)
    return [Document(source, title, text, source, doc_type)]


def parse_beir(path: Path, data: bytes, source: str, doc_type: str) -> list[Document]:
    """A BEIR corpus.jsonl: one document per line, its `_id` kept so relevance judgments match."""
    docs, seen = [], set()
    for lineno, line in enumerate(_decode(data).splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            _id, text = str(row["_id"]), row["text"]
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise ParseError(f"line {lineno}: not a BEIR corpus record ({type(exc).__name__}: {exc})") from exc
        if _id in seen:
            raise ParseError(f"line {lineno}: duplicate _id {_id!r}")
        seen.add(_id)
        if not str(text).strip():
            continue  # an abstract-less record has nothing to index
        meta = {k: v for k, v in row.items() if k not in ("_id", "title", "text")}
        docs.append(Document(_id, str(row.get("title") or ""), str(text).strip(), source, doc_type, meta))
    if not docs:
        raise ParseError("no documents in corpus file")
    return docs


PARSERS: dict[str, Callable[[Path, bytes, str, str], list[Document]]] = {
    "text": parse_text,
    "markdown": parse_text,
    "html": parse_html,
    "pdf": parse_pdf,
    "docx": parse_docx,
    "beir": parse_beir,
}


def doc_type_of(path: Path) -> str | None:
    return SUPPORTED.get(path.suffix.lower())


def parse_file(path: Path, source: str, max_bytes: int) -> list[Document]:
    """Parse one file into documents. Raises ParseError with a reason a person can act on.

    `source` is the file's path relative to its ingest root (`docs/guide.md`): the id of the document of a
    one-document file, and the `source` of every document it gives (a BEIR corpus's records keep their `_id`).
    The absolute `path` is only read, never stored: it would leak server paths and break when a folder moves.
    """
    doc_type = doc_type_of(path)
    if doc_type is None:
        raise ParseError(f"unsupported file type {path.suffix or '(none)'}; supported: {', '.join(sorted(SUPPORTED))}")
    try:
        size = path.stat().st_size
        if size > max_bytes:
            raise ParseError(f"file is {size / 1e6:.1f} MB, over the {max_bytes / 1e6:.0f} MB limit")
        data = path.read_bytes()
    except OSError as exc:
        raise ParseError(f"cannot read file: {exc.strerror or exc}") from exc
    if not data.strip():
        raise ParseError("empty file")
    return PARSERS[doc_type](path, data, source, doc_type)
