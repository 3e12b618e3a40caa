"""One context manager for every write: a transaction, on either engine."""

from __future__ import annotations

from contextlib import AbstractContextManager

from ._engines import Connection

__all__ = ["transaction"]


def transaction(con: Connection) -> AbstractContextManager[Connection]:
    """Run the block as one transaction: committed if it returns, rolled back if it raises.

    DuckDB runs a multi-statement string statement by statement, not atomically, so every
    write goes through this. On the team store a block inside an open transaction joins it
    (a whole save runs in one transaction there, and the shared steps it calls open their
    own, as they must on DuckDB).
    """
    return con.engine.transaction(con)
