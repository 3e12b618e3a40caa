"""The read-only SQL sandbox: answers, limits, and every escape refused."""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

import duckdb
import legacy_db
import pyarrow as pa
import pytest

from healthsim.state import QueryError, ScenarioStore, query_scenarios
from healthsim.state import query as query_module
from helpers.sample import diabetes_cohort


@pytest.fixture
def filled(store: ScenarioStore) -> ScenarioStore:
    store.save_scenario("medicare", diabetes_cohort(6), tags=["medicare"])
    store.save_scenario(
        "commercial", {"patients": [{"patient_id": "C1", "gender": "female", "birth_date": "1940-01-01"}]}
    )
    return store


def test_views_answer_questions(filled: ScenarioStore) -> None:
    result = query_scenarios(
        "SELECT scenario, data->>'gender' AS gender, count(*) AS n FROM patients GROUP BY ALL ORDER BY ALL"
    )
    assert result["columns"] == ["scenario", "gender", "n"]
    assert result["rows"] == [["commercial", "female", 1], ["medicare", "female", 3], ["medicare", "male", 3]]
    assert result["total_rows"] == 3 and not result["truncated"]
    assert {"entities", "patients", "encounters", "diagnoses", "lab_results"} <= set(result["views"])
    nested = query_scenarios(
        "SELECT json_extract_string(data, '$.address.city') FROM patients WHERE scenario = 'medicare' LIMIT 1"
    )
    assert nested["rows"] == [["Springfield"]]
    typed = query_scenarios("SELECT entity_type, count(*) FROM entities GROUP BY 1 ORDER BY 1")
    assert typed["rows"][0] == ["diagnoses", 6]
    joined = query_scenarios(
        "SELECT s.name FROM scenarios s JOIN scenario_tags t USING (scenario_id) WHERE t.tag = 'medicare'"
    )
    assert joined["rows"] == [["medicare"]]


def test_select_forms_that_are_allowed(filled: ScenarioStore) -> None:
    for sql in (
        "FROM scenarios",
        "WITH x AS (SELECT 1 AS a) SELECT a FROM x",
        "SUMMARIZE scenarios",
        "DESCRIBE patients",
        "SELECT 1; ",
        "VALUES (1, 'a')",
    ):
        assert query_scenarios(sql)["total_rows"] >= 1, sql


def test_row_cap_reports_the_total(filled: ScenarioStore) -> None:
    result = query_scenarios("SELECT * FROM range(5000)", limit=10)
    assert result["row_count"] == 10 and result["total_rows"] == 5000 and result["truncated"]
    assert result["truncated_reason"] == "rows" and result["cut_values"] == 0
    assert [r[0] for r in result["rows"]] == list(range(10))
    exact = query_scenarios("SELECT * FROM range(10)", limit=10)  # the cap reached, nothing left out
    assert exact["row_count"] == 10 and not exact["truncated"] and exact["truncated_reason"] is None


def rows_json_size(rows: list) -> int:
    return len(json.dumps(rows, ensure_ascii=False, separators=(",", ":")).encode("utf-8"))


def test_small_result_is_whole_and_says_nothing_was_cut(filled: ScenarioStore) -> None:
    result = query_scenarios("SELECT 42 AS answer, 'forty-two' AS words, [1, 2] AS list")
    assert result["columns"] == ["answer", "words", "list"]
    assert result["rows"] == [[42, "forty-two", [1, 2]]]
    assert (result["row_count"], result["total_rows"], result["truncated"]) == (1, 1, False)
    assert result["truncated_reason"] is None and result["cut_values"] == 0
    assert result["result_bytes"] == rows_json_size(result["rows"])


def test_byte_cap_cuts_long_values_without_building_them(filled: ScenarioStore) -> None:
    # 100 MB of text in all (issue 7 used 1 GB); before, every byte of it came back.
    started = time.monotonic()
    result = query_scenarios("SELECT repeat('x', 10000000) AS text FROM range(10)")
    assert time.monotonic() - started < 5
    assert rows_json_size(result["rows"]) <= query_module.DEFAULT_MAX_BYTES
    assert result["result_bytes"] == rows_json_size(result["rows"])
    assert result["total_rows"] == 10 and 1 <= result["row_count"] < 10
    assert result["truncated"] and result["truncated_reason"] == "bytes"
    assert result["cut_values"] == result["row_count"]
    for (text,) in result["rows"]:
        assert text.startswith("xxxx") and text.endswith("…[cut, 10,000,000 bytes in all]")


def test_byte_cap_stops_adding_rows(filled: ScenarioStore) -> None:
    result = query_scenarios("SELECT i, 'row ' || i AS label FROM range(1000) t(i)", max_bytes=1000)
    assert rows_json_size(result["rows"]) <= 1000 < rows_json_size(result["rows"] + [[999, "row 999"]])
    assert result["rows"] == [[i, f"row {i}"] for i in range(result["row_count"])]
    assert result["truncated_reason"] == "bytes" and result["total_rows"] == 1000
    assert result["cut_values"] == 0


def test_byte_cap_cuts_blobs_and_big_lists(filled: ScenarioStore) -> None:
    result = query_scenarios(
        "SELECT repeat('ab', 50000)::BLOB AS blob, range(100000) AS list, 'short' AS text", max_bytes=10_000
    )
    ((blob, big_list, text),) = result["rows"]
    assert blob.startswith("6162") and blob.endswith("…[cut, 100,000 bytes in all]") and len(blob) < 2000
    assert big_list.startswith("[cut: a list<") and big_list.endswith(" bytes]")
    assert text == "short"
    assert result["cut_values"] == 2 and not result["truncated"] and result["truncated_reason"] is None
    assert rows_json_size(result["rows"]) <= 10_000


def test_byte_cap_in_process_too(filled: ScenarioStore, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(query_module, "SANDBOX_IN_CHILD_PROCESS", False)
    result = query_scenarios("SELECT repeat('é', 1000000) AS text FROM range(3)", max_bytes=5_000)
    assert result["truncated_reason"] == "bytes" and result["cut_values"] == result["row_count"] >= 1
    assert rows_json_size(result["rows"]) <= 5_000
    assert query_scenarios("SELECT 1 AS one")["rows"] == [[1]]


def test_conversion_checks_the_deadline() -> None:
    batch = pa.RecordBatch.from_pydict({"n": list(range(10))})
    rows = query_module._Rows(1, limit=10, max_bytes=1000, deadline=time.monotonic() - 1)
    with pytest.raises(query_module._OutOfTime):
        rows.add(batch)


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


def test_time_limit_stops_work_duckdb_does_not_interrupt(filled: ScenarioStore) -> None:
    # One jaro_similarity call over two 4-million-character strings runs for half a
    # minute and never looks at DuckDB's interrupt flag (about 300 MB, in the child).
    started = time.monotonic()
    with pytest.raises(QueryError, match="ran longer than 2 s and was stopped"):
        query_scenarios("SELECT jaro_similarity(repeat('ab', 2000000), repeat('ba', 2000000))", timeout=2)
    assert time.monotonic() - started < 5
    assert query_scenarios("SELECT 1")["rows"] == [[1]]  # the next query works


@pytest.mark.skipif(not Path("/proc/self/statm").exists(), reason="the memory watch reads /proc")
def test_memory_cap_stops_work_duckdb_does_not_account(filled: ScenarioStore, monkeypatch: pytest.MonkeyPatch) -> None:
    # range() builds its list outside DuckDB's memory limit (issue 7: 3.6 GB, ~10 s with a
    # 2 s limit); with a 512 MiB cap the sandbox process is killed long before that.
    monkeypatch.setattr(query_module, "SANDBOX_MEMORY_LIMIT_MIB", 256)
    monkeypatch.setattr(query_module, "SANDBOX_PROCESS_HEADROOM_MIB", 256)
    started = time.monotonic()
    with pytest.raises(QueryError, match="ran out of the sandbox's memory .* add a LIMIT"):
        query_scenarios("SELECT list(range(60000000))", timeout=10)
    assert time.monotonic() - started < 5


def test_duckdb_out_of_memory_is_explained(filled: ScenarioStore, monkeypatch: pytest.MonkeyPatch) -> None:
    # A 200 MB sort under a 128 MiB limit with no room to spill.
    monkeypatch.setattr(query_module, "SANDBOX_MEMORY_LIMIT_MIB", 128)
    monkeypatch.setattr(query_module, "SANDBOX_TEMP_LIMIT_MIB", 0)
    with pytest.raises(QueryError, match=r"ran out of the sandbox's memory \(128MiB\).*\[Out of Memory Error"):
        query_scenarios("SELECT count(*) FROM (SELECT i, repeat('x', 100) s FROM range(2000000) t(i) ORDER BY s, i)")


def test_memory_limit_and_spill_folder_are_set(filled: ScenarioStore) -> None:
    result = query_scenarios(
        "SELECT current_setting('memory_limit'), current_setting('temp_directory'), "
        "current_setting('max_temp_directory_size')"
    )
    ((memory_limit, temp_directory, temp_limit),) = result["rows"]
    configured = duckdb.connect(config={"memory_limit": f"{query_module.sandbox_memory_limit()}MiB"})
    assert memory_limit == configured.execute("SELECT current_setting('memory_limit')").fetchone()[0]
    configured.close()
    assert query_module.sandbox_memory_limit() <= query_module.SANDBOX_MEMORY_LIMIT_MIB
    assert "healthsim-query-" in temp_directory and not Path(temp_directory).exists()  # removed afterwards
    assert temp_limit != "90% of available disk space"  # DuckDB's default


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
    (
        "explain-analyze-write",
        "EXPLAIN ANALYZE INSERT INTO scenario_tags VALUES (99, gen_random_uuid(), 'x')",
        "not EXPLAIN",
    ),
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
    for kwargs in (
        {"limit": 0},
        {"limit": 100_001},
        {"timeout": 0},
        {"timeout": -1},
        {"max_bytes": 999},
        {"max_bytes": 100_000_001},
        {"max_bytes": True},
        {"max_bytes": "1000"},
    ):
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
