"""The scenario store: the facade every front end uses.

:class:`ScenarioStore` is what the module-level functions, the command line and the MCP
server call. Each method checks its arguments and runs one operation of
:mod:`healthsim.state._ops` (saving, edits, versions, reads); what crosses the database's
edge (exports, imports, frames, reports, SQL) is its base :class:`.store_files.ScenarioFiles`;
the operation opens the database through its engine (:mod:`._engines`: a DuckDB file or
a PostgreSQL team store), does its work in one transaction, and closes it again.
"""

from __future__ import annotations

import datetime as _dt
import os
import uuid
from collections.abc import Callable, Iterable, Mapping
from contextlib import AbstractContextManager
from typing import Any, cast

import pyarrow as pa

from ._ops import edits, reads, saving, session, versions
from .checks import CheckResult
from .checks.gate import check_gate
from .database import Database, redact_url, resolve_database
from .entities import iter_typed_entities
from .errors import InvalidInputError
from .exchange.importer import entity_stream
from .reading import ScenarioReader
from .results import (
    EditResult,
    LoadedScenario,
    SaveSummary,
    ScenarioDiff,
    ScenarioHistory,
    ScenarioList,
    ScenarioListEntry,
    ScenarioOverview,
)
from .store_files import ScenarioFiles
from .summaries import SUMMARY_BYTES
from .validation import normalize_tags, validate_limit

__all__ = ["ScenarioStore"]


class ScenarioStore(ScenarioFiles):
    """Scenarios in one DuckDB file, or in a PostgreSQL database a team shares.

    Args:
        path: the database file, or a ``postgresql://user:password@host:port/db`` URL
            (the team store: every operation works the same). ``None`` means
            ``HEALTHSIM_DB`` or ``~/.healthsim/healthsim.duckdb``, read again at each call.

    Example:
        >>> store = ScenarioStore(tmp_path / "h.duckdb")          # doctest: +SKIP
        >>> store.save_scenario("demo", {"patients": [{"patient_id": "MRN-1"}]})  # doctest: +SKIP
    """

    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        self._path = path

    @property
    def path(self) -> Database:
        """The database this store uses now: a DuckDB file's path, or the PostgreSQL
        team store a ``postgresql://`` URL names (a :class:`TeamDatabase`, whose ``str``
        hides the password)."""
        return resolve_database(self._path)

    def __repr__(self) -> str:
        if self._path is None:
            return "ScenarioStore()"
        return f"ScenarioStore({redact_url(os.fspath(self._path))!r})"

    # ------------------------------------------------------------------ writing

    def save_scenario(
        self,
        name: str,
        entities: Mapping[str, Iterable[Any]],
        description: str | None = None,
        tags: Iterable[str] | None = None,
        overwrite: bool = False,
        *,
        check: str | None = None,
    ) -> Any:
        """Save entities as a named scenario, atomically (all of it or nothing).

        Args:
            name: unique scenario name (trimmed; at most 200 characters; not a UUID).
            entities: entity type -> list of entities (dicts, pydantic models, dataclasses).
            description: optional free text.
            tags: optional tags (trimmed, empty and duplicate ones dropped).
            overwrite: replace a scenario of the same name, keeping its id and created_at.
            check: ``"warn"`` to check the saved entities (as :meth:`check_scenario`) in
                the save's transaction, ``"refuse"`` to also save nothing when the check
                finds an error; None (default): no check, no cost.

        Returns:
            The scenario_id (a UUID string); with ``check``, ``{"scenario_id", "check"}``.

        Raises:
            ScenarioExistsError: the name is taken and ``overwrite`` is false.
            InvalidInputError: a name, tag or entity cannot be stored (nothing is saved).
            CheckFailedError: ``check="refuse"`` and the check found errors (nothing is saved).
        """
        gate = check_gate(check, name)
        sid = self.write_scenario(
            name=name,
            typed_entities=iter_typed_entities(entities),
            description=description,
            tags=tags,
            overwrite=overwrite,
            provenance={"operation": "save"},
            after_rows=gate,
        )
        return sid if gate is None else {"scenario_id": sid, "check": gate.answer}

    def write_scenario(
        self,
        *,
        name: str,
        typed_entities: Iterable[tuple[str, Iterable[Any]]],
        description: str | None = None,
        tags: Iterable[str] | None = None,
        overwrite: bool = False,
        provenance: Mapping[str, Any],
        metadata: Mapping[str, Any] | None = None,
        scenario_id: str | None = None,
        created_at: _dt.datetime | None = None,
        on_chunk: Callable[[int], None] | None = None,
        finish: Callable[[], Mapping[str, Any]] | None = None,
        stored: tuple[Iterable[tuple[str, pa.Table]], int] | None = None,
        after_rows: Callable[[Any, uuid.UUID], None] | None = None,
    ) -> str:
        """Save a scenario from a stream of ``(normalised type, entities)`` pairs: the
        building block of :meth:`save_scenario`, imports and transfers. Entities are read,
        checked and inserted chunk by chunk (bounded memory); a failure anywhere, or a
        crash, leaves the previous state. The arguments are those of
        :class:`~healthsim.state._ops.saving.SaveRequest`.

        Returns:
            The scenario_id.
        """
        request = saving.SaveRequest(
            name=name,
            typed_entities=typed_entities,
            description=description,
            tags=normalize_tags(tags),
            overwrite=overwrite,
            provenance=provenance,
            metadata=metadata,
            scenario_id=scenario_id,
            created_at=created_at,
            on_chunk=on_chunk,
            finish=finish,
            stored=stored,
            after_rows=after_rows,
        )
        return saving.write(self.path, request)

    # ------------------------------------------------------------------ editing

    def add_entities(
        self,
        name: str,
        entities: Mapping[str, Iterable[Any]],
        *,
        upsert: bool = True,
        create: bool = False,
        description: str | None = None,
        tags: Iterable[str] | None = None,
        check: str | None = None,
    ) -> EditResult:
        """Add entities to a saved scenario, in one transaction.

        Args:
            name: scenario name or UUID.
            entities: entity type -> list of entities, as for :meth:`save_scenario`.
            upsert: an entity whose type and id match entities already there replaces
                the first of them in place and removes the later ones; entities without
                an id of their own are appended. False appends every entity.
            create: make the scenario if no scenario has that name (with ``description``
                and ``tags``, which are otherwise ignored).
            check: ``"warn"`` to check the entities written (new and replaced, against
                the whole scenario) in the add's transaction, ``"refuse"`` to also change
                nothing when the check finds an error; None (default): no check, no cost.

        Returns:
            ``scenario_id, name, added, updated, removed`` (each ``{type: n}``),
            ``entity_count, entities_by_type``, and with ``check`` its answer as ``check``.
            Entities of new types come after the scenario's existing types.

        Raises:
            ScenarioNotFoundError: no such scenario and ``create`` is false.
            InvalidEntityError: an entity cannot be stored; nothing was changed.
            CheckFailedError: ``check="refuse"`` and the check found errors (nothing was changed).
        """
        typed = iter_typed_entities(entities)
        gate = check_gate(check, name)
        result = edits.add(
            self.path, name, typed, upsert=upsert, create=create, description=description, tags=tags, gate=gate
        )
        return session.with_check(result, gate)

    def add_entities_from_json(
        self,
        name: str,
        file_path: str | os.PathLike[str],
        *,
        upsert: bool = True,
        create: bool = False,
        check: str | None = None,
    ) -> EditResult:
        """:meth:`add_entities` with the entities of a JSON file (``{"patients": [...]}``,
        an export, or any shape :meth:`import_scenario_from_json` reads); the file's
        scenario fields are not used.

        Raises:
            InvalidScenarioFileError: the file cannot be read; nothing was changed.
        """
        gate = check_gate(check, name)
        with entity_stream(file_path) as typed:
            return session.with_check(edits.add(self.path, name, typed, upsert=upsert, create=create, gate=gate), gate)

    def remove_entities(self, name: str, entity_type: str, entity_ids: Iterable[str]) -> EditResult:
        """Remove entities of one type, named by stored UUID or by their own id
        (``"MRN-10001"``), in one transaction. Every stored duplicate of an id goes.

        Returns:
            As :meth:`add_entities`, plus ``not_found``: the ids given that matched none.

        Raises:
            ScenarioNotFoundError: no such scenario.
            InvalidInputError: the scenario has no such type, or an id is not a string;
                nothing was changed.
        """
        return edits.remove_entities(self.path, name, entity_type, entity_ids)

    def update_scenario(
        self,
        name: str,
        *,
        new_name: str | None = None,
        description: str | None = None,
        add_tags: Iterable[str] = (),
        remove_tags: Iterable[str] = (),
    ) -> ScenarioListEntry:
        """Rename a scenario, change its description, add or remove tags, in one transaction.

        Args:
            new_name: the new name (the same rules as a new scenario's; it must be free).
            description: the new description; ``""`` clears it; None keeps it.
            add_tags: tags to add (one already there in any case is not added again).
            remove_tags: tags to remove, in any case.

        Returns:
            The scenario's list entry after the change; ``updated_at`` moves when
            anything changed.

        Raises:
            ScenarioNotFoundError: no such scenario.
            ScenarioExistsError: ``new_name`` is taken.
            InvalidInputError: a name, description or tag breaks the rules.
        """
        return edits.update_scenario(
            self.path, name, new_name=new_name, description=description, add_tags=add_tags, remove_tags=remove_tags
        )

    def copy_scenario(
        self, source: str, new_name: str, *, description: str | None = None, tags: Iterable[str] | None = None
    ) -> str:
        """A new scenario with the same entities in the same order (a new scenario_id,
        the same entity ids). Description and tags are the source's unless given.

        Returns:
            The new scenario_id.

        Raises:
            ScenarioNotFoundError: no such source.
            ScenarioExistsError: ``new_name`` is taken.
        """
        return edits.copy_scenario(self.path, source, new_name, description=description, tags=tags)

    def merge_scenarios(
        self,
        sources: Iterable[str],
        new_name: str,
        *,
        upsert: bool = False,
        description: str | None = None,
        tags: Iterable[str] | None = None,
    ) -> str:
        """A new scenario holding the entities of every source, in source order, in one
        transaction. With ``upsert``, a later source's entity replaces an earlier
        source's entity of the same type and id (in place).

        Returns:
            The new scenario_id.

        Raises:
            ScenarioNotFoundError: a source does not exist (the message names it).
            ScenarioExistsError: ``new_name`` is taken.
            InvalidInputError: no source was given.
        """
        return edits.merge_scenarios(self.path, sources, new_name, upsert=upsert, description=description, tags=tags)

    def delete_scenario(self, name: str, *, purge: bool = False) -> bool:
        """Delete a scenario (its row, entity rows and tags) in one transaction.

        The scenario goes to the trash: :meth:`restore_scenario` brings it back, with its id
        and history, for ``HEALTHSIM_KEEP_DELETED_DAYS`` days (30). Tables of earlier
        HealthSim releases (``patients``, …) are left alone.

        Args:
            purge: remove it and its history for good (also a scenario in the trash).

        Returns:
            True if a scenario was deleted, False if none had that name or id.

        Raises:
            ScenarioExistsError: ``purge`` with a name that a current scenario and a deleted
                one both have; the message gives both ids (pass the one to purge).
        """
        return edits.delete_scenario(self.path, name, purge=purge)

    def scenario_summary(self, name: str) -> SaveSummary:
        """``scenario_id, name, entity_count, entities_by_type`` of one scenario (the
        specification's save result), without reading its entities.

        Raises:
            ScenarioNotFoundError: no scenario has that name or id.
        """
        with self.open_scenario(name) as reader:
            summary = reader.summary()
        return SaveSummary(
            scenario_id=summary["scenario_id"],
            name=summary["name"],
            entity_count=summary["entity_count"],
            entities_by_type=summary["entities_by_type"],
        )

    def database_info(self) -> dict[str, Any]:
        """The database: where it is (a file's path, or a team store's URL without its
        password), ``engine`` (``duckdb`` or ``postgresql``), whether it exists, its size,
        schema version and counts.

        Raises:
            ServerUnavailableError: a team store's server cannot be used.
        """
        return reads.database_info(self.path)

    # ------------------------------------------------------------------ reading

    def open_scenario(self, name: str, version: int | None = None) -> AbstractContextManager[ScenarioReader]:
        """Hold the database open to read one scenario in chunks (export, paging).

        The file stays locked for the duration of the ``with`` block: keep it short.

        Args:
            version: an earlier version to read (its rows are gathered first, in order).

        Raises:
            ScenarioNotFoundError: no scenario has that name or id.
            InvalidInputError: no such version, or it is past retention.
        """
        return session.open_scenario(self.path, name, version)

    def summarize_scenario(
        self, name: str, *, version: int | None = None, samples: int = 2, max_bytes: int = SUMMARY_BYTES
    ) -> ScenarioOverview:
        """What a scenario (or one of its versions) holds, in at most 12 KB of JSON,
        computed in the database without loading its entities.

        Args:
            max_bytes: the size of its compact JSON at most (default 12 KB, for an
                assistant's context; a terminal or a page can take more fields: up to
                80 per type are computed). At least 4,096.

        Returns:
            The list entry's keys plus ``types``: per entity type its ``count``,
            ``fields`` (per field path, top level and one level into objects: ``present``,
            ``types`` and the statistics that fit), ``fields_omitted``, ``samples`` and the
            healthcare facts found by field name (``age_bands``, ``top_codes``,
            ``over_time``, ``charges``). See :class:`~healthsim.state.results.TypeOverview`
            and ``docs/decisions.md``.

        Raises:
            ScenarioNotFoundError: no scenario has that name or id.
            InvalidInputError: ``samples`` is not a whole number of at least 1,
                ``max_bytes`` is under 4,096, or the version is not retained.
        """
        samples = validate_limit(samples, name="samples")
        if isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes < 4096:
            raise InvalidInputError(f"max_bytes must be a whole number of at least 4,096, not {max_bytes!r}")
        return cast(ScenarioOverview, reads.summary(self.path, name, version, samples, max_bytes))

    def check_scenario(self, name: str, *, version: int | None = None) -> CheckResult:
        """Check a scenario (or version) for broken references, duplicate ids, values that
        are not what their field is, impossible timelines, malformed codes and identifiers
        that look real, computed in the database; at most 12 KB of JSON.

        Returns:
            ``{"ok", "checked": {type: n}, "problems": [{"rule", "severity", "type",
            "field", "count", "examples"}]}``; ``ok`` is false when any problem is an error.
            See :mod:`healthsim.state.checks` and ``docs/decisions.md``.

        Raises:
            ScenarioNotFoundError: no scenario has that name or id.
            InvalidInputError: the version is not retained.
        """
        return reads.check(self.path, name, version)

    def load_scenario(self, name: str, version: int | None = None) -> LoadedScenario:
        """Load a scenario by name or UUID (the name is tried first).

        Args:
            version: a retained earlier version, loaded exactly as it was (entities, order,
                keys, name, description, tags, metadata); None for the current one. A
                deleted scenario's versions load too (by name or id) until it is purged.

        Returns:
            ``scenario_id, name, version, description, entities, tags, created_at,
            updated_at, entity_count, entities_by_type, metadata``; ``entities`` holds
            every type in the order saved, each list in the order saved.

        Raises:
            ScenarioNotFoundError: no scenario has that name or id.
            InvalidInputError: no such version, or it is past retention (the error says which).
        """
        return reads.load_scenario(self.path, name, version)

    def restore_scenario(self, name: str, version: int | None = None, *, new_name: str | None = None) -> EditResult:
        """Bring back a version of a scenario, or a deleted scenario, in one transaction.

        The version's entities, description, tags and metadata come back; in place, the
        scenario keeps its current name.

        Args:
            name: the scenario's name or id (a deleted one's too). A name that is both a
                current scenario's and a deleted one's means the current one when
                ``version`` is given; without a version it is refused (which one?).
            version: the version to bring back. None: for a deleted scenario, its last
                version before the deletion; for a current one, the version before the
                current one (an undo of the last change).
            new_name: restore as a new scenario of this name (a new scenario_id, version 1)
                instead of in place.

        Returns:
            As :meth:`add_entities`, plus ``restored_version``; ``version`` is the new
            version; ``added``, ``removed`` and ``updated`` count the entities that really
            differ from before (as :meth:`diff_scenarios` sees them); ``scenario`` says
            which of the scenario's fields changed (``{"description": [old, new], "tags":
            [old, new], "metadata": [keys]}``), and ``changed`` lists what changed of
            ``entities``, ``description``, ``tags``, ``metadata`` (and ``name``).

        Raises:
            ScenarioNotFoundError: no scenario (nor deleted one) has that name or id.
            ScenarioExistsError: a deleted scenario's name is taken since (pass ``new_name``),
                ``new_name`` is taken, or ``name`` is a current and a deleted scenario's
                and no version was given (the message gives the deleted one's id).
            InvalidInputError: no such version, or it is past retention.
        """
        return versions.restore(self.path, name, version, new_name=new_name)

    def diff_scenarios(
        self, a: str | tuple[str, int] | list[Any], b: str | tuple[str, int] | list[Any]
    ) -> ScenarioDiff:
        """What changed from ``a`` to ``b``: two scenarios, or two versions of one.

        Each side is a name or id (its current version), ``"name@3"``, or a
        ``(name, version)`` pair. Entities are matched per type by id (a repeated id by
        occurrence); the answer stays small for any size.

        Returns:
            ``{"a": {"name", "version"}, "b": {…}, "types": {type: {"added": n,
            "removed": n, "changed": n, "unchanged": n, "examples": {"added": [ids],
            "removed": [ids], "changed": [{"id", "fields"}]}}}, "scenario": {field: [old, new]}}``
            (up to 10 example ids each; ``scenario`` lists name, description and tags
            that differ).

        Raises:
            ScenarioNotFoundError: a side does not exist.
            InvalidInputError: a side is malformed, or its version is not retained.
        """
        return reads.diff_scenarios(self.path, a, b)

    def purge_history(
        self,
        name: str | None = None,
        *,
        keep_versions: int | None = None,
        keep_deleted_days: float | None = None,
        keep_version_days: float | None = None,
    ) -> dict[str, int]:
        """Apply retention now, or a tighter one, to each scenario (or to ``name``).

        Kept: the last ``keep_versions`` versions and every version of the last
        ``keep_version_days`` days; deleted scenarios for ``keep_deleted_days`` days. Given
        neither version bound, both are the environment's (``HEALTHSIM_KEEP_VERSIONS``, 20;
        ``HEALTHSIM_KEEP_VERSION_DAYS``, 7); given ``keep_versions`` alone, recent versions
        are not kept beyond it. Day counts may be ``math.inf`` (forever). A deleted
        scenario always keeps its delete marker and the version before it, so it stays
        restorable until ``keep_deleted_days`` pass.

        Returns:
            ``{"versions_removed": n, "deleted_scenarios_removed": m}``.

        Raises:
            ScenarioNotFoundError: ``name`` is given and no scenario has it.
            InvalidInputError: a bound is not a positive number (the message names it).
        """
        return versions.purge(
            self.path,
            name,
            keep_versions=keep_versions,
            keep_deleted_days=keep_deleted_days,
            keep_version_days=keep_version_days,
        )

    def scenario_history(self, name: str, limit: int = 50) -> ScenarioHistory:
        """A scenario's retained versions, newest first (also of a scenario in the trash).

        Returns:
            ``{"name", "scenario_id", "versions": [{"version", "at", "operation",
            "changes": {"added": {type: n}, "removed": …, "updated": …}, "entity_count"}],
            "total_count"}``.

        Raises:
            ScenarioNotFoundError: no scenario (nor deleted one) has that name or id.
        """
        return versions.history(self.path, name, limit)

    def list_scenarios(
        self,
        tag: str | None = None,
        search: str | None = None,
        limit: int = 100,
        *,
        deleted: bool = False,
        offset: int = 0,
    ) -> ScenarioList:
        """List scenario summaries, newest ``updated_at`` first.

        Args:
            tag: keep scenarios with this tag (case-insensitive, trimmed).
            search: keep scenarios whose name or description contains this text
                (case-insensitive; ``%`` and ``_`` are literal).
            limit: at most this many summaries (at least 1).
            deleted: list the trash instead: deleted scenarios that can still be restored,
                as they were when deleted, with ``deleted_at``, newest deletion first.
            offset: skip this many matches first (the next page: ``offset + limit``).

        Returns:
            ``{"scenarios": [summary, …], "total_count": N}``, N counting every match.

        Raises:
            InvalidInputError: ``limit`` is not a whole number of at least 1, ``offset`` not
                one of at least 0, or ``tag``/``search`` is not text.
        """
        return reads.list_scenarios(self.path, tag, search, limit, deleted=deleted, offset=offset)
