"""History: every change to a scenario is a version, and nothing is lost by mistake.

The specification's three tables hold the current state only. History lives in tables of
its own (schema migration 3) and costs what changed, not the scenario's size:

- :data:`VERSIONS` — one row per version: when, which operation, what changed (counts per
  type), and the scenario's fields as they were (name, description, tags, metadata, counts).
- :data:`BIRTHS` — per version, the ranges of ``scenario_entities.id`` it wrote (an append
  writes one range; an entity replaced in place is a range of one id). A row was written by
  the latest version whose ranges hold its id (ids only grow, so a reused id belongs to the
  later version).
- :data:`ENTITY_HISTORY` — rows that a change removed or replaced, with the versions they
  were part of: ``from_version <= v < to_version``.

So version ``v`` is: the current rows written at or before ``v``, plus the archived rows
alive at ``v``; in id order, which is the order of the entities. A scenario that is deleted
keeps its versions (its last one is a ``delete``), and can be restored until retention
removes it. Retention keeps every version made in the last :func:`keep_version_days` days
and, beyond that, the last :func:`keep_versions` versions of each scenario; a deleted
scenario keeps at least its delete marker and the version before it (what a restore brings
back), for :func:`keep_deleted_days` days. A day count may be ``inf``/``forever``.

Each version says who made it (``changed_by``, migration 4 on DuckDB and 3 on PostgreSQL):
the name given with :func:`acting_as` (a server passes its caller's token name), else the
operating-system user.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
import uuid
from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple

from ._engines import Connection
from ._engines.ddl import BIRTHS, ENTITY_HISTORY, VERSIONS
from .actor import acting_as, current_actor
from .errors import InvalidInputError
from .reading import ScenarioHeader, iso_utc
from .validation import as_uuid, storable
from .visibility import visible_tags_sql

__all__ = [
    "BIRTHS",
    "acting_as",
    "current_actor",
    "days_text",
    "field_changes",
    "keep_version_days",
    "namesake_hint",
    "older_than",
    "record_births",
    "ENTITY_HISTORY",
    "VERSIONS",
    "apply_retention",
    "archive_rows",
    "current_version",
    "expired_deleted",
    "find_deleted",
    "forget_scenario",
    "keep_deleted_days",
    "keep_versions",
    "latest_versions",
    "PastVersion",
    "record_version",
    "paged_rows",
    "trash_list",
    "version_list",
    "version_record",
    "version_counts",
    "version_rows_sql",
]

_DEFAULT_KEEP_VERSIONS = 20
_DEFAULT_KEEP_VERSION_DAYS = 7.0
_DEFAULT_KEEP_DELETED_DAYS = 30.0
#: Words a day count may be given as, meaning "keep forever".
FOREVER_WORDS = ("inf", "infinity", "forever")
#: Metadata keys the library itself writes at every change: not a change of the user's metadata.
_OWN_METADATA = ("provenance", "entity_types", "exact_json_rows")


def _env_number(name: str, default: float, *, whole: bool) -> float:
    """A retention variable's value; invalid text is refused by name, never read as 0.

    Day counts accept ``inf``/``infinity``/``forever`` (and numbers too large for a date,
    such as ``1e308``) as "keep forever": :func:`older_than` never overflows on them.
    """
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    value: float
    if not whole and raw.lower() in FOREVER_WORDS:
        return math.inf
    try:
        value = int(raw) if whole else float(raw)
    except (ValueError, OverflowError):
        value = -1
    if not value >= (1 if whole else 0):  # (NaN too)
        kind = "a whole number of at least 1" if whole else "a number of days (0 or more, or 'forever')"
        raise InvalidInputError(f"{name}={raw!r} is not {kind}; e.g. {name}={int(default)}")
    return value


def keep_versions() -> int:
    """Versions kept per scenario beyond the recent ones (``HEALTHSIM_KEEP_VERSIONS``,
    default 20), read at each call."""
    return int(_env_number("HEALTHSIM_KEEP_VERSIONS", _DEFAULT_KEEP_VERSIONS, whole=True))


def keep_version_days() -> float:
    """Days every version is kept (``HEALTHSIM_KEEP_VERSION_DAYS``, default 7; ``inf``
    or ``forever``: every version), read at each call."""
    return _env_number("HEALTHSIM_KEEP_VERSION_DAYS", _DEFAULT_KEEP_VERSION_DAYS, whole=False)


def keep_deleted_days() -> float:
    """Days a deleted scenario stays restorable (``HEALTHSIM_KEEP_DELETED_DAYS``, default
    30; ``inf`` or ``forever``: until purged), read at each call."""
    return _env_number("HEALTHSIM_KEEP_DELETED_DAYS", _DEFAULT_KEEP_DELETED_DAYS, whole=False)


def days_text(days: float) -> str:
    """A day count as a person reads it: ``30 days``, ``forever``."""
    return "forever" if math.isinf(days) else f"{days:g} days"


def older_than(now: _dt.datetime, days: float) -> _dt.datetime | None:
    """The time ``days`` before ``now``; None when that is before any date there is (keep
    forever). Never raises: ``timedelta(days=1e308)`` and ``now - timedelta(days=10**6)``
    overflow, and so did every change under such a setting."""
    try:
        return now - _dt.timedelta(days=days)
    except (OverflowError, ValueError):
        return None


def current_version(con: Connection, scenario_id: uuid.UUID) -> int:
    """The scenario's latest version number (0 if it has none)."""
    return int(
        con.execute(
            f"SELECT COALESCE(max(version), 0) FROM {VERSIONS} WHERE scenario_id = ?", [scenario_id]
        ).fetchall()[0][0]
    )


def version_counts(con: Connection, scenario_id: uuid.UUID, version: int) -> dict[str, int] | None:
    """Entities per type of one recorded version (None if it is not recorded)."""
    rows = con.execute(
        f"SELECT entities_by_type FROM {VERSIONS} WHERE scenario_id = ? AND version = ?", [scenario_id, version]
    ).fetchall()
    return {str(t): int(n) for t, n in json.loads(rows[0][0]).items()} if rows else None


def latest_versions(con: Connection, scenario_ids: list[uuid.UUID]) -> dict[uuid.UUID, tuple[int, dict[str, int]]]:
    """Each scenario's latest version and its entities per type, in saved type order (one query)."""
    rows = con.execute(
        f"SELECT v.scenario_id, v.version, v.entities_by_type FROM {VERSIONS} v WHERE v.scenario_id = ANY($ids) "
        f"AND v.version = (SELECT max(w.version) FROM {VERSIONS} w WHERE w.scenario_id = v.scenario_id)",
        {"ids": scenario_ids},
    ).fetchall()
    return {sid: (int(v), {str(t): int(n) for t, n in json.loads(by_type).items()}) for sid, v, by_type in rows}


def _birth_sql(con: Connection, scenario_id: uuid.UUID, alias: str = "e") -> tuple[str, str]:
    """SQL of the version that wrote current row ``alias`` (0: before every version
    kept), as ``(a join to add after the row's table, the expression)``; parameter ``$sid``.

    The latest version whose ranges hold the row's id. Read without a range lookup per row
    (with one range per entity replaced in place, that was rows × ranges): a range starting
    at the row's id is found by an equality join, and of the ranges of more than one id
    (at most one per version) the latest starting at or below the row's id wrote it, because
    a version's new ids start above every id in use when it is made, so no row that was
    there before can lie in a later version's range. Those few starts are read here and
    become a binary search in SQL.
    """
    spans = con.execute(
        f"SELECT first_id, version FROM {BIRTHS} WHERE scenario_id = ? AND first_id < last_id ORDER BY first_id",
        [scenario_id],
    ).fetchall()
    steps: list[tuple[int, int]] = []  # from this id on, written by at least this version
    for first, version in spans:
        best = max(version, steps[-1][1]) if steps else version
        if steps and steps[-1][0] == first:
            steps[-1] = (first, best)
        elif not steps or best > steps[-1][1]:
            steps.append((first, best))

    def search(low: int, high: int) -> str:  # the step of the row's id is one of low..high (-1: none)
        if low == high:
            return str(steps[low][1] if low >= 0 else 0)
        middle = (low + high + 1) // 2
        return (
            f"CASE WHEN {alias}.id < {steps[middle][0]} THEN {search(low, middle - 1)} ELSE {search(middle, high)} END"
        )

    join = (
        f"LEFT JOIN (SELECT first_id, max(version) AS version FROM {BIRTHS} WHERE scenario_id = $sid "
        f"GROUP BY first_id) AS _hs_born ON _hs_born.first_id = {alias}.id"
    )
    return join, f"GREATEST(COALESCE(_hs_born.version, 0), {search(-1, len(steps) - 1)})"


def archive_rows(
    con: Connection,
    scenario_id: uuid.UUID,
    version: int,
    where: str = "true",
    params: Mapping[str, Any] | None = None,
) -> int:
    """Keep the current rows matching ``where`` (SQL over ``e``) as history ending at
    ``version``, before the caller removes or replaces them. Returns how many."""
    join, birth = _birth_sql(con, scenario_id)
    return int(
        con.execute(
            f"INSERT INTO {ENTITY_HISTORY} SELECT e.scenario_id, e.id, e.entity_type, e.entity_id, e.entity_data, "
            f"{birth}, $version FROM scenario_entities e {join} WHERE e.scenario_id = $sid AND ({where})",
            {"sid": scenario_id, "version": version, **(params or {})},
        ).fetchall()[0][0]
    )


def record_births(con: Connection, scenario_id: uuid.UUID, version: int, births: Iterable[tuple[int, int]]) -> None:
    """Record the id ranges a version wrote (before its changes are counted: they tell
    that version's rows from the one before)."""
    ranges = [(scenario_id, version, lo, hi) for lo, hi in births if lo <= hi]
    if ranges:
        con.executemany(f"INSERT INTO {BIRTHS} VALUES (?, ?, ?, ?)", ranges)


def _stored_changes(changes: Mapping[str, Mapping[str, Any]]) -> str:
    """The ``changes`` column: entity counts without zeros, and the scenario's fields."""
    kept: dict[str, Any] = {}
    for key, value in changes.items():
        if key == "scenario":
            if value:
                kept[key] = dict(value)
        elif any(value.values()):
            kept[key] = {t: n for t, n in value.items() if n}
    return json.dumps(kept, ensure_ascii=False)


def record_version(
    con: Connection,
    scenario_id: uuid.UUID,
    version: int,
    now: _dt.datetime,
    operation: str,
    *,
    fields: Mapping[str, Any],
    changes: Mapping[str, Mapping[str, Any]],
    entities_by_type: Mapping[str, int],
    births: Iterable[tuple[int, int]] = (),
    by: str | None = None,
) -> None:
    """Write a version's row and the id ranges it wrote (inside the change's transaction).

    Args:
        fields: the scenario as it is after the change: ``name``, ``description``,
            ``tags``, ``created_at``, ``metadata`` (a dict).
        changes: ``added``/``removed``/``updated`` (``{type: n}``) and ``scenario``
            (``{field: [old, new]}``, see :func:`field_changes`).
        by: who made it (default: :func:`current_actor`).
    """
    con.execute(
        f"INSERT INTO {VERSIONS} (scenario_id, version, changed_at, operation, name, description, tags, "
        "created_at, metadata, changes, entity_count, entities_by_type, changed_by) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            scenario_id,
            version,
            now,
            operation,
            fields["name"],
            fields.get("description"),
            json.dumps(list(fields.get("tags") or []), ensure_ascii=False),
            fields.get("created_at"),
            json.dumps(fields.get("metadata") or {}, ensure_ascii=False, allow_nan=False),
            _stored_changes(changes),
            sum(entities_by_type.values()),
            json.dumps(dict(entities_by_type), ensure_ascii=False),
            by if by is not None else current_actor(),
        ],
    )
    record_births(con, scenario_id, version, births)


def field_changes(con: Connection, scenario_id: uuid.UUID, version: int, fields: Mapping[str, Any]) -> dict[str, Any]:
    """How the scenario's own fields differ from recorded ``version`` to ``fields``:
    ``{"name": [old, new], "description": [old, new], "tags": [old, new],
    "metadata": [keys that differ]}`` (only those that differ; metadata the library writes
    at every change, such as its provenance, does not count)."""
    rows = con.execute(
        f"SELECT name, description, tags, metadata FROM {VERSIONS} WHERE scenario_id = ? AND version = ?",
        [scenario_id, version],
    ).fetchall()
    if not rows:
        return {}
    name, description, tags, metadata = rows[0]
    old = {"name": name, "description": description, "tags": json.loads(tags)}
    new = {"name": fields["name"], "description": fields.get("description"), "tags": list(fields.get("tags") or [])}
    found: dict[str, Any] = {key: [old[key], new[key]] for key in old if old[key] != new[key]}
    before = {k: v for k, v in (json.loads(metadata) if metadata else {}).items() if k not in _OWN_METADATA}
    after = {k: v for k, v in (fields.get("metadata") or {}).items() if k not in _OWN_METADATA}
    keys = [k for k in dict.fromkeys([*before, *after]) if before.get(k, _ABSENT) != after.get(k, _ABSENT)]
    if keys:
        found["metadata"] = keys
    return found


_ABSENT = object()


def version_rows_sql(columns: str = "id, entity_type, entity_id, entity_data") -> str:
    """SQL of a version's entity rows (parameters ``$sid``, ``$version``), in no order;
    ``id`` orders them.

    The current rows no later version wrote: below the first id of every later range of
    more than one id (ids of a later version start above every row there before it, see
    :func:`_birth_sql`), and not the start of a later range (an entity replaced in place,
    or a one-entity add) — two lookups made once, not one per row. Plus the archived rows
    alive at the version.
    """
    later = f"FROM {BIRTHS} b WHERE b.scenario_id = $sid AND b.version > $version"
    return (
        f"SELECT {columns} FROM (SELECT e.id, e.entity_type, e.entity_id, e.entity_data FROM scenario_entities e "
        f"WHERE e.scenario_id = $sid "
        f"AND e.id < COALESCE((SELECT min(b.first_id) {later} AND b.first_id < b.last_id), 2147483648) "
        f"AND NOT EXISTS (SELECT 1 {later} AND b.first_id = e.id) "
        f"UNION ALL SELECT row_id AS id, entity_type, entity_id, entity_data FROM {ENTITY_HISTORY} "
        "WHERE scenario_id = $sid AND from_version <= $version AND $version < to_version) AS v"
    )


def apply_retention(
    con: Connection,
    scenario_id: uuid.UUID,
    version: int,
    keep: int,
    *,
    days: float = 0.0,
    now: _dt.datetime | None = None,
) -> None:
    """Forget what only versions older than the kept ones needed (inside a change).

    Kept: the last ``keep`` versions, every version made in the last ``days`` days
    before ``now``, and every later one (what is kept is always the newest versions). A
    scenario in the trash keeps at least its delete marker and the version before it:
    the one a restore brings back (``purge_history(keep_versions=1)`` emptied the trash).
    """
    latest = con.execute(
        f"SELECT operation FROM {VERSIONS} WHERE scenario_id = ? AND version = ?", [scenario_id, version]
    ).fetchall()
    if latest and latest[0][0] == "delete":
        keep = max(keep, 2)
    oldest = version - keep + 1
    if oldest <= 1:
        return
    if days > 0:
        since = older_than(now or _dt.datetime.now(_dt.UTC).replace(tzinfo=None), days)
        if since is None:  # keep forever
            return
        recent = con.execute(
            f"SELECT min(version) FROM {VERSIONS} WHERE scenario_id = ? AND changed_at >= ?", [scenario_id, since]
        ).fetchall()[0][0]
        if recent is not None:
            oldest = min(oldest, int(recent))
            if oldest <= 1:
                return
    con.execute(f"DELETE FROM {VERSIONS} WHERE scenario_id = ? AND version < ?", [scenario_id, oldest])
    # Rows written before the oldest kept version count as written before every version kept.
    con.execute(f"DELETE FROM {BIRTHS} WHERE scenario_id = ? AND version < ?", [scenario_id, oldest])
    con.execute(f"DELETE FROM {ENTITY_HISTORY} WHERE scenario_id = ? AND to_version <= ?", [scenario_id, oldest])


def find_deleted(con: Connection, name: str) -> uuid.UUID | None:
    """The most recently deleted scenario (in the trash) of that name or id, if any."""
    key = name.strip() if isinstance(name, str) else ""
    if not storable(key):  # no name holds a NUL or a lone surrogate
        return None
    # An id in any form a lookup takes ("{id}", "urn:uuid:id", 32 hex digits), as its canonical text.
    as_id = as_uuid(key)
    params: dict[str, Any] = {"key": key, "id": None if as_id is None else str(as_id)}
    visible = visible_tags_sql(con, "tags", params)  # (the caller's grant: the tags it had when deleted)
    rows = con.execute(
        f"SELECT scenario_id FROM {VERSIONS} v WHERE operation = 'delete' "
        f"AND version = (SELECT max(version) FROM {VERSIONS} w WHERE w.scenario_id = v.scenario_id) "
        "AND scenario_id NOT IN (SELECT scenario_id FROM scenarios) "
        f"AND (name = $key OR CAST(scenario_id AS VARCHAR) = CAST($id AS VARCHAR)) AND {visible} "
        "ORDER BY changed_at DESC LIMIT 1",
        params,
    ).fetchall()
    return rows[0][0] if rows else None


def namesake_hint(action: str, current: uuid.UUID | str, trashed: uuid.UUID | str) -> str:
    """What to do when a name is a current scenario's and a deleted one's, and ``action``
    (``"purge"`` or ``"restore"``) could mean either: name the deleted one by its id."""
    if action == "purge":
        return (
            f"a deleted scenario of that name is in the trash too (id {trashed}): to purge one, give its id "
            f"({current} is the current one, {trashed} the deleted one)"
        )
    return (
        f"a deleted scenario of that name is in the trash too (id {trashed}): to bring it back, give its id "
        f"and a free name (restore_scenario({str(trashed)!r}, new_name=...), or healthsim restore {trashed} "
        "--as NAME); to change the current one, give the version to restore (scenario_history lists them)"
    )


def forget_scenario(con: Connection, scenario_id: uuid.UUID) -> None:
    """Remove every trace of a scenario's history (a purged delete)."""
    for table in (VERSIONS, BIRTHS, ENTITY_HISTORY):
        con.execute(f"DELETE FROM {table} WHERE scenario_id = ?", [scenario_id])


def expired_deleted(con: Connection, now: _dt.datetime, days: float) -> list[uuid.UUID]:
    """Deleted scenarios whose deletion is older than ``days`` (none when ``days`` reaches
    before any date: kept forever)."""
    since = older_than(now, days)
    if since is None:
        return []
    return [
        sid
        for (sid,) in con.execute(
            f"SELECT scenario_id FROM {VERSIONS} v WHERE operation = 'delete' "
            f"AND version = (SELECT max(version) FROM {VERSIONS} w WHERE w.scenario_id = v.scenario_id) "
            "AND changed_at < ? AND scenario_id NOT IN (SELECT scenario_id FROM scenarios)",
            [since],
        ).fetchall()
    ]


class PastVersion(NamedTuple):
    """A version's scenario fields, as :class:`~.reading.ScenarioHeader` and tags."""

    header: ScenarioHeader
    tags: list[str]
    operation: str
    entities_by_type: dict[str, int]


def version_record(con: Connection, scenario_id: uuid.UUID, version: int, label: str) -> PastVersion:
    """One retained version's fields.

    Raises:
        InvalidInputError: no such version (or it was a deletion), or it is past
            retention; the message says which versions there are.
    """
    if isinstance(version, bool) or not isinstance(version, int):
        raise InvalidInputError(f"version must be a whole number, not {version!r}")
    row = con.execute(
        f"SELECT name, description, created_at, changed_at, metadata, tags, operation, entities_by_type "
        f"FROM {VERSIONS} WHERE scenario_id = ? AND version = ?",
        [scenario_id, version],
    ).fetchall()
    lowest, highest = con.execute(
        f"SELECT min(version), max(version) FROM {VERSIONS} WHERE scenario_id = ?", [scenario_id]
    ).fetchall()[0]
    if not row or row[0][6] == "delete":
        if row or lowest is None or version > highest or version < 1:
            kept = "" if lowest is None else f"; its versions are {lowest} to {highest}"
            what = "is its deletion" if row else "does not exist"
            raise InvalidInputError(f"version {version} of scenario {label!r} {what}{kept}")
        # Not "keeps the last 20": purge_history may have kept fewer, and the variables may
        # have changed since; say what is true.
        raise InvalidInputError(
            f"version {version} of scenario {label!r} is past retention and was removed from the history "
            f"(by HEALTHSIM_KEEP_VERSION_DAYS / HEALTHSIM_KEEP_VERSIONS or purge_history); "
            f"its versions are {lowest} to {highest}"
        )
    name, description, created_at, changed_at, metadata, tags, operation, by_type = row[0]
    header = ScenarioHeader.from_row((scenario_id, name, description, created_at, changed_at, metadata))
    return PastVersion(header, json.loads(tags), operation, json.loads(by_type))


def version_list(con: Connection, scenario_id: uuid.UUID, label: str, limit: int) -> dict[str, Any]:
    """``scenario_history``'s answer: the retained versions, newest first."""
    rows = con.execute(
        f"SELECT version, changed_at, operation, changes, entity_count, changed_by, count(*) OVER () "
        f"FROM {VERSIONS} WHERE scenario_id = ? ORDER BY version DESC LIMIT ?",
        [scenario_id, limit],
    ).fetchall()
    versions = []
    for version, at, operation, changes, count, by, _ in rows:
        parsed = json.loads(changes)
        versions.append(
            {
                "version": version,
                "at": iso_utc(at),
                "by": by,
                "operation": operation,
                "changes": {key: parsed.get(key, {}) for key in ("added", "removed", "updated", "scenario")},
                "entity_count": count,
            }
        )
    return {
        "name": label,
        "scenario_id": str(scenario_id),
        "versions": versions,
        "total_count": rows[0][6] if rows else 0,
    }


def paged_rows(con: Connection, sql: str, params: dict[str, Any], *, total_at: int) -> tuple[list[Any], int]:
    """The rows of ``sql`` (a page: ``$limit`` and ``$offset``) and the number of rows of all
    pages, which each row carries at ``total_at`` (``count(*) OVER ()``). A page past the last
    has no row to carry it: the first row is read for it then."""
    rows = con.execute(sql, params).fetchall()
    if rows or not params["offset"]:
        return rows, rows[0][total_at] if rows else 0
    first = con.execute(sql, {**params, "limit": 1, "offset": 0}).fetchall()
    return rows, first[0][total_at] if first else 0


def trash_list(con: Connection, tag: str | None, search: str | None, limit: int, offset: int = 0) -> dict[str, Any]:
    """Deleted scenarios that can be restored, as list entries of how they were when
    deleted (plus ``deleted_at``), newest deletion first; filtered and paged as
    list_scenarios does."""
    params: dict[str, Any] = {"tag": tag, "search": search, "limit": limit, "offset": offset}
    visible = visible_tags_sql(con, "tags", params)  # (the caller's grant)
    rows, total = paged_rows(
        con,
        f"""SELECT scenario_id, name, description, tags, created_at, changed_at, changes, version - 1,
                   count(*) OVER () FROM {VERSIONS} v
            WHERE operation = 'delete'
              AND version = (SELECT max(version) FROM {VERSIONS} w WHERE w.scenario_id = v.scenario_id)
              AND scenario_id NOT IN (SELECT scenario_id FROM scenarios)
              AND (CAST($tag AS VARCHAR) IS NULL OR {con.engine.json_text_in("tags", "lower(CAST($tag AS VARCHAR))")})
              AND (CAST($search AS VARCHAR) IS NULL OR strpos(lower(name), lower(CAST($search AS VARCHAR))) > 0
                   OR strpos(lower(COALESCE(description, '')), lower(CAST($search AS VARCHAR))) > 0)
              AND {visible}
            ORDER BY changed_at DESC LIMIT $limit OFFSET $offset""",
        params,
        total_at=8,
    )
    entries = []
    for sid, name, description, tags, created_at, deleted_at, changes, version, _ in rows:
        counts = json.loads(changes).get("removed", {})
        entries.append(
            {
                "scenario_id": str(sid),
                "name": name,
                "version": version,
                "description": description,
                "tags": json.loads(tags),
                "created_at": iso_utc(created_at),
                "updated_at": iso_utc(deleted_at),
                "entity_count": sum(counts.values()),
                "entities_by_type": counts,
                "deleted_at": iso_utc(deleted_at),
            }
        )
    return {"scenarios": entries, "total_count": total}
