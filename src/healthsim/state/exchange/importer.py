"""Import a scenario file: choose a reader, work out the scenario, save it.

Files in the export's own layout are read by :mod:`.line_format`; anything else by
:mod:`.json_stream`. Either way the file is read once: the entities stream into the
database as they are read, and the scenario's fields (description, tags, metadata…)
are taken when the file has been read to its end, since they may follow the entities.
Only when what must be known before the first entity is saved (the scenario's name and
id, whether wrapped entities are unwrapped) is not settled by then, or turns out
otherwise at the end, is the file read twice: a survey first, then the save.

What other readers see changes in one transaction: an error anywhere saves nothing. A
write of more than one chunk of entities commits its chunks under a staging id that no
reader sees and publishes the scenario in one final transaction (see ``bulk.py``), so
memory stays bounded by a chunk of entities, not the file.
"""

from __future__ import annotations

import errno
import itertools
import os
import stat
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any, BinaryIO

from ..._text import safe_text
from ..errors import InvalidScenarioFileError
from ..files import home_folder_problem
from ..reading import gc_paused
from ..validation import normalize_tags, validate_description, validate_name
from .json_stream import Event, JsonStream
from .line_format import LineLayoutReader, NotLineLayout
from .shapes import (
    SCENARIO_FIELDS,
    ImportPlan,
    Survey,
    check_schema_version,
    entity_from_item,
    entity_list_type,
    is_wrapper,
    list_type,
    plan_import,
)

__all__ = ["SaveScenario", "entity_stream", "import_scenario", "survey_file"]

#: What an import saves through: a function taking a stream of ``(type, entities)`` and the
#: scenario's fields, as :meth:`~healthsim.state.store.ScenarioStore.write_scenario` does
#: (the store passes its own; an import never holds the store itself).
SaveScenario = Callable[..., str]

Progress = Callable[[int, int], None]  # (bytes read, file size)


def _candidate_list(key: str) -> bool:
    return key not in SCENARIO_FIELDS


class _Replan(Exception):
    """A one-pass import found, at the end of the file, that it began with the wrong plan."""


def _checked_path(file_path: str | os.PathLike[str]) -> Path:
    """The absolute path of a file to import (``~`` expanded), checked before it is opened.

    Only ``os.stat`` looks at it: a pipe is refused without being opened, which would
    wait for a writer forever.

    Raises:
        InvalidScenarioFileError: ``file_path`` is not a path, no file can have it (a NUL
            character, a lone surrogate, a name too long), its ``~user`` names no folder,
            nothing is there, it is a folder, a pipe, device or socket, or it cannot be read.
    """
    if not isinstance(file_path, (str, os.PathLike)):
        raise InvalidScenarioFileError(str(file_path), f"file_path must be a path, not {type(file_path).__name__}")
    text = os.fsdecode(file_path)
    if "\x00" in text:  # every file system call would raise a bare ValueError
        raise InvalidScenarioFileError(
            text, "the path holds a NUL character (\\x00), which no file name can; remove it"
        )
    try:
        os.fsencode(text)
    except UnicodeEncodeError:  # "\ud800" (not an undecodable byte's "\udcff")
        raise InvalidScenarioFileError(
            text, "the path holds a lone surrogate, which no file name can; remove it or encode the text correctly"
        ) from None
    problem = home_folder_problem(text)  # Path.expanduser would raise a bare RuntimeError
    if problem is not None:
        raise InvalidScenarioFileError(text, problem)
    path = Path(file_path).expanduser().absolute()
    try:
        mode = os.stat(path).st_mode  # links followed: a link to a pipe is a pipe
    except OSError as exc:
        raise InvalidScenarioFileError(path, _stat_problem(exc)) from exc
    if stat.S_ISDIR(mode):
        raise InvalidScenarioFileError(path, folder_problem(path))
    if not stat.S_ISREG(mode):
        raise InvalidScenarioFileError(
            path, "this is not a regular file (a pipe, device or socket); give the path of a JSON file"
        )
    if not os.access(path, os.R_OK):
        raise InvalidScenarioFileError(path, "the file cannot be read (permission denied)")
    return path


#: How many names of a folder given as a scenario file are read to tell what it holds.
_FOLDER_LOOK = 1000


def folder_problem(path: Path) -> str:
    """Why a folder is not a scenario file, and which format reads it when it is one of the
    healthcare world's (a Synthea CSV export, FHIR Bundles or Bulk NDJSON)."""
    try:
        names = {entry.name.lower() for entry in itertools.islice(os.scandir(path), _FOLDER_LOOK)}
    except OSError:
        names = set()
    if "patients.csv" in names:
        return "this folder looks like a Synthea CSV export; import it with format='synthea-csv'"
    if any(name.endswith(".ndjson") for name in names) or "manifest.json" in names:
        return "this folder looks like FHIR Bulk Data (NDJSON); import it with format='fhir'"
    if any(name.endswith(".json") for name in names):
        return (
            "this is a folder: give the path of the scenario's JSON file in it, or import a folder of "
            "FHIR Bundles with format='fhir'"
        )
    return "this is a folder, not a JSON file; give the path of a file in it"


def _stat_problem(exc: OSError) -> str:
    """What a failed ``os.stat`` of the file to import means, and what to do."""
    if exc.errno in (errno.ENOENT, errno.ENOTDIR):
        return "no such file; check the path"
    if exc.errno == errno.ENAMETOOLONG:
        return "the path or a name in it is too long for the file system; check the path"
    if exc.errno in (errno.EACCES, errno.EPERM):
        return "the file cannot be reached (permission denied on a folder in its path)"
    return f"{exc.strerror or exc}; check the path"


def _lineage(previous: Any) -> list[Any]:
    """The hops a scenario made before this import, oldest first, each one flat.

    Files exported by earlier versions of this library nest the previous hop in
    ``source_provenance``, one level per hop; they are unnested here, so that a scenario
    can travel any number of times without its metadata growing deeper. A ``lineage``
    that is not a list (written by hand or by another tool) is not a list of hops: it
    stays in the hop it came from, as written.
    """
    hops: list[Any] = []
    while isinstance(previous, dict):
        hop = dict(previous)
        earlier = hop.pop("lineage") if isinstance(hop.get("lineage"), list) else []
        nested = hop.pop("source_provenance", None)
        hops.append(hop)
        hops.extend(reversed(earlier))
        previous = nested
    if previous is not None:
        hops.append(previous)
    hops.reverse()
    return hops


def _record(
    plan: ImportPlan, path: Path, provenance: Mapping[str, Any] | None
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The scenario's metadata and its provenance record for this import."""
    metadata = dict(plan.metadata)
    record = {
        "operation": "import",
        "source_file": safe_text(str(path)),  # an undecodable byte escaped: JSON text is UTF-8
        "source_format": plan.source_format,
        **(provenance or {}),
    }
    if plan.source_updated_at is not None:
        record["source_updated_at"] = plan.source_updated_at
    if "provenance" in metadata:  # how the exported scenario was made: earlier hops
        record["lineage"] = _lineage(metadata.pop("provenance"))
    return metadata, record


def _save(
    save: SaveScenario,
    path: Path,
    plan: ImportPlan,
    typed: Iterator[tuple[str, Iterator[Any]]],
    overwrite: bool,
    provenance: Mapping[str, Any] | None,
    on_chunk: Callable[[int], None] | None = None,
    final_plan: Callable[[], ImportPlan] | None = None,
) -> str:
    """Save the entities under ``plan``; with ``final_plan``, the scenario's fields are
    taken from the plan it returns once every entity has been read."""
    metadata, record = _record(plan, path, provenance)

    def finish() -> Mapping[str, Any]:
        assert final_plan is not None
        final = final_plan()
        meta, rec = _record(final, path, provenance)
        return {
            "description": final.description,
            "tags": final.tags,
            "metadata": meta,
            "provenance": rec,
            "created_at": final.created_at,
        }

    return save(
        name=plan.name,
        typed_entities=typed,
        description=plan.description,
        tags=plan.tags,
        overwrite=overwrite,
        provenance=record,
        metadata=metadata,
        scenario_id=plan.scenario_id,
        created_at=plan.created_at,
        on_chunk=on_chunk,
        finish=None if final_plan is None else finish,
    )


def _file_progress(file: BinaryIO, size: int, progress: Progress | None) -> Callable[[int], None] | None:
    """Per chunk: report how far into the file the reader is (bytes)."""
    return None if progress is None else (lambda _entities: progress(file.tell(), size))


def _import_line_layout(
    save: SaveScenario,
    path: Path,
    name: str | None,
    overwrite: bool,
    provenance: Mapping[str, Any] | None,
    progress: Progress | None,
    overrides: dict[str, Any],
) -> str:
    with path.open("rb") as file:
        reader = LineLayoutReader(path, file)
        plan = replace(plan_import(path, Survey(fields=reader.fields), name), **overrides)
        typed = ((list_type(path, key, f"$.entities[{key!r}]"), items) for key, items in reader.lists())
        size = path.stat().st_size
        return _save(save, path, plan, typed, overwrite, provenance, _file_progress(file, size, progress))


def _locator(stream: JsonStream, event: Event) -> Callable[[], str]:
    """Where an event's value is, worked out only if an error needs it (it scans the window)."""
    return lambda: stream.where(event.path, event.pos)


def _walk_lists(
    path: Path, stream: JsonStream, survey: Survey, unwrap: Callable[[], bool]
) -> Iterator[tuple[str, Iterator[Any]]]:
    """Walk a file once: its fields into ``survey``, its entity lists out as
    ``(type, checked entities)``; exhaust each entity iterator before the next.

    A list inside ``entities`` always holds entities. A top-level list holds entities
    when its first element is an object and its key is a valid type name, or when it
    is empty and its key is one of the specification's types (``"patients": []``);
    other top-level lists (``"@context": ["https://schema.org"]``, ``"warnings": []``)
    are fields of the file, kept in the scenario's metadata like its other fields.
    ``survey`` also counts the entities per type and notes wrapped entities.
    """
    events = stream.walk(_candidate_list)

    def entities(entity_type: str, items: Iterator[Event]) -> Iterator[Any]:
        survey.counts.setdefault(entity_type, 0)
        for event in items:
            if event.kind == "batch":  # checked objects with their text: the hot path
                batch = event.value
                survey.counts[entity_type] += len(batch)
                if not any("data" in item.obj and is_wrapper(item.obj) for item in batch):
                    yield from batch
                    continue
                survey.wrappers = True
                unwrapping = unwrap()
                for item in batch:
                    wrapped = unwrapping and is_wrapper(item.obj)
                    yield (
                        entity_from_item(path, item.obj, entity_type, True, _locator(stream, event))
                        if wrapped
                        else item
                    )
                continue
            if event.kind == "end":
                return
            wrapper = type(event.value) is dict and is_wrapper(event.value)
            survey.wrappers = survey.wrappers or wrapper
            # unwrap() is asked only about wrappers: for the add path, answering may
            # cost a read of the whole file (see entity_stream).
            yield entity_from_item(path, event.value, entity_type, wrapper and unwrap(), _locator(stream, event))
            survey.counts[entity_type] += 1

    for event in events:
        key = event.key
        assert key is not None  # fields and lists have keys
        if event.kind == "field":
            survey.fields[key] = event.value
            continue
        assert event.kind == "list" and key is not None
        if event.value:  # inside "entities"
            entity_type = list_type(path, key, stream.where(event.path, event.pos))
            yield entity_type, entities(entity_type, events)
            continue
        first = next(events)
        empty = first.kind == "end"
        head = None if empty else first.value[0].obj if first.kind == "batch" else first.value
        top_type = entity_list_type(key, head, empty)
        if top_type is None:  # a field of the file, not entities
            values: list[Any] = []
            for item in itertools.takewhile(lambda e: e.kind != "end", itertools.chain([first], events)):
                if item.kind == "batch":
                    values.extend(entity.obj for entity in item.value)
                else:
                    values.append(item.value)
            survey.fields[key] = values
            continue
        survey.top_level_lists = True
        rest = iter(()) if first.kind == "end" else itertools.chain([first], events)
        yield top_type, entities(top_type, rest)


def survey_file(path: Path) -> Survey:
    """Read a whole file without saving anything: check it, collect its scenario fields,
    and count its entities per type (the migration verifies imports against these).

    Raises:
        InvalidScenarioFileError: the file cannot be imported.
    """
    survey = Survey()
    with path.open("rb") as file:
        for _, items in _walk_lists(path, JsonStream(path, file), survey, lambda: False):
            for _ in items:
                pass
    return survey


def _name_settled(survey: Survey, name: str | None) -> bool:
    """Whether the fields read so far decide the scenario's name (no later member of
    the file can change it)."""
    metadata = survey.fields.get("metadata")
    return (
        name is not None
        or "name" in survey.fields
        or (isinstance(metadata, dict) and "workspace_id" in metadata and "schema_version" not in survey.fields)
    )


def _import_one_pass(
    save: SaveScenario,
    path: Path,
    name: str | None,
    overwrite: bool,
    provenance: Mapping[str, Any] | None,
    progress: Progress | None,
    overrides: dict[str, Any],
) -> str:
    """Read the file once, saving entities as they come (see the module docstring).

    Raises:
        _Replan: the file must be read twice (a survey first).
    """
    survey = Survey()
    plan: ImportPlan | None = None
    with path.open("rb") as file:
        stream = JsonStream(path, file)
        lists = _walk_lists(path, stream, survey, lambda: plan is not None and plan.unwrap)
        first = next(lists, None)  # reads the fields before the first entity list
        if not _name_settled(survey, name):
            raise _Replan
        plan = replace(plan_import(path, survey, name), **overrides)
        chosen = plan

        def final_plan() -> ImportPlan:
            final = replace(plan_import(path, survey, name), **overrides)
            if (final.name, final.scenario_id) != (chosen.name, chosen.scenario_id) or (
                survey.wrappers and final.unwrap != chosen.unwrap
            ):
                raise _Replan
            return final

        typed = itertools.chain([] if first is None else [first], lists)
        on_chunk = _file_progress(file, path.stat().st_size, progress)
        return _save(save, path, plan, typed, overwrite, provenance, on_chunk, final_plan)


def _import_two_passes(
    save: SaveScenario,
    path: Path,
    name: str | None,
    overwrite: bool,
    provenance: Mapping[str, Any] | None,
    progress: Progress | None,
    overrides: dict[str, Any],
) -> str:
    survey = survey_file(path)
    plan = replace(plan_import(path, survey, name), **overrides)
    with path.open("rb") as file:
        typed = _walk_lists(path, JsonStream(path, file), Survey(), lambda: plan.unwrap)
        on_chunk = _file_progress(file, path.stat().st_size, progress)
        return _save(save, path, plan, typed, overwrite, provenance, on_chunk)


def import_scenario(
    save: SaveScenario,
    file_path: str | os.PathLike[str],
    name: str | None = None,
    overwrite: bool = False,
    *,
    provenance: Mapping[str, Any] | None = None,
    progress: Progress | None = None,
    description: str | None = None,
    tags: list[str] | None = None,
) -> str:
    """Import one scenario file; see :func:`healthsim.state.import_scenario_from_json`.

    Args:
        description, tags: replace the file's (``healthsim save --from`` uses them).
        provenance: extra facts recorded in ``metadata["provenance"]`` (the migration
            records the file's SHA-256 there).
        progress: called with (bytes read, file size), once per chunk of entities.
    """
    path = _checked_path(file_path)
    if name is not None:
        name = validate_name(name)
    overrides: dict[str, Any] = {}
    if description is not None:
        overrides["description"] = validate_description(description)
    if tags is not None:
        overrides["tags"] = normalize_tags(tags)
    # Parsing makes millions of short-lived dicts; the collector would scan them over and
    # over (JSON values form no cycles, and each chunk is freed once inserted).
    with gc_paused():
        try:
            return _import_line_layout(save, path, name, overwrite, provenance, progress, overrides)
        except NotLineLayout:
            pass  # not (or not entirely) in the export's layout: the general reader decides
        try:
            return _import_one_pass(save, path, name, overwrite, provenance, progress, overrides)
        except _Replan:
            return _import_two_passes(save, path, name, overwrite, provenance, progress, overrides)


@contextmanager
def entity_stream(file_path: str | os.PathLike[str]) -> Iterator[Iterator[tuple[str, Iterator[Any]]]]:
    """The entity lists of a file, as ``(type, checked entities)``, streamed (for adding
    a file's entities to a scenario). Any shape the importer reads is accepted, and its
    entities come out as an import of the file stores them; the file's scenario fields
    are read and left aside.

    Wrapped entities are unwrapped unless the file is in the 1.0 format, which a
    top-level ``schema_version`` anywhere in the file says. Whether it has one is known
    only once it is read, or, when it has none, at the end of the file. The caller adds
    the entities as they come, in one transaction that cannot start over, so when the
    first wrapped entity is met before a ``schema_version``, the whole file is surveyed
    (read a second time, alongside) to settle it, and the answer holds for every entity.
    Files without wrapped entities, and those whose ``schema_version`` comes first, are
    read once.

    Raises:
        InvalidScenarioFileError: the file cannot be read, or its ``schema_version`` is
            not one this release reads (as it is read; by then the caller has added
            nothing for good).
    """
    path = _checked_path(file_path)
    survey = Survey()
    decided: list[bool] = []  # whether to unwrap, once the first wrapper asked

    def unwrap() -> bool:
        if not decided:
            fields = survey.fields if "schema_version" in survey.fields else survey_file(path).fields
            decided.append(check_schema_version(path, fields) is None)
        return decided[0]

    def lists(file: BinaryIO) -> Iterator[tuple[str, Iterator[Any]]]:
        for typed in _walk_lists(path, JsonStream(path, file), survey, unwrap):
            check_schema_version(path, survey.fields)  # refused before its entities are read
            yield typed
        check_schema_version(path, survey.fields)  # one that follows the entities

    with path.open("rb") as file, gc_paused():
        yield lists(file)
