"""Editing saved scenarios: add (upsert), remove, update, copy, merge."""

from __future__ import annotations

import json
import os
import random
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
    InvalidEntityError,
    InvalidInputError,
    ScenarioExistsError,
    ScenarioNotFoundError,
    ScenarioStore,
    add_entities,
    copy_scenario,
    load_scenario,
    merge_scenarios,
    remove_entities,
    update_scenario,
)
from healthsim.state.entities import ENTITY_ID_NAMESPACE
from helpers.database import orphan_rows, sql_rows
from helpers.examples import examples


def count_rows(store: ScenarioStore) -> int:
    """The entity rows of every scenario, on either engine."""
    return int(sql_rows(store.path, "SELECT count(*) FROM scenario_entities")[0][0])


def test_add_upserts_in_place_removes_later_duplicates_and_appends_new_types(store: ScenarioStore) -> None:
    store.save_scenario(
        "cohort",
        {
            "patients": [
                {"patient_id": "A", "v": 1},
                {"patient_id": "B"},
                {"patient_id": "A", "dup": True},
                {"note": "no id"},
            ],
            "claims": [{"claim_id": "C1"}],
        },
    )
    result = store.add_entities(
        "cohort",
        {
            "patient": [{"patient_id": "A", "v": 2}, {"note": "no id"}, {"patient_id": "D"}],
            "encounters": [{"encounter_id": "E1"}],
        },
    )
    assert result["added"] == {"patients": 2, "encounters": 1}
    assert result["updated"] == {"patients": 1} and result["removed"] == {"patients": 1}
    assert result["entities_by_type"] == {"patients": 5, "claims": 1, "encounters": 1}
    assert result["entity_count"] == 7 and result["name"] == "cohort"
    loaded = store.load_scenario("cohort")
    assert loaded["entities"] == {
        "patients": [
            {"patient_id": "A", "v": 2},
            {"patient_id": "B"},
            {"note": "no id"},
            {"note": "no id"},
            {"patient_id": "D"},
        ],
        "claims": [{"claim_id": "C1"}],
        "encounters": [{"encounter_id": "E1"}],
    }
    assert list(loaded["entities"]) == ["patients", "claims", "encounters"]
    assert loaded["metadata"]["provenance"]["operation"] == "add"
    assert loaded["metadata"]["provenance"]["created_by"]["operation"] == "save"


def test_the_last_of_repeated_ids_in_a_batch_wins_at_the_first_place(store: ScenarioStore) -> None:
    store.save_scenario("s", {"patients": [{"patient_id": "X"}]})
    store.add_entities(
        "s", {"patients": [{"patient_id": "A", "v": 1}, {"patient_id": "B"}, {"patient_id": "A", "v": 2}]}
    )
    assert store.load_scenario("s")["entities"]["patients"] == [
        {"patient_id": "X"},
        {"patient_id": "A", "v": 2},
        {"patient_id": "B"},
    ]


def test_add_without_upsert_appends_everything(store: ScenarioStore) -> None:
    store.save_scenario("s", {"patients": [{"patient_id": "A"}]})
    result = store.add_entities("s", {"patients": [{"patient_id": "A", "v": 2}]}, upsert=False)
    assert result["added"] == {"patients": 1} and result["updated"] == {}
    assert store.load_scenario("s")["entities"]["patients"] == [{"patient_id": "A"}, {"patient_id": "A", "v": 2}]


def test_add_matches_uuid_ids_and_numbers(store: ScenarioStore) -> None:
    u = str(uuid.uuid4())
    store.save_scenario("s", {"encounters": [{"encounter_id": u, "v": 1}], "claims": [{"claim_id": 7}]})
    store.add_entities(
        "s", {"encounters": [{"encounter_id": u.upper(), "v": 2}], "claims": [{"claim_id": 7, "paid": True}]}
    )
    assert store.load_scenario("s")["entities"] == {
        "encounters": [{"encounter_id": u.upper(), "v": 2}],
        "claims": [{"claim_id": 7, "paid": True}],
    }


def test_add_to_a_missing_scenario_needs_create(store: ScenarioStore) -> None:
    with pytest.raises(ScenarioNotFoundError):
        store.add_entities("nope", {"patients": [{"patient_id": "A"}]})
    store.save_scenario("other", {})
    with pytest.raises(ScenarioNotFoundError):
        store.add_entities("nope", {"patients": [{"patient_id": "A"}]})
    result = store.add_entities("nope", {"patients": [{"patient_id": "A"}]}, create=True, description="d", tags=["t"])
    assert result["added"] == {"patients": 1}
    loaded = store.load_scenario("nope")
    assert (
        loaded["description"] == "d"
        and loaded["tags"] == ["t"]
        and loaded["entities"] == {"patients": [{"patient_id": "A"}]}
    )


def test_a_bad_entity_changes_nothing(store: ScenarioStore) -> None:
    store.save_scenario("s", {"patients": [{"patient_id": "A"}]})
    before = store.load_scenario("s")
    rows = count_rows(store)
    with pytest.raises(InvalidEntityError) as info:
        store.add_entities("s", {"patients": [{"patient_id": "A", "v": 2}, {"patient_id": "B", "v": float("nan")}]})
    assert "patients[1] field $.v" in str(info.value)
    assert store.load_scenario("s") == before and count_rows(store) == rows


def test_an_upsert_never_matches_an_entity_without_an_own_id(store: ScenarioStore) -> None:
    # Such an entity's stored UUID is random: a batch entity naming it as its own id is
    # another entity, appended (it was matched, and replaced the one without an id).
    store.save_scenario("s", {"patients": [{"note": "no id"}], "claims": [{"x": 1}]})
    stored = {t: str(u) for t, u in sql_rows(store.path, "SELECT entity_type, entity_id FROM scenario_entities")}
    batch = {"patients": [{"patient_id": stored["patients"], "v": 2}], "claims": [{"id": stored["claims"].upper()}]}
    result = store.add_entities("s", batch)
    assert (result["added"], result["updated"], result["removed"]) == ({"patients": 1, "claims": 1}, {}, {})
    assert store.load_scenario("s")["entities"] == {
        "patients": [{"note": "no id"}, batch["patients"][0]],
        "claims": [{"x": 1}, batch["claims"][0]],
    }
    # The entity with that own id is matched from now on; the one without still is not.
    result = store.add_entities("s", {"patients": [{"patient_id": stored["patients"], "v": 3}]})
    assert (result["added"], result["updated"], result["removed"]) == ({}, {"patients": 1}, {})
    assert store.load_scenario("s")["entities"]["patients"] == [
        {"note": "no id"},
        {"patient_id": stored["patients"], "v": 3},
    ]
    # A merge with upsert matches the same way.
    store.save_scenario("t", {"patients": [{"patient_id": stored["patients"], "v": 4}]})
    store.save_scenario("u", {"patients": [{"note": "no id"}]})
    sid = str(sql_rows(store.path, "SELECT scenario_id FROM scenarios WHERE name = 'u'")[0][0])
    (stored_u,) = (
        str(u)
        for (u,) in sql_rows(
            store.path, "SELECT entity_id FROM scenario_entities WHERE CAST(scenario_id AS VARCHAR) = ?", [sid]
        )
    )
    store.save_scenario("w", {"patients": [{"patient_id": stored_u}]})
    store.merge_scenarios(["u", "w"], "merged", upsert=True)
    assert store.load_scenario("merged")["entities"]["patients"] == [{"note": "no id"}, {"patient_id": stored_u}]


def test_adds_that_change_nothing_make_no_version(store: ScenarioStore, tmp_path: Path) -> None:
    store.save_scenario(
        "s",
        {"patients": [{"patient_id": "A", "v": 1}, {"note": "no id"}], "claims": [{"claim_id": 7, "total": 1.5}]},
    )
    before = store.load_scenario("s")
    nothing = [
        {},
        {"patients": []},
        {"members": []},  # (a type new to the scenario, but no entity of it)
        {"patients": [{"patient_id": "A", "v": 1}]},  # the same as stored
        {
            "claims": [{"claim_id": 7, "total": 1.5}],
            "patient": [{"patient_id": "A", "v": 0}, {"patient_id": "A", "v": 1}],
        },
    ]
    for batch in nothing:
        result = store.add_entities("s", batch)
        assert (result["added"], result["updated"], result["removed"]) == ({}, {}, {}), batch
        assert result["version"] == 1 and result["entities_by_type"] == {"patients": 2, "claims": 1}
        assert result["entity_count"] == 3
    assert store.load_scenario("s") == before  # updated_at, metadata and types too
    assert store.scenario_history("s")["total_count"] == 1
    # Only what differs is updated: another key order is another text (kept exactly).
    result = store.add_entities("s", {"patients": [{"patient_id": "A", "v": 1}, {"v": 1, "patient_id": "A"}]})
    assert (result["added"], result["updated"], result["removed"]) == ({}, {"patients": 1}, {})
    assert result["version"] == 2
    # A stored duplicate of an unchanged entity is still removed: a change.
    store.save_scenario("d", {"patients": [{"patient_id": "A"}, {"patient_id": "A"}]})
    result = store.add_entities("d", {"patients": [{"patient_id": "A"}]})
    assert (result["updated"], result["removed"], result["version"]) == ({}, {"patients": 1}, 2)
    assert store.load_scenario("d")["entities"]["patients"] == [{"patient_id": "A"}]
    # The command line says so, and makes no version either.
    batch_file = tmp_path / "same.json"
    batch_file.write_text(json.dumps({"patients": [{"v": 1, "patient_id": "A"}]}))
    shown = CliRunner().invoke(app, ["add", "s", "--from", str(batch_file)])
    assert shown.exit_code == 0 and "'s': nothing changed; now patients 2, claims 1" in shown.stdout, shown.stdout
    batch_file.write_text(json.dumps({"care_gaps": []}))  # only an empty type: not recorded either
    shown = CliRunner().invoke(app, ["add", "s", "--from", str(batch_file)])
    assert shown.exit_code == 0 and "'s': nothing changed; now patients 2, claims 1" in shown.stdout, shown.stdout
    assert store.scenario_history("s")["total_count"] == 2


def test_edits_keep_what_was_saved_exactly(store: ScenarioStore, tmp_path: Path) -> None:
    weird = {
        "patient_id": "A",
        "big": -(2**70),
        "z": 1,
        "a": [None, {}, []],
        "text": "\u0000é🎉",
        "_provenance": {"source_type": "generated"},
    }
    store.save_scenario("s", {"patients": [{"patient_id": "Z"}]})
    store.add_entities("s", {"patients": [weird]})
    loaded = store.load_scenario("s")
    assert loaded["entities"]["patients"] == [{"patient_id": "Z"}, weird]
    assert list(loaded["entities"]["patients"][1]) == list(weird)
    assert loaded["metadata"]["exact_json_rows"] >= 1
    path = store.export_scenario_to_json("s", tmp_path / "s.json")
    store.import_scenario_from_json(path, name="s-again")
    assert store.load_scenario("s-again")["entities"] == loaded["entities"]
    result = store.query("SELECT count(*) FROM patients WHERE scenario = 's'")
    assert result["rows"] == [[2]]


def test_remove_by_own_id_or_uuid(store: ScenarioStore) -> None:
    u = str(uuid.uuid4())
    store.save_scenario(
        "s", {"patients": [{"patient_id": "A"}, {"patient_id": "B"}, {"patient_id": "A"}, {"patient_id": u}, {"x": 1}]}
    )
    result = store.remove_entities("s", "patient", ["A", u, "nobody"])
    assert result["removed"] == {"patients": 3} and result["not_found"] == ["nobody"]
    assert store.load_scenario("s")["entities"]["patients"] == [{"patient_id": "B"}, {"x": 1}]
    derived = str(uuid.uuid5(ENTITY_ID_NAMESPACE, "patients:B"))
    assert store.remove_entities("s", "patients", [derived])["removed"] == {"patients": 1}
    assert store.load_scenario("s")["entities"]["patients"] == [{"x": 1}]


def test_remove_names_exactly_the_entity_a_save_stored(store: ScenarioStore) -> None:
    # The ids were derived unlike the save's (Python took "urn:uuid:U" for the UUID U, and
    # ids were trimmed): the twin was removed instead, and the entity itself not found.
    u = "12345678-1234-5678-1234-567812345678"
    patients = [
        {"patient_id": u, "name": "keep"},
        {"patient_id": "urn:uuid:" + u, "name": "urn"},
        {"patient_id": "MRN-1", "name": "keep too"},
        {"patient_id": " MRN-1", "name": "spaced"},
        {"patient_id": "{{" + u + "}}", "name": "braces"},
    ]
    store.save_scenario("twins", {"patients": patients})
    removed = store.remove_entities("twins", "patients", ["urn:uuid:" + u, " MRN-1", "{{" + u + "}}", " nobody "])
    assert removed["removed"] == {"patients": 3} and removed["not_found"] == [" nobody "]
    assert [p["name"] for p in store.load_scenario("twins")["entities"]["patients"]] == ["keep", "keep too"]
    assert store.remove_entities("twins", "patients", [u.upper()])["removed"] == {"patients": 1}  # the UUID itself


def test_remove_refuses_an_unknown_type_and_changes_nothing(store: ScenarioStore) -> None:
    store.save_scenario("s", {"patients": [{"patient_id": "A"}]})
    before = store.load_scenario("s")
    with pytest.raises(InvalidInputError, match="has no entity type 'claims'; its types: patients"):
        store.remove_entities("s", "claims", ["A"])
    with pytest.raises(InvalidInputError, match="a list of ids"):
        store.remove_entities("s", "patients", "A")
    assert store.load_scenario("s") == before


def test_update_renames_describes_and_tags(store: ScenarioStore) -> None:
    sid = store.save_scenario("old", {"patients": [{"patient_id": "A"}]}, "first", ["Diabetes", "keep"])
    before = store.load_scenario("old")
    entry = store.update_scenario(
        "old", new_name="new", description="second", add_tags=["DIABETES", "extra"], remove_tags=["KEEP"]
    )
    assert entry["name"] == "new" and entry["scenario_id"] == sid and entry["description"] == "second"
    assert entry["tags"] == ["Diabetes", "extra"]
    assert entry["updated_at"] > before["updated_at"] and entry["created_at"] == before["created_at"]
    with pytest.raises(ScenarioNotFoundError):
        store.load_scenario("old")
    assert store.update_scenario("new", description="")["description"] is None
    unchanged = store.update_scenario("new")
    assert unchanged["updated_at"] == store.update_scenario("new", add_tags=["extra"])["updated_at"]
    store.save_scenario("taken", {})
    with pytest.raises(ScenarioExistsError, match="'taken' already exists"):
        store.update_scenario("new", new_name="taken")
    with pytest.raises(InvalidInputError):
        store.update_scenario("new", new_name=str(uuid.uuid4()))
    assert store.load_scenario("new")["tags"] == ["Diabetes", "extra"]


def test_copy_keeps_entities_order_and_ids(store: ScenarioStore) -> None:
    entities = {"patients": [{"patient_id": "A"}, {"x": 1}], "members": [], "claims": [{"claim_id": "C", "big": 2**80}]}
    source = store.save_scenario("src", entities, "desc", ["t"])
    copy = store.copy_scenario("src", "dst")
    assert copy != source
    loaded = store.load_scenario("dst")
    assert loaded["entities"] == entities and list(loaded["entities"]) == list(entities)
    assert loaded["description"] == "desc" and loaded["tags"] == ["t"]
    assert loaded["metadata"]["provenance"]["operation"] == "copy"
    ids: dict[uuid.UUID, list[uuid.UUID]] = {}
    for scenario_id, entity_id in sql_rows(
        store.path, "SELECT scenario_id, entity_id FROM scenario_entities ORDER BY id"
    ):
        ids.setdefault(scenario_id, []).append(entity_id)
    assert len(ids) == 2 and ids[uuid.UUID(source)] == ids[uuid.UUID(copy)]  # the same entity ids, in the same order
    assert store.load_scenario(store.copy_scenario("src", "dst2", description="other", tags=[]))["tags"] == []
    with pytest.raises(ScenarioExistsError):
        store.copy_scenario("src", "dst")


@pytest.mark.slow
def test_copy_of_a_large_scenario(store: ScenarioStore) -> None:
    patients = [{"patient_id": f"P{i}"} for i in range(130_000)]  # more than a row group
    store.save_scenario("big", {"patients": patients})
    store.copy_scenario("big", "big-copy")
    assert store.load_scenario("big-copy")["entities"]["patients"] == patients
    assert count_rows(store) == 260_000


def test_merge_in_source_order_with_and_without_upsert(store: ScenarioStore) -> None:
    store.save_scenario(
        "a", {"patients": [{"patient_id": "A", "v": 1}, {"x": 1}], "claims": [{"claim_id": "C"}]}, tags=["a"]
    )
    store.save_scenario(
        "b", {"encounters": [{"encounter_id": "E"}], "patients": [{"patient_id": "A", "v": 2}, {"patient_id": "B"}]}
    )
    store.merge_scenarios(["a", "b"], "plain")
    assert store.load_scenario("plain")["entities"] == {
        "patients": [{"patient_id": "A", "v": 1}, {"x": 1}, {"patient_id": "A", "v": 2}, {"patient_id": "B"}],
        "claims": [{"claim_id": "C"}],
        "encounters": [{"encounter_id": "E"}],
    }
    store.merge_scenarios(["a", "b"], "upserted", upsert=True, description="both", tags=["m"])
    merged = store.load_scenario("upserted")
    assert merged["entities"]["patients"] == [{"patient_id": "A", "v": 2}, {"x": 1}, {"patient_id": "B"}]
    assert merged["description"] == "both" and merged["tags"] == ["m"]
    assert [s["name"] for s in merged["metadata"]["provenance"]["sources"]] == ["a", "b"]
    with pytest.raises(ScenarioNotFoundError, match="'missing'"):
        store.merge_scenarios(["a", "missing"], "never")
    with pytest.raises(InvalidInputError):
        store.merge_scenarios([], "never")
    assert "never" not in {s["name"] for s in store.list_scenarios()["scenarios"]}


def test_module_functions_use_the_default_database(store: ScenarioStore) -> None:
    # HEALTHSIM_DB names the store's database, on either engine.
    add_entities("m", {"patients": [{"patient_id": "A"}]}, create=True)
    add_entities("m", {"patients": [{"patient_id": "B"}]})
    remove_entities("m", "patients", ["A"])
    update_scenario("m", new_name="m2")
    copy_scenario("m2", "m3")
    merge_scenarios(["m2", "m3"], "m4")
    assert load_scenario("m4")["entities"] == {"patients": [{"patient_id": "B"}, {"patient_id": "B"}]}
    assert store.load_scenario("m4")["entities"] == load_scenario("m4")["entities"]


def test_add_entities_from_a_file_of_any_layout(store: ScenarioStore, tmp_path: Path) -> None:
    store.save_scenario("s", {"patients": [{"patient_id": "A"}]})
    path = tmp_path / "batch.json"
    path.write_text(json.dumps({"patients": [{"patient_id": "A", "v": 2}], "claims": [{"claim_id": "C"}]}, indent=2))
    result = store.add_entities_from_json("s", path)
    assert result["updated"] == {"patients": 1} and result["added"] == {"claims": 1}
    exported = store.export_scenario_to_json("s", tmp_path / "s.json")
    store.add_entities_from_json("copy", exported, create=True)
    assert store.load_scenario("copy")["entities"] == store.load_scenario("s")["entities"]


# DuckDB only: a file with an earlier release's DuckDB tables (the legacy_db fixture).
def test_scenarios_of_the_earlier_release_can_be_edited(tmp_path: Path) -> None:
    from legacy_db import build  # tests/fixtures: the earlier release's schema and rows

    path = tmp_path / "legacy.duckdb"
    build(str(path))
    store = ScenarioStore(path)
    name = store.list_scenarios()["scenarios"][0]["name"]
    before = store.load_scenario(name)["entities"]
    store.add_entities(name, {"care_gaps": [{"gap_id": "G1"}]})
    after = store.load_scenario(name)["entities"]
    assert {t: v for t, v in after.items() if t != "care_gaps"} == before
    assert after["care_gaps"] == [{"gap_id": "G1"}] and list(after)[-1] == "care_gaps"


# --------------------------------------------------------------------------- model


ID_FIELD = {"patients": "patient_id", "claims": "claim_id"}
entity_of = {
    t: st.fixed_dictionaries(
        {"v": st.integers(-(2**70), 2**70)}, optional={ID_FIELD[t]: st.sampled_from(["A", "B", "C", "D"])}
    )
    for t in ID_FIELD
}
batches = st.fixed_dictionaries({}, optional={t: st.lists(entity_of[t], max_size=4) for t in ID_FIELD})
operations = st.lists(
    st.one_of(
        st.tuples(st.just("save"), batches),
        st.tuples(st.just("add"), batches, st.booleans()),
        st.tuples(
            st.just("remove"), st.sampled_from(list(ID_FIELD)), st.lists(st.sampled_from(["A", "B", "Z"]), max_size=2)
        ),
    ),
    min_size=1,
    max_size=8,
)


def own_id(entity_type: str, entity: dict[str, Any]) -> str | None:
    value = entity.get(ID_FIELD[entity_type])
    return value if isinstance(value, str) else None


def model_add(model: dict[str, list[dict[str, Any]]], batch: dict[str, list[dict[str, Any]]], upsert: bool) -> bool:
    """The documented semantics, one entity at a time, on plain lists; False (and the
    model as it was, without a new empty type) when the add changes no entity."""
    before = {t: list(v) for t, v in model.items()}
    for entity_type, items in batch.items():
        target = model.setdefault(entity_type, [])
        for entity in items:
            key = own_id(entity_type, entity)
            matches = (
                [i for i, e in enumerate(target) if key is not None and own_id(entity_type, e) == key] if upsert else []
            )
            if matches:
                target[matches[0]] = entity
                for i in reversed(matches[1:]):
                    del target[i]
            else:
                target.append(entity)
    # Unchanged means the same text (key order too): the store keeps JSON as given, so an
    # entity replaced by the same fields in another order is a change it records.
    if all(_texts(model[t]) == _texts(before.get(t, [])) for t in model):
        model.clear()
        model.update(before)
        return False
    return True


def _texts(entities: list[dict[str, Any]]) -> list[str]:
    return [json.dumps(e) for e in entities]


@settings(max_examples=examples(30), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=operations)
def test_any_sequence_of_edits_loads_like_the_plain_python_model(store: ScenarioStore, steps: list[Any]) -> None:
    name = f"m-{uuid.uuid4().hex}"  # one store for every example: a scenario of its own each
    model: dict[str, list[dict[str, Any]]] | None = None
    for step in steps:
        if step[0] == "save":
            store.save_scenario(name, step[1], overwrite=True)
            model = {t: list(v) for t, v in step[1].items()}
        elif step[0] == "add":
            if model is None:
                store.add_entities(name, step[1], upsert=step[2], create=True)
                model = {t: [] for t in step[1]}  # (made: every type of the batch is there)
                model_add(model, step[1], step[2])
            else:
                result = store.add_entities(name, step[1], upsert=step[2])
                changed = model_add(model, step[1], step[2])
                assert changed == any((result["added"], result["updated"], result["removed"])), result
        elif model is not None and step[1] in model:
            store.remove_entities(name, step[1], step[2])
            model[step[1]] = [e for e in model[step[1]] if own_id(step[1], e) not in step[2]]
    if model is not None:
        loaded = store.load_scenario(name)
        assert loaded["entities"] == model
        assert loaded["entity_count"] == sum(len(v) for v in model.values())


# Versions after any mix of upserts, removes, deletes and restores, while other scenarios
# come and go (on DuckDB new ids start after the highest in use, so a purge lets ids be used
# again): every version loads as the model had it.
history_steps = st.lists(
    st.one_of(
        st.tuples(st.just("add"), batches, st.booleans()),
        st.tuples(
            st.just("remove"), st.sampled_from(list(ID_FIELD)), st.lists(st.sampled_from(["A", "B", "Z"]), max_size=2)
        ),
        st.tuples(st.just("other"), st.integers(1, 3)),
        st.tuples(st.just("purge other")),
        st.tuples(st.just("delete and restore")),
    ),
    min_size=1,
    max_size=10,
)


@settings(max_examples=examples(30), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=history_steps)
@example(  # on DuckDB, an add whose new ids start below an earlier add's and run into its range
    steps=[
        ("other", 3),
        ("add", {"patients": [{"v": 1, "patient_id": "B"}, {"v": 2, "patient_id": "B"}]}, False),
        ("remove", "patients", ["B"]),
        ("purge other",),
        ("add", {"patients": [{"v": i, "patient_id": "C"} for i in range(5)]}, False),
        ("delete and restore",),
        ("add", {"patients": [{"v": 9, "patient_id": "A"}, {"v": 9, "patient_id": "C"}]}, True),
    ]
)
@example(steps=[("add", {"patients": [{"v": 0, "patient_id": "A"}]}, True)])  # the same fields, reordered
def test_every_version_loads_as_it_was_after_any_edits(store: ScenarioStore, steps: list[Any]) -> None:
    name = f"h-{uuid.uuid4().hex}"
    model: dict[str, list[dict[str, Any]]] = {"patients": [{"patient_id": "A", "v": 0}, {"v": 0}]}
    store.save_scenario(name, model)
    versions = {1: {t: list(v) for t, v in model.items()}}
    others: list[str] = []
    for step in steps:
        if step[0] == "add":
            result = store.add_entities(name, step[1], upsert=step[2])
            assert model_add(model, step[1], step[2]) == (result["version"] not in versions)
        elif step[0] == "remove" and step[1] in model:
            result = store.remove_entities(name, step[1], step[2])
            model[step[1]] = [e for e in model[step[1]] if own_id(step[1], e) not in step[2]]
        elif step[0] == "other":
            others.append(f"{name}-other-{uuid.uuid4().hex[:8]}")
            store.save_scenario(others[-1], {"claims": [{"claim_id": str(i)} for i in range(step[1])]})
            continue
        elif step[0] == "purge other" and others:
            store.delete_scenario(others.pop(0), purge=True)
            continue
        elif step[0] == "delete and restore":
            store.delete_scenario(name)
            result = store.restore_scenario(name)
        else:
            continue
        versions[result["version"]] = {t: list(v) for t, v in model.items()}
    for version, entities in versions.items():
        assert store.load_scenario(name, version)["entities"] == entities, version


@pytest.mark.slow
def test_many_upserts_keep_every_version_exact(tmp_path: Path) -> None:
    # At the size of issue 21 (20,000 replaced in place in one add): each version reads back
    # exactly, and a delete after them works. What it costs is measured beside an append by
    # the benchmark (benchmarks/run.py --only upsert team-upsert), not timed here.
    store = ScenarioStore(tmp_path / "many.duckdb")
    patients = [{"patient_id": f"P{i}", "name": {"given": "Ana"}, "n": i} for i in range(20_000)]
    store.save_scenario("s", {"patients": patients})
    changed = [{**p, "n": -1} for p in patients]
    result = store.add_entities("s", {"patients": changed})
    assert result["updated"] == {"patients": 20_000} and result["added"] == {}
    assert store.load_scenario("s", 1)["entities"]["patients"] == patients
    assert store.load_scenario("s")["entities"]["patients"] == changed
    assert store.delete_scenario("s") and store.restore_scenario("s")["entity_count"] == 20_000


# --------------------------------------------------------------------------- processes

WORKER = Path(__file__).parent / "helpers" / "worker.py"


def start_worker(*args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "HEALTHSIM_LOCK_TIMEOUT": "60"}
    return subprocess.Popen(
        [sys.executable, str(WORKER), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )


# DuckDB only: worker processes on the DuckDB file (the team store's are tested elsewhere).
@pytest.mark.slow
def test_two_processes_adding_to_one_scenario_lose_nothing(db_path: Path) -> None:
    store = ScenarioStore(db_path)
    store.save_scenario("shared", {"patients": []})
    workers = [start_worker("add", str(db_path), "shared", prefix, "15", "20") for prefix in ("left", "right")]
    for worker in workers:
        out, errors = worker.communicate(timeout=240)
        assert worker.returncode == 0, errors
    patients = store.load_scenario("shared")["entities"]["patients"]
    ids = [p["patient_id"] for p in patients]
    expected = {f"{prefix}-{b}-{i}" for prefix in ("left", "right") for b in range(15) for i in range(20)}
    assert len(ids) == len(expected) == 600 and set(ids) == expected  # every batch exactly once
    for prefix in ("left", "right"):  # each process's batches in the order it added them
        mine = [p["batch"] for p in patients if p["patient_id"].startswith(prefix)]
        assert mine == sorted(mine)


# DuckDB only: kill -9 of a worker process writing the DuckDB file.
@pytest.mark.slow
def test_kill_during_an_add_leaves_the_scenario_before_or_after(db_path: Path) -> None:
    store = ScenarioStore(db_path)
    store.save_scenario("victim", {"patients": [{"patient_id": "first"}]})
    rng = random.Random(7)
    outcomes = set()
    for attempt in range(5):
        before = store.load_scenario("victim")["entities"]["patients"]
        worker = start_worker("add", str(db_path), "victim", f"k{attempt}", "1", "40000")
        assert worker.stdout is not None and worker.stdout.readline().strip() == "adding"
        time.sleep(rng.uniform(0.0, 0.8))
        worker.send_signal(signal.SIGKILL)
        worker.wait()
        after = store.load_scenario("victim")["entities"]["patients"]
        added = after[len(before) :]
        assert after[: len(before)] == before and len(added) in (0, 40_000)
        outcomes.add(len(added))
        assert orphan_rows(db_path) == 0
    assert 0 in outcomes, outcomes  # some kills landed before the commit


def test_a_nul_in_an_entity_does_not_stop_edits_diffs_summaries_or_checks(store: ScenarioStore) -> None:
    # PostgreSQL's JSON functions refuse the escape \u0000 that json keeps as given: an
    # overwrite (its real difference), an upsert, a diff, a summary and a check all read it.
    rows = [{"patient_id": "A", "note": "x\x00y", "\x00key": 1}, {"patient_id": "B\x00", "v": 1}]
    store.save_scenario("nul", {"patients": rows})
    store.save_scenario("nul", {"patients": [*rows, {"patient_id": "C"}]}, overwrite=True)
    added = store.add_entities("nul", {"patients": [{"patient_id": "B\x00", "v": 2}]})
    assert added["updated"] == {"patients": 1} and added["added"] == {}
    assert store.diff_scenarios(("nul", 1), "nul")["types"]["patients"]["added"] == 1
    assert store.summarize_scenario("nul")["types"]["patients"]["count"] == 3
    assert store.check_scenario("nul")["checked"] == {"patients": 3}
    assert store.load_scenario("nul")["entities"]["patients"][0] == rows[0]
