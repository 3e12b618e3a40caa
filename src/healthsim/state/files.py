"""The library's file-output rules: safe names and paths, refused targets, atomic writes.

Every file the library writes (an export, a Parquet or CSV folder, a query result, a
report) goes through these: a name made safe for any file system, a target that is
not a DuckDB database, its write-ahead log or a special file, and a write that appears
atomically (a temporary file in the target folder, flushed to disk, renamed over the
target, the folder flushed too). A target that cannot be written is an
:class:`~healthsim.state.errors.InvalidInputError` naming the path and saying what to do,
and leaves nothing behind. (They lived in :mod:`healthsim.state.exchange.export`, which
still offers the public ones under their names.)
"""

from __future__ import annotations

import errno
import os
import re
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

import pyarrow as pa

from .errors import InvalidInputError
from .partials import remove_stale_partials, temp_prefix

if TYPE_CHECKING:  # only named here for type hints
    from .database import Database

__all__ = [
    "cannot_write",
    "concatenated",
    "current_umask",
    "default_export_path",
    "fsync_folder",
    "home_folder_problem",
    "is_duckdb_database",
    "output_file_path",
    "refuse_database",
    "refuse_special_file",
    "refuse_target",
    "safe_file_name",
    "space_problem",
    "target_path",
    "write_atomically",
]

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
    120 bytes of UTF-8 (120 ASCII characters, 40 CJK ones, 30 emoji), cut between characters:
    a file name may have 255 bytes, and the temporary name beside it adds about 60.
    """
    stem = _DOTS.sub("_", _UNSAFE.sub("_", name)).strip().lstrip(". ").rstrip(". ")
    # (120 characters of a CJK or emoji name were 360-480 bytes: no export without a path worked)
    stem = stem.encode("utf-8", "surrogatepass")[:_MAX_STEM].decode("utf-8", "ignore").rstrip(". ") or "scenario"
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
            raise cannot_write(Path(os.path.abspath(target)), exc) from exc
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
    if not text.strip():  # ("" was the current folder: a file written where nobody looked)
        raise InvalidInputError(
            f"output_path {text!r} is empty; give a file or folder to write, or None for the default; "
            "nothing was written"
        )
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


def cannot_write(target: Path, exc: OSError) -> InvalidInputError:
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
        raise cannot_write(target, exc) from exc
    return missing


def _remove_folders(folders: list[Path]) -> None:
    """Remove the folders an export created, deepest first, if they are still empty."""
    for folder in folders:
        try:
            folder.rmdir()
        except OSError:
            return  # not ours to empty (or already gone): leave it and its parents


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
        raise cannot_write(target, exc) from exc
    temp = Path(temp_name)
    try:
        with os.fdopen(fd, "wb", buffering=1 << 20) as out:
            write(out)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(temp, 0o666 & ~current_umask())  # mkstemp made it 0600; a normal file
        os.replace(temp, target)
    except BaseException as exc:
        temp.unlink(missing_ok=True)
        _remove_folders(created)
        if isinstance(exc, OSError):  # a full disk, or the target is a folder
            raise cannot_write(target, exc) from exc
        raise
    fsync_folder(target.parent)


def current_umask() -> int:
    """The process umask, read without changing it (os.umask would race other threads)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    return 0o022


def fsync_folder(folder: Path) -> None:
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


def concatenated(column: pa.Array) -> memoryview:
    """The strings of ``column`` one after the other, from its data buffer (no copy)."""
    if not len(column):
        return memoryview(b"")
    if not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)):
        column = column.cast(pa.large_string())
    _, offsets, data = column.buffers()
    bounds = memoryview(offsets).cast("q" if pa.types.is_large_string(column.type) else "i")
    return memoryview(data)[bounds[column.offset] : bounds[column.offset + len(column)]]
