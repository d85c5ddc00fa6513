"""What every `rag` subcommand shares: consoles, exit codes, and the one place errors become messages."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator, Optional

import typer
from rich.console import Console

from core.errors import RagError
from core.settings import Settings

err = Console(stderr=True, soft_wrap=True)
out = Console(soft_wrap=True)

EXIT_FILES_FAILED = 1
EXIT_ERROR = 2
EXIT_BELOW_GATE = 3


@contextmanager
def errors() -> Iterator[None]:
    """Turn a RagError into one clear line on stderr and exit status 2."""
    try:
        yield
    except RagError as exc:
        err.print(f"[bold red]error[/] ({exc.code}): {exc}")
        raise typer.Exit(EXIT_ERROR) from None


def settings_for(collection: Optional[str]) -> Settings:
    settings = Settings()
    return settings.model_copy(update={"collection": collection}) if collection else settings
