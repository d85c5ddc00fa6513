"""What every `rag` subcommand shares: consoles, exit codes, and the one place errors become messages."""

from __future__ import annotations

from contextlib import contextmanager
from typing import TYPE_CHECKING, Iterator, Optional

import typer
from rich.console import Console

from core.errors import RagError
from core.settings import Settings

if TYPE_CHECKING:
    from engine.engine import Engine

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


@contextmanager
def open_engine(settings: Settings) -> Iterator[Engine]:
    """The engine on the settings' store with its collection checked (an unknown one is an error message);
    closed afterwards."""
    from engine.engine import Engine

    engine = Engine.build(settings)
    try:
        engine.require_collection(settings.collection)
        yield engine
    finally:
        engine.close()


def parse_ks(k: str) -> list[int]:
    """`--k 1,3,10` as sorted whole numbers; a bad value is one message and exit status 2."""
    try:
        ks = sorted({int(x) for x in k.split(",") if x.strip()})
    except ValueError:
        ks = []
    if not ks or ks[0] < 1:
        err.print(f"[bold red]error[/]: --k takes whole numbers >= 1 separated by commas (got {k!r})")
        raise typer.Exit(EXIT_ERROR)
    return ks


def settings_for(collection: Optional[str]) -> Settings:
    settings = Settings()
    return settings.model_copy(update={"collection": collection}) if collection else settings
