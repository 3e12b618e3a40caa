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
(DuckDB's threads do not survive ``fork``: an idle instance is closed before a fork, and
the child starts without one).
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import duckdb

from ...errors import DatabaseError

__all__ = ["HeldInProcess", "ProcessInstance", "attach", "can_attach", "detach", "process_instance"]

log = logging.getLogger("healthsim.state")


class HeldInProcess(Exception):
    """The file is open on another DuckDB instance of this process (someone's
    ``duckdb.connect(path)`` beside the library): it cannot be attached as well."""


@dataclass
class _Attached:
    alias: str
    read_only: bool
    users: int = 0


@dataclass
class ProcessInstance:
    """This process's in-memory DuckDB (``base``) and the files attached to it now."""

    pid: int
    base: duckdb.DuckDBPyConnection
    attached: dict[str, _Attached]
    #: Attaches and detaches under way (between them a file is not in ``attached``).
    busy: int = 0


_guard = threading.Lock()  # the attachments' table; ATTACH and DETACH themselves run outside it
_state: ProcessInstance | None = None


def process_instance() -> ProcessInstance:
    """The process's DuckDB instance, made on first use (and again in a forked child)."""
    global _state
    with _guard:
        if _state is None or _state.pid != os.getpid():
            _state = ProcessInstance(os.getpid(), duckdb.connect(":memory:"), {})
        return _state


@contextmanager
def _in_use() -> Iterator[ProcessInstance]:
    """The instance, kept open (not closed before a fork) while the block runs."""
    instance = process_instance()
    with _guard:
        instance.busy += 1
    try:
        yield instance
    finally:
        with _guard:
            instance.busy -= 1


def _before_fork() -> None:
    """Close an idle instance before ``fork``: DuckDB's worker threads do not survive it,
    and a child that inherits an instance with live threads (and their locks) can hang
    making its own. The parent makes a new one when it next needs it (~16 ms)."""
    global _state
    with _guard:
        if _state is not None and not _state.attached and not _state.busy and _state.pid == os.getpid():
            _state.base.close()
            _state = None


def _in_child() -> None:
    """A forked child starts without the parent's instance, and with a lock no parent
    thread can be holding."""
    global _guard, _state
    _guard = threading.Lock()
    _state = None


os.register_at_fork(before=_before_fork, after_in_child=_in_child)


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
        HeldInProcess: the file is open on another instance of this process.
    """
    with _in_use() as instance:
        return _attach(instance, path, read_only)


def _attach(instance: ProcessInstance, path: Path, read_only: bool) -> duckdb.DuckDBPyConnection:
    key = str(path)
    with _guard:
        entry = instance.attached.get(key)
    if entry is None:
        alias = "hs_" + hashlib.sha256(key.encode("utf-8")).hexdigest()[:16]
        mode = " (READ_ONLY)" if read_only else ""
        with instance.base.cursor() as cur:
            try:
                cur.execute(f"ATTACH '{key.replace(chr(39), chr(39) * 2)}' AS {alias}{mode}")
            except duckdb.Error as exc:
                if "already attached" in str(exc):  # open on an instance of its own in this process
                    raise HeldInProcess(key) from exc
                raise
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
    with _in_use() as instance:
        with _guard:
            entry = instance.attached[str(path)]
            entry.users -= 1
        _release(instance, str(path))


def _release(instance: ProcessInstance, key: str) -> None:
    with _guard:
        entry = instance.attached.get(key)
        if entry is None or entry.users > 0:
            return
        del instance.attached[key]
    with instance.base.cursor() as cur:
        try:
            cur.execute(f"DETACH {entry.alias}")
        except duckdb.Error:
            # The checkpoint failed (a full disk): what was committed is safe in the
            # write-ahead log, which the next open replays, as when closing failed to
            # checkpoint. DuckDB detaches the file anyway; if it did not, the next
            # operation on the file uses the attachment and detaches it again.
            log.warning("checkpoint of %s failed while closing it; its write-ahead log keeps the changes", key)
            still = cur.execute(
                "SELECT count(*) FROM duckdb_databases() WHERE database_name = ?", [entry.alias]
            ).fetchall()[0][0]
            if still:
                with _guard:
                    instance.attached.setdefault(key, entry)
