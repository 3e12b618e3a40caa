"""The scenario store: the facade every front end uses.

:class:`ScenarioStore` is what the module-level functions, the command line and the MCP
server call. Each method checks its arguments and runs one operation of
:mod:`healthsim.state._ops` (saving, edits, versions, reads) or of the exchange formats;
the operation opens the database through its engine (:mod:`._engines`: a DuckDB file or
a PostgreSQL team store), does its work in one transaction, and closes it again.
"""

from __future__ import annotations

import datetime as _dt
import functools
import os
import uuid
from collections.abc import Callable, Iterable, Mapping
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, cast

import pyarrow as pa

from .. import __version__
from ._engines import engine_for
from ._ops import edits, reads, saving, session, versions
from .checks import CheckResult, check_reader
from .checks.gate import check_gate
from .database import Database, connect, redact_url, resolve_database
from .entities import iter_typed_entities
from .errors import InvalidInputError
from .exchange.export import export_scenario
from .exchange.formats import FHIR_FORMATS, check_format, export_formatted, load_frames
from .exchange.importer import entity_stream, import_scenario
from .files import target_path
from .query import query_scenarios, query_to_file
from .reading import ScenarioReader
from .results import (
    EditResult,
    LoadedScenario,
    QueryResult,
    SaveSummary,
    ScenarioDiff,
    ScenarioHistory,
    ScenarioList,
    ScenarioListEntry,
    ScenarioOverview,
)
from .summaries import REPORT_BYTES, SUMMARY_BYTES
from .validation import normalize_tags, validate_limit
from .version_cache import VersionCache
from .visibility import visible_sql

__all__ = ["ScenarioStore"]


class ScenarioStore:
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
        path = self.path
        with connect(path) as con:
            details = engine_for(path).describe(path, con)
            if con is not None:
                params: dict[str, Any] = {}  # a caller's grant counts its own scenarios (issue 25)
                visible = visible_sql("s.scenario_id", params)
                details["scenarios"] = con.execute(
                    f"SELECT count(*) FROM scenarios s WHERE {visible}", params
                ).fetchall()[0][0]
                details["entities"] = con.execute(
                    "SELECT count(*) FROM scenario_entities e WHERE EXISTS "
                    f"(SELECT 1 FROM scenarios s WHERE s.scenario_id = e.scenario_id AND {visible})",
                    params,
                ).fetchall()[0][0]
        details["healthsim_state_version"] = __version__
        return details

    # ------------------------------------------------------------------ exchange

    def export_scenario_to_json(
        self,
        name: str,
        output_path: str | os.PathLike[str] | None = None,
        *,
        version: int | None = None,
        progress: Callable[[int, int], None] | None = None,
    ) -> Path:
        """Export a scenario to a JSON file (the exchange format, schema_version 1.0).

        Args:
            name: scenario name or UUID.
            output_path: the file to write (folders are created; an existing folder
                gets ``{safe name}.json`` inside). Default: ``~/Downloads/{safe name}.json``.
            version: an earlier version to export (default: the current one).
            progress: called with (entities written, entities in all) as it goes.

        Returns:
            The absolute path of the file written (atomically: a crash leaves no half file).

        Raises:
            ScenarioNotFoundError: no scenario has that name or id.
        """
        with self.open_scenario(name, version) as reader:
            return export_scenario(reader, self.path, output_path, progress=progress)

    def export_scenario(
        self,
        name: str,
        path: str | os.PathLike[str] | None = None,
        *,
        format: str = "json",
        version: int | None = None,
        types: list[str] | None = None,
        progress: Callable[[int, int], None] | None = None,
        strict: bool = False,
        validate: bool = False,
    ) -> Path:
        """Export a scenario in one of the analytics formats (or the JSON exchange format).

        Args:
            name: scenario name or UUID.
            path: where to write. ``json`` and ``ndjson`` write a file (an existing folder
                gets ``{name}.json`` / ``{name}.ndjson`` inside); ``parquet`` and ``csv``
                write a folder with one ``{type}.parquet`` / ``{type}.csv`` per entity type.
                Default: ``~/Downloads/{name}.json``, ``~/Downloads/{name}.ndjson``,
                ``~/Downloads/{name}-parquet/``, ``~/Downloads/{name}-csv/``.
            format: ``json`` (the exchange format of ``export_scenario_to_json``),
                ``ndjson`` (one line per entity: ``entity_type``, ``entity_id``, ``data``),
                ``parquet`` (columns inferred from the entities: objects as structs, lists
                as lists, mixed types as JSON text, plus ``entity_id``) or ``csv`` (objects
                flattened to dotted columns, lists as JSON text).
            version: an earlier version (default: the current one).
            types: only these entity types (default: all).
            progress: called with (entities written, entities in all) as it goes.
            strict: ``fhir``/``fhir-bundle`` only: refuse (write nothing) when an entity
                cannot become a valid resource, instead of skipping it with a report.
            validate: ``fhir``/``fhir-bundle`` only: check every resource with the
                ``fhir.resources`` models (the ``healthsim-state[fhir]`` extra).

        ``fhir`` writes a FHIR R4 Bulk Data folder (``{ResourceType}.ndjson``, ``manifest.json``,
        ``export-report.json``; default ``~/Downloads/{name}-fhir/``); ``fhir-bundle`` one
        transaction Bundle per patient (``~/Downloads/{name}-fhir-bundle/``). See
        :mod:`healthsim.state.exchange.fhir`.

        Returns:
            The absolute path of the file or folder written, atomically: a crash leaves no
            half file or folder under that name.

        Raises:
            ScenarioNotFoundError: no scenario has that name or id.
            InvalidInputError: an unknown format, a type the scenario lacks, or a path that
                cannot be written (a file where a folder is needed); nothing is written.
        """
        if check_format(format) in FHIR_FORMATS:  # issue 23: FHIR R4 has its own writer
            from .exchange.fhir.export import export_fhir
            from .exchange.fhir.validation import require_validator

            if validate:
                require_validator()  # before anything is read
            with self.open_scenario(name, version) as reader:
                return export_fhir(
                    reader,
                    self.path,
                    path,
                    format=format.lower(),
                    types=types,
                    progress=progress,
                    strict=strict,
                    validate=validate,
                )
        with self.open_scenario(name, version) as reader:
            return export_formatted(reader, self.path, path, format=format, types=types, progress=progress)

    def load_frames(
        self, name: str, *, version: int | None = None, types: list[str] | None = None
    ) -> dict[str, pa.Table]:
        """A scenario's entities as one ``pyarrow.Table`` per type, with the columns of its
        Parquet export (``pandas``: ``table.to_pandas()``; polars: ``polars.from_arrow(table)``).

        The tables of every type of a version are kept as Parquet files beside the database
        file (``{file}.frames/``, one version per scenario), so loading them again reads
        those instead of parsing every entity.

        Raises:
            ScenarioNotFoundError: no scenario has that name or id.
            InvalidInputError: a type the scenario lacks, or the version is not retained.
        """
        with self.open_scenario(name, version) as reader:
            return load_frames(reader, self.path, types=types)

    def import_scenario_from_json(
        self,
        file_path: str | os.PathLike[str],
        name: str | None = None,
        overwrite: bool = False,
        *,
        description: str | None = None,
        tags: Iterable[str] | None = None,
        provenance: Mapping[str, Any] | None = None,
        progress: Callable[[int, int], None] | None = None,
        check: str | None = None,
    ) -> Any:
        """Import a scenario file: the 1.0 format or a legacy HealthSim shape.

        Args:
            file_path: the JSON file.
            name: the scenario name; else the file's name field; else the file's stem.
            overwrite: replace a scenario of that name (keeping its id and created_at).
            description: replaces the file's description.
            tags: replace the file's tags.
            provenance: further facts recorded in ``metadata["provenance"]`` (e.g.
                ``{"operation": "save"}`` for ``healthsim save --from``).
            progress: called with (bytes read, file size) as it goes.
            check: as for :meth:`save_scenario` (``healthsim save --check``).

        Returns:
            The scenario_id: the file's, if it is a UUID not used by another scenario;
            with ``check``, ``{"scenario_id", "check"}``.

        Raises:
            ScenarioExistsError: the name is taken and ``overwrite`` is false.
            InvalidScenarioFileError: the file cannot be imported; the message names the
                file and the place (JSON path, line and column). Nothing is saved.
            CheckFailedError: ``check="refuse"`` and the check found errors (nothing is saved).
        """
        gate = check_gate(check, name if name is not None else os.fsdecode(file_path))
        save = self.write_scenario if gate is None else functools.partial(self.write_scenario, after_rows=gate)
        sid = import_scenario(
            save,
            file_path,
            name,
            overwrite,
            provenance=provenance,
            progress=progress,
            description=description,
            tags=None if tags is None else list(tags),
        )
        return sid if gate is None else {"scenario_id": sid, "check": gate.answer}

    def import_scenario(
        self,
        path: str | os.PathLike[str],
        name: str | None = None,
        overwrite: bool = False,
        *,
        format: str = "json",
        description: str | None = None,
        tags: Iterable[str] | None = None,
        progress: Callable[[int, int], None] | None = None,
    ) -> str:
        """Import a scenario from a file or folder in one of the import formats.

        Args:
            path: ``json``: a scenario file (see :meth:`import_scenario_from_json`);
                ``fhir``: a FHIR Bundle file, a folder of Bundles (Synthea's
                ``output/fhir/``) or Bulk NDJSON (a file, or a folder of them);
                ``synthea-csv``: a Synthea CSV folder (with ``patients.csv``).
            name: the scenario name (default: the file's, else the file or folder name).
            overwrite: replace a scenario of that name.
            format: ``json``, ``fhir`` or ``synthea-csv``.
            description, tags: the new scenario's.
            progress: called with (bytes read, bytes in all) as it goes.

        Returns:
            The scenario_id.

        Raises:
            InvalidInputError: an unknown format.
            InvalidScenarioFileError: the input cannot be imported; the message names the
                file and the line, entry or row. Nothing is saved.
        """
        from .exchange.healthcare import import_formatted

        return import_formatted(
            self.write_scenario,
            path,
            name,
            overwrite,
            format=format,
            description=description,
            tags=None if tags is None else list(tags),
            progress=progress,
        )

    def query(
        self,
        sql: str,
        *,
        limit: int | None = None,
        timeout: float | None = None,
        max_bytes: int | None = None,
    ) -> QueryResult:
        """Run one read-only SELECT over this store's scenarios, in a sandbox.

        See :func:`healthsim.state.query_scenarios` for the views, the result and the
        errors; ``None`` takes the default (1,000 rows, 30 s, 1,000,000 bytes).
        """
        options: dict[str, Any] = {"limit": limit, "timeout": timeout, "max_bytes": max_bytes}
        return query_scenarios(sql, db_path=self.path, **{k: v for k, v in options.items() if v is not None})

    def query_to_file(
        self,
        sql: str,
        output_path: str | os.PathLike[str],
        *,
        format: str | None = None,
        timeout: float | None = None,
    ) -> dict[str, Any]:
        """Run one read-only SELECT in the sandbox and write every row to a csv, parquet or
        ndjson file. See :func:`healthsim.state.query_to_file`."""
        options: dict[str, Any] = {"format": format} | ({"timeout": timeout} if timeout is not None else {})
        return query_to_file(sql, output_path, db_path=self.path, **options)

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
        with self.open_scenario(name, version) as reader:
            made = (reader.header.scenario_id, reader.version, reader.header.updated_at)
            return check_reader(reader, key_totals=VersionCache(self.path).key_totals(*made))

    def report_scenario(
        self, name: str, output_path: str | os.PathLike[str] | None = None, *, version: int | None = None
    ) -> Path:
        """Write a scenario's summary as one self-contained HTML page with charts (age
        by gender, top codes, entities over time, field coverage) that opens offline.

        Args:
            name: scenario name or UUID.
            output_path: the file to write (an existing folder, or a path ending in
                ``/``, gets ``{safe name}-report.html`` inside). Default:
                ``~/Downloads/{safe name}-report.html``.
            version: an earlier version (default: the current one).

        Returns:
            The absolute path written (atomically: a crash leaves no half file).

        Raises:
            ScenarioNotFoundError: no scenario has that name or id.
            InvalidInputError: the path cannot be written, or the version is not retained.
            MissingDependencyError: plotly is not installed (``pip install 'healthsim-state[report]'``).
        """
        from .report import write_report  # plotly is optional: imported when a report is asked for

        # A page has room for every field computed, not only the 12 KB an assistant gets.
        summary = reads.summary(self.path, name, version, 2, REPORT_BYTES)
        target = target_path(summary["name"], output_path, suffix="-report.html")
        return write_report(summary, target)

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
        self, tag: str | None = None, search: str | None = None, limit: int = 100, *, deleted: bool = False
    ) -> ScenarioList:
        """List scenario summaries, newest ``updated_at`` first.

        Args:
            tag: keep scenarios with this tag (case-insensitive, trimmed).
            search: keep scenarios whose name or description contains this text
                (case-insensitive; ``%`` and ``_`` are literal).
            limit: at most this many summaries (at least 1).
            deleted: list the trash instead: deleted scenarios that can still be restored,
                as they were when deleted, with ``deleted_at``, newest deletion first.

        Returns:
            ``{"scenarios": [summary, …], "total_count": N}``, N counting every match.
        """
        return reads.list_scenarios(self.path, tag, search, limit, deleted=deleted)
