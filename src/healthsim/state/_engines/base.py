"""The engine interface: what the engine-neutral code may ask of a database engine.

Scenarios live in an embedded DuckDB file or in a PostgreSQL team store. The code that
saves, edits, versions, reads and diffs them is written once, in SQL both engines run
(positional ``GROUP BY``, ``= ANY(?)``, aliased subqueries, ``::TEXT`` casts, DuckDB's
``?``/``$name`` parameters), against :class:`Connection`. Where the engines differ it asks
the connection's :class:`Engine`: a named capability (:attr:`Engine.ids_from_sequence`,
:attr:`Engine.stages_large_writes`, :attr:`Engine.keeps_key_counts`,
:attr:`Engine.parses_while_streaming`) or a method named for its purpose (a SQL fragment, a
lock, a bulk insert). It never asks which engine it holds: no type checks, no engine names.

Each engine lives in its own folder (``duckdb/``, ``postgres/``) and is the only code that
imports its driver; ``healthsim.state._engines.engine_for`` picks one for a database.
The shape follows SQLAlchemy's dialects (capability flags) and ibis's backends (one base
class, a test that every engine has its signatures: ``tests/test_engines.py``).

Summaries, analytics formats and the SQL sandbox compute in DuckDB's SQL on both engines
(a team store's scenario is first copied into an in-memory DuckDB): that code takes an
:class:`AnalyticsConnection`.
"""

from __future__ import annotations

import datetime as _dt
import uuid
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

import pyarrow as pa

if TYPE_CHECKING:
    from .postgres.server import TeamDatabase

__all__ = ["AnalyticsConnection", "Connection", "Engine", "Rows"]

#: Parameters of a statement: positional (``?``) or by name (``$name``).
Params = Sequence[Any] | Mapping[str, Any] | None


class Rows(Protocol):
    """What a statement answers: its rows, read once."""

    def fetchall(self) -> list[tuple[Any, ...]]: ...

    def fetchone(self) -> tuple[Any, ...] | None: ...


class Connection(Protocol):
    """An open connection for one operation, as the engine-neutral code uses it."""

    @property
    def engine(self) -> Engine:
        """The engine this connection belongs to: ask it where the engines differ."""
        ...

    def execute(self, sql: str, params: Params = None) -> Rows:
        """Run one statement. One that returns no rows answers ``[(rowcount,)]``."""
        ...

    def executemany(self, sql: str, rows: Iterable[Sequence[Any] | Mapping[str, Any]]) -> Any:
        """Run one statement for each parameter row."""
        ...


class AnalyticsConnection(Connection, Protocol):
    """A connection that speaks DuckDB's SQL and Arrow (summaries, analytics formats,
    the SQL sandbox): a DuckDB file's own, or an in-memory copy of a team store's rows."""

    def sql(self, sql: str, *, params: Any = None) -> Any:
        """A lazy relation of the query (``.to_arrow_reader``, ``.to_arrow_table``)."""
        ...

    def cursor(self) -> AnalyticsConnection:
        """A second connection to the same database, for a worker thread."""
        ...

    def register(self, name: str, table: pa.Table) -> Any:
        """Make an Arrow table readable as view ``name``."""
        ...

    def unregister(self, name: str) -> Any: ...

    def interrupt(self) -> None:
        """Stop the running statement (from another thread)."""
        ...

    def close(self) -> None: ...


class Engine(ABC):
    """One database engine: its capabilities, and what it does its own way.

    Subclasses set the capability flags and implement every method; engine-neutral code
    reads the flags and calls the methods, and never tells engines apart otherwise.
    """

    #: The engine's name, as ``database_info()`` and messages say it.
    name: ClassVar[str]
    #: Row ids of new entities and tags come from the server's sequences (several writers
    #: at once); otherwise the writer numbers them itself, after the highest one.
    ids_from_sequence: ClassVar[bool]
    #: A large save commits its rows chunk by chunk under a staging id and publishes them
    #: at the end (an embedded file, held by one writer); otherwise one transaction.
    stages_large_writes: ClassVar[bool]
    #: Per-version key counts are kept beside the database and carried across edits.
    keeps_key_counts: ClassVar[bool]
    #: A scenario's rows are parsed as they arrive (a server streams them); otherwise they
    #: are fetched whole and parsed after the database is released to other processes.
    parses_while_streaming: ClassVar[bool]
    #: One connection's cursors (:meth:`worker_cursor`) run statements at the same time, in
    #: threads of one process (an embedded engine); otherwise one statement at a time.
    concurrent_cursors: ClassVar[bool]

    # ------------------------------------------------------------------ the database

    @abstractmethod
    def connect(
        self, database: Path | TeamDatabase, *, create: bool, read_only: bool, config: dict[str, Any] | None
    ) -> AbstractContextManager[Connection | None]:
        """Open ``database`` for one operation (see :func:`healthsim.state.database.connect`)."""

    @abstractmethod
    def shown(self, database: Path | TeamDatabase) -> str:
        """The database as messages name it (never with a password)."""

    @abstractmethod
    def same_database(self, a: Path | TeamDatabase, b: Path | TeamDatabase) -> bool:
        """Whether ``a`` and ``b`` (both of this engine) are one database."""

    @abstractmethod
    def cache_folder(self, database: Path | TeamDatabase) -> Path:
        """Where what is computed from the database's versions is kept."""

    @abstractmethod
    def describe(self, database: Path | TeamDatabase, con: Connection | None) -> dict[str, Any]:
        """The engine's part of ``database_info()``: ``database``, ``engine``, ``exists``,
        and with a connection ``size_bytes`` and ``schema_version`` (and the server's
        version for a server)."""

    @abstractmethod
    def schema_version(self, con: Connection) -> int:
        """The library's schema version recorded in the database (0: none yet)."""

    # ------------------------------------------------------------------ transactions, locks

    @abstractmethod
    def transaction(self, con: Connection) -> AbstractContextManager[Connection]:
        """The block as one transaction (see :func:`healthsim.state.transactions.transaction`)."""

    @abstractmethod
    def snapshot(self, con: Connection) -> AbstractContextManager[None]:
        """Reads in the block see one moment, whatever other writers do meanwhile."""

    @abstractmethod
    def lock_name(self, con: Connection, name: str) -> None:
        """Hold, until the transaction ends, the right to create or replace scenario ``name``."""

    @abstractmethod
    def lock_scenarios(self, con: Connection, scenario_ids: list[Any]) -> None:
        """Lock several scenarios' rows until the transaction ends, always in one order."""

    @abstractmethod
    def row_lock(self, con: Connection) -> str:
        """The clause (``" FOR UPDATE"`` or ``""``) that locks the ``scenarios`` rows a
        ``SELECT`` reads until the change's transaction ends."""

    # ------------------------------------------------------------------ the SQL sandbox

    @abstractmethod
    def check_query(self, sql: object) -> str:
        """``sql`` if it is one read-only statement by this engine's parser, else a
        :class:`~healthsim.state.errors.QueryError` saying why."""

    @abstractmethod
    def run_query(
        self, database: Path | TeamDatabase, sql: str, *, limit: int, max_bytes: int, timeout: float
    ) -> dict[str, Any]:
        """Run checked ``sql`` in the engine's sandbox: the query result of
        :func:`healthsim.state.query_scenarios` (arguments checked there)."""

    @abstractmethod
    def query_to_file(
        self, database: Path | TeamDatabase, sql: str, output: dict[str, str], *, timeout: float
    ) -> dict[str, Any]:
        """Write every row of checked ``sql`` to ``output["path"]`` in ``output["format"]``
        (see :func:`healthsim.state.query_to_file`)."""

    # ------------------------------------------------------------------ staged writes
    # Only engines that stage large writes (:attr:`stages_large_writes`) are asked these.

    @abstractmethod
    def begin_staging(self, con: Connection, staging_id: uuid.UUID, now: _dt.datetime) -> None:
        """Record (committed) a staging id before any of its rows is written: rows under
        it stay invisible, and are removed on the next open if the writer dies."""

    @abstractmethod
    def end_staging(self, con: Connection, staging_id: uuid.UUID) -> None:
        """Forget a staging id, inside the transaction that publishes its rows."""

    @abstractmethod
    def discard_staging(self, con: Connection, staging_id: uuid.UUID) -> None:
        """Remove a failed staged write's rows and its staging id."""

    # ------------------------------------------------------------------ work in threads
    # Only engines with :attr:`concurrent_cursors` are asked these.

    @abstractmethod
    def worker_cursor(self, con: Connection) -> AbstractContextManager[Connection]:
        """Another connection to ``con``'s database for a worker thread while the block
        runs, reading what ``con`` reads once committed (closed at the end)."""

    @abstractmethod
    def share_threads(self, con: Connection) -> AbstractContextManager[None]:
        """While one of several workers runs statements on ``con`` (a worker cursor): the
        engine's threads shared among them (the last one left gets them all again)."""

    @abstractmethod
    def shared_table(self, con: Connection, name: str) -> str | None:
        """A name, unique to this call, for a table made from ``name`` that every cursor of
        ``con`` reads (a temporary table is its own connection's); made with ``CREATE TABLE``
        and dropped by the caller. None when ``con`` has no such place."""

    # ------------------------------------------------------------------ SQL fragments

    @abstractmethod
    def create_temp(self, con: Connection, name: str) -> str:
        """The start of a statement making temporary table ``name`` anew."""

    @abstractmethod
    def has_scalar(self, column: str, field: str) -> str:
        """SQL: whether JSON ``column`` has a string or number at top-level ``field``."""

    @abstractmethod
    def matches(self, column: str, pattern: str) -> str:
        """SQL: whether the text of ``column`` matches regular expression ``pattern``."""

    @abstractmethod
    def contains_text(self, column: str, literal: str) -> str:
        """SQL: whether the text of ``column`` holds ``literal`` (SQL-quoted by the caller:
        ``'`` doubled) anywhere; a plain substring search, far cheaper than a pattern."""

    @abstractmethod
    def json_equal(self, a: str, b: str) -> str:
        """SQL: whether two JSON values are certainly the same JSON."""

    @abstractmethod
    def json_text_in(self, column: str, param: str) -> str:
        """SQL: whether JSON array of strings ``column`` holds one that, lowercased, is ``param``."""

    @abstractmethod
    def json_text(self, column: str, keys: Sequence[str]) -> str:
        """SQL: the string (or JSON text) at object keys ``keys`` of JSON ``column``."""

    @abstractmethod
    def json_fields(
        self, source: str, keep: str, paths: Sequence[Sequence[str]], keyed: Sequence[str] = (), few: bool = False
    ) -> str:
        """SQL of a subquery over the rows of ``source`` (a query with an ``entity_data``
        column) with the columns ``keep`` (comma-separated columns of ``source``) and, per
        path ``i`` of ``paths`` (object keys, plain names), ``k{i}``: the JSON kind of the
        value there (``string``, ``number``, ``boolean``, ``null``, ``object``, ``array``;
        NULL when there is none) and ``t{i}``: its text (a string unquoted, anything else
        as JSON text); per top-level key ``j`` of ``keyed``, ``e{j}``: not NULL when the
        entity has the key. Every entity is parsed once (DuckDB: twice, see its engine).
        ``few``: ``source`` has a few rows (a write's): SQL quicker to plan than to run
        is better."""

    @abstractmethod
    def top_level_keys(self, source: str) -> str:
        """SQL of the distinct top-level keys (column ``k``) of the JSON objects in the
        ``entity_data`` column of ``source``."""

    @abstractmethod
    def top_level_key_kinds(self, source: str) -> str:
        """SQL of the distinct top-level keys (column ``k``) of the JSON objects in the
        ``entity_data`` column of ``source``, each with whether any of them holds a string
        there (column ``s``)."""

    @abstractmethod
    def top_level_values(self, source: str, keep: str) -> str:
        """SQL of one row per top-level key of each JSON object in the ``entity_data``
        column of ``source`` (an add's few written rows: one parse for every key at once):
        the columns ``keep`` of its row, the key ``k``, its value's kind ``kind`` and text
        ``text`` (as :meth:`json_fields` gives them)."""

    @abstractmethod
    def instant(self, text: str) -> str:
        """SQL: the ISO 8601 date or datetime ``text`` (already checked to be one) as a
        ``TIMESTAMPTZ``, so that datetimes with different offsets compare in time order."""

    @abstractmethod
    def first_rows(self, order: str) -> str:
        """SQL to put before a ``LIMIT`` so that it keeps the first rows by ``order`` (the
        row id, ascending): nothing where a scan gives rows in their saved order and stops
        at the limit, else an ``ORDER BY``."""

    @abstractmethod
    def stored_entity_id(self, entity_type: str, text: str) -> str | None:
        """SQL: the stored id of the ``entity_type`` entity whose own id is the SQL text
        ``text`` (as :mod:`healthsim.state.id_sql` derives it), or None where the engine
        cannot compute it in SQL."""

    # ------------------------------------------------------------------ rows in and out

    @abstractmethod
    def next_entity_id(self, con: Connection) -> int:
        """The lowest row id a new entity row can still take."""

    @abstractmethod
    def insert_selected(self, con: Connection, table: str, columns: list[str], select: str, chunk: pa.Table) -> None:
        """Insert into ``table`` (``columns``) the rows of ``select``, a DuckDB query over
        the Arrow table ``chunk`` seen as ``_hs_chunk``."""

    @abstractmethod
    def encode_entity_chunk(self, chunk: pa.Table, scenario_id: uuid.UUID, now: _dt.datetime) -> Any:
        """An encoded chunk of entity rows (see :mod:`healthsim.state.bulk`) in the form
        :meth:`insert_entity_chunk` writes (done in the caller's thread)."""

    @abstractmethod
    def insert_entity_chunk(self, con: Connection, encoded: Any, scenario_id: uuid.UUID, now: _dt.datetime) -> None:
        """Insert one encoded chunk into ``scenario_entities`` (in the open transaction)."""

    @abstractmethod
    def fetch_arrow(self, con: Connection, sql: str, params: Params = None, *, texts: Sequence[str] = ()) -> pa.Table:
        """A query's rows as one Arrow table (``texts``: its text columns)."""

    @abstractmethod
    def arrow_batches(
        self, con: Connection, sql: str, params: Params = None, *, texts: Sequence[str] = ()
    ) -> Iterator[pa.Table]:
        """A query's rows as Arrow tables, in the query's order, as they arrive."""

    @abstractmethod
    def computing(self, con: Connection | None) -> AbstractContextManager[AnalyticsConnection]:
        """A DuckDB connection to compute in (ids, encodings): ``con`` itself when it is
        one, else a private in-memory one."""

    @abstractmethod
    def analysed(self, con: Connection, rows_sql: str) -> AbstractContextManager[AnalyticsConnection | None]:
        """A DuckDB connection whose ``scenario_entities`` holds the rows of ``rows_sql``
        (a copy, dropped afterwards), or None when ``con`` can be analysed as it is."""


#: Schema metadata key marking an encoder chunk whose texts are all compact JSON the
#: library wrote (no raw tab, CR or line feed): engines may write them with less escaping.
COMPACT_CHUNK = b"healthsim.compact"
