"""Real processes: kill -9 in the middle of saves, and two processes saving at once."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from healthsim.state import ScenarioStore
from helpers.database import orphan_rows
from helpers.paths import HERE
from helpers.processes import kill_after, kill_while_working
from helpers.worker import version_entities

WORKER = HERE / "helpers" / "worker.py"
pytestmark = pytest.mark.slow


def run_worker(*args: str, chunk_rows: int | None = None) -> subprocess.Popen[str]:
    # (an overwrite waits after its commit until killed: see helpers.worker)
    env = {**os.environ, "HEALTHSIM_LOCK_TIMEOUT": "60", "HEALTHSIM_TEST_HOLD_AFTER_SAVE": "60"}
    if chunk_rows:
        env["HEALTHSIM_TEST_CHUNK_ROWS"] = str(chunk_rows)
    return subprocess.Popen(
        [sys.executable, str(WORKER), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def entity_rows(path: Path) -> int:
    con = duckdb.connect(str(path))
    try:
        return con.execute("SELECT count(*) FROM scenario_entities").fetchall()[0][0]
    finally:
        con.close()


@pytest.mark.parametrize("chunk_rows", [None, 7_500], ids=["one-transaction", "staged"])
def test_kill_during_overwrite_leaves_old_or_new(db_path: Path, chunk_rows: int | None) -> None:
    """Killed after its commit, an overwrite leaves the new version; killed anywhere in it, the old or the new."""
    size = 30_000  # 45,000 entities: a save of ~1 s; staged, six chunks of 7,500 rows
    store = ScenarioStore(db_path)
    store.save_scenario("victim", version_entities(0, size), description="v0")
    outcomes = {"old": 0, "new": 0}

    def check(current: int, version: int) -> int:
        loaded = store.load_scenario("victim")  # the next open also removes staged leftovers
        survivor = int(loaded["description"][1:])
        assert survivor in (current, version)
        outcomes["old" if survivor == current else "new"] += 1
        assert loaded["entity_count"] == size + size // 2
        assert {p["version"] for p in loaded["entities"]["patients"]} == {survivor}
        assert {e["version"] for e in loaded["entities"]["encounters"]} == {survivor}
        assert entity_rows(db_path) == size + size // 2  # no partial rows of the killed save
        assert orphan_rows(db_path) == 0
        return survivor

    # Killed once the worker said it had committed (it waits to be killed): the new version. The save's
    # measured length places the next kills inside a save: early, halfway, late, and near its commit.
    proc = run_worker("overwrite", str(db_path), "victim", "1", str(size), chunk_rows=chunk_rows)
    took = kill_after(proc, "saving", "saved")
    assert check(0, 1) == 1
    current = 1
    for version, fraction in enumerate((0.1, 0.4, 0.7, 0.9), start=2):
        proc = run_worker("overwrite", str(db_path), "victim", str(version), str(size), chunk_rows=chunk_rows)
        kill_while_working(proc, "saving", fraction * took)
        current = check(current, version)
    # Both ends were seen: a kill inside the save left the old version, a kill after its commit the new.
    assert outcomes["old"] >= 1 and outcomes["new"] >= 1, outcomes


def test_kill_during_first_save_leaves_nothing_or_everything(db_path: Path) -> None:
    store = ScenarioStore(db_path)
    store.save_scenario("bystander", {"patients": [{"patient_id": "B"}]})
    for attempt, delay in enumerate((0.05, 0.3, 0.6)):
        name = f"new-{attempt}"
        proc = run_worker("overwrite", str(db_path), name, "1", "80000", chunk_rows=20_000)
        kill_while_working(proc, "saving", delay)
        names = {s["name"] for s in store.list_scenarios()["scenarios"]}
        if name in names:
            assert store.load_scenario(name)["entity_count"] == 120_000
        assert "bystander" in names
        assert orphan_rows(db_path) == 0


def test_two_processes_saving_at_once_lose_nothing(db_path: Path) -> None:
    ScenarioStore(db_path).save_scenario("seed", {})  # create the file before the race
    workers = [run_worker("many", str(db_path), prefix, "15") for prefix in ("alpha", "beta")]
    for proc in workers:
        out, err = proc.communicate(timeout=240)
        assert proc.returncode == 0, err
        assert out.strip() == "done"
    store = ScenarioStore(db_path)
    for prefix in ("alpha", "beta"):
        listed = store.list_scenarios(tag=prefix)
        assert listed["total_count"] == 15
        assert all(s["entity_count"] == 200 for s in listed["scenarios"])
    assert entity_rows(db_path) == 30 * 200
    assert orphan_rows(db_path) == 0


# The import runs staged, in chunks of CHUNK_ROWS committed one by one (argv[3]: the default, 122,880, on
# far less data), and waits after it said "imported" until it is killed.
IMPORT_SCRIPT = """
import sys, time
from healthsim.state import ScenarioStore, bulk
bulk.CHUNK_ROWS = int(sys.argv[3])
print("importing", flush=True)
ScenarioStore(sys.argv[1]).import_scenario_from_json(sys.argv[2], name="imported")
print("imported", flush=True)
time.sleep(60)
"""


def test_kill_during_import_leaves_no_partial_scenario(db_path: Path, tmp_path: Path) -> None:
    """Killed after its commit, an import leaves the whole scenario; killed inside it, nothing."""
    store = ScenarioStore(db_path)
    store.save_scenario("source", version_entities(3, 60_000))  # 90,000 entities: three chunks of 30,000
    exported = store.export_scenario_to_json("source", tmp_path / "source.json")
    before = entity_rows(db_path)
    outcomes = []

    def check() -> None:
        names = {s["name"] for s in store.list_scenarios()["scenarios"]}
        assert orphan_rows(db_path) == 0
        if "imported" in names:
            assert store.load_scenario("imported")["entity_count"] == 90_000
            assert entity_rows(db_path) == before + 90_000
            store.delete_scenario("imported", purge=True)
            outcomes.append("done")
        else:
            assert entity_rows(db_path) == before  # nothing of the killed import is visible
            outcomes.append("none")

    def start() -> subprocess.Popen[str]:
        command = [sys.executable, "-c", IMPORT_SCRIPT, str(db_path), str(exported), "30000"]
        return subprocess.Popen(command, stdout=subprocess.PIPE, text=True)

    # Killed once it said it had imported: all of it. The import's measured length places the next kills
    # inside one: early, halfway, late.
    took = kill_after(start(), "importing", "imported")
    check()
    for fraction in (0.2, 0.5, 0.8):
        kill_while_working(start(), "importing", fraction * took)
        check()
    assert outcomes[0] == "done" and "none" in outcomes, outcomes  # both ends were seen
