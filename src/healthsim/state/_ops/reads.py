"""Reading scenarios: loading one whole, listing and searching the library, diffing two versions, and the summary of a version."""

from __future__ import annotations

import uuid
from typing import Any, cast

from ... import __version__
from .._engines import Connection, engine_for
from ..checks import CheckResult, check_reader
from ..checks.shape import BRIEF_BYTES, brief
from ..clock import utcnow
from ..database import Database, connect
from ..diffing import diff_rows, scenario_changes
from ..errors import InvalidInputError, ScenarioNotFoundError
from ..history import (
    latest_versions,
    paged_rows,
    trash_list,
    version_record,
    version_rows_sql,
)
from ..reading import (
    SCENARIO_COLUMNS,
    ScenarioHeader,
    ScenarioReader,
    entity_counts,
    first_row,
    gc_paused,
    in_duckdb,
    in_id_order,
    parse_rows,
    parse_streamed,
    scenario_dict,
    scenario_tags,
)
from ..results import (
    LoadedScenario,
    ScenarioDiff,
    ScenarioList,
    ScenarioListEntry,
)
from ..summaries import summarize
from ..validation import (
    validate_filter,
    validate_limit,
    validate_offset,
    validate_version,
)
from ..version_cache import VersionCache
from ..visibility import is_visible, visible_sql
from .session import (
    as_list_entry,
    open_scenario,
    resolve,
    scenario_label,
    snapshot,
)


def load_scenario(database: Database, name: str, version: int | None = None) -> LoadedScenario:
    """Load a scenario by name or UUID (the name is tried first).

    The arguments, result and errors are those of
    :meth:`~healthsim.state.store.ScenarioStore.load_scenario`.
    """
    with connect(database) as con, snapshot(con):
        if con is None:
            raise ScenarioNotFoundError(str(name))
        version = validate_version(version)
        sid, current = resolve(con, name, deleted_too=version is not None)
        params: dict[str, Any] = {"sid": sid}
        if version is None or (current is not None and version == current[1]):
            assert current is not None
            header, number = current
            tags = scenario_tags(con, [sid]).get(sid, [])
            select = "SELECT id, entity_type, entity_data, {big} AS big FROM scenario_entities WHERE scenario_id = $sid"
        else:  # the current rows written by then, and the archived rows alive then
            past = version_record(con, sid, version, scenario_label(con, sid, name))
            header, tags, number = past.header, past.tags, version
            # Sorted by DuckDB (in parallel, about free here): rows of the archive
            # interleave with current ones, and sorting in Arrow copies every text.
            select = version_rows_sql("id, entity_type, entity_data, {big} AS big") + " ORDER BY id"
            params["version"] = version
        query = select.format(big=header.exact_rows_sql(con))
        entities: dict[str, list[Any]] = {t: [] for t in header.declared_types()}
        streaming = con.engine.parses_while_streaming
        if streaming:  # parsed as the server sends the next rows
            parts = con.engine.arrow_batches(con, query, params, texts=("entity_type", "entity_data"))
            with gc_paused():
                for entity_type, values in parse_streamed(parts):
                    entities.setdefault(entity_type, []).extend(values)
        else:
            rows = in_id_order(con.engine.fetch_arrow(con, query, params, texts=("entity_type", "entity_data")))
    if not streaming:
        # Parsing happens after the file is closed: another process may use it meanwhile.
        with gc_paused():
            for entity_type, values in parse_rows(rows):
                entities.setdefault(entity_type, []).extend(values)
    summary = scenario_dict(header, tags, {t: len(v) for t, v in entities.items()}, number)
    return LoadedScenario(**summary, entities=entities)


def list_scenarios(
    database: Database,
    tag: str | None = None,
    search: str | None = None,
    limit: int = 100,
    *,
    deleted: bool = False,
    offset: int = 0,
) -> ScenarioList:
    """List scenario summaries, newest ``updated_at`` first.

    The arguments, result and errors are those of
    :meth:`~healthsim.state.store.ScenarioStore.list_scenarios`.
    """
    limit = validate_limit(limit)
    offset = validate_offset(offset)
    tag = validate_filter(tag, "tag")
    search = validate_filter(search, "search")
    # Lowercased in SQL, as the stored names and tags are: Python's lower() differs from the
    # engines' ("İ", a final "Σ"; every non-ASCII letter on a team store in the C locale), and a
    # scenario then could not be found by its own name.
    tag_key = tag.strip() if tag is not None and tag.strip() else None
    search_key = search if search else None
    if "\x00" in (tag_key or "") + (search_key or ""):  # no name, tag or description holds one
        return {"scenarios": [], "total_count": 0}
    with connect(database) as con:
        if con is None:
            return {"scenarios": [], "total_count": 0}
        if deleted:
            return cast(ScenarioList, trash_list(con, tag_key, search_key, limit, offset))
        params: dict[str, Any] = {"tag": tag_key, "search": search_key, "limit": limit, "offset": offset}
        visible = visible_sql("s.scenario_id", params)  # the caller's grant (issue 25)
        rows, total = paged_rows(
            con,
            f"""SELECT {SCENARIO_COLUMNS}, count(*) OVER () AS total FROM scenarios s
            WHERE (CAST($tag AS VARCHAR) IS NULL OR EXISTS (SELECT 1 FROM scenario_tags t
                    WHERE t.scenario_id = s.scenario_id AND lower(t.tag) = lower(CAST($tag AS VARCHAR))))
              AND (CAST($search AS VARCHAR) IS NULL OR strpos(lower(s.name), lower(CAST($search AS VARCHAR))) > 0
                   OR strpos(lower(COALESCE(s.description, '')), lower(CAST($search AS VARCHAR))) > 0)
              AND {visible}
            ORDER BY updated_at DESC, name
            LIMIT $limit OFFSET $offset""",
            params,
            total_at=6,
        )
        headers = [ScenarioHeader.from_row(row[:6]) for row in rows]
        ids = [h.scenario_id for h in headers]
        # Each scenario's latest version records its counts by type: one small query
        # instead of counting the rows of every listed scenario.
        latest = latest_versions(con, ids) if headers else {}
        missing = [h for h in headers if h.scenario_id not in latest]  # (none, but be safe)
        counts = {sid: by_type for sid, (_, by_type) in latest.items()}
        counts.update(entity_counts(con, missing) if missing else {})
        tags = scenario_tags(con, ids) if headers else {}
        versions = {sid: number for sid, (number, _) in latest.items()}
    summaries: list[ScenarioListEntry] = []
    for header in headers:
        sid = header.scenario_id
        summary = scenario_dict(header, tags.get(sid, []), counts[sid], versions.get(sid, 0))
        summaries.append(as_list_entry(summary))
    return ScenarioList(scenarios=summaries, total_count=total)


def diff_scenarios(
    database: Database, a: str | tuple[str, int] | list[Any], b: str | tuple[str, int] | list[Any]
) -> ScenarioDiff:
    """What changed from ``a`` to ``b``: two scenarios, or two versions of one.

    The arguments, result and errors are those of
    :meth:`~healthsim.state.store.ScenarioStore.diff_scenarios`.
    """
    with connect(database) as con:
        if con is None:
            raise ScenarioNotFoundError(str(a))
        sides = [diff_side(database, con, side) for side in (a, b)]
        types = diff_rows(con, *[(sid, None if current else version) for sid, version, current, _ in sides])
    (_, va, _, fa), (_, vb, _, fb) = sides
    return cast(
        ScenarioDiff,
        {
            "a": {"name": fa["name"], "version": va},
            "b": {"name": fb["name"], "version": vb},
            "types": types,
            "scenario": scenario_changes(fa, fb),
        },
    )


def diff_side(database: Database, con: Connection, side: Any) -> tuple[uuid.UUID, int, bool, dict[str, Any]]:
    """A diff side: (scenario id, version, whether it is the current one, its fields)."""
    version: int | None = None
    if isinstance(side, (tuple, list)) and len(side) == 2:
        name, version = str(side[0]), side[1]
    elif isinstance(side, str):
        name = side
        if "@" in side:  # "name@3", unless the whole text is a scenario's name
            head, _, number = side.rpartition("@")
            row = first_row(con, "SELECT scenario_id FROM scenarios WHERE name = ?", [side.strip()])
            taken = row is not None and is_visible(con, row[0])  # (a name the caller cannot see: not its)
            if number.strip().isdigit() and not taken:
                name, version = head, int(number)
    else:
        raise InvalidInputError(f"a diff side is a name, 'name@version' or (name, version), not {side!r}")
    version = validate_version(version)
    sid, current = resolve(con, name, deleted_too=version is not None)
    if current is not None and version in (None, current[1]):
        header, latest = current
        tags = scenario_tags(con, [sid]).get(sid, [])
        return sid, latest, True, {"name": header.name, "description": header.description, "tags": tags}
    if version is None:
        raise ScenarioNotFoundError(str(name))
    past = version_record(con, sid, version, scenario_label(con, sid, name))
    fields = {"name": past.header.name, "description": past.header.description, "tags": past.tags}
    return sid, version, False, fields


def summary(database: Database, name: str, version: int | None, samples: int, budget: int) -> dict[str, Any]:
    """The summary of a version, kept beside the database once computed (a version
    never changes: every change makes a new one)."""
    cache = VersionCache(database)
    with open_scenario(database, name, version) as reader:
        made = (reader.header.scenario_id, reader.version, reader.header.updated_at)
        kept = cache.read_summary(*made, samples, budget)
        if kept is not None:
            return kept
        key_totals = cache.key_totals(*made)
        with in_duckdb(reader) as analysed:  # (a team store's scenario is copied to DuckDB)
            summary = dict(summarize(analysed, samples, budget=budget - BRIEF_BYTES, key_totals=key_totals))
        summary["check"] = brief(_kept_check(cache, reader))  # (issue 24: its counts)
    cache.write_summary(*made, samples, budget, summary)
    return summary


def check(database: Database, name: str, version: int | None) -> CheckResult:
    """The check of a version (see :meth:`~healthsim.state.store.ScenarioStore.check_scenario`),
    kept beside the database once computed, for the day it was made on."""
    with open_scenario(database, name, version) as reader:
        return _kept_check(VersionCache(database), reader)


def _kept_check(cache: VersionCache, reader: ScenarioReader) -> CheckResult:
    """The check of the version ``reader`` reads: kept today already (a summary made it, or
    an earlier call), or computed now and kept. A version never changes; the day does (a
    birth in the future), so a check is kept for the day it was made on."""
    made = (reader.header.scenario_id, reader.version, reader.header.updated_at)
    today = utcnow().date()
    kept = cache.read_check(*made, today)
    if kept is not None:
        return cast(CheckResult, kept)
    found = check_reader(reader, key_totals=cache.key_totals(*made), today=today)
    cache.write_check(*made, today, dict(found))
    return found


def database_info(database: Database) -> dict[str, Any]:
    """The database's description (see :meth:`~healthsim.state.store.ScenarioStore.database_info`)."""
    with connect(database) as con:
        details = engine_for(database).describe(database, con)
        if con is not None:
            params: dict[str, Any] = {}  # a caller's grant counts its own scenarios (issue 25)
            visible = visible_sql("s.scenario_id", params)
            details["scenarios"] = con.execute(f"SELECT count(*) FROM scenarios s WHERE {visible}", params).fetchall()[
                0
            ][0]
            details["entities"] = con.execute(
                "SELECT count(*) FROM scenario_entities e WHERE EXISTS "
                f"(SELECT 1 FROM scenarios s WHERE s.scenario_id = e.scenario_id AND {visible})",
                params,
            ).fetchall()[0][0]
    details["healthsim_state_version"] = __version__
    return details
