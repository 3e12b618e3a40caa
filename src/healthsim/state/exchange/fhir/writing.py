"""What both FHIR export layouts share: mapping a scenario's entities, and the report of
those that cannot become valid resources."""

from __future__ import annotations

import datetime as _dt
import json
from collections.abc import Callable, Iterator
from typing import Any

import orjson

from ...entities import decode_entity
from ...reading import ScenarioReader
from .mapping import Unmappable, entity_resources
from .validation import require_validator, resource_problem

__all__ = [
    "ExportReport",
    "Progress",
    "Sink",
    "bulk_chunks",
    "map_chunk",
    "map_entities",
    "resource_line",
]

Progress = Callable[[int, int], None]


class ExportReport:
    """What was written, and what could not be, with reasons and examples."""

    def __init__(self) -> None:
        self.resources: dict[str, int] = {}
        self.entities = 0
        self.skipped: dict[str, dict[str, Any]] = {}

    def skip(self, reason: str, entity_type: str, entity_id: str) -> None:
        """Note an entity that cannot become a valid resource."""
        entry = self.skipped.setdefault(reason, {"reason": reason, "count": 0, "examples": []})
        entry["count"] += 1
        if len(entry["examples"]) < 10:
            entry["examples"].append({"type": entity_type, "entity_id": entity_id})

    def as_dict(self) -> dict[str, Any]:
        """The report as JSON values."""
        return {
            "entities_exported": self.entities,
            "resources": dict(sorted(self.resources.items())),
            "skipped": sorted(self.skipped.values(), key=lambda s: -int(s["count"])),
            "skipped_count": sum(int(s["count"]) for s in self.skipped.values()),
        }


def resource_line(resource: dict[str, Any]) -> bytes:
    """One resource as a line of NDJSON."""
    try:
        return orjson.dumps(resource, option=orjson.OPT_APPEND_NEWLINE)  # (no copy to add the newline)
    except (TypeError, orjson.JSONEncodeError):  # a lone surrogate or a huge integer: the slow, exact way
        return json.dumps(resource, separators=(",", ":")).encode("ascii") + b"\n"


Sink = Callable[[str, list[dict[str, Any]]], None]


def _reading(reader: ScenarioReader) -> tuple[_dt.date, bool]:
    """The day the scenario's ages are counted to (its last change), and whether its
    stored texts are exact JSON (so they decode without the slow path)."""
    updated = reader.header.updated_at
    today = updated.date() if isinstance(updated, _dt.datetime) else _dt.date.today()
    return today, reader.header.metadata.get("exact_json_rows") != 0


def _resources(
    text: str, entity_type: str, entity_id: str, exact: bool, today: _dt.date, lookup: Any
) -> list[dict[str, Any]]:
    """The resources one stored entity becomes, each checked by the validator when one is given.

    Raises:
        Unmappable: the entity cannot become valid resources (the reason says why).
    """
    resources = entity_resources(decode_entity(text, exact=exact), entity_type, entity_id, today)
    if lookup is not None:
        for resource in resources:
            problem = resource_problem(resource, lookup)
            if problem is not None:
                raise Unmappable(problem)
    return resources


def map_entities(
    reader: ScenarioReader,
    types: list[str] | None,
    sink: Sink,
    report: ExportReport,
    *,
    validate: bool,
    progress: Progress | None,
) -> None:
    """Map every entity of ``types`` (all: None) to resources and give them to ``sink``."""
    lookup = require_validator() if validate else None
    today, exact = _reading(reader)
    chosen = [t for t in reader.counts if types is None or t in types]
    total, done = sum(reader.counts[t] for t in chosen), 0
    for entity_type in chosen:
        for table in reader.row_chunks(entity_type, with_ids=True):
            ids = table.column("entity_id").to_pylist()
            for entity_id, text in zip(ids, table.column("entity_data").to_pylist(), strict=True):
                try:
                    resources = _resources(text, entity_type, str(entity_id), exact, today, lookup)
                except Unmappable as exc:
                    report.skip(str(exc), entity_type, str(entity_id))
                    continue
                report.entities += 1
                sink(entity_type, resources)
            done += len(ids)
            if progress is not None:
                progress(done, total)


_CHUNK = 2_000


def map_chunk(
    job: tuple[str, list[str], list[str], bool, _dt.date, bool],
) -> tuple[dict[str, bytes], dict[str, int], list[tuple[str, str, str]], int]:
    """Map one chunk of a type's entities to NDJSON lines per resource type.

    Returns:
        (lines per resource type, resources per type, skipped (reason, type, id), entities mapped).
    """
    entity_type, ids, texts, exact, today, validate = job
    lookup = require_validator() if validate else None
    lines: dict[str, list[bytes]] = {}
    skipped: list[tuple[str, str, str]] = []
    mapped = 0
    for entity_id, text in zip(ids, texts, strict=True):
        try:
            resources = _resources(text, entity_type, entity_id, exact, today, lookup)
        except Unmappable as exc:
            skipped.append((str(exc), entity_type, entity_id))
            continue
        mapped += 1
        for resource in resources:
            lines.setdefault(resource["resourceType"], []).append(resource_line(resource))
    return {k: b"".join(v) for k, v in lines.items()}, {k: len(v) for k, v in lines.items()}, skipped, mapped


def _jobs(
    reader: ScenarioReader, types: list[str] | None, validate: bool
) -> Iterator[tuple[str, list[str], list[str], bool, _dt.date, bool]]:
    today, exact = _reading(reader)
    for entity_type in [t for t in reader.counts if types is None or t in types]:
        for table in reader.row_chunks(entity_type, with_ids=True):
            ids = [str(i) for i in table.column("entity_id").to_pylist()]
            texts = table.column("entity_data").to_pylist()
            for start in range(0, len(ids), _CHUNK):
                yield entity_type, ids[start : start + _CHUNK], texts[start : start + _CHUNK], exact, today, validate


def bulk_chunks(
    reader: ScenarioReader,
    types: list[str] | None,
    report: ExportReport,
    *,
    validate: bool,
    progress: Progress | None,
) -> Iterator[dict[str, bytes]]:
    """The NDJSON lines of every entity of ``types``, a chunk at a time, in the scenario's
    order (memory: one chunk of entities and its lines)."""
    if validate:
        require_validator()
    total = sum(n for t, n in reader.counts.items() if types is None or t in types)
    done = 0
    for job in _jobs(reader, types, validate):
        lines, counts, skipped, mapped = map_chunk(job)
        done += mapped + len(skipped)
        _account(report, counts, skipped, mapped)
        yield lines
        if progress is not None:
            progress(done, total)


def _account(report: ExportReport, counts: dict[str, int], skipped: list[tuple[str, str, str]], mapped: int) -> None:
    report.entities += mapped
    for kind, n in counts.items():
        report.resources[kind] = report.resources.get(kind, 0) + n
    for reason, entity_type, entity_id in skipped:
        report.skip(reason, entity_type, entity_id)
