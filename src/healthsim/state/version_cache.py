"""What was computed from a version of a scenario, kept beside the database file.

Building ``load_frames``'s tables or a summary reads and parses every entity's JSON
(seconds for a million entities); reading them back takes a fraction of that. A version
of a scenario never changes (every change makes a new one), so what was computed from it
is kept under the scenario's id, the version and the instant it was made (which also
tells apart a version made again after a backup of the database was restored):

    healthsim.duckdb.frames/{scenario_id}/v{version}-{microseconds}/
        0.parquet, 1.parquet, …, types.json     every type's table, as the Parquet export writes it
        summary-{samples}-{budget}-r{recipe}.json   a summary, as this release computes them
        keys.json                               per type, how many entities and top-level keys a
                                                save wrote, and some of those keys (lets a
                                                summary read every entity once)
        check-{day}-r{recipe}.json              a check made on that day (UTC; a rule reads the
                                                day: a birth in the future)

One version per scenario is kept (writing for a newer one removes the others), and
deleting a scenario removes its folder. It is an optimisation only: a file that cannot be
written, read or trusted is ignored, and the result is computed from the database.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import shutil
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from ._engines import TeamDatabase, engine_for

__all__ = ["VersionCache"]


_TYPES = "types.json"
_KEYS = "keys.json"
#: Per type of a version: entities, top-level keys in all, and some of those keys.
KeyTotal = tuple[int, int, list[str]]
# Raised when what a summary holds or how it is computed changes: summaries kept by an
# earlier release (another recipe) are never read, so an upgrade never shows stale ones.
SUMMARY_RECIPE = 5  # 3: values_by_code; 4: check counts, unfit values, age bands left out; 5: partial dates
# The same for checks: raised when a rule or the answer's shape changes.
CHECK_RECIPE = 2  # 2: partial dates in fields of mostly dates, numbers in references matched as numbers


class VersionCache:
    """What was computed from the scenarios' versions of one database file."""

    def __init__(self, database: str | os.PathLike[str] | TeamDatabase) -> None:
        found = Path(database) if isinstance(database, (str, os.PathLike)) else database
        self.root = engine_for(found).cache_folder(found)

    def _folder(self, scenario_id: uuid.UUID, version: int, made_at: _dt.datetime) -> Path:
        instant = int(made_at.replace(tzinfo=_dt.UTC).timestamp() * 1_000_000)
        return self.root / str(scenario_id) / f"v{version}-{instant}"

    # --- tables ---------------------------------------------------------------------------

    def frames_files(
        self, scenario_id: uuid.UUID, version: int, made_at: _dt.datetime, types: list[str]
    ) -> dict[str, Path] | None:
        """The kept Parquet file of each of ``types`` of that version, or None."""
        folder = self._folder(scenario_id, version, made_at)
        try:
            kept: list[str] = json.loads((folder / _TYPES).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        if not isinstance(kept, list) or not set(types) <= set(kept):
            return None
        files = {t: folder / f"{kept.index(t)}.parquet" for t in types}
        return files if all(f.is_file() for f in files.values()) else None

    def keep_frames(
        self,
        scenario_id: uuid.UUID,
        version: int,
        made_at: _dt.datetime,
        files: dict[str, Path],
        *,
        move: bool = False,
    ) -> None:
        """Keep the Parquet files of every type of a version (moved, or copied), numbered
        (type names need not be file names); ``types.json`` comes last, so half a set is
        never read. Best effort: nothing is raised."""
        folder = self._folder(scenario_id, version, made_at)
        with contextlib.suppress(OSError):
            self._make(folder)
            for i, source in enumerate(files.values()):
                if move:
                    os.replace(source, folder / f"{i}.parquet")
                else:
                    self._replace(folder, f"{i}.parquet", lambda path, s=source: shutil.copyfile(s, path))
            self._replace(folder, _TYPES, lambda path: path.write_text(json.dumps(list(files)), encoding="utf-8"))

    def scratch(self) -> Path:
        """A new empty folder to build files in, beside the kept ones when possible (so
        keeping them is a rename); the caller removes it."""
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            # Folders a killed process left behind (an hour is longer than any build).
            for stale in self.root.glob(".build-*"):
                with contextlib.suppress(OSError):
                    if stale.stat().st_mtime < time.time() - 3600:
                        shutil.rmtree(stale, ignore_errors=True)
            return Path(tempfile.mkdtemp(dir=self.root, prefix=".build-"))
        except OSError:
            return Path(tempfile.mkdtemp(prefix="healthsim-frames-"))

    # --- summaries --------------------------------------------------------------------------

    def read_summary(
        self, scenario_id: uuid.UUID, version: int, made_at: _dt.datetime, samples: int, budget: int
    ) -> dict[str, Any] | None:
        """A kept summary of that version, or None."""
        return _read_object(self._folder(scenario_id, version, made_at) / _summary_name(samples, budget))

    def write_summary(
        self,
        scenario_id: uuid.UUID,
        version: int,
        made_at: _dt.datetime,
        samples: int,
        budget: int,
        summary: dict[str, Any],
    ) -> None:
        """Keep a summary of a version."""
        self._keep(self._folder(scenario_id, version, made_at), _summary_name(samples, budget), summary)

    # --- checks ---------------------------------------------------------------------------

    def read_check(
        self, scenario_id: uuid.UUID, version: int, made_at: _dt.datetime, day: _dt.date
    ) -> dict[str, Any] | None:
        """A kept check of that version made on ``day``, or None."""
        found = _read_object(self._folder(scenario_id, version, made_at) / _check_name(day))
        return found if found is not None and isinstance(found.get("problems"), list) else None

    def write_check(
        self, scenario_id: uuid.UUID, version: int, made_at: _dt.datetime, day: _dt.date, check: dict[str, Any]
    ) -> None:
        """Keep a check of a version made on ``day`` (the other days' go)."""
        self._keep(self._folder(scenario_id, version, made_at), _check_name(day), check, replaces="check-*.json")

    def _keep(self, folder: Path, name: str, value: dict[str, Any], replaces: str | None = None) -> None:
        """Write ``value`` as the JSON file ``name`` of a version's folder (first removing the
        files ``replaces`` matches); nothing when it cannot be written."""
        text = json.dumps(value, ensure_ascii=False)
        with contextlib.suppress(OSError, ValueError):
            self._make(folder)
            for old in folder.glob(replaces) if replaces else []:
                old.unlink(missing_ok=True)
            self._replace(folder, name, lambda path: path.write_text(text, "utf-8"))

    # --- what a save knew ------------------------------------------------------------------

    def keep_key_totals(
        self, scenario_id: uuid.UUID, version: int, made_at: _dt.datetime, totals: dict[str, KeyTotal]
    ) -> None:
        """Keep, per type of a version a save wrote, how many entities it has, how many
        top-level keys they have in all, and some of those keys. Best effort: nothing
        is raised."""
        kept = {t: [count, total, keys] for t, (count, total, keys) in totals.items()}
        self._keep(self._folder(scenario_id, version, made_at), _KEYS, kept)

    def key_totals(self, scenario_id: uuid.UUID, version: int, made_at: _dt.datetime) -> dict[str, KeyTotal]:
        """What :meth:`keep_key_totals` kept of that version (types without it left out)."""
        kept = _read_object(self._folder(scenario_id, version, made_at) / _KEYS) or {}
        return {
            t: (item[0], item[1], item[2])
            for t, item in kept.items()
            if isinstance(item, list)
            and len(item) == 3
            and all(type(n) is int and n >= 0 for n in item[:2])
            and isinstance(item[2], list)
            and all(isinstance(k, str) for k in item[2])
        }

    def carry_key_totals(
        self,
        scenario_id: uuid.UUID,
        before: tuple[int, _dt.datetime],
        after: tuple[int, _dt.datetime],
    ) -> None:
        """Keep what a save counted of version ``before`` (its number and instant) for
        version ``after`` too: a change that left every entity as it was (a rename, a new
        description or tags)."""
        totals = self.key_totals(scenario_id, *before)
        if totals:
            self.keep_key_totals(scenario_id, *after, totals)

    # --- housekeeping -----------------------------------------------------------------------

    def forget(self, scenario_id: uuid.UUID) -> None:
        """Remove what was kept of a scenario (it was deleted)."""
        shutil.rmtree(self.root / str(scenario_id), ignore_errors=True)

    def forget_versions_but(self, scenario_id: uuid.UUID, versions: set[int]) -> None:
        """Remove what was kept of the scenario's versions not in ``versions`` (the
        history no longer has them)."""
        folder = self.root / str(scenario_id)
        with contextlib.suppress(OSError):
            for kept in folder.iterdir():
                if not kept.name.startswith(".") and _version_of(kept) not in versions:
                    shutil.rmtree(kept, ignore_errors=True)

    @staticmethod
    def _make(folder: Path) -> None:
        """Create a version's folder and remove the scenario's older ones; refuse (OSError)
        when a newer version is kept already: the newest is the one worth keeping."""
        mine = _version_of(folder)
        if folder.parent.is_dir():
            for other in folder.parent.iterdir():
                if other == folder or other.name.startswith("."):
                    continue
                if _version_of(other) > mine:
                    raise FileExistsError(f"a newer version is kept: {other.name}")
                shutil.rmtree(other, ignore_errors=True)
        folder.mkdir(parents=True, exist_ok=True)

    @staticmethod
    def _replace(folder: Path, name: str, write: Any) -> None:
        """Write one file under a temporary name in ``folder``, then rename it into place."""
        fd, temp = tempfile.mkstemp(dir=folder, prefix=".", suffix=".partial")
        os.close(fd)
        try:
            write(Path(temp))
            os.replace(temp, folder / name)
        except BaseException:
            Path(temp).unlink(missing_ok=True)
            raise


def _summary_name(samples: int, budget: int) -> str:
    return f"summary-{samples}-{budget}-r{SUMMARY_RECIPE}.json"


def _read_object(path: Path) -> dict[str, Any] | None:
    """The JSON object kept in ``path``, or None (no such file, or not an object)."""
    try:
        found = json.loads(path.read_text(encoding="utf-8"))  # json: exact big integers
    except (OSError, ValueError):
        return None
    return found if isinstance(found, dict) else None


def _check_name(day: _dt.date) -> str:
    return f"check-{day.isoformat()}-r{CHECK_RECIPE}.json"


def _version_of(folder: Path) -> int:
    """The version of a kept folder (``v12-…`` is 12; anything else 0)."""
    head = folder.name.split("-", 1)[0]
    return int(head[1:]) if head[:1] == "v" and head[1:].isdigit() else 0
