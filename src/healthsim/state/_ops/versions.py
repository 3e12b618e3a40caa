"""Versions: recording each change with its counts and differences, retention, restoring an earlier version or a deleted scenario, purging history."""

from __future__ import annotations

import datetime as _dt
import json
import math
import uuid
from collections.abc import Mapping
from typing import Any, cast

from .._engines import Connection
from ..clock import utcnow
from ..database import Database, connect
from ..diffing import change_counts
from ..editing import (
    check_name_free,
    edit_provenance,
    next_id,
    write_header,
    write_tags,
)
from ..errors import AccessDeniedError, InvalidInputError, ScenarioExistsError, ScenarioNotFoundError
from ..history import (
    ENTITY_HISTORY,
    VERSIONS,
    apply_retention,
    archive_rows,
    current_version,
    days_text,
    expired_deleted,
    field_changes,
    find_deleted,
    forget_scenario,
    namesake_hint,
    record_births,
    record_version,
    version_counts,
    version_list,
    version_record,
    version_rows_sql,
)
from ..history import (
    keep_deleted_days as keep_deleted_days_now,
)
from ..history import (
    keep_version_days as keep_version_days_now,
)
from ..history import (
    keep_versions as keep_versions_now,
)
from ..reading import (
    ScenarioHeader,
    entity_counts,
    scenario_tags,
)
from ..results import (
    EditResult,
    ScenarioHistory,
)
from ..transactions import transaction
from ..validation import (
    validate_limit,
    validate_name,
)
from ..version_cache import VersionCache
from ..visibility import limiting_tags, require_scope
from .session import (
    edit_result,
    edit_session,
    resolve,
    scenario_label,
)


def record_change(
    con: Connection,
    header: ScenarioHeader,
    version: int,
    now: _dt.datetime,
    operation: str,
    changes: Mapping[str, Mapping[str, int]],
    start_id: int,
    tags: list[str] | None = None,
    *,
    end_id: int | None = None,
    counts: dict[str, int] | None = None,
    replaced_all: bool = False,
) -> tuple[dict[str, int], dict[str, Any]]:
    """Record the version a change made (``header`` as it is after it). Rows with ids
    from ``start_id`` to ``end_id`` (default: the last id in use) are new in it (rows an
    add replaced in place were recorded by ``add_batch``). ``counts`` are read from the
    rows unless given (a save knows them before inserting).

    Returns:
        The entity counts by type, and the changes recorded: those given, or with
        ``replaced_all`` (the change archived every row as this version and wrote the
        new ones) the real difference, counted in the database; plus ``scenario``: the
        scenario's own fields that differ from the version before (name, description,
        tags, metadata keys).
    """
    sid = header.scenario_id
    if counts is None:
        counts = entity_counts(con, [header])[sid]
    fields = {
        "name": header.name,
        "description": header.description,
        "tags": tags if tags is not None else scenario_tags(con, [sid]).get(sid, []),
        "created_at": header.created_at,
        "metadata": header.metadata,
    }
    last = next_id(con) - 1 if end_id is None else end_id
    record_births(con, sid, version, [(start_id, last)])
    recorded: dict[str, Any] = {kind: dict(changes.get(kind, {})) for kind in ("added", "removed", "updated")}
    if replaced_all:  # (an identical overwrite changes nothing)
        recorded = dict(change_counts(con, sid, version))
    recorded["scenario"] = field_changes(con, sid, version - 1, fields) if version > 1 else {}
    if replaced_all and not any(recorded.values()) and _same_as_before(con, sid, version, header.metadata):
        raise Unchanged()  # (the caller's transaction rolls back: as an add that changes nothing)
    record_version(con, sid, version, now, operation, fields=fields, changes=recorded, entities_by_type=counts)
    retain(con, sid, version, now)
    return counts, recorded


class Unchanged(Exception):
    """Raised inside a change's transaction that would leave the scenario exactly as it was
    (an identical overwrite or re-import, a restore of the current content): the caller
    lets the transaction roll back and answers that nothing changed, making no version."""


def _same_as_before(con: Connection, sid: uuid.UUID, version: int, metadata: Mapping[str, Any]) -> bool:
    """Whether the current rows are exactly those ``version`` archived: the same types and
    texts in the same order (not only the same JSON: a text is kept as it was given), and
    the same types listed (a type without entities is one too)."""
    listed = con.execute(
        f"SELECT metadata FROM {VERSIONS} WHERE scenario_id = ? AND version = ?", [sid, version - 1]
    ).fetchall()
    old_types = (json.loads(listed[0][0]) if listed and listed[0][0] else {}).get("entity_types")
    if old_types != metadata.get("entity_types"):
        return False
    (differ,) = con.execute(
        f"WITH o AS (SELECT row_number() OVER (ORDER BY row_id) AS i, entity_type AS t, "
        f"CAST(entity_data AS VARCHAR) AS d FROM {ENTITY_HISTORY} WHERE scenario_id = $sid AND to_version = $version), "
        "n AS (SELECT row_number() OVER (ORDER BY id) AS i, entity_type AS t, CAST(entity_data AS VARCHAR) AS d "
        "FROM scenario_entities WHERE scenario_id = $sid) "
        "SELECT count(*) FROM o FULL JOIN n ON o.i = n.i WHERE o.i IS NULL OR n.i IS NULL OR o.t <> n.t OR o.d <> n.d",
        {"sid": sid, "version": version},
    ).fetchall()[0]
    return not differ


def retain(con: Connection, sid: uuid.UUID, version: int, now: _dt.datetime) -> None:
    """Retention, as a change happens: the scenario's recent and last versions, and the trash."""
    if version:
        apply_retention(con, sid, version, keep_versions_now(), days=keep_version_days_now(), now=now)
    for expired in expired_deleted(con, now, keep_deleted_days_now()):
        forget_scenario(con, expired)


def publish_new(
    con: Connection,
    target: ScenarioHeader,
    now: _dt.datetime,
    operation: str,
    metadata: dict[str, Any],
    description: str | None,
    tags: list[str],
    start_id: int,
) -> None:
    """The scenario row, tags and version 1 of a scenario whose rows a copy or merge wrote."""
    write_header(con, target, now, metadata=metadata, description=description, new=True)
    tags = write_tags(con, target.scenario_id, tags)
    after = ScenarioHeader(target.scenario_id, target.name, description, now, now, metadata)
    counts = entity_counts(con, [after])[target.scenario_id]
    record_change(con, after, 1, now, operation, {"added": counts}, start_id, tags=tags)


def copy_version_rows(
    con: Connection, sid: uuid.UUID, version: int, into: uuid.UUID, now: _dt.datetime, start: int
) -> None:
    """Insert the rows of ``version`` of scenario ``sid`` as current rows of ``into``,
    in their order, with new row ids from ``start`` on."""
    params = {"into": into, "now": now, "sid": sid, "version": version}
    if con.engine.ids_from_sequence:  # in the version's order
        con.execute(
            "INSERT INTO scenario_entities (scenario_id, entity_type, entity_id, entity_data, created_at) "
            f"SELECT $into, entity_type, entity_id, entity_data, $now FROM ({version_rows_sql()}) AS r "
            "ORDER BY id",
            params,
        )
    else:
        con.execute(
            "INSERT INTO scenario_entities (id, scenario_id, entity_type, entity_id, entity_data, created_at) "
            "SELECT $start - 1 + row_number() OVER (ORDER BY id), $into, entity_type, entity_id, entity_data, "
            f"$now FROM ({version_rows_sql()}) AS r",
            {**params, "start": start},
        )


def restore(database: Database, name: str, version: int | None = None, *, new_name: str | None = None) -> EditResult:
    """Bring back a version of a scenario, or a deleted scenario, in one transaction.

    The arguments, result and errors are those of
    :meth:`~healthsim.state.store.ScenarioStore.restore_scenario`.
    """
    target_name = validate_name(new_name) if new_name is not None else None
    try:
        return _restore(database, name, version, target_name)
    except Unchanged:  # (rolled back) the version asked for is the current content
        return _restored_nothing(database, name, version)


def _restored_nothing(database: Database, name: str, version: int | None) -> EditResult:
    """A restore's answer when the version brought back is what the scenario holds now:
    the current version, nothing changed."""
    with connect(database) as con:
        assert con is not None  # (the restore just found it)
        sid, current = resolve(con, name, deleted_too=False)
        assert current is not None
        header, latest = current
        counts = version_counts(con, sid, latest)
        if counts is None:
            counts = entity_counts(con, [header])[sid]
        wanted = version if version is not None else latest - 1
    return restore_result(header, counts, {"scenario": {}}, latest, wanted)


def _restore(database: Database, name: str, version: int | None, target_name: str | None) -> EditResult:
    with edit_session(database, name) as (con, now):
        try:
            sid, current = resolve(con, name, deleted_too=True)
        except ScenarioNotFoundError:
            raise ScenarioNotFoundError(
                str(name),
                f"it is not in the trash either: deleted scenarios are kept "
                f"{days_text(keep_deleted_days_now())} (HEALTHSIM_KEEP_DELETED_DAYS) unless purged; "
                "list_scenarios(deleted=True) shows the trash",
            ) from None
        if version is None and current is not None:  # the current one, or the deleted namesake?
            refuse_two_of_a_name(con, name, current[0], "restore")
        latest = current_version(con, sid)
        wanted = version if version is not None else latest - 1
        if version is None and current is not None:  # an undo of the last change
            check_undo(con, sid, latest, scenario_label(con, sid, name))
        past = version_record(con, sid, wanted, scenario_label(con, sid, name))
        into = uuid.uuid4() if target_name is not None else sid
        # In place, the scenario keeps its current name; a deleted one gets its name back.
        label = target_name or (current[0].name if current is not None else past.header.name)
        if current is None or target_name is not None:  # a scenario row to make
            con.engine.lock_name(con, label)  # (a save of that name may be under way on a server)
            check_name_free(con, label, "pass new_name to restore it under another name")
        start = next_id(con)
        if current is not None and target_name is None:  # in place: the current rows go to the history
            archive_rows(con, sid, latest + 1)
            con.execute("DELETE FROM scenario_entities WHERE scenario_id = ?", [sid])
        copy_version_rows(con, sid, wanted, into, now, start)
        number = 1 if target_name is not None else latest + 1
        facts = {
            "restored_version": wanted,
            **({"source": past.header.name, "source_scenario_id": str(sid)} if target_name is not None else {}),
        }
        metadata = {
            **past.header.metadata,
            "provenance": edit_provenance(past.header.metadata, "restore", now, **facts),
        }
        created = now if target_name is not None else past.header.created_at
        header = ScenarioHeader(into, label, past.header.description, created, now, metadata)
        fresh = current is None or target_name is not None
        write_header(con, header, now, metadata=metadata, description=header.description, new=fresh)
        write_tags(con, into, past.tags)
        added = entity_counts(con, [header])[into]
        counts, changes = record_change(
            con, header, number, now, "restore", {"added": added}, start, replaced_all=not fresh
        )
    return restore_result(header, counts, changes, number, wanted)


def purge(
    database: Database,
    name: str | None = None,
    *,
    keep_versions: int | None = None,
    keep_deleted_days: float | None = None,
    keep_version_days: float | None = None,
) -> dict[str, int]:
    """Apply retention now, or a tighter one, to each scenario (or to ``name``).

    The arguments, result and errors are those of
    :meth:`~healthsim.state.store.ScenarioStore.purge_history`.
    """
    require_scope("admin", "purging history")  # an HTTP caller's grant (issue 25)
    if name is None and limiting_tags() is not None:
        raise AccessDeniedError(
            "purging the history of every scenario needs a token without tags (it would reach scenarios this "
            "token cannot see); name a scenario"
        )
    keep = keep_versions_now() if keep_versions is None else validate_limit(keep_versions, name="keep_versions")
    if keep_version_days is None:
        recent = keep_version_days_now() if keep_versions is None else 0.0
    else:
        recent = _days(keep_version_days, "keep_version_days")
    days = keep_deleted_days_now() if keep_deleted_days is None else _days(keep_deleted_days, "keep_deleted_days")
    with connect(database) as con:
        if con is None:
            if name is not None:
                raise ScenarioNotFoundError(name)
            return {"versions_removed": 0, "deleted_scenarios_removed": 0}
        with transaction(con):
            before = con.execute(f"SELECT count(*) FROM {VERSIONS}").fetchall()[0][0]
            if name is not None:
                sid, _ = resolve(con, name, deleted_too=True)
                ids = [sid]
            else:
                ids = [row[0] for row in con.execute(f"SELECT DISTINCT scenario_id FROM {VERSIONS}").fetchall()]
            now = utcnow()
            expired = expired_deleted(con, now, days)
            for sid in ids:
                if sid in expired:
                    forget_scenario(con, sid)
                else:
                    apply_retention(con, sid, current_version(con, sid), keep, days=recent, now=now)
            after = con.execute(f"SELECT count(*) FROM {VERSIONS}").fetchall()[0][0]
            left: dict[uuid.UUID, set[int]] = {sid: set() for sid in ids}
            for sid, number in con.execute(f"SELECT scenario_id, version FROM {VERSIONS}").fetchall():
                if sid in left:
                    left[sid].add(number)
    cache = VersionCache(database)  # what was kept of the versions purged goes with them
    for sid, versions in left.items():
        cache.forget_versions_but(sid, versions)
    return {"versions_removed": before - after, "deleted_scenarios_removed": len([i for i in expired if i in ids])}


def history(database: Database, name: str, limit: int = 50) -> ScenarioHistory:
    """A scenario's retained versions, newest first (also of a scenario in the trash).

    The arguments, result and errors are those of
    :meth:`~healthsim.state.store.ScenarioStore.scenario_history`.
    """
    limit = validate_limit(limit)
    with connect(database) as con:
        if con is None:
            raise ScenarioNotFoundError(str(name))
        sid, _ = resolve(con, name, deleted_too=True)
        return cast(ScenarioHistory, version_list(con, sid, scenario_label(con, sid, name), limit))


def trashed_namesake(con: Connection, name: str, header: ScenarioHeader) -> uuid.UUID | None:
    """A deleted scenario that has the same name as the current scenario ``header``, which
    ``name`` found by its name (not by its id): the name means two scenarios."""
    key = str(name).strip()
    if key.lower() == str(header.scenario_id):
        return None
    return find_deleted(con, key)


def refuse_two_of_a_name(con: Connection, name: str, header: ScenarioHeader, action: str) -> None:
    """Refuse to guess which of two scenarios of one name (a current one and one in the
    trash) an action that could mean either is for.

    Raises:
        ScenarioExistsError: the name is taken by the current scenario; the message says
            how to name the deleted one (its id, and ``new_name`` to bring it back).
    """
    trashed = trashed_namesake(con, name, header)
    if trashed is None:
        return
    hint = namesake_hint(action, header.scenario_id, trashed)
    raise ScenarioExistsError(header.name, hint)


def check_undo(con: Connection, scenario_id: uuid.UUID, latest: int, label: str) -> None:
    """Refuse an undo (a restore without a version) that has nothing to go back to.

    Raises:
        InvalidInputError: the scenario has one version, or the one before the current one
            is its deletion (the current one brought it back); the message says what to do.
    """
    if latest <= 1:
        raise InvalidInputError(
            f"scenario {label!r} has only version 1: there is no earlier change to undo; "
            "scenario_history lists its versions"
        )
    operation = con.execute(
        f"SELECT operation FROM {VERSIONS} WHERE scenario_id = ? AND version = ?", [scenario_id, latest - 1]
    ).fetchall()
    if operation and operation[0][0] == "delete":
        raise InvalidInputError(
            f"the change before version {latest} of scenario {label!r} is its deletion, which version {latest} "
            "undid: delete_scenario deletes it again, or give the version to bring back"
        )


def restore_result(
    header: ScenarioHeader, counts: dict[str, int], changes: Mapping[str, Any], version: int, restored: int
) -> EditResult:
    """A restore's answer: the edit result, the version it brought back, and what changed."""
    result = edit_result(header, counts, changes, version)
    scenario = dict(changes.get("scenario", {}))
    entities = any(changes.get(kind) for kind in ("added", "removed", "updated"))
    result["restored_version"] = restored
    result["scenario"] = scenario
    result["changed"] = (["entities"] if entities else []) + list(scenario)
    return result


def _days(value: Any, name: str) -> float:
    """A day count given to the library: a number of 0 or more, or ``math.inf`` (forever).

    Raises:
        InvalidInputError: anything else (NaN, negative, not a number); the message names it.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
        raise InvalidInputError(f"{name} must be a number of days (0 or more, or math.inf: forever), not {value!r}")
    return float(value) if not isinstance(value, int) or value < 10**300 else math.inf
