"""``import_scenario(path, format="fhir")``: Bundles, folders of them, Bulk NDJSON.

What is read: a Bundle file (``.json``), a Bulk NDJSON file (``.ndjson``, one resource a
line; the type is the line's ``resourceType``, whatever the file is called) or a folder of
either (Synthea's ``output/fhir/`` with its hospital and practitioner bundles; our own
export). Files are read one at a time and resources stream into the store in chunks, in
one transaction: an error anywhere saves nothing. Errors name the file and the line
(NDJSON) or the entry (Bundle).

In a folder, ``.ndjson`` files whose first line is not a resource and whose name names no
resource type (a Bulk Data ``log.ndjson``) and our export's own files (``manifest.json``,
``export-report.json``) are passed over; they are listed in the scenario's provenance.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson

from ...entities import MAX_DEPTH, encode_entity
from ...errors import InvalidEntityError, InvalidInputError, InvalidScenarioFileError
from ..importer import SaveScenario
from .bundle_entries import (
    bundle_entries,
    check_bundle_type,
    check_references,
    problem,
    resolve_conditionals,
    resolve_full_urls,
)
from .carry import BadExtension
from .common import EXTENSION_URL, deeper, exact_loads, may_hold_long_int, nests_deeper
from .mapping import resource_entity
from .resource_types import R4_RESOURCE_TYPES

__all__ = ["FhirSource", "default_name", "fhir_files", "folder_hint", "import_fhir", "list_folder", "save_source"]

_CHUNK = 2_000
_OWN_FILES = {"manifest.json", "export-report.json"}
_BOM = b"\xef\xbb\xbf"
_PACKED = "a compressed file is not read; decompress it (gunzip) first"


def list_folder(folder: Path) -> list[Path]:
    """The entries of a folder.

    Raises:
        InvalidScenarioFileError: it cannot be listed (permissions, say).
    """
    try:
        return list(folder.iterdir())
    except OSError as exc:
        raise InvalidScenarioFileError(
            folder, f"cannot be read: {exc.strerror or exc}; check its permissions"
        ) from None


def fhir_files(path: Path) -> list[Path]:
    """The files to read: ``path`` itself, or the ``.json``/``.ndjson`` files of a folder.

    Raises:
        InvalidScenarioFileError: nothing there, or a folder with no such file.
    """
    if not path.exists():
        raise InvalidScenarioFileError(path, "no such file or folder; check the path")
    if path.is_file():
        if path.name.lower().endswith(".gz"):
            raise InvalidScenarioFileError(path, _PACKED)
        return [path]
    if not path.is_dir():
        raise InvalidScenarioFileError(path, "this is neither a file nor a folder (a pipe, device or socket)")
    listed = list_folder(path)
    packed = sorted(p.name for p in listed if p.name.lower().endswith((".json.gz", ".ndjson.gz")))
    if packed:  # left out, a type's resources would be missing without a word
        raise InvalidScenarioFileError(path / packed[0], _PACKED)
    files = sorted(
        p
        for p in listed
        if p.is_file()
        and p.suffix.lower() in (".json", ".ndjson")
        and p.name not in _OWN_FILES
        and not p.name.startswith(".")
    )
    if not files:
        hint = folder_hint(path, (".json", ".ndjson"), "fhir") or folder_hint(path, (".csv",), "synthea-csv")
        raise InvalidScenarioFileError(
            path, f"this folder holds no FHIR file (.json Bundles or .ndjson resources){hint}"
        )
    return files


def folder_hint(folder: Path, suffixes: tuple[str, ...], format: str) -> str:
    """What to give instead when ``folder`` holds no file to import: its subfolder that holds
    files with one of ``suffixes``, or, when it holds such files itself, ``format``
    (the import that reads them). "" when neither."""

    def holds(where: Path) -> bool:
        return any(f.suffix.lower() in suffixes and f.is_file() for f in where.iterdir())

    try:
        if holds(folder):
            return f"; it holds {'/'.join(suffixes)} files: to import them give format={format!r}"
        for sub in sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")):
            if holds(sub):
                return f"; its folder {sub.name!r} does: give that folder (format={format!r})"
    except OSError:  # unreadable: the error says what it can without the hint
        pass
    return ""


def _parse(data: bytes, exact: bool) -> Any:
    """JSON values; text with an integer that may pass 64 bits (``exact``) goes to the exact
    parser (orjson would read it as a float).

    Raises:
        ValueError: not JSON, or nested too deep to read (the exact parser's limit is
            Python's recursion limit, where it raises RecursionError).
    """
    try:
        return exact_loads(data) if exact else orjson.loads(data)
    except RecursionError:
        raise ValueError("it nests too deep to read; FHIR resources nest a few levels") from None


# The entity of a resource nests one level deeper than it (kept elements sit under _fhir).
_RESOURCE_DEPTH = MAX_DEPTH - 1
_TOO_DEEP = (
    f"nests deeper than {_RESOURCE_DEPTH} levels, more than a scenario holds; remove or flatten the deep element"
)


def _deep_entry(path: Path, entries: list[dict[str, Any]]) -> None:
    """Refuse the first entry whose resource nests too deep (the file was found to)."""
    for position, entry in enumerate(entries):
        if deeper(entry.get("resource"), _RESOURCE_DEPTH):
            raise problem(path, f"entry {position}", _TOO_DEEP)


def _not_json(data: bytes, exc: ValueError) -> str:
    """Why text is not JSON: not UTF-8 (FHIR JSON is), or the parser's reason."""
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as bad:
        utf16 = " (UTF-16, by its byte order mark)" if data[:2] in (b"\xff\xfe", b"\xfe\xff") else ""
        return f"not UTF-8 text{utf16}: byte {bad.start} is not; FHIR JSON is UTF-8, convert the file to it"
    return f"not JSON ({exc})"


def _lines_hint(data: bytes) -> str:
    """What to do when a Bundle file does not parse but its first line is a resource."""
    try:
        first = orjson.loads(data.split(b"\n", 1)[0])
    except ValueError:
        return ""
    if isinstance(first, dict) and "resourceType" in first:
        return "; it looks like NDJSON (one resource a line): name the file .ndjson"
    return ""


def _named(where: str, resource: dict[str, Any]) -> str:
    """Where a resource is and which it is: ``line 3 (Patient/p1)``."""
    return f"{where} ({resource.get('resourceType')}/{resource.get('id')})"


def _check_type(path: Path, where: str, resource: Any) -> dict[str, Any]:
    if not isinstance(resource, dict) or "resourceType" not in resource:
        raise problem(path, where, "not a FHIR resource (no resourceType)")
    kind = resource["resourceType"]
    # A list or object is no type name (and cannot even be looked up in a set).
    if not isinstance(kind, str) or kind not in R4_RESOURCE_TYPES:
        raise problem(path, where, f"unknown resourceType {kind!r} (not a FHIR R4 resource type)")
    if "id" in resource and not isinstance(resource["id"], str):
        raise problem(path, where, f"the id of this {kind} is {resource['id']!r}, not a string; FHIR ids are text")
    return resource


#: A resource read, whether its text may hold an integer beyond 64 bits, and where it is
#: in its file ("line 3", "entry 5").
_Read = tuple[dict[str, Any], bool, str]


class FhirSource:
    """The resources of a FHIR file or folder, read as canonical entities."""

    def __init__(self, path: Path, progress: Callable[[int, int], None] | None = None) -> None:
        self.path = path
        self.files = fhir_files(path)
        self.size = sum(f.stat().st_size for f in self.files)
        self.done = 0
        self.progress = progress
        self.skipped_files: list[str] = []
        self.resources = 0

    def _ndjson(self, path: Path) -> Iterator[_Read]:
        with path.open("rb") as file:
            for number, line in enumerate(file, 1):
                self.done += len(line)
                if number == 1 and line.startswith(_BOM):  # Windows tools write one
                    line = line[len(_BOM) :]
                if not line.strip():
                    continue
                exact = may_hold_long_int(line)
                try:
                    value = _parse(line, exact)
                except ValueError as exc:
                    raise problem(path, f"line {number}", _not_json(line, exc)) from None
                if number == 1 and self._passed_over(path, value):
                    self.skipped_files.append(path.name)  # a Bulk Data log, say
                    self.done += path.stat().st_size - len(line)
                    return
                where = f"line {number}"
                yield _check_type(path, where, value), exact, where

    def _passed_over(self, path: Path, first: Any) -> bool:
        """Whether an NDJSON file of a folder is no resource file (its first line is no
        resource): a Bulk Data log. One named for a resource type (``Patient.000.ndjson``)
        is read, so a bad first line there is an error, not a file of patients skipped."""
        if len(self.files) == 1 or (isinstance(first, dict) and "resourceType" in first):
            return False
        return path.name.split(".", 1)[0] not in R4_RESOURCE_TYPES

    def _bundle(self, path: Path) -> Iterator[_Read]:
        data = path.read_bytes()
        if data.startswith(_BOM):  # Windows tools write one
            data = data[len(_BOM) :]
        exact = may_hold_long_int(data)
        try:
            value = _parse(data, exact)
        except ValueError as exc:
            raise problem(path, "the file", f"{_not_json(data, exc)}{_lines_hint(data)}") from None
        self.done += path.stat().st_size
        if not isinstance(value, dict) or value.get("resourceType") != "Bundle":
            found = value.get("resourceType") if isinstance(value, dict) else type(value).__name__
            raise problem(
                path,
                "the file",
                f"not a Bundle (its resourceType is {found!r}); give a Bundle, a folder of them or Bulk NDJSON",
            )
        check_bundle_type(path, value.get("type"))
        entries = bundle_entries(path, value)
        # Every entry a resource before the walks across entries below read them.
        resources = [_check_type(path, f"entry {n}", entry.get("resource")) for n, entry in enumerate(entries)]
        if nests_deeper(data, _RESOURCE_DEPTH + 3):  # Bundle, entry list, entry: 3 levels
            _deep_entry(path, entries)
        if value.get("type") in ("transaction", "batch"):
            check_references(path, entries)
        resolve_full_urls(entries)
        if b"?identifier=" in data:  # the walk only when there is a conditional reference
            resolve_conditionals(path, entries)
        for position, resource in enumerate(resources):
            yield resource, exact, f"entry {position}"

    def resources_of(self, path: Path) -> Iterator[_Read]:
        """The resources of one file, each with whether its text may hold an integer
        beyond 64 bits and where it is in the file (``line 3``, ``entry 5``).

        Raises:
            InvalidScenarioFileError: the file cannot be read or is not what it should be.
        """
        reader = self._ndjson if path.suffix.lower() == ".ndjson" else self._bundle
        try:
            yield from self._counted(reader(path))
        except OSError as exc:
            raise InvalidScenarioFileError(path, f"cannot be read: {exc.strerror or exc}") from None

    def _counted(self, resources: Iterator[_Read]) -> Iterator[_Read]:
        for item in resources:
            self.resources += 1
            yield item
            if self.progress is not None and self.resources % _CHUNK == 0:
                self.progress(self.done, self.size)

    def entities(self) -> Iterator[tuple[Path, str, dict[str, Any], tuple[str, dict[str, Any]]]]:
        """``(file, where in it, resource, (type, entity))`` of each resource, in the order read.

        Raises:
            InvalidScenarioFileError: a resource cannot be read (the file and place named).
        """
        for path in self.files:
            for resource, exact, where in self.resources_of(path):
                try:
                    found = resource_entity(resource, exact)
                except BadExtension as exc:
                    raise problem(
                        path,
                        _named(where, resource),
                        f"the HealthSim extension ({EXTENSION_URL}) is not what HealthSim writes: {exc}; "
                        "fix it, or remove it to read the resource as FHIR of elsewhere",
                    ) from None
                except RecursionError:
                    raise problem(path, _named(where, resource), _TOO_DEEP) from None
                except (TypeError, AttributeError, KeyError, ValueError) as exc:
                    # The reading takes the resource as valid FHIR: an element of another
                    # type ("identifier": true) fails in it. Say which resource, not where in us.
                    raise problem(
                        path,
                        _named(where, resource),
                        f"not valid FHIR: an element is not of its type ({exc}); fix or remove it",
                    ) from None
                if found is not None:
                    yield path, where, resource, found

    def typed(self) -> Iterator[tuple[str, list[dict[str, Any]]]]:
        """``(type, entities)`` in chunks of one type, in the order read."""
        current: str | None = None
        chunk: list[dict[str, Any]] = []
        for _, _, _, (entity_type, entity) in self.entities():
            if entity_type != current or len(chunk) >= _CHUNK:
                if chunk:
                    yield current or "", chunk
                current, chunk = entity_type, []
            chunk.append(entity)
        if chunk:
            yield current or "", chunk
        if self.progress is not None:
            self.progress(self.size, self.size)


def _refused_entity(path: Path, refused: InvalidEntityError) -> InvalidInputError:
    """The error that names the file and place of the entity the store refused.

    The store names an entity by its type and position, which say nothing of the source; so
    the source is read again (only now, as the import has failed and saved nothing) and each
    entity checked as the store checks it, up to the first it refuses.
    """
    for file, where, resource, (entity_type, entity) in FhirSource(path).entities():
        try:
            encode_entity(entity, entity_type, 0)
        except InvalidEntityError as exc:
            what = str(exc).split(" ", 1)[1] if str(exc).startswith(f"{entity_type}[0] ") else str(exc)
            return problem(
                file, _named(where, resource), f"the entity it becomes cannot be stored: {what}; fix or remove it"
            )
    return refused


def _valid_name(name: str) -> bool:
    from ...validation import validate_name

    try:
        validate_name(name)
    except InvalidInputError:
        return False
    return True


def default_name(path: Path) -> str:
    """The scenario name an import takes when none is given: our export's scenario, else
    the file or folder name."""
    marker = path / ".healthsim-export.json" if path.is_dir() else None
    if marker is not None and marker.is_file():
        try:
            found = orjson.loads(marker.read_bytes()).get("scenario")
        except (orjson.JSONDecodeError, AttributeError, OSError):
            found = None
        if isinstance(found, str) and _valid_name(found):  # a marker edited by hand: the folder's name
            return found
    return path.stem if path.is_file() else os.path.basename(os.path.normpath(path))


def save_source(
    save: SaveScenario,
    path: Path,
    typed: Iterator[tuple[str, list[dict[str, Any]]]],
    *,
    source_format: str,
    name: str | None,
    overwrite: bool,
    description: str | None,
    tags: list[str] | None,
    facts: Callable[[], dict[str, Any]],
) -> str:
    """Save the entities of a healthcare source as one scenario, in one transaction
    (what :func:`import_fhir` and the Synthea CSV import share)."""
    from ...validation import validate_name

    chosen = validate_name(name if name is not None else default_name(path))
    record = {"operation": "import", "source_file": str(path), "source_format": source_format}

    def finish() -> dict[str, Any]:
        return {"provenance": record | facts()}

    return str(
        save(
            name=chosen,
            typed_entities=typed,
            description=description,
            tags=tags,
            overwrite=overwrite,
            provenance=record,
            finish=finish,
        )
    )


def import_fhir(
    save: SaveScenario,
    file_path: str | os.PathLike[str],
    name: str | None = None,
    overwrite: bool = False,
    *,
    progress: Callable[[int, int], None] | None = None,
    description: str | None = None,
    tags: list[str] | None = None,
) -> str:
    """Import a FHIR Bundle file, a folder of Bundles or Bulk NDJSON as one scenario;
    see :meth:`ScenarioStore.import_scenario`.

    Raises:
        InvalidScenarioFileError: a file is not what it should be; the message names the
            file and the line or entry. Nothing is saved.
    """
    path = Path(os.fsdecode(file_path)).expanduser().absolute()
    source = FhirSource(path, progress)

    def facts() -> dict[str, Any]:
        found: dict[str, Any] = {"resources_read": source.resources}
        if source.skipped_files:
            found["files_passed_over"] = source.skipped_files
        return found

    try:
        return save_source(
            save,
            path,
            source.typed(),
            source_format="fhir",
            name=name,
            overwrite=overwrite,
            description=description,
            tags=tags,
            facts=facts,
        )
    except InvalidEntityError as exc:  # a value the store cannot hold (nesting too deep…)
        raise _refused_entity(path, exc) from None
