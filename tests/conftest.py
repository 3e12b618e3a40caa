"""Shared fixtures: every test gets its own home folder and database file."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import duckdb
import pytest

from healthsim.state import ScenarioStore

HERE = Path(__file__).parent
FIXTURES = HERE / "fixtures"
sys.path.insert(0, str(FIXTURES))


@pytest.fixture(autouse=True)
def isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point HOME and HEALTHSIM_DB at tmp_path so no test touches the real ~/.healthsim."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("HEALTHSIM_DB", str(home / ".healthsim" / "healthsim.duckdb"))
    monkeypatch.delenv("HEALTHSIM_LOCK_TIMEOUT", raising=False)
    return home


@pytest.fixture
def db_path(isolated_home: Path) -> Path:
    return Path(os.environ["HEALTHSIM_DB"])


@pytest.fixture
def store(db_path: Path) -> ScenarioStore:
    return ScenarioStore(db_path)


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
