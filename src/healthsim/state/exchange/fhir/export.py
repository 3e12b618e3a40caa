"""``export_scenario(name, format="fhir" | "fhir-bundle")``: a scenario as FHIR R4.

``fhir`` writes a Bulk Data folder: ``{ResourceType}.ndjson`` per resource type, the Bulk
Data ``manifest.json`` (``output``: type, file, count), ``export-report.json`` and our
hidden manifest. ``fhir-bundle`` writes one ``transaction`` Bundle per patient
(``Patient-{id}.json``; entities that point at no patient in ``other.json``), built by
:mod:`.bundles`. Both are streamed (entities read in chunks; bundles sorted by patient on
disk) and written like every other export folder: under a temporary name, then swapped
into place (see :mod:`..formats`).

An entity that cannot become a valid resource is skipped and named in the report (reason,
count, up to 10 examples); ``strict=True`` refuses instead, and nothing is written.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from ...errors import InvalidInputError
from ...files import cannot_write, current_umask, fsync_folder
from ...partials import remove_stale_partials, temp_prefix
from ...reading import ScenarioReader, in_duckdb
from ..export import chosen_types
from ..formats import MANIFEST, MANIFEST_KIND, export_folder_path, fsync_file, interrupted, replace_folder
from .bundles import write_bundles
from .report import REPORT
from .validation import require_validator
from .writing import ExportReport, Progress, bulk_chunks

if TYPE_CHECKING:
    from ..._engines import Database

__all__ = ["BULK_MANIFEST", "REPORT", "export_fhir"]

BULK_MANIFEST = "manifest.json"


class _BulkFiles:
    """One NDJSON file per resource type in the staging folder."""

    def __init__(self, staging: Path) -> None:
        self.staging = staging
        self.files: dict[str, BinaryIO] = {}

    def write(self, lines: dict[str, bytes]) -> None:
        for kind, data in lines.items():
            out = self.files.get(kind)
            if out is None:
                out = self.files[kind] = open(self.staging / f"{kind}.ndjson", "wb")
            out.write(data)

    def close(self) -> list[str]:
        for out in self.files.values():
            out.close()
        return [f"{kind}.ndjson" for kind in sorted(self.files)]


def _write_bulk(
    reader: ScenarioReader, staging: Path, types: list[str] | None, options: dict[str, Any]
) -> tuple[list[str], ExportReport]:
    report = ExportReport()
    files = _BulkFiles(staging)
    try:
        for lines in bulk_chunks(reader, types, report, validate=options["validate"], progress=options["progress"]):
            files.write(lines)
    finally:
        written = files.close()
    manifest = {
        "transactionTime": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "request": f"healthsim export {reader.header.name} --format fhir",
        "requiresAccessToken": False,
        "output": [
            {"type": name[: -len(".ndjson")], "url": name, "count": report.resources[name[: -len(".ndjson")]]}
            for name in written
        ],
        "error": [],
    }
    (staging / BULK_MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return [*written, BULK_MANIFEST], report


def _finish(
    staging: Path, reader: ScenarioReader, format: str, written: list[str], report: ExportReport, strict: bool
) -> None:
    if strict and report.skipped:
        first = next(iter(report.skipped.values()))
        raise InvalidInputError(
            f"scenario {reader.header.name!r}: {report.as_dict()['skipped_count']} entities cannot become valid FHIR "
            f"resources (e.g. {first['examples'][0]['type']} {first['examples'][0]['entity_id']}: {first['reason']}); "
            "fix them, or export without strict to skip them with a report; nothing was written"
        )
    (staging / REPORT).write_text(json.dumps(report.as_dict(), indent=2) + "\n", encoding="utf-8")
    files = [*written, REPORT]
    manifest = {
        "kind": MANIFEST_KIND,
        "manifest_version": 1,
        "format": format,
        "scenario": reader.header.name,
        "scenario_id": str(reader.header.scenario_id),
        "scenario_version": reader.version,
        "written_at": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "files": files,
        "report": report.as_dict(),
    }
    (staging / MANIFEST).write_text(json.dumps(manifest, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    for path in staging.iterdir():
        fsync_file(path)
    os.chmod(staging, 0o777 & ~current_umask())


def export_fhir(
    opened: ScenarioReader,
    database: Database,
    path: str | os.PathLike[str] | None,
    *,
    format: str,
    types: list[str] | None,
    progress: Progress | None = None,
    strict: bool = False,
    validate: bool = False,
) -> Path:
    """Write the scenario version ``opened`` reads as a FHIR Bulk Data folder or a folder of
    transaction Bundles (``database``: the reader's, which no output may replace); see
    :meth:`ScenarioStore.export_scenario`, which checks the ``fhir`` extra (``validate``)
    before it opens the scenario.

    Raises:
        InvalidInputError: the folder cannot be written, or ``strict`` and some entity
            cannot become a valid resource; nothing is written.
        MissingDependencyError: ``validate`` without the ``fhir`` extra installed.
    """
    if validate:
        require_validator()
    with in_duckdb(opened) as reader:
        chosen = chosen_types(reader, types)
        folder = export_folder_path(reader.header.name, path, format, database)
        try:
            folder.parent.mkdir(parents=True, exist_ok=True)
            remove_stale_partials(folder)
            staging = Path(tempfile.mkdtemp(dir=folder.parent, prefix=temp_prefix(folder), suffix=".partial"))
        except OSError as exc:
            raise cannot_write(folder, exc) from exc
        options = {"validate": validate, "progress": progress}
        try:
            if format == "fhir":
                written, report = _write_bulk(reader, staging, chosen, options)
            else:
                written, report = write_bundles(reader, staging, chosen, options)
            _finish(staging, reader, format, written, report, strict)
            replace_folder(staging, folder)
        except BaseException as exc:
            shutil.rmtree(staging, ignore_errors=True)
            if interrupted(exc):
                raise KeyboardInterrupt from None
            if isinstance(exc, OSError):
                raise cannot_write(folder, exc) from exc
            raise
    fsync_folder(folder.parent)
    return folder
