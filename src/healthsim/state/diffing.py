"""Comparing two scenarios, or two versions of one, inside the database.

Entities are matched per type by stored ``entity_id`` (and, when an id repeats, by its
occurrence: the first with the first); entities without an id of their own are matched in
order (the first with the first); a matched pair is unchanged when its JSON is the
same. Counting happens in SQL, so the answer costs about a scan of both sides and stays
small for any size: counts per type, up to 10 example ids per kind, and for changed
examples the field paths that differ.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Mapping
from typing import Any

import duckdb

from .dialect import create_temp, has_scalar, json_equal
from .entities import decode_entity, id_fields, raw_entity_id
from .history import ENTITY_HISTORY, version_rows_sql

__all__ = ["EXAMPLES", "change_counts", "changed_paths", "diff_rows", "scenario_changes"]

#: Example ids per kind of change and type.
EXAMPLES = 10
_KINDS = ("added", "removed", "changed", "unchanged")
_MISSING = object()  # a member one side lacks


def _side_table(con: duckdb.DuckDBPyConnection, table: str, sid: uuid.UUID, version: int | None) -> None:
    """A side's rows (numbered later, by :func:`_numbered`)."""
    params: dict[str, Any] = {"sid": sid}
    if version is None:
        rows = "SELECT id, entity_type, entity_id, entity_data FROM scenario_entities WHERE scenario_id = $sid"
    else:
        rows = version_rows_sql()
        params["version"] = version
    con.execute(
        f"{create_temp(con, table)} AS SELECT entity_type, entity_id, entity_data, id FROM ({rows}) AS r", params
    )


def _has_own_id(con: Any, types: Iterable[str]) -> str:
    """SQL: whether a row's entity has an id of its own (a string or a number in one of
    its type's id fields), as :func:`~.entities.raw_entity_id` decides."""
    cases = []
    for entity_type in types:
        checks = " OR ".join(has_scalar(con, "entity_data", field) for field in id_fields(entity_type))
        quoted = entity_type.replace("'", "''")
        cases.append(f"WHEN '{quoted}' THEN COALESCE({checks}, false)")  # (NULL: no such field)
    return f"CASE entity_type {' '.join(cases)} ELSE false END" if cases else "false"


def _numbered(con: Any, rows: str, types: Iterable[str]) -> str:
    """SQL: ``rows`` with the key a row is matched by: ``match`` (its stored id when the
    entity has an id of its own, else one constant) and ``nth``, its occurrence among the rows
    of its type with that key, in entity order. So entities with an id match by it (a
    repeated id by occurrence) and entities without one match in order: an overwrite
    with the same id-less entities is no change (their stored UUIDs are new each time)."""
    keyed = f"SELECT entity_type, entity_id, entity_data, id, {_match_key(con, types)} AS match FROM ({rows}) AS k"
    return (
        "SELECT entity_type, entity_id, entity_data, id, match, "
        f"row_number() OVER (PARTITION BY entity_type, match ORDER BY id) AS nth FROM ({keyed}) AS n"
    )


def changed_paths(old: Any, new: Any) -> list[str]:
    """The field paths that differ between two entities: top-level members, and one level
    into objects on both sides (``address.city``)."""
    if not isinstance(old, dict) or not isinstance(new, dict):
        return ["$"] if old != new else []
    paths: list[str] = []
    for key in dict.fromkeys([*old, *new]):
        a, b = old.get(key, _MISSING), new.get(key, _MISSING)
        if a == b and type(a) is type(b):
            continue
        if isinstance(a, dict) and isinstance(b, dict):
            paths += [
                f"{key}.{inner}"
                for inner in dict.fromkeys([*a, *b])
                if a.get(inner, _MISSING) != b.get(inner, _MISSING)
            ]
        else:
            paths.append(key)
    return paths


def _display_id(entity_type: str, text: str, stored: uuid.UUID) -> str:
    """The entity's own id when it has one, else its stored UUID."""
    try:
        own = raw_entity_id(json.loads(text), id_fields(entity_type))
    except ValueError:
        own = None
    return own if own is not None else str(stored)


def diff_rows(
    con: duckdb.DuckDBPyConnection, a: tuple[uuid.UUID, int | None], b: tuple[uuid.UUID, int | None]
) -> dict[str, dict[str, Any]]:
    """Per type: counts of added, removed, changed and unchanged entities from ``a`` to
    ``b`` (each a scenario id and a version, None for the current rows), and examples."""
    _side_table(con, "_hs_diff_a", *a)
    _side_table(con, "_hs_diff_b", *b)
    types = [
        row[0]
        for row in con.execute(
            "SELECT DISTINCT entity_type FROM _hs_diff_a UNION SELECT DISTINCT entity_type FROM _hs_diff_b"
        ).fetchall()
    ]
    joined = (
        f"SELECT COALESCE(a.entity_type, b.entity_type) AS entity_type, COALESCE(a.entity_id, b.entity_id) AS entity_id, "
        "COALESCE(b.id, a.id) AS position, a.entity_data AS old, b.entity_data AS new, "
        "CASE WHEN a.entity_id IS NULL THEN 'added' WHEN b.entity_id IS NULL THEN 'removed' "
        f"WHEN {json_equal(con, 'a.entity_data', 'b.entity_data')} THEN 'unchanged' ELSE 'changed' END AS kind "
        f"FROM ({_numbered(con, 'SELECT * FROM _hs_diff_a', types)}) AS a "
        f"FULL OUTER JOIN ({_numbered(con, 'SELECT * FROM _hs_diff_b', types)}) AS b "
        "ON a.entity_type = b.entity_type AND a.match = b.match AND a.nth = b.nth"
    )
    con.execute(f"{create_temp(con, '_hs_diff')} AS {joined}")
    found: dict[str, dict[str, Any]] = {}
    order = con.execute("SELECT entity_type, min(position) AS first FROM _hs_diff GROUP BY 1 ORDER BY first").fetchall()
    for entity_type, _ in order:
        found[entity_type] = {kind: 0 for kind in _KINDS} | {"examples": {"added": [], "removed": [], "changed": []}}
    for entity_type, kind, count in con.execute(
        "SELECT entity_type, kind, count(*) FROM _hs_diff GROUP BY 1, 2"
    ).fetchall():
        found[entity_type][kind] = int(count)
    examples = con.execute(
        "SELECT entity_type, kind, entity_id, old::TEXT, new::TEXT FROM (SELECT *, row_number() OVER "
        "(PARTITION BY entity_type, kind ORDER BY position) AS n FROM _hs_diff WHERE kind <> 'unchanged') AS d "
        f"WHERE n <= {EXAMPLES} ORDER BY entity_type, kind, n"
    ).fetchall()
    for entity_type, kind, stored, old, new in examples:
        shown = _display_id(entity_type, new if new is not None else old, stored)
        if kind == "changed":
            fields = changed_paths(decode_entity(old, exact=True), decode_entity(new, exact=True))
            found[entity_type]["examples"]["changed"].append({"id": shown, "fields": fields})
        else:
            found[entity_type]["examples"][kind].append(shown)
    for table in ("_hs_diff_a", "_hs_diff_b", "_hs_diff"):
        con.execute(f"DROP TABLE IF EXISTS {table}")
    return found


def _match_key(con: Any, types: Iterable[str]) -> str:
    """SQL: the stored id a row is matched by when its entity has an id of its own, else
    one constant for every id-less entity (matched in order then). A stored id of UUID
    version 5 was derived from an own id, so the JSON is only looked at for the others."""
    return (
        f"CASE WHEN substr(CAST(entity_id AS VARCHAR), 15, 1) = '5' OR ({_has_own_id(con, types)}) "
        f"THEN entity_id ELSE CAST('{_NO_OWN_ID}' AS UUID) END"
    )


_NO_OWN_ID = "00000000-0000-0000-0000-000000000000"


def change_counts(con: Any, scenario_id: uuid.UUID, version: int) -> dict[str, dict[str, int]]:
    """What a change that replaced every row of a scenario (an overwrite, an import over
    it, a restore in place) really changed: from the rows it archived as ``version`` to
    the current rows, per type, as :func:`diff_rows` counts it (matched by entity id, by
    occurrence when it repeats, in order without one): ``{"added": {type: n},
    "removed": {...}, "updated": {...}}`` (``updated``: matched entities whose JSON
    differs).

    One grouped join in the database: nothing is loaded into Python, the answer is a few
    numbers per type, and occurrences are only numbered when a key repeats (a window over
    every row cost as much again).
    """
    params = {"sid": scenario_id, "version": version}
    old = (
        f"SELECT row_id AS id, entity_type, entity_id, entity_data FROM {ENTITY_HISTORY} "
        "WHERE scenario_id = $sid AND to_version = $version"
    )
    new = "SELECT id, entity_type, entity_id, entity_data FROM scenario_entities WHERE scenario_id = $sid"
    listed = con.execute(
        f"SELECT DISTINCT entity_type FROM ({old}) AS o UNION SELECT DISTINCT entity_type FROM ({new}) AS n", params
    ).fetchall()
    key = _match_key(con, [t for (t,) in listed])
    sides = [f"SELECT id, entity_type, entity_data, {key} AS match FROM ({rows}) AS r" for rows in (old, new)]
    repeats = con.execute(
        f"SELECT EXISTS (SELECT 1 FROM ({sides[0]}) AS o GROUP BY entity_type, match HAVING count(*) > 1) "
        f"OR EXISTS (SELECT 1 FROM ({sides[1]}) AS n GROUP BY entity_type, match HAVING count(*) > 1)",
        params,
    ).fetchall()[0][0]
    nth = "row_number() OVER (PARTITION BY entity_type, match ORDER BY id)" if repeats else "1"
    a, b = (f"SELECT *, {nth} AS nth FROM ({side}) AS s" for side in sides)
    rows = con.execute(
        "SELECT entity_type, kind, count(*) AS n, min(position) AS first FROM (SELECT "
        "COALESCE(a.entity_type, b.entity_type) AS entity_type, COALESCE(b.id, a.id) AS position, "
        "CASE WHEN a.id IS NULL THEN 'added' WHEN b.id IS NULL THEN 'removed' "
        f"WHEN {json_equal(con, 'a.entity_data', 'b.entity_data')} THEN 'unchanged' ELSE 'updated' END AS kind "
        f"FROM ({a}) AS a FULL OUTER JOIN ({b}) AS b "
        "ON a.entity_type = b.entity_type AND a.match = b.match AND a.nth = b.nth) AS d "
        "WHERE kind <> 'unchanged' GROUP BY entity_type, kind ORDER BY first",
        params,
    ).fetchall()
    counts: dict[str, dict[str, int]] = {"added": {}, "removed": {}, "updated": {}}
    for entity_type, kind, count, _ in rows:
        counts[kind][entity_type] = int(count)
    return counts


def scenario_changes(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, list[Any]]:
    """Changes of name, description and tags: ``{field: [old, new]}``."""
    return {field: [old[field], new[field]] for field in ("name", "description", "tags") if old[field] != new[field]}
