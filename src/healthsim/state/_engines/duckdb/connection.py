"""Opening a DuckDB file for one operation: retries while it is locked, permissions.

Several processes share one file (a terminal, a notebook, an assistant's MCP server), and
DuckDB lets one process hold it read-write at a time. So no connection outlives the
operation that opened it, and an open that finds the file locked retries with backoff
for up to ``HEALTHSIM_LOCK_TIMEOUT`` seconds (default 30) before raising
:class:`~healthsim.state.errors.DatabaseLockedError`. Inside one process, operations on
the same file take turns through a lock, because DuckDB refuses a second connection with
another configuration (the read-only SQL sandbox) beside an open one.
"""

from __future__ import annotations

import os
import random
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb
import pyarrow as pa

from ...errors import DatabaseError, DatabaseLockedError, InvalidInputError
from .instance import HeldInProcess, attach, can_attach, detach

if TYPE_CHECKING:
    from ..base import Engine, Params

__all__ = [
    "DuckConnection",
    "lock_timeout",
    "open_file",
    "opened",
    "process_lock",
    "restrict_permissions",
    "transaction",
]

_DEFAULT_LOCK_TIMEOUT = 30.0

_process_locks: dict[str, threading.RLock] = {}
_process_locks_guard = threading.Lock()


class DuckConnection:
    """A DuckDB connection with the engine it belongs to (see :mod:`..base`).

    Args:
        raw: the DuckDB connection (closed by the opener, not here).
        engine: the DuckDB engine.
    """

    __slots__ = ("engine", "raw")

    def __init__(self, raw: duckdb.DuckDBPyConnection, engine: Engine) -> None:
        self.raw = raw
        self.engine = engine

    def execute(self, sql: str, params: Params = None) -> duckdb.DuckDBPyConnection:
        return self.raw.execute(sql, params)

    def executemany(self, sql: str, rows: Iterable[Sequence[Any] | Mapping[str, Any]]) -> Any:
        return self.raw.executemany(sql, list(rows))

    def sql(self, sql: str, *, params: Any = None) -> duckdb.DuckDBPyRelation:
        return self.raw.sql(sql, params=params)

    def cursor(self) -> DuckConnection:
        # A new connection of the instance starts in its default database; this one's may be
        # a file attached for the operation (see .instance), so the cursor moves there too.
        ((database,),) = self.raw.execute("SELECT current_database()").fetchall()  # (all: no open result)
        cursor = self.raw.cursor()
        cursor.execute(f'USE "{database}"')
        return DuckConnection(cursor, self.engine)

    def register(self, name: str, table: pa.Table) -> Any:
        return self.raw.register(name, table)

    def unregister(self, name: str) -> Any:
        return self.raw.unregister(name)

    def interrupt(self) -> None:
        self.raw.interrupt()

    def close(self) -> None:
        self.raw.close()


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


@contextmanager
def opened(path: Path, config: dict[str, Any] | None, read_only: bool) -> Iterator[duckdb.DuckDBPyConnection]:
    """The file open for one operation, retrying while another process holds it.

    Attached to the process's DuckDB instance (:mod:`.instance`: a fraction of the cost of
    a new instance) unless the caller gives its own configuration or the path cannot be
    named in SQL; either way the file is let go when the block ends.

    Raises:
        DatabaseLockedError: still held after :func:`lock_timeout` seconds.
        DatabaseError: it is not a DuckDB file this DuckDB can read.
    """
    refuse_other_data(path)
    attached = None
    if not config and can_attach(path):
        try:
            attached = _retrying(path, lambda: attach(path, read_only=read_only))
        except HeldInProcess:
            # Someone's duckdb.connect(path) in this process holds it: DuckDB's instance cache
            # gives a connect of the same file that instance, as before the attachments.
            pass
    if attached is None:
        raw = open_file(path, config, read_only)
        try:
            yield raw
        finally:
            raw.close()
        return
    try:
        yield attached
    finally:
        detach(path, attached)


#: Every DuckDB database file has these bytes at this offset, after its header's checksum.
_MAGIC, _MAGIC_AT = b"DUCK", 8


def refuse_other_data(path: Path) -> None:
    """Refuse a database path that is an existing file of other data (JSON, CSV, SQLite…).

    DuckDB opens such a file as a database of its own kind: a JSON or CSV file became a
    database in memory, so a save "worked" into nothing and the next read found no scenario,
    and a SQLite file made it try to download an extension. (``--db cohort.json`` for
    ``--from cohort.json`` is an easy slip.) A missing or empty file is DuckDB's to create.

    Raises:
        DatabaseError: naming the file and what to do.
    """
    if not os.path.isfile(path):  # missing, a folder, a pipe: DuckDB's to create or to explain
        return
    try:
        with open(path, "rb") as file:
            head = file.read(_MAGIC_AT + len(_MAGIC))
    except OSError:
        return
    if head and head[_MAGIC_AT:] != _MAGIC:
        raise DatabaseError(
            f"database {str(path)!r} is not a DuckDB database (it is a file of other data); point --db or "
            "HEALTHSIM_DB at a DuckDB file (a new path creates one), and bring a scenario file in with import"
        )


def open_file(path: Path, config: dict[str, Any] | None, read_only: bool) -> duckdb.DuckDBPyConnection:
    """The file on a DuckDB instance of its own (the SQL sandbox's, with its configuration),
    retrying with backoff while another process holds it.

    Raises:
        DatabaseLockedError: still held after :func:`lock_timeout` seconds.
        DatabaseError: it is not a DuckDB file this DuckDB can read.
    """
    return _retrying(path, lambda: duckdb.connect(str(path), read_only=read_only, config=config or {}))


def _retrying(path: Path, open_: Callable[[], duckdb.DuckDBPyConnection]) -> duckdb.DuckDBPyConnection:
    timeout = lock_timeout()
    deadline = time.monotonic() + timeout
    delay = 0.01
    while True:
        try:
            return open_()
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


def restrict_permissions(path: Path) -> None:
    """Owner-only permissions on the file and its write-ahead log (they hold patient-like data)."""
    for file in (path, path.with_name(path.name + ".wal")):
        try:
            os.chmod(file, 0o600)
        except FileNotFoundError:
            pass


@contextmanager
def transaction(con: DuckConnection) -> Iterator[DuckConnection]:
    """The block as one transaction: committed if it returns, rolled back if it raises.

    DuckDB runs a multi-statement string statement by statement, not atomically, so every
    write goes through this.
    """
    con.execute("BEGIN TRANSACTION")
    try:
        yield con
    except BaseException:
        con.execute("ROLLBACK")
        raise
    else:
        con.execute("COMMIT")
