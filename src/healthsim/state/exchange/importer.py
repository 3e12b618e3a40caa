"""Import a scenario file: choose a reader, work out the scenario, save it in one transaction.

Files in the export's own layout are read in one pass by :mod:`.line_format`; anything
else is read twice by :mod:`.json_stream`: a first pass checks the whole file and finds
the scenario fields (which may come after the entities), a second streams the entities
into the database. Either way the database sees one transaction: an error anywhere
saves nothing, and memory stays bounded by a chunk of entities, not the file.
"""

from __future__ import annotations

import os
from dataclasses import replace
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, BinaryIO

from ..errors import InvalidScenarioFileError
from ..store import ScenarioStore
from ..validation import normalize_tags, validate_description, validate_name
from .json_stream import Event, JsonStream
from .line_format import LineLayoutReader, NotLineLayout
from .shapes import SCENARIO_FIELDS, ImportPlan, Survey, entity_from_item, is_wrapper, list_type, plan_import

__all__ = ["import_scenario", "survey_file"]

Progress = Callable[[int, int], None]  # (bytes read, file size)


def _candidate_list(key: str) -> bool:
    return key not in SCENARIO_FIELDS


def _checked_path(file_path: str | os.PathLike[str]) -> Path:
    if not isinstance(file_path, (str, os.PathLike)):
        raise InvalidScenarioFileError(str(file_path), f"file_path must be a path, not {type(file_path).__name__}")
    path = Path(file_path).expanduser().absolute()
    if not path.exists():
        raise InvalidScenarioFileError(path, "no such file; check the path")
    if not path.is_file():
        raise InvalidScenarioFileError(path, "this is a folder, not a JSON file")
    if not os.access(path, os.R_OK):
        raise InvalidScenarioFileError(path, "the file cannot be read (permission denied)")
    return path


def _save(
    store: ScenarioStore,
    path: Path,
    plan: ImportPlan,
    typed: Iterator[tuple[str, Iterator[Any]]],
    overwrite: bool,
    provenance: Mapping[str, Any] | None,
    on_chunk: Callable[[int], None] | None = None,
) -> str:
    metadata = dict(plan.metadata)
    record = {
        "operation": "import",
        "source_file": str(path),
        "source_format": plan.source_format,
        **(provenance or {}),
    }
    if plan.source_updated_at is not None:
        record["source_updated_at"] = plan.source_updated_at
    if "provenance" in metadata:  # how the exported scenario was made, one step back
        record["source_provenance"] = metadata.pop("provenance")
    return store.write_scenario(
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
    )


def _file_progress(file: BinaryIO, size: int, progress: Progress | None) -> Callable[[int], None] | None:
    """Per chunk: report how far into the file the reader is (bytes)."""
    return None if progress is None else (lambda _entities: progress(file.tell(), size))


def _import_line_layout(
    store: ScenarioStore, path: Path, name: str | None, overwrite: bool,
    provenance: Mapping[str, Any] | None, progress: Progress | None, overrides: dict[str, Any],
) -> str:
    with path.open("rb") as file:
        reader = LineLayoutReader(path, file)
        plan = replace(plan_import(path, Survey(fields=reader.fields), name), **overrides)
        typed = (
            (list_type(path, key, f"$.entities[{key!r}]"), items) for key, items in reader.lists()
        )
        size = path.stat().st_size
        return _save(store, path, plan, typed, overwrite, provenance, _file_progress(file, size, progress))


def survey_file(path: Path) -> Survey:
    """Read a whole file without saving anything: check it, collect its scenario fields,
    and count its entities per type (the migration verifies imports against these).

    Raises:
        InvalidScenarioFileError: the file cannot be imported.
    """
    survey = Survey()
    with path.open("rb") as file:
        stream = JsonStream(path, file)
        entity_type = key = ""
        plain: list[Any] | None = None
        first = False
        in_entities = False
        for event in stream.walk(_candidate_list):
            if event.kind == "field":
                survey.fields[event.key] = event.value
            elif event.kind == "list":
                key = event.key
                entity_type = list_type(path, key, stream.where(event.path, event.pos))
                in_entities, first, plain = event.value, True, None
                survey.counts.setdefault(entity_type, 0)
            elif event.kind == "item":
                if first and not in_entities and not isinstance(event.value, dict):
                    plain = []  # a top-level array of plain values: a field, not entities
                first = False
                if plain is not None:
                    plain.append(event.value)
                    continue
                # Lazy: a line/column costs a scan of the window, paid only for an error.
                entity_from_item(
                    path, event.value, entity_type, False,
                    lambda e=event: stream.where(e.path, e.pos),
                )
                survey.wrappers = survey.wrappers or is_wrapper(event.value)
                survey.counts[entity_type] += 1
            elif event.kind == "end" and not in_entities:
                if plain is not None:
                    survey.fields[key] = plain
                    survey.plain_lists.add(key)
                    if survey.counts.get(entity_type) == 0:
                        del survey.counts[entity_type]
                else:
                    survey.top_level_lists = True
    return survey


def _stream_entities(
    path: Path, stream: JsonStream, events: Iterator[Event], survey: Survey, plan: ImportPlan
) -> Iterator[tuple[str, Iterator[Any]]]:
    """Second pass: ``(type, entities)`` in file order, plain lists skipped."""

    def items(entity_type: str) -> Iterator[Any]:
        for event in events:
            if event.kind == "end":
                return
            yield entity_from_item(
                path, event.value, entity_type, plan.unwrap,
                lambda e=event: stream.where(e.path, e.pos),
            )

    for event in events:
        if event.kind != "list":
            continue
        if not event.value and event.key in survey.plain_lists:
            for skipped in events:
                if skipped.kind == "end":
                    break
            continue
        entity_type = list_type(path, event.key, event.path)
        yield entity_type, items(entity_type)


def _import_general(
    store: ScenarioStore, path: Path, name: str | None, overwrite: bool,
    provenance: Mapping[str, Any] | None, progress: Progress | None, overrides: dict[str, Any],
) -> str:
    survey = survey_file(path)
    plan = replace(plan_import(path, survey, name), **overrides)
    with path.open("rb") as file:
        stream = JsonStream(path, file)
        events = stream.walk(_candidate_list)
        typed = _stream_entities(path, stream, events, survey, plan)
        on_chunk = _file_progress(file, path.stat().st_size, progress)
        return _save(store, path, plan, typed, overwrite, provenance, on_chunk)


def import_scenario(
    store: ScenarioStore,
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
    try:
        return _import_line_layout(store, path, name, overwrite, provenance, progress, overrides)
    except NotLineLayout:
        pass  # not (or not entirely) in the export's layout: the general reader decides
    return _import_general(store, path, name, overwrite, provenance, progress, overrides)
