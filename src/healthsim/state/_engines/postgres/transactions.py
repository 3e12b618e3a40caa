"""A transaction on the team store, and what a large write leaves to do after it."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from ..duckdb.connection import lock_timeout
from .bulk import analyze_written, forget_written
from .connection import PgConnection

__all__ = ["transaction"]


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
    # (0 would mean "no limit" to PostgreSQL: a millisecond is "do not wait".)
    waited = max(1, round(lock_timeout() * 1000))
    con.execute(f"BEGIN TRANSACTION; SET LOCAL lock_timeout = {waited}")
    try:
        yield con
    except BaseException:
        forget_written(con)
        try:
            con.execute("ROLLBACK")
        except Exception:
            # A lost server connection cannot roll back, and needs not: the server
            # ends the transaction; the error that broke the block is the one to tell.
            pass
        raise
    else:
        con.execute("COMMIT")
        analyze_written(con)  # after a large write: fresh statistics for the planner
