"""Editing saved scenarios in place: add (with upsert), remove, update, copy and merge.

Each operation is one transaction on an open connection (the store opens and closes
it) and costs what it touches, not the scenario's size: new entities are appended with
ids after every existing one (so they load after the entities already there), a replaced
entity keeps its row and so its place, and lookups are hash joins of the batch against
the scenario's rows, with no per-entity round trip.

An entity is matched by its stored ``entity_id`` within its type, which for an entity
with an id of its own is that id (or the UUIDv5 derived from it, the same as on save).
Entities without an id of their own have random ids and are never matched: they are
only appended, or removed by their stored UUID.
"""

from __future__ import annotations

import datetime as _dt
import json
import uuid
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import pyarrow as pa

from .. import __version__
from .._text import name_some
from ._engines import Connection
from .bulk import ChunkEncoder
from .entities import id_fields, normalize_type
from .errors import InvalidEntityError, InvalidInputError, ScenarioExistsError
from .history import BIRTHS, archive_rows
from .id_sql import entity_rows_sql, entity_uuid_select
from .reading import SCENARIO_COLUMNS, ScenarioHeader, first_row, iso_utc
from .validation import check_utf8, normalize_tags
from .visibility import granted_tags, keep_access

__all__ = [
    "ChangeCounts",
    "add_batch",
    "apply_tags",
    "check_name_free",
    "copy_rows",
    "current_types",
    "edit_provenance",
    "merge_rows",
    "next_id",
    "remove_rows",
    "write_header",
    "write_tags",
]

_NEW = "_hs_new"  # the batch being added: seq, entity_type, has_id, entity_id, entity_data
_KEYS = "_hs_keys"  # per (type, id) of the batch: first position, last value
_HITS = "_hs_hits"  # rows of the scenario that the batch's ids match

#: Per type: how many entities an operation added, updated (in place) and removed.
ChangeCounts = dict[str, dict[str, int]]


def next_id(con: Connection) -> int:
    """The id the next new row of ``scenario_entities`` takes (where the server numbers
    rows, the lowest its sequence can still give: a scenario's new rows get no lower one)."""
    return con.engine.next_entity_id(con)


def current_types(con: Connection, header: ScenarioHeader) -> list[str]:
    """The scenario's entity types in order: those its metadata declares, then any
    others its rows hold (scenarios of earlier releases), in the order they first appear."""
    types = header.declared_types()
    if isinstance(header.metadata.get("entity_types"), list):  # the library keeps it whole
        return types
    rows = con.execute(
        "SELECT entity_type, min(id) AS first FROM scenario_entities WHERE scenario_id = ? GROUP BY 1 ORDER BY first",
        [header.scenario_id],
    ).fetchall()
    return types + [t for t, _ in rows if t not in types]


def _counts_by_type(con: Connection, sql: str, params: Mapping[str, Any]) -> dict[str, int]:
    return {t: int(n) for t, n in con.execute(sql, dict(params)).fetchall()}


def _load_batch(con: Connection, typed: Iterable[tuple[str, Iterable[Any]]]) -> ChunkEncoder:
    """Encode and check entities into the temporary batch table, ids derived as on save.

    Raises:
        InvalidEntityError: an entity cannot be stored (naming its type, index, field).
    """
    con.execute(
        f"{con.engine.create_temp(con, _NEW)} (seq INTEGER, entity_type VARCHAR, has_id BOOLEAN, entity_id UUID, entity_data JSON)"
    )
    encoder = ChunkEncoder(1)
    select = (
        "SELECT id AS seq, entity_type, raw_id IS NOT NULL AS has_id, _uuid AS entity_id, entity_data "
        f"FROM ({entity_rows_sql()}) AS c"
    )
    for table in encoder.tables(typed):
        con.engine.insert_selected(
            con, _NEW, ["seq", "entity_type", "has_id", "entity_id", "entity_data"], select, table
        )
    return encoder


def _has_id_sql(con: Connection, types: Iterable[str], prefix: str = "") -> str:
    """SQL telling whether a stored row's entity has an id of its own (a string or a
    number in one of its type's id fields), as :func:`~.entities.raw_entity_id` decides
    (``prefix``: the row's table alias and a dot)."""
    cases = []
    for entity_type in types:
        checks = " OR ".join(con.engine.has_scalar(f"{prefix}entity_data", field) for field in id_fields(entity_type))
        cases.append(f"WHEN {_quote(entity_type)} THEN COALESCE({checks}, false)")  # (NULL: no such field)
    return f"CASE {prefix}entity_type {' '.join(cases)} ELSE false END" if cases else "false"


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _find_hits(con: Connection, sid: uuid.UUID) -> None:
    """Fill :data:`_HITS`: the scenario's rows whose type and id a batch entity with an id
    of its own names, numbered per id in order (``nth``), and whether the batch's value is
    the very text stored (``same``: nothing to replace).

    A stored row matches only if its entity has an id of its own too: one without has a
    random UUID, which a batch entity naming that UUID as its id must not replace. That is
    decided from the matched rows' data in a statement of its own, after the join (as a
    filter on the scenario's rows, the engine would parse every one of them first). The
    matched rows' texts are read by their ids in a statement of their own too: read in the
    join, DuckDB read the text of every row of the scenario (90 ms of an add of 100 to a
    scenario of 1,000,000 entities, against 7 ms for the join and 3 ms for the texts).
    """
    found, stored, matched = "_hs_found", "_hs_stored", "_hs_matched"
    temp = con.engine.create_temp
    types = [t for (t,) in con.execute(f"SELECT DISTINCT entity_type FROM {_KEYS}").fetchall()]
    con.execute(
        f"{temp(con, found)} AS SELECT e.id FROM scenario_entities e JOIN {_KEYS} k "
        "ON e.entity_type = k.entity_type AND e.entity_id = k.entity_id WHERE e.scenario_id = $sid",
        {"sid": sid},
    )
    con.execute(
        f"{temp(con, stored)} AS SELECT e.id, e.entity_type, e.entity_id, e.entity_data "
        f"FROM {found} f JOIN scenario_entities e ON e.id = f.id"
    )
    con.execute(
        f"{temp(con, matched)} AS SELECT e.id, e.entity_type, e.entity_id, "
        f"{_has_id_sql(con, types, 'e.')} AS own, e.entity_data::TEXT = k.data::TEXT AS same "
        f"FROM {stored} e JOIN {_KEYS} k ON e.entity_type = k.entity_type AND e.entity_id = k.entity_id"
    )
    con.execute(
        f"{temp(con, _HITS)} AS SELECT id, entity_type, entity_id, same, "
        f"row_number() OVER (PARTITION BY entity_type, entity_id ORDER BY id) AS nth FROM {matched} WHERE own"
    )
    for table in (found, stored, matched):
        con.execute(f"DROP TABLE {table}")


def _apply_batch(
    con: Connection, sid: uuid.UUID, now: _dt.datetime, *, upsert: bool, version: int
) -> tuple[dict[str, int], dict[str, int], dict[str, int]]:
    """Put the batch table into the scenario as ``version``; returns (added, updated,
    removed) per type. A row replaced in place has its old content kept in the history
    first, and its id recorded as written by ``version``; one whose stored text is the
    batch's own is left alone (not updated)."""
    params: dict[str, Any] = {"sid": sid, "now": now}
    if con.engine.ids_from_sequence:  # taken in the batch's order
        insert = (
            "INSERT INTO scenario_entities (scenario_id, entity_type, entity_id, entity_data, created_at) "
            "SELECT $sid, entity_type, entity_id, entity_data, $now FROM ({rows}) AS r ORDER BY seq"
        )
    else:
        params["base"] = next_id(con) - 1
        insert = (
            "INSERT INTO scenario_entities (id, scenario_id, entity_type, entity_id, entity_data, created_at) "
            "SELECT $base + row_number() OVER (ORDER BY seq), $sid, entity_type, entity_id, entity_data, $now "
            "FROM ({rows}) AS r"
        )
    if not upsert:
        added = _counts_by_type(con, f"SELECT entity_type, count(*) FROM {_NEW} GROUP BY 1", {})
        con.execute(insert.format(rows=f"SELECT seq, entity_type, entity_id, entity_data FROM {_NEW}"), params)
        return added, {}, {}
    con.execute(
        f"{con.engine.create_temp(con, _KEYS)} AS SELECT entity_type, entity_id, min(seq) AS first_seq, "
        f"(array_agg(entity_data ORDER BY seq DESC))[1] AS data FROM {_NEW} WHERE has_id GROUP BY entity_type, entity_id"
    )
    _find_hits(con, sid)
    replace = "nth = 1 AND NOT same"
    updated = _counts_by_type(con, f"SELECT entity_type, count(*) FROM {_HITS} WHERE {replace} GROUP BY 1", {})
    removed = _counts_by_type(con, f"SELECT entity_type, count(*) FROM {_HITS} WHERE nth > 1 GROUP BY 1", {})
    if (updated or removed) and version > 1:  # (a scenario being made has no history yet)
        archive_rows(con, sid, version, f"e.id IN (SELECT id FROM {_HITS} WHERE nth > 1 OR NOT same)")
    if updated:
        con.execute(
            f"UPDATE scenario_entities SET entity_data = k.data FROM {_HITS} h, {_KEYS} k "
            f"WHERE scenario_entities.id = h.id AND h.{replace} AND k.entity_type = h.entity_type "
            "AND k.entity_id = h.entity_id"
        )
        if version > 1:  # each a range of one id, written in one statement (not one row per call)
            con.execute(
                f"INSERT INTO {BIRTHS} SELECT $sid, $version, id, id FROM {_HITS} WHERE {replace}",
                {"sid": sid, "version": version},
            )
    if removed:
        con.execute(f"DELETE FROM scenario_entities WHERE id IN (SELECT id FROM {_HITS} WHERE nth > 1)")
    rows = (
        f"SELECT seq, entity_type, entity_id, entity_data FROM {_NEW} WHERE NOT has_id UNION ALL "
        f"SELECT first_seq, entity_type, entity_id, data FROM {_KEYS} k WHERE NOT EXISTS "
        f"(SELECT 1 FROM {_HITS} h WHERE h.entity_type = k.entity_type AND h.entity_id = k.entity_id)"
    )
    added = _counts_by_type(con, f"SELECT entity_type, count(*) FROM ({rows}) AS r GROUP BY 1", {})
    if added:
        con.execute(insert.format(rows=rows), params)
    return added, updated, removed


def add_batch(
    con: Connection,
    header: ScenarioHeader,
    typed: Iterable[tuple[str, Iterable[Any]]],
    now: _dt.datetime,
    *,
    upsert: bool,
    version: int,
) -> tuple[ChangeCounts, list[str], int]:
    """Add entities to a scenario as ``version``, inside the caller's transaction.

    The rows it replaced in place are recorded as written by ``version`` here (the
    range of new ids is the caller's to record with the version).

    Returns:
        ``({"added": …, "updated": …, "removed": …}, entity types in order, exact rows
        written)``. All three counts empty: nothing changed (an entity the same as the
        one stored is not updated), and no row was written.

    Raises:
        InvalidEntityError: an entity cannot be stored; nothing was changed.
    """
    encoder = _load_batch(con, typed)
    added, updated, removed = _apply_batch(con, header.scenario_id, now, upsert=upsert, version=version)
    types = current_types(con, header)
    types += [t for t in encoder.counts if t not in types]
    return {"added": added, "updated": updated, "removed": removed}, types, encoder.exact_rows


def stored_entity_ids(con: Connection, entity_type: str, raw_ids: list[str]) -> list[uuid.UUID]:
    """The ``entity_id`` a save stores for each of these own ids of one type, derived by
    the save's own SQL (DuckDB's UUID cast, else the UUIDv5 of ``type:id``): Python's
    ``uuid.UUID`` takes forms the cast does not (``urn:uuid:…``, doubled braces), and a
    remove must name exactly the entity a save stored.

    Args:
        con: the edit's connection: its engine derives the ids in DuckDB, as its saves do.
    """
    if not raw_ids:
        return []
    table = pa.table(
        {
            "position": pa.array(range(len(raw_ids)), pa.int64()),
            "entity_type": pa.array([entity_type] * len(raw_ids), pa.string()),
            "raw_id": pa.array(raw_ids, pa.string()),
        }
    )
    derived = entity_uuid_select("_hs_ids", "raw_id", "entity_type || ':' || raw_id", "position")
    with con.engine.computing(con) as duck:
        duck.register("_hs_ids", table)
        try:
            rows = duck.execute(f"SELECT position, _uuid FROM ({derived}) ORDER BY position").fetchall()
        finally:
            duck.unregister("_hs_ids")
    return [stored for _, stored in rows]


def remove_rows(
    con: Connection, header: ScenarioHeader, entity_type: str, entity_ids: Sequence[Any], version: int
) -> tuple[int, list[str]]:
    """Remove the entities of one type named by stored UUID or own id.

    Returns:
        (rows removed, the ids given that matched none).

    Raises:
        InvalidInputError: the type is unknown to the scenario, or an id is not a string
            or number.
    """
    try:
        stored_type = normalize_type(entity_type)
    except InvalidEntityError as exc:
        raise InvalidInputError(str(exc)) from None
    types = current_types(con, header)
    if stored_type not in types:
        raise InvalidInputError(
            f"scenario {header.name!r} has no entity type {entity_type!r}; its types: {name_some(types)}"
        )
    if isinstance(entity_ids, (str, bytes)) or not isinstance(entity_ids, Sequence):
        raise InvalidInputError(f"entity_ids must be a list of ids, e.g. ['MRN-10001'], not {entity_ids!r}")
    texts: list[str] = []
    for position, raw in enumerate(entity_ids):
        if isinstance(raw, bool) or not isinstance(raw, (str, int)):
            raise InvalidInputError(
                f"entity_ids[{position}] is {raw!r}; an id is a string (a UUID or the entity's own id)"
            )
        text = str(raw)  # as written: a save keeps " MRN-1" apart from "MRN-1"
        check_utf8(text, f"entity_ids[{position}]")
        texts.append(text)
    wanted = dict(zip(texts, stored_entity_ids(con, stored_type, texts), strict=True))
    found = {
        row[0]
        for row in con.execute(
            "SELECT DISTINCT entity_id FROM scenario_entities WHERE scenario_id = $sid AND entity_type = $type "
            "AND entity_id = ANY($ids)",
            {"sid": header.scenario_id, "type": stored_type, "ids": list(wanted.values())},
        ).fetchall()
    }
    if found:
        archive_rows(
            con,
            header.scenario_id,
            version,
            "e.entity_type = $type AND e.entity_id = ANY($ids)",
            {"type": stored_type, "ids": list(found)},
        )
    removed = int(
        con.execute(
            "DELETE FROM scenario_entities WHERE scenario_id = $sid AND entity_type = $type AND entity_id = ANY($ids)",
            {"sid": header.scenario_id, "type": stored_type, "ids": list(found)},
        ).fetchall()[0][0]
        if found
        else 0
    )
    return removed, [text for text, key in wanted.items() if key not in found]


def apply_tags(
    con: Connection, sid: uuid.UUID, tags: list[str], add: Iterable[str], remove: Iterable[str], label: str = ""
) -> list[str]:
    """The scenario's tags after adding and removing (both case-insensitive), written.

    A tag already there in any case is not added again; removing ``Diabetes`` removes
    ``diabetes`` too.

    Raises:
        AccessDeniedError: a tag-limited caller would remove the last of its tags
            (``label``: the scenario's name, for the message).
    """
    dropped = {tag.lower() for tag in normalize_tags(remove)}
    result = [tag for tag in tags if tag.lower() not in dropped]
    for tag in normalize_tags(add):
        if tag.lower() not in {t.lower() for t in result}:
            result.append(tag)
    if result != tags:
        keep_access(result, label or str(sid))  # a tag-limited caller keeps one of its tags (issue 25)
        write_tags(con, sid, result)
    return result


def write_tags(con: Connection, sid: uuid.UUID, tags: list[str]) -> list[str]:
    """Replace a scenario's tags (inside the caller's transaction); the tags written.

    A scenario a tag-limited caller writes gets the caller's first tag if it carries none
    of them (see :func:`~healthsim.state.visibility.granted_tags`).
    """
    tags = granted_tags(tags)
    con.execute("DELETE FROM scenario_tags WHERE scenario_id = ?", [sid])
    if tags and con.engine.ids_from_sequence:
        con.executemany("INSERT INTO scenario_tags (scenario_id, tag) VALUES (?, ?)", [(sid, tag) for tag in tags])
    elif tags:
        first = con.execute("SELECT COALESCE(max(id), 0) + 1 FROM scenario_tags").fetchall()[0][0]
        con.executemany(
            "INSERT INTO scenario_tags (id, scenario_id, tag) VALUES (?, ?, ?)",
            [(first + i, sid, tag) for i, tag in enumerate(tags)],
        )
    return tags


def edit_provenance(metadata: Mapping[str, Any], operation: str, now: _dt.datetime, **facts: Any) -> dict[str, Any]:
    """The provenance of an edit: what it was and when, and how the scenario was first
    made (``created_by``, carried over unchanged, so that it never nests)."""
    previous = metadata.get("provenance")
    created_by = previous.get("created_by", previous) if isinstance(previous, dict) else previous
    record: dict[str, Any] = {
        "operation": operation,
        **facts,
        "library": "healthsim-state",
        "library_version": __version__,
        "at": iso_utc(now),
    }
    if created_by is not None:
        record["created_by"] = created_by
    return record


def write_header(
    con: Connection,
    header: ScenarioHeader,
    now: _dt.datetime,
    *,
    metadata: Mapping[str, Any],
    name: str | None = None,
    description: str | None = None,
    new: bool = False,
) -> None:
    """Insert (``new``) or update a scenario's row with ``updated_at = now``."""
    text = json.dumps(metadata, ensure_ascii=False, allow_nan=False)
    if new:
        con.execute(
            f"INSERT INTO scenarios ({SCENARIO_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)",
            [header.scenario_id, name or header.name, description, header.created_at, now, text],
        )
    else:
        con.execute(
            "UPDATE scenarios SET name = ?, description = ?, updated_at = ?, metadata = ? WHERE scenario_id = ?",
            [name or header.name, description, now, text, header.scenario_id],
        )


def check_name_free(con: Connection, name: str, hint: str) -> None:
    """Raises ScenarioExistsError (with ``hint``) when ``name`` is taken."""
    if first_row(con, "SELECT 1 FROM scenarios WHERE name = ?", [name]) is not None:
        raise ScenarioExistsError(name, hint)


def copy_rows(con: Connection, source: ScenarioHeader, target: uuid.UUID, now: _dt.datetime) -> dict[str, int]:
    """Copy a scenario's entity rows, in order, to ``target`` (same entity ids), inside the
    caller's transaction.

    New row ids are the old ones shifted past every id in use, which keeps the order
    without numbering the rows (a window function would make DuckDB single-threaded).

    Returns:
        Entities copied per type.
    """
    low = con.execute("SELECT min(id) FROM scenario_entities WHERE scenario_id = ?", [source.scenario_id]).fetchall()[
        0
    ][0]
    if low is None:
        return {}
    if con.engine.ids_from_sequence:  # in the rows' order
        con.execute(
            "INSERT INTO scenario_entities (scenario_id, entity_type, entity_id, entity_data, created_at) "
            "SELECT $target, entity_type, entity_id, entity_data, $now FROM scenario_entities "
            "WHERE scenario_id = $source ORDER BY id",
            {"target": target, "now": now, "source": source.scenario_id},
        )
    else:
        con.execute(
            "INSERT INTO scenario_entities (id, scenario_id, entity_type, entity_id, entity_data, created_at) "
            "SELECT id + $shift, $target, entity_type, entity_id, entity_data, $now FROM scenario_entities "
            "WHERE scenario_id = $source",
            {"shift": next_id(con) - low, "target": target, "now": now, "source": source.scenario_id},
        )
    return _counts_by_type(
        con,
        "SELECT entity_type, count(*) FROM scenario_entities WHERE scenario_id = $sid GROUP BY 1",
        {"sid": target},
    )


def merge_rows(
    con: Connection, source: ScenarioHeader, target: uuid.UUID, now: _dt.datetime, *, upsert: bool
) -> ChangeCounts:
    """Add a scenario's entities to ``target`` as a batch (for merges), in order.

    A row's entity counts as having an id of its own when one of its type's id fields
    holds a string or number, as on save; others are never matched.
    """
    types = [
        t
        for (t,) in con.execute(
            "SELECT DISTINCT entity_type FROM scenario_entities WHERE scenario_id = ?", [source.scenario_id]
        ).fetchall()
    ]
    con.execute(
        f"{con.engine.create_temp(con, _NEW)} AS SELECT id AS seq, entity_type, {_has_id_sql(con, types)} AS has_id, "
        "entity_id, entity_data FROM scenario_entities WHERE scenario_id = ?",
        [source.scenario_id],
    )
    added, updated, removed = _apply_batch(con, target, now, upsert=upsert, version=1)
    return {"added": added, "updated": updated, "removed": removed}
