"""Moving a scenario between two stores: a DuckDB file and a team store, either way.

``healthsim push NAME --to URL`` shares a scenario made on a laptop with the team;
``healthsim pull NAME --from URL`` brings one home. The scenario's current version is
streamed: rows are read from the source in bounded chunks while the target writes them
in its one transaction (see :meth:`ScenarioStore.write_scenario`), so a scenario of any
size moves in bounded memory, and the target shows the old state or the new one, never
half of it. What moves is kept exactly: ``scenario_id`` (unless the target already uses
that id for another scenario), ``created_at``, description, tags, metadata, and every
entity's stored id and JSON text, byte for byte (the text is never parsed on the way).
The target records the move in the scenario's provenance (``operation: transfer``, the
source without its password, the source's version), with how the scenario was first
made kept under ``created_by``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pyarrow as pa

from ._engines import engine_for
from .clock import utcnow
from .editing import edit_provenance
from .errors import InvalidInputError
from .reading import ScenarioReader
from .results import SaveSummary
from .store import ScenarioStore
from .validation import validate_name

__all__ = ["transfer_scenario"]

#: A store, or where one is: a DuckDB file's path, a ``postgresql://`` URL, or None (the default).
StoreLike = ScenarioStore | str | os.PathLike[str] | None


def _store(value: StoreLike, role: str) -> ScenarioStore:
    if isinstance(value, ScenarioStore):
        return value
    if value is None or isinstance(value, (str, os.PathLike)):
        return ScenarioStore(value)
    raise InvalidInputError(f"{role} must be a ScenarioStore, a DuckDB file path or a postgresql:// URL")


def _shown(store: ScenarioStore) -> str:
    return engine_for(store.path).shown(store.path)


def _same(a: ScenarioStore, b: ScenarioStore) -> bool:
    """Whether two stores are one database: the same file, or the same server database
    (named alike, or else asked: a host named two ways, ``localhost`` and ``127.0.0.1``,
    reaches one server)."""
    engine = engine_for(a.path)
    return engine is engine_for(b.path) and engine.same_database(a.path, b.path)


def _rows(reader: ScenarioReader) -> Iterator[tuple[str, pa.Table]]:
    for entity_type, count in reader.counts.items():
        if not count:  # a type saved with no entities stays a type of the scenario
            yield (
                entity_type,
                pa.table({"entity_id": pa.array([], pa.string()), "entity_data": pa.array([], pa.string())}),
            )
        for table in reader.row_chunks(entity_type, with_ids=True):
            yield entity_type, table


def _exact_rows(reader: ScenarioReader) -> int:
    count = reader.header.metadata.get("exact_json_rows")
    return count if isinstance(count, int) and not isinstance(count, bool) else 1


def transfer_scenario(
    name: str, source: StoreLike, target: StoreLike, *, new_name: str | None = None, overwrite: bool = False
) -> SaveSummary:
    """Copy a scenario's current version from one store to another (DuckDB file or team
    store, either way), streamed, keeping its id, creation time, tags, metadata and entities.

    Args:
        name: the scenario's name or id in ``source``.
        source, target: a :class:`ScenarioStore`, a DuckDB file's path, a
            ``postgresql://`` URL, or None for the default database.
        new_name: its name in ``target`` (default: the same).
        overwrite: replace a scenario of that name in ``target`` (it keeps the target's
            id and history, and gains a version); otherwise the name must be free.

    Returns:
        ``scenario_id, name, entity_count, entities_by_type`` as saved in ``target``.

    Raises:
        ScenarioNotFoundError: ``source`` has no such scenario.
        ScenarioExistsError: ``target`` has the name and ``overwrite`` is false.
        InvalidInputError: source and target are the same database.
        ServerUnavailableError: a team store cannot be reached.
    """
    origin, destination = _store(source, "source"), _store(target, "target")
    if _same(origin, destination):
        raise InvalidInputError(
            f"source and target are the same database ({_shown(origin)}); use copy_scenario to copy within one"
        )
    label = validate_name(new_name) if new_name is not None else None
    with origin.open_scenario(name) as reader:
        header = reader.header
        facts: dict[str, Any] = {
            "source": _shown(origin),
            "source_scenario_id": str(header.scenario_id),
            "source_version": reader.version,
        }
        metadata = {k: v for k, v in header.metadata.items() if k not in ("entity_types", "exact_json_rows")}
        provenance = edit_provenance(header.metadata, "transfer", utcnow(), **facts)
        for key in ("library", "library_version", "at"):  # write_scenario adds its own
            provenance.pop(key, None)
        metadata.pop("provenance", None)
        destination.write_scenario(
            name=label or header.name,
            typed_entities=(),
            description=header.description,
            tags=reader.tags,
            overwrite=overwrite,
            provenance=provenance,
            metadata=metadata,
            scenario_id=str(header.scenario_id),
            created_at=header.created_at,
            stored=(_rows(reader), _exact_rows(reader)),
        )
    return destination.scenario_summary(label or header.name)
