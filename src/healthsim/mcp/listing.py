"""``list_scenarios`` answered from memory while the database file has not changed.

An assistant lists scenarios often, and each list opens the DuckDB file (DESIGN: no
operation keeps it open between calls), which is most of the call's cost. A list reads
only what is in the file, so while the file and its write-ahead log are byte for byte the
same, the answer is the same: the server keeps the last answer per arguments with the
files' identity (inode, size, modification and change times) and gives it again when a
fresh ``stat`` shows the same identity.

A change another process makes changes the identity: every commit grows the
write-ahead log or rewrites the file. One case could hide it: a change in the same clock
tick as the list, leaving the sizes as they were (file times have a coarse resolution).
As git does with "racy" index entries, an answer is kept only when both files were last
changed at least :data:`QUIET_SECONDS` before the list began, and only if their
identity is the same after the list as before it. Team stores (PostgreSQL) are never
kept: other clients change them without touching any file here. Nor is the trash
(``deleted=True``), whose entries also depend on the clock (how long deleted ones stay).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Hashable
from pathlib import Path
from typing import Any

__all__ = ["QUIET_SECONDS", "ListingCache"]

#: How long both files must have been unchanged before an answer is kept.
QUIET_SECONDS = 2.0
_MAX_ENTRIES = 64
_WAL = ".wal"


def _identity(database: Path) -> tuple[Any, ...] | None:
    """The files' identity, or None when it cannot vouch for the content (a file missing
    or changed in the last :data:`QUIET_SECONDS`)."""
    now = time.time_ns()
    parts: list[Any] = []
    for path in (database, Path(f"{database}{_WAL}")):
        try:
            info = os.stat(path)
        except FileNotFoundError:
            if path == database:
                return None
            parts.append(None)
            continue
        except OSError:
            return None
        if now - max(info.st_mtime_ns, info.st_ctime_ns) < QUIET_SECONDS * 1e9:
            return None
        parts.append((info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns))
    return tuple(parts)


class ListingCache:
    """The last answer of each list, by database file and arguments, while the file is unchanged."""

    def __init__(self) -> None:
        self._kept: dict[Hashable, tuple[tuple[Any, ...], dict[str, Any]]] = {}
        self._lock = threading.Lock()  # tools run in worker threads

    def get(self, database: object, arguments: Hashable, compute: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        """``compute()``, or the answer it gave before for the same file and arguments
        when the file has not changed since.

        Args:
            database: the store's database: a ``Path`` (DuckDB file) is cached; anything
                else (a team store's URL) is always computed.
            arguments: the list's arguments, as a hashable value.
            compute: runs the list.
        """
        if not isinstance(database, Path):
            return compute()
        key = (str(database), arguments)
        before = _identity(database)
        with self._lock:
            kept = self._kept.get(key)
        if before is not None and kept is not None and kept[0] == before:
            return kept[1]
        answer = compute()
        if before is not None and _identity(database) == before:
            with self._lock:
                if len(self._kept) >= _MAX_ENTRIES:
                    self._kept.clear()
                self._kept[key] = (before, answer)
        return answer
