"""The process's DuckDB instance: files attached for one operation each, and let go after it."""

from __future__ import annotations

import multiprocessing
import os
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from healthsim.state import ScenarioStore
from healthsim.state._engines.duckdb.instance import process_instance

PATIENTS = {"patients": [{"patient_id": f"P{i}"} for i in range(5)]}


def attached_files() -> list[str]:
    """The files attached to the process's instance now (its own in-memory ones left out)."""
    with process_instance().base.cursor() as cur:
        rows = cur.execute("SELECT path FROM duckdb_databases() WHERE NOT internal AND path IS NOT NULL").fetchall()
    return [row[0] for row in rows]


def test_after_an_operation_the_file_is_free_and_checkpointed(tmp_path: Path) -> None:
    path = tmp_path / "h.duckdb"
    store = ScenarioStore(path)
    store.save_scenario("c", PATIENTS)
    assert attached_files() == []
    assert not path.with_name("h.duckdb.wal").exists()  # the detach checkpointed, as a close did
    # Another process opens it at once (no lock is left) and sees what was saved.
    counted = subprocess.run(
        [
            sys.executable,
            "-c",
            f"import duckdb; print(duckdb.connect({str(path)!r}).sql('SELECT count(*) FROM scenario_entities').fetchall()[0][0])",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert counted.stdout.strip() == "5", counted.stderr


def test_a_nested_operation_shares_the_attachment_and_the_outer_one_lets_go(tmp_path: Path) -> None:
    store = ScenarioStore(tmp_path / "h.duckdb")
    store.save_scenario("c", PATIENTS)
    with store.open_scenario("c") as reader:
        assert str(tmp_path / "h.duckdb") in attached_files()
        assert store.load_scenario("c")["entity_count"] == 5  # the same file, inside the open one
        assert reader.summary()["entity_count"] == 5
        assert str(tmp_path / "h.duckdb") in attached_files()
    assert attached_files() == []


def test_a_file_held_by_duckdb_in_this_process_is_still_used(tmp_path: Path) -> None:
    # A notebook that opened the file with duckdb.connect beside the library: DuckDB cannot
    # attach it to a second instance, so the library uses the notebook's, as it used to.
    path = tmp_path / "h.duckdb"
    store = ScenarioStore(path)
    store.save_scenario("c", PATIENTS)
    held = duckdb.connect(str(path))
    try:
        store.add_entities("c", {"patients": [{"patient_id": "P9"}]})
        assert held.sql("SELECT count(*) FROM scenario_entities").fetchall()[0][0] == 6
    finally:
        held.close()
    assert store.load_scenario("c")["entity_count"] == 6


def test_files_attached_at_once_keep_their_own_tables(tmp_path: Path) -> None:
    one, two = ScenarioStore(tmp_path / "one.duckdb"), ScenarioStore(tmp_path / "two.duckdb")
    one.save_scenario("a", PATIENTS)
    two.save_scenario("b", {"claims": [{"claim_id": "C1"}]})
    with one.open_scenario("a"):
        assert [s["name"] for s in two.list_scenarios()["scenarios"]] == ["b"]
        assert [s["name"] for s in one.list_scenarios()["scenarios"]] == ["a"]
    assert attached_files() == []


def _save_in_child(path: str) -> None:
    ScenarioStore(path).save_scenario("child", PATIENTS)


@pytest.mark.skipif(sys.platform != "linux", reason="fork is Linux's start method here")
def test_a_forked_child_makes_its_own_instance(tmp_path: Path) -> None:
    path = tmp_path / "h.duckdb"
    store = ScenarioStore(path)
    store.save_scenario("parent", PATIENTS)  # the parent's instance exists before the fork
    child = multiprocessing.get_context("fork").Process(target=_save_in_child, args=(str(path),))
    child.start()
    child.join(60)
    assert child.exitcode == 0
    assert sorted(s["name"] for s in store.list_scenarios()["scenarios"]) == ["child", "parent"]
    assert os.getpid() == process_instance().pid
