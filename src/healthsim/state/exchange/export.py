"""Export a scenario to the JSON exchange format (schema_version 1.0).

The file is written the way the fast import path reads it back: a header line, one
line per entity type opening its array, one line per entity, the stored JSON text as it
is. That is still one JSON document (``schemas/scenario-1.0.schema.json``)::

    {"schema_version":"1.0","scenario_id":"…","name":"…",…,"metadata":{…},"entities":{
    "patients":[
    {"patient_id":"MRN-1",…},
    {"patient_id":"MRN-2",…}
    ],
    "members":[]
    }}

Entities are streamed from the database in chunks and written without being parsed, and
the file appears atomically: it is written to a temporary file in the target folder,
flushed to disk, then renamed over the target. A crash leaves no half file at the target.
A target that cannot be written (a file where a folder should be, no permission, a
read-only or full disk) is an :class:`~healthsim.state.errors.InvalidInputError` naming
the path, and leaves nothing behind: no temporary file, no folder made for it.

A target that is a DuckDB database (the store's own file, or any other) or the
write-ahead log of one is refused before anything is written: the rename would replace
the database with the export, and a report or export over a database is surely a mistake.
So is one that is not a regular file (a pipe, device or socket, links followed): the
rename would put a regular file in its place. A path no file can have (a NUL character,
a ``~user`` that names no user, a name too long for the file system) is refused with a
message saying so.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

import pyarrow as pa

from ..._lazy import lazy_module
from ..._text import name_some
from ..errors import InvalidInputError
from ..files import (
    default_export_path,
    home_folder_problem,
    is_duckdb_database,
    output_file_path,
    refuse_database,
    refuse_special_file,
    refuse_target,
    safe_file_name,
    space_problem,
    target_path,
    write_atomically,
)
from ..reading import ScenarioReader

if TYPE_CHECKING:  # imported on first use: see healthsim._lazy
    import pyarrow.compute as pc
else:
    pc = lazy_module("pyarrow.compute")

if TYPE_CHECKING:  # the store calls this module; it is only named here for type hints
    from .._engines import Database

__all__ = [
    "FORMAT_VERSION",
    "safe_file_name",
    "space_problem",
    "default_export_path",
    "export_scenario",
    "is_duckdb_database",
    "output_file_path",
    "refuse_database",
    "refuse_special_file",
    "refuse_target",
    "home_folder_problem",
    "target_path",
    "write_atomically",
]

FORMAT_VERSION = "1.0"
Progress = Callable[[int, int], None]  # (entities written, entities in all)


def _header_line(reader: ScenarioReader) -> bytes:
    summary = reader.summary()
    header = {
        "schema_version": FORMAT_VERSION,
        "scenario_id": summary["scenario_id"],
        "name": summary["name"],
        "description": summary["description"],
        "created_at": summary["created_at"],
        "updated_at": summary["updated_at"],
        "tags": summary["tags"],
        "metadata": summary["metadata"],
    }
    # json (not orjson): metadata of earlier releases may hold integers beyond 64 bits.
    text = json.dumps(header, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    return (text[:-1] + ',"entities":{\n').encode("utf-8")


def _joined(column: pa.Array) -> memoryview:
    """All strings of ``column`` with ``,\\n`` after each, as one buffer (no per-row Python)."""
    column = column.cast(pa.large_string()) if not pa.types.is_large_string(column.type) else column
    empty, separator = pa.scalar("", pa.large_string()), pa.scalar(",\n", pa.large_string())
    joined = pc.binary_join_element_wise(column, empty, separator)
    _, offsets, data = joined.buffers()
    ends = memoryview(offsets).cast("q")
    first, last = ends[joined.offset], ends[joined.offset + len(joined)]
    return memoryview(data)[first:last]


def _write_entities(
    reader: ScenarioReader, out: BinaryIO, progress: Progress | None, chosen: list[str] | None = None
) -> None:
    types = [t for t in reader.counts if chosen is None or t in chosen]
    total, done = sum(reader.counts[t] for t in types), 0
    for position, entity_type in enumerate(types):
        closing = b"]\n" if position == len(types) - 1 else b"],\n"
        key = json.dumps(entity_type).encode("utf-8")
        if reader.counts[entity_type] == 0:
            out.write(key + b":[" + closing)
            continue
        out.write(key + b":[\n")
        pending: memoryview | None = None
        for column in reader.text_chunks(entity_type):
            if pending is not None:
                out.write(pending)
            pending = _joined(column)
            done += len(column)
            if progress is not None:
                progress(done, total)
        assert pending is not None
        out.write(pending[:-2])  # the last entity takes no comma
        out.write(b"\n" + closing)


def chosen_types(reader: ScenarioReader, types: object) -> list[str] | None:
    """The types asked for (None: all), each checked against the scenario's.

    Raises:
        InvalidInputError: ``types`` is not a list of names, or names a type the scenario lacks.
    """
    if types is None:
        return None
    # (a number or a bool was Python's "object is not iterable"; a generator was read up by the check)
    names = list(types) if isinstance(types, Iterable) and not isinstance(types, str) else None
    if names is None or not all(isinstance(t, str) for t in names):
        raise InvalidInputError("types must be a list of entity type names, e.g. ['patients', 'claims']")
    missing = []
    wanted: list[str] = []
    for raw in names:
        try:
            wanted.append(reader.stored_type(raw))  # "patient" is patients, as when saving
        except InvalidInputError:
            missing.append(raw)
    if missing:
        known = name_some(list(reader.counts))
        raise InvalidInputError(
            f"scenario {reader.header.name!r} has no entity type {', '.join(map(repr, missing))}; its types: {known}"
        )
    return list(dict.fromkeys(wanted))


def export_scenario(
    reader: ScenarioReader,
    database: Database,
    output_path: str | os.PathLike[str] | None = None,
    *,
    types: list[str] | None = None,
    progress: Progress | None = None,
) -> Path:
    """Write the scenario version ``reader`` reads (of ``types`` only, if given) to a JSON
    file; see :func:`healthsim.state.export_scenario_to_json`.

    Args:
        database: the reader's database (the file written may never replace it).

    Raises:
        InvalidInputError: ``output_path`` is not a path, is a DuckDB database (the
            store's own or another) or the write-ahead log of one, or its file or folder
            cannot be written (the message names it); nothing is left behind.
    """
    chosen = chosen_types(reader, types)
    target = target_path(reader.header.name, output_path)

    def write(out: BinaryIO) -> None:
        out.write(_header_line(reader))
        _write_entities(reader, out, progress, chosen)
        out.write(b"}}\n")

    write_atomically(target, write, database=database)
    return target
