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

from ..validation import storable
from .connection import is_postgres

__all__ = ["lock_name", "lock_scenarios", "row_lock"]


def lock_name(con: Any, name: str) -> None:
    """Wait for, then hold until the transaction ends, the advisory lock of ``name``
    (PostgreSQL only; a DuckDB file is held whole by its writer)."""
    if is_postgres(con) and storable(name):  # (no valid name holds a NUL or a lone surrogate)
        con.execute("SELECT pg_advisory_xact_lock(hashtextextended(?, 7261))", ["healthsim-state:" + name])


def lock_scenarios(con: Any, scenario_ids: list[Any]) -> None:
    """Lock several scenarios' rows (PostgreSQL only), always in the same order, so that
    two changes of the same scenarios in another order wait instead of deadlocking."""
    if is_postgres(con) and scenario_ids:
        con.execute(
            "SELECT 1 FROM scenarios WHERE scenario_id = ANY(?) ORDER BY scenario_id FOR UPDATE", [list(scenario_ids)]
        )


def row_lock(con: Any) -> str:
    """The clause that locks the rows a ``SELECT`` on ``scenarios`` reads until the
    transaction ends: ``FOR UPDATE`` inside a change's transaction on PostgreSQL; nothing
    outside one, in a reader's snapshot, or on DuckDB (whose writer holds the file)."""
    return " FOR UPDATE" if is_postgres(con) and con.in_transaction and not con.reading else ""
