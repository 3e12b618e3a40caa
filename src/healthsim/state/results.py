"""The shapes of what the library returns, as ``TypedDict``s (plain dicts at run time).

They document the keys for readers and let type checkers follow them; JSON output of
the CLI and the MCP server is these dicts as they are.
"""

from __future__ import annotations

from typing import Any, Literal, TypedDict

__all__ = [
    "EditResult",
    "FieldStats",
    "LoadedScenario",
    "MigrationStatus",
    "QueryResult",
    "SaveSummary",
    "ScenarioList",
    "ScenarioListEntry",
    "ScenarioOverview",
    "ScenarioDiff",
    "ScenarioHistory",
    "ScenarioSummary",
    "TypeOverview",
    "VersionEntry",
]


class ScenarioListEntry(TypedDict):
    """One scenario in :func:`~healthsim.state.list_scenarios`."""

    scenario_id: str
    name: str
    version: int  # 1 when saved, one more with every change
    description: str | None
    tags: list[str]
    created_at: str | None  # ISO 8601 UTC, ending in Z
    updated_at: str | None
    entity_count: int
    entities_by_type: dict[str, int]  # type -> count, in saved order


class ScenarioList(TypedDict):
    """What :func:`~healthsim.state.list_scenarios` returns."""

    scenarios: list[ScenarioListEntry]
    total_count: int  # every match, not only the first ``limit``


class ScenarioSummary(ScenarioListEntry):
    """A scenario without its entities: the list entry plus ``metadata``."""

    metadata: dict[str, Any]


class LoadedScenario(ScenarioSummary):
    """What :func:`~healthsim.state.load_scenario` returns."""

    entities: dict[str, list[Any]]


class FieldStats(TypedDict, total=False):
    """What a summary says of one field path (``present`` and ``types`` always)."""

    present: float  # share 0-1 of the type's entities with a non-null value
    types: list[str]  # JSON types seen: string, number, boolean, object, array, null
    distinct: int  # strings: distinct values
    top: list[list[Any]]  # categorical strings: [value, count], most frequent first
    min: Any  # numbers, and ISO dates/datetimes (by time)
    max: Any
    mean: float
    median: float
    format: Literal["date", "datetime"]
    true: int
    false: int
    length: dict[str, int]  # arrays: {"min", "max"}


class TypeOverview(TypedDict, total=False):
    """One entity type in a :class:`ScenarioOverview` (the first four keys always)."""

    count: int
    fields: dict[str, FieldStats]  # path -> statistics, the most present first
    fields_omitted: int  # fields left out (computed or not) to stay within 12 KB
    samples: list[Any]  # the first entities, long strings and deep nesting cut
    samples_omitted: int
    age_bands: dict[str, Any]  # {"field", "as_of", "by", "bands": {"30-39": {gender: n}}, "genders"}
    top_codes: dict[str, Any]  # {"field", "description", "top": [[code, description, n]]}
    over_time: dict[str, Any]  # {"field", "unit": "month" | "year", "counts": [[period, n]]}
    charges: dict[str, dict[str, Any]]  # field -> {"count", "total"}


class ScenarioOverview(ScenarioListEntry, total=False):
    """What :func:`~healthsim.state.summarize_scenario` returns: at most 12 KB of JSON."""

    types: dict[str, TypeOverview]
    types_omitted: int
    entities_by_type_omitted: int
    check: dict[str, Any]  # the check's counts: ok, errors, warnings, problems [severity, rule, type, field, count]


class SaveSummary(TypedDict):
    """The specification's save result (CLI ``--json`` and MCP answers of save/import)."""

    scenario_id: str
    name: str
    entity_count: int
    entities_by_type: dict[str, int]


class VersionEntry(TypedDict):
    """One version in :class:`ScenarioHistory`."""

    version: int
    at: str
    by: str | None  # who made it: the caller's name over HTTP, else the OS user (None: before it was kept)
    operation: str  # save, overwrite, import, add, remove, update, copy, merge, restore, delete…
    # added / removed / updated: {type: n}, what really differs from the version before;
    # scenario: {"name" | "description" | "tags": [old, new], "metadata": [keys that differ]}
    changes: dict[str, dict[str, Any]]
    entity_count: int


class ScenarioHistory(TypedDict):
    """What :func:`~healthsim.state.scenario_history` returns."""

    name: str
    scenario_id: str
    versions: list[VersionEntry]  # newest first
    total_count: int


class ScenarioDiff(TypedDict):
    """What :func:`~healthsim.state.diff_scenarios` returns."""

    a: dict[str, Any]  # {"name", "version"}
    b: dict[str, Any]
    types: dict[str, dict[str, Any]]  # type -> added/removed/changed/unchanged counts, examples
    scenario: dict[str, list[Any]]  # name/description/tags that differ: [old, new]


class EditResult(TypedDict, total=False):
    """What add_entities, remove_entities and restore_scenario return (the keys marked
    as one operation's only come from it)."""

    scenario_id: str
    name: str
    version: int  # the scenario's version after the change
    added: dict[str, int]  # type -> entities appended
    updated: dict[str, int]  # type -> entities replaced in place
    removed: dict[str, int]  # type -> entities removed
    entity_count: int
    entities_by_type: dict[str, int]
    not_found: list[str]  # remove_entities only
    restored_version: int  # restore_scenario only: the version brought back
    scenario: dict[str, Any]  # restore_scenario only: the scenario's fields that changed, as in history
    changed: list[str]  # restore_scenario only: which of entities, description, tags, metadata changed
    check: dict[str, Any]  # add_entities with check= only: the check of the entities written


class QueryResult(TypedDict):
    """What :func:`~healthsim.state.query_scenarios` returns."""

    columns: list[str]
    rows: list[list[Any]]
    row_count: int
    total_rows: int
    truncated: bool
    truncated_reason: Literal["rows", "bytes"] | None
    cut_values: int
    result_bytes: int
    elapsed_seconds: float
    views: list[str]
    #: Which engine ran the SQL (its dialect): ``"duckdb"`` or ``"postgresql"``.
    engine: Literal["duckdb", "postgresql"]


#: What the legacy migration did with one file.
MigrationStatus = Literal["migrated", "already-migrated", "would-migrate", "failed"]
