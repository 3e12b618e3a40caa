"""What both FHIR export layouts share: mapping a scenario's entities, and the report of
those that cannot become valid resources."""

from __future__ import annotations

import datetime as _dt
import json
from collections.abc import Callable
from typing import Any

import orjson

from ...entities import decode_entity
from ...reading import ScenarioReader
from .mapping import Unmappable, entity_resources
from .validation import require_validator, resource_problem

__all__ = ["ExportReport", "Progress", "Sink", "map_entities", "resource_line"]

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
        return orjson.dumps(resource) + b"\n"
    except (TypeError, orjson.JSONEncodeError):  # a lone surrogate or a huge integer: the slow, exact way
        return json.dumps(resource, separators=(",", ":")).encode("ascii") + b"\n"


Sink = Callable[[str, list[dict[str, Any]]], None]


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
    today = reader.header.updated_at.date() if isinstance(reader.header.updated_at, _dt.datetime) else _dt.date.today()
    exact = reader.header.metadata.get("exact_json_rows") != 0
    chosen = [t for t in reader.counts if types is None or t in types]
    total, done = sum(reader.counts[t] for t in chosen), 0
    for entity_type in chosen:
        for table in reader.row_chunks(entity_type, with_ids=True):
            ids = table.column("entity_id").to_pylist()
            for entity_id, text in zip(ids, table.column("entity_data").to_pylist(), strict=True):
                try:
                    resources = entity_resources(decode_entity(text, exact=exact), entity_type, str(entity_id), today)
                    if lookup is not None:
                        for resource in resources:
                            problem = resource_problem(resource, lookup)
                            if problem is not None:
                                raise Unmappable(problem)
                except Unmappable as exc:
                    report.skip(str(exc), entity_type, str(entity_id))
                    continue
                report.entities += 1
                sink(entity_type, resources)
            done += len(ids)
            if progress is not None:
                progress(done, total)
