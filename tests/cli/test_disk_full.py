"""A full disk met anywhere under a command (the store's files, SQLite) is one line and exit 2, not a traceback;
other errors are not mistaken for it. The real disk: tests/service/test_fault_disk.py (a tmpfs, root only)."""

from __future__ import annotations

import errno
import sqlite3

import pytest
import typer
from sqlalchemy.exc import OperationalError

from cli.support import disk_full, errors


def test_disk_full_is_recognised_through_wrappers():
    enospc = OSError(errno.ENOSPC, "No space left on device")
    sqlite_full = OperationalError("INSERT ...", {}, sqlite3.OperationalError("database or disk is full"))
    try:
        try:
            raise enospc
        except OSError as inner:
            raise RuntimeError("writing the owner file") from inner
    except RuntimeError as wrapped:
        chained = wrapped
    assert disk_full(enospc) and disk_full(sqlite_full) and disk_full(chained)
    assert not disk_full(OSError(errno.EACCES, "Permission denied"))
    assert not disk_full(OperationalError("SELECT", {}, sqlite3.OperationalError("no such table: jobs")))


def test_errors_turns_a_full_disk_into_one_line(capsys):
    with pytest.raises(typer.Exit) as done, errors():
        raise OSError(errno.ENOSPC, "No space left on device")
    assert done.value.exit_code == 2
    said = capsys.readouterr().err
    assert "error (disk_full)" in said and "No space left on device" in said and "Traceback" not in said
    with pytest.raises(OSError), errors():  # anything else still surfaces as it is
        raise OSError(errno.EACCES, "Permission denied")
