"""Opening the database file: where it is, one connection per operation, locks, permissions.

Several processes share one file (a terminal, a notebook, an assistant's MCP server), and
DuckDB lets one process hold it read-write at a time. So no connection outlives the
operation that opened it, and an open that finds the file locked retries with backoff
for up to ``HEALTHSIM_LOCK_TIMEOUT`` seconds (default 30) before raising
:class:`DatabaseLockedError`. Inside one process, operations on the same file take turns
through a lock, because DuckDB refuses a second connection with another configuration
(the read-only SQL sandbox) beside an open one.

The database is a DuckDB file, or a PostgreSQL team store given by a ``postgresql://``
URL (see :mod:`.postgres`): :func:`resolve_database` tells which, and :func:`connect`
opens either. Other URLs (mistyped ones and libpq ``key=value`` strings too) are refused,
not taken as relative paths: that made folders named after the URL, password included.
Every message names a database through :func:`~.redaction.show_database`.
"""

from __future__ import annotations

import os
import random
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import duckdb

from .errors import DatabaseError, DatabaseLockedError, InvalidInputError
from .postgres.server import TeamDatabase, is_team_url
from .redaction import is_connection_string, looks_like_url, show_database
from .schema import prepare

__all__ = [
    "DEFAULT_DB_PATH",
    "Database",
    "resolve_database",
    "resolve_db_path",
    "redact_url",
    "show_database",
    "lock_timeout",
    "connect",
    "prepare_file",
    "process_lock",
]

#: The default database, relative to the home folder (``~`` is read at each call).
DEFAULT_DB_PATH = Path(".healthsim") / "healthsim.duckdb"
_DEFAULT_LOCK_TIMEOUT = 30.0

_process_locks: dict[str, threading.RLock] = {}
_process_locks_guard = threading.Lock()


#: The one way a database is written in messages (see :mod:`.redaction`); kept under its
#: earlier name too.
redact_url = show_database


#: Where scenarios are kept: a DuckDB file, or a PostgreSQL database (the team store).
Database = Path | TeamDatabase


def _refuse_url(value: str, from_env: bool) -> None:
    """Raise if ``value`` is a URL (or a mistyped one, or a libpq ``key=value`` string)
    other than a ``postgresql://`` one: taken as a path, it made folders named after it,
    password included."""
    value = value.strip()
    if is_team_url(value) or not looks_like_url(value):
        return
    example = "a DuckDB file path (e.g. ~/.healthsim/healthsim.duckdb) or a postgresql:// URL"
    fix = f"set HEALTHSIM_DB to {example}, or unset it for the default" if from_env else f"use {example}"
    if is_connection_string(value):
        where = "HEALTHSIM_DB" if from_env else "the database"
        raise InvalidInputError(
            f"{where} is a libpq key=value connection string (not shown: it may hold a password), which is "
            f"not taken; {fix}: postgresql://user:password@host:5432/database"
        )
    shown = show_database(value)
    if value.split(":", 1)[0].lower() == "file":
        why = "file: URLs are not read, give the file's path itself"
    else:
        why = "the only URLs taken are postgresql:// ones, for a team store"
    subject = f"HEALTHSIM_DB={shown}" if from_env else f"database {shown!r}"
    fix = fix if from_env else f"{fix}, or none for the default"
    raise InvalidInputError(f"{subject} is a URL, but not one of a database ({why}); {fix}")


def resolve_database(path: str | os.PathLike[str] | TeamDatabase | None = None) -> Database:
    """The database to use: ``path``, else ``HEALTHSIM_DB``, else the default file.

    Read at each call, so a long-running process follows changes to the variable.

    Returns:
        The DuckDB file's absolute path, or the :class:`TeamDatabase` a
        ``postgresql://`` URL names.

    Raises:
        InvalidInputError: the value is another URL (``file://`` included: pass the
            file's path itself); the message shows it with the password hidden.
            Nothing is created.
    """
    if isinstance(path, TeamDatabase):
        return path
    if path is None:
        env = os.environ.get("HEALTHSIM_DB", "").strip()
        if env:
            _refuse_url(env, from_env=True)
        path = env if env else Path.home() / DEFAULT_DB_PATH
    elif isinstance(path, (str, os.PathLike)) and isinstance(text := os.fspath(path), str):
        _refuse_url(text, from_env=False)
    text = os.fspath(path)
    if isinstance(text, str) and is_team_url(text.strip()):
        return TeamDatabase.parse(text.strip())
    try:
        return Path(path).expanduser().absolute()
    except RuntimeError:  # "~nobody/…": no such user (or no home folder for "~")
        raise InvalidInputError(
            f"database {os.fsdecode(text)!r} starts with a '~' that names no home folder; write the full path"
        ) from None


def resolve_db_path(path: str | os.PathLike[str] | None = None) -> Path:
    """The DuckDB file to use, as :func:`resolve_database` finds it.

    Raises:
        InvalidInputError: the database is a PostgreSQL team store, or another URL.
    """
    found = resolve_database(path)
    if isinstance(found, TeamDatabase):
        raise InvalidInputError(f"{found.shown} is a PostgreSQL team store; this needs a DuckDB file")
    return found


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
        raise InvalidInputError(f"HEALTHSIM_LOCK_TIMEOUT={raw!r} is not a number of seconds; set it to e.g. 30")
    return value


def process_lock(path: Path) -> threading.RLock:
    """This process's lock on one database file: operations on it take turns (DuckDB
    refuses a second connection with another configuration beside an open one)."""
    with _process_locks_guard:
        return _process_locks.setdefault(str(path), threading.RLock())


def _is_lock_conflict(exc: duckdb.Error) -> bool:
    text = str(exc)
    return "Could not set lock" in text or "Conflicting lock" in text


def _open_with_retry(path: Path, config: dict[str, Any] | None, read_only: bool) -> duckdb.DuckDBPyConnection:
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
    path: Database,
    *,
    create: bool = False,
    read_only: bool = False,
    config: dict[str, Any] | None = None,
) -> Iterator[Any]:
    """Open ``path`` for one operation and close it afterwards.

    A :class:`TeamDatabase` yields a :class:`~.postgres.connection.PgConnection`
    (prepared the same way; a database without the library's tables counts as a missing
    file, and ``config`` does not apply); a path yields a DuckDB connection.

    A read-write connection is prepared first (:func:`.schema.prepare`: pending schema
    migrations, leftovers of an interrupted large write removed).

    Args:
        path: the database file.
        create: create the file (and its folder) if missing. Otherwise a missing file
            yields ``None``, so that reads create nothing.
        read_only: open read-only and unprepared: nothing on disk changes (the SQL
            sandbox, ``migrate --status`` and ``--dry-run``).
        config: DuckDB configuration (the SQL sandbox's).

    Raises:
        DatabaseLockedError: another process held the file past the lock timeout.
        DatabaseError: the file is not a usable database, its folder cannot be created,
            or DuckDB refused an operation on the connection (a ``duckdb.Error`` from
            the ``with`` body, so that no raw DuckDB exception leaves the library).
        ServerUnavailableError: the PostgreSQL server cannot be used.
    """
    if isinstance(path, TeamDatabase):
        from .postgres.connection import open_connection  # (it imports this module's neighbours)
        from .postgres.schema import SCHEMA_VERSION, ensure_schema, schema_version

        with open_connection(path) as pg:
            if not read_only:
                current = schema_version(pg)
                if not create and current == 0:
                    yield None  # nothing saved there yet: as a missing file, reads create nothing
                    return
                if current != SCHEMA_VERSION:
                    ensure_schema(pg)
            yield pg
        return
    with process_lock(path):
        created = not path.exists()
        if created and not create:
            yield None
            return
        if created:
            folder = path.parent
            if not folder.exists():
                try:
                    folder.mkdir(parents=True, mode=0o700)
                except OSError as exc:  # a file in the way, no permission, read-only disk
                    raise DatabaseError(
                        f"cannot create the folder of database {str(path)!r}: "
                        f"{exc.strerror or exc} ({exc.filename or folder}); point HEALTHSIM_DB "
                        "(or --db) at a file in a folder you can write to"
                    ) from exc
        con = _open_with_retry(path, config, read_only=read_only)
        try:
            if created:
                _restrict_permissions(path)
            if not read_only:
                prepare(con)
            yield con
        except duckdb.Error as exc:
            # Our callers check their input before DuckDB sees it, so this is a defect
            # (it was how a lone surrogate in an imported file's key surfaced); it still
            # ends in the library's exception tree, with what to do.
            detail = " ".join(str(exc).split())  # DuckDB's text spans lines; ours is one
            raise DatabaseError(
                f"database {str(path)!r}: DuckDB refused the operation ({type(exc).__name__}: {detail}); "
                "please report this as a bug, with what you were doing"
            ) from exc
        finally:
            con.close()
            if created:
                _restrict_permissions(path)


def prepare_file(path: Path) -> bool:
    """Prepare an existing database file for readers that open it read-only (the SQL
    sandbox): apply pending migrations, remove an interrupted write's leftovers.

    Returns:
        False if there is no file (nothing is created).
    """
    with connect(path) as con:
        return con is not None
