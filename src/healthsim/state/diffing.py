"""Comparing two scenarios, or two versions of one, inside the database.

Entities are matched per type by stored ``entity_id`` (and, when an id repeats, by its
occurrence: the first with the first); entities without an id of their own that found no
partner are then paired in order (the first with the first). A matched pair is unchanged
when it is the same JSON value (:func:`same_json`): the same JSON types at every place
(``true`` is not ``1``, and ``37`` is not ``37.0``: the store keeps the text as written and
gives back an ``int`` or a ``float``), numbers equal within a type (``1.0`` and ``1.00`` are
one float), strings equal whatever their escapes, objects with the same members whatever
their order (an entity whose keys only moved has no field that changed). "Changed" and the
list of changed fields are one judgement, so a changed entity always names a field.

Counting happens in SQL where it can: pairs whose stored texts are certainly the same JSON
(the engine's ``json_equal``) are unchanged without being read; only the others (edited
entities, or text that differs in form only) are parsed, in bounded pages, to decide. The
answer stays small for any size: counts per type, up to 10 example ids per kind, and for
changed examples the field paths that differ.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterable, Mapping
from typing import Any

import orjson

from ._engines import Connection
from .entities import id_fields, raw_entity_id
from .history import ENTITY_HISTORY, version_rows_sql
from .reading import BIG_INT_PATTERN

__all__ = ["EXAMPLES", "change_counts", "changed_paths", "diff_rows", "same_json", "scenario_changes"]

#: Example ids per kind of change and type.
EXAMPLES = 10
_KINDS = ("added", "removed", "changed", "unchanged")
_MISSING = object()  # a member one side lacks
#: Pairs parsed at a time to decide whether they changed.
_PAGE = 2000
_BIG_INT = re.compile(BIG_INT_PATTERN)


def _version_rows(sid: uuid.UUID, version: int | None) -> tuple[str, dict[str, Any]]:
    """SQL and parameters of a side's rows: a version's, or the current ones (None)."""
    if version is None:
        rows = "SELECT id, entity_type, entity_id, entity_data FROM scenario_entities WHERE scenario_id = $sid"
        return rows, {"sid": sid}
    return version_rows_sql(), {"sid": sid, "version": version}


def _has_own_id(con: Connection, column: str, types: Iterable[str]) -> str:
    """SQL: whether the entity in JSON ``column`` (of a row with ``entity_type``) has an
    id of its own (a string or a number in one of its type's id fields), as
    :func:`~.entities.raw_entity_id` decides."""
    cases = []
    for entity_type in types:
        checks = " OR ".join(con.engine.has_scalar(column, field) for field in id_fields(entity_type))
        quoted = entity_type.replace("'", "''")
        cases.append(f"WHEN '{quoted}' THEN COALESCE({checks}, false)")  # (NULL: no such field)
    return f"CASE entity_type {' '.join(cases)} ELSE false END" if cases else "false"


def _match_rows(con: Connection, a: tuple[str, dict[str, Any]], b: tuple[str, dict[str, Any]]) -> None:
    """Match the rows of two sides (SQL and parameters each) into the temporary table
    ``_hs_diff`` (``entity_type, entity_id, position, old, new, kind``).

    Rows match per type by stored id (a repeated id by occurrence, numbered only when an
    id repeats: a window over every row costs about as much as the join). Then entities
    without an id of their own that found no partner are paired in order: an overwrite
    gives them new stored UUIDs, and the same entities saved again are no change. Only
    those left-over rows are looked into for an own id.
    """
    for table, (rows, params) in (("_hs_diff_a", a), ("_hs_diff_b", b)):
        con.execute(
            f"{con.engine.create_temp(con, table)} AS SELECT entity_type, entity_id, entity_data, id FROM ({rows}) AS r",
            params,
        )
    repeats = con.execute(
        "SELECT EXISTS (SELECT 1 FROM _hs_diff_a GROUP BY entity_type, entity_id HAVING count(*) > 1) "
        "OR EXISTS (SELECT 1 FROM _hs_diff_b GROUP BY entity_type, entity_id HAVING count(*) > 1)"
    ).fetchall()[0][0]
    nth = "row_number() OVER (PARTITION BY entity_type, entity_id ORDER BY id)" if repeats else "1"
    con.execute(
        f"{con.engine.create_temp(con, '_hs_diff')} AS SELECT COALESCE(a.entity_type, b.entity_type) AS entity_type, "
        "COALESCE(a.entity_id, b.entity_id) AS entity_id, COALESCE(b.id, a.id) AS position, "
        "a.entity_data AS old, b.entity_data AS new, "
        "CASE WHEN a.entity_id IS NULL THEN 'added' WHEN b.entity_id IS NULL THEN 'removed' "
        f"WHEN {con.engine.json_equal('a.entity_data', 'b.entity_data')} THEN 'unchanged' ELSE 'maybe' END AS kind "
        f"FROM (SELECT *, {nth} AS nth FROM _hs_diff_a) AS a FULL OUTER JOIN (SELECT *, {nth} AS nth FROM _hs_diff_b) AS b "
        "ON a.entity_type = b.entity_type AND a.entity_id = b.entity_id AND a.nth = b.nth"
    )
    _pair_in_order(con)


def _pair_in_order(con: Connection) -> None:
    """Pair, per type and in order, the removed and the added entities of ``_hs_diff``
    that have no id of their own (see :func:`_match_rows`)."""
    types = [
        t
        for (t,) in con.execute(
            "SELECT DISTINCT entity_type FROM _hs_diff WHERE kind IN ('added', 'removed')"
        ).fetchall()
    ]
    if not types:
        return

    def side(kind: str, column: str) -> str:
        return (
            f"SELECT entity_type, entity_id, position, {column}, "
            "row_number() OVER (PARTITION BY entity_type ORDER BY position) AS k "
            f"FROM _hs_diff WHERE kind = '{kind}' AND NOT ({_has_own_id(con, column, types)})"
        )

    con.execute(
        f"{con.engine.create_temp(con, '_hs_pairs')} AS SELECT o.entity_type, n.entity_id, n.position, o.old, n.new, "
        f"o.position AS old_position FROM ({side('removed', 'old')}) AS o "
        f"JOIN ({side('added', 'new')}) AS n ON o.entity_type = n.entity_type AND o.k = n.k"
    )
    if not con.execute("SELECT count(*) FROM _hs_pairs").fetchall()[0][0]:
        con.execute("DROP TABLE IF EXISTS _hs_pairs")
        return
    con.execute("DELETE FROM _hs_diff WHERE kind = 'removed' AND position IN (SELECT old_position FROM _hs_pairs)")
    con.execute("DELETE FROM _hs_diff WHERE kind = 'added' AND position IN (SELECT position FROM _hs_pairs)")
    con.execute(
        "INSERT INTO _hs_diff SELECT entity_type, entity_id, position, old, new, "
        f"CASE WHEN {con.engine.json_equal('old', 'new')} THEN 'unchanged' ELSE 'maybe' END FROM _hs_pairs"
    )
    con.execute("DROP TABLE IF EXISTS _hs_pairs")


def _drop_match_tables(con: Connection) -> None:
    for table in ("_hs_diff_a", "_hs_diff_b", "_hs_diff", "_hs_diff_maybe"):
        con.execute(f"DROP TABLE IF EXISTS {table}")


def same_json(a: Any, b: Any) -> bool:
    """Whether two parsed JSON values are the same JSON: equal, with JSON types kept apart
    at every depth (``True`` is not ``1``, ``37`` is not ``37.0``) and object members
    compared whatever their order."""
    if type(a) is not type(b):
        return False
    if type(a) is dict:
        return a.keys() == b.keys() and all(same_json(value, b[key]) for key, value in a.items())
    if type(a) is list:
        return len(a) == len(b) and all(same_json(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def changed_paths(old: Any, new: Any) -> list[str]:
    """The field paths that differ between two entities: top-level members, and one level
    into objects on both sides (``address.city``). Empty exactly when :func:`same_json`
    holds (a change deeper down names the member of the second level holding it)."""
    if not isinstance(old, dict) or not isinstance(new, dict):
        return [] if same_json(old, new) else ["$"]
    paths: list[str] = []
    for key in dict.fromkeys([*old, *new]):
        a, b = old.get(key, _MISSING), new.get(key, _MISSING)
        if same_json(a, b):
            continue
        if type(a) is dict and type(b) is dict:
            paths += [
                f"{key}.{inner}"
                for inner in dict.fromkeys([*a, *b])
                if not same_json(a.get(inner, _MISSING), b.get(inner, _MISSING))
            ]
        else:
            paths.append(key)
    return paths


def _parse(text: str) -> Any:
    """Stored JSON text, parsed fast unless it may hold an integer orjson would not keep."""
    return json.loads(text) if _BIG_INT.search(text) else orjson.loads(text)


def _display_id(entity_type: str, text: str, stored: uuid.UUID) -> str:
    """The entity's own id when it has one, else its stored UUID."""
    try:
        own = raw_entity_id(json.loads(text), id_fields(entity_type))
    except ValueError:
        own = None
    return own if own is not None else str(stored)


def _empty_counts() -> dict[str, Any]:
    return {kind: 0 for kind in _KINDS} | {"examples": {"added": [], "removed": [], "changed": []}}


def diff_rows(
    con: Connection, a: tuple[uuid.UUID, int | None], b: tuple[uuid.UUID, int | None]
) -> dict[str, dict[str, Any]]:
    """Per type: counts of added, removed, changed and unchanged entities from ``a`` to
    ``b`` (each a scenario id and a version, None for the current rows), and examples."""
    _match_rows(con, _version_rows(*a), _version_rows(*b))
    found: dict[str, dict[str, Any]] = {}
    order = con.execute("SELECT entity_type, min(position) AS first FROM _hs_diff GROUP BY 1 ORDER BY first").fetchall()
    for entity_type, _ in order:
        found[entity_type] = _empty_counts()
    # 'maybe': matched, with texts that are not certainly the same JSON; decided below.
    for entity_type, kind, count in con.execute(
        "SELECT entity_type, kind, count(*) FROM _hs_diff WHERE kind <> 'maybe' GROUP BY 1, 2"
    ).fetchall():
        found[entity_type][kind] = int(count)
    examples = con.execute(
        "SELECT entity_type, kind, entity_id, old::TEXT, new::TEXT FROM (SELECT *, row_number() OVER "
        "(PARTITION BY entity_type, kind ORDER BY position) AS n FROM _hs_diff WHERE kind IN ('added', 'removed')) AS d "
        f"WHERE n <= {EXAMPLES} ORDER BY entity_type, kind, n"
    ).fetchall()
    for entity_type, kind, stored, old, new in examples:
        found[entity_type]["examples"][kind].append(_display_id(entity_type, new if new is not None else old, stored))
    _decide_maybe(con, found)
    _drop_match_tables(con)
    return found


def _decide_maybe(con: Connection, types: dict[str, dict[str, Any]]) -> None:
    """Count the 'maybe' pairs of ``_hs_diff`` as changed (their changed fields found) or
    unchanged, a page at a time in entity order, so memory stays bounded; the first changed
    ones per type are the examples."""
    con.execute(
        f"{con.engine.create_temp(con, '_hs_diff_maybe')} AS SELECT row_number() OVER (ORDER BY position) AS n, "
        "entity_type, entity_id, old::TEXT AS old, new::TEXT AS new FROM _hs_diff WHERE kind = 'maybe'"
    )
    total = con.execute("SELECT count(*) FROM _hs_diff_maybe").fetchall()[0][0]
    for start in range(0, int(total), _PAGE):
        rows = con.execute(
            "SELECT entity_type, entity_id, old, new FROM _hs_diff_maybe WHERE n > $start AND n <= $end ORDER BY n",
            {"start": start, "end": start + _PAGE},
        ).fetchall()
        for entity_type, stored, old, new in rows:
            fields = changed_paths(_parse(old), _parse(new))
            counts = types.setdefault(entity_type, _empty_counts())
            if not fields:
                counts["unchanged"] += 1
                continue
            counts["changed"] += 1
            if len(counts["examples"]["changed"]) < EXAMPLES:
                counts["examples"]["changed"].append({"id": _display_id(entity_type, new, stored), "fields": fields})


def change_counts(con: Connection, scenario_id: uuid.UUID, version: int) -> dict[str, dict[str, int]]:
    """What a change that replaced every row of a scenario (an overwrite, an import over
    it, a restore in place) really changed: from the rows it archived as ``version`` to
    the current rows, per type, matched as :func:`diff_rows` matches them:
    ``{"added": {type: n}, "removed": {...}, "updated": {...}}`` (``updated``: matched
    entities whose JSON differs). Counted in the database; only pairs whose texts differ
    are read, a page at a time, to tell a real change from one of form (:func:`same_json`).
    """
    old = (
        f"SELECT row_id AS id, entity_type, entity_id, entity_data FROM {ENTITY_HISTORY} "
        "WHERE scenario_id = $sid AND to_version = $version"
    )
    _match_rows(con, (old, {"sid": scenario_id, "version": version}), _version_rows(scenario_id, None))
    rows = con.execute(
        "SELECT entity_type, kind, count(*), min(position) AS first FROM _hs_diff "
        "WHERE kind IN ('added', 'removed') GROUP BY entity_type, kind ORDER BY first"
    ).fetchall()
    decided: dict[str, dict[str, Any]] = {}
    _decide_maybe(con, decided)
    _drop_match_tables(con)
    counts: dict[str, dict[str, int]] = {"added": {}, "removed": {}, "updated": {}}
    for entity_type, kind, count, _ in rows:
        counts[kind][entity_type] = int(count)
    for entity_type, found in decided.items():
        if found["changed"]:
            counts["updated"][entity_type] = found["changed"]
    return counts


def scenario_changes(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, list[Any]]:
    """Changes of name, description and tags: ``{field: [old, new]}``."""
    return {field: [old[field], new[field]] for field in ("name", "description", "tags") if old[field] != new[field]}
