"""Issue 23: a FHIR import killed with kill -9 in the middle leaves nothing behind."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from healthsim.state import ScenarioStore
from helpers.database import orphan_rows
from helpers.processes import kill_while_working
from helpers.sample import diabetes_cohort

pytestmark = pytest.mark.slow

IMPORT_SCRIPT = """
import sys
from healthsim.state import ScenarioStore
print("importing", flush=True)
ScenarioStore(sys.argv[1]).import_scenario(sys.argv[2], "imported", format=sys.argv[3])
print("imported", flush=True)
"""


def entity_rows(path: Path) -> int:
    con = duckdb.connect(str(path))
    try:
        return int(con.execute("SELECT count(*) FROM scenario_entities").fetchall()[0][0])
    finally:
        con.close()


def test_kill_during_fhir_import_leaves_no_partial_scenario(db_path: Path, tmp_path: Path) -> None:
    store = ScenarioStore(db_path)
    store.save_scenario("source", diabetes_cohort(10_000))  # ~60,000 resources: an import of ~1 s
    folder = store.export_scenario("source", tmp_path / "fhir", format="fhir")
    total = store.load_scenario("source")["entity_count"]
    before = entity_rows(db_path)
    outcomes = []
    for delay in (0.1, 0.4, 1.5):  # (the last one lets it finish on a quick machine: both ends checked)
        proc = subprocess.Popen(
            [sys.executable, "-c", IMPORT_SCRIPT, str(db_path), str(folder), "fhir"], stdout=subprocess.PIPE, text=True
        )
        kill_while_working(proc, "importing", delay)
        names = {s["name"] for s in store.list_scenarios()["scenarios"]}
        assert orphan_rows(db_path) == 0
        if "imported" in names:
            assert store.load_scenario("imported")["entity_count"] == total
            store.delete_scenario("imported", purge=True)
            outcomes.append("done")
        else:
            assert entity_rows(db_path) == before  # nothing of the killed import is visible
            outcomes.append("none")
    assert "none" in outcomes, outcomes
