"""The connection the shared store code runs its SQL on, when the store is PostgreSQL.

The store, editing and history modules are written once, in SQL that both engines run
(positional ``GROUP BY``, ``= ANY(?)``, aliased subqueries, ``::TEXT`` casts), with
DuckDB's parameter styles: ``?`` and ``$name``. :class:`PgConnection` gives that code
what it uses of a DuckDB connection — ``execute(sql, params).fetchall()``,
``executemany`` — on a psycopg connection:

- parameters become PostgreSQL's own ``$1, $2…`` (psycopg's raw cursor), so a ``%`` in
  the SQL needs no escaping;
- a statement that returns no rows (``INSERT``, ``DELETE``…) answers ``[(rowcount,)]``,
  as DuckDB does;
- ``json`` values come back as their text, exactly as stored (psycopg would parse them);
- psycopg errors leave as the library's :class:`~healthsim.state.errors.DatabaseError`,
  naming the database and never its password.

What the engines do differently is asked of the connection's :attr:`~PgConnection.engine`.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from ...._lazy import lazy_module
from ...errors import DatabaseError, DatabaseLockedError, StateError
from ..duckdb.connection import lock_timeout
from . import idle
from .server import TeamDatabase

if TYPE_CHECKING:  # imported on first use: see healthsim._lazy
    import psycopg

    from ..base import Engine
else:
    psycopg = lazy_module("psycopg")

__all__ = ["PgConnection", "open_connection", "to_native"]


def _not_copy_teardown(record: logging.LogRecord) -> bool:
    """Whether a psycopg log record is kept: not its "error ignored terminating <psycopg.Copy …>",
    logged when a ``COPY`` on a lost connection cannot be ended. psycopg raises the error that
    broke the ``COPY`` anyway (the library's "connection lost" follows), and with no logging set
    up, as on the command line, Python printed the record on stderr above it, object address and
    all."""
    return not (str(record.msg).startswith("error ignored terminating") and "Copy" in repr(record.args)[:40])


logging.getLogger("psycopg").addFilter(_not_copy_teardown)


@functools.lru_cache(maxsize=512)
def to_native(sql: str) -> tuple[str, tuple[str, ...]]:
    """``sql`` with ``?`` and ``$name`` turned into ``$1, $2…``, and the parameter names in
    order (``?`` gives ``""``). Quoted text, quoted names and comments are left alone.

    Example:
        >>> to_native("SELECT * FROM t WHERE a = $sid AND b = $sid AND c = '?'")
        ("SELECT * FROM t WHERE a = $1 AND b = $1 AND c = '?'", ('sid',))
    """
    out: list[str] = []
    names: list[str] = []
    i, n = 0, len(sql)
    while i < n:
        c = sql[i]
        if c in "'\"":  # a quoted string or name: copy to its closing quote ('' and "" escape)
            j = i + 1
            while j < n:
                if sql[j] == c:
                    if j + 1 < n and sql[j + 1] == c:
                        j += 2
                        continue
                    break
                j += 1
            out.append(sql[i : j + 1])
            i = j + 1
        elif c == "-" and sql.startswith("--", i):
            j = sql.find("\n", i)
            j = n if j < 0 else j
            out.append(sql[i:j])
            i = j
        elif c == "?":
            names.append("")
            out.append(f"${len(names)}")
            i += 1
        elif c == "$" and i + 1 < n and (sql[i + 1].isalpha() or sql[i + 1] == "_"):
            j = i + 1
            while j < n and (sql[j].isalnum() or sql[j] == "_"):
                j += 1
            name = sql[i + 1 : j]
            if name not in names:
                names.append(name)
            out.append(f"${names.index(name) + 1}")
            i = j
        else:
            out.append(c)
            i += 1
    return "".join(out), tuple(names)


def _arguments(names: tuple[str, ...], params: Sequence[Any] | Mapping[str, Any] | None) -> list[Any]:
    if params is None:
        return []
    if isinstance(params, Mapping):
        return [params[name] for name in names]
    return list(params)


class _Result:
    """Rows of one statement, read at once (what DuckDB's ``execute`` returns is used so)."""

    def __init__(self, rows: list[tuple[Any, ...]], description: Any) -> None:
        self._rows = rows
        self.description = description

    def fetchall(self) -> list[tuple[Any, ...]]:
        return self._rows

    def fetchone(self) -> tuple[Any, ...] | None:
        return self._rows[0] if self._rows else None


class PgConnection:
    """A psycopg connection with the part of DuckDB's connection API the store uses.

    Args:
        raw: an open psycopg connection in autocommit mode (the library's
            ``transaction()`` sends ``BEGIN``/``COMMIT`` itself).
        target: the database, for messages.
        engine: the engine the shared code asks where the engines differ (None for the
            SQL sandbox's connection, which the shared code never sees).
    """

    def __init__(self, raw: psycopg.Connection, target: TeamDatabase, engine: Engine | None = None) -> None:
        self.raw = raw
        self.target = target
        self._engine = engine
        #: Inside :meth:`snapshot`: reads see one moment, and take no row locks.
        self.reading = False
        # json as text: exact (big integers, key order) and not parsed twice.
        raw.adapters.register_loader("json", psycopg.types.string.TextLoader)

    @property
    def engine(self) -> Engine:
        """The team store's engine."""
        assert self._engine is not None, "the sandbox's connection has no engine"
        return self._engine

    def execute(self, sql: str, params: Sequence[Any] | Mapping[str, Any] | None = None) -> _Result:
        """Run one statement; see the module's description."""
        native, names = to_native(sql)
        try:
            with psycopg.RawCursor(self.raw) as cur:
                cur.execute(native, _arguments(names, params) or None)
                if cur.description is None:
                    return _Result([(cur.rowcount,)], None)
                return _Result(cur.fetchall(), cur.description)
        except psycopg.Error as exc:
            raise self.error(exc) from exc

    def executemany(self, sql: str, rows: Iterable[Sequence[Any] | Mapping[str, Any]]) -> None:
        """Run one statement for each parameter row."""
        native, names = to_native(sql)
        try:
            with psycopg.RawCursor(self.raw) as cur:
                cur.executemany(native, [_arguments(names, row) for row in rows])
        except psycopg.Error as exc:
            raise self.error(exc) from exc

    def error(self, exc: psycopg.Error) -> StateError:
        """A psycopg error as the library's, naming the database (never the password)."""
        detail = self.target.hide_password(" ".join(str(exc).split()))
        if isinstance(exc, psycopg.errors.IdleInTransactionSessionTimeout):
            return DatabaseError(
                f"{self.target.shown}: the server ended the session, which had waited in a transaction for "
                f"this program longer than the server's idle_in_transaction_session_timeout ({detail}); nothing "
                "half-written was kept; try again (a busy machine or a slow network), or ask the server's "
                f"administrator to raise that timeout for user {self.target.user!r}"
            )
        lost = (psycopg.errors.AdminShutdown, psycopg.errors.CrashShutdown, psycopg.errors.CannotConnectNow)
        if isinstance(exc, psycopg.OperationalError) and (self.raw.closed or isinstance(exc, lost)):
            return DatabaseError(
                f"the connection to {self.target.shown} was lost ({detail}); nothing half-written was kept, try again"
            )
        if isinstance(exc, psycopg.errors.LockNotAvailable):  # lock_timeout: see .transactions
            waited = lock_timeout()
            return DatabaseLockedError(
                self.target.shown,
                waited,
                message=(
                    f"{self.target.shown}: another client is changing {DatabaseLockedError.SAME_SCENARIO}, or holds "
                    f"it and stopped answering (waited {waited:g} s); nothing was changed; try again later, or "
                    "raise HEALTHSIM_LOCK_TIMEOUT"
                ),
            )
        if isinstance(exc, (psycopg.errors.UntranslatableCharacter, psycopg.errors.CharacterNotInRepertoire)):
            encoding = self.raw.info.parameter_status("server_encoding") or "?"
            return DatabaseError(
                f"{self.target.shown}: the database is encoded {encoding}, which cannot hold a character "
                f"of this text ({detail}); nothing was changed; a team store needs a UTF8 database: create one "
                "(createdb -E UTF8 --locale C.UTF-8 -T template0 NAME), move the scenarios there (healthsim push) and use it"
            )
        if isinstance(exc, (psycopg.errors.DeadlockDetected, psycopg.errors.SerializationFailure)):
            return DatabaseError(
                f"{self.target.shown}: the operation collided with another client's change at the same moment "
                f"({detail}); nothing was changed; try again"
            )
        if isinstance(exc, psycopg.errors.QueryCanceled):  # a statement timeout, or cancelled by an admin
            return DatabaseError(
                f"{self.target.shown}: the server cancelled the operation ({detail}); nothing half-written "
                "was kept; try again, or ask the server's administrator about its statement timeout"
            )
        if isinstance(exc, psycopg.errors.InsufficientPrivilege):  # a role granted reads only, say
            return DatabaseError(
                f"{self.target.shown}: user {self.target.user!r} may not change this ({detail}); nothing was "
                "changed; ask the server's administrator for write access to the healthsim tables, or use a "
                "user who has it"
            )
        if isinstance(exc, psycopg.errors.ReadOnlySqlTransaction):  # a standby, default_transaction_read_only
            return DatabaseError(
                f"{self.target.shown} accepts only reads ({detail}); nothing was changed; this operation writes "
                "(a change; or a diff, a query or a read of an earlier version, which need temporary tables): use "
                "the team's primary server, or ask its administrator why this database is read-only"
            )
        if isinstance(exc, psycopg.errors.InvalidSchemaName):  # search_path names no schema that exists
            return DatabaseError(
                f"{self.target.shown}: the search_path of user {self.target.user!r} names no schema to keep the "
                f"healthsim tables in ({detail}); nothing was changed; ask the server's administrator to create "
                "the schema or fix the search_path (ALTER ROLE … SET search_path)"
            )
        if isinstance(exc, (psycopg.errors.DiskFull, psycopg.errors.OutOfMemory)):
            return DatabaseError(
                f"{self.target.shown}: the server ran out of room ({detail}); nothing half-written was kept; "
                "ask the server's administrator to free disk space or memory, then try again"
            )
        return DatabaseError(
            f"{self.target.shown}: PostgreSQL refused the operation ({type(exc).__name__}: {detail}); "
            "please report this as a bug, with what you were doing"
        )

    @contextmanager
    def snapshot(self) -> Iterator[PgConnection]:
        """Read as of one moment: a repeatable-read transaction, rolled back at the end.

        A reader makes several queries (the scenario, its counts, its rows chunk by chunk);
        on a server other clients write meanwhile, and without this an export could take
        the first rows of one version and the rest of the next. (Not ``READ ONLY``: an
        earlier version's rows are gathered in a temporary table.)
        """
        if self.in_transaction:
            yield self
            return
        self.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
        self.reading = True
        try:
            yield self
        finally:
            self.reading = False
            if not self.raw.closed:
                self.execute("ROLLBACK")

    @property
    def in_transaction(self) -> bool:
        """Whether a transaction is open (the library's ``BEGIN`` was sent)."""
        return self.raw.info.transaction_status != psycopg.pq.TransactionStatus.IDLE

    def close(self) -> None:
        self.raw.close()


@contextmanager
def open_connection(target: TeamDatabase, engine: Engine | None = None) -> Iterator[PgConnection]:
    """A connection to ``target`` for one operation, closed or kept afterwards (schema migrations
    are the caller's: :func:`healthsim.state.database.connect` applies them).

    Raises:
        ServerUnavailableError: the server cannot be reached, refused the login, or has
            no such database.
    """
    # The store's connections are kept for the next operation (see .idle); the sandbox's
    # (no engine) are its own, and closed.
    raw = idle.take(target.url) if engine is not None else None
    con = PgConnection(raw or target.connect(), target, engine)
    kept = False
    try:
        yield con
        kept = engine is not None and idle.give_back(target.url, con.raw)
    finally:
        if not kept:
            con.close()
