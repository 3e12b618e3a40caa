"""Reading scenarios: their rows, tags and counts, and their entities, parsed fast.

Loading is bound by parsing JSON: rows come from DuckDB as Arrow and each is parsed with
orjson straight from Arrow's buffers, with Python's cyclic garbage collector paused. Rows
orjson could not read exactly (integers beyond 64 bits) go through the standard library.
:class:`ScenarioReader` reads one scenario in bounded chunks on an open connection
(export, paging). Nothing here writes.
"""

from __future__ import annotations

import datetime as _dt
import gc
import json
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, cast

import orjson
import pyarrow as pa

from .._lazy import lazy_module
from .._text import name_some
from ._engines import AnalyticsConnection, Connection
from .entities import decode_entity, normalize_type
from .errors import DatabaseLockedError, InvalidEntityError, InvalidInputError, ScenarioNotFoundError
from .results import ScenarioSummary
from .validation import as_uuid, storable
from .visibility import is_visible

if TYPE_CHECKING:  # imported on first use: see healthsim._lazy
    import pyarrow.compute as pc
else:
    pc = lazy_module("pyarrow.compute")

__all__ = [
    "BIG_INT_PATTERN",
    "SAMPLES_BYTES",
    "SCENARIO_COLUMNS",
    "ScenarioHeader",
    "ScenarioReader",
    "entity_counts",
    "find_scenario",
    "first_row",
    "gc_paused",
    "in_id_order",
    "iso_utc",
    "parse_rows",
    "parse_streamed",
    "scenario_dict",
    "scenario_tags",
]

# Text orjson may not read exactly (see ScenarioHeader.exact_rows_sql): it parses integers
# from -2**63 to 2**64 - 1 exactly and anything beyond as a float. Every integer beyond
# that range has 20 digits, or is negative with 19: a pattern that flags each of them
# (and, harmlessly, a few exact ones and digit runs inside strings).
BIG_INT_PATTERN = r"[0-9]{20}|-[0-9]{19}"

#: Sample entities of a scenario's overview stop once their JSON passes this many bytes.
SAMPLES_BYTES = 32_000

SCENARIO_COLUMNS = "scenario_id, name, description, created_at, updated_at, metadata"


def first_row(con: Connection, sql: str, params: list[Any]) -> tuple[Any, ...] | None:
    """The first row of a query, or None.

    DuckDB 2.0 counts a result read with fetchone() as unfinished and refuses the next
    statement on the connection, so results are always read to the end.
    """
    rows = con.execute(sql, params).fetchall()
    return rows[0] if rows else None


def iso_utc(value: _dt.datetime | None) -> str | None:
    """An ISO 8601 UTC string ending in ``Z`` for a stored (naive UTC) timestamp."""
    if value is None:
        return None
    if value.tzinfo is not None:
        value = value.astimezone(_dt.UTC).replace(tzinfo=None)
    return value.isoformat() + "Z"


def _parse_metadata(text: str | None) -> dict[str, Any]:
    if not text:
        return {}
    value = json.loads(text)  # exact (big integers) and rare: one row per scenario
    return value if isinstance(value, dict) else {"value": value}


@dataclass(frozen=True)
class ScenarioHeader:
    """One row of ``scenarios``, as read back."""

    scenario_id: uuid.UUID
    name: str
    description: str | None
    created_at: _dt.datetime
    updated_at: _dt.datetime
    metadata: dict[str, Any]

    @classmethod
    def from_row(cls, row: tuple[Any, ...]) -> ScenarioHeader:
        sid, name, description, created_at, updated_at, metadata = row
        return cls(sid, name, description, created_at, updated_at, _parse_metadata(metadata))

    def exact_rows_sql(self, con: Connection) -> str:
        """SQL flagging the rows to parse exactly (see :func:`decode_entity`).

        Scenarios this library saved record how many rows its exact encoder wrote, and
        usually that is none; for other rows (earlier releases, or a scenario with such
        rows), text matching :data:`BIG_INT_PATTERN` may hold an integer beyond 64 bits,
        which orjson would turn into a float.
        """
        if self.metadata.get("exact_json_rows") == 0:
            return "false"
        return con.engine.matches("entity_data", BIG_INT_PATTERN)

    def declared_types(self) -> list[str]:
        """Entity types recorded in the metadata, in the order they were saved."""
        declared = self.metadata.get("entity_types")
        if isinstance(declared, list):
            return [t for t in declared if isinstance(t, str)]
        return []


def find_scenario(con: Connection, name: str, *, lock_row: bool = True) -> ScenarioHeader:
    """The scenario of that name, else of that UUID (on PostgreSQL, inside a change's
    transaction, its row locked until the transaction ends, unless not ``lock_row``).

    Raises:
        InvalidInputError: ``name`` is not a string.
        ScenarioNotFoundError: no scenario has that name or id.
    """
    if not isinstance(name, str):
        raise InvalidInputError(f"scenario name must be a string (a name or UUID), not {type(name).__name__}")
    key = name.strip()
    if not storable(key):  # no name holds a NUL or a lone surrogate
        raise ScenarioNotFoundError(key)
    # Inside a change's transaction on PostgreSQL, the row stays locked until it ends.
    lock = con.engine.row_lock(con) if lock_row else ""
    try:
        row = first_row(con, f"SELECT {SCENARIO_COLUMNS} FROM scenarios WHERE name = ?{lock}", [key])
        if row is None and (sid := as_uuid(key)) is not None:
            row = first_row(con, f"SELECT {SCENARIO_COLUMNS} FROM scenarios WHERE scenario_id = ?{lock}", [sid])
    except DatabaseLockedError as exc:  # another client held the row past the lock timeout
        raise exc.for_scenario(key) from exc
    # A scenario the caller's grant does not cover answers as a missing one (issue 25).
    if row is None or not is_visible(con, row[0]):
        raise ScenarioNotFoundError(key)
    return ScenarioHeader.from_row(row)


def scenario_dict(header: ScenarioHeader, tags: list[str], counts: dict[str, int], version: int) -> ScenarioSummary:
    """What a load returns of a scenario, but its entities (list entries drop ``metadata``)."""
    return {
        "scenario_id": str(header.scenario_id),
        "name": header.name,
        "version": version,
        "description": header.description,
        "tags": tags,
        "created_at": iso_utc(header.created_at),
        "updated_at": iso_utc(header.updated_at),
        "entity_count": sum(counts.values()),
        "entities_by_type": counts,
        "metadata": header.metadata,
    }


def scenario_tags(con: Connection, scenario_ids: list[uuid.UUID]) -> dict[uuid.UUID, list[str]]:
    """Tags per scenario, in the order given."""
    result: dict[uuid.UUID, list[str]] = {}
    rows = con.execute(
        "SELECT scenario_id, tag FROM scenario_tags WHERE scenario_id = ANY($ids) ORDER BY id",
        {"ids": scenario_ids},
    ).fetchall()
    for sid, tag in rows:
        result.setdefault(sid, []).append(tag)
    return result


def entity_counts(con: Connection, headers: list[ScenarioHeader]) -> dict[uuid.UUID, dict[str, int]]:
    """Entity counts by type per scenario, types in saved order (one GROUP BY)."""
    rows = con.execute(
        "SELECT scenario_id, entity_type, count(*), min(id) AS first FROM scenario_entities "
        "WHERE scenario_id = ANY($ids) GROUP BY 1, 2 ORDER BY first",
        {"ids": [h.scenario_id for h in headers]},
    ).fetchall()
    counts: dict[uuid.UUID, dict[str, int]] = {h.scenario_id: dict.fromkeys(h.declared_types(), 0) for h in headers}
    for sid, entity_type, count, _ in rows:
        counts[sid][entity_type] = count
    return counts


def in_id_order(table: pa.Table) -> pa.Table:
    """``table`` sorted by its ``id`` column, sorting only if it is not already.

    DuckDB returns a scan in insertion order (``preserve_insertion_order``, on by
    default), which for our rows is id order, so queries ask for no ORDER BY (it costs
    a sort of every entity's text); a vectorised check confirms the order instead.
    """
    ids = table.column("id")
    if len(ids) > 1 and not pc.all(pc.greater(ids.slice(1), ids.slice(0, len(ids) - 1))).as_py():
        return table.sort_by("id")
    return table


@contextmanager
def gc_paused() -> Iterator[None]:
    """Pause Python's cyclic garbage collector while building many objects.

    Parsing a million entities creates millions of dicts and lists, and the collector
    would scan them again and again (measured: 6.2 s with it, 2.0 s without, for
    1,000,000 entities). JSON values cannot form reference cycles, so nothing is lost.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


class ScenarioReader:
    """One scenario on an open connection, read in bounded chunks.

    Rows are read by ranges of ``id`` (entities are numbered in saved order), so no
    query sorts more than one chunk: memory stays bounded for any scenario size.
    """

    # Small enough that a chunk's copies (DuckDB result, Arrow, joined text) stay near
    # 10 MB, large enough that queries are few (measured: 20,000 rows is also faster).
    CHUNK_ROWS = 20_000

    def __init__(
        self,
        con: Connection,
        header: ScenarioHeader,
        version: int = 0,
        *,
        tags: list[str] | None = None,
        source: str = "scenario_entities",
    ) -> None:
        """Args:
        con: the open connection.
        header: the scenario (or the version's) fields.
        version: its version number (history.py keeps them).
        tags: its tags (default: read from ``scenario_tags``).
        source: the table holding its rows (an earlier version's rows gathered in a
            temporary table, for an export of that version).
        """
        self._con = con
        self._source = source
        self.header = header
        self.tags = tags if tags is not None else scenario_tags(con, [header.scenario_id]).get(header.scenario_id, [])
        self.version = version
        rows = con.execute(
            f"SELECT entity_type, count(*), min(id), max(id) FROM {source} "
            "WHERE scenario_id = ? GROUP BY entity_type ORDER BY min(id)",
            [header.scenario_id],
        ).fetchall()
        self._spans = {t: (lo, hi) for t, _, lo, hi in rows}
        self.counts: dict[str, int] = dict.fromkeys(header.declared_types(), 0)
        self.counts.update({t: n for t, n, _, _ in rows})

    @property
    def connection(self) -> Connection:
        """The open connection the scenario is read on."""
        return self._con

    @property
    def analytics(self) -> AnalyticsConnection:
        """The connection as DuckDB's SQL and Arrow speak it: only for a reader that
        :func:`in_duckdb` gave (summaries, key counts and the analytics formats)."""
        return cast(AnalyticsConnection, self._con)

    @property
    def shared_rows(self) -> bool:
        """Whether other connections (cursors) of the database can read the rows too: the
        current rows are in a table; an earlier version's in this connection's temporary one."""
        return self._source == "scenario_entities"

    def rows_sql(self, entity_type: str | None = None, *, columns: str = "entity_type, entity_data") -> str:
        """A query of ``columns`` of the scenario's entities (of one type, or all), in no
        particular order (``id`` orders them), for work done in SQL."""
        sql = f"SELECT {columns} FROM {self._source} WHERE scenario_id = '{self.header.scenario_id}'"
        if entity_type is not None:
            sql += " AND entity_type = '" + entity_type.replace("'", "''") + "'"
        return sql

    def summary(self) -> ScenarioSummary:
        """The load dict without ``entities``."""
        return scenario_dict(self.header, self.tags, self.counts, self.version)

    def page(self, entity_type: str, offset: int, limit: int, budget: int = SAMPLES_BYTES) -> dict[str, Any]:
        """One page of a type: up to ``limit`` entities from ``offset``, shortened to about
        ``budget`` bytes of JSON (at least one entity), and where the next page starts.

        Returns:
            ``{"entity_type", "offset", "returned", "total", "next_offset", "entities"}``;
            ``next_offset`` is None after the last page.

        Raises:
            InvalidInputError: the scenario has no entities of that type.
        """
        entity_type = self.stored_type(entity_type)
        entities, _ = bounded(self.entities(entity_type, offset, offset + limit), budget)
        total = self.counts[entity_type]
        end = offset + len(entities)
        return {
            "entity_type": entity_type,
            "offset": offset,
            "returned": len(entities),
            "total": total,
            "next_offset": end if end < total else None,
            "entities": entities,
        }

    def overview(self, samples: int = 2, budget: int = SAMPLES_BYTES) -> dict[str, Any]:
        """:meth:`summary` plus ``samples``: per type up to ``samples`` entities, all
        together within about ``budget`` bytes of JSON (a type's first sample is always
        given). Cheap: no statistics (those are :func:`~healthsim.state.summaries.summarize`)."""
        kept: dict[str, list[Any]] = {}
        for entity_type, count in self.counts.items():
            kept[entity_type], budget = bounded(self.entities(entity_type, 0, min(count, samples)), budget)
        return {**self.summary(), "samples": kept}

    def text_chunks(self, entity_type: str, start: int = 0, stop: int | None = None) -> Iterator[pa.Array]:
        """The stored JSON text of one type's entities, in order, as Arrow string arrays.

        Args:
            entity_type: the stored type.
            start, stop: positions within the type (``stop`` exclusive; None for all).
        """
        for table in self.row_chunks(entity_type, start, stop):
            yield table.column("entity_data").combine_chunks()

    def row_chunks(
        self, entity_type: str, start: int = 0, stop: int | None = None, *, with_ids: bool = False
    ) -> Iterator[pa.Table]:
        """One type's rows in order, as Arrow tables of ``entity_data`` (the stored JSON
        text) and, ``with_ids``, ``entity_id`` (the stored UUID as text) before it.

        Args:
            entity_type: the stored type.
            start, stop: positions within the type (``stop`` exclusive; None for all).
        """
        if entity_type not in self._spans:
            return
        lo, hi = self._spans[entity_type]
        total = self.counts[entity_type]
        stop = total if stop is None else min(stop, total)
        if start >= stop:
            return
        contiguous = hi - lo + 1 == total  # the usual case: ids are positions
        if contiguous:
            lo, hi = lo + start, lo + stop - 1
        skip, wanted = (0, stop - start) if contiguous else (start, stop - start)
        step = self.CHUNK_ROWS
        for first in range(lo, hi + 1, step):
            if wanted <= 0:
                return
            rows = self._range(entity_type, first, min(first + step, hi + 1), with_ids)
            if skip:
                dropped = min(skip, len(rows))
                rows, skip = rows.slice(dropped), skip - dropped
            rows = rows.slice(0, wanted)
            wanted -= len(rows)
            if len(rows):
                yield rows

    def _range(self, entity_type: str, lo: int, hi: int, with_ids: bool = False) -> pa.Table:
        """Rows of ``lo <= id < hi`` in id order (``entity_id``, ``entity_data``)."""
        ids = "CAST(entity_id AS VARCHAR) AS entity_id, " if with_ids else ""
        table = self._con.engine.fetch_arrow(
            self._con,
            f"SELECT id, {ids}entity_data FROM {self._source} WHERE scenario_id = $sid "
            "AND entity_type = $type AND id >= $lo AND id < $hi",
            {"sid": self.header.scenario_id, "type": entity_type, "lo": lo, "hi": hi},
            texts=("entity_id", "entity_data") if with_ids else ("entity_data",),
        )
        return in_id_order(table).drop_columns(["id"])

    def stored_type(self, entity_type: str) -> str:
        """The scenario's own name of an entity type as a user writes it: ``patient`` and
        ``Patient`` name ``patients``, as they do when saving (:func:`.entities.normalize_type`).

        Raises:
            InvalidInputError: the scenario has no entities of that type.
        """
        if entity_type in self.counts:
            return entity_type
        try:
            stored: str | None = normalize_type(entity_type)
        except InvalidEntityError:  # not a type name at all
            stored = None
        if stored is None or stored not in self.counts:
            known = name_some(list(self.counts))
            raise InvalidInputError(
                f"scenario {self.header.name!r} has no entity type {entity_type!r}; its types: {known}"
            )
        return stored

    def entities(self, entity_type: str, start: int = 0, stop: int | None = None) -> list[Any]:
        """Parsed entities of one type (as :meth:`stored_type` reads it) between two
        positions (for paging).

        Raises:
            InvalidInputError: the scenario has no entities of that type.
        """
        entity_type = self.stored_type(entity_type)
        exact = self.header.metadata.get("exact_json_rows") != 0
        values: list[Any] = []
        for column in self.text_chunks(entity_type, start, stop):
            for text in column.to_pylist():
                values.append(decode_entity(text, exact=exact))
        return values


def bounded(entities: list[Any], budget: int) -> tuple[list[Any], int]:
    """The longest prefix of ``entities`` whose JSON fits in ``budget`` bytes (at least
    one entity), and the budget left."""
    kept: list[Any] = []
    for entity in entities:
        size = len(json.dumps(entity, ensure_ascii=False))  # json: exact for big integers
        if kept and size > budget:
            break
        kept.append(entity)
        budget -= size
    return kept, budget


def parse_rows(rows: pa.Table) -> Iterator[tuple[str, list[Any]]]:
    """Parse Arrow rows of ``entity_type, entity_data, big`` into runs of one type."""
    if rows.num_rows == 0:
        return
    types = rows.column("entity_type").combine_chunks()
    runs = pc.run_end_encode(types)
    run_types = runs.values.to_pylist()
    run_ends = runs.run_ends.to_pylist()
    texts = rows.column("entity_data")
    exact_rows: set[int] = set()
    big = rows.column("big")
    if pc.any(big).as_py():
        exact_rows = set(pc.indices_nonzero(big.combine_chunks()).to_pylist())
    values = _decode_column(texts, exact_rows)
    start = 0
    for entity_type, end in zip(run_types, run_ends, strict=True):
        yield entity_type, values[start:end]
        start = end


def parse_streamed(tables: Iterable[pa.Table]) -> Iterator[tuple[str, list[Any]]]:
    """:func:`parse_rows` of rows that arrive in parts (``id`` too), each part parsed as it
    comes (a team store's rows, while the server sends the next ones); rows that came out
    of id order (PostgreSQL keeps an updated row elsewhere) are put in order at the end."""
    values: list[Any] = []
    ids: list[pa.Array] = []
    types: list[pa.Array] = []
    ordered, last = True, None
    for table in tables:
        if table.num_rows == 0:
            continue
        column = table.column("id").combine_chunks()
        if ordered:
            rising = len(column) < 2 or pc.all(pc.greater(column.slice(1), column.slice(0, len(column) - 1))).as_py()
            ordered = bool(rising) and (last is None or column[0].as_py() > last)
        last = column[len(column) - 1].as_py()
        big = table.column("big")
        exact_rows = set(pc.indices_nonzero(big.combine_chunks()).to_pylist()) if pc.any(big).as_py() else set()
        values.extend(_decode_column(table.column("entity_data"), exact_rows))
        ids.append(column)
        types.append(table.column("entity_type").combine_chunks())
    if not values:
        return
    every_type = pa.concat_arrays(types)
    if not ordered:
        order = pc.sort_indices(pa.concat_arrays(ids))
        values = [values[i] for i in order.to_pylist()]
        every_type = every_type.take(order)
    runs = pc.run_end_encode(every_type)
    start = 0
    for entity_type, end in zip(runs.values.to_pylist(), runs.run_ends.to_pylist(), strict=True):
        yield entity_type, values[start:end]
        start = end


def _decode_column(texts: pa.ChunkedArray, exact_rows: set[int]) -> list[Any]:
    """Parse a string column without making a Python ``str`` per row."""
    loads = orjson.loads
    values: list[Any] = []
    append = values.append
    row = 0
    for chunk in texts.chunks:
        width: Literal["q", "i"]
        if pa.types.is_large_string(chunk.type):
            width = "q"
        else:
            chunk = chunk.cast(pa.string())
            width = "i"
        _, offsets_buffer, data_buffer = chunk.buffers()
        offsets = memoryview(offsets_buffer).cast(width)[chunk.offset : chunk.offset + len(chunk) + 1]
        data = memoryview(data_buffer) if data_buffer is not None else memoryview(b"")
        if not exact_rows:
            for begin, end in zip(offsets, offsets[1:], strict=False):  # n + 1 offsets
                append(loads(data[begin:end]))
        else:
            for begin, end in zip(offsets, offsets[1:], strict=False):
                text = data[begin:end]
                # orjson bound locally on the hot path; decode_entity for the rare exact rows.
                append(decode_entity(bytes(text), exact=True) if row in exact_rows else loads(text))
                row += 1
            continue
        row += len(chunk)
    return values


@contextmanager
def in_duckdb(reader: ScenarioReader) -> Iterator[ScenarioReader]:
    """A reader of the same scenario version whose connection speaks DuckDB's SQL (what
    summaries, key counts and the analytics formats compute in): ``reader`` itself when
    its engine's connection does, else one over an in-memory copy of its rows, dropped
    afterwards."""
    con = reader.connection
    columns = "id, scenario_id::TEXT AS scenario_id, entity_type, entity_id::TEXT AS entity_id, entity_data"
    with con.engine.analysed(con, reader.rows_sql(columns=columns)) as copy:
        if copy is None:
            yield reader
        else:
            yield ScenarioReader(copy, reader.header, reader.version, tags=reader.tags)
