"""Bulk reads from the team store: query results as Arrow tables through ``COPY … TO STDOUT``.

Loading is bound by moving and parsing text. A plain cursor makes a Python object per
value before Arrow sees it; ``COPY``'s text format instead arrives as a few large
buffers, which Arrow's CSV reader splits into columns in C++ (tab-separated, no quoting:
``COPY`` escapes tabs, newlines and backslashes inside values), and three vectorised
replacements undo the escapes. The shared code then parses entities from Arrow exactly
as it does for DuckDB.
"""

from __future__ import annotations

import datetime as _dt
import queue
import threading
import uuid
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from ...._lazy import lazy_module
from .connection import PgConnection, to_native

if TYPE_CHECKING:  # imported on first use: see healthsim._lazy
    import psycopg
    import pyarrow.compute as pc
    import pyarrow.csv as pa_csv
else:
    psycopg = lazy_module("psycopg")
    pc = lazy_module("pyarrow.compute")
    pa_csv = lazy_module("pyarrow.csv")

__all__ = ["copy_batches", "fetch_arrow", "literal"]

# PostgreSQL text can never hold NUL, so it marks an escaped backslash while the other
# escapes are undone.
_MARK = "\x00"


def literal(value: Any) -> str:
    """``value`` as an SQL literal (``COPY`` takes no parameters). Only the types the
    library passes are accepted."""
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, uuid.UUID):
        return f"'{value}'::uuid"
    if isinstance(value, _dt.datetime):
        return f"'{value.isoformat(sep=' ')}'::timestamp"
    if isinstance(value, str):
        if "\x00" in value:
            raise ValueError("a NUL character cannot be sent to PostgreSQL")
        return "'" + value.replace("'", "''") + "'"
    raise TypeError(f"no SQL literal for {type(value).__name__}")


def _inline(sql: str, params: Sequence[Any] | Mapping[str, Any] | None) -> str:
    native, names = to_native(sql)
    if not names:
        return native
    values = [params[n] for n in names] if isinstance(params, Mapping) else list(params or [])
    # Highest first, so that $1 does not match the start of $10.
    for position in range(len(values), 0, -1):
        native = native.replace(f"${position}", literal(values[position - 1]))
    return native


def _unescape(column: pa.Array) -> pa.Array:
    column = pc.replace_substring(column, "\\\\", _MARK)
    for escaped, char in (("\\n", "\n"), ("\\r", "\r"), ("\\t", "\t"), ("\\b", "\b"), ("\\f", "\f"), ("\\v", "\v")):
        column = pc.replace_substring(column, escaped, char)
    return pc.replace_substring(column, _MARK, "\\")


def _parse(text: bytes, names: list[str], texts: Sequence[str]) -> pa.Table:
    """Rows of ``COPY``'s text format (whole lines) as a table; text columns unescaped."""
    table = pa_csv.read_csv(
        pa.BufferReader(text),
        read_options=pa_csv.ReadOptions(column_names=names, block_size=max(1 << 20, len(text) + 1)),
        parse_options=pa_csv.ParseOptions(delimiter="\t", quote_char=False, escape_char=False),
        convert_options=pa_csv.ConvertOptions(
            column_types={n: pa.large_string() for n in texts},
            null_values=["\\N"],
            strings_can_be_null=True,
            true_values=["t"],
            false_values=["f"],
        ),
    )
    if b"\\" not in text:  # usual: no escape anywhere (checked on the bytes, at C speed)
        return table
    for name in texts:
        index = table.schema.get_field_index(name)
        table = table.set_column(index, name, _unescape(table.column(name).combine_chunks()))
    return table


def copy_batches(
    con: PgConnection,
    sql: str,
    params: Sequence[Any] | Mapping[str, Any] | None = None,
    *,
    texts: Sequence[str] = (),
    block_size: int = 16 << 20,
) -> tuple[list[str], Iterator[pa.Table]]:
    """The column names of a query, and its rows as Arrow tables of about ``block_size``
    bytes of text each, streamed (memory stays bounded).

    libpq hands ``COPY``'s output over one row at a time: rows are gathered into blocks
    of whole lines, and each block is split into columns by Arrow in one call.

    Args:
        texts: the columns holding text (the others are integers or booleans), read as
            strings and unescaped.
    """
    query = _inline(sql, params)
    try:
        with con.raw.cursor() as cur:
            cur.execute(f"SELECT * FROM ({query}) AS q LIMIT 0")
            names = [d.name for d in cur.description or []]
    except psycopg.Error as exc:
        raise con.error(exc) from exc

    def read(blocks: queue.Queue[Any], stop: threading.Event) -> None:
        """In a thread of its own: whole lines, gathered into blocks (then None, or the error)."""
        try:
            with con.raw.cursor() as cur, cur.copy(f"COPY ({query}) TO STDOUT") as copy:
                pending: list[Any] = []
                size = 0
                for row in copy:
                    if stop.is_set():  # the reader was dropped: read to the end, keep nothing
                        continue
                    pending.append(row)
                    size += len(row)
                    if size >= block_size:
                        blocks.put(b"".join(pending))
                        pending, size = [], 0
                if pending and not stop.is_set():
                    blocks.put(b"".join(pending))
            blocks.put(None)
        except BaseException as exc:  # handed to the caller's thread
            blocks.put(exc)

    def batches() -> Iterator[pa.Table]:
        # The server makes the next rows while this thread parses the last ones (the
        # reading thread waits on the socket without the GIL): two cores, not one in turn.
        blocks: queue.Queue[Any] = queue.Queue(maxsize=2)
        stop = threading.Event()
        reader = threading.Thread(target=read, args=(blocks, stop), name="healthsim-copy-out", daemon=True)
        reader.start()
        try:
            while (block := blocks.get()) is not None:
                if isinstance(block, psycopg.Error):
                    raise con.error(block) from block
                if isinstance(block, BaseException):
                    raise block
                yield _parse(block, names, texts)
        finally:
            stop.set()
            while reader.is_alive():  # let it finish (and the connection be free) before returning
                try:
                    blocks.get(timeout=0.1)
                except queue.Empty:
                    pass
            reader.join()

    return names, batches()


def fetch_arrow(
    con: PgConnection, sql: str, params: Sequence[Any] | Mapping[str, Any] | None = None, *, texts: Sequence[str] = ()
) -> pa.Table:
    """The rows of a query as an Arrow table, columns as the query names them (see
    :func:`copy_batches`)."""
    names, batches = copy_batches(con, sql, params, texts=texts)
    got = list(batches)
    if not got:
        return pa.table({n: pa.array([], pa.large_string() if n in texts else pa.int64()) for n in names})
    return pa.concat_tables(got) if len(got) > 1 else got[0]
