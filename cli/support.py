"""What every `rag` subcommand shares: consoles, exit codes, and the one place errors become messages."""

from __future__ import annotations

import errno
import shlex
from contextlib import contextmanager
from typing import TYPE_CHECKING, Callable, Iterator, Optional

import typer
from rich.console import Console
from rich.markup import escape

from core.errors import RagError, StoreLockedError
from core.settings import Settings

if TYPE_CHECKING:
    from engine.engine import Engine

err = Console(stderr=True, soft_wrap=True)
out = Console(soft_wrap=True)

EXIT_FILES_FAILED = 1
EXIT_ERROR = 2
EXIT_BELOW_GATE = 3


@contextmanager
def errors(locked: Optional[Callable[[StoreLockedError], str]] = None) -> Iterator[None]:
    """Turn a RagError into one clear line on stderr and exit status 2; `locked` words a store_locked error for
    the command that met it (see locked_message)."""
    try:
        yield
    except StoreLockedError as exc:
        err.print(f"[bold red]error[/] ({exc.code}): " + (locked(exc) if locked else str(exc)), markup=locked is None)
        raise typer.Exit(EXIT_ERROR) from None
    except RagError as exc:
        err.print(f"[bold red]error[/] ({exc.code}): {exc}")
        raise typer.Exit(EXIT_ERROR) from None
    except Exception as exc:
        if not disk_full(exc):
            raise
        # The store's owner file, its segments or the SQLite database met a full disk: one line, not a traceback.
        what = escape(f"{type(exc).__name__}: {getattr(exc, 'strerror', None) or str(exc).splitlines()[0]}")
        err.print(
            f"[bold red]error[/] (disk_full): no space left on the device holding the data dir ({what}); free "
            "some space and run it again (an ingest rerun finishes what a stopped one wrote)"
        )
        raise typer.Exit(EXIT_ERROR) from None


def disk_full(exc: BaseException) -> bool:
    """Whether an error (or what caused it) is a full disk: OSError ENOSPC, or SQLite's "database or disk is full"
    (SQLITE_FULL), which SQLAlchemy wraps."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
            return True
        if "database or disk is full" in str(exc):
            return True
        exc = getattr(exc, "orig", None) or exc.__cause__ or exc.__context__
    return False


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


def locked_message(exc: StoreLockedError, command: str, args: list[str], settings: Settings) -> str:
    """A store_locked error as the command that met it should say it: the command run, who holds the store, and
    the same command sent to the running service, ready to paste (at RAG_HOST/RAG_PORT, where `rag serve`
    listens by default)."""
    host = "127.0.0.1" if settings.host in ("0.0.0.0", "::", "") else settings.host
    url = f"http://{host}:{settings.port}"
    run = shlex.join(["rag", command, *args])
    paste = shlex.join(["rag", command, "--submit", url, *args])
    return (
        f"`{run}` cannot open the store: {exc.detail}.\nIf that process is `rag serve`, run the same {command} "
        f"through it (add --api-key KEY, or set RAG_API_KEY, when the service asks for one):\n  {paste}\n"
        "or stop that process, or point RAG_DATA_DIR elsewhere."
    )


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
