"""`rag golden candidates`: logged queries worth labelling, ranked by their signals, read from the service's
database (the same one the service writes: SQLite in the data dir, or RAG_DATABASE_URL)."""

from __future__ import annotations

import json
from typing import Optional

import typer
from rich.table import Table

from cli.support import errors, out


def golden_candidates(
    since: str = typer.Option("7d", "--since", help="How far back: 7d, 24h, 30m, 2w, or an ISO date."),
    limit: int = typer.Option(50, "--limit", min=1, help="How many candidates."),
    collection: Optional[str] = typer.Option(None, "--collection", "-c", help="Only this collection."),
    as_json: bool = typer.Option(False, "--json", help="Print the candidates as JSON on stdout."),
) -> None:
    """Unlabelled logged queries ranked by thumbs-down, declines, unsupported claims, low top scores and
    retrievers that disagree; label them in the web UI (/ui, "To label")."""
    from core.settings import Settings
    from service.db import Database, database_url
    from service.querylog.log import QueryLog
    from service.querylog.rows import parse_since

    settings = Settings()
    with errors():
        db = Database(database_url(settings))
        try:
            db.migrate()  # a database no service has opened yet gets its (empty) tables
            log = QueryLog(settings, db)
            try:
                items = log.candidates(None, collection, parse_since(since), limit)
            finally:
                log.close()
        finally:
            db.close()
    if as_json:
        print(json.dumps(items, default=str))
        return
    if not items:
        out.print(f"no unlabelled queries since {since}")
        return
    table = Table("score", "signals", "collection", "question", "query id", "asked")
    for c in items:
        signals = ", ".join(f"{k} {v:+g}" for k, v in c["signals"].items())
        table.add_row(f"{c['score']:.2f}", signals, c["collection"], c["question"], c["id"], str(c["times_asked"]))
    out.print(table)
