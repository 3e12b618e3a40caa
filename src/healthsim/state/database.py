"""Which database to use, and opening it for one operation.

The database is a DuckDB file, or a PostgreSQL team store given by a ``postgresql://``
URL: :func:`resolve_database` tells which, and :func:`connect` opens either through its
engine (:mod:`._engines`). No connection outlives the operation that opened it: several
processes share one file (a terminal, a notebook, an assistant's MCP server), and DuckDB
lets one process hold it read-write at a time (an open that finds it locked retries for
up to ``HEALTHSIM_LOCK_TIMEOUT`` seconds: see :mod:`._engines.duckdb.connection`). Other URLs (mistyped ones and libpq ``key=value`` strings too) are refused,
not taken as relative paths: that made folders named after the URL, password included.
Every message names a database through :func:`~.redaction.show_database`.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ._engines import Connection, Database, TeamDatabase, engine_for, is_team_url
from .errors import InvalidInputError
from .redaction import is_connection_string, looks_like_url, show_database

__all__ = [
    "DEFAULT_DB_PATH",
    "Database",
    "resolve_database",
    "resolve_db_path",
    "redact_url",
    "show_database",
    "connect",
]

#: The default database, relative to the home folder (``~`` is read at each call).
DEFAULT_DB_PATH = Path(".healthsim") / "healthsim.duckdb"


#: The one way a database is written in messages (see :mod:`.redaction`); kept under its
#: earlier name too.
redact_url = show_database


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
    if path is not None and not isinstance(path, (str, os.PathLike)):
        return path  # a team store's database, already read from its URL
    if path is None:
        env = os.environ.get("HEALTHSIM_DB", "").strip()
        if env:
            _refuse_url(env, from_env=True)
        path = env if env else Path.home() / DEFAULT_DB_PATH
    elif isinstance(path, (str, os.PathLike)) and isinstance(text := os.fspath(path), str):
        _refuse_url(text, from_env=False)
    text = os.fspath(path)
    if not (text.strip() if isinstance(text, str) else text.strip(b" \t\n")):  # ("" was the current folder)
        raise InvalidInputError("database path is empty; give a DuckDB file path or a postgresql:// URL")
    if isinstance(text, str) and is_team_url(text.strip()):
        return TeamDatabase.parse(text.strip())
    try:
        found = Path(path).expanduser().absolute()
    except RuntimeError:  # "~nobody/…": no such user (or no home folder for "~")
        raise InvalidInputError(
            f"database {os.fsdecode(text)!r} starts with a '~' that names no home folder; write the full path"
        ) from None
    try:  # DuckDB takes a path as UTF-8 text: an undecodable byte was "RuntimeError: std::bad_cast"
        str(found).encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidInputError(
            f"database {str(found)!r} has a name that is not valid UTF-8, which DuckDB cannot open; "
            "choose another path (--db, HEALTHSIM_DB)"
        ) from None
    return found


def resolve_db_path(path: str | os.PathLike[str] | None = None) -> Path:
    """The DuckDB file to use, as :func:`resolve_database` finds it.

    Raises:
        InvalidInputError: the database is a PostgreSQL team store, or another URL.
    """
    found = resolve_database(path)
    if not isinstance(found, Path):
        raise InvalidInputError(f"{found.shown} is a PostgreSQL team store; this needs a DuckDB file")
    return found


@contextmanager
def connect(
    path: Database,
    *,
    create: bool = False,
    read_only: bool = False,
    config: dict[str, Any] | None = None,
) -> Iterator[Connection | None]:
    """Open ``path`` for one operation and close it afterwards.

    The database's engine opens it (:func:`._engines.engine_for`) and yields its
    :class:`~._engines.Connection`. A read-write connection is prepared first: pending
    schema migrations applied, leftovers of an interrupted large write removed. On a
    team store, a database without the library's tables counts as a missing file, and
    ``config`` does not apply.

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
    with engine_for(path).connect(path, create=create, read_only=read_only, config=config) as con:
        yield con
