"""Shared fixtures: every test gets its own home folder and database file.

Plain helper functions (``orphan_rows``, ``hold_database``, Hypothesis strategies, paths)
live in ``tests/helpers/``: test files import those, never this file or each other.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from healthsim.state import ScenarioStore
from helpers.paths import FIXTURES

sys.path.insert(0, str(FIXTURES))  # fixture builders such as legacy_db


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
