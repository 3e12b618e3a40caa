"""The bulk-insert hot path shared by save and import, and staging of large writes.

Entities are encoded into Arrow tables of bounded size (:class:`ChunkEncoder`), and each
table is inserted with one ``INSERT … SELECT`` whose SQL derives the entity ids
(:func:`insert_chunks`). Encoding is Python work and inserting is DuckDB work that releases
the GIL, so the two overlap: a writer thread inserts chunk *k* while the caller's thread
encodes chunk *k + 1*. The writer thread is the only user of the connection until it
has finished.

DuckDB keeps a transaction's new rows in memory until it commits (measured: +70 MB per
chunk of 122,880 entities), so a scenario larger than one chunk is *staged*: each chunk
is committed on its own under a staging id that has no ``scenarios`` row (invisible to
every reader), and one last transaction makes the scenario visible. The staging id is
recorded first; if the process dies, the next open (:func:`.schema.recover_staging`)
deletes the rows of every staging id still recorded. Readers only ever see the old or the new state.
"""

from __future__ import annotations

import datetime as _dt
import queue
import threading
import uuid
from array import array
from collections.abc import Iterable, Iterator
from typing import Any

import pyarrow as pa

from ._engines import Connection
from ._engines.base import COMPACT_CHUNK
from .entities import Encoded, as_json_object, encode_exact, encode_fast, id_fields, raw_entity_id
from .errors import DatabaseError
from .transactions import transaction

__all__ = ["ChunkEncoder", "insert_chunks"]

_MAX_ROW_ID = 2**31 - 1  # scenario_entities.id is the specification's INTEGER
# One DuckDB row group per chunk: full row groups are written to the file during the
# insert, smaller appends go through the WAL at commit (measured: 0.58 s vs 0.07 s of
# commit for 300,000 entities). The byte bound keeps chunks of huge entities in memory.
CHUNK_ROWS = 122_880
CHUNK_BYTES = 256 << 20

_JSON_TYPE = pa.json_(pa.large_string())


class ChunkEncoder:
    """Serialises ``(type, entities)`` pairs into Arrow tables of bounded size.

    Args:
        first_id: the ``scenario_entities.id`` of the first entity.

    Attributes:
        counts: entities seen per type, in the order the types first appeared.
        exact_rows: entities written by the exact encoder (they may hold integers
            beyond 64 bits, which only the exact parser reads back unchanged).
        key_totals: per type, how many top-level keys its entities have in all; None
            for a type whose texts were not all written by orjson from the entity (an
            exact text may repeat a key the parsed entity has once).
        key_shapes: per type, the keys of the first entity with each number of keys (a
            summary's first guess of every key the type has: cheap to note here).
    """

    def __init__(self, first_id: int) -> None:
        self.next_id = first_id
        self.counts: dict[str, int] = {}
        self.key_totals: dict[str, int | None] = {}
        self.key_shapes: dict[str, dict[int, tuple[str, ...]]] = {}
        self.exact_rows = 0
        self._chunk_exact_start = 0  # exact_rows when the chunk being built began
        self._reset()

    def _reset(self) -> None:
        self._buffer = bytearray()
        self._ends = array("q", [0])
        self._raw_ids: list[str | None] = []
        self._type_runs: list[tuple[str, int]] = []  # (type, rows) in order

    def _check_room(self, n: int) -> None:
        """Raise if ``n`` more rows would pass the largest id the INTEGER column holds."""
        if self.next_id + n > _MAX_ROW_ID:
            raise DatabaseError(
                "the database has used every scenario_entities id the specification's INTEGER "
                "column allows; export your scenarios and start a new database file"
            )

    def _table(self) -> pa.Table:
        n = len(self._raw_ids)
        self._check_room(n)
        types: list[str] = []
        for entity_type, rows in self._type_runs:
            types += [entity_type] * rows
        table = pa.table(
            {
                "id": pa.array(range(self.next_id, self.next_id + n), pa.int32()),
                "entity_type": pa.array(types, pa.string()),
                "raw_id": pa.array(self._raw_ids, pa.string()),
                # Typed as JSON, DuckDB stores the text without parsing it again (about 10%
                # faster). Safe only because encode_fast/encode_exact emit valid JSON.
                "entity_data": pa.ExtensionArray.from_storage(
                    _JSON_TYPE,
                    pa.LargeStringArray.from_buffers(n, pa.py_buffer(self._ends), pa.py_buffer(self._buffer)),
                ),
            }
        )
        self.next_id += n
        self._reset()
        if self.exact_rows == self._chunk_exact_start:  # only the fast encoder's compact text
            table = table.replace_schema_metadata({COMPACT_CHUNK: b"1"})
        self._chunk_exact_start = self.exact_rows
        return table

    def tables(self, typed: Iterable[tuple[str, Iterable[Any]]]) -> Iterator[pa.Table]:
        """Yield Arrow tables of encoded entities; raises on the first invalid one.

        Raises:
            InvalidEntityError: an entity cannot be stored (see :func:`encode_entity`).
        """
        counts = self.counts
        for entity_type, items in typed:
            fields = id_fields(entity_type)
            index = counts.setdefault(entity_type, 0)
            run_start = index
            exact_before, keys = self.exact_rows, 0
            shapes = self.key_shapes.setdefault(entity_type, {})
            buffer, ends, raw_ids = self._buffer, self._ends, self._raw_ids
            append_end, append_id = ends.append, raw_ids.append
            for entity in items:
                if type(entity) is Encoded:  # checked and encoded by an import reader
                    obj, text = entity.obj, entity.text
                    self.exact_rows += entity.exact
                else:
                    obj = entity if type(entity) is dict else as_json_object(entity, entity_type, index)
                    fast = encode_fast(obj)
                    if fast is None:
                        fast = encode_exact(obj, entity_type, index)
                        self.exact_rows += 1
                    text = fast
                size = len(obj)
                keys += size
                if size not in shapes:
                    shapes[size] = tuple(obj)
                buffer += text
                append_end(len(buffer))
                if type(obj) is dict:  # fast path; raw_entity_id decides the odd cases
                    for field in fields:
                        value = obj.get(field)
                        if value is not None:
                            break
                    append_id(value if value is None or type(value) is str else raw_entity_id(obj, fields))
                else:
                    append_id(raw_entity_id(obj, fields))
                index += 1
                if len(buffer) >= CHUNK_BYTES or len(raw_ids) >= CHUNK_ROWS:
                    self._type_runs.append((entity_type, index - run_start))
                    counts[entity_type] = index
                    yield self._table()
                    run_start = index
                    buffer, ends, raw_ids = self._buffer, self._ends, self._raw_ids
                    append_end, append_id = ends.append, raw_ids.append
            if index > run_start:
                self._type_runs.append((entity_type, index - run_start))
            counts[entity_type] = index
            total = self.key_totals.get(entity_type, 0)
            exact = self.exact_rows > exact_before
            self.key_totals[entity_type] = None if total is None or exact else total + keys
        if self._raw_ids:
            yield self._table()

    def stored(self, rows: Iterable[tuple[str, pa.Table]]) -> Iterator[pa.Table]:
        """Yield Arrow tables of rows read from a store (a transfer): per type, tables of
        ``entity_id`` (the stored UUID as text, kept) and ``entity_data`` (the stored JSON
        text, kept byte for byte, not parsed again). The caller sets :attr:`exact_rows`."""
        for entity_type, table in rows:
            self.counts.setdefault(entity_type, 0)
            self.key_totals[entity_type] = None  # (texts not parsed here)
            for start in range(0, table.num_rows, CHUNK_ROWS):
                part = table.slice(start, CHUNK_ROWS)
                n = part.num_rows
                self._check_room(n)
                texts = part.column("entity_data").combine_chunks().cast(pa.large_string())
                yield pa.table(
                    {
                        "id": pa.array(range(self.next_id, self.next_id + n), pa.int32()),
                        "entity_type": pa.array([entity_type] * n, pa.string()),
                        "raw_id": part.column("entity_id").combine_chunks().cast(pa.string()),
                        "entity_data": pa.ExtensionArray.from_storage(_JSON_TYPE, texts),
                    }
                )
                self.next_id += n
                self.counts[entity_type] += n


_DONE = object()


def insert_chunks(
    con: Connection,
    tables: Iterator[pa.Table],
    scenario_id: uuid.UUID,
    now: _dt.datetime,
    *,
    commit_each: bool = False,
) -> None:
    """Insert every table of ``tables`` into ``scenario_entities`` for one scenario.

    Encoding (pulling from ``tables``) happens in this thread while a writer thread
    inserts the previous table; any error on either side stops both and is raised here.

    Args:
        commit_each: run each insert in its own transaction (staging). Otherwise the
            caller's open transaction holds them all, and rolls back on error.
    """
    engine = con.engine
    # The engine's encoding (the team store's COPY text) happens in the caller's thread.
    tables = (engine.encode_entity_chunk(table, scenario_id, now) for table in tables)
    # A strict handoff: the caller builds chunk k+1 only after the writer has taken chunk
    # k, so at most two chunks are alive (one inserting, one being built).
    pending: queue.Queue[Any] = queue.Queue(maxsize=1)
    taken = threading.Semaphore(0)
    failure: list[BaseException] = []

    def writer() -> None:
        while True:
            table = pending.get()
            taken.release()
            if table is _DONE:
                return
            if not failure:
                try:
                    if commit_each:
                        with transaction(con):
                            engine.insert_entity_chunk(con, table, scenario_id, now)
                    else:
                        engine.insert_entity_chunk(con, table, scenario_id, now)
                except BaseException as exc:  # handed to the caller's thread below
                    failure.append(exc)
            del table  # do not hold the chunk while waiting for the next one

    thread = threading.Thread(target=writer, name="healthsim-bulk-insert", daemon=True)
    thread.start()
    try:
        for table in tables:
            if failure:
                break
            pending.put(table)
            taken.acquire()
            del table
    finally:
        pending.put(_DONE)
        thread.join()
    if failure:
        raise failure[0]
