"""A transaction on the team store, and what a large write leaves to do after it."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from ...errors import DatabaseError
from ..duckdb.connection import lock_timeout
from .bulk import analyze_written, forget_written
from .connection import PgConnection

__all__ = ["transaction"]

#: The longest ``lock_timeout`` PostgreSQL takes (milliseconds, a 32-bit integer).
_LONGEST_LOCK_TIMEOUT_MS = 2**31 - 1


@contextmanager
def transaction(con: PgConnection) -> Iterator[PgConnection]:
    """The block as one transaction: committed if it returns, rolled back if it raises.

    A block inside an open transaction joins it: the team store runs a whole save in one
    transaction, and the shared steps it calls open their own (as they must on DuckDB).
    """
    if con.in_transaction:
        yield con
        return
    # A lock wait is bounded as on a file (HEALTHSIM_LOCK_TIMEOUT): a client that holds the
    # scenario and stopped answering (it left the network mid-save; the server keeps its
    # transaction until TCP gives up, hours later) must not hold every other writer forever.
    # (0 would mean "no limit" to PostgreSQL: a millisecond is "do not wait"; and it counts
    # milliseconds in a 32-bit integer, about 24 days: a longer wait is that long.)
    waited = max(1, round(min(lock_timeout() * 1000, _LONGEST_LOCK_TIMEOUT_MS)))  # ("inf" too)
    try:
        con.execute(f"BEGIN TRANSACTION; SET LOCAL lock_timeout = {waited}")
        yield con
    except BaseException:
        forget_written(con)
        try:
            if con.in_transaction:
                con.execute("ROLLBACK")
        except Exception:
            # A lost server connection cannot roll back, and needs not: the server
            # ends the transaction; the error that broke the block is the one to tell.
            pass
        raise
    else:
        try:
            con.execute("COMMIT")
        except DatabaseError as exc:
            if not con.raw.closed:
                raise
            # The server may have committed and the answer been lost on the way: "nothing was
            # kept, try again" could then add the same entities twice.
            raise DatabaseError(
                f"the connection to {con.target.shown} was lost while the change was being committed: it may or "
                "may not have been saved (all of it or none); look at the scenario's history (healthsim history "
                "NAME) or load it before trying again"
            ) from exc
        analyze_written(con)  # after a large write: fresh statistics for the planner
