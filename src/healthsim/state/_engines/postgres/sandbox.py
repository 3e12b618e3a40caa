"""The query sandbox on the team store: untrusted SQL over PostgreSQL, read-only.

:func:`~healthsim.state.query_scenarios` and :func:`~healthsim.state.query_to_file` come
here when the database is a ``postgresql://`` URL, and answer with the same results as on
DuckDB. The SQL comes from people and AI assistants, so:

- before anything runs, the text must be one statement that starts with ``SELECT``,
  ``WITH``, ``VALUES`` or ``TABLE`` (comments and opening parentheses skipped);
- it runs as ``DECLARE … NO SCROLL CURSOR FOR <sql>``, which PostgreSQL accepts only for
  a query (no ``INSERT``, no data-modifying ``WITH``, no ``SELECT … INTO``), sent with the
  extended protocol, which refuses a second statement;
- in a transaction made read-only before the user's SQL runs (and it cannot be made
  read-write again once a query ran), with ``statement_timeout``, ``lock_timeout`` and
  ``idle_in_transaction_session_timeout`` set, and always rolled back;
- under the caller's own role: the server's permissions still apply, so a plain team
  member cannot read server files, and unknown functions (``dblink``) stay unknown.

The views are those of the DuckDB sandbox — ``entities`` (``scenario``, ``scenario_id``,
``entity_type``, ``entity_id``, ``data``) and one per entity type — created as temporary
views at the start of the same transaction, before it turns read-only (``CREATE`` is
refused after that), so that the rollback removes them and nothing is ever committed.
``data`` is ``json``, so ``data->>'gender'`` works as on DuckDB.

Rows are fetched from the cursor in batches sized by their bytes, turned into Arrow
record batches with one type per column (from PostgreSQL's type), and go through the
same row cap, byte cap and value cutting (:class:`~healthsim.state.sandbox_rules.Rows`) or the
same file writers as on DuckDB. Once the caps are reached, ``MOVE FORWARD ALL`` counts
the remaining rows on the server without sending them, so ``total_rows`` is exact.

What differs from DuckDB:

- there is no child process: the server does the work, and cuts every value longer than
  the byte cap allows before sending it (the query is wrapped by position, its columns
  described by the server first), so this process holds one bounded batch at a time;
  files get every value whole;
- the time limit is PostgreSQL's ``statement_timeout``, given again before each
  ``FETCH`` (what is left of it), so a query that lifts its own with ``set_config`` is
  still stopped; a cancel request at the deadline is the backstop;
- ``numeric`` values (``avg``, ``sum`` of ``bigint``) come back as exact decimal text, as
  DuckDB's decimals do, and intervals as ISO 8601 text (``P1M2D``), as DuckDB's: every
  output follows one rule on both engines (``docs/decisions.md``);
- the role's own rights bound what a query can do: besides reading, a plain role may
  still call functions that act on its own other sessions (``pg_cancel_backend``,
  ``pg_terminate_backend``) or take advisory locks until the query ends.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import psycopg
import pyarrow as pa
from psycopg import errors as pg_errors
from psycopg.postgres import types as pg_types
from psycopg.types.string import TextLoader

from ...errors import QueryError, StateError
from ...sandbox_rules import (
    CONVERT_BYTES,
    KILL_GRACE_SECONDS,
    NOT_ONE_SELECT,
    WRITE_BATCH_ROWS,
    OutOfTime,
    Rows,
    cut_marker,
    failure_message,
    json_text,
    json_value,
    may_name_a_view,
    not_select_message,
    statement_count_message,
    timeout_message,
    unique_names,
    value_chars,
    write_batches,
)
from .connection import PgConnection, open_connection
from .server import TeamDatabase

__all__ = ["check_statement", "run_query", "run_to_file"]

#: First words of the statements that may run (all are queries ``DECLARE`` accepts).
READ_KEYWORDS = ("SELECT", "WITH", "VALUES", "TABLE")
#: The cursor the user's query runs in (no user SQL can name it: it is the only statement).
_CURSOR = "healthsim_query"
#: Rows asked for by the first ``FETCH``; later ones are sized from the bytes per row seen.
_FIRST_FETCH = 256
#: Most rows in one ``FETCH`` of ``query_scenarios`` (about ``CONVERT_BYTES`` otherwise).
_MAX_FETCH = 10_000
#: Bytes of Arrow data aimed at per ``FETCH`` when writing a file.
_WRITE_FETCH_BYTES = 16 << 20
#: ``idle_in_transaction_session_timeout`` is the time limit plus this: a client that hangs
#: between two fetches does not keep its snapshot open on the server for long.
_IDLE_GRACE_SECONDS = 10.0
#: PostgreSQL truncates longer names (NAMEDATALEN - 1 bytes): such a view would be misnamed.
_MAX_NAME_BYTES = 63
#: A dollar-quote opener: ``$$`` or ``$tag$`` (a tag does not start with a digit: ``$1`` is a parameter).
_DOLLAR_TAG = re.compile(r"\$(?:[^\W\d]\w*)?\$")
_WORD = re.compile(r"[^\W\d]\w*")

# PostgreSQL types with an Arrow type of their own; every other type becomes text.
_ARROW_TYPES: dict[str, pa.DataType] = {
    "bool": pa.bool_(),
    "int2": pa.int16(),
    "int4": pa.int32(),
    "int8": pa.int64(),
    "oid": pa.int64(),
    # float4 in 32 bits, as DuckDB's REAL: the rule's conversion writes its shortest text (0.1).
    "float4": pa.float32(),
    "float8": pa.float64(),
    "date": pa.date32(),
    "time": pa.time64("us"),
    "timestamp": pa.timestamp("us"),
    "timestamptz": pa.timestamp("us", tz="UTC"),
    "bytea": pa.large_binary(),
}
_JSON_TYPES = ("json", "jsonb")
#: Types read as PostgreSQL's own text of them: json as stored (a string column, as on
#: DuckDB), and interval exactly (psycopg's timedelta counts a month as 30 days).
_TEXT_TYPES = (*_JSON_TYPES, "interval")


# --- the statement ----------------------------------------------------------------------------


def _ident_char(char: str) -> bool:
    return char.isalnum() or char in "_$"


def split_statements(sql: str) -> list[str]:
    """The statements of ``sql``, split at each ``;`` outside quotes and comments, with the
    comments replaced by a space; statements that are only blanks are left out.

    Follows PostgreSQL's lexer where it matters for splitting: ``'…'`` (``''`` inside),
    ``E'…'`` (backslash escapes too), ``"…"``, ``$tag$…$tag$``, ``--`` and nested
    ``/* */`` comments. Unterminated quotes run to the end (the server then says why).
    """
    parts: list[str] = []
    current: list[str] = []
    i, n = 0, len(sql)
    while i < n:
        char = sql[i]
        if char == "-" and sql.startswith("--", i):
            end = sql.find("\n", i)
            i = n if end < 0 else end
            current.append(" ")
        elif char == "/" and sql.startswith("/*", i):
            depth, j = 1, i + 2
            while j < n and depth:
                if sql.startswith("/*", j):
                    depth, j = depth + 1, j + 2
                elif sql.startswith("*/", j):
                    depth, j = depth - 1, j + 2
                else:
                    j += 1
            i = j
            current.append(" ")
        elif char in "'\"":
            backslashes = char == "'" and i > 0 and sql[i - 1] in "eE" and not (i > 1 and _ident_char(sql[i - 2]))
            j = i + 1
            while j < n:
                if backslashes and sql[j] == "\\":
                    j += 2
                    continue
                if sql[j] == char:
                    if j + 1 < n and sql[j + 1] == char:
                        j += 2
                        continue
                    break
                j += 1
            current.append(sql[i : j + 1])
            i = j + 1
        elif char == "$" and not (i > 0 and _ident_char(sql[i - 1])) and (tag := _DOLLAR_TAG.match(sql, i)):
            end = sql.find(tag.group(0), tag.end())
            j = n if end < 0 else end + len(tag.group(0))
            current.append(sql[i:j])
            i = j
        elif char == ";":
            parts.append("".join(current))
            current = []
            i += 1
        else:
            current.append(char)
            i += 1
    parts.append("".join(current))
    return [part.strip() for part in parts if part.strip()]


def check_statement(sql: object) -> str:
    """``sql`` if it is one statement that reads (see :data:`READ_KEYWORDS`).

    A first line of defence with clear messages; PostgreSQL itself then refuses anything
    ``DECLARE`` does not take, and the transaction is read-only whatever runs.

    Raises:
        QueryError: not text, empty, several statements, or not a query; the message
            says which (in the DuckDB sandbox's words).
    """
    if not isinstance(sql, str) or not sql.strip():
        raise QueryError(NOT_ONE_SELECT)
    if "\x00" in sql:
        raise QueryError("the SQL contains a NUL character, which PostgreSQL does not take; remove it")
    statements = split_statements(sql)
    if not statements:  # only comments
        raise QueryError(NOT_ONE_SELECT)
    if len(statements) != 1:
        raise QueryError(statement_count_message(len(statements)))
    word = _WORD.match(statements[0].lstrip("( \t\r\n\f\v"))
    kind = word.group(0).upper() if word else ""
    if kind not in READ_KEYWORDS:
        raise QueryError(not_select_message(kind or repr(statements[0][:20])))
    return sql


# --- rows to Arrow ----------------------------------------------------------------------------


def _json_text(value: Any) -> str:
    """``value`` as compact JSON text."""
    return json_text(json_value(value))


def _text(value: Any) -> str:
    """A value of a type without an Arrow type of its own, as text."""
    if isinstance(value, str):
        return value
    plain = json_value(value)  # uuid, Decimal, inet, ranges…: their text
    return plain if isinstance(plain, str) else _json_text(value)  # records (tuples): JSON


@dataclass(frozen=True)
class _Column:
    """How one result column becomes Arrow."""

    name: str
    type: pa.DataType
    convert: Callable[[Any], Any] | None = None  # for each value that is not NULL
    json: bool = False  # json or jsonb text


@dataclass(frozen=True)
class _Field:
    """A result column as the server describes it before running the query."""

    name: str
    type_code: int


#: Types whose every value is a few bytes: never cut, fetched as they are.
_SMALL_TYPES = frozenset(
    {"bool", "int2", "int4", "int8", "oid", "float4", "float8", "date", "time", "timetz", "timestamp"}
    | {"timestamptz", "uuid", "interval", "money", "inet", "cidr", "macaddr"}
)
#: Types cut to their first characters, as DuckDB's strings are (numeric: its text).
_CUT_AS_TEXT = frozenset({"text", "varchar", "bpchar", "name", "json", "jsonb", "xml", "numeric", "citext"})


@dataclass(frozen=True)
class _Guard:
    """How one column of ``query_scenarios`` is fetched so that no value reaches this
    process longer than the byte cap needs: ``kind`` is ``small`` (as it is), ``text``,
    ``bytes`` (cut on the server, with the full size) or ``whole`` (an array, a record…:
    replaced by a note when too large); ``at`` is its first column in the fetched rows."""

    kind: str
    at: int


def _guarded_sql(sql: str, fields: list[_Field], chars: int) -> tuple[str, list[_Guard]]:
    """``sql`` wrapped so that the server cuts every value longer than ``chars`` (bytes:
    half as many) and sends its full size beside it: a query of 16 values of 50 MB sends
    16 short values, not 800 MB (issue 21, point 19).

    The columns of the user's query are taken by position (``AS q(c0, c1, …)``), so that
    duplicate or odd names cannot pick the wrong values; the statement is the one
    :func:`split_statements` found (comments and a trailing ``;`` gone).
    """
    (statement,) = split_statements(sql)
    parts: list[str] = []
    guards: list[_Guard] = []
    for index, field in enumerate(fields):
        info = pg_types.get(field.type_code)
        name = info.name if info is not None else ""
        is_array = info is not None and info.array_oid == field.type_code and info.oid != field.type_code
        c = f"c{index}"
        if not is_array and name in _SMALL_TYPES:
            guards.append(_Guard("small", len(parts)))
            parts.append(c)
            continue
        if not is_array and name in _CUT_AS_TEXT:
            kind, text, too_long = "text", f"{c}::text", f"char_length({c}::text) > {chars}"
            cut, size = f"left({text}, {chars})", f"octet_length({text})"
        elif not is_array and name == "bytea":
            kind, too_long = "bytes", f"octet_length({c}) > {chars // 2}"
            cut, size = f"substring({c} from 1 for {chars // 2})", f"octet_length({c})"
        else:
            kind, too_long, cut, size = "whole", f"pg_column_size({c}) > {chars}", "NULL", f"pg_column_size({c})"
        guards.append(_Guard(kind, len(parts)))
        parts += [
            f"CASE WHEN {too_long} THEN NULL ELSE {c} END",
            f"CASE WHEN {too_long} THEN {cut} END",
            f"CASE WHEN {too_long} THEN {size} END",
        ]
    names = ", ".join(f"c{i}" for i in range(len(fields)))
    return f"SELECT {', '.join(parts)} FROM ({statement}\n) AS healthsim_q({names})", guards


def _unguard(
    columns: list[_Column], guards: list[_Guard], rows: list[tuple[Any, ...]]
) -> tuple[list[tuple[Any, ...]], list[str | None]]:
    """Fetched guarded rows as the query's own rows (a cut value null) and, per row, the
    JSON text of ``{column index: cut value with its marker}`` or ``None``."""
    plain: list[tuple[Any, ...]] = []
    patches: list[str | None] = []
    for row in rows:
        values: list[Any] = []
        patch: dict[str, str] = {}
        for index, (guard, column) in enumerate(zip(guards, columns, strict=True)):
            values.append(row[guard.at])
            if guard.kind == "small" or row[guard.at + 2] is None:
                continue
            cut, size = row[guard.at + 1], int(row[guard.at + 2])
            if guard.kind == "text":
                patch[str(index)] = str(cut) + cut_marker(size)
            elif guard.kind == "bytes":
                patch[str(index)] = bytes(cut).hex() + cut_marker(size)
            else:
                patch[str(index)] = f"[cut: a {column.type} value of {size:,} bytes]"
        plain.append(tuple(values))
        patches.append(json.dumps(patch, ensure_ascii=False) if patch else None)
    return plain, patches


def _array_of(element: Callable[[Any], Any] | None) -> Callable[[Any], Any]:
    def convert(values: Any) -> list[Any]:
        if any(isinstance(v, list) for v in values):
            # Several dimensions: Arrow's list type has one; the column falls back to JSON text.
            raise ValueError("multi-dimensional array")
        if element is None:
            return list(values)
        return [None if v is None else element(v) for v in values]

    return convert


def _columns(description: Sequence[Any]) -> list[_Column]:
    """The Arrow form of each column of a result, from PostgreSQL's type of it.

    One type per column for the whole result (not inferred batch by batch), so that the
    batches of a file share one schema; the file writers then apply the rule of every
    output (:func:`~healthsim.state.sandbox_rules.write_batches`).
    """
    columns = []
    for column in description:
        info = pg_types.get(column.type_code)
        name = info.name if info is not None else ""
        is_array = info is not None and info.array_oid == column.type_code and info.oid != column.type_code
        if is_array:
            element = _ARROW_TYPES.get(name)
            convert = _array_of(None if element is not None else _text)
            columns.append(_Column(column.name, pa.large_list(element or pa.large_string()), convert))
        elif name in _ARROW_TYPES:
            columns.append(_Column(column.name, _ARROW_TYPES[name]))
        elif name == "numeric" and 0 < (getattr(column, "precision", None) or 0) <= 38:
            # A declared precision (numeric(5,2)): a decimal, as DuckDB's DECIMAL(5,2) is.
            columns.append(_Column(column.name, pa.decimal128(column.precision, column.scale or 0)))
        else:
            columns.append(_Column(column.name, pa.large_string(), _text, json=name in _JSON_TYPES))
    return columns


def _batch(columns: list[_Column], rows: list[tuple[Any, ...]]) -> pa.RecordBatch:
    """Fetched rows as one Arrow record batch (duplicate column names are kept)."""
    arrays = []
    for index, column in enumerate(columns):
        values = [row[index] for row in rows]
        try:
            if column.convert is not None:
                values = [None if v is None else column.convert(v) for v in values]
            arrays.append(pa.array(values, type=column.type))
        except (pa.ArrowException, TypeError, ValueError, OverflowError):
            # A value Arrow cannot hold in the column's type (a multi-dimensional array):
            # this batch's column as JSON text instead.
            raw = [row[index] for row in rows]
            arrays.append(pa.array([None if v is None else _json_text(v) for v in raw], type=pa.large_string()))
    return pa.RecordBatch.from_arrays(arrays, names=[column.name for column in columns])


# --- the session ------------------------------------------------------------------------------


def _milliseconds(seconds: float) -> int:
    return max(1, int(seconds * 1000))


class _Session:
    """One sandboxed transaction on a connection of its own, the user's query in a cursor."""

    def __init__(self, con: PgConnection, timeout: float) -> None:
        self.con = con
        self.timeout = timeout
        self.started = time.monotonic()
        self.deadline = self.started + timeout
        self.views: list[str] = []
        self.in_query = False  # errors from here on are the user's query's
        self.cur = psycopg.RawCursor(con.raw)
        for name in _TEXT_TYPES:
            self.cur.adapters.register_loader(name, TextLoader)

    def _limit(self) -> None:
        """Give the next statement what is left of the time limit (a query's own
        ``set_config('statement_timeout', …)`` then lasts one statement at most)."""
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            raise OutOfTime
        self.cur.execute(f"SET LOCAL statement_timeout = {_milliseconds(remaining)}")

    def open(self, sql: str, shape: Callable[[list[_Field]], str] | None = None) -> None:
        """Begin, create the views, turn read-only and declare the cursor over ``sql``, or
        over ``shape(the columns of sql)`` (described by the server, not run)."""
        cur = self.cur
        cur.execute("BEGIN")
        cur.execute(f"SET LOCAL statement_timeout = {_milliseconds(self.timeout)}")
        cur.execute(f"SET LOCAL lock_timeout = {_milliseconds(self.timeout)}")
        idle = _milliseconds(self.timeout + _IDLE_GRACE_SECONDS)
        cur.execute(f"SET LOCAL idle_in_transaction_session_timeout = {idle}")
        # Intervals as ISO 8601 text, the rule of every output (DuckDB's are written alike).
        cur.execute("SET LOCAL intervalstyle = 'iso_8601'")
        cur.execute("SELECT to_regclass('scenarios') IS NOT NULL AND to_regclass('scenario_entities') IS NOT NULL")
        found = cur.fetchone()
        if not (found and found[0]):
            raise QueryError(f"there is no scenario in {self.con.target.shown} yet; save or import a scenario first")
        self.views = self._create_views()
        # From here no statement may write: a later SET TRANSACTION READ WRITE is refused
        # once a query has run ("must be set before any query").
        cur.execute("SET TRANSACTION READ ONLY")
        self.in_query = True
        self._limit()
        if shape is not None:
            sql = shape(self.describe(sql))
        # binary=True makes psycopg use the extended protocol, which refuses a second
        # statement; DECLARE takes a query and nothing else.
        cur.execute(f"DECLARE {_CURSOR} NO SCROLL CURSOR FOR {sql}", binary=True)

    def _create_views(self) -> list[str]:
        """The DuckDB sandbox's views, as temporary views of this transaction."""
        cur = self.cur
        cur.execute("SELECT has_database_privilege(current_database(), 'TEMP')")
        allowed = cur.fetchone()
        if not (allowed and allowed[0]):
            return []  # a role without TEMP still queries the tables themselves
        cur.execute(
            "CREATE TEMP VIEW entities AS SELECT s.name AS scenario, e.scenario_id, e.entity_type, e.entity_id, "
            "e.entity_data AS data FROM scenario_entities e JOIN scenarios s ON s.scenario_id = e.scenario_id"
        )
        views = ["entities"]
        # The distinct types by hopping along the (scenario_id, entity_type, id) index: a
        # few index probes per scenario and type instead of reading every entity row.
        cur.execute(
            """WITH RECURSIVE hop AS (
                (SELECT scenario_id, entity_type FROM scenario_entities ORDER BY scenario_id, entity_type LIMIT 1)
                UNION ALL
                SELECT next.scenario_id, next.entity_type FROM hop, LATERAL (
                    SELECT e.scenario_id, e.entity_type FROM scenario_entities e
                    WHERE (e.scenario_id, e.entity_type) > (hop.scenario_id, hop.entity_type)
                    ORDER BY e.scenario_id, e.entity_type LIMIT 1
                ) AS next
            )
            SELECT DISTINCT entity_type FROM hop"""
        )
        candidates = sorted(
            t for (t,) in cur.fetchall() if may_name_a_view(t) and len(t.encode()) <= _MAX_NAME_BYTES and t not in views
        )
        if not candidates:
            return views
        # A name that is already a table, view or catalog relation keeps its meaning (a
        # temporary view would hide it: temporary names are looked up first).
        cur.execute("SELECT t FROM unnest($1::text[]) AS t WHERE to_regclass(quote_ident(t)) IS NULL", [candidates])
        free = {t for (t,) in cur.fetchall()}
        for entity_type in candidates:
            if entity_type in free:
                # The name is an identifier (letters, digits, _): safe inside quotes.
                cur.execute(
                    f'CREATE TEMP VIEW "{entity_type}" AS SELECT scenario, scenario_id, entity_id, data '
                    f"FROM entities WHERE entity_type = '{entity_type}'"
                )
                views.append(entity_type)
        return views

    def describe(self, sql: str) -> list[_Field]:
        """The columns ``sql`` would give, from the server's parse of it (nothing runs).

        An unnamed prepared statement (the extended protocol: one statement only), which
        the next statement replaces; its errors are the query's, as DECLARE's would be."""
        pgconn = self.con.raw.pgconn
        result = pgconn.prepare(b"", sql.encode("utf-8"))
        if result.status != psycopg.pq.ExecStatus.COMMAND_OK:
            raise pg_errors.error_from_result(result, encoding="utf-8")
        described = pgconn.describe_prepared(b"")
        if described.status != psycopg.pq.ExecStatus.COMMAND_OK:
            raise pg_errors.error_from_result(described, encoding="utf-8")
        return [
            _Field((described.fname(i) or b"").decode("utf-8", "replace"), described.ftype(i))
            for i in range(described.nfields)
        ]

    def fetch(self, count: int) -> tuple[Sequence[Any], list[tuple[Any, ...]]]:
        """The next ``count`` rows at most, and the result's column description."""
        self._limit()
        self.cur.execute(f"FETCH FORWARD {int(count)} FROM {_CURSOR}")
        rows = self.cur.fetchall()
        return self.cur.description or [], rows

    def count_rest(self) -> int:
        """Skip the rows left in the cursor on the server (nothing is sent): how many."""
        self._limit()
        self.cur.execute(f"MOVE FORWARD ALL IN {_CURSOR}")
        return max(0, self.cur.rowcount)

    def elapsed(self) -> float:
        return round(time.monotonic() - self.started, 3)

    def close(self) -> None:
        """Roll back: the views go with the transaction, and nothing was written."""
        try:
            self.cur.close()
            if not self.con.raw.closed and self.con.in_transaction:
                self.con.raw.execute("ROLLBACK")
        except psycopg.Error:
            pass  # a broken connection: closing it (next) ends the transaction on the server


def _error(session: _Session, exc: psycopg.Error) -> StateError:
    """The library's error for a psycopg error in the sandbox (never naming the URL)."""
    if isinstance(exc, (pg_errors.QueryCanceled, pg_errors.LockNotAvailable)):
        return QueryError(timeout_message(session.timeout))
    if session.con.raw.closed or not session.in_query:
        return session.con.error(exc)  # the connection was lost, or the sandbox's own SQL failed
    lines = str(exc).strip().splitlines()
    message = lines[0] if lines else type(exc).__name__
    if isinstance(exc, pg_errors.ReadOnlySqlTransaction):
        message += " (the query sandbox only reads)"
        return QueryError(f"the query failed: {message}")
    return QueryError(failure_message(str(exc), session.views))  # a missing table: the views


def _cancel(raw: psycopg.Connection) -> None:
    """Ask the server to cancel what ``raw`` runs (from the timer's thread: never raises)."""
    try:
        raw.cancel_safe(timeout=5)
    except Exception:  # closed meanwhile, or the server is gone: nothing left to stop
        pass


@contextmanager
def _sandbox(
    target: TeamDatabase, sql: str, timeout: float, shape: Callable[[list[_Field]], str] | None = None
) -> Iterator[_Session]:
    """A session with the cursor declared, its errors turned into the library's, and
    PostgreSQL asked to cancel the statement should it outlive the time limit."""
    with open_connection(target) as con:
        session = _Session(con, timeout)
        # statement_timeout stops the server's work; this is the backstop, as the DuckDB
        # sandbox's kill is: a cancel request at the deadline plus the grace period.
        timer = threading.Timer(timeout + KILL_GRACE_SECONDS, _cancel, args=(con.raw,))
        timer.daemon = True
        timer.start()
        try:
            session.open(sql, shape)
            yield session
        except OutOfTime:
            raise QueryError(timeout_message(timeout)) from None
        except psycopg.Error as exc:
            raise _error(session, exc) from None
        finally:
            timer.cancel()
            session.close()


def _next_fetch(batch: pa.RecordBatch, target_bytes: int, most: int) -> int:
    """Rows to ask for next: about ``target_bytes`` of Arrow data at the bytes per row of
    ``batch``, whatever the width of the rows, and at most ``most``."""
    per_row = max(1.0, batch.nbytes / max(1, batch.num_rows))
    return max(1, min(most, int(target_bytes // per_row)))


#: Arrow bytes a ``query_scenarios`` fetch may take at most, counting each guarded value
#: at its longest (two bytes a character): with the server's cuts, this bounds the memory
#: of this process whatever the rows hold.
_FETCH_BOUND = 4 * CONVERT_BYTES


def run_query(target: TeamDatabase, sql: str, *, limit: int, max_bytes: int, timeout: float) -> dict[str, Any]:
    """:func:`~healthsim.state.query_scenarios` on the team store (arguments checked there).

    Values longer than the byte cap allows are cut on the server (:func:`_guarded_sql`),
    and each fetch is sized for its rows at their longest, so this process holds a bounded
    amount whatever the query returns.

    Returns:
        The same dict as on DuckDB: ``columns``, ``rows``, ``row_count``, ``total_rows``,
        ``truncated``, ``truncated_reason``, ``cut_values``, ``result_bytes``,
        ``elapsed_seconds``, ``views``.
    """
    shaped: dict[str, Any] = {}

    def shape(fields: list[_Field]) -> str:
        shaped["fields"] = fields
        if not fields:
            return sql
        chars = value_chars(len(fields), max_bytes)
        wrapped, shaped["guards"] = _guarded_sql(sql, fields, chars)
        longest = sum(16 if g.kind == "small" else 2 * chars for g in shaped["guards"])
        shaped["most"] = max(1, _FETCH_BOUND // max(1, longest))
        return wrapped

    with _sandbox(target, sql, timeout, shape) as session:
        fields: list[_Field] = shaped["fields"]
        guards: list[_Guard] = shaped.get("guards", [])
        most = min(limit, shaped.get("most", _MAX_FETCH))
        columns = _columns(fields)
        rows = Rows(len(columns), limit=limit, max_bytes=max_bytes, deadline=session.deadline, patched=True)
        asked = min(most, _FIRST_FETCH)
        _, fetched = session.fetch(asked)
        while fetched:
            plain, patches = _unguard(columns, guards, fetched) if guards else (fetched, [None] * len(fetched))
            batch = _batch(columns, plain)
            batch = batch.append_column("healthsim_cuts", pa.array(patches, type=pa.large_string()))
            rows.add(batch)
            if rows.stopped_by is not None:  # a cap is reached: count the rest on the server
                rows.total += session.count_rest()
                break
            if len(fetched) < asked:  # the cursor is at its end
                break
            asked = _next_fetch(batch, CONVERT_BYTES, min(_MAX_FETCH, most, limit - len(rows.rows)))
            _, fetched = session.fetch(asked)
        return rows.result(unique_names([column.name for column in columns]), session.elapsed(), session.views)


def run_to_file(target: TeamDatabase, sql: str, output: dict[str, str], *, timeout: float) -> dict[str, Any]:
    """:func:`~healthsim.state.query_to_file` on the team store: every row of ``sql`` to
    ``output["path"]`` (``output["format"]``: csv, parquet or ndjson), streamed in
    batches through the DuckDB sandbox's writers. The caller makes the file appear whole.

    Returns:
        ``{"path", "format", "columns", "rows_written", "elapsed_seconds"}``.
    """
    fmt = output["format"]
    with _sandbox(target, sql, timeout) as session:
        asked = _FIRST_FETCH
        description, first = session.fetch(asked)
        columns = _columns(description)
        schema = _batch(columns, []).schema
        kinds = ["json" if column.json else None for column in columns]

        def batches() -> Iterator[pa.RecordBatch]:
            fetched, asked_now = first, asked
            while fetched:
                batch = _batch(columns, fetched)
                if fmt == "parquet" and batch.schema != schema:
                    name = next(a.name for a, b in zip(schema, batch.schema, strict=True) if a.type != b.type)
                    raise QueryError(
                        f"cannot write this result as parquet: column {name!r} holds values its type cannot "
                        "(arrays of several dimensions, a numeric NaN); cast it to text (::text), or write csv "
                        "or ndjson"
                    )
                yield batch
                if len(fetched) < asked_now:  # the cursor is at its end
                    return
                asked_now = _next_fetch(batch, _WRITE_FETCH_BYTES, WRITE_BATCH_ROWS)
                _, fetched = session.fetch(asked_now)

        written = write_batches(output, schema, batches(), session.deadline, kinds)
        return {
            "path": output["path"],
            "format": fmt,
            "columns": unique_names([column.name for column in columns]),
            "rows_written": written,
            "elapsed_seconds": session.elapsed(),
        }
