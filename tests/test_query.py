"""The read-only SQL sandbox: answers, limits, and every escape refused."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

import legacy_db
from helpers.sample import diabetes_cohort
from healthsim.state import QueryError, ScenarioStore, query_scenarios


@pytest.fixture
def filled(store: ScenarioStore) -> ScenarioStore:
    store.save_scenario("medicare", diabetes_cohort(6), tags=["medicare"])
    store.save_scenario("commercial", {"patients": [{"patient_id": "C1", "gender": "female", "birth_date": "1940-01-01"}]})
    return store


def test_views_answer_questions(filled: ScenarioStore) -> None:
    result = query_scenarios(
        "SELECT scenario, data->>'gender' AS gender, count(*) AS n FROM patients GROUP BY ALL ORDER BY ALL"
    )
    assert result["columns"] == ["scenario", "gender", "n"]
    assert result["rows"] == [["commercial", "female", 1], ["medicare", "female", 3], ["medicare", "male", 3]]
    assert result["total_rows"] == 3 and not result["truncated"]
    assert {"entities", "patients", "encounters", "diagnoses", "lab_results"} <= set(result["views"])
    nested = query_scenarios("SELECT json_extract_string(data, '$.address.city') FROM patients WHERE scenario = 'medicare' LIMIT 1")
    assert nested["rows"] == [["Springfield"]]
    typed = query_scenarios("SELECT entity_type, count(*) FROM entities GROUP BY 1 ORDER BY 1")
    assert typed["rows"][0] == ["diagnoses", 6]
    joined = query_scenarios("SELECT s.name FROM scenarios s JOIN scenario_tags t USING (scenario_id) WHERE t.tag = 'medicare'")
    assert joined["rows"] == [["medicare"]]


def test_select_forms_that_are_allowed(filled: ScenarioStore) -> None:
    for sql in ("FROM scenarios", "WITH x AS (SELECT 1 AS a) SELECT a FROM x", "SUMMARIZE scenarios",
                "DESCRIBE patients", "SELECT 1; ", "VALUES (1, 'a')"):
        assert query_scenarios(sql)["total_rows"] >= 1, sql


def test_row_cap_reports_the_total(filled: ScenarioStore) -> None:
    result = query_scenarios("SELECT * FROM range(5000)", limit=10)
    assert result["row_count"] == 10 and result["total_rows"] == 5000 and result["truncated"]
    assert [r[0] for r in result["rows"]] == list(range(10))


def test_values_are_json_friendly(filled: ScenarioStore) -> None:
    row = query_scenarios(
        "SELECT DATE '2024-01-02', TIMESTAMP '2024-01-02 03:04:05', 1.5::DECIMAL(4,2), gen_random_uuid() IS NOT NULL, "
        "[1, 2], {'a': 1}, 'nan'::DOUBLE, NULL, 1 AS dup, 2 AS dup"
    )["rows"][0]
    assert row[:8] == ["2024-01-02", "2024-01-02T03:04:05", "1.50", True, [1, 2], {"a": 1}, "nan", None]
    assert row[8:] == [1, 2]  # duplicate column names keep both values


def test_time_limit_interrupts(filled: ScenarioStore) -> None:
    with pytest.raises(QueryError, match="ran longer than 0.3 s"):
        query_scenarios("SELECT count(*) FROM range(1000000000000) a", timeout=0.3)
    assert query_scenarios("SELECT 1")["rows"] == [[1]]  # the next query works


ESCAPES = [
    ("read_text", "SELECT * FROM read_text('{secret}')", "disabled"),
    ("read_csv", "SELECT * FROM read_csv('{secret}')", "disabled"),
    ("glob", "SELECT * FROM glob('{tmp}/*')", "disabled"),
    ("copy", "COPY (SELECT 1) TO '{tmp}/out.csv'", "not COPY"),
    ("copy-in-select", "SELECT * FROM (COPY (SELECT 1) TO '{tmp}/out.csv')", "parse"),
    ("attach", "ATTACH '{tmp}/other.duckdb' AS other", "not ATTACH"),
    ("export", "EXPORT DATABASE '{tmp}/dump'", "not EXPORT"),
    ("install", "INSTALL httpfs", "not LOAD"),
    ("load", "LOAD httpfs", "not LOAD"),
    ("set", "SET memory_limit = '1GB'", "not SET"),
    ("pragma", "PRAGMA enable_profiling", "not PRAGMA"),
    ("drop", "DROP TABLE scenarios", "not DROP"),
    ("delete", "DELETE FROM scenario_entities", "not DELETE"),
    ("insert", "INSERT INTO scenario_tags VALUES (99, gen_random_uuid(), 'x')", "not INSERT"),
    ("update", "UPDATE scenarios SET name = 'x'", "not UPDATE"),
    ("create", "CREATE TABLE t AS SELECT 1", "not CREATE"),
    ("second-statement", "SELECT 1; DROP TABLE scenarios", "exactly one statement"),
    ("explain-analyze-write", "EXPLAIN ANALYZE INSERT INTO scenario_tags VALUES (99, gen_random_uuid(), 'x')", "not EXPLAIN"),
    ("checkpoint", "CHECKPOINT", "not CALL"),
    ("call", "CALL pragma_version()", "not CALL"),
    ("detach", "DETACH healthsim", "not DETACH"),
    ("empty", "   ", "one SELECT"),
]


@pytest.mark.parametrize("sql", [e[1] for e in ESCAPES], ids=[e[0] for e in ESCAPES])
def test_escapes_are_refused_and_change_nothing(filled: ScenarioStore, tmp_path: Path, sql: str) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("password")
    problem = dict((e[1], e[2]) for e in ESCAPES)[sql]
    before = filled.list_scenarios()
    db_hash = hashlib.sha256(filled.path.read_bytes()).hexdigest()
    files_before = sorted(os.listdir(tmp_path))
    with pytest.raises(QueryError) as info:
        query_scenarios(sql.format(secret=secret, tmp=tmp_path))
    assert problem in str(info.value)
    assert "password" not in str(info.value)
    assert sorted(os.listdir(tmp_path)) == files_before  # no file written
    assert hashlib.sha256(filled.path.read_bytes()).hexdigest() == db_hash  # database untouched
    assert filled.list_scenarios() == before


def test_sandbox_settings_are_locked(filled: ScenarioStore) -> None:
    result = query_scenarios("SELECT current_setting('enable_external_access'), current_setting('lock_configuration')")
    assert result["rows"] == [[False, True]]


def test_bad_arguments_and_missing_database(isolated_home: Path) -> None:
    with pytest.raises(QueryError, match="no database"):
        query_scenarios("SELECT 1")
    ScenarioStore().save_scenario("x", {})
    for kwargs in ({"limit": 0}, {"limit": 100_001}, {"timeout": 0}, {"timeout": -1}):
        with pytest.raises(QueryError):
            query_scenarios("SELECT 1", **kwargs)
    with pytest.raises(QueryError, match="does not parse"):
        query_scenarios("SELEKT 1")
    with pytest.raises(QueryError, match="query failed: Catalog Error"):
        query_scenarios("SELECT * FROM no_such_table")
    assert isinstance(QueryError("x"), ValueError)


def test_legacy_tables_keep_their_names(tmp_path: Path) -> None:
    db = tmp_path / "legacy.duckdb"
    legacy_db.build(str(db))
    result = query_scenarios("SELECT * FROM patients", db_path=db)  # the legacy table, not a view
    assert result["columns"] == ["id", "mrn", "given_name"]
    assert "patients" not in result["views"]
    assert query_scenarios("SELECT count(*) FROM entities WHERE entity_type = 'patients'", db_path=db)["rows"] == [[2]]
