"""The key counts a save keeps, carried through edits: always what counting the stored
entities gives, so a first summary after an edit still reads every entity once."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from healthsim.state import ScenarioStore
from healthsim.state.summaries import summarize
from healthsim.state.version_cache import VersionCache


def kept_and_counted(store: ScenarioStore, name: str) -> tuple[dict[str, Any], dict[str, Any], set[str]]:
    """What is kept for the current version (entities, keys), what counting the stored
    rows gives, and every key the rows have."""
    with store.open_scenario(name) as reader:
        made = (reader.header.scenario_id, reader.version, reader.header.updated_at)
        kept = VersionCache(store.path).key_totals(*made)
        rows = reader.connection.execute(
            "SELECT entity_type, count(*), sum(len(json_keys(entity_data)))::BIGINT, "
            f"list_distinct(flatten(list(json_keys(entity_data)))) FROM ({reader.rows_sql()}) GROUP BY 1"
        ).fetchall()
        once, twice = (summarize(reader, 2, key_totals=k) for k in (kept, None))
    assert once == twice  # (keys noted that no entity has any more are only a guess: they count 0)
    keys = {k for row in rows for k in row[3]}
    return {t: (n, total) for t, (n, total, _) in kept.items()}, {t: (n, k) for t, n, k, _ in rows}, keys


def test_adds_upserts_and_removes_carry_the_count(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = ScenarioStore(tmp_path / "k.duckdb")
    patients = [{"patient_id": f"P{i}", "a": i} for i in range(30)]
    store.save_scenario("s", {"patients": patients, "labs": [{"v": 1}, {"v": 2, "w": None}]})
    kept, counted, _ = kept_and_counted(store, "s")
    assert kept == counted == {"patients": (30, 60), "labs": (2, 3)}
    # An upsert replacing entities with more keys, new ones, and a new type.
    store.add_entities(
        "s",
        {
            "patients": [{"patient_id": "P1", "a": 1, "extra": True}, {"patient_id": "P99", "b": [1]}],
            "claims": [{"claim_id": "C1", "total": 3.5}],
        },
    )
    kept, counted, keys = kept_and_counted(store, "s")
    assert kept == counted and counted["patients"] == (31, 63) and "extra" in keys
    store.remove_entities("s", "patients", ["P1", "P2", "nobody"])
    kept, counted, _ = kept_and_counted(store, "s")
    assert kept == counted and counted["patients"] == (29, 58)
    monkeypatch.setenv("HEALTHSIM_KEEP_VERSIONS", "1")  # the archived rows go as the version is made
    store.add_entities("s", {"labs": [{"v": 3, "w": 1, "x": 2}]})
    store.remove_entities("s", "labs", [])  # nothing removed: no new version
    kept, counted, _ = kept_and_counted(store, "s")
    assert kept == counted and counted["labs"] == (3, 6)


def test_stored_duplicates_of_an_id_are_counted_out(tmp_path: Path) -> None:
    store = ScenarioStore(tmp_path / "d.duckdb")
    store.save_scenario("s", {"patients": [{"patient_id": "P", "n": i} for i in range(3)]})  # three of one id
    store.add_entities("s", {"patients": [{"patient_id": "P", "n": 9, "z": 0}]})  # one left, replaced
    kept, counted, _ = kept_and_counted(store, "s")
    assert kept == counted == {"patients": (1, 3)}


def test_no_count_where_an_edit_or_save_wrote_exact_texts(tmp_path: Path) -> None:
    store = ScenarioStore(tmp_path / "x.duckdb")
    store.save_scenario("s", {"big": [{"n": 2**70}], "small": [{"n": 1}]})
    store.add_entities("s", {"small": [{"n": 2, "m": 3}]})
    kept, counted, _ = kept_and_counted(store, "s")
    assert kept == {"small": counted["small"]} == {"small": (2, 3)}  # "big" had no count to carry
    store.add_entities("s", {"small": [{"n": 2**70}]})  # the exact encoder: nothing kept
    assert kept_and_counted(store, "s")[0] == {}
