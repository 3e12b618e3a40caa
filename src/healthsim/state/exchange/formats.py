"""Exports for analysts: NDJSON, and Parquet or CSV folders with one file per type.

The JSON exchange format stays in :mod:`.export`; this module adds the others beside it
(:func:`export_formatted`) and the Arrow tables they are made of (:func:`load_frames`).

- ``ndjson``: one line per entity, ``{"entity_type", "entity_id", "data"}``, in saved
  order; ``data`` is the stored JSON text itself (its integers exact), on one line.
- ``parquet``: ``{type}.parquet`` per type, columns as :mod:`.tables` infers them,
  written by DuckDB's Parquet writer.
- ``csv``: ``{type}.csv`` per type, UTF-8 with a header, objects flattened to dotted
  columns and lists as JSON text.

A folder is written under a temporary name beside its target and renamed into place,
so a crash never leaves a half folder under the final name.

No export replaces a database: a target that is a DuckDB database or the write-ahead
log of one is refused (:func:`.export.refuse_database`), and so is an existing folder
that holds one, since replacing the folder deletes what was in it.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import os
import shutil
import tempfile
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

import duckdb
import pyarrow as pa

from ..._lazy import lazy_module
from ..errors import InvalidInputError
from ..postgres.snapshot import in_duckdb
from ..reading import ScenarioReader
from ..version_cache import VersionCache
from .export import (
    _cannot_write,
    _current_umask,
    _fsync_folder,
    chosen_types,
    export_scenario,
    is_duckdb_database,
    refuse_target,
    safe_file_name,
    target_path,
    write_atomically,
)
from .tables import type_tables

if TYPE_CHECKING:  # imported on first use: see healthsim._lazy
    import pyarrow.parquet as pq
else:
    pq = lazy_module("pyarrow.parquet")

if TYPE_CHECKING:
    from ..database import Database
    from ..store import ScenarioStore

__all__ = ["FORMATS", "check_format", "concatenated", "export_formatted", "load_frames"]

FORMATS = ("json", "ndjson", "parquet", "csv")
_FOLDER_FORMATS = ("parquet", "csv")
_BATCH_ROWS = 20_000
Progress = Callable[[int, int], None]


def check_format(format: object) -> str:
    """``format`` if it is one of :data:`FORMATS` (any case), else a clear error."""
    if not isinstance(format, str) or format.lower() not in FORMATS:
        raise InvalidInputError(f"unknown export format {format!r}; use one of: {', '.join(FORMATS)}")
    return format.lower()


def export_formatted(
    store: ScenarioStore,
    name: str,
    path: str | os.PathLike[str] | None,
    *,
    format: str,
    version: int | None,
    types: list[str] | None,
    progress: Progress | None = None,
) -> Path:
    """Write a scenario in ``format``; see :meth:`ScenarioStore.export_scenario`."""
    format = check_format(format)
    if format == "json":
        return export_scenario(store, name, path, version=version, types=types, progress=progress)
    with store.open_scenario(name, version) as opened, in_duckdb(opened) as reader:
        chosen = chosen_types(reader, types)
        if format == "ndjson":
            target = target_path(reader.header.name, path, suffix=".ndjson")
            write_atomically(target, lambda out: _write_ndjson(reader, out, chosen, progress), database=store.path)
            return target
        folder = _folder_path(reader.header.name, path, format, store.path)
        _write_folder(reader, folder, format, chosen, progress, VersionCache(store.path))
        return folder


def load_frames(
    store: ScenarioStore, name: str, *, version: int | None = None, types: list[str] | None = None
) -> dict[str, pa.Table]:
    """The scenario's entities as one Arrow table per type (the Parquet columns)."""
    cache = VersionCache(store.path)
    with store.open_scenario(name, version) as reader:
        chosen = chosen_types(reader, types)
        wanted = chosen if chosen is not None else list(reader.counts)
        made = (reader.header.scenario_id, reader.version, reader.header.updated_at)
        kept = cache.frames_files(*made, wanted)
        if kept is not None:
            with contextlib.suppress(OSError, pa.ArrowException):  # damaged: built again
                return {t: pq.read_table(path) for t, path in kept.items()}
        return _build_frames(reader, chosen, cache, made)


def _build_frames(
    opened: ScenarioReader, chosen: list[str] | None, cache: VersionCache, made: tuple[uuid.UUID, int, _dt.datetime]
) -> dict[str, pa.Table]:
    """:func:`load_frames`'s tables, built (on DuckDB; a team store's scenario is copied
    there first) and kept."""
    with in_duckdb(opened) as reader:
        # The tables are the Parquet export's files read back: one way to build them, and
        # what is kept for the next call is exactly what this one returns.
        scratch = cache.scratch()
        try:
            files: dict[str, Path] = {}
            for table in type_tables(reader, chosen):
                files[table.entity_type] = scratch / f"{len(files)}.parquet"
                _copy(reader.connection, table.sql, files[table.entity_type], "parquet")
            frames = {t: pq.read_table(path) for t, path in files.items()}
            if chosen is None:  # every type: worth keeping
                cache.keep_frames(*made, files, move=True)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
    return frames


# --- NDJSON ----------------------------------------------------------------------------------


def _write_ndjson(reader: ScenarioReader, out: BinaryIO, types: list[str] | None, progress: Progress | None) -> None:
    chosen = [t for t in reader.counts if types is None or t in types]
    total, done = sum(reader.counts[t] for t in chosen), 0
    for entity_type in chosen:
        # Raw line breaks in stored text can only be whitespace between tokens (JSON
        # strings escape theirs), so replacing them keeps the entity and makes one line.
        source = reader.rows_sql(entity_type, columns="id, entity_type, entity_id, entity_data")
        sql = (
            'SELECT \'{"entity_type":\' || to_json(entity_type) || \',"entity_id":"\' || '
            'CAST(entity_id AS VARCHAR) || \'","data":\' || '
            "replace(replace(entity_data, chr(10), ' '), chr(13), ' ') || '}' || chr(10) AS line "
            f"FROM ({source}) ORDER BY id"
        )
        for batch in reader.connection.sql(sql).to_arrow_reader(_BATCH_ROWS):
            out.write(concatenated(batch.column(0)))
            done += batch.num_rows
            if progress is not None:
                progress(done, total)


def concatenated(column: pa.Array) -> memoryview:
    """The strings of ``column`` one after the other, from its data buffer (no copy)."""
    if not len(column):
        return memoryview(b"")
    if not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)):
        column = column.cast(pa.large_string())
    _, offsets, data = column.buffers()
    bounds = memoryview(offsets).cast("q" if pa.types.is_large_string(column.type) else "i")
    return memoryview(data)[bounds[column.offset] : bounds[column.offset + len(column)]]


# --- Parquet and CSV folders -----------------------------------------------------------------


def _folder_path(name: str, path: str | os.PathLike[str] | None, format: str, database: Database) -> Path:
    """The folder to write: ``path`` itself, ``{name}-{format}`` inside it when it is a
    folder (or ends in ``/``), or ``~/Downloads/{name}-{format}``.

    Raises:
        InvalidInputError: the folder would replace a file, a DuckDB database or its
            write-ahead log, or an existing folder that holds a DuckDB database.
    """
    folder = target_path(name, path, suffix=f"-{format}")
    refuse_target(folder, database)  # (a pipe would be called "a file, not a folder" below)
    if folder.is_dir() and not folder.is_symlink():
        _refuse_folder_of_databases(folder, database)
    if folder.exists() and not folder.is_dir():
        raise InvalidInputError(
            f"{str(folder)!r} is a file, not a folder; a {format} export writes a folder with one file "
            "per entity type: choose another path"
        )
    return folder


def _refuse_folder_of_databases(folder: Path, database: Database) -> None:
    """Refuse to replace ``folder`` if the store's database, or any DuckDB database, is in it.

    An existing folder is replaced whole and the old one deleted (:func:`_replace_folder`),
    with whatever it holds. It is usually an earlier export (a few files), so it is
    searched all through; links are not followed, as deleting a link leaves its target.

    Raises:
        InvalidInputError: a database is in ``folder``; the message names it.
    """
    found = None
    if isinstance(database, Path):
        real_database, real_folder = Path(os.path.realpath(database)), Path(os.path.realpath(folder))
        if real_database.is_relative_to(real_folder):
            found = f"the scenario database {str(database)!r}"
    if found is None:
        for parent, _, files in os.walk(folder):
            inside = next((Path(parent, f) for f in files if _is_database_file(Path(parent, f))), None)
            if inside is not None:
                found = f"the DuckDB database {str(inside)!r}"
                break
    if found is not None:
        raise InvalidInputError(
            f"cannot export to {str(folder)!r}: it holds {found}, which replacing the folder would delete; "
            "choose another path; nothing was written"
        )


def _is_database_file(path: Path) -> bool:
    """Whether ``path`` is a DuckDB database itself (not a link to one)."""
    return not path.is_symlink() and is_duckdb_database(path)


def _write_folder(
    reader: ScenarioReader,
    folder: Path,
    format: str,
    types: list[str] | None,
    progress: Progress | None,
    cache: VersionCache,
) -> None:
    """Write the folder under a temporary name beside ``folder``, then rename it into
    place (an existing folder of that name is replaced only once the new one is whole)."""
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}.", suffix=".partial"))
    except OSError as exc:
        raise _cannot_write(folder / "x", exc) from exc
    try:
        tables = type_tables(reader, types)
        total, done = sum(reader.counts[t.entity_type] for t in tables), 0
        written: dict[str, Path] = {}
        for table in tables:
            target = staging / safe_file_name(table.entity_type, f".{format}")
            _copy(reader.connection, table.sql if format == "parquet" else table.flat_sql(), target, format)
            written[table.entity_type] = target
            done += reader.counts[table.entity_type]
            if progress is not None:
                progress(done, total)
        if format == "parquet" and types is None:  # load_frames of this version reads them
            cache.keep_frames(reader.header.scenario_id, reader.version, reader.header.updated_at, written)
        for path in staging.iterdir():
            _fsync_file(path)
        os.chmod(staging, 0o777 & ~_current_umask())
        _replace_folder(staging, folder)
    except BaseException as exc:
        shutil.rmtree(staging, ignore_errors=True)
        if isinstance(exc, OSError):
            raise _cannot_write(folder / "x", exc) from exc
        raise
    _fsync_folder(folder.parent)


def _copy(con: duckdb.DuckDBPyConnection, sql: str, target: Path, format: str) -> None:
    quoted = str(target).replace("'", "''")
    options = "FORMAT parquet, COMPRESSION zstd" if format == "parquet" else "FORMAT csv, HEADER true"
    con.execute(f"COPY ({sql}) TO '{quoted}' ({options})")


def _replace_folder(staging: Path, folder: Path) -> None:
    if not folder.exists():
        os.rename(staging, folder)
        return
    old = folder.with_name(f".{folder.name}.{uuid.uuid4().hex}.old")
    os.rename(folder, old)
    try:
        os.rename(staging, folder)
    except OSError:
        os.rename(old, folder)  # put the earlier export back
        raise
    shutil.rmtree(old, ignore_errors=True)


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
