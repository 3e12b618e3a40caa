"""ScenarioStore: save, load, list and delete on a real DuckDB file and a PostgreSQL team store."""

from __future__ import annotations

import datetime as dt
import re
import time
import uuid
from pathlib import Path

import duckdb
import pytest

from healthsim.state import (
    InvalidEntityError,
    InvalidInputError,
    InvalidScenarioNameError,
    QueryError,
    ScenarioExistsError,
    ScenarioNotFoundError,
    ScenarioStore,
)
from healthsim.state.entities import ENTITY_ID_NAMESPACE
from helpers.database import never_written, orphan_rows, sql_rows
from helpers.sample import diabetes_cohort

ISO_Z = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{6})?Z$")


def rows(path: Path, sql: str, params: list | None = None) -> list[tuple]:
    con = duckdb.connect(str(path))
    try:
        return con.execute(sql, params or []).fetchall()
    finally:
        con.close()


def test_save_returns_uuid_and_load_returns_everything(store: ScenarioStore) -> None:
    entities = diabetes_cohort(5)
    sid = store.save_scenario("diabetes-cohort", entities, "Type 2 cohort", ["diabetes", "testing"])
    assert uuid.UUID(sid).version == 4
    loaded = store.load_scenario("diabetes-cohort")
    assert set(loaded) == {
        "scenario_id",
        "name",
        "version",
        "description",
        "entities",
        "tags",
        "created_at",
        "updated_at",
        "entity_count",
        "entities_by_type",
        "metadata",
    }
    assert loaded["scenario_id"] == sid
    assert loaded["name"] == "diabetes-cohort"
    assert loaded["description"] == "Type 2 cohort"
    assert loaded["tags"] == ["diabetes", "testing"]
    assert loaded["entities"] == entities
    assert list(loaded["entities"]) == ["patients", "encounters", "diagnoses", "lab_results"]
    assert loaded["entity_count"] == 20
    assert loaded["entities_by_type"] == {"patients": 5, "encounters": 5, "diagnoses": 5, "lab_results": 5}
    assert ISO_Z.match(loaded["created_at"]) and ISO_Z.match(loaded["updated_at"])
    provenance = loaded["metadata"]["provenance"]
    assert provenance["operation"] == "save" and provenance["library"] == "healthsim-state"


def test_load_by_uuid_and_name_first(store: ScenarioStore) -> None:
    sid = store.save_scenario("first", {"patients": []})
    assert store.load_scenario(sid)["name"] == "first"
    assert store.load_scenario(f"  {sid.upper()} ")["name"] == "first"
    assert store.load_scenario(" first ")["scenario_id"] == sid


def test_types_normalised_and_merged_in_order(store: ScenarioStore) -> None:
    store.save_scenario(
        "types",
        {
            "Patient": [{"patient_id": "A"}],
            "lab_result": [{"v": 1}],
            "patients": [{"patient_id": "B"}],
            "care_gaps": [{"g": 1}],
        },
    )
    loaded = store.load_scenario("types")
    assert loaded["entities"] == {
        "patients": [{"patient_id": "A"}, {"patient_id": "B"}],
        "lab_results": [{"v": 1}],
        "care_gaps": [{"g": 1}],
    }


def test_empty_types_and_empty_scenario_survive(store: ScenarioStore) -> None:
    store.save_scenario("empty-types", {"patients": [], "claims": [{"claim_id": "C1"}], "members": []})
    loaded = store.load_scenario("empty-types")
    assert loaded["entities"] == {"patients": [], "claims": [{"claim_id": "C1"}], "members": []}
    assert loaded["entities_by_type"] == {"patients": 0, "claims": 1, "members": 0}
    store.save_scenario("nothing", {})
    assert store.load_scenario("nothing")["entities"] == {}
    assert store.load_scenario("nothing")["entity_count"] == 0


def test_fidelity(store: ScenarioStore) -> None:
    weird = {
        "z_first": "\u0000é中🎉",
        "big": 2**100,
        "neg": -(2**80),
        "digits_in_text": "12345678901234567890123",
        "f": 1 / 3,
        "one": 1.0,
        "null": None,
        "e": {},
        "l": [],
        "_provenance": {"source_type": "derived", "derived_from": ["a"]},
        "_internal": True,
    }
    store.save_scenario("fidelity", {"patients": [weird, {"patient_id": 1}]})
    back = store.load_scenario("fidelity")["entities"]["patients"]
    assert back == [weird, {"patient_id": 1}]
    assert list(back[0]) == list(weird)
    assert type(back[0]["big"]) is int and type(back[0]["one"]) is float


def test_exact_rows_are_recorded_and_read_back_exactly(store: ScenarioStore) -> None:
    store.save_scenario("plain", {"patients": [{"patient_id": "A", "n": 2**63 - 1}]})
    assert store.load_scenario("plain")["metadata"]["exact_json_rows"] == 0
    entities = {"patients": [{"patient_id": "A"}, {"patient_id": "B", "n": 2**64}, {"m": -(2**70)}]}
    store.save_scenario("big", entities)
    loaded = store.load_scenario("big")
    assert loaded["metadata"]["exact_json_rows"] == 2
    assert loaded["entities"] == entities


EDGE_INTEGERS = [
    2**63 - 1,
    2**63,
    2**64 - 1,
    2**64,
    10**19,
    10**19 - 1,
    10**20,
    -(2**63),
    -(2**63) - 1,
    -9_999_999_999_999_999_999,
    -(10**18),
    -(10**19),
    -(10**30),
]


def test_integers_beyond_64_bits_of_either_sign_load_exactly_on_every_path(
    store: ScenarioStore, tmp_path: Path
) -> None:
    """Issue 7, defect 2: 19-digit negatives (-9,999,999,999,999,999,999 to -2**63 - 1)
    slipped past the 20-digit screen and came back from load_scenario as floats."""
    entities = {"patients": [{"patient_id": f"P{i}", "n": n, "list": [n]} for i, n in enumerate(EDGE_INTEGERS)]}
    store.save_scenario("edges", entities)
    assert store.load_scenario("edges")["entities"] == entities
    with store.open_scenario("edges") as reader:
        assert reader.entities("patients") == entities["patients"]
    path = store.export_scenario_to_json("edges", tmp_path / "edges.json")
    store.import_scenario_from_json(path, name="edges-again")
    assert store.load_scenario("edges-again")["entities"] == entities
    # Rows of unknown origin (an earlier release wrote no exact_json_rows): the screen decides.
    sql_rows(store.path, "UPDATE scenarios SET metadata = '{}'")
    for name in ("edges", "edges-again"):
        loaded = store.load_scenario(name)["entities"]["patients"]
        assert [type(e["n"]) for e in loaded] == [int] * len(EDGE_INTEGERS)
        assert loaded == entities["patients"]


def test_entity_ids_derived_and_data_untouched(store: ScenarioStore) -> None:
    u = str(uuid.uuid4())
    entities = {
        "patients": [{"patient_id": u}, {"patient_id": "MRN-0001"}, {"patient_id": "MRN-0001"}, {"name": "no id"}],
        "prescriptions": [{"prescription_number": "RX-7"}],
        "claims": [{"claim_id": 991}],
    }
    sid = store.save_scenario("ids", entities)
    stored = sql_rows(
        store.path,
        "SELECT entity_type, entity_id, entity_data FROM scenario_entities WHERE scenario_id = ? ORDER BY id",
        [sid],
    )
    ids = [r[1] for r in stored]
    assert ids[0] == uuid.UUID(u)
    assert ids[1] == ids[2] == uuid.uuid5(ENTITY_ID_NAMESPACE, "patients:MRN-0001")  # duplicates kept
    assert ids[3].version == 4
    assert ids[4] == uuid.uuid5(ENTITY_ID_NAMESPACE, "prescriptions:RX-7")
    assert ids[5] == uuid.uuid5(ENTITY_ID_NAMESPACE, "claims:991")
    assert store.load_scenario("ids")["entities"] == entities


def test_duplicate_name_refused_then_overwrite_keeps_id_and_created(store: ScenarioStore) -> None:
    sid = store.save_scenario("dup", {"patients": [{"patient_id": "A"}]}, "v1", ["old"])
    first = store.load_scenario("dup")
    with pytest.raises(ScenarioExistsError, match="'dup' already exists") as info:
        store.save_scenario("dup", {"patients": []})
    assert isinstance(info.value, ValueError)
    time.sleep(0.01)
    sid2 = store.save_scenario("dup", {"claims": [{"claim_id": "C"}]}, "v2", ["new"], overwrite=True)
    second = store.load_scenario("dup")
    assert sid2 == sid
    assert second["created_at"] == first["created_at"]
    assert second["updated_at"] > first["updated_at"]
    assert second["entities"] == {"claims": [{"claim_id": "C"}]}
    assert second["description"] == "v2" and second["tags"] == ["new"]
    assert orphan_rows(store.path) == 0


def test_failed_overwrite_leaves_previous_version(store: ScenarioStore) -> None:
    store.save_scenario("keep", diabetes_cohort(3), "original", ["t"])
    before = store.load_scenario("keep")
    bad = {"patients": [{"patient_id": str(i)} for i in range(60_000)] + [{"x": float("nan")}]}
    with pytest.raises(InvalidEntityError, match=r"patients\[60000\] field \$\.x"):
        store.save_scenario("keep", bad, "broken", ["x"], overwrite=True)
    assert store.load_scenario("keep") == before
    count = sql_rows(store.path, "SELECT count(*) FROM scenario_entities")[0][0]
    assert count == before["entity_count"]


def test_failed_new_save_leaves_nothing(store: ScenarioStore) -> None:
    store.save_scenario("other", {"patients": [{"patient_id": "A"}]})
    with pytest.raises(InvalidEntityError):
        store.save_scenario("half", {"patients": [{"patient_id": "1"}], "claims": [{"bad": {1, 2}}]})
    with pytest.raises(ScenarioNotFoundError):
        store.load_scenario("half")
    assert sql_rows(store.path, "SELECT count(*) FROM scenario_entities")[0][0] == 1
    assert orphan_rows(store.path) == 0


@pytest.fixture
def small_chunks(monkeypatch: pytest.MonkeyPatch) -> int:
    """Make every save of more than 1,000 entities take the staged path."""
    from healthsim.state import bulk

    monkeypatch.setattr(bulk, "CHUNK_ROWS", 1000)
    return 1000


def staging_rows(path: Path) -> int:
    return rows(path, "SELECT count(*) FROM healthsim_state_staging")[0][0]


# DuckDB only: the staged large-write path (small chunks) and its DuckDB staging table.
def test_staged_save_and_overwrite(store: ScenarioStore, db_path: Path, small_chunks: int) -> None:
    first = {"patients": [{"patient_id": f"P{i}"} for i in range(3500)], "claims": [{"claim_id": "C"}]}
    sid = store.save_scenario("staged", first, tags=["t"])
    assert store.load_scenario("staged")["entities"] == first
    created = store.load_scenario("staged")["created_at"]
    second = {"encounters": [{"encounter_id": f"E{i}"} for i in range(2500)]}
    assert store.save_scenario("staged", second, tags=["u"], overwrite=True) == sid
    loaded = store.load_scenario("staged")
    assert loaded["entities"] == second and loaded["tags"] == ["u"] and loaded["created_at"] == created
    assert rows(db_path, "SELECT count(*) FROM scenario_entities")[0][0] == 2500
    assert staging_rows(db_path) == 0 and orphan_rows(db_path) == 0


# DuckDB only: the staged large-write path (small chunks) and its DuckDB staging table.
def test_failed_staged_overwrite_leaves_previous_version(
    store: ScenarioStore, db_path: Path, small_chunks: int
) -> None:
    store.save_scenario("keep", {"patients": [{"patient_id": f"P{i}"} for i in range(1500)]})
    before = store.load_scenario("keep")
    bad = {"patients": [{"patient_id": str(i)} for i in range(4000)] + [{"x": float("nan")}]}
    with pytest.raises(InvalidEntityError, match=r"patients\[4000\]"):
        store.save_scenario("keep", bad, overwrite=True)
    assert store.load_scenario("keep") == before
    assert rows(db_path, "SELECT count(*) FROM scenario_entities")[0][0] == 1500
    assert staging_rows(db_path) == 0 and orphan_rows(db_path) == 0


# DuckDB only: plants rows in the DuckDB staging table healthsim_state_staging.
def test_interrupted_staging_is_removed_on_next_open(store: ScenarioStore, db_path: Path) -> None:
    import uuid as uuid_module

    store.save_scenario("visible", {"patients": [{"patient_id": "V"}]})
    ghost = uuid_module.uuid4()  # what a killed staged save leaves: a record and invisible rows
    rows(db_path, "INSERT INTO healthsim_state_staging VALUES (?, now()::TIMESTAMP)", [ghost])
    rows(
        db_path,
        "INSERT INTO scenario_entities SELECT 1000 + range, ?, 'patients', gen_random_uuid(), '{}', now()::TIMESTAMP "
        "FROM range(10)",
        [ghost],
    )
    assert orphan_rows(db_path) == 10
    assert store.list_scenarios()["total_count"] == 1  # any open cleans up
    assert orphan_rows(db_path) == 0 and staging_rows(db_path) == 0
    assert store.load_scenario("visible")["entity_count"] == 1


@pytest.mark.slow  # (about a second or more of the quick run's edit loop; the whole suite runs it)
def test_generator_entities_are_streamed(store: ScenarioStore) -> None:
    def patients():
        for i in range(120_000):
            yield {"patient_id": f"MRN-{i}", "i": i}

    store.save_scenario("stream", {"patients": patients()})
    loaded = store.load_scenario("stream")
    assert loaded["entity_count"] == 120_000
    assert loaded["entities"]["patients"][119_999] == {"patient_id": "MRN-119999", "i": 119_999}
    assert [p["i"] for p in loaded["entities"]["patients"][:3]] == [0, 1, 2]


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"name": ""}, InvalidScenarioNameError, "empty"),
        ({"name": str(uuid.uuid4())}, InvalidScenarioNameError, "UUID"),
        ({"entities": [1]}, InvalidEntityError, "must be a dict"),
        ({"entities": {"1bad": []}}, InvalidEntityError, "entity type '1bad'"),
        ({"entities": {"patients": ["not an object"]}}, InvalidEntityError, r"patients\[0\] is a str"),
        ({"tags": "one"}, InvalidInputError, "single string"),
        ({"description": 5}, InvalidInputError, "description"),
    ],
)
def test_invalid_input(store: ScenarioStore, kwargs: dict, error: type, match: str) -> None:
    args = {"name": "x", "entities": {"patients": []}} | kwargs
    with pytest.raises(error, match=match):
        store.save_scenario(**args)
    assert store.list_scenarios()["total_count"] == 0


def test_not_found(store: ScenarioStore) -> None:
    with pytest.raises(ScenarioNotFoundError, match="'ghost' not found") as info:
        store.load_scenario("ghost")
    assert isinstance(info.value, LookupError)
    store.save_scenario("real", {})
    with pytest.raises(ScenarioNotFoundError):
        store.load_scenario(str(uuid.uuid4()))


def test_reads_do_not_create_the_database(store: ScenarioStore) -> None:
    assert store.list_scenarios() == {"scenarios": [], "total_count": 0}
    assert store.delete_scenario("x") is False
    with pytest.raises(ScenarioNotFoundError):
        store.load_scenario("x")
    assert never_written(store.path)
    if isinstance(store.path, Path):  # DuckDB: not even the file's folder
        assert not store.path.exists() and not store.path.parent.exists()


def test_list_newest_first_with_summaries(store: ScenarioStore) -> None:
    for i in range(3):
        store.save_scenario(f"s{i}", {"patients": [{"patient_id": str(j)} for j in range(i)]}, tags=[f"t{i}"])
        time.sleep(0.002)
    listed = store.list_scenarios()
    assert listed["total_count"] == 3
    assert [s["name"] for s in listed["scenarios"]] == ["s2", "s1", "s0"]
    summary = listed["scenarios"][0]
    assert set(summary) == {
        "scenario_id",
        "name",
        "version",
        "description",
        "entity_count",
        "entities_by_type",
        "tags",
        "created_at",
        "updated_at",
    }
    assert summary["entity_count"] == 2 and summary["entities_by_type"] == {"patients": 2}
    assert summary["tags"] == ["t2"] and summary["version"] == 1
    store.save_scenario("s0", {}, overwrite=True)
    assert store.list_scenarios()["scenarios"][0]["name"] == "s0"


def test_list_limit_keeps_total(store: ScenarioStore) -> None:
    for i in range(5):
        store.save_scenario(f"n{i}", {})
    listed = store.list_scenarios(limit=2)
    assert len(listed["scenarios"]) == 2 and listed["total_count"] == 5
    with pytest.raises(InvalidInputError, match="limit"):
        store.list_scenarios(limit=0)


def test_list_pages_with_offset_through_every_match_once(store: ScenarioStore) -> None:
    """Pages of ``limit`` from ``offset`` cover every match once, in order, each with the
    total; a page past the last is empty and still counts them; the trash pages too."""
    for i in range(7):
        store.save_scenario(f"p{i}", {}, tags=["paged"] if i % 2 == 0 else [])
    whole = [s["name"] for s in store.list_scenarios()["scenarios"]]
    pages = [store.list_scenarios(limit=3, offset=start) for start in (0, 3, 6)]
    assert [s["name"] for page in pages for s in page["scenarios"]] == whole
    assert [len(page["scenarios"]) for page in pages] == [3, 3, 1]
    assert {page["total_count"] for page in pages} == {7}
    for offset in (7, 100, 2**70):  # past the last: nothing, and how many there are
        assert store.list_scenarios(limit=3, offset=offset) == {"scenarios": [], "total_count": 7}
    tagged = store.list_scenarios(tag="paged", limit=2, offset=2)
    assert [s["name"] for s in tagged["scenarios"]] == ["p2", "p0"] and tagged["total_count"] == 4
    for name in ("p0", "p1", "p2"):
        store.delete_scenario(name)
    trash = [s["name"] for s in store.list_scenarios(deleted=True)["scenarios"]]
    paged = store.list_scenarios(deleted=True, limit=2, offset=1)
    assert [s["name"] for s in paged["scenarios"]] == trash[1:] and paged["total_count"] == 3
    assert store.list_scenarios(deleted=True, offset=5) == {"scenarios": [], "total_count": 3}
    for bad in (-1, True, 1.0, "2", None):
        with pytest.raises(InvalidInputError, match="offset must be a whole number of at least 0"):
            store.list_scenarios(offset=bad)  # type: ignore[arg-type]


def test_list_tag_filter_case_insensitive(store: ScenarioStore) -> None:
    store.save_scenario("a", {}, tags=["Diabetes", "Medicare"])
    store.save_scenario("b", {}, tags=["diabetes"])
    store.save_scenario("c", {}, tags=["oncology"])
    assert {s["name"] for s in store.list_scenarios(tag="DIABETES")["scenarios"]} == {"a", "b"}
    assert store.list_scenarios(tag=" medicare ")["total_count"] == 1
    assert store.list_scenarios(tag="none")["total_count"] == 0


def test_list_search_is_literal_substring(store: ScenarioStore) -> None:
    store.save_scenario("cohort_100%", {}, "Has 100% coverage")
    store.save_scenario("cohortX100", {}, "plain")
    store.save_scenario("other", {}, "A COHORT described here")
    assert {s["name"] for s in store.list_scenarios(search="cohort")["scenarios"]} == {
        "cohort_100%",
        "cohortX100",
        "other",
    }
    assert [s["name"] for s in store.list_scenarios(search="_100%")["scenarios"]] == ["cohort_100%"]
    assert [s["name"] for s in store.list_scenarios(search="100%")["scenarios"]] == ["cohort_100%"]
    assert store.list_scenarios(search="%")["total_count"] == 1
    both = store.list_scenarios(search="cohort", tag="none")
    assert both["total_count"] == 0
    with pytest.raises(InvalidInputError, match="search contains a lone surrogate"):
        store.list_scenarios(search="\ud800")
    with pytest.raises(InvalidInputError, match="tag must be a string"):
        store.list_scenarios(tag=3)  # type: ignore[arg-type]


def test_delete(store: ScenarioStore) -> None:
    sid = store.save_scenario("gone", diabetes_cohort(2), tags=["x"])
    store.save_scenario("stays", diabetes_cohort(1), tags=["x"])
    assert store.delete_scenario("gone") is True
    assert store.delete_scenario("gone") is False
    with pytest.raises(ScenarioNotFoundError):
        store.load_scenario(sid)
    assert store.load_scenario("stays")["entity_count"] == 4
    assert sql_rows(store.path, "SELECT count(*) FROM scenario_entities WHERE scenario_id = ?", [sid])[0][0] == 0
    assert sql_rows(store.path, "SELECT count(*) FROM scenario_tags WHERE scenario_id = ?", [sid])[0][0] == 0
    other = store.save_scenario("by-id", {})
    assert store.delete_scenario(other) is True
    assert orphan_rows(store.path) == 0


def test_timestamps_are_utc(store: ScenarioStore) -> None:
    before = dt.datetime.now(dt.UTC).replace(microsecond=0)
    store.save_scenario("clock", {})
    created = dt.datetime.fromisoformat(store.load_scenario("clock")["created_at"].replace("Z", "+00:00"))
    assert before <= created <= dt.datetime.now(dt.UTC)


# DuckDB only: the path and repr of a store on a DuckDB file given as a Path.
def test_store_repr_and_path(tmp_path: Path) -> None:
    store = ScenarioStore(tmp_path / "x.duckdb")
    assert store.path == tmp_path / "x.duckdb"
    assert "x.duckdb" in repr(store)


def test_rows_out_of_id_order_are_sorted() -> None:
    import pyarrow as pa

    from healthsim.state.reading import in_id_order

    ordered = pa.table({"id": [1, 2, 5], "entity_data": ["a", "b", "c"]})
    assert in_id_order(ordered) is ordered  # already in order: no copy
    shuffled = pa.table({"id": [5, 1, 2], "entity_data": ["c", "a", "b"]})
    assert in_id_order(shuffled).column("entity_data").to_pylist() == ["a", "b", "c"]


def test_a_nul_character_is_refused_or_matches_nothing_on_both_engines(store: ScenarioStore) -> None:
    # PostgreSQL text cannot hold NUL: a description with one is refused (on DuckDB too, alike),
    # and a lookup or filter with one finds nothing instead of failing on the server.
    store.save_scenario("s", {"patients": [{"patient_id": "A", "note": "x\x00y"}]})  # JSON escapes it: kept
    assert store.load_scenario("s")["entities"]["patients"][0]["note"] == "x\x00y"
    with pytest.raises(InvalidInputError, match="description holds a NUL character"):
        store.save_scenario("t", {"patients": []}, description="a\x00b")
    with pytest.raises(ScenarioNotFoundError):
        store.load_scenario("s\x00")
    with pytest.raises(ScenarioNotFoundError):
        store.restore_scenario("s\x00")
    assert store.list_scenarios(search="s\x00") == {"scenarios": [], "total_count": 0}
    assert store.list_scenarios(tag="t\x00", deleted=True) == {"scenarios": [], "total_count": 0}
    assert [s["name"] for s in store.list_scenarios()["scenarios"]] == ["s"]


def test_a_lone_surrogate_is_refused_or_matches_nothing_on_both_engines(store: ScenarioStore) -> None:
    # Not UTF-8, so no stored name holds one: lookups find nothing (they failed inside the
    # database engine), ids to remove and SQL are refused by name.
    store.save_scenario("s", {"patients": [{"patient_id": "A"}]})
    for lookup in (
        lambda: store.load_scenario("s\ud800"),
        lambda: store.scenario_history("s\ud800"),
        lambda: store.restore_scenario("s\ud800"),
        lambda: store.diff_scenarios("s", "s\ud800"),
        lambda: store.merge_scenarios(["s", "s\ud800"], "m"),
    ):
        with pytest.raises(ScenarioNotFoundError, match="not found"):
            lookup()
    with pytest.raises(InvalidInputError, match=r"entity_ids\[1\] contains a lone surrogate"):
        store.remove_entities("s", "patients", ["A", "a\ud800"])
    with pytest.raises(QueryError, match="the SQL contains a lone surrogate"):
        store.query("SELECT '\ud800'")
    assert store.load_scenario("s")["entities"] == {"patients": [{"patient_id": "A"}]}  # nothing changed
    assert store.scenario_history("s")["total_count"] == 1


def test_diff_tells_numbers_as_written_and_takes_a_nul_escape_on_both_engines(store: ScenarioStore) -> None:
    store.save_scenario("a", {"patients": [{"patient_id": "p", "w": 1}, {"patient_id": "q", "v": "x\x00", "w": 1}]})
    store.save_scenario("b", {"patients": [{"patient_id": "p", "w": 1.0}, {"patient_id": "q", "v": "x\x00", "w": 2}]})
    store.save_scenario("c", {"patients": [{"patient_id": "p", "w": 1}, {"patient_id": "q", "v": "x\x00", "w": 1}]})
    changed = store.diff_scenarios("a", "b")["types"]["patients"]
    assert (changed["changed"], changed["unchanged"]) == (2, 0)
    same = store.diff_scenarios("a", "c")["types"]["patients"]
    assert (same["changed"], same["unchanged"]) == (0, 2)
