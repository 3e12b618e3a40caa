"""Bulk writes to the team store: Arrow chunks streamed into PostgreSQL with ``COPY``.

The shared encoder (:class:`~healthsim.state.bulk.ChunkEncoder`) turns entities into
Arrow tables, as on DuckDB. Each table then becomes the text of a ``COPY … FROM STDIN``
without a Python step per row: an in-memory DuckDB derives the entity ids with the same
SQL as the embedded store (UUIDv5 of type and id: PostgreSQL has no built-in SHA-1),
escapes the text for ``COPY`` and joins each row into one line, and psycopg sends the
lines' buffer as it is. Row ids are left to the table's sequence, so that clients
writing at once never take the same ones; ``COPY`` numbers the rows in the order sent.
"""

from __future__ import annotations

import datetime as _dt
import threading
import uuid
import weakref
from collections.abc import Sequence
from typing import TYPE_CHECKING

import pyarrow as pa

from ...._lazy import lazy_module
from ...id_sql import entity_rows_sql
from ..base import COMPACT_CHUNK
from ..duckdb.connection import DuckConnection
from ..duckdb.engine import local_duckdb
from .connection import PgConnection

if TYPE_CHECKING:  # imported on first use: see healthsim._lazy
    import psycopg
else:
    psycopg = lazy_module("psycopg")

__all__ = [
    "ANALYZE_MIN_ROWS",
    "analyze_written",
    "chunk_text",
    "copy_rows",
    "copy_text",
    "forget_written",
    "insert_text",
]

#: Tables whose statistics a large ``COPY`` makes stale (temporary tables of an edit are
#: gone at the end of its transaction).
ANALYZED_TABLES = frozenset({"scenario_entities"})
#: A committed transaction that copied at least this many rows into a table, and at least
#: a tenth of the rows the planner believes it holds, analyses the table afterwards.
ANALYZE_MIN_ROWS = 1000

# Rows copied per table by each connection's open transaction.
_written: weakref.WeakKeyDictionary[PgConnection, dict[str, int]] = weakref.WeakKeyDictionary()

_local = threading.local()


def _duck() -> DuckConnection:
    """This thread's in-memory DuckDB for the vectorised work (cheap to keep: no file)."""
    con = getattr(_local, "duck", None)
    if con is None:
        con = _local.duck = local_duckdb({"threads": 2})
    return con


def _escaped(sql: str, *, compact: bool = False) -> str:
    """SQL of a value as ``COPY``'s text format writes it (``\\N`` for NULL)."""
    text = f"CAST({sql} AS VARCHAR)"
    escapes = (("\\", "'\\\\'"),) if compact else (("\\", "'\\\\'"), ("\n", "'\\n'"), ("\r", "'\\r'"), ("\t", "'\\t'"))
    for char, code in escapes:
        source = "'\\'" if char == "\\" else f"chr({ord(char)})"
        text = f"replace({text}, {source}, {code})"
    return f"COALESCE({text}, '\\N')"


def copy_text(
    select: str,
    columns: list[str],
    params: dict[str, object] | None = None,
    *,
    plain: Sequence[str] = (),
    compact: Sequence[str] = (),
    **arrow: pa.Table,
) -> bytes:
    """The ``COPY`` text of ``columns`` of a DuckDB query over the Arrow tables given by
    name (registered for the query).

    Args:
        plain: columns that cannot hold a backslash, tab or line break (ids, numbers,
            times, booleans): written without escaping.
        compact: columns of compact JSON the library wrote: only backslashes escaped.
    """
    duck = _duck()
    for name, table in arrow.items():
        duck.register(name, table)
    try:
        parts = [
            f"COALESCE(CAST({c} AS VARCHAR), '\\N')" if c in plain else _escaped(c, compact=c in compact)
            for c in columns
        ]
        line = " || chr(9) || ".join(parts) + " || chr(10)"
        result = duck.sql(f"SELECT {line} AS line FROM ({select}) AS rows_", params=params or {}).to_arrow_table()
    finally:
        for name in arrow:
            duck.unregister(name)
    lines = result.column("line").combine_chunks()
    if len(lines) == 0:
        return b""
    if not pa.types.is_large_string(lines.type):
        lines = lines.cast(pa.large_string())
    _, offsets, data = lines.buffers()
    ends = memoryview(offsets).cast("q")
    start, stop = ends[lines.offset], ends[lines.offset + len(lines)]
    return bytes(memoryview(data)[start:stop])


def copy_rows(con: PgConnection, table: str, columns: list[str], text: bytes) -> int:
    """``COPY`` lines made by :func:`copy_text` into ``columns`` of ``table``; returns rows written."""
    if not text:
        return 0
    sql = f"COPY {table} ({', '.join(columns)}) FROM STDIN"
    try:
        with con.raw.cursor() as cur:
            with cur.copy(sql) as copy:
                copy.write(text)
            written = int(cur.rowcount)
    except psycopg.Error as exc:
        raise con.error(exc) from exc
    if table in ANALYZED_TABLES:
        counts = _written.setdefault(con, {})
        counts[table] = counts.get(table, 0) + written
        if not con.in_transaction:  # autocommit: the rows are in already
            analyze_written(con)
    return written


def forget_written(con: PgConnection) -> None:
    """Forget the rows counted for ``con``'s transaction (it was rolled back)."""
    _written.pop(con, None)


def analyze_written(con: PgConnection) -> list[str]:
    """After a commit: ``ANALYZE`` each table into which the transaction copied many rows.

    PostgreSQL's autovacuum analyses a grown table only after its next nap (a minute by
    default), so right after a push or a large save the planner knew nothing of the new
    rows: a join over them took 5.0-5.7 s instead of 0.10 s (issue 21, point 19). Small
    writes leave it to autovacuum. Outside the writing transaction, so that the write's
    locks are gone and its rows visible; a role that does not own the table gets a warning
    from the server, not an error, and any error here leaves the committed write alone.

    Returns:
        The tables analysed.
    """
    counts = _written.pop(con, None) or {}
    analysed = []
    for table, rows in sorted(counts.items()):
        if rows < ANALYZE_MIN_ROWS:
            continue
        try:
            known = con.raw.execute("SELECT reltuples FROM pg_class WHERE oid = to_regclass(%s)", [table]).fetchone()
            if known and known[0] is not None and known[0] > 0 and rows < known[0] / 10:
                continue  # a small part of a large table: its statistics still hold
            con.raw.execute(f"ANALYZE {table}")
            analysed.append(table)
        except psycopg.Error:
            if con.in_transaction:  # never leave a failed statement's transaction open
                con.raw.execute("ROLLBACK")
    return analysed


def chunk_text(chunk: pa.Table, scenario_id: uuid.UUID, now: _dt.datetime) -> bytes:
    """One encoder chunk as the ``COPY`` text of :func:`insert_text` (in the chunk's
    order: DuckDB keeps a plain projection of a registered table in order)."""
    compact = chunk.schema.metadata is not None and chunk.schema.metadata.get(COMPACT_CHUNK) == b"1"
    return copy_text(
        f"SELECT $sid AS scenario_id, entity_type, _uuid, entity_data, $now AS created_at FROM ({entity_rows_sql()}) "
        "AS c",
        ["scenario_id", "entity_type", "_uuid", "entity_data", "created_at"],
        {"sid": str(scenario_id), "now": now},
        plain=["scenario_id", "_uuid", "created_at"],
        compact=["entity_data"] if compact else [],
        _hs_chunk=chunk,
    )


def insert_text(con: PgConnection, text: bytes) -> None:
    """Insert rows made by :func:`chunk_text` into ``scenario_entities`` (ids from the
    sequence, in the rows' order)."""
    copy_rows(con, "scenario_entities", ["scenario_id", "entity_type", "entity_id", "entity_data", "created_at"], text)
