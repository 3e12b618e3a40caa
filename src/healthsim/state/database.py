"""Opening the database file: where it is, one connection per operation, locks, permissions.

Several processes share one file (a terminal, a notebook, an assistant's MCP server), and
DuckDB lets one process hold it read-write at a time. So no connection outlives the
operation that opened it, and an open that finds the file locked retries with backoff
for up to ``HEALTHSIM_LOCK_TIMEOUT`` seconds (default 30) before raising
:class:`DatabaseLockedError`. Inside one process, operations on the same file take turns
through a lock, because DuckDB refuses a second connection with another configuration
(the read-only SQL sandbox) beside an open one.
"""

from __future__ import annotations

import os
import random
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb

from .bulk import recover_staging
from .errors import DatabaseError, DatabaseLockedError, InvalidInputError
from .schema import ensure_schema

__all__ = [
    "DEFAULT_DB_PATH",
    "resolve_db_path",
    "lock_timeout",
    "connect",
]

#: The default database, relative to the home folder (``~`` is read at each call).
DEFAULT_DB_PATH = Path(".healthsim") / "healthsim.duckdb"
_DEFAULT_LOCK_TIMEOUT = 30.0

_process_locks: dict[str, threading.RLock] = {}
_process_locks_guard = threading.Lock()


def resolve_db_path(path: str | os.PathLike[str] | None = None) -> Path:
    """The database file to use: ``path``, else ``HEALTHSIM_DB``, else the default.

    Read at each call, so a long-running process follows changes to the variable.
    """
    if path is None:
        env = os.environ.get("HEALTHSIM_DB", "").strip()
        path = env if env else Path.home() / DEFAULT_DB_PATH
    return Path(path).expanduser().absolute()


def lock_timeout() -> float:
    """Seconds to wait for a locked database (``HEALTHSIM_LOCK_TIMEOUT``, default 30)."""
    raw = os.environ.get("HEALTHSIM_LOCK_TIMEOUT", "").strip()
    if not raw:
        return _DEFAULT_LOCK_TIMEOUT
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value >= 0:
        raise InvalidInputError(
            f"HEALTHSIM_LOCK_TIMEOUT={raw!r} is not a number of seconds; set it to e.g. 30"
        )
    return value


def _process_lock(path: Path) -> threading.RLock:
    with _process_locks_guard:
        return _process_locks.setdefault(str(path), threading.RLock())


def _is_lock_conflict(exc: duckdb.Error) -> bool:
    text = str(exc)
    return "Could not set lock" in text or "Conflicting lock" in text


def _open_with_retry(path: Path, config: dict[str, object] | None, read_only: bool) -> duckdb.DuckDBPyConnection:
    timeout = lock_timeout()
    deadline = time.monotonic() + timeout
    delay = 0.01
    while True:
        try:
            return duckdb.connect(str(path), read_only=read_only, config=config or {})
        except duckdb.IOException as exc:
            if not _is_lock_conflict(exc):
                raise DatabaseError(
                    f"cannot open database {str(path)!r}: {exc}; check that it is a DuckDB "
                    "file written by DuckDB 1.x/2.x, or point HEALTHSIM_DB at another file"
                ) from exc
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise DatabaseLockedError(path, timeout) from exc
            # Jitter keeps two waiting processes from retrying in lockstep.
            time.sleep(min(remaining, delay * (0.5 + random.random())))
            delay = min(delay * 2, 0.5)
        except duckdb.Error as exc:
            raise DatabaseError(f"cannot open database {str(path)!r}: {exc}") from exc


def _restrict_permissions(path: Path) -> None:
    for file in (path, path.with_name(path.name + ".wal")):
        try:
            os.chmod(file, 0o600)
        except FileNotFoundError:
            pass


@contextmanager
def connect(
    path: Path,
    *,
    write: bool,
    config: dict[str, object] | None = None,
) -> Iterator[duckdb.DuckDBPyConnection | None]:
    """Open ``path`` for one operation and close it afterwards.

    Args:
        path: the database file.
        write: create the file (and its folder) if missing. When false and the file does
            not exist, yields ``None`` so that reads do not create anything.
        config: DuckDB configuration (the SQL sandbox uses it); such a connection is
            opened read-only and skips schema upgrades.

    Raises:
        DatabaseLockedError: another process held the file past the lock timeout.
        DatabaseError: the file is not a usable database.
    """
    with _process_lock(path):
        created = not path.exists()
        if created and not write:
            yield None
            return
        if created:
            folder = path.parent
            if not folder.exists():
                folder.mkdir(parents=True, mode=0o700)
        con = _open_with_retry(path, config, read_only=config is not None)
        try:
            if created:
                _restrict_permissions(path)
            if config is None:
                ensure_schema(con)
                recover_staging(con)
            yield con
        finally:
            con.close()
            if created:
                _restrict_permissions(path)
