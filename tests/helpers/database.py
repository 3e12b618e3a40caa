"""Database helpers shared by tests: another process holding the file, orphan row counts."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

from healthsim.state._engines.postgres.server import TeamDatabase
from healthsim.state.database import connect

HOLD_SCRIPT = """
import sys, time, duckdb
con = duckdb.connect(sys.argv[1])
print("holding", flush=True)
time.sleep(float(sys.argv[2]))
con.close()
print("released", flush=True)
time.sleep(30)
"""


def hold_database(path: Path, seconds: float) -> subprocess.Popen[str]:
    """Start another process that holds the file read-write for ``seconds``."""
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD_SCRIPT, str(path), str(seconds)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "holding"
    return proc


def sql_rows(
    database: Path | TeamDatabase, sql: str, params: list[Any] | None = None, *, read_only: bool = False
) -> list[tuple[Any, ...]]:
    """The rows of one statement on either engine (a DuckDB file, or a team store), through
    the library's own connection (SQL both engines run). ``read_only`` looks without
    preparing the database first (which would remove an interrupted write's leftovers)."""
    with connect(database, read_only=read_only) as con:
        assert con is not None, f"no database at {database}"
        return [tuple(row) for row in con.execute(sql, params or []).fetchall()]


def orphan_rows(database: Path | TeamDatabase) -> int:
    """Entity and tag rows whose scenario does not exist (must always be 0), on either engine."""
    return int(
        sql_rows(
            database,
            "SELECT (SELECT count(*) FROM scenario_entities e WHERE NOT EXISTS "
            "  (SELECT 1 FROM scenarios s WHERE s.scenario_id = e.scenario_id)) + "
            "(SELECT count(*) FROM scenario_tags t WHERE NOT EXISTS "
            "  (SELECT 1 FROM scenarios s WHERE s.scenario_id = t.scenario_id))",
            read_only=True,
        )[0][0]
    )


def never_written(database: Path | TeamDatabase) -> bool:
    """Whether nothing was ever written there: no DuckDB file, or a team store without tables."""
    if isinstance(database, Path):
        return not database.exists()
    import psycopg

    with psycopg.connect(database.url) as con:
        row = con.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'").fetchone()
        return row is not None and row[0] == 0
