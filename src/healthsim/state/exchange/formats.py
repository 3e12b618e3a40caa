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
so a crash never leaves a half folder under the final name; temporary folders a killed
export left behind are removed by the next export to that place (:mod:`.partials`).

Every Parquet or CSV folder holds a hidden manifest, ``.healthsim-export.json`` (the
format, scenario, version and the files written). It is how an earlier export is
recognised: exporting again to the same path replaces a folder that has one (whether
the path names it or the folder it is in), and never one without it. A folder without
it is another folder of the user's: the export goes inside it as ``{name}-{format}``
(as before), and an existing ``{name}-{format}`` that is not an earlier export, or an
earlier export holding files it did not write, is refused rather than deleted.

No export replaces a database: a target that is a DuckDB database or the write-ahead
log of one is refused (:func:`.export.refuse_database`), and so is an existing folder
that holds one, since replacing the folder deletes what was in it.
"""

from __future__ import annotations

import contextlib
import ctypes
import datetime as _dt
import errno
import json
import os
import re
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

import duckdb
import pyarrow as pa

from ..._lazy import lazy_module
from .._engines import AnalyticsConnection
from ..errors import DatabaseError, InvalidInputError
from ..files import (
    cannot_write,
    concatenated,
    current_umask,
    fsync_folder,
    is_duckdb_database,
    output_file_path,
    refuse_target,
    safe_file_name,
    target_path,
    write_atomically,
)
from ..partials import remove_stale_partials, temp_prefix
from ..reading import ScenarioReader, in_duckdb
from ..safe_csv import SafeCsvWriter
from ..version_cache import VersionCache
from .export import chosen_types, export_scenario
from .tables import TypeTable, type_tables

if TYPE_CHECKING:  # imported on first use: see healthsim._lazy
    import pyarrow.parquet as pq
else:
    pq = lazy_module("pyarrow.parquet")

if TYPE_CHECKING:
    from .._engines import Database

__all__ = [
    "FHIR_FORMATS",
    "FORMATS",
    "MANIFEST",
    "check_format",
    "export_formatted",
    "is_export_folder",
    "load_frames",
]

#: FHIR R4 (issue 23): written by :mod:`.fhir.export` with this module's folder rules.
FHIR_FORMATS = ("fhir", "fhir-bundle")
FORMATS = ("json", "ndjson", "parquet", "csv", *FHIR_FORMATS)
_FOLDER_FORMATS = ("parquet", "csv")
_BATCH_ROWS = 20_000
#: The hidden file in every Parquet or CSV export folder that says it is one of ours.
MANIFEST = ".healthsim-export.json"
_MANIFEST_KIND = "healthsim-export"
#: Files a desktop adds to any folder it shows: not a reason to keep an earlier export.
_DESKTOP_FILES = frozenset({".DS_Store", "Thumbs.db", "desktop.ini"})
# DuckDB's I/O errors carry the operating system's errno in their JSON text.
_ERRNO = re.compile(r'"errno"\s*:\s*"?([0-9]+)')
_ERRNO_TEXT = {
    "No space left on device": errno.ENOSPC,
    "Disk quota exceeded": errno.EDQUOT,
    "File too large": errno.EFBIG,
    "Permission denied": errno.EACCES,
    "Read-only file system": errno.EROFS,
}
Progress = Callable[[int, int], None]


def check_format(format: object) -> str:
    """``format`` if it is one of :data:`FORMATS` (any case), else a clear error."""
    if not isinstance(format, str) or format.lower() not in FORMATS:
        raise InvalidInputError(f"unknown export format {format!r}; use one of: {', '.join(FORMATS)}")
    return format.lower()


def export_formatted(
    reader: ScenarioReader,
    database: Database,
    path: str | os.PathLike[str] | None,
    *,
    format: str,
    types: list[str] | None,
    progress: Progress | None = None,
) -> Path:
    """Write the scenario version ``reader`` reads in ``format`` (``database``: the
    reader's, which no output may replace); see :meth:`ScenarioStore.export_scenario`."""
    format = check_format(format)
    if format in FHIR_FORMATS:  # written by .fhir.export, which the store calls (it uses this module)
        raise InvalidInputError(f"export_formatted does not write {format!r}; use ScenarioStore.export_scenario")
    if format == "json":
        return export_scenario(reader, database, path, types=types, progress=progress)
    with in_duckdb(reader) as analysed:
        chosen = chosen_types(analysed, types)
        if format == "ndjson":
            target = target_path(analysed.header.name, path, suffix=".ndjson")
            write_atomically(target, lambda out: _write_ndjson(analysed, out, chosen, progress), database=database)
            return target
        folder = _folder_path(analysed.header.name, path, format, database)
        _write_folder(analysed, folder, format, chosen, progress, VersionCache(database))
        return folder


def load_frames(reader: ScenarioReader, database: Database, *, types: list[str] | None = None) -> dict[str, pa.Table]:
    """The entities of the scenario version ``reader`` reads as one Arrow table per type
    (the Parquet columns), kept beside ``database`` once built."""
    cache = VersionCache(database)
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
                try:
                    _copy(reader.analytics, table.sql, files[table.entity_type], "parquet")
                except OSError as exc:  # a full disk, say (it was "DuckDB refused the operation")
                    raise DatabaseError(
                        f"cannot build the tables of scenario {reader.header.name!r} in {str(scratch.parent)!r}: "
                        f"{exc.strerror or exc}; free some space on that disk and try again"
                    ) from None
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
        for batch in reader.analytics.sql(sql).to_arrow_reader(_BATCH_ROWS):
            out.write(concatenated(batch.column(0)))
            done += batch.num_rows
            if progress is not None:
                progress(done, total)


# --- Parquet and CSV folders -----------------------------------------------------------------


def _folder_path(name: str, path: str | os.PathLike[str] | None, format: str, database: Database) -> Path:
    """The folder to write: ``path`` itself when it is an earlier export (it holds our
    manifest) or does not exist, ``{name}-{format}`` inside it when it is another folder
    (or ends in ``/``), or ``~/Downloads/{name}-{format}``.

    Raises:
        InvalidInputError: the folder would replace a file, a DuckDB database or its
            write-ahead log, an existing folder that holds a DuckDB database, or a folder
            that is not an earlier export of ours (or holds files that export did not write).
    """
    given = None if path is None else Path(os.path.abspath(output_file_path(path)))
    if given is not None and is_export_folder(given):
        folder = given  # an earlier export: replaced, never nested inside
    else:
        folder = target_path(name, path, suffix=f"-{format}")
    refuse_target(folder, database)  # (a pipe would be called "a file, not a folder" below)
    if folder.is_dir() and not folder.is_symlink():
        _refuse_folder_of_databases(folder, database)
        _refuse_foreign_folder(folder)
    if folder.exists() and not folder.is_dir():
        raise InvalidInputError(
            f"{str(folder)!r} is a file, not a folder; a {format} export writes a folder with one file "
            "per entity type: choose another path"
        )
    return folder


def _manifest(folder: Path) -> dict[str, object] | None:
    """The manifest of the export in ``folder``, or None if it is not one of ours."""
    marker = folder / MANIFEST
    try:
        if marker.is_symlink() or not marker.is_file() or marker.stat().st_size > 1 << 20:
            return None
        manifest = json.loads(marker.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if isinstance(manifest, dict) and manifest.get("kind") == _MANIFEST_KIND:
        return manifest
    return None


def is_export_folder(folder: Path) -> bool:
    """Whether ``folder`` is a Parquet or CSV export HealthSim wrote (it holds
    :data:`MANIFEST`; a link to a folder is not one)."""
    try:
        return folder.is_dir() and not folder.is_symlink() and _manifest(folder) is not None
    except OSError:
        return False


def _refuse_foreign_folder(folder: Path) -> None:
    """Refuse to replace ``folder`` unless it is empty or an earlier export of ours that
    holds only what that export wrote (files a desktop adds aside): replacing deletes it.

    Raises:
        InvalidInputError: naming the folder and what in it is not ours.
    """
    try:
        names = sorted(entry.name for entry in os.scandir(folder))
    except OSError as exc:
        raise cannot_write(folder, exc) from exc
    if not names:
        return
    manifest = _manifest(folder)
    if manifest is None:
        raise InvalidInputError(
            f"cannot export to {str(folder)!r}: it is a folder that is not an earlier HealthSim export "
            f"(it has no {MANIFEST}), which replacing it would delete; choose another path, or remove "
            "the folder yourself; nothing was written"
        )
    files = manifest.get("files")
    ours = {MANIFEST, *(f for f in (files if isinstance(files, list) else []) if isinstance(f, str))}
    extra = [n for n in names if n not in ours and n not in _DESKTOP_FILES and not n.startswith("._")]
    if extra:
        shown = ", ".join(map(repr, extra[:3])) + (f" and {len(extra) - 3} more" if len(extra) > 3 else "")
        raise InvalidInputError(
            f"cannot export to {str(folder)!r}: this earlier export also holds {shown}, which it did not "
            "write and replacing it would delete; move them out or choose another path; nothing was written"
        )


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
        remove_stale_partials(folder)  # what a killed earlier export left beside it
        staging = Path(tempfile.mkdtemp(dir=folder.parent, prefix=temp_prefix(folder), suffix=".partial"))
    except OSError as exc:
        raise cannot_write(folder, exc) from exc
    try:
        tables = type_tables(reader, types)
        total, done = sum(reader.counts[t.entity_type] for t in tables), 0
        written: dict[str, Path] = {}
        for table in tables:
            target = staging / safe_file_name(table.entity_type, f".{format}")
            if format == "parquet":
                _copy(reader.analytics, table.sql, target, format)
            else:
                _write_csv(reader.analytics, table, target)
            written[table.entity_type] = target
            done += reader.counts[table.entity_type]
            if progress is not None:
                progress(done, total)
        if format == "parquet" and types is None:  # load_frames of this version reads them
            cache.keep_frames(reader.header.scenario_id, reader.version, reader.header.updated_at, written)
        _write_manifest(staging, reader, format, written)
        for path in staging.iterdir():
            _fsync_file(path)
        os.chmod(staging, 0o777 & ~current_umask())
        _replace_folder(staging, folder)
    except BaseException as exc:
        shutil.rmtree(staging, ignore_errors=True)
        if _interrupted(exc):  # Ctrl-C while DuckDB worked: said as an interruption, not a bug
            raise KeyboardInterrupt from None
        if isinstance(exc, OSError):
            raise cannot_write(folder, exc) from exc
        raise
    fsync_folder(folder.parent)


def _interrupted(exc: BaseException) -> bool:
    """Whether ``exc`` is DuckDB's way of saying Ctrl-C stopped it: an ``InterruptException``,
    the ``RuntimeError('Query interrupted')`` its Python client raises on SIGINT, or (rows
    streamed through Arrow) an ``OSError`` without errno carrying DuckDB's ``INTERRUPT`` error."""
    if isinstance(exc, duckdb.InterruptException):
        return True
    if isinstance(exc, OSError):
        return exc.errno is None and str(exc).startswith("INTERRUPT")
    return type(exc) is RuntimeError and "interrupted" in str(exc).lower()


def _write_manifest(staging: Path, reader: ScenarioReader, format: str, written: dict[str, Path]) -> None:
    """The manifest that marks the folder as our export (and lists what it holds)."""
    manifest = {
        "kind": _MANIFEST_KIND,
        "manifest_version": 1,
        "format": format,
        "scenario": reader.header.name,
        "scenario_id": str(reader.header.scenario_id),
        "scenario_version": reader.version,
        "written_at": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "types": list(written),
        "files": [path.name for path in written.values()],
    }
    text = json.dumps(manifest, ensure_ascii=False, indent=2) + "\n"
    (staging / MANIFEST).write_text(text, encoding="utf-8")


def _duckdb_failure(exc: duckdb.Error) -> OSError:
    """DuckDB's error writing a file as the ``OSError`` it stands for (its errno, when it
    gives one), so that a full disk is said as such rather than reported as a bug."""
    text = " ".join(str(exc).split())
    found = _ERRNO.search(text)
    code = int(found.group(1)) if found else next((n for t, n in _ERRNO_TEXT.items() if t in text), None)
    if code is None:
        return OSError(text)
    return OSError(code, os.strerror(code))


def _copy(con: AnalyticsConnection, sql: str, target: Path, format: str) -> None:
    """Write the rows of ``sql`` to the Parquet file ``target`` (DuckDB's writer)."""
    assert format == "parquet", format  # CSV goes through SafeCsvWriter (_write_csv), never COPY
    with _utf8_path(target) as path:
        quoted = path.replace("'", "''")
        try:
            con.execute(f"COPY ({sql}) TO '{quoted}' (FORMAT parquet, COMPRESSION zstd)")
        except duckdb.IOException as exc:  # a full disk, say: the OSError it is
            raise _duckdb_failure(exc) from None


@contextmanager
def _utf8_path(target: Path) -> Iterator[str]:
    """``target`` as text DuckDB takes: itself, or when its folder's name holds an undecodable
    byte (``caf\udce9``, which DuckDB refuses), the same file reached through an open descriptor
    of the folder (``/proc/self/fd/N/name``, Linux), which is ASCII up to the file's own name."""
    text = str(target)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        if not Path("/proc/self/fd").is_dir():
            raise InvalidInputError(f"cannot write {text!r}: its name is not UTF-8; choose another path") from None
        fd = os.open(target.parent, os.O_RDONLY | os.O_DIRECTORY)
        try:
            yield f"/proc/self/fd/{fd}/{target.name}"
        finally:
            os.close(fd)
        return
    yield text


def _write_csv(con: AnalyticsConnection, table: TypeTable, target: Path) -> None:
    """The CSV file of ``table``: its rows streamed from DuckDB through :class:`SafeCsvWriter`."""
    sql, names = table.csv_sql()
    rows = con.sql(sql).to_arrow_reader(_BATCH_ROWS)
    schema = pa.schema([pa.field(name, field.type) for name, field in zip(names, rows.schema, strict=True)])
    with open(target, "wb") as out:
        writer = SafeCsvWriter(out, schema)
        for batch in rows:
            writer.write_batch(pa.RecordBatch.from_arrays(batch.columns, schema=schema))
        writer.close()


def _replace_folder(staging: Path, folder: Path) -> None:
    """Put ``staging`` in place of ``folder``: one atomic swap where the system has one
    (Linux's ``renameat2(RENAME_EXCHANGE)``: readers see the earlier export or the new one,
    never neither), else the earlier one moved aside first and put back if the rename fails."""
    if not folder.exists():
        os.rename(staging, folder)
        return
    if _exchange(staging, folder):
        shutil.rmtree(staging, ignore_errors=True)  # the earlier export, now under the staging name
        return
    # Named with this process (.partials): should it be killed between the two renames,
    # the next export to this place removes the earlier export left aside.
    old = folder.with_name(f"{temp_prefix(folder)}{uuid.uuid4().hex}.old")
    os.rename(folder, old)
    try:
        os.rename(staging, folder)
    except OSError:
        os.rename(old, folder)  # put the earlier export back
        raise
    shutil.rmtree(old, ignore_errors=True)


_AT_FDCWD = -100
_RENAME_EXCHANGE = 2


def _exchange(a: Path, b: Path) -> bool:
    """Swap the paths ``a`` and ``b`` in one step (Linux ``renameat2``); False where the
    system or file system cannot (then nothing happened)."""
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):  # not Linux, or a C library without it
        return False
    renameat2.argtypes = (ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint)
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):  # no such call, or not on this file system
        return False
    raise OSError(code, os.strerror(code), str(b))


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# Public names of the folder rules, for the FHIR export (exchange/fhir), which writes its
# folders the same way.
MANIFEST_KIND = _MANIFEST_KIND
export_folder_path = _folder_path
replace_folder = _replace_folder
fsync_file = _fsync_file
interrupted = _interrupted
