"""Who waits for whom on the team store: writers of one scenario, never the library.

A change to an existing scenario locks its ``scenarios`` row (``SELECT … FOR UPDATE`` in
the change's transaction), so a second writer of that scenario waits and then sees the
first one's result, while writers of other scenarios go on. A name that does not exist
yet has no row to lock: a save takes a transaction-level advisory lock on the name, so
two saves of one new name take turns (the second then finds it taken, or overwrites it).
Locks end with the transaction, also when a client dies.
"""

from __future__ import annotations

from typing import Any

from .connection import is_postgres

__all__ = ["lock_name", "row_lock"]


def lock_name(con: Any, name: str) -> None:
    """Wait for, then hold until the transaction ends, the advisory lock of ``name``
    (PostgreSQL only; a DuckDB file is held whole by its writer)."""
    if is_postgres(con) and "\x00" not in name:  # (no valid name holds a NUL, nor can PostgreSQL text)
        con.execute("SELECT pg_advisory_xact_lock(hashtextextended(?, 7261))", ["healthsim-state:" + name])


def row_lock(con: Any) -> str:
    """The clause that locks the rows a ``SELECT`` on ``scenarios`` reads, for writers
    (``FOR UPDATE`` on PostgreSQL, nothing on DuckDB)."""
    return " FOR UPDATE" if is_postgres(con) else ""
