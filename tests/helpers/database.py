"""Database helpers shared by tests: another process holding the file, orphan row counts."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import duckdb

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


def orphan_rows(path: Path) -> int:
    """Entity and tag rows whose scenario does not exist (must always be 0)."""
    con = duckdb.connect(str(path))
    try:
        return con.execute(
            "SELECT (SELECT count(*) FROM scenario_entities e WHERE NOT EXISTS "
            "  (SELECT 1 FROM scenarios s WHERE s.scenario_id = e.scenario_id)) + "
            "(SELECT count(*) FROM scenario_tags t WHERE NOT EXISTS "
            "  (SELECT 1 FROM scenarios s WHERE s.scenario_id = t.scenario_id))"
        ).fetchall()[0][0]
    finally:
        con.close()
