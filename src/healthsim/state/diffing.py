"""Comparing two scenarios, or two versions of one, inside the database.

Entities are matched per type by stored ``entity_id`` (and, when an id repeats, by its
occurrence: the first with the first). A matched pair is unchanged when it is the same
JSON value (:func:`same_json`): the same JSON types at every place (``true`` is not ``1``,
and ``37`` is not ``37.0``: the store keeps the text as written and gives back an ``int``
or a ``float``), numbers equal within a type (``1.0`` and ``1.00`` are one float), strings
equal whatever their escapes, objects with the same members whatever their order (an
entity whose keys only moved has no field that changed). "Changed" and the list of changed
fields are one judgement, so a changed entity always names a field.

Counting happens in SQL where it can: pairs whose stored texts are certainly the same JSON
(:func:`.dialect.json_equal`) are unchanged without being read; only the others (edited
entities, or text that differs in form only) are parsed, in bounded pages, to decide. The
answer stays small for any size: counts per type, up to 10 example ids per kind, and for
changed examples the field paths that differ.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Mapping
from typing import Any

import duckdb
import orjson

from .dialect import create_temp, json_equal
from .entities import id_fields, raw_entity_id
from .history import version_rows_sql
from .reading import BIG_INT_PATTERN

__all__ = ["EXAMPLES", "changed_paths", "diff_rows", "same_json", "scenario_changes"]

#: Example ids per kind of change and type.
EXAMPLES = 10
_KINDS = ("added", "removed", "changed", "unchanged")
_MISSING = object()  # a member one side lacks
#: Pairs parsed at a time to decide whether they changed.
_PAGE = 2000
_BIG_INT = re.compile(BIG_INT_PATTERN)


def _side_table(con: duckdb.DuckDBPyConnection, table: str, sid: uuid.UUID, version: int | None) -> None:
    """A side's rows, numbered within (type, id) in entity order."""
    params: dict[str, Any] = {"sid": sid}
    if version is None:
        rows = "SELECT id, entity_type, entity_id, entity_data FROM scenario_entities WHERE scenario_id = $sid"
    else:
        rows = version_rows_sql()
        params["version"] = version
    con.execute(
        f"{create_temp(con, table)} AS SELECT entity_type, entity_id, entity_data, id, "
        f"row_number() OVER (PARTITION BY entity_type, entity_id ORDER BY id) AS nth FROM ({rows}) AS r",
        params,
    )


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


def diff_rows(
    con: duckdb.DuckDBPyConnection, a: tuple[uuid.UUID, int | None], b: tuple[uuid.UUID, int | None]
) -> dict[str, dict[str, Any]]:
    """Per type: counts of added, removed, changed and unchanged entities from ``a`` to
    ``b`` (each a scenario id and a version, None for the current rows), and examples."""
    _side_table(con, "_hs_diff_a", *a)
    _side_table(con, "_hs_diff_b", *b)
    # 'maybe': matched, with texts that are not certainly the same JSON; decided below.
    joined = (
        f"SELECT COALESCE(a.entity_type, b.entity_type) AS entity_type, COALESCE(a.entity_id, b.entity_id) AS entity_id, "
        "COALESCE(b.id, a.id) AS position, a.entity_data AS old, b.entity_data AS new, "
        "CASE WHEN a.entity_id IS NULL THEN 'added' WHEN b.entity_id IS NULL THEN 'removed' "
        f"WHEN {json_equal(con, 'a.entity_data', 'b.entity_data')} THEN 'unchanged' ELSE 'maybe' END AS kind "
        "FROM _hs_diff_a a FULL OUTER JOIN _hs_diff_b b ON a.entity_type = b.entity_type "
        "AND a.entity_id = b.entity_id AND a.nth = b.nth"
    )
    con.execute(f"{create_temp(con, '_hs_diff')} AS {joined}")
    types: dict[str, dict[str, Any]] = {}
    order = con.execute("SELECT entity_type, min(position) AS first FROM _hs_diff GROUP BY 1 ORDER BY first").fetchall()
    for entity_type, _ in order:
        types[entity_type] = {kind: 0 for kind in _KINDS} | {"examples": {"added": [], "removed": [], "changed": []}}
    for entity_type, kind, count in con.execute(
        "SELECT entity_type, kind, count(*) FROM _hs_diff WHERE kind <> 'maybe' GROUP BY 1, 2"
    ).fetchall():
        types[entity_type][kind] = int(count)
    examples = con.execute(
        "SELECT entity_type, kind, entity_id, old::TEXT, new::TEXT FROM (SELECT *, row_number() OVER "
        "(PARTITION BY entity_type, kind ORDER BY position) AS n FROM _hs_diff WHERE kind IN ('added', 'removed')) AS d "
        f"WHERE n <= {EXAMPLES} ORDER BY entity_type, kind, n"
    ).fetchall()
    for entity_type, kind, stored, old, new in examples:
        types[entity_type]["examples"][kind].append(_display_id(entity_type, new if new is not None else old, stored))
    _decide_maybe(con, types)
    for table in ("_hs_diff_a", "_hs_diff_b", "_hs_diff", "_hs_diff_maybe"):
        con.execute(f"DROP TABLE IF EXISTS {table}")
    return types


def _decide_maybe(con: duckdb.DuckDBPyConnection, types: dict[str, dict[str, Any]]) -> None:
    """Count the 'maybe' pairs as changed (their changed fields found) or unchanged, a page
    at a time in entity order, so memory stays bounded; the first changed ones per type are
    the examples."""
    con.execute(
        f"{create_temp(con, '_hs_diff_maybe')} AS SELECT row_number() OVER (ORDER BY position) AS n, "
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
            counts = types[entity_type]
            if not fields:
                counts["unchanged"] += 1
                continue
            counts["changed"] += 1
            if len(counts["examples"]["changed"]) < EXAMPLES:
                counts["examples"]["changed"].append({"id": _display_id(entity_type, new, stored), "fields": fields})


def scenario_changes(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, list[Any]]:
    """Changes of name, description and tags: ``{field: [old, new]}``."""
    return {field: [old[field], new[field]] for field in ("name", "description", "tags") if old[field] != new[field]}
