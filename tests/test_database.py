"""Where the database is, its permissions, and sharing it with other processes."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from healthsim.state import (
    DatabaseError,
    DatabaseLockedError,
    InvalidInputError,
    ScenarioStore,
    list_scenarios,
    load_scenario,
    save_scenario,
)
from healthsim.state.database import lock_timeout, resolve_db_path

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


def test_default_path_is_under_home(monkeypatch: pytest.MonkeyPatch, isolated_home: Path) -> None:
    monkeypatch.delenv("HEALTHSIM_DB")
    assert resolve_db_path() == isolated_home / ".healthsim" / "healthsim.duckdb"
    save_scenario("home", {})
    assert (isolated_home / ".healthsim" / "healthsim.duckdb").exists()


def test_env_var_is_read_at_each_call(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HEALTHSIM_DB", str(tmp_path / "one.duckdb"))
    save_scenario("in-one", {})
    monkeypatch.setenv("HEALTHSIM_DB", str(tmp_path / "two.duckdb"))
    assert list_scenarios()["total_count"] == 0
    save_scenario("in-two", {})
    monkeypatch.setenv("HEALTHSIM_DB", str(tmp_path / "one.duckdb"))
    assert [s["name"] for s in list_scenarios()["scenarios"]] == ["in-one"]
    assert load_scenario("in-one")["name"] == "in-one"


def test_tilde_is_expanded(monkeypatch: pytest.MonkeyPatch, isolated_home: Path) -> None:
    monkeypatch.setenv("HEALTHSIM_DB", "~/custom/h.duckdb")
    assert resolve_db_path() == isolated_home / "custom" / "h.duckdb"


def test_owner_only_permissions(db_path: Path) -> None:
    save_scenario("private", {"patients": [{"patient_id": "A"}]})
    assert stat.S_IMODE(db_path.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE(db_path.stat().st_mode) == 0o600


@pytest.mark.parametrize(("raw", "expected"), [("", 30.0), ("2.5", 2.5), ("0", 0.0)])
def test_lock_timeout_values(monkeypatch: pytest.MonkeyPatch, raw: str, expected: float) -> None:
    monkeypatch.setenv("HEALTHSIM_LOCK_TIMEOUT", raw)
    assert lock_timeout() == expected


@pytest.mark.parametrize("raw", ["soon", "-1", "nan"])
def test_bad_lock_timeout(monkeypatch: pytest.MonkeyPatch, raw: str) -> None:
    monkeypatch.setenv("HEALTHSIM_LOCK_TIMEOUT", raw)
    with pytest.raises(InvalidInputError, match="HEALTHSIM_LOCK_TIMEOUT"):
        lock_timeout()


def test_not_a_database_file(tmp_path: Path) -> None:
    path = tmp_path / "notes.duckdb"
    path.write_text("these are my notes, not a database\n" * 200)
    with pytest.raises(DatabaseError, match="notes.duckdb"):
        ScenarioStore(path).list_scenarios()
    assert path.read_text().startswith("these are my notes")


def test_locked_database_times_out_with_a_clear_error(
    store: ScenarioStore, db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store.save_scenario("before", {})
    holder = hold_database(db_path, 60)
    try:
        monkeypatch.setenv("HEALTHSIM_LOCK_TIMEOUT", "0.5")
        started = time.monotonic()
        with pytest.raises(DatabaseLockedError) as info:
            store.save_scenario("blocked", {})
        waited = time.monotonic() - started
        assert 0.5 <= waited < 5
        assert str(db_path) in str(info.value) and "another process" in str(info.value)
    finally:
        holder.kill()
        holder.wait()
    assert [s["name"] for s in store.list_scenarios()["scenarios"]] == ["before"]


def test_locked_database_waits_for_release(
    store: ScenarioStore, db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store.save_scenario("before", {})
    holder = hold_database(db_path, 1.0)
    try:
        monkeypatch.setenv("HEALTHSIM_LOCK_TIMEOUT", "20")
        started = time.monotonic()
        store.save_scenario("after-wait", {"patients": [{"patient_id": "A"}]})
        assert time.monotonic() - started >= 0.5  # it really waited for the other process
    finally:
        holder.kill()
        holder.wait()
    assert store.load_scenario("after-wait")["entity_count"] == 1


def test_idle_process_holds_no_lock(store: ScenarioStore, db_path: Path) -> None:
    store.save_scenario("mine", {"patients": [{"patient_id": "A"}]})
    store.load_scenario("mine")
    store.list_scenarios()
    # This process is alive and has used the file; another process can take it read-write.
    code = (
        "import sys, duckdb; con = duckdb.connect(sys.argv[1]); "
        "con.execute(\"INSERT INTO scenario_tags VALUES (999, gen_random_uuid(), 'x')\"); "
        "con.execute('DELETE FROM scenario_tags WHERE id = 999'); print('ok')"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, str(db_path)], capture_output=True, text=True, timeout=60,
        env={**os.environ},
    )
    assert result.stdout.strip() == "ok", result.stderr
