"""Schema: the specification's tables, the version table, and the legacy upgrade."""

from __future__ import annotations

import getpass
import json
import shutil
import uuid
from pathlib import Path

import duckdb
import legacy_db
import pytest

from healthsim.state import DatabaseError, ScenarioStore
from healthsim.state._engines.ddl import VERSION_TABLE
from healthsim.state._engines.duckdb.schema import SCHEMA_VERSION, ensure_schema
from healthsim.state._engines.postgres.schema import SCHEMA_VERSION as PG_SCHEMA_VERSION
from healthsim.state._engines.postgres.server import TeamDatabase
from healthsim.state.entities import ENTITY_ID_NAMESPACE
from healthsim.state.history import VERSIONS
from helpers.database import orphan_rows, sql_rows
from helpers.paths import FIXTURES

SPEC_COLUMNS = {
    "scenarios": [
        ("scenario_id", "UUID", "NO"),
        ("name", "VARCHAR", "NO"),
        ("description", "VARCHAR", "YES"),
        ("created_at", "TIMESTAMP", "YES"),
        ("updated_at", "TIMESTAMP", "YES"),
        ("metadata", "JSON", "YES"),
    ],
    "scenario_entities": [
        ("id", "INTEGER", "NO"),
        ("scenario_id", "UUID", "NO"),
        ("entity_type", "VARCHAR", "NO"),
        ("entity_id", "UUID", "NO"),
        ("entity_data", "JSON", "NO"),
        ("created_at", "TIMESTAMP", "YES"),
    ],
    "scenario_tags": [
        ("id", "INTEGER", "NO"),
        ("scenario_id", "UUID", "NO"),
        ("tag", "VARCHAR", "NO"),
    ],
}


def query(path: Path, sql: str, params: list | None = None) -> list[tuple]:
    con = duckdb.connect(str(path))
    try:
        return con.execute(sql, params or []).fetchall()
    finally:
        con.close()


def columns(path: Path, table: str) -> list[tuple]:
    return query(
        path,
        "SELECT column_name, data_type, is_nullable FROM information_schema.columns "
        "WHERE table_name = ? ORDER BY ordinal_position",
        [table],
    )


def test_new_database_has_the_specification_tables(store: ScenarioStore, db_path: Path) -> None:
    store.save_scenario("x", {})
    for table, expected in SPEC_COLUMNS.items():
        assert columns(db_path, table) == expected
    constraints = query(
        db_path,
        "SELECT table_name, constraint_type, constraint_column_names FROM duckdb_constraints() "
        "WHERE constraint_type IN ('PRIMARY KEY', 'UNIQUE', 'FOREIGN KEY') ORDER BY ALL",
    )
    assert ("scenarios", "PRIMARY KEY", ["scenario_id"]) in constraints
    assert ("scenarios", "UNIQUE", ["name"]) in constraints
    assert ("scenario_entities", "PRIMARY KEY", ["id"]) in constraints
    assert ("scenario_tags", "UNIQUE", ["scenario_id", "tag"]) in constraints
    assert not [c for c in constraints if c[1] == "FOREIGN KEY"]
    assert query(db_path, f"SELECT version FROM {VERSION_TABLE} ORDER BY version") == [(v,) for v in range(1, 7)]
    assert SCHEMA_VERSION == 6


def test_ensure_schema_is_idempotent(tmp_path: Path) -> None:
    con = duckdb.connect(str(tmp_path / "s.duckdb"))
    ensure_schema(con)
    ensure_schema(con)
    assert con.execute(f"SELECT count(*) FROM {VERSION_TABLE}").fetchall() == [(6,)]
    con.close()


def test_newer_schema_is_refused(store: ScenarioStore, db_path: Path) -> None:
    store.save_scenario("x", {})
    query(db_path, f"INSERT INTO {VERSION_TABLE} VALUES (99, 'future', now()::TIMESTAMP)")
    with pytest.raises(DatabaseError, match="version 99, newer"):
        store.list_scenarios()


def check_upgraded_legacy(path: Path) -> None:
    """Every legacy row survived, typed to our schema; other tables untouched."""
    store = ScenarioStore(path)
    listed = store.list_scenarios()  # the first open upgrades
    for table, expected in SPEC_COLUMNS.items():
        assert columns(path, table) == expected
    assert query(path, "SELECT * FROM patients") == [("p1", "MRN-00012345", "Ana")]
    assert query(path, "SELECT version FROM schema_migrations") == [("1.0",)]
    assert listed["total_count"] == 2
    by_name = {s["name"]: s for s in listed["scenarios"]}
    diabetes = by_name["legacy-diabetes"]
    assert diabetes["scenario_id"] == "0b7c9f6e-3c1a-4f5e-9d2b-7a8e6f4c2d10"
    assert diabetes["tags"] == ["diabetes", "Legacy"]
    assert diabetes["created_at"] == "2024-12-26T10:30:00Z"
    assert diabetes["entities_by_type"] == {"patients": 2, "encounters": 1, "diagnoses": 1}
    assert store.list_scenarios(tag="legacy")["total_count"] == 1

    loaded = store.load_scenario("legacy-diabetes")
    rows = legacy_db.LEGACY_SCENARIOS["0b7c9f6e-3c1a-4f5e-9d2b-7a8e6f4c2d10"][4]
    assert loaded["entities"]["patients"] == [rows[0][2], rows[1][2]]  # big integer kept exact
    assert loaded["entities"]["encounters"] == [rows[2][2]]
    # The diagnosis' legacy id is in no field of its data: kept as _entity_id.
    assert loaded["entities"]["diagnoses"] == [{**rows[3][2], "_entity_id": "MRN-00012345:E11.9"}]
    assert loaded["metadata"]["product"] == "healthsim"
    entity_ids = dict(
        query(
            path, "SELECT entity_data->>'patient_id', entity_id FROM scenario_entities WHERE entity_type = 'patients'"
        )
    )
    assert entity_ids["MRN-00012345"] == uuid.uuid5(ENTITY_ID_NAMESPACE, "patients:MRN-00012345")
    assert entity_ids["3f2b8c1e-9d4a-4e7b-8c6f-1a2b3c4d5e6f"] == uuid.UUID("3f2b8c1e-9d4a-4e7b-8c6f-1a2b3c4d5e6f")

    claims = store.load_scenario("legacy-claims")  # a non-UUID legacy scenario id
    assert claims["scenario_id"] == str(uuid.uuid5(ENTITY_ID_NAMESPACE, "scenario:legacy-scn-0002"))
    assert claims["metadata"]["legacy_scenario_id"] == "legacy-scn-0002"
    assert claims["entities"]["claims"][0]["lines"] == [{"line": 1, "cpt": "99213"}]

    # Normal life after the upgrade: overwrite, new saves, delete.
    sid = store.save_scenario("legacy-diabetes", {"patients": [{"patient_id": "N"}]}, overwrite=True)
    assert sid == "0b7c9f6e-3c1a-4f5e-9d2b-7a8e6f4c2d10"
    assert store.load_scenario("legacy-diabetes")["created_at"] == "2024-12-26T10:30:00Z"
    store.save_scenario("fresh", {"patients": [{"patient_id": "F"}]}, tags=["claims"])
    assert store.delete_scenario("legacy-claims") is True
    assert {s["name"] for s in store.list_scenarios()["scenarios"]} == {"legacy-diabetes", "fresh"}
    assert orphan_rows(path) == 0
    assert query(path, "SELECT * FROM patients") == [("p1", "MRN-00012345", "Ana")]


def test_upgrade_database_written_by_duckdb_2(tmp_path: Path) -> None:
    path = tmp_path / "legacy2.duckdb"
    legacy_db.build(str(path))
    check_upgraded_legacy(path)


def test_upgrade_database_written_by_duckdb_1_4(tmp_path: Path) -> None:
    path = tmp_path / "legacy14.duckdb"
    shutil.copy(FIXTURES / "healthsim-legacy-duckdb-1.4.duckdb", path)
    check_upgraded_legacy(path)


def test_legacy_null_entity_data_is_kept_as_json_null(tmp_path: Path) -> None:
    path = tmp_path / "legacy-null.duckdb"
    legacy_db.build(str(path))
    query(path, "UPDATE scenario_entities SET entity_data = NULL WHERE entity_id = 'ENC-1'")
    loaded = ScenarioStore(path).load_scenario("legacy-diabetes")
    assert loaded["entities"]["encounters"] == [None]


def test_failed_upgrade_changes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "legacy-odd.duckdb"
    legacy_db.build(str(path))
    query(path, "ALTER TABLE scenario_tags ADD COLUMN color VARCHAR")
    with pytest.raises(DatabaseError, match="'scenario_tags' has columns this release does not know \\(color\\)"):
        ScenarioStore(path).list_scenarios()
    assert columns(path, "scenarios")[0] == ("scenario_id", "VARCHAR", "NO")
    assert query(path, "SELECT count(*) FROM scenario_entities") == [(5,)]
    assert query(path, "SELECT count(*) FROM duckdb_tables() WHERE table_name = ?", [VERSION_TABLE]) == [(0,)]


def test_legacy_metadata_is_not_rewritten(tmp_path: Path) -> None:
    path = tmp_path / "legacy-meta.duckdb"
    legacy_db.build(str(path))
    ScenarioStore(path).list_scenarios()
    meta = json.loads(query(path, "SELECT metadata FROM scenarios WHERE name = 'legacy-diabetes'")[0][0])
    assert meta == {
        "product": "healthsim",
        "entity_types": ["patients", "encounters", "diagnoses"],
        "entity_counts": {"patients": 2, "encounters": 1, "diagnoses": 1},
    }


def make_schema_before_changed_by(database: Path | TeamDatabase, last: int) -> None:
    """Turn a database into what the release before ``changed_by`` wrote: the same tables
    without that column, its schema version ``last``."""
    sql_rows(database, f"ALTER TABLE {VERSIONS} DROP COLUMN changed_by")
    sql_rows(database, "DROP TABLE healthsim_state_tokens")  # (added after changed_by)
    sql_rows(database, f"DELETE FROM {VERSION_TABLE} WHERE version > ? RETURNING version", [last])


def check_history_upgrade(database: Path | TeamDatabase) -> None:
    """An older database's history opens and upgrades: old versions say nobody made them
    (it was not kept), new ones say who did."""
    store = ScenarioStore(database)
    store.save_scenario("old", {"patients": [{"patient_id": "A"}]})
    store.add_entities("old", {"patients": [{"patient_id": "B"}]})
    make_schema_before_changed_by(database, 3 if isinstance(database, Path) else 2)
    store.update_scenario("old", description="after the upgrade")
    history = store.scenario_history("old")["versions"]
    assert [(v["version"], v["by"]) for v in history] == [(3, getpass.getuser()), (2, None), (1, None)]
    assert store.load_scenario("old", 1)["entities"] == {"patients": [{"patient_id": "A"}]}
    latest = sql_rows(database, f"SELECT max(version) FROM {VERSION_TABLE}")[0][0]
    assert latest == (SCHEMA_VERSION if isinstance(database, Path) else PG_SCHEMA_VERSION)


def test_a_file_from_before_changed_by_upgrades(tmp_path: Path) -> None:
    check_history_upgrade(tmp_path / "before.duckdb")


def test_a_team_store_from_before_changed_by_upgrades(pg_url: str) -> None:
    check_history_upgrade(TeamDatabase.parse(pg_url))
