"""Opening a scenario for one operation: the connection of an edit, the scenario a name means, its list entry, and the shapes of answers every operation gives."""

from __future__ import annotations

import datetime as _dt
import uuid
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager, nullcontext

from .._engines import Connection
from ..checks.gate import CheckGate
from ..checks.shape import result as check_result
from ..clock import utcnow
from ..database import Database, connect
from ..errors import ScenarioNotFoundError
from ..history import (
    current_version,
    find_deleted,
    version_record,
    version_rows_sql,
)
from ..reading import (
    ScenarioHeader,
    ScenarioReader,
    find_scenario,
    first_row,
)
from ..results import (
    EditResult,
    ScenarioListEntry,
    ScenarioSummary,
)
from ..transactions import transaction
from ..validation import validate_version


@contextmanager
def edit_session(database: Database, name: str, *, create: bool = False) -> Iterator[tuple[Connection, _dt.datetime]]:
    """An open connection inside one transaction, and the time of the change.

    Raises:
        ScenarioNotFoundError: there is no database yet (so no scenario ``name``).
    """
    with connect(database, create=create) as con:
        if con is None:
            raise ScenarioNotFoundError(str(name))
        with transaction(con):
            # On PostgreSQL: writers of this name take turns (find_scenario then
            # locks an existing scenario's row until the transaction ends).
            con.engine.lock_name(con, str(name).strip())
            yield con, utcnow()


def list_entry(database: Database, name: str) -> ScenarioListEntry:
    """One scenario's list entry."""
    with open_scenario(database, name) as reader:
        return as_list_entry(reader.summary())


def resolve(con: Connection, name: str, *, deleted_too: bool) -> tuple[uuid.UUID, tuple[ScenarioHeader, int] | None]:
    """The scenario of that name or id: ``(id, (header, current version))``, or for a
    scenario in the trash (``deleted_too``) ``(id, None)``.

    Raises:
        ScenarioNotFoundError: none has that name or id.
    """
    try:
        header = find_scenario(con, name)
    except ScenarioNotFoundError:
        if not deleted_too:
            raise
        found = find_trashed(con, name)
        if found is None:
            raise
        if isinstance(found, uuid.UUID):
            return found, None
        header = found  # restored by another client while this one waited
    return header.scenario_id, (header, current_version(con, header.scenario_id))


def find_trashed(con: Connection, name: str) -> uuid.UUID | ScenarioHeader | None:
    """The deleted scenario of that name or id, with its id's lock held until the transaction
    ends; or, when another client restored it meanwhile, the scenario it became; or None.

    A scenario in the trash has no row to lock: on a server, a restore and a purge of it went
    ahead at once, and left a restored scenario whose history was purged. Both now take this
    lock and look again once they hold it (what the other client committed is seen then).
    """
    deleted = find_deleted(con, name)
    if deleted is None:
        return None
    con.engine.lock_name(con, str(deleted))
    try:
        return find_scenario(con, name)  # restored while this one waited
    except ScenarioNotFoundError:
        return find_deleted(con, name)


def scenario_label(con: Connection, sid: uuid.UUID, name: str) -> str:
    row = first_row(con, "SELECT name FROM scenarios WHERE scenario_id = ?", [sid])
    return row[0] if row else str(name).strip()


@contextmanager
def open_scenario(database: Database, name: str, version: int | None = None) -> Iterator[ScenarioReader]:
    """Hold the database open to read one scenario in chunks (export, paging).

    The arguments, result and errors are those of
    :meth:`~healthsim.state.store.ScenarioStore.open_scenario`.
    """
    with connect(database) as con, snapshot(con):
        if con is None:
            raise ScenarioNotFoundError(str(name))
        version = validate_version(version)
        sid, current = resolve(con, name, deleted_too=version is not None)
        if current is not None and version in (None, current[1]):
            yield ScenarioReader(con, current[0], current[1])
            return
        assert version is not None
        past = version_record(con, sid, version, scenario_label(con, sid, name))
        con.execute(
            f"{con.engine.create_temp(con, '_hs_version_rows')} AS "
            + version_rows_sql("id, CAST($sid AS UUID) AS scenario_id, entity_type, entity_id, entity_data")
            + " ORDER BY id",
            {"sid": sid, "version": version},
        )
        try:
            yield ScenarioReader(con, past.header, version, tags=past.tags, source="_hs_version_rows")
        finally:
            con.execute("DROP TABLE IF EXISTS _hs_version_rows")


def snapshot(con: Connection | None) -> AbstractContextManager[None]:
    """Reads in the block see one moment (a server's other writers notwithstanding)."""
    return nullcontext() if con is None else con.engine.snapshot(con)


def with_check(result: EditResult, gate: CheckGate | None) -> EditResult:
    """An add's result, with its check's answer when it asked for one (an add that
    changed nothing checked nothing: no problems)."""
    if gate is not None:
        result["check"] = dict(gate.answer or check_result({}, []))
    return result


def as_list_entry(summary: ScenarioSummary) -> ScenarioListEntry:
    """A list entry: the summary without ``metadata``."""
    return ScenarioListEntry(**{k: v for k, v in summary.items() if k != "metadata"})  # type: ignore[typeddict-item]


def exact_rows_of(header: ScenarioHeader) -> int:
    """Rows the exact encoder wrote (an upper bound after edits: 0 means none, which lets
    a load skip the big-integer screen); unknown for earlier releases' scenarios."""
    count = header.metadata.get("exact_json_rows")
    return count if isinstance(count, int) and not isinstance(count, bool) else 1


def edit_result(
    header: ScenarioHeader, counts: dict[str, int], changes: Mapping[str, dict[str, int]], version: int
) -> EditResult:
    return EditResult(
        scenario_id=str(header.scenario_id),
        name=header.name,
        version=version,
        added=dict(changes.get("added", {})),
        updated=dict(changes.get("updated", {})),
        removed=dict(changes.get("removed", {})),
        entity_count=sum(counts.values()),
        entities_by_type=counts,
    )
