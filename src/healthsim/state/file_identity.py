"""Whether a DuckDB file is byte for byte what it was: its identity, by ``stat``.

An answer computed from the file (a list, a token check, a query's private copy) can be
given again while the file and its write-ahead log keep their identity (device, inode,
size, modification and change times): every commit grows the log or rewrites the file.
One case could hide a change: one in the same clock tick as the computation, leaving the
sizes as they were (file times have a coarse resolution). As git does with "racy" index
entries, a file changed less than ``quiet_seconds`` ago has no identity, and a caller keeps
an answer only when the identity is the same after computing it as before.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

__all__ = ["file_identity"]

_WAL = ".wal"


def file_identity(database: Path, quiet_seconds: float) -> tuple[Any, ...] | None:
    """The identity of ``database`` and its ``.wal``, or None when it cannot vouch for the
    content (the file missing, unreadable, or either changed in the last ``quiet_seconds``)."""
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
        if now - max(info.st_mtime_ns, info.st_ctime_ns) < quiet_seconds * 1e9:
            return None
        parts.append((info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns))
    return tuple(parts)
