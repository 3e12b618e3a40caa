"""The query sandbox's shared rules, the same on both engines.

The SQL checks' messages, the time-limit signal, how a value becomes JSON, the row and
byte caps with value cutting (:class:`Rows`), and how result batches are written to a
CSV, Parquet or NDJSON file (:func:`write_batches`). The DuckDB sandbox
(:mod:`healthsim.state.query`) and the PostgreSQL one (:mod:`healthsim.state._engines.postgres.sandbox`)
both use them; this module imports neither, so neither imports the other.
"""

from __future__ import annotations

import datetime as _dt
import difflib
import json
import math
import os
import re
import time
import uuid
from collections.abc import Iterable, Sequence
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import orjson
import pyarrow as pa

from .._lazy import lazy_module
from .._text import name_some
from .errors import QueryError
from .files import concatenated, space_problem
from .safe_csv import SafeCsvWriter

if TYPE_CHECKING:  # imported on first use: see healthsim._lazy
    import pyarrow.compute as pc
    import pyarrow.parquet as pq
else:
    pc = lazy_module("pyarrow.compute")
    pq = lazy_module("pyarrow.parquet")

#: Rows per Arrow batch when a result is written to a file.
WRITE_BATCH_ROWS = 65_536
#: Arrow data converted to Python in one go at most; the deadline is checked between.
CONVERT_BYTES = 4 << 20
#: A single value is never cut shorter than this many characters.
_MIN_VALUE_CHARS = 100
#: After the deadline, the sandbox gets this long to stop by itself (DuckDB's interrupt,
#: the conversion's deadline check) before it is killed.
KILL_GRACE_SECONDS = 0.5


#: Prefixes of the names the engines' catalogs keep: PostgreSQL's ``pg_catalog``, DuckDB's
#: ``duckdb_`` views, its PostgreSQL and SQLite compatibility views and ``pragma_`` functions.
_SYSTEM_PREFIXES = ("pg_", "duckdb_", "sqlite_", "pragma_")


def may_name_a_view(entity_type: str) -> bool:
    """Whether the sandbox may make a view named ``entity_type``, on either engine.

    An identifier, and not a name either engine's catalog keeps: a type ``pg_class`` got a
    view on DuckDB but none on PostgreSQL (the catalog's name wins there), so one SQL
    counted entities on one engine and catalog rows on the other. Such a type is still in
    ``entities``. (Each engine also leaves alone a name one of the store's tables has.)
    """
    return entity_type.isidentifier() and not entity_type.lower().startswith(_SYSTEM_PREFIXES)


class OutOfTime(Exception):
    """The deadline passed while rows were converted (raised inside the sandbox only)."""


def timeout_message(timeout: float) -> str:
    """The refusal of a query that ran past its time limit."""
    return f"the query ran longer than {timeout:g} s and was stopped; filter more or add a LIMIT"


# A table the query names that is not there: DuckDB's words, then PostgreSQL's.
_MISSING_TABLE = re.compile(r'Table with name "?([^"\s!]+)"? does not exist|relation "([^"]+)" does not exist')
# The hint lines worth keeping after an engine's first line (its own "Did you mean" for a
# table is replaced: it may name a system table the sandbox hides, e.g. duckdb_constraints).
_HINT_LINE = re.compile(r"^(Candidate bindings:|HINT:)")


def failure_message(text: str, views: Sequence[str]) -> str:
    """The refusal of a query the engine failed, from the engine's ``text``: its first line,
    and for a table that is not there the nearest view and the views there are."""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    message = lines[0] if lines else "(no message)"
    missing = _MISSING_TABLE.search(message)
    if missing:
        name = missing.group(1) or missing.group(2)
        near = difflib.get_close_matches(name, list(views), n=1, cutoff=0.75)
        hint = f"did you mean {near[0]!r}? " if near else ""
        named = name_some(views)  # (a store of hundreds of types: the error stays short)
        return (
            f"the query failed: {message}; {hint}the views are {named} (one per entity type "
            "a scenario holds), with the tables scenarios and scenario_tags"
        )
    hints = [line for line in lines[1:3] if _HINT_LINE.match(line)]
    return "; ".join([f"the query failed: {message}", *hints])


#: The message for SQL that is not text, or is empty (also on the team store).
NOT_ONE_SELECT = "sql must be one SELECT statement, e.g. SELECT count(*) FROM patients"


def statement_count_message(found: int) -> str:
    """The refusal of SQL holding more than one statement."""
    return f"send exactly one statement (found {found}); only one read-only SELECT runs"


def not_select_message(kind: str) -> str:
    """The refusal of a statement that is not a read-only query (``kind``: what it is)."""
    return f"only read-only SELECT queries run here, not {kind}; the database cannot be changed through query"


def iso_interval(months: int, days: int, micros: int) -> str:
    """An interval as ISO 8601 text, written as PostgreSQL's ``intervalstyle = iso_8601``
    writes it (``P1Y2M3DT4H5M6.5S``, ``PT0S``; each part keeps its own sign), so that
    both engines give one text for one interval."""

    def split(value: int, unit: int) -> tuple[int, int]:  # division toward zero, as C's
        whole = abs(value) // unit * (1 if value >= 0 else -1)
        return whole, value - whole * unit

    years, months = split(months, 12)
    hours, rest = split(micros, 3_600_000_000)
    minutes, rest = split(rest, 60_000_000)
    if not (years or months or days or hours or minutes or rest):
        return "PT0S"
    text = "P" + "".join(f"{n}{u}" for n, u in ((years, "Y"), (months, "M"), (days, "D")) if n)
    if hours or minutes or rest:
        text += "T" + "".join(f"{n}{u}" for n, u in ((hours, "H"), (minutes, "M")) if n)
        if rest:
            whole, fraction = divmod(abs(rest), 1_000_000)
            text += ("-" if rest < 0 else "") + str(whole) + (f".{fraction:06d}".rstrip("0") if fraction else "") + "S"
    return text


def json_value(value: Any) -> Any:
    """A query result value as JSON-friendly data (lists, dicts, strings, numbers), by the
    one rule of every output (see ``docs/decisions.md``, "One rule for every output")."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)  # "nan", "inf", "-inf"
    if isinstance(value, _dt.datetime):
        # An instant (a time zone attached) in UTC, so both engines write one text for it.
        return (value.astimezone(_dt.UTC) if value.tzinfo is not None else value).isoformat()
    if isinstance(value, (_dt.date, _dt.time)):
        return value.isoformat()
    if isinstance(value, Decimal):
        if not value.is_finite():
            return "nan" if value.is_nan() else ("-inf" if value < 0 else "inf")
        return format(value, "f")  # exact, never in exponent form (0E-10)
    if isinstance(value, pa.MonthDayNano):
        return iso_interval(value.months, value.days, value.nanoseconds // 1000)
    if isinstance(value, (uuid.UUID, _dt.timedelta)):
        return str(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).hex()
    if isinstance(value, dict):
        return {str(k): json_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_value(v) for v in value]
    return str(value)


def json_text(value: Any) -> str:
    """A JSON-friendly value (:func:`json_value`'s) as compact JSON text."""
    try:
        return orjson.dumps(value).decode()
    except TypeError:  # an integer past 64 bits: orjson refuses it, json does not
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def unique_names(names: Sequence[str]) -> list[str]:
    """Column names made unique, the one rule of every output: the first of a name keeps
    it, each later one (compared without case, as DuckDB and most readers do) gets
    ``_1``, ``_2``… — the first suffix no column has. Parquet readers refuse duplicate
    names, and an NDJSON object cannot hold them."""
    taken = {name.lower() for name in names}
    given: set[str] = set()
    unique = []
    for name in names:
        candidate, n = name, 0
        while candidate.lower() in given:
            n += 1
            candidate = f"{name}_{n}"
            if candidate.lower() in taken:
                candidate = name  # a real column's name: try the next suffix
        given.add(candidate.lower())
        unique.append(candidate)
    return unique


#: What a column holds beyond its Arrow type: ``"json"`` (text that is JSON: embedded as
#: JSON in NDJSON) or ``"integer"`` (an integer too large for Arrow, as its digits).
ColumnKind = str | None


def python_values(column: pa.Array, kind: ColumnKind = None) -> list[Any]:
    """An Arrow column's values as Python, by the one rule: 32-bit floats as their
    shortest text reads (``0.1``, not ``0.10000000149011612``), maps as dicts, integers
    given as digits as integers."""
    if pa.types.is_float32(column.type) or pa.types.is_float16(column.type):
        return [None if v is None else float(v) for v in pc.cast(column, pa.string()).to_pylist()]
    values = column.to_pylist(maps_as_pydicts="lossy")
    if kind == "integer":
        return [int(v) if isinstance(v, str) and v.lstrip("-").isdigit() else v for v in values]
    return values


def _json_size(value: Any) -> int:
    """Bytes of ``value`` as compact UTF-8 JSON (how the byte cap is measured)."""
    try:
        return len(orjson.dumps(value))
    except TypeError:  # an integer past 64 bits: orjson refuses it, json does not
        return len(json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8"))


def _fixed_width(kind: pa.DataType) -> bool:
    """True for types whose every value is a few bytes (numbers, dates, times, decimals…)."""
    return (
        pa.types.is_primitive(kind)
        or pa.types.is_decimal(kind)
        or pa.types.is_null(kind)
        or pa.types.is_interval(kind)
        or (pa.types.is_fixed_size_binary(kind) and kind.byte_width <= 64)
    )


def cut_marker(size: int) -> str:
    """The end of a value cut short for the byte cap."""
    return f"…[cut, {size:,} bytes in all]"


def value_chars(columns: int, max_bytes: int) -> int:
    """Characters a value of a result of ``columns`` columns keeps under the byte cap
    ``max_bytes``: a quarter of the cap shared among the columns (less room for the cut
    marker and the row's brackets and quotes), so that a row of cut values fits, with room
    for more; at least ``_MIN_VALUE_CHARS``."""
    return max(_MIN_VALUE_CHARS, max_bytes // (4 * max(columns, 1)) - 64)


class Rows:
    """Rows taken from Arrow batches within a row limit, a byte cap and a deadline.

    Every batch is counted; rows are converted to Python only until the limit or the
    cap is reached, in chunks of at most ``CONVERT_BYTES`` of Arrow data with the
    deadline checked between them, and each value too long for the cap is cut in Arrow
    first, so no single value is ever built in Python at full size.
    """

    def __init__(
        self,
        columns: int,
        *,
        limit: int,
        max_bytes: int,
        deadline: float,
        patched: bool = False,
        kinds: Sequence[ColumnKind] = (),
    ) -> None:
        self.limit = limit
        self.kinds = list(kinds) or [None] * columns
        #: Batches end with one more column: per row, null or the JSON text of
        #: ``{column index: value}``, values already cut (by the team store's server)
        #: that replace that row's values (null in the batch).
        self.patched = patched
        self.max_bytes = max_bytes
        self.deadline = deadline
        self.rows: list[list[Any]] = []
        self.size = 2  # the JSON of the rows so far: "[]" to start with
        self.total = 0
        self.cut_values = 0
        self.stopped_by: str | None = None  # "rows" or "bytes" once no more rows are taken
        # A quarter of the cap shared among the columns (less room for the cut marker and
        # the row's brackets and quotes): a row of cut values fits, with room for more.
        self.value_chars = value_chars(columns, max_bytes)

    def result(self, columns: list[str], elapsed: float, views: list[str]) -> dict[str, Any]:
        """The query's answer (see :func:`query_scenarios`), once every batch was added."""
        truncated = self.total > len(self.rows)
        return {
            "columns": columns,
            "rows": self.rows,
            "row_count": len(self.rows),
            "total_rows": self.total,
            "truncated": truncated,
            "truncated_reason": self.stopped_by if truncated else None,
            "cut_values": self.cut_values,
            "result_bytes": self.size,
            "elapsed_seconds": elapsed,
            "views": views,
        }

    def check_time(self) -> None:
        if time.monotonic() > self.deadline:
            raise OutOfTime

    def add(self, batch: pa.RecordBatch) -> None:
        self.check_time()
        self.total += batch.num_rows
        if self.stopped_by is not None or batch.num_rows == 0:
            return
        wanted = batch.slice(0, self.limit - len(self.rows))
        offset = 0
        while offset < wanted.num_rows and self.stopped_by is None:
            self.check_time()
            rest = wanted.slice(offset)
            # Convert about as much as the cap still has room for (Arrow and JSON sizes
            # are alike for text, the bulk of most results), within bounds.
            budget = min(CONVERT_BYTES, max(64 << 10, self.max_bytes - self.size))
            per_row = max(1.0, rest.nbytes / rest.num_rows)
            step = max(1, int(budget // per_row))
            self._take(rest.slice(0, step))
            offset += step
        if self.stopped_by is None and len(self.rows) >= self.limit:
            self.stopped_by = "rows"

    def _take(self, chunk: pa.RecordBatch) -> None:
        cuts = [0] * chunk.num_rows  # values cut in each row of the chunk
        patches: list[str | None] = []
        if self.patched:
            patches = chunk.column(chunk.num_columns - 1).to_pylist()
            chunk = chunk.select(range(chunk.num_columns - 1))
        columns = [self._values(column, cuts, kind) for column, kind in zip(chunk.columns, self.kinds, strict=True)]
        # Column by column: records keyed by name would merge duplicate names.
        rows = [[json_value(v) for v in record] for record in zip(*columns, strict=True)]
        for index, patch in enumerate(patches):
            if patch:
                for column, value in json.loads(patch).items():
                    rows[index][int(column)] = value
                    cuts[index] += 1
        separator = 1 if self.rows else 0
        grown = self.size + separator + _json_size(rows) - 2
        if grown <= self.max_bytes:
            self.rows.extend(rows)
            self.size = grown
            self.cut_values += sum(cuts)
            return
        for row, cut in zip(rows, cuts, strict=True):
            grown = self.size + (1 if self.rows else 0) + _json_size(row)
            if grown > self.max_bytes:
                self.stopped_by = "bytes"
                return
            self.rows.append(row)
            self.size = grown
            self.cut_values += cut

    def _values(self, column: pa.Array, cuts: list[int], what: ColumnKind = None) -> list[Any]:
        """One column of a chunk as Python values, values too long for the cap cut.

        Adds 1 to ``cuts[i]`` for each value cut in row ``i``.
        """
        kind = column.type
        if _fixed_width(kind) or column.nbytes <= self.value_chars // 2:  # no value can be too long
            return python_values(column, what)
        if isinstance(kind, pa.ExtensionType):
            column, kind = column.storage, kind.storage_type
        if pa.types.is_dictionary(kind):
            column = column.dictionary_decode()
            kind = column.type
        if pa.types.is_string(kind) or pa.types.is_large_string(kind):
            texts = self._cut(column, pc.utf8_slice_codeunits(column, 0, self.value_chars), cuts, hexed=False)
            if what == "integer":  # digits not cut short are the integer they spell
                return [int(v) if isinstance(v, str) and v.lstrip("-").isdigit() else v for v in texts]
            return texts
        if pa.types.is_binary(kind) or pa.types.is_large_binary(kind):
            # Blobs come back as hex, two characters a byte.
            return self._cut(column, pc.binary_slice(column, 0, self.value_chars // 2), cuts, hexed=True)
        values: list[Any] = []
        for index in range(len(column)):  # lists, structs, maps…: only whole values can go
            one = column.slice(index, 1)
            size = one.nbytes
            if size > self.value_chars:
                values.append(f"[cut: a {kind} value of {size:,} bytes]")
                cuts[index] += 1
            else:
                values.extend(python_values(one, what))
        return values

    def _cut(self, column: pa.Array, short: pa.Array, cuts: list[int], *, hexed: bool) -> list[Any]:
        full_sizes = pc.binary_length(column).to_pylist()  # from the offsets: no scan of the data
        short_sizes = pc.binary_length(short).to_pylist()
        values = short.to_pylist()
        for index, (full, kept) in enumerate(zip(full_sizes, short_sizes, strict=True)):
            if full is not None and full != kept:
                value = values[index]
                values[index] = (value.hex() if hexed else value) + cut_marker(full)
                cuts[index] += 1
        return values


# A JSON string (skipped whole), or a bare NaN or infinity outside strings.
_NON_FINITE = re.compile(r'"(?:[^"\\]|\\.)*"|-?Infinity|NaN')
# Their text in query results (:func:`json_value`: Python's ``str`` of the float).
_NON_FINITE_TEXT = {"NaN": '"nan"', "Infinity": '"inf"', "-Infinity": '"-inf"'}


def _finite_lines(lines: pa.Array) -> pa.Array:
    """JSON lines with each bare ``NaN``, ``Infinity`` and ``-Infinity`` written as the
    strings ``"nan"``, ``"inf"`` and ``"-inf"``.

    DuckDB's ``to_json`` writes a non-finite double bare, which no strict JSON reader takes.
    The strings are what :func:`query_scenarios` returns for these values (and what the team
    store's ndjson writes), so a line still equals its row, and unlike null they keep what the
    value was. Lines are only looked at closely when they spell one somewhere.
    """
    suspect = pc.match_substring_regex(lines, "NaN|Infinity")
    if not pc.any(suspect).as_py():
        return lines
    texts = lines.to_pylist()
    for i in pc.indices_nonzero(suspect).to_pylist():
        texts[i] = _NON_FINITE.sub(lambda m: _NON_FINITE_TEXT.get(m[0], m[0]), texts[i])
    return pa.array(texts, type=lines.type)


def json_column(column: pa.Array, kind: ColumnKind = None) -> list[Any]:
    """An Arrow column's values by the rule (:func:`json_value` of each), with Arrow doing
    the work for the common types: files hold millions of rows."""
    kind_type = column.type
    if pa.types.is_integer(kind_type) or pa.types.is_boolean(kind_type) or pa.types.is_null(kind_type):
        return column.to_pylist()
    if pa.types.is_string(kind_type) or pa.types.is_large_string(kind_type):
        return python_values(column, kind)  # digits of an integer become the integer
    if pa.types.is_float64(kind_type):
        values = column.to_pylist()
        if pc.all(pc.or_kleene(pc.is_finite(column), pc.is_null(column))).as_py() is not False:
            return values
        return [json_value(v) for v in values]
    if pa.types.is_decimal(kind_type) or pa.types.is_date(kind_type):
        # Arrow writes a decimal's exact digits with its scale ("1.50") and a date as ISO,
        # except very small decimals in exponent form (1E-10): those by Python.
        texts = pc.cast(column, pa.string())
        if not pa.types.is_decimal(kind_type) or not pc.any(pc.match_substring(texts, "E")).as_py():
            return texts.to_pylist()
    return [json_value(v) for v in python_values(column, kind)]


def _csv_keeps(kind: pa.DataType) -> bool:
    """Whether a CSV cell of this type is already the rule's text (numbers, booleans, text)."""
    return (
        pa.types.is_integer(kind)
        or pa.types.is_floating(kind)
        or pa.types.is_boolean(kind)
        or pa.types.is_string(kind)
        or pa.types.is_large_string(kind)
        or pa.types.is_null(kind)
    )


def _holds_interval(kind: pa.DataType) -> bool:
    """Whether ``kind`` is an interval or nests one (Parquet cannot write them)."""
    if pa.types.is_interval(kind):
        return True
    return any(_holds_interval(kind.field(i).type) for i in range(kind.num_fields))


def _file_schema(schema: pa.Schema, fmt: str) -> pa.Schema:
    """The schema a file of ``fmt`` gets for query results of ``schema``: unique names; in
    CSV every type but numbers, booleans and text as text; in Parquet instants in UTC and
    intervals (which Parquet cannot hold as Arrow has them) as ISO 8601 text."""
    fields = []
    for field, name in zip(schema, unique_names(schema.names), strict=True):
        kind = field.type
        if fmt == "csv" and not _csv_keeps(kind):
            kind = pa.large_string()
        elif pa.types.is_timestamp(kind) and kind.tz is not None:
            kind = pa.timestamp(kind.unit, tz="UTC")
        elif _holds_interval(kind):  # as ISO 8601 text (in lists and structs: their JSON text)
            kind = pa.large_string()
        fields.append(pa.field(name, kind))
    return pa.schema(fields)


def _file_batch(batch: pa.RecordBatch, schema: pa.Schema, kinds: Sequence[ColumnKind]) -> pa.RecordBatch:
    """``batch`` in the file's ``schema`` (:func:`_file_schema`): a column turned into text
    holds the rule's text of each value (:func:`json_value`; lists, structs and maps as
    JSON text)."""
    arrays = []
    for column, field, kind in zip(batch.columns, schema, kinds, strict=True):
        if column.type == field.type:
            arrays.append(column)
        elif pa.types.is_timestamp(field.type) and pa.types.is_timestamp(column.type):
            arrays.append(column.cast(field.type))  # the same instants, named in UTC
        else:
            texts = [v if v is None or isinstance(v, str) else json_text(v) for v in json_column(column, kind)]
            arrays.append(pa.array(texts, type=field.type))
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


def _join(*parts: Any) -> pa.Array:
    """Text arrays and strings joined element-wise (as large strings: one kernel for all)."""
    large = [pa.scalar(p, type=pa.large_string()) if isinstance(p, str) else p.cast(pa.large_string()) for p in parts]
    return pc.binary_join_element_wise(*large, pa.scalar("", type=pa.large_string()))


# Characters a JSON string cannot hold as they are.
_JSON_ESCAPES = r'[\x00-\x1f"\\]'


def _json_strings(texts: pa.Array) -> pa.Array:
    """Text values as JSON strings (quoted, escaped as orjson escapes), vectorised: only
    values holding a quote, backslash or control character are escaped one by one."""
    texts = texts.cast(pa.large_string())
    special = pc.match_substring_regex(texts, _JSON_ESCAPES)
    if pc.any(special).as_py():
        values = texts.to_pylist()
        for i in pc.indices_nonzero(special).to_pylist():
            values[i] = orjson.dumps(values[i]).decode()[1:-1]
        texts = pa.array(values, type=pa.large_string())
    return _join('"', texts, '"')


def _json_texts(column: pa.Array, kind: ColumnKind) -> pa.Array:
    """Each value of ``column`` as JSON text by the rule (``null`` for a null), the common
    types vectorised in Arrow, the others through :func:`json_value`."""
    kind_type = column.type
    texts: pa.Array
    if kind == "json" and (pa.types.is_string(kind_type) or pa.types.is_large_string(kind_type)):
        # JSON text as it is (a raw line break in valid JSON text is spacing: a space keeps
        # one row a line).
        texts = pc.replace_substring(pc.replace_substring(column, "\r", " "), "\n", " ")
    elif pa.types.is_integer(kind_type):
        texts = pc.cast(column, pa.large_string())
    elif kind == "integer" and pc.all(pc.match_substring_regex(column, r"^-?[0-9]+$")).as_py() is not False:
        texts = column  # an integer too large for Arrow, as its digits: a JSON number
    elif pa.types.is_boolean(kind_type):
        texts = pc.if_else(column, pa.scalar("true", pa.large_string()), pa.scalar("false", pa.large_string()))
    elif pa.types.is_float32(kind_type) or pa.types.is_float64(kind_type):
        texts = pc.cast(column, pa.large_string())  # the shortest text of a float32 too
        whole = pc.match_substring_regex(texts, r"^-?[0-9]+$")  # 1.0 written "1": a float still
        texts = pc.if_else(whole, _join(texts, ".0"), texts)
        odd = pc.invert(pc.is_finite(column))  # "nan", "inf", "-inf" as strings
        texts = pc.if_else(odd, _join('"', texts, '"'), texts)
    elif pa.types.is_string(kind_type) or pa.types.is_large_string(kind_type):
        texts = _json_strings(column)
    elif pa.types.is_date(kind_type) or (
        pa.types.is_decimal(kind_type) and not pc.any(pc.match_substring(pc.cast(column, pa.string()), "E")).as_py()
    ):
        texts = _join('"', pc.cast(column, pa.large_string()), '"')  # ISO dates, exact decimals: no escapes
    else:
        texts = pa.array(
            [None if v is None else json_text(json_value(v)) for v in python_values(column, kind)],
            type=pa.large_string(),
        )
    return pc.fill_null(texts.cast(pa.large_string()), "null")


def ndjson_lines(batch: pa.RecordBatch, names: Sequence[str], kinds: Sequence[ColumnKind]) -> pa.Array:
    """``batch`` as NDJSON lines: per row the object of ``names`` (unique) and the values
    ``query_scenarios`` gives, JSON text (``kind`` ``"json"``) embedded as JSON. Built
    column by column in Arrow: a file may hold millions of rows."""
    if batch.num_columns == 0:
        return pa.array(["{}\n"] * batch.num_rows, type=pa.large_string())
    parts: list[Any] = []
    for index, (column, name, kind) in enumerate(zip(batch.columns, names, kinds, strict=True)):
        parts.append(("{" if index == 0 else ",") + json_text(name) + ":")
        parts.append(_json_texts(column, kind))
    parts.append("}\n")
    return _join(*parts)


def write_batches(
    output: dict[str, str],
    schema: pa.Schema,
    batches: Iterable[pa.RecordBatch],
    deadline: float,
    kinds: Sequence[ColumnKind] = (),
) -> int:
    """Write query result ``batches`` (of ``schema``; ``kinds`` says what each column
    holds) to ``output["path"]`` as csv, parquet or ndjson, by the one rule of every
    output; returns the rows written. Shared by both engines' sandboxes.

    Raises:
        OutOfTime: ``deadline`` passed between two batches.
        QueryError: the file cannot be written, or the rows cannot be written in this format.
    """
    fmt, path = output["format"], output["path"]
    kinds = list(kinds) or [None] * len(schema)
    target = _file_schema(schema, fmt)
    written = 0
    with open(path, "wb") as out:
        writer: Any = None
        try:
            if fmt == "parquet":
                writer = pq.ParquetWriter(out, target, compression="zstd")
            elif fmt == "csv":
                writer = SafeCsvWriter(out, target)  # cells that start like a formula get a "'"
            for batch in batches:
                if time.monotonic() > deadline:
                    raise OutOfTime
                if writer is None:
                    out.write(concatenated(_finite_lines(ndjson_lines(batch, target.names, kinds))))
                else:
                    writer.write_batch(_file_batch(batch, target, kinds))
                written += batch.num_rows
            if writer is not None:
                writer, closing = None, writer
                closing.close()
            out.flush()
            os.fsync(out.fileno())
        except OSError as exc:
            if exc.errno is not None:  # the file: disk full, say
                raise QueryError(f"cannot write the rows: {space_problem(os.path.dirname(path), exc)}") from None
            # DuckDB's errors after the first batch come through Arrow's stream as OSError
            # with DuckDB's message: its interrupt (the time limit) or the query failing.
            message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            if message.startswith("INTERRUPT"):
                raise OutOfTime from None
            raise QueryError(f"the query failed: {message}") from None
        except pa.ArrowException as exc:
            raise QueryError(f"cannot write this result as {fmt}: {str(exc).splitlines()[0]}") from None
        finally:
            if writer is not None:  # failed part-way: the file is removed, only close it
                try:
                    writer.close()
                except (OSError, pa.ArrowException, ValueError):
                    pass
    return written
