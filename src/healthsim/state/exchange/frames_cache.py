"""A cache of the Arrow tables of ``load_frames``, as Parquet files beside the database.

Building the tables reads and parses every entity's JSON (seconds for a million); reading
them back from Parquet takes a tenth of that. A version of a scenario never changes (every
change makes a new one), so the tables of a version are cached under the scenario's id,
the version and the instant it was made (which also tells apart a version made again
after a backup of the database was restored):

    healthsim.duckdb.frames/{scenario_id}/v{version}-{microseconds}/{n}.parquet, types.json

One version per scenario is kept (writing a newer one removes the others), and deleting a
scenario removes its folder. The cache is an optimisation only: a folder that cannot be
written, read or trusted is ignored, and the tables are built from the database.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import shutil
import tempfile
import uuid
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

__all__ = ["FramesCache"]

_TYPES = "types.json"


class FramesCache:
    """The cached tables of the scenarios of one database file."""

    def __init__(self, db_path: Path) -> None:
        self.root = db_path.with_name(db_path.name + ".frames")

    def _folder(self, scenario_id: uuid.UUID, version: int, made_at: _dt.datetime) -> Path:
        instant = int(made_at.replace(tzinfo=_dt.UTC).timestamp() * 1_000_000)
        return self.root / str(scenario_id) / f"v{version}-{instant}"

    def read(
        self, scenario_id: uuid.UUID, version: int, made_at: _dt.datetime, types: list[str]
    ) -> dict[str, pa.Table] | None:
        """The cached tables of ``types`` of that version, or None (not cached, or unusable)."""
        folder = self._folder(scenario_id, version, made_at)
        try:
            cached: list[str] = json.loads((folder / _TYPES).read_text(encoding="utf-8"))
            if not set(types) <= set(cached):
                return None
            return {t: pq.read_table(folder / f"{cached.index(t)}.parquet") for t in types}
        except (OSError, ValueError, pa.ArrowException):
            return None

    def write(self, scenario_id: uuid.UUID, version: int, made_at: _dt.datetime, frames: dict[str, pa.Table]) -> None:
        """Cache the tables of every type of a version (best effort), replacing the
        scenario's other cached versions. Files are numbered: type names need not be
        file names."""
        folder = self._folder(scenario_id, version, made_at)
        with contextlib.suppress(OSError, pa.ArrowException):
            folder.parent.mkdir(parents=True, exist_ok=True)
            staging = Path(tempfile.mkdtemp(dir=folder.parent, prefix=".partial-"))
            try:
                for i, table in enumerate(frames.values()):
                    pq.write_table(table, staging / f"{i}.parquet", compression="zstd")
                # types.json is written last: a folder without it is never read.
                (staging / _TYPES).write_text(json.dumps(list(frames)), encoding="utf-8")
                os.rename(staging, folder)
            except BaseException:
                shutil.rmtree(staging, ignore_errors=True)
                raise
            for other in folder.parent.iterdir():
                if other != folder and not other.name.startswith(".partial-"):
                    shutil.rmtree(other, ignore_errors=True)

    def forget(self, scenario_id: uuid.UUID) -> None:
        """Remove a scenario's cached tables (it was deleted)."""
        shutil.rmtree(self.root / str(scenario_id), ignore_errors=True)
