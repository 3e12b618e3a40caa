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

import errno
import json
import os
import re
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

import pyarrow as pa

from ..._lazy import lazy_module
from ..errors import InvalidInputError
from ..reading import ScenarioReader
from .partials import remove_stale_partials, temp_prefix

if TYPE_CHECKING:  # imported on first use: see healthsim._lazy
    import pyarrow.compute as pc
else:
    pc = lazy_module("pyarrow.compute")

if TYPE_CHECKING:  # the store calls this module; it is only named here for type hints
    from ..database import Database
    from ..store import ScenarioStore

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
_MAX_STEM = 120
_DOTS = re.compile(r"\.{2,}")
_UNSAFE = re.compile(r'[\x00-\x1f\x7f-\x9f/\\:*?"<>|\u2028\u2029]')
#: Every DuckDB database file has these bytes at offset 8, after its header's checksum.
_DUCKDB_MAGIC = b"DUCK"
_DUCKDB_MAGIC_AT = 8
#: The suffix DuckDB adds to a database file's path for its write-ahead log.
_WAL = ".wal"


def safe_file_name(name: str, suffix: str = ".json") -> str:
    """A file name (ending in ``suffix``) made from a scenario name.

    Path separators, control and reserved characters and runs of dots (``..``) become
    ``_``; leading dots and spaces are dropped (no hidden files); the stem is at most
    120 characters.
    """
    stem = _DOTS.sub("_", _UNSAFE.sub("_", name)).strip().lstrip(". ").rstrip(". ")
    stem = stem[:_MAX_STEM].rstrip(". ") or "scenario"
    return f"{stem}{suffix}"


def default_export_path(name: str, suffix: str = ".json") -> Path:
    """``~/Downloads/{safe name}{suffix}``, with ``~`` read at each call."""
    return Path.home() / "Downloads" / safe_file_name(name, suffix)


def home_folder_problem(path: str) -> str | None:
    """Why the ``~`` or ``~user`` that ``path`` starts with names no folder, or None.

    :meth:`pathlib.Path.expanduser` raises a bare ``RuntimeError`` for these; this says
    it for a person, so exporters and importers can check before they expand.

    Args:
        path: the path as given (``~`` not yet expanded).

    Returns:
        None when ``path`` does not start with ``~`` or its ``~`` expands; otherwise the
        problem and what to do, e.g. ``"there is no user 'bob', so '~bob' names no
        folder; write the full path instead"``.
    """
    if not path.startswith("~"):
        return None
    try:
        Path(path).expanduser()
    except RuntimeError:  # no such user, or "~" with neither HOME nor a password entry
        head = Path(path).parts[0]
        if head == "~":
            return "the home folder '~' stands for cannot be found (HOME is not set); write the full path instead"
        return f"there is no user {head[1:]!r}, so {head!r} names no folder; write the full path instead"
    return None


def target_path(name: str, output_path: str | os.PathLike[str] | None, suffix: str = ".json") -> Path:
    """The absolute file to write a scenario to: ``output_path``, or the file named
    after the scenario inside it when it is a folder (or ends in ``/``), or the default.

    Raises:
        InvalidInputError: ``output_path`` is not a path, no file name can hold it (a NUL
            character, a lone surrogate, a name too long for the file system), or it
            starts with a ``~user`` that names no folder. Nothing is written.
    """
    if output_path is None:
        target = default_export_path(name, suffix)
    else:
        target = output_file_path(output_path)
        names_folder = os.fsdecode(output_path).endswith(("/", os.sep))
        try:
            is_folder = names_folder or target.is_dir()
        except OSError as exc:  # Path.is_dir raises ENAMETOOLONG and EACCES (Python 3.11)
            raise _cannot_write(Path(os.path.abspath(target)), exc) from exc
        if is_folder:
            target = target / safe_file_name(name, suffix)
    return Path(os.path.abspath(target))  # absolute and without '..', links untouched


def output_file_path(output_path: object) -> Path:
    """``output_path`` with its ``~`` expanded, once nothing makes it a path no file can
    have: exports and ``query_to_file`` check what users give them the same way.

    Raises:
        InvalidInputError: it is not a path, holds a lone surrogate or a NUL (every file
            system call would raise a bare error), or starts with a ``~user`` that names
            no folder. Nothing is written.
    """
    if not isinstance(output_path, (str, os.PathLike)):
        raise InvalidInputError(f"output_path must be a path, not {type(output_path).__name__}")
    try:
        os.fsencode(output_path)
    except UnicodeEncodeError:  # "\ud800" (not an undecodable byte's "\udcff")
        raise InvalidInputError(
            f"output_path {os.fsdecode(output_path)!r} holds a lone surrogate, which "
            "no file name can; remove it or encode the text correctly; nothing was written"
        ) from None
    text = os.fsdecode(output_path)
    if "\x00" in text:
        raise InvalidInputError(
            f"output_path {text!r} holds a NUL character (\\x00), which no file name can; "
            "remove it; nothing was written"
        )
    problem = home_folder_problem(text)
    if problem is not None:
        raise InvalidInputError(f"cannot export to {text!r}: {problem}; nothing was written")
    return Path(text).expanduser()


def refuse_target(target: Path, database: Database | None = None) -> None:
    """Refuse to write ``target`` over a database (:func:`refuse_database`) or a pipe,
    device or socket (:func:`refuse_special_file`): the checks every writer of a path a
    user chose makes before it writes anything.

    Raises:
        InvalidInputError: ``target`` is one of these; the message names it.
    """
    refuse_database(target, database)
    refuse_special_file(target)


def is_duckdb_database(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is a regular file (links followed) that starts like a DuckDB database.

    Only the magic bytes are read; anything that cannot be read (a missing file, a
    folder, a pipe, no permission) is not a database this could replace.
    """
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):  # a pipe would block the read
            return False
        with open(path, "rb") as file:
            head = file.read(_DUCKDB_MAGIC_AT + len(_DUCKDB_MAGIC))
    except (OSError, ValueError):  # ValueError: a NUL in the path
        return False
    return head[_DUCKDB_MAGIC_AT:] == _DUCKDB_MAGIC


def _same_file(a: Path, b: Path) -> bool:
    """Whether ``a`` and ``b`` are one file: the same inode (hard links, a case-insensitive
    disk), or, when one does not exist yet, the same path with links resolved."""
    try:
        return os.path.samefile(a, b)
    except (OSError, ValueError):
        return os.path.realpath(a) == os.path.realpath(b)


def refuse_database(target: Path, database: Database | None = None) -> None:
    """Refuse to write ``target`` (a file or folder) over a database.

    Refused: the store's own database file ``database`` and its write-ahead log (links
    resolved), any other file that is a DuckDB database, and the write-ahead log path of
    one (``{file}.wal``: DuckDB would replay whatever is there when it next opens it).
    Writing any of these replaces the database or breaks it.

    Args:
        target: the absolute path about to be written.
        database: the store's database (a team store's URL has no file and is ignored).

    Raises:
        InvalidInputError: ``target`` is one of these; the message names it and the database.
    """
    problem = None
    if isinstance(database, Path):
        if _same_file(target, database):
            problem = "it is the scenario database itself"
        elif _same_file(target, Path(f"{database}{_WAL}")):
            problem = f"it is the write-ahead log of the scenario database {str(database)!r}"
    if problem is None and is_duckdb_database(target):
        problem = "it is a DuckDB database, which this would replace"
    if problem is None and target.name.lower().endswith(_WAL):
        owner = target.with_name(target.name[: -len(_WAL)])
        if is_duckdb_database(owner):
            problem = f"it is the write-ahead log of the DuckDB database {str(owner)!r}"
    if problem is not None:
        raise InvalidInputError(
            f"cannot export to {str(target)!r}: {problem}; choose another file; nothing was written"
        )


def refuse_special_file(target: Path) -> None:
    """Refuse to write ``target`` if it is there and not a regular file (links followed).

    The export is renamed over its target, which would put a regular file in place of
    a pipe, device or socket (a link to one would be replaced too): whatever reads from
    or writes to it would lose it without a word. Only ``os.stat`` is called: nothing
    is opened, so a pipe cannot block. Nothing there, a regular file or a folder (the
    writer reports a folder) passes.

    Args:
        target: the absolute path about to be written.

    Raises:
        InvalidInputError: ``target`` is a pipe, device or socket; the message names it.
    """
    try:
        mode = os.stat(target).st_mode
    except (OSError, ValueError):  # nothing there, a dangling link: the writer reports the rest
        return
    if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
        raise InvalidInputError(
            f"cannot export to {str(target)!r}: it is not a regular file (a pipe, device or socket); "
            "choose a file path; nothing was written"
        )


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


def _blocking_file(folder: Path) -> Path | None:
    """The nearest existing ancestor of ``folder`` (itself included) if it is not a folder."""
    for candidate in (folder, *folder.parents):
        try:
            mode = os.stat(candidate).st_mode
        except OSError as exc:
            if exc.errno in (errno.ENOENT, errno.ENOTDIR, errno.ELOOP):
                continue  # not there (or under a file): look further up
            return None  # cannot tell (a name too long, no permission): the errno says why
        return None if stat.S_ISDIR(mode) else candidate
    return None


def space_problem(folder: Path | str, exc: OSError) -> str:
    """What a write that ran out of room (``ENOSPC``, ``EDQUOT``, ``EFBIG``) in ``folder``
    met and what to do, for a person; else the system's text of ``exc``."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        what = "the disk is full" if exc.errno == errno.ENOSPC else "your disk quota is used up"
        return (
            f"no space left on the disk ({what}: the disk holding {str(folder)!r}); "
            "free some space or choose an output path on another disk"
        )
    if exc.errno == errno.EFBIG:
        return (
            "a file grew past the size this process may write (its file size limit, ulimit -f) "
            "or the file system allows; raise the limit, or export fewer types or to another disk"
        )
    return str(exc.strerror or exc)


def _cannot_write(target: Path, exc: OSError) -> InvalidInputError:
    """The error for a target the file system refused, saying what to do."""
    blocker = _blocking_file(target.parent)
    if blocker is not None:
        problem = f"{str(blocker)!r} is a file, not a folder; choose another output path"
    elif exc.errno in (errno.EACCES, errno.EPERM):
        problem = f"permission denied in {str(target.parent)!r}; choose an output path in a folder you can write to"
    elif exc.errno == errno.EROFS:
        problem = f"{str(target.parent)!r} is on a read-only file system; choose another output path"
    elif exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        problem = space_problem(target.parent, exc)
    elif exc.errno == errno.ENAMETOOLONG:
        problem = "the path or a name in it is too long for the file system; choose a shorter name"
    else:
        problem = f"{exc.strerror or exc}; choose another output path"
    return InvalidInputError(f"cannot export to {str(target)!r}: {problem}; nothing was written")


def _make_folder(target: Path) -> list[Path]:
    """Create the target's folder; return the folders created, deepest first.

    Raises:
        InvalidInputError: the folder cannot be created.
    """
    missing: list[Path] = []
    folder = target.parent
    # os.path.exists, not Path.exists: a name too long must reach mkdir, which says so.
    while not os.path.exists(folder) and folder != folder.parent:
        missing.append(folder)
        folder = folder.parent
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:  # a file in the way, no permission, read-only disk
        _remove_folders(missing)
        raise _cannot_write(target, exc) from exc
    return missing


def _remove_folders(folders: list[Path]) -> None:
    """Remove the folders an export created, deepest first, if they are still empty."""
    for folder in folders:
        try:
            folder.rmdir()
        except OSError:
            return  # not ours to empty (or already gone): leave it and its parents


def chosen_types(reader: ScenarioReader, types: object) -> list[str] | None:
    """The types asked for (None: all), each checked against the scenario's.

    Raises:
        InvalidInputError: ``types`` is not a list of names, or names a type the scenario lacks.
    """
    if types is None:
        return None
    if isinstance(types, str) or not all(isinstance(t, str) for t in types):  # type: ignore[attr-defined]
        raise InvalidInputError("types must be a list of entity type names, e.g. ['patients', 'claims']")
    missing = []
    wanted: list[str] = []
    for raw in types:  # type: ignore[attr-defined]
        try:
            wanted.append(reader.stored_type(raw))  # "patient" is patients, as when saving
        except InvalidInputError:
            missing.append(raw)
    if missing:
        known = ", ".join(reader.counts) or "none"
        raise InvalidInputError(
            f"scenario {reader.header.name!r} has no entity type {', '.join(map(repr, missing))}; its types: {known}"
        )
    return list(dict.fromkeys(wanted))


def export_scenario(
    store: ScenarioStore,
    name: str,
    output_path: str | os.PathLike[str] | None = None,
    *,
    version: int | None = None,
    types: list[str] | None = None,
    progress: Progress | None = None,
) -> Path:
    """Write one scenario (or one of its versions; of ``types`` only, if given) to a JSON
    file; see :func:`healthsim.state.export_scenario_to_json`.

    Raises:
        ScenarioNotFoundError: no scenario has that name or id.
        InvalidInputError: ``output_path`` is not a path, is a DuckDB database (the
            store's own or another) or the write-ahead log of one, or its file or folder
            cannot be written (the message names it); nothing is left behind.
    """
    with store.open_scenario(name, version) as reader:
        chosen = chosen_types(reader, types)
        target = target_path(reader.header.name, output_path)

        def write(out: BinaryIO) -> None:
            out.write(_header_line(reader))
            _write_entities(reader, out, progress, chosen)
            out.write(b"}}\n")

        write_atomically(target, write, database=store.path)
    return target


def write_atomically(target: Path, write: Callable[[BinaryIO], object], *, database: Database | None = None) -> None:
    """Write a file through ``write`` to a temporary file beside ``target``, then move it
    into place: a crash or an error leaves no half file (and no folder it created).

    Args:
        target: the absolute path of the file to write.
        write: writes the whole file to the binary stream it is given.
        database: the store's database, refused as a target with its write-ahead log
            (any other DuckDB database is refused whether given or not).

    Raises:
        InvalidInputError: ``target`` is a DuckDB database or the write-ahead log of one
            (see :func:`refuse_database`), a pipe, device or socket (see
            :func:`refuse_special_file`), or the file or its folder cannot be written
            (the message names it). Nothing is written.
    """
    refuse_target(target, database)
    created = _make_folder(target)
    remove_stale_partials(target)  # what a killed earlier write left beside it
    try:
        fd, temp_name = tempfile.mkstemp(dir=target.parent, prefix=temp_prefix(target), suffix=".partial")
    except OSError as exc:
        _remove_folders(created)
        raise _cannot_write(target, exc) from exc
    temp = Path(temp_name)
    try:
        with os.fdopen(fd, "wb", buffering=1 << 20) as out:
            write(out)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(temp, 0o666 & ~_current_umask())  # mkstemp made it 0600; a normal file
        os.replace(temp, target)
    except BaseException as exc:
        temp.unlink(missing_ok=True)
        _remove_folders(created)
        if isinstance(exc, OSError):  # a full disk, or the target is a folder
            raise _cannot_write(target, exc) from exc
        raise
    _fsync_folder(target.parent)


def _current_umask() -> int:
    """The process umask, read without changing it (os.umask would race other threads)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    return 0o022


def _fsync_folder(folder: Path) -> None:
    """Make the rename durable (POSIX); harmless where folders cannot be opened."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
