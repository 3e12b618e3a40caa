"""HealthSim State: save, load, search and share synthetic healthcare scenarios.

The module-level functions work on the default database: ``HEALTHSIM_DB`` if set, else
``~/.healthsim/healthsim.duckdb`` (both read at each call). :class:`ScenarioStore` offers
the same operations on an explicit file.

Example:
    >>> from healthsim.state import save_scenario, load_scenario
    >>> save_scenario("diabetes-cohort", {"patients": [{"patient_id": "MRN-1"}]})  # doctest: +SKIP
    >>> load_scenario("diabetes-cohort")["entities"]["patients"]                  # doctest: +SKIP
    [{'patient_id': 'MRN-1'}]
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import (
    CheckFailedError,
    DatabaseError,
    DatabaseLockedError,
    InvalidEntityError,
    InvalidInputError,
    InvalidScenarioFileError,
    InvalidScenarioNameError,
    MissingDependencyError,
    QueryError,
    ScenarioExistsError,
    ScenarioNotFoundError,
    ServerUnavailableError,
    StateError,
)
from .results import (
    EditResult,
    LoadedScenario,
    QueryResult,
    ScenarioDiff,
    ScenarioHistory,
    ScenarioList,
    ScenarioListEntry,
    ScenarioOverview,
)

if TYPE_CHECKING:  # for type checkers; at run time these load on first use (see __getattr__)
    import pyarrow as pa

    from .checks import CheckResult
    from .query import query_scenarios, query_to_file
    from .store import ScenarioStore
    from .tokens import create_token, list_tokens, revoke_token, verify_token
    from .transfer import transfer_scenario

# Names whose modules pull in DuckDB, PyArrow and psycopg: imported on first use, so that
# importing the package (and `healthsim --version`, `healthsim --help`) stays quick.
_LAZY = {
    "CheckResult": "checks",
    "ScenarioStore": "store",
    "query_scenarios": "query",
    "query_to_file": "query",
    "transfer_scenario": "transfer",
    "create_token": "tokens",
    "list_tokens": "tokens",
    "revoke_token": "tokens",
    "verify_token": "tokens",
}


def __getattr__(name: str) -> Any:
    """Import the heavy names (:data:`_LAZY`) on first access (PEP 562)."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value  # later accesses skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "save_scenario",
    "load_scenario",
    "list_scenarios",
    "delete_scenario",
    "export_scenario_to_json",
    "export_scenario",
    "load_frames",
    "import_scenario_from_json",
    "import_scenario",
    "query_scenarios",
    "query_to_file",
    "summarize_scenario",
    "check_scenario",
    "report_scenario",
    "add_entities",
    "remove_entities",
    "update_scenario",
    "copy_scenario",
    "merge_scenarios",
    "scenario_history",
    "restore_scenario",
    "diff_scenarios",
    "purge_history",
    "transfer_scenario",
    "create_token",
    "list_tokens",
    "revoke_token",
    "verify_token",
    "ScenarioStore",
    "LoadedScenario",
    "ScenarioList",
    "ScenarioListEntry",
    "ScenarioOverview",
    "QueryResult",
    "EditResult",
    "CheckResult",
    "ScenarioHistory",
    "ScenarioDiff",
    "StateError",
    "ScenarioNotFoundError",
    "ScenarioExistsError",
    "InvalidInputError",
    "InvalidScenarioNameError",
    "InvalidEntityError",
    "InvalidScenarioFileError",
    "DatabaseLockedError",
    "DatabaseError",
    "QueryError",
    "CheckFailedError",
    "MissingDependencyError",
    "ServerUnavailableError",
]


def _default_store() -> ScenarioStore:
    # A new facade per call: the default path follows HEALTHSIM_DB as it changes.
    from .store import ScenarioStore

    return ScenarioStore()


def save_scenario(
    name: str,
    entities: Mapping[str, Iterable[Any]],
    description: str | None = None,
    tags: Iterable[str] | None = None,
    overwrite: bool = False,
) -> str:
    """Save entities as a named scenario in the default database.

    See :meth:`ScenarioStore.save_scenario`.
    """
    return _default_store().save_scenario(name, entities, description, tags, overwrite)


def load_scenario(name: str, version: int | None = None) -> LoadedScenario:
    """Load a scenario (or one of its retained versions) by name or UUID from the default database.

    See :meth:`ScenarioStore.load_scenario`.
    """
    return _default_store().load_scenario(name, version)


def list_scenarios(
    tag: str | None = None, search: str | None = None, limit: int = 100, *, deleted: bool = False, offset: int = 0
) -> ScenarioList:
    """List scenarios in the default database, newest first (``deleted=True``: the trash;
    ``offset``: skip that many first).

    See :meth:`ScenarioStore.list_scenarios`.
    """
    return _default_store().list_scenarios(tag=tag, search=search, limit=limit, deleted=deleted, offset=offset)


def delete_scenario(name: str, *, purge: bool = False) -> bool:
    """Delete a scenario by name or UUID from the default database (restorable for 30
    days unless ``purge``).

    See :meth:`ScenarioStore.delete_scenario`.
    """
    return _default_store().delete_scenario(name, purge=purge)


def export_scenario_to_json(
    name: str, output_path: str | os.PathLike[str] | None = None, *, version: int | None = None
) -> Path:
    """Export a scenario (or one of its versions) of the default database to a JSON file.

    See :meth:`ScenarioStore.export_scenario_to_json`.
    """
    return _default_store().export_scenario_to_json(name, output_path, version=version)


def import_scenario_from_json(
    file_path: str | os.PathLike[str],
    name: str | None = None,
    overwrite: bool = False,
    *,
    description: str | None = None,
    tags: Iterable[str] | None = None,
) -> str:
    """Import a scenario file into the default database.

    See :meth:`ScenarioStore.import_scenario_from_json`.
    """
    return _default_store().import_scenario_from_json(file_path, name, overwrite, description=description, tags=tags)


def summarize_scenario(
    name: str, *, version: int | None = None, samples: int = 2, max_bytes: int = 12 * 1024
) -> ScenarioOverview:
    """What a scenario (or version) of the default database holds, in at most 12 KB of
    JSON (``max_bytes``): per type its count, field statistics, healthcare facts and samples.

    See :meth:`ScenarioStore.summarize_scenario`.
    """
    return _default_store().summarize_scenario(name, version=version, samples=samples, max_bytes=max_bytes)


def check_scenario(name: str, *, version: int | None = None) -> CheckResult:
    """Check a scenario (or version) of the default database: broken references,
    duplicate ids, impossible timelines, malformed codes, identifiers that look real.

    See :meth:`ScenarioStore.check_scenario`.
    """
    return _default_store().check_scenario(name, version=version)


def export_scenario(
    name: str,
    path: str | os.PathLike[str] | None = None,
    *,
    format: str = "json",
    version: int | None = None,
    types: list[str] | None = None,
    strict: bool = False,
    validate: bool = False,
) -> Path:
    """Export a scenario of the default database as ``json``, ``ndjson``, ``parquet`` or
    ``csv`` (the last two: a folder with one file per entity type), or FHIR R4: ``fhir``
    (a Bulk Data folder) or ``fhir-bundle`` (a transaction Bundle per patient); returns the path.

    See :meth:`ScenarioStore.export_scenario`.
    """
    return _default_store().export_scenario(
        name, path, format=format, version=version, types=types, strict=strict, validate=validate
    )


def import_scenario(
    path: str | os.PathLike[str],
    name: str | None = None,
    overwrite: bool = False,
    *,
    format: str = "json",
    description: str | None = None,
    tags: Iterable[str] | None = None,
) -> str:
    """Import a scenario into the default database: a JSON scenario file (``json``), FHIR R4
    Bundles or Bulk NDJSON (``fhir``), or a Synthea CSV folder (``synthea-csv``).

    See :meth:`ScenarioStore.import_scenario`.
    """
    return _default_store().import_scenario(path, name, overwrite, format=format, description=description, tags=tags)


def load_frames(name: str, *, version: int | None = None, types: list[str] | None = None) -> dict[str, pa.Table]:
    """A scenario of the default database as one ``pyarrow.Table`` per entity type.

    See :meth:`ScenarioStore.load_frames`.
    """
    return _default_store().load_frames(name, version=version, types=types)


def report_scenario(
    name: str, output_path: str | os.PathLike[str] | None = None, *, version: int | None = None
) -> Path:
    """Write a scenario's summary with charts as one self-contained HTML page (default
    ``~/Downloads/{name}-report.html``); returns its path.

    See :meth:`ScenarioStore.report_scenario`.
    """
    return _default_store().report_scenario(name, output_path, version=version)


def add_entities(
    name: str,
    entities: Mapping[str, Iterable[Any]],
    *,
    upsert: bool = True,
    create: bool = False,
    description: str | None = None,
    tags: Iterable[str] | None = None,
    check: str | None = None,
) -> EditResult:
    """Add entities to a scenario of the default database (upsert by id by default;
    ``check="warn"|"refuse"`` checks the entities written).

    See :meth:`ScenarioStore.add_entities`.
    """
    return _default_store().add_entities(
        name, entities, upsert=upsert, create=create, description=description, tags=tags, check=check
    )


def remove_entities(name: str, entity_type: str, entity_ids: Iterable[str]) -> EditResult:
    """Remove entities of one type, by stored UUID or own id, from the default database.

    See :meth:`ScenarioStore.remove_entities`.
    """
    return _default_store().remove_entities(name, entity_type, entity_ids)


def update_scenario(
    name: str,
    *,
    new_name: str | None = None,
    description: str | None = None,
    add_tags: Iterable[str] = (),
    remove_tags: Iterable[str] = (),
) -> ScenarioListEntry:
    """Rename a scenario, change its description, add or remove tags (default database).

    See :meth:`ScenarioStore.update_scenario`.
    """
    return _default_store().update_scenario(
        name, new_name=new_name, description=description, add_tags=add_tags, remove_tags=remove_tags
    )


def copy_scenario(
    source: str, new_name: str, *, description: str | None = None, tags: Iterable[str] | None = None
) -> str:
    """Copy a scenario of the default database under a new name; returns the new id.

    See :meth:`ScenarioStore.copy_scenario`.
    """
    return _default_store().copy_scenario(source, new_name, description=description, tags=tags)


def merge_scenarios(
    sources: Iterable[str],
    new_name: str,
    *,
    upsert: bool = False,
    description: str | None = None,
    tags: Iterable[str] | None = None,
) -> str:
    """Merge scenarios of the default database into a new one; returns its id.

    See :meth:`ScenarioStore.merge_scenarios`.
    """
    return _default_store().merge_scenarios(sources, new_name, upsert=upsert, description=description, tags=tags)


def scenario_history(name: str, limit: int = 50) -> ScenarioHistory:
    """A scenario's versions in the default database, newest first.

    See :meth:`ScenarioStore.scenario_history`.
    """
    return _default_store().scenario_history(name, limit)


def restore_scenario(name: str, version: int | None = None, *, new_name: str | None = None) -> EditResult:
    """Bring back a version of a scenario, or a deleted scenario, in the default database.

    See :meth:`ScenarioStore.restore_scenario`.
    """
    return _default_store().restore_scenario(name, version, new_name=new_name)


def diff_scenarios(a: str | tuple[str, int], b: str | tuple[str, int]) -> ScenarioDiff:
    """What changed from ``a`` to ``b`` (scenarios or versions, ``"name@3"``) in the default database.

    See :meth:`ScenarioStore.diff_scenarios`.
    """
    return _default_store().diff_scenarios(a, b)


def purge_history(
    name: str | None = None, *, keep_versions: int | None = None, keep_deleted_days: float | None = None
) -> dict[str, int]:
    """Apply history retention now (or a tighter one) in the default database.

    See :meth:`ScenarioStore.purge_history`.
    """
    return _default_store().purge_history(name, keep_versions=keep_versions, keep_deleted_days=keep_deleted_days)
