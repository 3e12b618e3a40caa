"""Saving a scenario from a stream of entities.

A save reads, checks and encodes entities chunk by chunk (:mod:`..bulk`), so a stream
larger than memory is saved with bounded memory. One chunk is written in one
transaction; more, on an engine that stages large writes, are committed under a staging
id and published in one final transaction; elsewhere the whole save is one transaction.
A failure anywhere, or a crash, leaves the previous state.
"""

from __future__ import annotations

import datetime as _dt
import itertools
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from ... import __version__
from .._engines import Connection
from ..bulk import ChunkEncoder, insert_chunks
from ..clock import utcnow
from ..database import Database, connect
from ..editing import (
    next_id,
    write_header,
    write_tags,
)
from ..errors import ScenarioExistsError
from ..history import (
    VERSIONS,
    archive_rows,
    current_version,
)
from ..reading import (
    ScenarioHeader,
    entity_counts,
    find_scenario,
    first_row,
    iso_utc,
)
from ..transactions import transaction
from ..validation import (
    as_uuid,
    normalize_tags,
    validate_description,
    validate_name,
)
from ..version_cache import VersionCache
from ..visibility import is_visible
from .versions import (
    Unchanged,
    record_change,
)


@dataclass
class SaveRequest:
    """What to save (see :meth:`~healthsim.state.store.ScenarioStore.write_scenario`).
    ``finish`` may still change the scenario's fields once every entity is read: they are
    kept here until then.

    Attributes:
        name, description, tags, overwrite: as for
            :meth:`~healthsim.state.store.ScenarioStore.save_scenario` (tags normalised).
        typed_entities: pairs of normalised entity type and an iterable of entities.
            A type may appear more than once; its entities are appended.
        provenance: how the scenario was made (``operation`` and details); stored in
            the scenario's ``metadata["provenance"]`` with the library version and time.
        metadata: further metadata to keep (e.g. from an imported file).
        scenario_id: an id to reuse for a new scenario if it is a UUID not in use.
        created_at: the creation time to keep for a new scenario (naive UTC).
        on_chunk: called with the number of entities encoded so far, once per chunk
            (progress bars).
        finish: called once every entity has been read, inside the transaction that
            publishes the scenario; returns new values for any of ``description``,
            ``tags``, ``provenance``, ``metadata`` and ``created_at`` (an import reads
            a file once, and its scenario fields may follow its entities). If it
            raises, nothing is saved.
        after_rows: called with the connection and the scenario id once every row
            is in ``scenario_entities``, inside the publishing transaction (the
            check of ``check=``); if it raises, nothing is saved.
    """

    name: str
    typed_entities: Iterable[tuple[str, Iterable[Any]]]
    description: str | None
    tags: list[str]
    overwrite: bool
    provenance: Mapping[str, Any]
    metadata: Mapping[str, Any] | None = None
    scenario_id: str | None = None
    created_at: _dt.datetime | None = None
    on_chunk: Callable[[int], None] | None = None
    finish: Callable[[], Mapping[str, Any]] | None = None
    stored: tuple[Iterable[tuple[str, pa.Table]], int] | None = None
    after_rows: Callable[[Any, uuid.UUID], None] | None = None


@dataclass
class _Save:
    """One save on an open connection: where it goes, then :meth:`run`."""

    database: Database
    con: Connection
    request: SaveRequest
    now: _dt.datetime = field(default_factory=utcnow)
    #: Entities per type of the content replaced (an overwrite), found by :meth:`_clear`.
    previous: dict[str, int] = field(default_factory=dict)
    existing: bool = field(init=False, default=False)
    sid: uuid.UUID = field(init=False)
    created: _dt.datetime = field(init=False)
    first_id: int = field(init=False)
    version: int = field(init=False)
    encoder: ChunkEncoder = field(init=False)

    def run(self) -> str:
        """Write the rows and publish the scenario; its id."""
        con, request, engine = self.con, self.request, self.con.engine
        # This process holds the file (and its per-file lock) until the end, so what is
        # read here stays true while the entities are written; on a server the
        # transaction holds the name's lock and the scenario's row.
        existing = first_row(
            con, "SELECT scenario_id, created_at FROM scenarios WHERE name = ?" + engine.row_lock(con), [request.name]
        )
        if existing is not None and not request.overwrite:
            raise ScenarioExistsError(request.name)
        if existing is not None and not is_visible(con, existing[0]):  # another tag's: taken, not replaced
            raise ScenarioExistsError(request.name, "the name is taken; choose another name")
        self.existing = existing is not None
        if existing is not None:
            self.sid, self.created = existing
        else:
            self.sid = new_scenario_id(con, request.scenario_id)
            self.created = request.created_at or self.now
        self.first_id = next_id(con)
        self.encoder = ChunkEncoder(self.first_id)
        chunks = self._chunks()
        head = list(itertools.islice(chunks, 2))  # one chunk or more decides the path
        self.version = current_version(con, self.sid) + 1
        rows = itertools.chain(head, chunks)
        if len(head) < 2 or not engine.stages_large_writes:  # small, or not staged: one transaction
            with transaction(con):
                self._clear()
                insert_chunks(con, rows, self.sid, self.now)
                self._publish()
        else:
            self._staged(rows)
        if engine.keeps_key_counts:
            keep_key_totals(self.database, self.sid, self.version, self.now, self.encoder)
        return str(self.sid)

    def _chunks(self) -> Iterator[pa.Table]:
        request, encoder = self.request, self.encoder
        if request.stored is not None:  # rows of another store, kept as they are
            chunks = encoder.stored(request.stored[0])
            encoder.exact_rows = request.stored[1]
        else:
            chunks = encoder.tables(request.typed_entities)
        if request.on_chunk is not None:
            chunks = reporting(chunks, encoder, self.first_id, request.on_chunk)
        return chunks

    def _staged(self, rows: Iterator[pa.Table]) -> None:
        """Large: stage chunk by chunk (bounded memory), then publish in one transaction."""
        con, engine, sid = self.con, self.con.engine, self.sid
        staging = sid if not self.existing else uuid.uuid4()
        engine.begin_staging(con, staging, self.now)
        try:
            insert_chunks(con, rows, staging, self.now, commit_each=True)
            with transaction(con):
                self._clear()
                if staging != sid:
                    con.execute("UPDATE scenario_entities SET scenario_id = ? WHERE scenario_id = ?", [sid, staging])
                self._publish()
                engine.end_staging(con, staging)
        except BaseException:
            try:
                engine.discard_staging(con, staging)
            except Exception:
                pass
            raise

    def _clear(self) -> None:
        """Within the final transaction, before the new rows: the old content out."""
        if self.existing:
            con, sid = self.con, self.sid
            self.previous = entity_counts(con, [find_scenario(con, str(sid))])[sid]
            archive_rows(con, sid, self.version)  # the old version stays loadable
            con.execute("DELETE FROM scenario_entities WHERE scenario_id = ?", [sid])

    def _late_fields(self) -> None:
        """The scenario's fields as ``finish`` gives them, now that every entity is read."""
        request = self.request
        if request.finish is None:
            return
        late = request.finish()
        request.description = validate_description(late.get("description", request.description))
        request.tags = normalize_tags(late.get("tags", request.tags))
        request.provenance = late.get("provenance", request.provenance)
        request.metadata = late.get("metadata", request.metadata)
        if not self.existing:
            self.created = late.get("created_at") or self.created

    def _publish(self) -> None:
        """Within the final transaction, once every entity is read: scenario row, tags
        and the version's record."""
        con, request, encoder, now = self.con, self.request, self.encoder, self.now
        if request.after_rows is not None:
            request.after_rows(con, self.sid)
        self._late_fields()
        meta = {
            **(request.metadata or {}),
            "entity_types": list(encoder.counts),
            "exact_json_rows": encoder.exact_rows,
            "provenance": {
                **request.provenance,
                "library": "healthsim-state",
                "library_version": __version__,
                "at": iso_utc(now),
            },
        }
        header = ScenarioHeader(self.sid, request.name, request.description, self.created, now, meta)
        write_header(con, header, now, metadata=meta, description=request.description, new=not self.existing)
        tags = write_tags(con, self.sid, request.tags)
        operation = str(request.provenance.get("operation", "save"))
        if self.existing and operation == "save":
            operation = "overwrite"
        counts = dict(encoder.counts)
        # Where the server numbered the rows from its sequence, the last one is read back.
        end_id = None if con.engine.ids_from_sequence else encoder.next_id - 1
        # Over an old content: what really changed (an identical overwrite changes nothing).
        record_change(
            con,
            header,
            self.version,
            now,
            operation,
            {"added": counts, "removed": self.previous},
            self.first_id,
            tags=tags,
            end_id=end_id,
            counts=counts,
            replaced_all=self.existing,
        )


def write(database: Database, request: SaveRequest) -> str:
    """Save ``request`` (see :meth:`~healthsim.state.store.ScenarioStore.write_scenario`).

    Returns:
        The scenario_id.
    """
    request.name = validate_name(request.name)
    request.description = validate_description(request.description)
    with connect(database, create=True) as con:
        assert con is not None
        save = _Save(database, con, request)
        try:
            if not con.engine.stages_large_writes:  # the whole save in one transaction
                with transaction(con):
                    con.engine.lock_name(con, request.name)
                    return save.run()
            return save.run()
        except Unchanged:  # (rolled back) an overwrite with exactly what the scenario holds: no version
            return str(save.sid)


def keep_key_totals(database: Database, sid: uuid.UUID, version: int, now: _dt.datetime, encoder: ChunkEncoder) -> None:
    """Once a save is committed: how many top-level keys each type's entities have in
    all, kept beside the file for the first summary of this version (it then reads
    every entity once instead of twice; see summaries.py)."""
    totals = {
        t: (encoder.counts[t], n, list(dict.fromkeys(k for keys in encoder.key_shapes[t].values() for k in keys)))
        for t, n in encoder.key_totals.items()
        if n is not None
    }
    if totals:
        VersionCache(database).keep_key_totals(sid, version, now, totals)


def new_scenario_id(con: Connection, wanted: str | None) -> uuid.UUID:
    """``wanted`` if it is a UUID no scenario (nor its history) uses, else a new one."""
    candidate = as_uuid(wanted) if isinstance(wanted, str) else None
    if candidate is not None:
        con.engine.lock_name(con, str(candidate))  # two transfers of one scenario at once take turns
        # Nor an id of the history (a scenario in the trash): the new one would take its versions.
        taken = first_row(
            con,
            f"SELECT 1 FROM scenarios WHERE scenario_id = ? UNION ALL SELECT 1 FROM {VERSIONS} "
            "WHERE scenario_id = ? LIMIT 1",
            [candidate, candidate],
        )
        if taken is None:
            return candidate
    return uuid.uuid4()


def reporting(
    chunks: Iterator[pa.Table], encoder: ChunkEncoder, first_id: int, on_chunk: Callable[[int], None]
) -> Iterator[pa.Table]:
    for table in chunks:
        on_chunk(encoder.next_id - first_id)
        yield table
