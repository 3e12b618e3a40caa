"""One DuckDB instance per process; each operation attaches its file and detaches it again.

Every operation opens its file and lets it go when it ends, so that a terminal, a notebook
and an assistant's server can share it (:mod:`.connection`). Opening a file with
``duckdb.connect`` builds a whole DuckDB instance each time — about 16 ms of CPU, most of
it the catalog of built-in functions — and an operation is otherwise a few milliseconds of
SQL. So the process keeps one in-memory instance and each operation ``ATTACH``-es its file
to it, works on a cursor whose default database is that file (``USE``), and ``DETACH``-es
it at the end. ``DETACH`` does what closing did: it checkpoints the write-ahead log into the
file and releases DuckDB's file lock, so no lock outlives an operation (measured: open,
one insert and close 50 ms; attach, the same insert and detach 7 ms).

Operations on one file in this process take turns (:func:`.connection.process_lock`); an
operation nested inside another on the same file (same thread) shares its attachment,
which is detached when the outermost ends. The instance is made again in a forked child
(DuckDB's threads do not survive ``fork``).
"""

from __future__ import annotations

import hashlib
import os
import threading
from dataclasses import dataclass
from pathlib import Path

import duckdb

from ...errors import DatabaseError

__all__ = ["attach", "can_attach", "detach"]


@dataclass
class _Attached:
    alias: str
    read_only: bool
    users: int = 0


@dataclass
class _Instance:
    pid: int
    base: duckdb.DuckDBPyConnection
    attached: dict[str, _Attached]


_guard = threading.Lock()  # the attachments' table; ATTACH and DETACH themselves run outside it
_state: _Instance | None = None


def _instance() -> _Instance:
    global _state
    with _guard:
        if _state is None or _state.pid != os.getpid():
            _state = _Instance(os.getpid(), duckdb.connect(":memory:"), {})
        return _state


def can_attach(path: Path) -> bool:
    """Whether ``path`` can be named in an ``ATTACH`` statement (its text is UTF-8);
    otherwise the file is opened on its own instance, as before."""
    try:
        str(path).encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def attach(path: Path, *, read_only: bool) -> duckdb.DuckDBPyConnection:
    """A new connection of the process's instance whose default database is ``path``.

    Raises:
        duckdb.Error: as ``duckdb.connect(path)`` raises them (a lock held by another
            process, a file that is not DuckDB's); the caller retries or explains.
        DatabaseError: the file is attached read-only and a write was asked for.
    """
    instance = _instance()
    key = str(path)
    with _guard:
        entry = instance.attached.get(key)
    if entry is None:
        alias = "hs_" + hashlib.sha256(key.encode("utf-8")).hexdigest()[:16]
        mode = " (READ_ONLY)" if read_only else ""
        with instance.base.cursor() as cur:
            cur.execute(f"ATTACH '{key.replace(chr(39), chr(39) * 2)}' AS {alias}{mode}")
        entry = _Attached(alias, read_only)
        with _guard:
            instance.attached[key] = entry
    elif entry.read_only and not read_only:
        raise DatabaseError(f"database {key!r} is open read-only in this process; a write must wait until it closes")
    cursor = instance.base.cursor()
    try:
        cursor.execute(f"USE {entry.alias}")
    except BaseException:
        cursor.close()
        _release(instance, key)
        raise
    with _guard:
        entry.users += 1
    return cursor


def detach(path: Path, cursor: duckdb.DuckDBPyConnection) -> None:
    """End one operation's use of ``path``: close its cursor and, when no other operation
    of this thread still uses the file, detach it (a checkpoint, and the lock is free)."""
    cursor.close()
    instance = _instance()
    with _guard:
        entry = instance.attached[str(path)]
        entry.users -= 1
    _release(instance, str(path))


def _release(instance: _Instance, key: str) -> None:
    with _guard:
        entry = instance.attached.get(key)
        if entry is None or entry.users > 0:
            return
        del instance.attached[key]
    try:
        with instance.base.cursor() as cur:
            cur.execute(f"DETACH {entry.alias}")
    except BaseException:
        with _guard:  # still attached: the next operation on the file uses (and detaches) it
            instance.attached.setdefault(key, entry)
        raise
