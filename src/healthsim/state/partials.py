"""Names of the temporary files and folders a writer makes beside its target, and the
clean-up of those a killed writer left behind.

Every export and ``query_to_file`` writes beside its target under a hidden name and
renames the result into place; an export replacing an earlier folder moves that one
aside first. The names say who wrote them::

    .{target name}.{pid}@{host}.{8 random characters}.partial   (being written)
    .{target name}.{pid}@{host}.{32 hex digits}.old             (an earlier export moved aside)

A process killed with ``kill -9`` (or a machine that lost power) cannot remove them. The
next write to the same target does (:func:`remove_stale_partials`): it removes those
whose writer ran on this machine (``host``) and is no longer running (no process
``pid``). Those of a writer still running, or of another machine (a shared network
folder), are left alone. Leftovers of earlier releases (no ``pid@host`` in the name) are
removed once they are a day old: no export runs that long.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import time
from pathlib import Path

__all__ = ["remove_stale_partials", "temp_prefix", "writer_tag"]

#: Age (seconds) past which a leftover without a writer's tag is removed.
_UNTAGGED_AGE = 24 * 3600
_TAGGED = re.compile(r"(?P<pid>[0-9]+)@(?P<host>[A-Za-z0-9-]*)\.[A-Za-z0-9_]+\.(?:partial|old)")
_UNTAGGED = re.compile(r"[a-z0-9_]{8}\.partial|[0-9a-f]{32}\.old")


def _host() -> str:
    """This machine's name as a tag: its first label, letters, digits and ``-`` only."""
    return re.sub(r"[^A-Za-z0-9-]", "", socket.gethostname().split(".")[0])[:32]


def writer_tag() -> str:
    """``{pid}@{host}``: who writes a temporary file (see the module's docstring)."""
    return f"{os.getpid()}@{_host()}"


def _name_prefix(target: Path) -> str:
    """``.{target name}.``, the name cut to 100 bytes so the temporary name (prefix, tag,
    random part, suffix) fits wherever the target's name does (255 bytes on most file systems)."""
    encoded = os.fsencode(target.name)
    if len(encoded) <= 100:
        return f".{target.name}."
    return f".{encoded[:100].decode('utf-8', 'ignore')}."  # 'ignore': a character cut in two


def temp_prefix(target: Path) -> str:
    """The prefix of a temporary file or folder written for ``target``:
    ``.{target name}.{pid}@{host}.`` (``tempfile.mkstemp``/``mkdtemp`` add the rest)."""
    return f"{_name_prefix(target)}{writer_tag()}."


def _gone(pid: int) -> bool:
    """Whether no process ``pid`` runs on this machine."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except (PermissionError, OverflowError, OSError):  # another user's process, or cannot tell
        return False
    return False


def _stale(rest: str, path: Path, host: str, now: float) -> bool:
    tagged = _TAGGED.fullmatch(rest)
    if tagged is not None:
        return tagged["host"] == host and _gone(int(tagged["pid"]))
    if _UNTAGGED.fullmatch(rest) is None:
        return False
    try:
        return now - path.lstat().st_mtime > _UNTAGGED_AGE
    except OSError:
        return False


def remove_stale_partials(target: Path) -> list[Path]:
    """Remove the temporary files and folders left beside ``target`` by writers that are
    gone (see the module's docstring); returns what was removed.

    Never raises: a leftover that cannot be removed (no permission, already gone) stays.
    """
    prefix = _name_prefix(target)
    host, now = _host(), time.time()
    removed: list[Path] = []
    try:
        entries = list(os.scandir(target.parent))
    except OSError:  # no folder yet, or not readable: nothing to clean
        return removed
    for entry in entries:
        if not entry.name.startswith(prefix):
            continue
        path = Path(entry.path)
        if not _stale(entry.name[len(prefix) :], path, host, now):
            continue
        try:
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(path)
            else:
                path.unlink()
        except OSError:
            continue
        removed.append(path)
    return removed
