"""One context manager for every write: a transaction, on either engine."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from .postgres.connection import is_postgres

__all__ = ["transaction"]


@contextmanager
def transaction(con: Any) -> Iterator[Any]:
    """Run the block as one transaction: committed if it returns, rolled back if it raises.

    DuckDB runs a multi-statement string statement by statement, not atomically, so every
    write goes through this. On PostgreSQL a block inside an open transaction joins it
    (the team store runs a whole save in one transaction, and the shared steps it calls
    open their own on DuckDB).
    """
    if is_postgres(con) and con.in_transaction:
        yield con
        return
    con.execute("BEGIN TRANSACTION")
    try:
        yield con
    except BaseException:
        if is_postgres(con):
            from .postgres.bulk import forget_written  # (deferred: only the team store needs it)

            forget_written(con)
        try:
            con.execute("ROLLBACK")
        except Exception:
            if not is_postgres(con):
                raise
            # A lost server connection cannot roll back, and needs not: the server
            # ends the transaction; the error that broke the block is the one to tell.
        raise
    else:
        con.execute("COMMIT")
        if is_postgres(con):
            from .postgres.bulk import analyze_written  # (deferred: only the team store needs it)

            analyze_written(con)  # after a large write: fresh statistics for the planner
