"""Files made at run time for the ingest and upload tests: a PDF with pages, a DOCX with headings and a table,
and a folder of every supported type."""

from __future__ import annotations

from pathlib import Path

import docx
from reportlab.lib.pagesizes import A4
from reportlab.pdfgen import canvas


def make_pdf(path: Path, pages: list[str], title: str | None = None) -> Path:
    c = canvas.Canvas(str(path), pagesize=A4)
    if title:
        c.setTitle(title)
    for text in pages:
        y = 800
        for line in text.split("\n"):
            c.drawString(72, y, line)
            y -= 14
        c.showPage()
    c.save()
    return path


def make_docx(path: Path) -> Path:
    d = docx.Document()
    d.add_heading("Solar Panels", level=1)
    d.add_paragraph("Solar panels convert sunlight into electricity.")
    d.add_heading("Maintenance", level=2)
    d.add_paragraph("Clean them twice a year.")
    table = d.add_table(rows=1, cols=2)
    table.rows[0].cells[0].text = "efficiency"
    table.rows[0].cells[1].text = "21 percent"
    d.save(str(path))
    return path


def make_folder(root: Path) -> Path:
    docs = root / "docs"
    docs.mkdir(parents=True)
    (docs / "cats.md").write_text("# Cats\n\nCats sleep most of the day.\n\n## Food\n\nCats eat fish and meat.")
    (docs / "notes.txt").write_text("Tea is brewed with water at ninety degrees.")
    (docs / "sub").mkdir()
    body = "".join(f"<h2>Part {i}</h2><p>{'Bridges carry loads across rivers and valleys. ' * 4}</p>" for i in range(3))
    (docs / "sub" / "bridges.html").write_text(
        f"<html><head><title>Bridges</title></head><body><article><h1>Bridges</h1>{body}</article></body></html>"
    )
    make_pdf(docs / "sub" / "volcano.pdf", ["Volcanoes erupt molten rock.", "Lava cools into basalt."])
    make_docx(docs / "solar.docx")
    return docs
