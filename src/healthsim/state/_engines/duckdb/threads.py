"""DuckDB's worker threads shared among an operation's workers (summaries and checks run
two types at a time, each on a cursor of its own)."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, cast

if TYPE_CHECKING:
    from ..base import Connection

__all__ = ["THREADS", "ThreadShare"]


class ThreadShare:
    """DuckDB's worker threads shared among the workers summarising or checking types at once.

    ``threads`` is one setting for a whole database instance (every connection to the
    file in this process). Two types summarised side by side, each with queries on every
    thread, were measured 4-7% slower than with one thread each (four threads on two
    cores); a type left alone gets them all again. While types are summarised, a query
    of another operation on the same database file in this process (an MCP server runs
    tools at once) gets the same share; the setting is restored when the last type ends.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._active: dict[str, int] = {}  # database file -> workers summarising
        self._all: dict[str, int] = {}  # database file -> its setting before

    @contextlib.contextmanager
    def shared(self, con: Connection) -> Iterator[None]:
        """While a worker summarises or checks types on ``con``."""
        (database,) = cast(
            tuple[str],
            con.execute("SELECT path FROM duckdb_databases() WHERE database_name = current_database()").fetchone(),
        )
        with self._lock:
            if not self._active.get(database):
                (self._all[database],) = cast(tuple[int], con.execute("SELECT current_setting('threads')").fetchone())
            self._active[database] = self._active.get(database, 0) + 1
            self._apply(con, database)
        try:
            yield
        finally:
            with self._lock:
                self._active[database] -= 1
                self._apply(con, database)

    def _apply(self, con: Connection, database: str) -> None:
        active, every = self._active[database], self._all[database]
        con.execute(f"SET threads = {max(1, every // active) if active else every}")


THREADS = ThreadShare()
