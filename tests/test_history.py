"""History: versions of every change, loading and restoring them, the trash, diffs, retention."""

from __future__ import annotations

import getpass
import json
import math
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from healthsim.cli import app
from healthsim.state import (
    InvalidInputError,
    ScenarioExistsError,
    ScenarioNotFoundError,
    ScenarioStore,
    delete_scenario,
    diff_scenarios,
    list_scenarios,
    load_scenario,
    restore_scenario,
    save_scenario,
    scenario_history,
)
from healthsim.state.history import acting_as
from helpers.database import orphan_rows, sql_rows
from helpers.examples import examples


def spec_counts(store: ScenarioStore) -> tuple[int, int, int]:
    """The rows of the specification's three tables, on either engine."""
    (counts,) = sql_rows(
        store.path,
        "SELECT (SELECT count(*) FROM scenarios), (SELECT count(*) FROM scenario_entities), "
        "(SELECT count(*) FROM scenario_tags)",
    )
    return int(counts[0]), int(counts[1]), int(counts[2])


def test_every_change_is_a_version_that_loads_as_it_was(store: ScenarioStore, tmp_path: Path) -> None:
    v1 = {"patients": [{"patient_id": "A", "v": 1, "big": 2**70}, {"patient_id": "B"}], "members": []}
    store.save_scenario("c", v1, "first", ["t"])
    store.add_entities("c", {"patients": [{"patient_id": "A", "v": 2}, {"note": "no id"}]})
    store.remove_entities("c", "patients", ["B"])
    store.update_scenario("c", description="renamed later", add_tags=["x"])
    store.save_scenario("c", {"claims": [{"claim_id": "K"}]}, overwrite=True)
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"name": "c", "entities": {"claims": [{"claim_id": "K2"}]}}))
    store.import_scenario_from_json(path, overwrite=True)
    history = store.scenario_history("c")
    assert [v["version"] for v in history["versions"]] == [6, 5, 4, 3, 2, 1] and history["total_count"] == 6
    assert [v["operation"] for v in history["versions"]] == ["import", "overwrite", "update", "remove", "add", "save"]
    assert history["versions"][4]["changes"] == {
        "added": {"patients": 1},
        "removed": {},
        "updated": {"patients": 1},
        "scenario": {},
    }
    assert history["versions"][3]["changes"]["removed"] == {"patients": 1}
    assert history["versions"][1]["changes"] == {
        "added": {"claims": 1},
        "removed": {"patients": 2},
        "updated": {},
        "scenario": {"description": ["renamed later", None], "tags": [["t", "x"], []]},
    }
    first = store.load_scenario("c", version=1)
    assert first["entities"] == v1 and list(first["entities"]) == ["patients", "members"]
    assert first["description"] == "first" and first["tags"] == ["t"] and first["version"] == 1
    assert first["metadata"]["provenance"]["operation"] == "save"
    assert store.load_scenario("c", 2)["entities"]["patients"] == [
        {"patient_id": "A", "v": 2},
        {"patient_id": "B"},
        {"note": "no id"},
    ]
    assert store.load_scenario("c", 3)["entities"]["patients"] == [{"patient_id": "A", "v": 2}, {"note": "no id"}]
    fourth = store.load_scenario("c", 4)
    assert fourth["description"] == "renamed later" and fourth["tags"] == ["t", "x"]
    assert store.load_scenario("c", 5)["entities"] == {"claims": [{"claim_id": "K"}]}
    current = store.load_scenario("c")
    assert current["version"] == 6 and current["entities"] == {"claims": [{"claim_id": "K2"}]}
    assert store.list_scenarios()["scenarios"][0]["version"] == 6
    with pytest.raises(InvalidInputError, match="version 7 of scenario 'c' does not exist; its versions are 1 to 6"):
        store.load_scenario("c", 7)


def test_the_specification_tables_hold_only_the_current_state(store: ScenarioStore) -> None:
    store.save_scenario("a", {"patients": [{"patient_id": str(i)} for i in range(10)]}, tags=["t"])
    store.add_entities("a", {"patients": [{"patient_id": "0", "v": 2}]})
    store.remove_entities("a", "patients", ["1", "2"])
    store.save_scenario("b", {"claims": [{"claim_id": "K"}]}, tags=["u"])
    store.delete_scenario("b")
    assert spec_counts(store) == (1, 8, 1)
    assert orphan_rows(store.path) == 0
    result = store.query("SELECT count(*) FROM entities")
    assert result["rows"] == [[8]]


def test_restore_in_place_as_new_and_undo(store: ScenarioStore) -> None:
    sid = store.save_scenario("c", {"patients": [{"patient_id": "A"}]}, "one", ["t"])
    store.add_entities("c", {"patients": [{"patient_id": "B"}]})
    store.update_scenario("c", new_name="c2", description="two")
    restored = store.restore_scenario("c2", 1)
    assert restored["version"] == 4 and restored["scenario_id"] == sid and restored["name"] == "c2"
    loaded = store.load_scenario("c2")
    assert loaded["entities"] == {"patients": [{"patient_id": "A"}]} and loaded["description"] == "one"
    assert store.scenario_history("c2")["versions"][0]["operation"] == "restore"
    undone = store.restore_scenario("c2")  # no version: undo the last change
    assert undone["version"] == 5 and store.load_scenario("c2")["entities"]["patients"] == [
        {"patient_id": "A"},
        {"patient_id": "B"},
    ]
    copy = store.restore_scenario("c2", 2, new_name="c-at-2")
    assert copy["version"] == 1 and copy["scenario_id"] != sid
    assert store.load_scenario("c-at-2")["entities"] == store.load_scenario("c2", 2)["entities"]
    with pytest.raises(ScenarioExistsError):
        store.restore_scenario("c2", 1, new_name="c-at-2")


def test_an_undo_with_nothing_to_go_back_to_says_so(store: ScenarioStore) -> None:
    store.save_scenario("one", {"patients": [{"patient_id": "A"}]})
    # Was "version 0 of scenario 'one' does not exist", a version the caller never gave.
    with pytest.raises(InvalidInputError, match="has only version 1: there is no earlier change to undo"):
        store.restore_scenario("one")
    store.delete_scenario("one")
    assert store.restore_scenario("one")["version"] == 3  # a deleted one: its last version back
    with pytest.raises(InvalidInputError, match="the change before version 3 .* is its deletion, which version 3"):
        store.restore_scenario("one")
    assert store.scenario_history("one")["versions"][0]["version"] == 3  # nothing changed


def test_delete_goes_to_the_trash_and_comes_back_with_its_id_and_history(store: ScenarioStore) -> None:
    sid = store.save_scenario("gone", {"patients": [{"patient_id": "A"}]}, "d", ["t"])
    store.add_entities("gone", {"claims": [{"claim_id": "K"}]})
    assert store.delete_scenario("gone") is True
    with pytest.raises(ScenarioNotFoundError):
        store.load_scenario("gone")
    trash = store.list_scenarios(deleted=True)
    assert trash["total_count"] == 1
    entry = trash["scenarios"][0]
    assert entry["name"] == "gone" and entry["entity_count"] == 2 and entry["tags"] == ["t"] and entry["deleted_at"]
    assert store.list_scenarios()["total_count"] == 0
    assert store.scenario_history("gone")["versions"][0]["operation"] == "delete"
    assert store.load_scenario("gone", 2)["entities"]["claims"] == [{"claim_id": "K"}]
    live = store.save_scenario("gone", {})  # the name is taken since
    with pytest.raises(ScenarioExistsError, match="pass new_name"):
        store.restore_scenario(sid)
    back = store.restore_scenario(sid, new_name="gone-again")
    assert back["name"] == "gone-again"
    with pytest.raises(ScenarioExistsError, match=f"{live} is the current one, {sid} the deleted one"):
        store.delete_scenario("gone", purge=True)  # which one? (it purged the current one)
    store.delete_scenario(live, purge=True)
    store.delete_scenario("gone-again")
    restored = store.restore_scenario("gone-again")
    assert restored["entities_by_type"] == {"patients": 1, "claims": 1}
    assert store.list_scenarios(deleted=True)["total_count"] == 1  # the first delete of 'gone' (sid) is still there
    assert store.delete_scenario(sid, purge=True) is True  # purged out of the trash
    assert store.list_scenarios(deleted=True)["total_count"] == 0
    with pytest.raises(ScenarioNotFoundError, match="not in the trash either: deleted scenarios are kept 30 days"):
        store.restore_scenario(sid)


def test_retention_of_versions_and_of_the_trash(store: ScenarioStore, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HEALTHSIM_KEEP_VERSIONS", "3")
    monkeypatch.setenv("HEALTHSIM_KEEP_VERSION_DAYS", "0")  # (else every version of this week is kept)
    store.save_scenario("c", {"patients": [{"patient_id": "A", "n": 0}]})
    for n in range(1, 6):
        store.add_entities("c", {"patients": [{"patient_id": "A", "n": n}]})
    versions = [v["version"] for v in store.scenario_history("c")["versions"]]
    assert versions == [6, 5, 4]
    assert store.load_scenario("c", 4)["entities"]["patients"] == [{"patient_id": "A", "n": 3}]
    with pytest.raises(InvalidInputError, match="version 2 of scenario 'c' is past retention"):
        store.load_scenario("c", 2)
    store.save_scenario("old", {"patients": [{"patient_id": "B"}]})
    store.delete_scenario("old")
    monkeypatch.setenv("HEALTHSIM_KEEP_DELETED_DAYS", "0")
    store.add_entities("c", {"patients": [{"patient_id": "Z"}]})  # any change applies retention
    assert store.list_scenarios(deleted=True)["total_count"] == 0
    assert store.purge_history(keep_versions=1) == {"versions_removed": 2, "deleted_scenarios_removed": 0}
    assert [v["version"] for v in store.scenario_history("c")["versions"]] == [7]
    monkeypatch.setenv("HEALTHSIM_KEEP_VERSIONS", "zero")
    with pytest.raises(InvalidInputError, match="HEALTHSIM_KEEP_VERSIONS='zero'"):
        store.add_entities("c", {"patients": [{"patient_id": "Y"}]})


def test_diff_of_versions_and_scenarios(store: ScenarioStore) -> None:
    patients = [{"patient_id": f"P{i}", "address": {"city": "A", "state": "IL"}, "n": i} for i in range(5_000)]
    store.save_scenario("big", {"patients": patients}, "one", ["t"])
    changed = [{**p, "address": {"city": "B", "state": "IL"}} for p in patients[:50]]
    store.add_entities("big", {"patients": [*changed, {"patient_id": "NEW"}]})
    store.remove_entities("big", "patients", [f"P{i}" for i in range(100, 120)])
    store.update_scenario("big", description="two")
    result = store.diff_scenarios("big@1", "big")
    counts = result["types"]["patients"]
    assert (counts["added"], counts["removed"], counts["changed"], counts["unchanged"]) == (1, 20, 50, 4_930)
    assert counts["examples"]["added"] == ["NEW"] and counts["examples"]["removed"][:2] == ["P100", "P101"]
    assert len(counts["examples"]["removed"]) == 10
    assert counts["examples"]["changed"][0] == {"id": "P0", "fields": ["address.city"]}
    assert result["scenario"] == {"description": ["one", "two"]}
    assert result["a"] == {"name": "big", "version": 1} and result["b"] == {"name": "big", "version": 4}
    assert len(json.dumps(result)) < 4_000
    store.copy_scenario("big", "big-copy")
    same = store.diff_scenarios("big", ("big-copy", 1))
    assert same["types"]["patients"]["unchanged"] == 4_981 and same["scenario"] == {"name": ["big", "big-copy"]}
    with pytest.raises(ScenarioNotFoundError):
        store.diff_scenarios("big", "nothing")


# DuckDB only: a file with an earlier release's DuckDB tables (the legacy_db fixture).
def test_an_earlier_release_database_starts_at_version_one(tmp_path: Path) -> None:
    from legacy_db import build  # tests/fixtures: the earlier release's schema and rows

    path = tmp_path / "legacy.duckdb"
    build(str(path))
    store = ScenarioStore(path)
    for entry in store.list_scenarios()["scenarios"]:
        assert entry["version"] == 1
        history = store.scenario_history(entry["name"])["versions"]
        assert [(v["version"], v["operation"]) for v in history] == [(1, "baseline")]
        assert store.load_scenario(entry["name"], 1)["entities"] == store.load_scenario(entry["name"])["entities"]
    name = store.list_scenarios()["scenarios"][0]["name"]
    before = store.load_scenario(name)["entities"]
    store.add_entities(name, {"care_gaps": [{"gap_id": "G"}]})
    assert store.load_scenario(name, 1)["entities"] == before


def test_module_functions(store: ScenarioStore) -> None:
    # HEALTHSIM_DB names the store's database, on either engine.
    save_scenario("m", {"patients": [{"patient_id": "A"}]})
    delete_scenario("m")
    assert list_scenarios(deleted=True)["total_count"] == 1
    restore_scenario("m")
    assert load_scenario("m", 1)["entities"] == {"patients": [{"patient_id": "A"}]}
    assert scenario_history("m")["total_count"] == 3
    assert diff_scenarios("m@1", "m")["types"]["patients"]["unchanged"] == 1
    assert store.scenario_history("m")["total_count"] == 3


# --------------------------------------------------------------------------- model

ids = st.sampled_from(["A", "B", "C"])
patient = st.fixed_dictionaries({"v": st.integers(-(2**70), 2**70)}, optional={"patient_id": ids})
steps = st.lists(
    st.one_of(
        st.tuples(st.just("add"), st.lists(patient, max_size=3), st.booleans()),
        st.tuples(st.just("remove"), st.lists(ids, max_size=2)),
        st.tuples(st.just("save"), st.lists(patient, max_size=3)),
        st.tuples(st.just("tag"), st.sampled_from(["x", "y"])),
    ),
    min_size=1,
    max_size=7,
)


@pytest.mark.slow  # (a property of about a second even at 3 examples: the whole suite runs it)
@settings(max_examples=examples(15), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(changes=steps)
@example(  # an upsert that puts an entity back with its keys in another order: an update
    changes=[
        ("save", [{"v": 1, "patient_id": "C"}]),
        ("add", [{"v": 0, "patient_id": "C"}, {"patient_id": "C", "v": 1}], True),
    ]
)
def test_every_retained_version_loads_as_the_model_had_it(store: ScenarioStore, changes: list[Any]) -> None:
    m = f"m-{uuid.uuid4().hex}"  # one store for every example: a scenario of its own each
    store.save_scenario(m, {"patients": []})
    model: list[list[dict[str, Any]]] = [[]]  # the patients at each version (1-based)
    tags: list[list[str]] = [[]]
    for change in changes:
        current = [dict(p) for p in model[-1]]
        if change[0] == "add":
            for entity in change[1]:
                key = entity.get("patient_id")
                hits = (
                    [i for i, p in enumerate(current) if key is not None and p.get("patient_id") == key]
                    if change[2]
                    else []
                )
                if hits:
                    current[hits[0]] = entity
                    for i in reversed(hits[1:]):
                        del current[i]
                else:
                    current.append(entity)
            result = store.add_entities(m, {"patients": change[1]}, upsert=change[2])
            # Nothing changed (no entity, or the same ones, keys in the same order: the store
            # keeps the text as given, so a reordered entity is an update): no version.
            if [list(p.items()) for p in current] == [list(p.items()) for p in model[-1]]:
                assert not (result["added"] or result["updated"] or result["removed"])
                continue
        elif change[0] == "remove":
            result = store.remove_entities(m, "patients", change[1])
            if not result["removed"]:
                continue  # nothing changed: no version
            current = [p for p in current if p.get("patient_id") not in change[1]]
        elif change[0] == "save":
            store.save_scenario(m, {"patients": change[1]}, overwrite=True)
            if [list(p.items()) for p in change[1]] == [list(p.items()) for p in model[-1]] and not tags[-1]:
                continue  # exactly what it holds (an overwrite's tags are none): no version
            model.append(list(change[1]))
            tags.append([])  # an overwrite replaces the tags too
            continue
        else:
            entry = store.update_scenario(m, add_tags=[change[1]])
            if entry["tags"] == tags[-1]:
                continue
            tags.append(entry["tags"])
            model.append(current)
            continue
        model.append(current)
        tags.append(tags[-1])
    assert store.load_scenario(m)["version"] == len(model)
    for version, patients in enumerate(model, start=1):
        assert store.load_scenario(m, version)["entities"] == {"patients": patients}, version
    for version, patients in enumerate(model, start=1):  # restoring any version gives it back
        store.restore_scenario(m, version, new_name=f"{m}-restored-{version}")
        assert store.load_scenario(f"{m}-restored-{version}")["entities"] == {"patients": patients}
    wanted = len(model) // 2 + 1
    store.restore_scenario(m, wanted)  # and in place, as a new version (unless it is the current content)
    assert store.load_scenario(m)["entities"] == {"patients": model[wanted - 1]}
    same = [list(p.items()) for p in model[wanted - 1]] == [list(p.items()) for p in model[-1]]
    assert store.load_scenario(m)["version"] == len(model) + (0 if same and tags[wanted - 1] == tags[-1] else 1)


# --------------------------------------------------------------------------- processes

WORKER = Path(__file__).parent / "helpers" / "worker.py"


# DuckDB only: kill -9 of a worker process writing the DuckDB file.
@pytest.mark.slow
def test_kill_during_an_overwrite_keeps_the_old_version_current_and_the_history(db_path: Path) -> None:
    store = ScenarioStore(db_path)
    store.save_scenario("victim", {"patients": [{"patient_id": f"P{i}", "version": 0} for i in range(30_000)]})
    store.add_entities("victim", {"patients": [{"patient_id": "extra"}]})
    env = {**os.environ, "HEALTHSIM_LOCK_TIMEOUT": "60"}
    for attempt, delay in enumerate((0.1, 0.5)):
        history = store.scenario_history("victim")
        worker = subprocess.Popen(
            [sys.executable, str(WORKER), "overwrite", str(db_path), "victim", str(attempt + 1), "30000"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        assert worker.stdout is not None and worker.stdout.readline().strip() == "saving"
        time.sleep(delay)
        worker.send_signal(signal.SIGKILL)
        worker.wait()
        after = store.scenario_history("victim")
        committed = after["total_count"] - history["total_count"]
        assert committed in (0, 1)
        assert after["versions"][committed:] == history["versions"]  # the history is intact
        for entry in after["versions"]:
            assert store.load_scenario("victim", entry["version"])["entity_count"] == entry["entity_count"]
        assert orphan_rows(db_path) == 0


# DuckDB only: worker processes on the DuckDB file (the team store's are tested elsewhere).
@pytest.mark.slow
def test_two_processes_changing_one_scenario_make_consecutive_versions(db_path: Path) -> None:
    store = ScenarioStore(db_path)
    store.save_scenario("shared", {"patients": []})
    env = {**os.environ, "HEALTHSIM_LOCK_TIMEOUT": "60"}
    workers = [
        subprocess.Popen(
            [sys.executable, str(WORKER), "add", str(db_path), "shared", prefix, "8", "5"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for prefix in ("left", "right")
    ]
    for worker in workers:
        _, errors = worker.communicate(timeout=240)
        assert worker.returncode == 0, errors
    versions = store.scenario_history("shared")["versions"]
    assert [v["version"] for v in versions] == list(range(17, 0, -1))
    counts = [v["entity_count"] for v in reversed(versions)]
    assert counts == [5 * i for i in range(17)]  # each version one batch more, nothing lost


def test_an_earlier_version_exports_as_it_was(store: ScenarioStore, tmp_path: Path) -> None:
    store.save_scenario("c", {"patients": [{"patient_id": "A", "v": 1}], "members": []}, "first", ["t"])
    store.add_entities("c", {"patients": [{"patient_id": "A", "v": 2}, {"patient_id": "B"}]})
    store.update_scenario("c", description="second")
    path = store.export_scenario_to_json("c", tmp_path / "v1.json", version=1)
    document = json.loads(path.read_text())
    assert document["entities"] == {"patients": [{"patient_id": "A", "v": 1}], "members": []}
    assert document["description"] == "first" and document["tags"] == ["t"]
    store.import_scenario_from_json(path, name="from-v1")
    assert store.load_scenario("from-v1")["entities"] == store.load_scenario("c", 1)["entities"]
    current = json.loads(store.export_scenario_to_json("c", tmp_path / "now.json").read_text())
    assert current["description"] == "second" and len(current["entities"]["patients"]) == 2
    with pytest.raises(InvalidInputError, match="version 9"):
        store.export_scenario_to_json("c", tmp_path / "v9.json", version=9)
    assert not (tmp_path / "v9.json").exists()


def test_the_trash_is_filtered_like_the_list(store: ScenarioStore) -> None:
    store.save_scenario("alpha cohort", {}, "Desc", ["Diabetes", "x"])
    store.save_scenario("beta", {})
    store.delete_scenario("alpha cohort")
    store.delete_scenario("beta")
    assert [e["name"] for e in store.list_scenarios(deleted=True, tag="diabetes")["scenarios"]] == ["alpha cohort"]
    assert [e["name"] for e in store.list_scenarios(deleted=True, search="COHORT")["scenarios"]] == ["alpha cohort"]
    assert [e["name"] for e in store.list_scenarios(deleted=True, search="desc")["scenarios"]] == ["alpha cohort"]
    limited = store.list_scenarios(deleted=True, limit=1)
    assert limited["total_count"] == 2 and [e["name"] for e in limited["scenarios"]] == ["beta"]  # newest first


# ---------------------------------------------------------------- a batched build (issue 21)


def backdate(store: ScenarioStore, days: float, up_to_version: int) -> None:
    """Make versions up to ``up_to_version`` of every scenario look ``days`` old."""
    sql_rows(
        store.path,
        f"UPDATE healthsim_state_versions SET changed_at = changed_at - INTERVAL '{int(days * 24)} hours' "
        "WHERE version <= ? RETURNING version",
        [up_to_version],
    )


@pytest.mark.slow  # 60 adds and what follows: ~2 s on a DuckDB file
def test_a_batched_build_keeps_every_version_of_the_week(store: ScenarioStore) -> None:
    # The recommended workflow: a save, then 60 add_entities batches. It kept 20 versions.
    store.save_scenario("cohort", {"patients": [{"patient_id": "P0"}]})
    for batch in range(1, 61):
        store.add_entities("cohort", {"patients": [{"patient_id": f"P{batch}"}]})
    history = store.scenario_history("cohort", limit=100)
    assert history["total_count"] == 61 and [v["version"] for v in history["versions"]] == list(range(61, 0, -1))
    diff = store.diff_scenarios("cohort@30", "cohort")
    assert diff["types"]["patients"]["added"] == 31 and diff["types"]["patients"]["unchanged"] == 30
    fifth = store.load_scenario("cohort", 5)["entities"]
    restored = store.restore_scenario("cohort", version=5)
    assert restored["version"] == 62 and restored["removed"] == {"patients": 56} and restored["added"] == {}
    assert store.load_scenario("cohort")["entities"] == fifth
    # Beyond the week, the last 20 versions (and every later one) are what stays.
    backdate(store, 10, 50)
    store.update_scenario("cohort", description="a week later")
    assert [v["version"] for v in store.scenario_history("cohort", limit=100)["versions"]] == list(range(63, 43, -1))


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("HEALTHSIM_KEEP_VERSION_DAYS", "-1"),
        ("HEALTHSIM_KEEP_VERSION_DAYS", "nan"),
        ("HEALTHSIM_KEEP_VERSION_DAYS", "a week"),
        ("HEALTHSIM_KEEP_VERSIONS", "0"),
        ("HEALTHSIM_KEEP_VERSIONS", "1e3"),
        ("HEALTHSIM_KEEP_DELETED_DAYS", "-inf"),
        ("HEALTHSIM_KEEP_DELETED_DAYS", "never"),
    ],
)
def test_invalid_retention_values_are_refused_by_name(
    store: ScenarioStore, monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    store.save_scenario("c", {"patients": [{"patient_id": "A"}]})
    monkeypatch.setenv(variable, value)
    with pytest.raises(InvalidInputError, match=f"{variable}={value!r} is not"):
        store.add_entities("c", {"patients": [{"patient_id": "B"}]})
    monkeypatch.delenv(variable)
    assert store.load_scenario("c")["entity_count"] == 1  # refused before anything changed


DAY_COUNTS = st.one_of(
    st.sampled_from(["inf", "Infinity", "forever", "FOREVER", "1e308", "1000000", "999999999", "1e400", "0"]),
    st.floats(min_value=0, allow_nan=False, allow_infinity=True).map(repr),
    st.integers(min_value=0, max_value=10**40).map(str),
)


@settings(max_examples=examples(25), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(version_days=DAY_COUNTS, deleted_days=DAY_COUNTS)
def test_day_counts_never_overflow(store: ScenarioStore, version_days: str, deleted_days: str) -> None:
    # HEALTHSIM_KEEP_DELETED_DAYS=inf/1000000/1e308 passed validation, then every change
    # failed with "unexpected OverflowError".
    name = f"c-{uuid.uuid4().hex[:8]}"
    with pytest.MonkeyPatch.context() as env:
        env.setenv("HEALTHSIM_KEEP_VERSION_DAYS", version_days)
        env.setenv("HEALTHSIM_KEEP_DELETED_DAYS", deleted_days)
        env.setenv("HEALTHSIM_KEEP_VERSIONS", "1")
        store.save_scenario(name, {"patients": [{"patient_id": "A"}]})
        store.add_entities(name, {"patients": [{"patient_id": "B"}]})
        assert store.delete_scenario(name) is True
        assert store.restore_scenario(name)["entity_count"] == 2
        store.purge_history(name)
        store.purge_history(keep_version_days=float(version_days.lower().replace("forever", "inf")))
    with pytest.raises(ScenarioNotFoundError, match="deleted scenarios are kept forever"):
        with pytest.MonkeyPatch.context() as env:
            env.setenv("HEALTHSIM_KEEP_DELETED_DAYS", "forever")
            store.restore_scenario("no-such-scenario")


def test_keep_forever_keeps_every_version_and_the_trash(store: ScenarioStore, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HEALTHSIM_KEEP_VERSION_DAYS", "forever")
    monkeypatch.setenv("HEALTHSIM_KEEP_DELETED_DAYS", "inf")
    monkeypatch.setenv("HEALTHSIM_KEEP_VERSIONS", "2")
    store.save_scenario("c", {"patients": [{"patient_id": "A"}]})
    for n in range(5):
        store.add_entities("c", {"patients": [{"patient_id": f"B{n}"}]})
    store.save_scenario("gone", {})
    store.delete_scenario("gone")
    backdate(store, 10**5, 10)  # 270 years ago
    store.add_entities("c", {"patients": [{"patient_id": "Z"}]})
    assert store.scenario_history("c")["total_count"] == 7
    assert store.list_scenarios(deleted=True)["total_count"] == 1
    assert store.purge_history(keep_deleted_days=math.inf, keep_version_days=math.inf) == {
        "versions_removed": 0,
        "deleted_scenarios_removed": 0,
    }
    with pytest.raises(InvalidInputError, match="keep_version_days must be a number of days"):
        store.purge_history(keep_version_days=float("nan"))


def test_purging_to_one_version_keeps_the_trash_restorable(store: ScenarioStore) -> None:
    store.save_scenario("gone", {"patients": [{"patient_id": "A"}]}, "was here", ["t"])
    store.add_entities("gone", {"claims": [{"claim_id": "K"}]})
    store.save_scenario("kept", {"patients": [{"patient_id": "A"}]})
    store.add_entities("kept", {"patients": [{"patient_id": "B"}]})
    store.delete_scenario("gone")
    # It kept only the delete marker: the trash was emptied and restore failed with
    # "HEALTHSIM_KEEP_VERSIONS keeps the last 20".
    assert store.purge_history(keep_versions=1) == {"versions_removed": 2, "deleted_scenarios_removed": 0}
    assert [s["name"] for s in store.list_scenarios(deleted=True)["scenarios"]] == ["gone"]
    back = store.restore_scenario("gone")
    assert back["entities_by_type"] == {"patients": 1, "claims": 1}
    assert store.load_scenario("gone")["description"] == "was here"
    with pytest.raises(InvalidInputError) as refused:
        store.load_scenario("kept", 1)
    message = str(refused.value)
    assert "past retention" in message and "purge_history" in message and "last 20" not in message
    assert "its versions are 3 to 3" not in message and "its versions are 2 to 2" in message


def test_cli_history_purge_keeps_the_trash(store: ScenarioStore) -> None:
    store.save_scenario("gone", {"patients": [{"patient_id": "A"}]})
    store.add_entities("gone", {"patients": [{"patient_id": "B"}]})
    store.delete_scenario("gone")
    purged = CliRunner().invoke(app, ["history", "--purge", "--keep-versions", "1"], catch_exceptions=False)
    assert purged.exit_code == 0, purged.output
    assert "removed 1 version(s) and 0 deleted scenario(s)" in purged.output
    restored = CliRunner().invoke(app, ["restore", "gone"], catch_exceptions=False)
    assert restored.exit_code == 0, restored.output
    assert store.load_scenario("gone")["entity_count"] == 2
    assert "restored 'gone' to version 2: now version 4" in restored.output
    forever = ["history", "--purge", "--keep-version-days", "inf", "--keep-deleted-days", "inf"]
    kept = CliRunner().invoke(app, forever, catch_exceptions=False)
    assert kept.exit_code == 0 and "removed 0 version(s)" in kept.output, kept.output


def test_a_name_of_a_current_and_a_deleted_scenario_is_not_guessed(store: ScenarioStore) -> None:
    old = store.save_scenario("cohort", {"patients": [{"patient_id": "OLD"}]})
    store.delete_scenario("cohort")
    live = store.save_scenario("cohort", {"patients": [{"patient_id": "NEW"}]})
    store.add_entities("cohort", {"patients": [{"patient_id": "NEW2"}]})
    # `restore cohort` undid the current one's last change; `--as` copied the current one.
    for new_name in (None, "cohort-old"):
        with pytest.raises(ScenarioExistsError, match=f"scenario 'cohort' already exists; .*id {old}.*new_name"):
            store.restore_scenario("cohort", new_name=new_name)
    assert store.load_scenario("cohort")["version"] == 2 and store.list_scenarios()["total_count"] == 1
    # `delete cohort --purge` purged the current one.
    with pytest.raises(ScenarioExistsError, match=f"{live} is the current one, {old} the deleted one"):
        store.delete_scenario("cohort", purge=True)
    assert store.load_scenario("cohort")["entity_count"] == 2
    # Named by id (and a free name), the deleted one comes back; a version means the current one.
    back = store.restore_scenario(old, new_name="cohort-old")
    assert store.load_scenario("cohort-old")["entities"] == {"patients": [{"patient_id": "OLD"}]}
    assert back["restored_version"] == 1
    assert store.restore_scenario("cohort", version=1)["scenario_id"] == live
    assert store.delete_scenario(old, purge=True) is True
    assert store.restore_scenario("cohort")["version"] == 4  # no namesake in the trash: an undo


def test_cli_a_name_of_a_current_and_a_deleted_scenario(store: ScenarioStore) -> None:
    old = store.save_scenario("cohort", {"patients": [{"patient_id": "OLD"}]})
    deleted = CliRunner().invoke(app, ["delete", "cohort", "--yes"], catch_exceptions=False)
    assert deleted.exit_code == 0
    store.save_scenario("cohort", {"patients": [{"patient_id": "NEW"}]})
    store.add_entities("cohort", {"patients": [{"patient_id": "NEW2"}]})
    runner = CliRunner()
    for args in (
        ["restore", "cohort"],
        ["restore", "cohort", "--as", "cohort-old"],
        ["delete", "cohort", "--purge", "--yes"],
    ):
        result = runner.invoke(app, args, catch_exceptions=False)
        assert result.exit_code != 0, args
        assert "already exists" in result.output and old in result.output.replace("\n", ""), result.output
    assert store.load_scenario("cohort")["version"] == 2 and store.load_scenario("cohort")["entity_count"] == 2
    assert store.list_scenarios()["total_count"] == 1 and store.list_scenarios(deleted=True)["total_count"] == 1
    result = runner.invoke(app, ["restore", old, "--as", "cohort-old"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert store.load_scenario("cohort-old")["entities"] == {"patients": [{"patient_id": "OLD"}]}


def labs(patients: int, per_patient: int, start: int = 0) -> list[dict[str, Any]]:
    return [
        {"lab_result_id": f"L{p}-{n}", "patient_mrn": f"MRN-{p}", "loinc_code": "4548-4", "value": 6.5 + n}
        for p in range(patients)
        for n in range(start, start + per_patient)
    ]


def test_changes_are_the_real_difference(store: ScenarioStore) -> None:
    patients = [{"mrn": f"MRN-{p}", "name": {"given_name": "A", "family_name": "B"}} for p in range(30)]
    cohort = {"patients": patients, "lab_results": labs(30, 10)}
    store.save_scenario("c", cohort, "built in batches", ["diabetes"])
    store.add_entities("c", {"lab_results": labs(2, 10, start=10)})  # the bad batch of 20 labs
    restored = store.restore_scenario("c", 1)
    # It reported every patient and lab added and removed.
    assert (restored["added"], restored["removed"], restored["updated"]) == ({}, {"lab_results": 20}, {})
    assert restored["changed"] == ["entities"] and restored["scenario"] == {}
    diff = store.diff_scenarios("c@2", "c@3")["types"]
    assert diff["lab_results"]["removed"] == 20 and diff["patients"]["unchanged"] == 30
    row = store.scenario_history("c")["versions"][0]
    assert row["changes"] == {"added": {}, "removed": {"lab_results": 20}, "updated": {}, "scenario": {}}
    # An overwrite with identical data changes nothing (no version); one changed lab is one update.
    store.save_scenario("c", cohort, "built in batches", ["diabetes"], overwrite=True)
    assert store.scenario_history("c")["total_count"] == 3
    one = {
        "patients": patients,
        "lab_results": [{**cohort["lab_results"][0], "value": 9.9}, *cohort["lab_results"][1:]],
    }
    store.save_scenario("c", one, "built in batches", ["diabetes"], overwrite=True)
    assert store.scenario_history("c")["versions"][0]["changes"]["updated"] == {"lab_results": 1}
    # (patients with no id of their own are matched in order, by the diff too)
    same = store.diff_scenarios("c@3", "c@4")["types"]
    assert same["patients"]["unchanged"] == 30 and same["lab_results"]["unchanged"] == 299
    # Renames, description and tag edits are changes too.
    store.update_scenario("c", new_name="c2", description="checked", add_tags=["reviewed"])
    assert store.scenario_history("c2")["versions"][0]["changes"]["scenario"] == {
        "name": ["c", "c2"],
        "description": ["built in batches", "checked"],
        "tags": [["diabetes"], ["diabetes", "reviewed"]],
    }


def test_restore_brings_back_description_tags_and_metadata_and_says_so(store: ScenarioStore) -> None:
    store.write_scenario(
        name="c",
        typed_entities=[("patients", [{"patient_id": "A"}])],
        description="one",
        tags=["t"],
        provenance={"operation": "save"},
        metadata={"study": "first", "site": "Chicago"},
    )
    store.write_scenario(
        name="c",
        typed_entities=[("patients", [{"patient_id": "A"}])],
        description="two",
        tags=["t", "u"],
        provenance={"operation": "save"},
        metadata={"study": "second", "site": "Chicago"},
        overwrite=True,
    )
    store.update_scenario("c", new_name="renamed")
    result = store.restore_scenario("renamed", 1)
    assert result["name"] == "renamed" and result["version"] == 4 and result["restored_version"] == 1
    assert result["changed"] == ["description", "tags", "metadata"]
    assert result["scenario"] == {"description": ["two", "one"], "tags": [["t", "u"], ["t"]], "metadata": ["study"]}
    loaded = store.load_scenario("renamed")
    assert (loaded["description"], loaded["tags"], loaded["metadata"]["study"]) == ("one", ["t"], "first")
    assert store.scenario_history("renamed")["versions"][2]["changes"]["scenario"] == {
        "description": ["one", "two"],
        "tags": [["t"], ["t", "u"]],
        "metadata": ["study"],
    }


def test_every_version_says_who_made_it(store: ScenarioStore) -> None:
    store.save_scenario("c", {"patients": [{"patient_id": "A"}]})
    with acting_as("token: alice"):
        store.add_entities("c", {"patients": [{"patient_id": "B"}]})
    store.delete_scenario("c")
    with acting_as("bob"):
        store.restore_scenario("c")
    rows = store.scenario_history("c")["versions"]
    assert [(v["operation"], v["by"]) for v in rows] == [
        ("restore", "bob"),
        ("delete", getpass.getuser()),
        ("add", "token: alice"),
        ("save", getpass.getuser()),
    ]
    assert list(rows[0]) == ["version", "at", "by", "operation", "changes", "entity_count"]
    shown = CliRunner().invoke(app, ["history", "c"], catch_exceptions=False, terminal_width=200)
    assert shown.exit_code == 0 and "bob" in shown.output and "token: alice" in shown.output, shown.output


ENTITY = st.one_of(
    st.builds(lambda i, v: {"patient_id": f"P{i}", "v": v}, st.integers(0, 5), st.integers(0, 2)),
    st.builds(lambda v: {"note": v}, st.integers(0, 2)),  # no id of its own: matched in order
)


@settings(max_examples=examples(30), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(before=st.lists(ENTITY, max_size=8), after=st.lists(ENTITY, max_size=8))
def test_an_overwrite_records_what_diff_scenarios_sees(
    store: ScenarioStore, before: list[dict[str, Any]], after: list[dict[str, Any]]
) -> None:
    name = f"c-{uuid.uuid4().hex[:8]}"
    store.save_scenario(name, {"patients": before})
    store.save_scenario(name, {"patients": after}, overwrite=True)
    if [list(p.items()) for p in before] == [list(p.items()) for p in after]:
        assert store.scenario_history(name)["total_count"] == 1  # exactly as stored: no version
        return
    changes = store.scenario_history(name)["versions"][0]["changes"]
    seen = store.diff_scenarios(f"{name}@1", name)["types"].get("patients", {})
    expected = {kind: seen.get(kind, 0) for kind in ("added", "removed", "changed")}
    recorded = {
        "added": changes["added"].get("patients", 0),
        "removed": changes["removed"].get("patients", 0),
        "changed": changes["updated"].get("patients", 0),
    }
    assert recorded == expected
    restored = store.restore_scenario(name, 1)  # back: what was added is removed
    assert restored["removed"].get("patients", 0) == seen.get("added", 0)
    assert restored["added"].get("patients", 0) == seen.get("removed", 0)


def test_a_restore_or_overwrite_that_changes_nothing_makes_no_version(store: ScenarioStore, tmp_path: Path) -> None:
    """As an add that changes nothing: a restore of the version that is already the
    current content, an identical overwrite and a re-import of the same file make no
    version and leave the scenario (its updated_at too) as it was; the answers say so."""
    entities = {"patients": [{"patient_id": "A", "v": 1}, {"note": "no id of its own"}], "claims": []}
    store.save_scenario("c", entities, "one", ["t"])
    store.add_entities("c", {"patients": [{"patient_id": "B"}]})
    store.remove_entities("c", "patients", ["B"])  # version 3: the content of version 1 again
    before = store.load_scenario("c")
    restored = store.restore_scenario("c", 1)
    assert (restored["version"], restored["restored_version"], restored["changed"]) == (3, 1, [])
    assert (restored["added"], restored["removed"], restored["updated"]) == ({}, {}, {})
    store.save_scenario("c", entities, "one", ["t"], overwrite=True)
    path = tmp_path / "c.json"
    store.export_scenario_to_json("c", path)
    store.import_scenario_from_json(path, "c", overwrite=True)
    assert store.load_scenario("c") == before
    assert store.scenario_history("c")["total_count"] == 3
    shown = CliRunner().invoke(app, ["restore", "c", "--version", "1"])
    assert shown.exit_code == 0 and "nothing changed" in shown.stdout and "now version 3" in shown.stdout
    shown = CliRunner().invoke(app, ["import", str(path), "--name", "c", "--overwrite"])
    assert shown.exit_code == 0 and "unchanged (the same as version 3)" in shown.stdout, shown.stdout
    assert store.scenario_history("c")["total_count"] == 3
    # What differs is still a change: another description, another entity.
    store.save_scenario("c", entities, "two", ["t"], overwrite=True)
    assert store.scenario_history("c")["versions"][0]["changes"]["scenario"] == {"description": ["one", "two"]}
    assert store.restore_scenario("c", 1)["changed"] == ["description"]
    assert store.scenario_history("c")["total_count"] == 5
