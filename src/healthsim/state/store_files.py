"""The store's files and SQL: exports, imports, Arrow frames, reports and read-only queries.

:class:`ScenarioFiles` is the part of :class:`~healthsim.state.store.ScenarioStore`'s facade
that moves scenarios in and out of the database (the exchange formats, FHIR and Synthea,
Parquet and CSV, an HTML report) or asks them questions in SQL. It is a base class of the
store, kept in its own module so that the store's module holds the scenario's life (save,
edit, version, read) and this one what crosses the database's edge. Each method checks its
arguments and runs one operation, as the store's do.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Iterable, Mapping
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import pyarrow as pa

from ._ops import reads
from .access import current_grant
from .checks.gate import check_gate
from .database import Database
from .errors import InvalidInputError
from .exchange.export import export_scenario
from .exchange.formats import FHIR_FORMATS, check_format, export_formatted, load_frames
from .exchange.importer import import_scenario
from .files import target_path
from .query import query_scenarios, query_to_file
from .reading import ScenarioReader
from .results import QueryResult
from .summaries import REPORT_BYTES
from .validation import normalize_tags
from .version_cache import VersionCache

__all__ = ["ScenarioFiles"]


def _refuse_own_cache(source: str | os.PathLike[str], database: Database) -> None:
    """Under a grant, refuse to import from the store's own cache folder.

    The cache (``<file>.frames/``, or a team store's folder under ``~/.cache``) keeps each
    scenario's summary as JSON, samples of its entities included, and the default import
    folder ``~/.healthsim`` holds it: imported as a scenario file, a summary kept whole in
    the new scenario's metadata, so a token with tags read scenarios it may not see.

    Raises:
        InvalidInputError: ``source`` lies in the cache folder; nothing is read.
    """
    if current_grant() is None:
        return  # the owner at the keyboard may read their own files
    cache = Path(os.path.realpath(VersionCache(database).root))
    path = Path(os.path.realpath(os.fsdecode(source)))
    if path == cache or cache in path.parents:
        raise InvalidInputError(
            f"cannot import {os.fsdecode(source)!r}: it is in this store's own cache folder {str(cache)!r}, "
            "which keeps what was computed from every scenario; import a file made for you; nothing was saved"
        )


class ScenarioFiles:
    """Files in and out, reports and SQL over a store (a base of :class:`ScenarioStore`)."""

    # What the store provides (see ScenarioStore): the database, saving one scenario, reading one.
    write_scenario: Callable[..., str]

    @property
    def path(self) -> Database:
        raise NotImplementedError  # ScenarioStore's

    def open_scenario(self, name: str, version: int | None = None) -> AbstractContextManager[ScenarioReader]:
        raise NotImplementedError  # ScenarioStore's

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
        _refuse_own_cache(file_path, self.path)
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
            tags=None if tags is None else normalize_tags(tags),  # a single string is refused, not spelled out
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

        _refuse_own_cache(path, self.path)
        return import_formatted(
            self.write_scenario,
            path,
            name,
            overwrite,
            format=format,
            description=description,
            tags=None if tags is None else normalize_tags(tags),  # a single string is refused, not spelled out
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
