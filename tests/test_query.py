"""The read-only SQL sandbox on both engines: answers, limits, and every escape refused.

One suite: the first part runs every test on a DuckDB file and on a PostgreSQL team store (``store``,
this module is in conftest's ``BOTH_ENGINES``); then the tests of what only DuckDB does (marked
``duckdb_only``: its SQL dialect, the child-process sandbox, memory caps, file output details), then
those of what only PostgreSQL does (marked ``postgresql_only``: the server's time limits, session
settings, hostile SQL for PostgreSQL, answers compared side by side with a DuckDB file).
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import legacy_db
import psutil
import psycopg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from healthsim.state import (
    InvalidInputError,
    QueryError,
    ScenarioStore,
    query_scenarios,
    query_to_file,
    sandbox_rules,
    transfer_scenario,
)
from healthsim.state import query as query_module
from healthsim.state._engines.duckdb import sandbox as duckdb_sandbox
from healthsim.state._engines.postgres import sandbox
from healthsim.state._engines.postgres.idle import close_idle_connections
from healthsim.state._engines.postgres.sandbox import check_statement, run_query, split_statements
from healthsim.state._engines.postgres.server import TeamDatabase
from helpers.paths import NO_SUCH_USER, no_such_user
from helpers.pg_server import PASSWORD, PgServer
from helpers.sample import diabetes_cohort


def save_two(store: ScenarioStore) -> ScenarioStore:
    """The two scenarios the tests of both engines query."""
    store.save_scenario("medicare", diabetes_cohort(6), tags=["medicare"])
    store.save_scenario(
        "commercial", {"patients": [{"patient_id": "C1", "gender": "female", "birth_date": "1940-01-01"}]}
    )
    return store


@pytest.fixture(scope="session")
def filled_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A DuckDB file holding the two scenarios, saved once per worker: a DuckDB test's ``filled``
    copies it (the two saves were most of the setup of each of ~70 tests)."""
    path = tmp_path_factory.mktemp("filled") / "healthsim.duckdb"
    with pytest.MonkeyPatch.context() as patched:  # (made before a test's own HOME is set)
        patched.setenv("HOME", str(path.parent))
        save_two(ScenarioStore(path))
    return path


@pytest.fixture
def filled(store: ScenarioStore, engine: str, request: pytest.FixtureRequest) -> ScenarioStore:
    if engine != "duckdb":
        return save_two(store)
    target = Path(os.environ["HEALTHSIM_DB"])
    assert not target.exists(), target  # (the test's own new home)
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(request.getfixturevalue("filled_file"), target)
    return store


# ==== Both engines: one suite ====================================================================
# Every test in this part takes ``filled`` (so ``store``) and runs on a DuckDB file and on a fresh
# PostgreSQL team store (ids ``[duckdb]`` and ``[postgresql]``). What only one engine does follows in
# the marked parts below (``duckdb_only``, ``postgresql_only``).

#: A query that runs far longer than its time limit, in each engine's SQL.
SLOW_SQL = {
    "duckdb": "SELECT count(*) FROM range(1000000000000) a",
    "postgresql": "SELECT pg_sleep(5)",
}


def table_counts(url: str) -> dict[str, int]:
    """Rows of every table of the store, and its sequences' positions (read outside the sandbox)."""
    counts: dict[str, int] = {}
    with psycopg.connect(url) as con:
        for (name,) in con.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'").fetchall():
            counts[name] = con.execute(f'SELECT count(*) FROM "{name}"').fetchall()[0][0]
        for (name,) in con.execute("SELECT sequencename FROM pg_sequences WHERE schemaname = 'public'").fetchall():
            counts[name] = con.execute(f'SELECT last_value FROM "{name}"').fetchall()[0][0]
    return counts


def other_sessions(url: str) -> list[tuple[str, str]]:
    """State and query of the other sessions on this test's database, once the ending ones are gone
    (the store's idle connections, kept for its next operation, are closed first: not the sandbox's)."""
    close_idle_connections()
    with psycopg.connect(url, autocommit=True) as con:
        rows: list[tuple[str, str]] = []
        for _ in range(40):
            rows = con.execute(
                "SELECT state, query FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
            ).fetchall()
            if not rows:
                break
            time.sleep(0.05)
        return rows


def stored_state(store: ScenarioStore, engine: str) -> object:
    """What a refused query must leave as it was: the DuckDB file's bytes, or every table's rows and sequence."""
    if engine == "duckdb":
        return hashlib.sha256(Path(store.path).read_bytes()).hexdigest()
    return table_counts(os.environ["HEALTHSIM_DB"])


def nothing_left_running(engine: str) -> bool:
    """On PostgreSQL, no session of the sandbox is left on the database (DuckDB has no server)."""
    return engine == "duckdb" or other_sessions(os.environ["HEALTHSIM_DB"]) == []


def test_views_answer_questions(filled: ScenarioStore) -> None:
    sql = "SELECT scenario, data->>'gender' AS gender, count(*) AS n FROM patients GROUP BY 1, 2 ORDER BY 1, 2"
    result = query_scenarios(sql)
    assert result["columns"] == ["scenario", "gender", "n"]
    assert result["rows"] == [["commercial", "female", 1], ["medicare", "female", 3], ["medicare", "male", 3]]
    assert result["total_rows"] == 3 and not result["truncated"]
    assert result["truncated_reason"] is None and result["cut_values"] == 0
    assert {"entities", "patients", "encounters", "diagnoses", "lab_results"} <= set(result["views"])
    assert filled.query(sql)["rows"] == result["rows"]  # the store's method answers alike
    nested = query_scenarios(
        "SELECT data->'address'->>'city' AS city FROM patients WHERE scenario = 'medicare' ORDER BY entity_id LIMIT 1"
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
        "VALUES (1, 'a')",
        "WITH x AS (SELECT 1 AS a) SELECT a FROM x",
        "(SELECT 1) UNION ALL (SELECT 2)",
        "SELECT 1;",
    ):
        assert query_scenarios(sql)["total_rows"] >= 1, sql


def test_row_cap_reports_the_exact_total(filled: ScenarioStore) -> None:
    result = query_scenarios("SELECT g FROM generate_series(0, 4999) AS t(g)", limit=10)
    assert result["row_count"] == 10 and result["total_rows"] == 5000 and result["truncated"]
    assert result["truncated_reason"] == "rows" and result["cut_values"] == 0
    assert [r[0] for r in result["rows"]] == list(range(10))
    exact = query_scenarios(
        "SELECT g FROM generate_series(1, 10) AS t(g)", limit=10
    )  # the cap reached, nothing left out
    assert exact["row_count"] == 10 and not exact["truncated"] and exact["truncated_reason"] is None
    # Several fetches before the cap, and the rest counted by the engine.
    many = query_scenarios("SELECT g, repeat('x', 200) AS pad FROM generate_series(1, 50000) AS t(g)", limit=3000)
    assert many["row_count"] == 3000 and many["total_rows"] == 50000
    assert [r[0] for r in many["rows"]] == list(range(1, 3001))
    empty = query_scenarios("SELECT 1 AS one WHERE false")
    assert empty["columns"] == ["one"] and empty["rows"] == [] and empty["total_rows"] == 0


def test_time_limit_stops_the_query_and_leaves_nothing_running(filled: ScenarioStore, engine: str) -> None:
    started = time.monotonic()
    with pytest.raises(QueryError, match=r"ran longer than 0\.5 s and was stopped"):
        query_scenarios(SLOW_SQL[engine], timeout=0.5)
    assert time.monotonic() - started < 3
    assert nothing_left_running(engine)  # the sandbox's connection is closed, its query gone
    assert query_scenarios("SELECT count(*) FROM patients")["rows"] == [[7]]  # the next query works


#: Statements both engines refuse with the same words (each engine's own escapes: ESCAPES, HOSTILE).
REFUSED_ON_BOTH = [
    ("update", "UPDATE scenarios SET name = 'x'", "not UPDATE"),
    ("delete", "DELETE FROM scenario_entities", "not DELETE"),
    ("drop", "DROP TABLE scenarios", "not DROP"),
    ("create", "CREATE TABLE t AS SELECT 1", "not CREATE"),
    ("empty", "   ", "one SELECT"),
]


@pytest.mark.parametrize("sql", [r[1] for r in REFUSED_ON_BOTH], ids=[r[0] for r in REFUSED_ON_BOTH])
def test_writes_are_refused_and_change_nothing(filled: ScenarioStore, engine: str, tmp_path: Path, sql: str) -> None:
    problem = {r[1]: r[2] for r in REFUSED_ON_BOTH}[sql]
    before = stored_state(filled, engine)
    listed = filled.list_scenarios()
    files_before = sorted(os.listdir(tmp_path))
    with pytest.raises(QueryError) as info:
        query_scenarios(sql)
    assert problem in str(info.value)
    assert PASSWORD not in str(info.value)
    assert sorted(os.listdir(tmp_path)) == files_before  # no file written
    assert stored_state(filled, engine) == before  # database untouched
    assert filled.list_scenarios() == listed
    assert nothing_left_running(engine)


# ==== DuckDB only: its SQL, its child-process sandbox, its files =================================


@pytest.mark.duckdb_only
def test_views_answer_duckdb_sql(filled: ScenarioStore) -> None:
    result = query_scenarios(
        "SELECT scenario, data->>'gender' AS gender, count(*) AS n FROM patients GROUP BY ALL ORDER BY ALL"
    )
    assert result["rows"] == [["commercial", "female", 1], ["medicare", "female", 3], ["medicare", "male", 3]]
    nested = query_scenarios(
        "SELECT json_extract_string(data, '$.address.city') FROM patients WHERE scenario = 'medicare' LIMIT 1"
    )
    assert nested["rows"] == [["Springfield"]]


@pytest.mark.duckdb_only
def test_select_forms_that_are_allowed_on_duckdb(filled: ScenarioStore) -> None:
    for sql in (
        "FROM scenarios",
        "SUMMARIZE scenarios",
        "DESCRIBE patients",
        "SELECT 1; ",
    ):
        assert query_scenarios(sql)["total_rows"] >= 1, sql


def rows_json_size(rows: list) -> int:
    return len(json.dumps(rows, ensure_ascii=False, separators=(",", ":")).encode("utf-8"))


@pytest.mark.duckdb_only
def test_small_result_is_whole_and_says_nothing_was_cut(filled: ScenarioStore) -> None:
    result = query_scenarios("SELECT 42 AS answer, 'forty-two' AS words, [1, 2] AS list")
    assert result["columns"] == ["answer", "words", "list"]
    assert result["rows"] == [[42, "forty-two", [1, 2]]]
    assert (result["row_count"], result["total_rows"], result["truncated"]) == (1, 1, False)
    assert result["truncated_reason"] is None and result["cut_values"] == 0
    assert result["result_bytes"] == rows_json_size(result["rows"])


@pytest.mark.duckdb_only
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


@pytest.mark.duckdb_only
def test_byte_cap_stops_adding_rows(filled: ScenarioStore) -> None:
    result = query_scenarios("SELECT i, 'row ' || i AS label FROM range(1000) t(i)", max_bytes=1000)
    assert rows_json_size(result["rows"]) <= 1000 < rows_json_size(result["rows"] + [[999, "row 999"]])
    assert result["rows"] == [[i, f"row {i}"] for i in range(result["row_count"])]
    assert result["truncated_reason"] == "bytes" and result["total_rows"] == 1000
    assert result["cut_values"] == 0


@pytest.mark.duckdb_only
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


@pytest.mark.duckdb_only
def test_byte_cap_in_process_too(filled: ScenarioStore, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(duckdb_sandbox, "SANDBOX_IN_CHILD_PROCESS", False)
    result = query_scenarios("SELECT repeat('é', 1000000) AS text FROM range(3)", max_bytes=5_000)
    assert result["truncated_reason"] == "bytes" and result["cut_values"] == result["row_count"] >= 1
    assert rows_json_size(result["rows"]) <= 5_000
    assert query_scenarios("SELECT 1 AS one")["rows"] == [[1]]


@pytest.mark.duckdb_only
def test_conversion_checks_the_deadline() -> None:
    batch = pa.RecordBatch.from_pydict({"n": list(range(10))})
    rows = sandbox_rules.Rows(1, limit=10, max_bytes=1000, deadline=time.monotonic() - 1)
    with pytest.raises(sandbox_rules.OutOfTime):
        rows.add(batch)


@pytest.mark.duckdb_only
def test_values_are_json_friendly_on_duckdb(filled: ScenarioStore) -> None:
    row = query_scenarios(
        "SELECT DATE '2024-01-02', TIMESTAMP '2024-01-02 03:04:05', 1.5::DECIMAL(4,2), gen_random_uuid() IS NOT NULL, "
        "[1, 2], {'a': 1}, 'nan'::DOUBLE, NULL, 1 AS dup, 2 AS dup"
    )["rows"][0]
    assert row[:8] == ["2024-01-02", "2024-01-02T03:04:05", "1.50", True, [1, 2], {"a": 1}, "nan", None]
    assert row[8:] == [1, 2]  # duplicate column names keep both values


@pytest.mark.slow
@pytest.mark.duckdb_only
def test_time_limit_stops_work_duckdb_does_not_interrupt(filled: ScenarioStore) -> None:
    # One jaro_similarity call over two 4-million-character strings runs for half a
    # minute and never looks at DuckDB's interrupt flag (about 300 MB, in the child).
    started = time.monotonic()
    with pytest.raises(QueryError, match="ran longer than 2 s and was stopped"):
        query_scenarios("SELECT jaro_similarity(repeat('ab', 2000000), repeat('ba', 2000000))", timeout=2)
    assert time.monotonic() - started < 5
    assert query_scenarios("SELECT 1")["rows"] == [[1]]  # the next query works


@pytest.mark.duckdb_only
@pytest.mark.skipif(not Path("/proc/self/statm").exists(), reason="the memory watch reads /proc")
def test_memory_cap_stops_work_duckdb_does_not_account(filled: ScenarioStore, monkeypatch: pytest.MonkeyPatch) -> None:
    # range() builds its list outside DuckDB's memory limit (issue 7: 3.6 GB, ~10 s with a
    # 2 s limit); with a 512 MiB cap the sandbox process is killed long before that.
    monkeypatch.setattr(duckdb_sandbox, "SANDBOX_MEMORY_LIMIT_MIB", 256)
    monkeypatch.setattr(duckdb_sandbox, "SANDBOX_PROCESS_HEADROOM_MIB", 256)
    started = time.monotonic()
    with pytest.raises(QueryError, match="ran out of the sandbox's memory .* add a LIMIT"):
        query_scenarios("SELECT list(range(60000000))", timeout=10)
    assert time.monotonic() - started < 5


@pytest.mark.duckdb_only
def test_duckdb_out_of_memory_is_explained(filled: ScenarioStore, monkeypatch: pytest.MonkeyPatch) -> None:
    # A 200 MB sort under a 128 MiB limit with no room to spill.
    monkeypatch.setattr(duckdb_sandbox, "SANDBOX_MEMORY_LIMIT_MIB", 128)
    monkeypatch.setattr(duckdb_sandbox, "SANDBOX_TEMP_LIMIT_MIB", 0)
    with pytest.raises(QueryError, match=r"ran out of the sandbox's memory \(128MiB\).*\[Out of Memory Error"):
        query_scenarios("SELECT count(*) FROM (SELECT i, repeat('x', 100) s FROM range(2000000) t(i) ORDER BY s, i)")


@pytest.mark.duckdb_only
def test_memory_limit_and_spill_folder_are_set(filled: ScenarioStore) -> None:
    result = query_scenarios(
        "SELECT current_setting('memory_limit'), current_setting('temp_directory'), "
        "current_setting('max_temp_directory_size')"
    )
    ((memory_limit, temp_directory, temp_limit),) = result["rows"]
    configured = duckdb.connect(config={"memory_limit": f"{duckdb_sandbox.sandbox_memory_limit()}MiB"})
    assert memory_limit == configured.execute("SELECT current_setting('memory_limit')").fetchone()[0]
    configured.close()
    assert duckdb_sandbox.sandbox_memory_limit() <= duckdb_sandbox.SANDBOX_MEMORY_LIMIT_MIB
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
    ("insert", "INSERT INTO scenario_tags VALUES (99, gen_random_uuid(), 'x')", "not INSERT"),
    ("second-statement", "SELECT 1; DROP TABLE scenarios", "exactly one statement"),
    (
        "explain-analyze-write",
        "EXPLAIN ANALYZE INSERT INTO scenario_tags VALUES (99, gen_random_uuid(), 'x')",
        "not EXPLAIN",
    ),
    ("checkpoint", "CHECKPOINT", "not CALL"),
    ("call", "CALL pragma_version()", "not CALL"),
    ("detach", "DETACH healthsim", "not DETACH"),
]


@pytest.mark.duckdb_only
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


@pytest.mark.duckdb_only
def test_sandbox_settings_are_locked(filled: ScenarioStore) -> None:
    result = query_scenarios("SELECT current_setting('enable_external_access'), current_setting('lock_configuration')")
    assert result["rows"] == [[False, True]]


@pytest.mark.duckdb_only
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


@pytest.mark.duckdb_only
def test_legacy_tables_keep_their_names(tmp_path: Path) -> None:
    db = tmp_path / "legacy.duckdb"
    legacy_db.build(str(db))
    result = query_scenarios("SELECT * FROM patients", db_path=db)  # the legacy table, not a view
    assert result["columns"] == ["id", "mrn", "given_name"]
    assert "patients" not in result["views"]
    assert query_scenarios("SELECT count(*) FROM entities WHERE entity_type = 'patients'", db_path=db)["rows"] == [[2]]


# ---------------------------------------------------------------- query_to_file


TRICKY_PATIENTS = [
    {
        "patient_id": "P1",
        "note": 'comma, and "quotes"',
        "address": {"line": ["1 Main St"], "city": "Springfield"},
        "score": 0.1,
        "big": 2**100,
    },
    {"patient_id": "P2", "note": "line one\nline two\r\nline three", "score": 1e300, "big": -(2**100)},
    {"patient_id": "P3", "note": "ünïcødé ✓ 日本 🙂", "address": {"city": 'São Paulo, "SP"'}, "big": 42},
    {"patient_id": "P4", "note": "", "score": 1 / 3},
    {"patient_id": "P5"},
]

# Text with commas, quotes, newlines and unicode; NULLs; JSON (address), a double, a
# HUGEINT past 64 bits, a struct and a list (from list()) on every row.
TRICKY_SQL = """WITH p AS (
  SELECT data->>'patient_id' AS id, data->>'note' AS note, data->'address' AS address,
         CAST(data->>'score' AS DOUBLE) AS score, CAST(data->>'big' AS HUGEINT) AS big,
         {'id': data->>'patient_id', 'note': data->>'note'} AS info
  FROM patients
)
SELECT p.*, (SELECT list(note ORDER BY id) FROM p) AS notes FROM p ORDER BY id"""
TRICKY_COLUMNS = ["id", "note", "address", "score", "big", "info", "notes"]


@pytest.fixture
def tricky(store: ScenarioStore) -> ScenarioStore:
    store.save_scenario("tricky", {"patients": TRICKY_PATIENTS})
    return store


def leftovers(folder: Path) -> list[str]:
    """Names in ``folder`` (none if it does not exist): targets and ``.partial`` files."""
    return sorted(os.listdir(folder)) if folder.exists() else []


def from_csv(text: str, like: object) -> object:
    """A CSV cell read back as the kind of value ``query`` returned for it."""
    if like is None:
        return None if text == "" else text
    if isinstance(like, float):
        return float(text)
    if isinstance(like, int) and not isinstance(like, bool):
        return int(text)  # integers of any size are numbers (a HUGEINT too)
    if isinstance(like, (list, dict)):
        return json.loads(text)  # lists and structs are JSON text in CSV
    return text


def read_csv_rows(path: Path) -> tuple[list[str], list[list[str]]]:
    with open(path, encoding="utf-8", newline="") as handle:
        header, *rows = list(csv.reader(handle))
    return header, rows


@pytest.mark.duckdb_only
def test_query_to_file_csv_equals_query(tricky: ScenarioStore, tmp_path: Path) -> None:
    expected = tricky.query(TRICKY_SQL, limit=100)
    assert expected["columns"] == TRICKY_COLUMNS and expected["row_count"] == 5
    target = tmp_path / "out" / "rows.csv"
    result = query_to_file(TRICKY_SQL, target, db_path=tricky.path)
    assert result["path"] == str(target) and result["format"] == "csv"
    assert result["columns"] == TRICKY_COLUMNS and result["rows_written"] == 5
    assert result["elapsed_seconds"] >= 0
    header, rows = read_csv_rows(target)
    assert header == TRICKY_COLUMNS
    assert [
        [from_csv(t, q) for t, q in zip(row, want, strict=True)]
        for row, want in zip(rows, expected["rows"], strict=True)
    ] == expected["rows"]
    assert rows[1][1] == "line one\nline two\r\nline three"  # newlines kept inside the quoted field
    assert rows[0][4] == str(2**100) and rows[1][4] == str(-(2**100))  # HUGEINT exact
    assert leftovers(target.parent) == ["rows.csv"]


@pytest.mark.duckdb_only
def test_query_to_file_csv_tells_null_from_empty_text(filled: ScenarioStore, tmp_path: Path) -> None:
    target = tmp_path / "nulls.csv"
    query_to_file("SELECT '' AS empty, NULL::VARCHAR AS missing, NULL::INTEGER AS n, 1 AS one", target)
    assert target.read_bytes() == b'"empty","missing","n","one"\n"",,,1\n'


@pytest.mark.duckdb_only
def test_query_to_file_ndjson_equals_query(tricky: ScenarioStore, tmp_path: Path) -> None:
    expected = tricky.query(TRICKY_SQL, limit=100)["rows"]
    for row in expected:  # query gives JSON as text and HUGEINT as digits; ndjson as values
        row[2] = None if row[2] is None else json.loads(row[2])
        row[4] = None if row[4] is None else int(row[4])
    target = tmp_path / "rows.ndjson"
    result = tricky.query_to_file(TRICKY_SQL, target)
    assert result["format"] == "ndjson" and result["rows_written"] == 5
    lines = target.read_text(encoding="utf-8").split("\n")
    assert lines[-1] == "" and len(lines) == 6  # one line per row, each ended by a newline
    objects = [json.loads(line) for line in lines[:-1]]
    assert all(list(obj) == TRICKY_COLUMNS for obj in objects)
    assert [list(obj.values()) for obj in objects] == expected
    assert objects[0]["big"] == 2**100 and objects[1]["big"] == -(2**100)


@pytest.mark.duckdb_only
def test_query_to_file_ndjson_writes_non_finite_numbers_as_text(filled: ScenarioStore, tmp_path: Path) -> None:
    # JSON has no NaN or infinity (DuckDB's to_json writes them bare): every line must parse
    # as strict JSON, with them as the text query() gives, at any depth, and text that
    # spells them unchanged.
    sql = (
        "SELECT 'nan'::DOUBLE AS a, '-inf'::DOUBLE AS b, [1.5, 'inf'::DOUBLE] AS c, "
        "{'k': 'nan'::FLOAT, 's': 'NaN, \"Infinity\", -Infinity'} AS d, 'NaN' AS \"NaN\", 2.5 AS e "
        "UNION ALL SELECT 1, 2, [3], {'k': 4, 's': 'x'}, 'y', 'nan'::DOUBLE ORDER BY b"
    )
    target = tmp_path / "rows.ndjson"
    assert query_to_file(sql, target)["rows_written"] == 2

    def strict(constant: str) -> None:
        raise AssertionError(f"{constant} is not JSON")

    rows = [json.loads(line, parse_constant=strict) for line in target.read_text(encoding="utf-8").splitlines()]
    assert rows == [
        {
            "a": "nan",
            "b": "-inf",
            "c": [1.5, "inf"],
            "d": {"k": "nan", "s": 'NaN, "Infinity", -Infinity'},
            "NaN": "NaN",
            "e": 2.5,
        },
        {"a": 1.0, "b": 2.0, "c": [3.0], "d": {"k": 4.0, "s": "x"}, "NaN": "y", "e": "nan"},
    ]
    assert [list(r.values()) for r in rows] == filled.query(sql)["rows"]


@pytest.mark.duckdb_only
def test_query_to_file_parquet_equals_query(tricky: ScenarioStore, tmp_path: Path) -> None:
    expected = tricky.query(TRICKY_SQL, limit=100)["rows"]
    target = tmp_path / "rows.parquet"
    result = tricky.query_to_file(TRICKY_SQL, target)
    assert result["format"] == "parquet" and result["rows_written"] == 5
    table = pq.read_table(target)
    assert table.column_names == TRICKY_COLUMNS
    assert table.schema.field("score").type == pa.float64()
    assert pa.types.is_struct(table.schema.field("info").type)
    assert pa.types.is_list(table.schema.field("notes").type)
    rows = [list(record.values()) for record in table.to_pylist()]
    for row in rows:
        row[4] = None if row[4] is None else int(row[4])  # a 38-digit decimal, exact
    assert rows == expected
    # DuckDB reads the file too, with the same values.
    with duckdb.connect() as con:
        again = con.execute(
            "SELECT id, note, score, CAST(big AS VARCHAR), notes FROM read_parquet(?) ORDER BY id", [str(target)]
        ).fetchall()
    assert again == [(r[0], r[1], r[3], None if r[4] is None else str(r[4]), r[6]) for r in expected]


@pytest.mark.slow  # (about a second or more of the quick run's edit loop; the whole suite runs it)
@pytest.mark.duckdb_only
@pytest.mark.parametrize("extension", [".csv", ".parquet", ".ndjson"])
def test_query_to_file_writes_every_row_past_the_query_cap(
    filled: ScenarioStore, tmp_path: Path, extension: str
) -> None:
    total = 250_000  # 2.5 times MAX_ROW_LIMIT, and several write batches
    assert total > query_module.MAX_ROW_LIMIT
    target = tmp_path / f"range{extension}"
    result = query_to_file("SELECT range AS i, 'row ' || range AS label FROM range(250000)", target)
    assert result["rows_written"] == total and result["columns"] == ["i", "label"]
    if extension == ".csv":
        header, rows = read_csv_rows(target)
        assert header == ["i", "label"]
        assert rows == [[str(i), f"row {i}"] for i in range(total)]
    elif extension == ".parquet":
        table = pq.read_table(target)
        assert table.num_rows == total and table.column("i").to_pylist() == list(range(total))
        assert table.column("label").to_pylist()[-1] == f"row {total - 1}"
    else:
        with open(target, encoding="utf-8") as handle:
            objects = [json.loads(line) for line in handle]
        assert objects == [{"i": i, "label": f"row {i}"} for i in range(total)]


@pytest.mark.duckdb_only
def test_query_to_file_empty_result(filled: ScenarioStore, tmp_path: Path) -> None:
    sql = "SELECT 1 AS a, 'x' AS b WHERE false"
    assert query_to_file(sql, tmp_path / "e.csv")["rows_written"] == 0
    assert (tmp_path / "e.csv").read_bytes() == b'"a","b"\n'  # the header still
    assert query_to_file(sql, tmp_path / "e.ndjson")["rows_written"] == 0
    assert (tmp_path / "e.ndjson").read_bytes() == b""
    assert query_to_file(sql, tmp_path / "e.parquet")["rows_written"] == 0
    table = pq.read_table(tmp_path / "e.parquet")
    assert table.num_rows == 0 and table.column_names == ["a", "b"]


@pytest.mark.duckdb_only
def test_query_to_file_format_from_extension_or_argument(
    filled: ScenarioStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sql = "SELECT 1 AS one"
    jsonl = query_to_file(sql, tmp_path / "rows.JSONL")
    assert jsonl["format"] == "ndjson" and (tmp_path / "rows.JSONL").read_text() == '{"one":1}\n'
    # An explicit format wins over the extension, whatever its case.
    forced = query_to_file(sql, tmp_path / "really.csv", format="Parquet")
    assert forced["format"] == "parquet" and (tmp_path / "really.csv").read_bytes()[:4] == b"PAR1"
    assert pq.read_table(tmp_path / "really.csv").to_pylist() == [{"one": 1}]
    text = query_to_file(sql, tmp_path / "rows.txt", format="ndjson")
    assert text["format"] == "ndjson" and (tmp_path / "rows.txt").read_text() == '{"one":1}\n'
    no_extension = query_to_file(sql, tmp_path / "rows", format="csv")
    assert no_extension["format"] == "csv" and (tmp_path / "rows").read_text() == '"one"\n1\n'
    # Relative paths and ~ are made absolute; missing folders are created.
    monkeypatch.chdir(tmp_path)
    relative = query_to_file(sql, Path("a") / "b" / "c.csv")
    assert relative["path"] == str(tmp_path / "a" / "b" / "c.csv") and (tmp_path / "a" / "b" / "c.csv").is_file()
    home = query_to_file(sql, "~/exports/deep/x.parquet")
    assert home["path"] == os.path.join(os.environ["HOME"], "exports", "deep", "x.parquet")
    assert pq.read_table(home["path"]).num_rows == 1


@pytest.mark.duckdb_only
def test_query_to_file_unknown_format_writes_nothing(filled: ScenarioStore, tmp_path: Path) -> None:
    folder = tmp_path / "new"
    with pytest.raises(InvalidInputError, match=r"rows\.xlsx"):
        query_to_file("SELECT 1", folder / "rows.xlsx")
    with pytest.raises(InvalidInputError, match="no_extension"):
        query_to_file("SELECT 1", folder / "no_extension")
    with pytest.raises(InvalidInputError, match="'xlsx'"):
        query_to_file("SELECT 1", folder / "rows.csv", format="xlsx")
    with pytest.raises(InvalidInputError, match="format"):
        query_to_file("SELECT 1", folder / "rows.csv", format=3)  # type: ignore[arg-type]
    assert not folder.exists()  # not even the folder
    with pytest.raises(InvalidInputError):
        filled.query_to_file("SELECT 1", folder / "rows.json")  # .json is not ndjson
    assert not folder.exists()


@pytest.mark.duckdb_only
def test_query_to_file_target_folder_or_bad_parent(filled: ScenarioStore, tmp_path: Path) -> None:
    folder = tmp_path / "already.csv"
    folder.mkdir()
    with pytest.raises(InvalidInputError, match="is a folder"):
        query_to_file("SELECT 1", folder)
    assert leftovers(folder) == []
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(InvalidInputError, match="cannot write"):
        query_to_file("SELECT 1", blocker / "rows.csv")
    assert blocker.read_text() == "not a folder"
    assert sorted(os.listdir(tmp_path)) == ["already.csv", "file", "home"]


SANDBOX_REFUSALS = [
    ("copy", "COPY (SELECT 1) TO '{out}/copied.csv'", "not COPY"),
    ("create", "CREATE TABLE t AS SELECT 1", "not CREATE"),
    ("two-statements", "SELECT 1; SELECT 2", "exactly one statement"),
    ("read_csv", "SELECT * FROM read_csv('{secret}')", "disabled"),
    ("read_text", "SELECT content FROM read_text('{secret}')", "disabled"),
    ("etc-passwd", "SELECT * FROM read_csv('/etc/passwd')", "disabled"),
]


@pytest.mark.duckdb_only
@pytest.mark.parametrize("sql", [r[1] for r in SANDBOX_REFUSALS], ids=[r[0] for r in SANDBOX_REFUSALS])
def test_query_to_file_stays_in_the_sandbox(filled: ScenarioStore, tmp_path: Path, sql: str) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("password")
    problem = {r[1]: r[2] for r in SANDBOX_REFUSALS}[sql]
    out = tmp_path / "out"
    db_hash = hashlib.sha256(filled.path.read_bytes()).hexdigest()
    with pytest.raises(QueryError) as info:
        query_to_file(sql.format(secret=secret, out=out), out / "rows.csv")
    assert problem in str(info.value) and "password" not in str(info.value)
    assert leftovers(out) == []  # no target, no .partial, no copied.csv
    assert hashlib.sha256(filled.path.read_bytes()).hexdigest() == db_hash
    assert "CREATE" not in sql or "t" not in query_scenarios("FROM duckdb_tables()")["columns"]


@pytest.mark.duckdb_only
def test_query_to_file_runs_with_the_sandbox_settings(filled: ScenarioStore, tmp_path: Path) -> None:
    target = tmp_path / "settings.ndjson"
    query_to_file(
        "SELECT current_setting('enable_external_access') AS external, current_setting('lock_configuration') AS locked",
        target,
    )
    assert json.loads(target.read_text()) == {"external": False, "locked": True}


FAILING = [
    ("overflow", "SELECT 9223372036854775807::BIGINT + i FROM range(2) t(i)", "Out of Range"),
    ("bad-column", "SELECT no_such_column FROM patients", "Binder Error"),
    ("bad-table", "SELECT * FROM no_such_table", "Catalog Error"),
    ("error", "SELECT error('boom') FROM patients", "boom"),
    # Fails after more than a million rows were streamed (an error inside Arrow's stream).
    ("late", "SELECT CASE WHEN i < 1500000 THEN i ELSE error('late') END AS i FROM range(2000000) t(i)", "late"),
]


@pytest.mark.duckdb_only
@pytest.mark.parametrize("sql", [f[1] for f in FAILING], ids=[f[0] for f in FAILING])
def test_query_to_file_failure_leaves_the_target_alone(filled: ScenarioStore, tmp_path: Path, sql: str) -> None:
    problem = {f[1]: f[2] for f in FAILING}[sql]
    target = tmp_path / "out" / "rows.csv"
    target.parent.mkdir()
    target.write_text("old content")
    with pytest.raises(QueryError, match=f"the query failed: .*{problem}"):
        query_to_file(sql, target)
    assert target.read_text() == "old content"
    assert leftovers(target.parent) == ["rows.csv"]  # no .partial beside it
    fresh = tmp_path / "fresh" / "rows.parquet"
    with pytest.raises(QueryError, match=problem):
        query_to_file(sql, fresh)
    assert leftovers(fresh.parent) == []


@pytest.mark.duckdb_only
def test_a_pivot_that_would_create_a_type_is_refused_saying_how_to_write_it(filled: ScenarioStore) -> None:
    # DuckDB runs a PIVOT without its values as several statements (one creates a type).
    with pytest.raises(QueryError, match=r"list the values: PIVOT … ON col IN \('a', 'b'\)"):
        filled.query("PIVOT scenarios ON name")
    rows = filled.query("PIVOT (SELECT name FROM scenarios) ON name IN ('nobody') USING count(*)")["rows"]
    assert rows == [[0]]


@pytest.mark.duckdb_only
def test_query_to_file_to_paths_no_file_can_have_or_a_pipe_is_refused(filled: ScenarioStore, tmp_path: Path) -> None:
    pipe = tmp_path / "rows.csv"
    os.mkfifo(pipe)
    for path, says in (
        (str(tmp_path / "a\x00b.csv"), "holds a NUL character"),
        (f"~{no_such_user()}/rows.csv", f"there is no user '{NO_SUCH_USER}'"),
        (str(tmp_path / ("x" * 300 + ".csv")), "too long"),
        (str(pipe), "not a regular file (a pipe, device or socket)"),
    ):
        with pytest.raises(InvalidInputError, match=re.escape(says)):
            query_to_file("SELECT 1 AS one", path)
    assert stat.S_ISFIFO(os.stat(pipe).st_mode)  # still the pipe
    assert sorted(p.name for p in tmp_path.iterdir() if p.name != "home") == ["rows.csv"]


@pytest.mark.duckdb_only
@pytest.mark.parametrize("onto", ["database", "wal", "other"])
def test_query_to_file_onto_a_database_is_refused_and_keeps_it(
    filled: ScenarioStore, tmp_path: Path, onto: str
) -> None:
    database = Path(filled.path)
    other = tmp_path / "other.duckdb"
    ScenarioStore(other).save_scenario("kept", {"patients": [{"patient_id": "K"}]})
    target = {"database": database, "wal": Path(f"{database}.wal"), "other": other}[onto]
    before = target.read_bytes() if target.exists() else None
    with pytest.raises(InvalidInputError, match="choose another file; nothing was written"):
        query_to_file("SELECT 1 AS one", target, format="csv")
    assert (target.read_bytes() if target.exists() else None) == before
    assert filled.list_scenarios()["total_count"] > 0
    assert ScenarioStore(other).load_scenario("kept")["entities"]["patients"] == [{"patient_id": "K"}]


@pytest.mark.duckdb_only
def test_query_to_file_missing_database_writes_nothing(isolated_home: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    with pytest.raises(QueryError, match="no database"):
        query_to_file("SELECT 1", out / "rows.csv")
    assert leftovers(out) == []


@pytest.mark.duckdb_only
def test_query_to_file_bad_arguments(filled: ScenarioStore, tmp_path: Path) -> None:
    for timeout in (0, -1, True, "5"):
        with pytest.raises(QueryError, match="timeout"):
            query_to_file("SELECT 1", tmp_path / "x.csv", timeout=timeout)  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="output_path"):
        query_to_file("SELECT 1", 42)  # type: ignore[arg-type]
    with pytest.raises(QueryError, match="one SELECT"):
        query_to_file("  ", tmp_path / "x.csv")
    assert leftovers(tmp_path) == ["home"]


@pytest.mark.slow  # waits for the sandbox's deadline
@pytest.mark.duckdb_only
def test_query_to_file_time_limit_while_querying(filled: ScenarioStore, tmp_path: Path) -> None:
    target = tmp_path / "slow.csv"
    started = time.monotonic()
    with pytest.raises(QueryError, match="ran longer than 0.3 s"):
        query_to_file("SELECT count(*) FROM range(1000000000000) a", target, timeout=0.3)
    assert time.monotonic() - started < 3
    assert leftovers(tmp_path) == ["home"]


@pytest.mark.slow  # waits for the sandbox's deadline
@pytest.mark.duckdb_only
def test_query_to_file_time_limit_while_writing(filled: ScenarioStore, tmp_path: Path) -> None:
    # Rows come at once and keep coming: the deadline is checked between written batches,
    # and the partial file (already megabytes) is removed.
    target = tmp_path / "endless.ndjson"
    target.write_text("old content")
    started = time.monotonic()
    with pytest.raises(QueryError, match="ran longer than 0.5 s"):
        query_to_file("SELECT i, repeat('x', 50) AS pad FROM range(10000000000) t(i)", target, timeout=0.5)
    assert time.monotonic() - started < 3
    assert target.read_text() == "old content"
    assert leftovers(tmp_path) == ["endless.ndjson", "home"]


@pytest.mark.duckdb_only
@pytest.mark.parametrize("extension", [".csv", ".parquet", ".ndjson"])
def test_query_to_file_takes_any_select_text(filled: ScenarioStore, tmp_path: Path, extension: str) -> None:
    # A trailing semicolon and comment (query accepts both), duplicate column names and a
    # column named "t": the rows must not depend on SQL text wrapped around the query.
    # Duplicate names get _1, _2… in every output (issue 21, point 17).
    sql = "SELECT 1 AS t, [2, 3] AS a, 'x' AS a -- the last column\n;"
    assert filled.query(sql)["rows"] == [[1, [2, 3], "x"]]
    assert filled.query(sql)["columns"] == ["t", "a", "a_1"]
    target = tmp_path / f"rows{extension}"
    result = query_to_file(sql, target)
    assert result["columns"] == ["t", "a", "a_1"] and result["rows_written"] == 1
    if extension == ".csv":
        assert read_csv_rows(target) == (["t", "a", "a_1"], [["1", "[2,3]", "x"]])
    elif extension == ".parquet":
        table = pq.read_table(target)  # read_table refused duplicate names
        assert table.column_names == ["t", "a", "a_1"]
        assert [column.to_pylist() for column in table.columns] == [[1], [[2, 3]], ["x"]]
    else:
        (line,) = target.read_text().splitlines()
        assert json.loads(line) == {"t": 1, "a": [2, 3], "a_1": "x"}  # an object, not the column t


@pytest.mark.duckdb_only
def test_query_to_file_describe_and_summarize(filled: ScenarioStore, tmp_path: Path) -> None:
    described = query_to_file("DESCRIBE patients", tmp_path / "describe.ndjson")
    names = [json.loads(line)["column_name"] for line in (tmp_path / "describe.ndjson").read_text().splitlines()]
    assert (
        names
        == ["scenario", "scenario_id", "entity_id", "data"]
        == [row[0] for row in filled.query("DESCRIBE patients")["rows"]]
    )
    assert described["rows_written"] == 4
    assert query_to_file("SUMMARIZE scenarios", tmp_path / "summary.csv")["rows_written"] >= 1


# Types Arrow cannot write to CSV or Parquet, or writes wrong, and what each file holds.
ODD_TYPES_SQL = (
    "SELECT INTERVAL 1 DAY AS span, '101'::BIT AS bits, 340282366920938463463374607431768211455::UHUGEINT AS uhuge, "
    "170141183460469231731687303715884105727::HUGEINT AS huge_max, "
    "123456789012345678901234567890123456789012345678901234567890::BIGNUM AS bignum, "
    "TIMETZ '01:02:03+05:30' AS timetz, '\\xFF\\x00ab'::BLOB AS blob, union_value(num := 2) AS choice, "
    "[INTERVAL 2 HOURS] AS spans, {'x': 2::UHUGEINT} AS wrapped, MAP {'k': [1, 2]} AS mapping"
)


@pytest.mark.duckdb_only
def test_query_to_file_odd_types_csv_and_ndjson(filled: ScenarioStore, tmp_path: Path) -> None:
    uhuge, huge, bignum = 2**128 - 1, 2**127 - 1, 123456789012345678901234567890123456789012345678901234567890
    query_to_file(ODD_TYPES_SQL, tmp_path / "odd.csv")
    header, rows = read_csv_rows(tmp_path / "odd.csv")
    assert dict(zip(header, rows[0], strict=True)) == {
        "span": "P1D",  # ISO 8601, as on PostgreSQL
        "bits": "101",
        "uhuge": str(uhuge),  # not wrapped around to -1
        "huge_max": str(huge),
        "bignum": str(bignum),
        "timetz": "01:02:03+05:30",  # the offset kept
        "blob": "ff006162",  # hex, as query() gives it
        "choice": '{"num":2}',
        "spans": '["PT2H"]',
        "wrapped": '{"x":2}',
        "mapping": '{"k":[1,2]}',
    }
    query_to_file(ODD_TYPES_SQL, tmp_path / "odd.ndjson")
    assert json.loads((tmp_path / "odd.ndjson").read_text()) == {
        "span": "P1D",
        "bits": "101",
        "uhuge": uhuge,
        "huge_max": huge,
        "bignum": bignum,
        "timetz": "01:02:03+05:30",
        "blob": "ff006162",
        "choice": {"num": 2},
        "spans": ["PT2H"],
        "wrapped": {"x": 2},
        "mapping": {"k": [1, 2]},
    }


@pytest.mark.duckdb_only
def test_query_to_file_odd_types_parquet(filled: ScenarioStore, tmp_path: Path) -> None:
    target = tmp_path / "odd.parquet"
    # HUGEINT's extremes do not fit Parquet's 38-digit decimal: refused, not a file DuckDB
    # cannot read back.
    with pytest.raises(QueryError, match="DECIMAL"):
        query_to_file(ODD_TYPES_SQL, target)
    assert leftovers(tmp_path) == ["home"]
    query_to_file(ODD_TYPES_SQL.replace("170141183460469231731687303715884105727", str(10**38 - 1)), target)
    (row,) = pq.read_table(target).to_pylist()
    assert row == {
        "span": "P1D",
        "bits": "101",
        "uhuge": str(2**128 - 1),
        "huge_max": 10**38 - 1,  # a Decimal equal to it
        "bignum": "123456789012345678901234567890123456789012345678901234567890",
        "timetz": "01:02:03+05:30",
        "blob": b"\xff\x00ab",  # Parquet has bytes
        "choice": '{"num":2}',
        "spans": '["PT2H"]',
        "wrapped": '{"x":2}',
        "mapping": [("k", [1, 2])],
    }
    with duckdb.connect() as con:
        assert con.execute("SELECT huge_max::VARCHAR FROM read_parquet(?)", [str(target)]).fetchone() == (
            str(10**38 - 1),
        )


@pytest.mark.duckdb_only
def test_a_failure_after_the_first_rows_is_reported_as_the_query_failing(store: ScenarioStore) -> None:
    """DuckDB's error arrives through Arrow's stream once rows have flowed: it is still the
    query's error, not a crashed sandbox."""
    store.save_scenario("s", {"patients": [{"patient_id": "A"}]})
    late = "SELECT CASE WHEN range < 1400000 THEN range ELSE error('late') END AS v FROM range(2000000)"
    with pytest.raises(QueryError, match="the query failed: Invalid Input Error: late"):
        store.query(late, limit=10)


# --- the sandbox worker (issue 21, point 21) ------------------------------------------------


def _idle_pids() -> list[int]:
    return [worker.proc.pid for worker in duckdb_sandbox._idle_workers]


@pytest.mark.duckdb_only
def test_worker_serves_query_after_query(filled: ScenarioStore) -> None:
    duckdb_sandbox.stop_sandbox_workers()
    assert query_scenarios("SELECT 1 AS one")["rows"] == [[1]]
    (pid,) = _idle_pids()
    for n in range(5):
        assert query_scenarios(f"SELECT {n} AS n")["rows"] == [[n]]
    # One process, no start per query: how long a query takes is the benchmark's business
    # (benchmarks/run.py --only query; issue 21's target is 0.15 s).
    assert _idle_pids() == [pid]


@pytest.mark.duckdb_only
def test_worker_holds_no_lock_between_queries(filled: ScenarioStore, tmp_path: Path) -> None:
    # Another process writes between two queries at once: the worker opens the file for
    # each query only (DuckDB refuses a writer beside a read-only open in another process).
    query_scenarios("SELECT 1")
    assert _idle_pids()
    script = (
        "import os; from healthsim.state import ScenarioStore; "
        "ScenarioStore(os.environ['HEALTHSIM_DB']).save_scenario('written-beside', {'patients': [{'mrn': 'W1'}]})"
    )
    env = {**os.environ, "HEALTHSIM_DB": str(filled.path), "HEALTHSIM_LOCK_TIMEOUT": "0"}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    sql = "SELECT count(*) FROM scenarios WHERE name = 'written-beside'"
    assert query_scenarios(sql)["rows"] == [[1]]  # the worker sees the new data


@pytest.mark.slow
@pytest.mark.duckdb_only
def test_worker_killed_at_the_deadline_is_replaced(filled: ScenarioStore) -> None:
    query_scenarios("SELECT 1")
    (before,) = _idle_pids()
    with pytest.raises(QueryError, match="ran longer than 1 s and was stopped"):
        query_scenarios("SELECT jaro_similarity(repeat('ab', 2000000), repeat('ba', 2000000))", timeout=1)
    with pytest.raises(ProcessLookupError):
        os.kill(before, 0)  # the hard stop: the process is gone, not left computing
    assert query_scenarios("SELECT 2")["rows"] == [[2]]
    assert _idle_pids() != [before]


@pytest.mark.duckdb_only
def test_worker_follows_the_environment(filled: ScenarioStore, monkeypatch: pytest.MonkeyPatch) -> None:
    query_scenarios("SELECT 1")
    (before,) = _idle_pids()
    monkeypatch.setenv("HEALTHSIM_LOCK_TIMEOUT", "7")
    assert query_scenarios("SELECT 1")["rows"] == [[1]]
    (after,) = _idle_pids()
    assert after != before  # a worker started with other settings is not reused


@pytest.mark.duckdb_only
def test_worker_gets_no_credentials_and_is_kept_across_what_it_does_not_read(
    filled: ScenarioStore, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    query_scenarios("SELECT 1")
    (before,) = _idle_pids()
    monkeypatch.setenv("HOME", str(tmp_path / "another-home"))
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-for-the-sandbox")
    assert query_scenarios("SELECT 2")["rows"] == [[2]]
    assert _idle_pids() == [before]  # a variable the worker does not read starts no new one
    names = {entry.split(b"=", 1)[0] for entry in Path(f"/proc/{before}/environ").read_bytes().split(b"\0") if entry}
    assert {b"HEALTHSIM_DB", b"AWS_SECRET_ACCESS_KEY", b"HOME"}.isdisjoint(names)
    assert b"PYTHONPATH" in names and b"PATH" in names


@pytest.mark.duckdb_only
def test_a_worker_that_died_while_idle_is_replaced(filled: ScenarioStore) -> None:
    query_scenarios("SELECT 1")
    (before,) = _idle_pids()
    os.kill(before, signal.SIGKILL)
    time.sleep(0.1)
    assert query_scenarios("SELECT 3 AS n")["rows"] == [[3]]  # not "the sandbox stopped unexpectedly"
    assert _idle_pids() != [before]


# ==== PostgreSQL only: its SQL, the server's limits, and answers compared with DuckDB's ==========
# These tests build their own team store (``team``) and, to compare, the same scenarios in a DuckDB
# file (``duck``).

SCENARIOS: list[tuple[str, dict[str, list[dict[str, Any]]], list[str]]] = [
    ("medicare", diabetes_cohort(6), ["medicare"]),
    ("commercial", {"patients": [{"patient_id": "C1", "gender": "female", "birth_date": "1940-01-01"}]}, []),
]


def fill(store: ScenarioStore) -> ScenarioStore:
    for name, entities, tags in SCENARIOS:
        store.save_scenario(name, entities, tags=tags)
    return store


@pytest.fixture(scope="module")
def team(pg_server: PgServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A team store holding the two scenarios: its URL. One per module and worker: the tests
    that take it only read it (those that write make their own from ``pg_url``)."""
    url = pg_server.new_database()
    with pytest.MonkeyPatch.context() as patched:  # (made before a test's own HOME is set)
        patched.setenv("HOME", str(tmp_path_factory.mktemp("team-home")))
        patched.delenv("XDG_CACHE_HOME", raising=False)
        fill(ScenarioStore(url))
    yield url
    pg_server.drop_database(url.rsplit("/", 1)[1])


@pytest.fixture(scope="module")
def duck(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A DuckDB file holding the same two scenarios (one per module and worker, only read)."""
    path = tmp_path_factory.mktemp("duck") / "same.duckdb"
    with pytest.MonkeyPatch.context() as patched:
        patched.setenv("HOME", str(path.parent))
        fill(ScenarioStore(path))
    return path


def answer(result: dict[str, Any]) -> dict[str, Any]:
    """A query result without what may differ from run to run, or between the engines (their names)."""
    return {k: v for k, v in result.items() if k not in ("elapsed_seconds", "engine")}


# --- the same answers as DuckDB ---------------------------------------------------------------


@pytest.mark.postgresql_only
@pytest.mark.parametrize(
    "sql",
    [
        "SELECT count(*) AS n FROM patients",
        "SELECT data->>'gender' AS g, count(*) AS n FROM patients GROUP BY 1 ORDER BY 1",
        "SELECT scenario, data->>'gender' AS gender, count(*) AS n FROM patients GROUP BY 1, 2 ORDER BY 1, 2",
        "SELECT entity_type, count(*) AS n FROM entities GROUP BY 1 ORDER BY 1",
        "SELECT DISTINCT scenario FROM entities ORDER BY scenario",
        "SELECT data->'address'->>'city' AS city FROM patients WHERE scenario = 'medicare' ORDER BY entity_id LIMIT 1",
        "SELECT s.name FROM scenarios s JOIN scenario_tags t USING (scenario_id) WHERE t.tag = 'medicare'",
        "SELECT entity_id, data FROM encounters ORDER BY entity_id",
        "SELECT count(*) AS n FROM lab_results WHERE (data->>'value')::DOUBLE PRECISION > 7.4",
    ],
)
def test_same_answers_as_duckdb(team: str, duck: Path, sql: str) -> None:
    on_pg = query_scenarios(sql, db_path=team)
    on_duck = query_scenarios(sql, db_path=duck)
    assert answer(on_pg) == answer(on_duck)
    assert on_pg["total_rows"] >= 1
    assert on_pg["views"] == ["entities", "diagnoses", "encounters", "lab_results", "patients"]


@pytest.mark.postgresql_only
def test_entities_view_and_the_default_database(team: str, monkeypatch: pytest.MonkeyPatch) -> None:
    entity = query_scenarios(
        "SELECT scenario, scenario_id, entity_type, entity_id, data FROM entities LIMIT 1", db_path=team
    )
    assert entity["columns"] == ["scenario", "scenario_id", "entity_type", "entity_id", "data"]
    assert isinstance(entity["rows"][0][1], str) and isinstance(entity["rows"][0][4], str)  # uuid and json as text
    assert json.loads(entity["rows"][0][4])
    monkeypatch.setenv("HEALTHSIM_DB", team)  # the team store as the default database
    assert query_scenarios("SELECT count(*) FROM patients")["rows"] == [[7]]


@pytest.mark.postgresql_only
def test_select_forms_that_are_allowed_on_postgresql(team: str) -> None:
    for sql in (
        "TABLE scenarios",
        "SELECT 1; -- done",
        "-- a comment\nSELECT 1",
        "/* a /* nested */ comment */ select 1",
        "SELECT 'a;b', $$c;d$$, $t$e;f$t$, E'g\\';h', \"?column?\" FROM (SELECT 1) AS q(\"?column?\")",
        "SELECT count(*) FROM scenarios WHERE name LIKE '%a%'",
    ):
        assert query_scenarios(sql, db_path=team)["total_rows"] >= 1, sql


@pytest.mark.postgresql_only
def test_values_are_json_friendly_on_postgresql(team: str) -> None:
    result = query_scenarios(
        "SELECT 1::int2 AS small, 2::bigint AS big, 1.5::float8 AS f, 0.1::real AS r, 'NaN'::float8 AS nan, "
        "2.50::numeric(5,2) AS dec, true AS b, NULL::text AS nothing, DATE '2024-01-02' AS d, "
        "TIMESTAMP '2024-01-02 03:04:05' AS ts, 'x'::bytea AS blob, ARRAY[1, 2] AS ints, ARRAY['a', NULL] AS texts, "
        "ARRAY[[1, 2], [3, 4]] AS grid, '{\"k\": [1]}'::jsonb AS jb, '{\"k\":1}'::json AS j, "
        "'7f1f7d3c-1d63-4e86-9a0e-6a3c0f1b2c3d'::uuid AS id, interval '1 month 2 days' AS span, "
        "TIMESTAMPTZ '2024-01-02 03:04:05+02' AS tstz, '1.2.3.4'::inet AS ip, int4range(1, 3) AS r",
        db_path=team,
    )
    assert result["rows"] == [
        [
            1,
            2,
            1.5,
            0.1,
            "nan",
            "2.50",
            True,
            None,
            "2024-01-02",
            "2024-01-02T03:04:05",
            "78",
            [1, 2],
            ["a", None],
            "[[1,2],[3,4]]",
            '{"k": [1]}',
            '{"k":1}',
            "7f1f7d3c-1d63-4e86-9a0e-6a3c0f1b2c3d",
            "P1M2D",  # ISO 8601, as DuckDB's intervals
            "2024-01-02T01:04:05+00:00",
            "1.2.3.4",
            "[1, 3)",
        ]
    ]


# --- caps and time ----------------------------------------------------------------------------


@pytest.mark.postgresql_only
@pytest.mark.parametrize(
    ("pg_sql", "duck_sql", "max_bytes"),
    [
        (
            "SELECT repeat('x', 100000) AS big, 'a' AS small FROM generate_series(1, 50)",
            "SELECT repeat('x', 100000) AS big, 'a' AS small FROM range(50)",
            10_000,
        ),
        (
            "SELECT repeat('y', 50) || g AS s FROM generate_series(1, 1000) AS g",
            "SELECT repeat('y', 50) || (range + 1) AS s FROM range(1000)",
            1_000,
        ),
        (
            "SELECT decode(repeat('ab', 5000), 'hex') AS blob FROM generate_series(1, 3)",
            "SELECT unhex(repeat('ab', 5000)) AS blob FROM range(3)",
            2_000,
        ),
    ],
    ids=["long-values-cut", "rows-stop-at-the-cap", "blobs-cut"],
)
def test_byte_cap_as_on_duckdb(team: str, duck: Path, pg_sql: str, duck_sql: str, max_bytes: int) -> None:
    on_pg = query_scenarios(pg_sql, db_path=team, max_bytes=max_bytes)
    on_duck = query_scenarios(duck_sql, db_path=duck, max_bytes=max_bytes)
    assert answer(on_pg) == answer(on_duck)
    assert on_pg["truncated_reason"] == "bytes" or on_pg["cut_values"] > 0
    assert on_pg["result_bytes"] <= max_bytes
    assert len(json.dumps(on_pg["rows"], ensure_ascii=False, separators=(",", ":")).encode()) == on_pg["result_bytes"]


@pytest.mark.postgresql_only
def test_cut_values_are_marked(team: str) -> None:
    result = query_scenarios("SELECT repeat('x', 100000) AS big", db_path=team, max_bytes=10_000)
    value = result["rows"][0][0]
    assert result["cut_values"] == 1 and not result["truncated"]
    assert value.endswith("…[cut, 100,000 bytes in all]") and len(value) < 10_000


@pytest.mark.slow
@pytest.mark.postgresql_only
def test_a_query_cannot_lift_its_own_time_limit(team: str) -> None:
    started = time.monotonic()
    with pytest.raises(QueryError, match="ran longer than"):
        query_scenarios("SELECT set_config('statement_timeout', '0', true), pg_sleep(5)", timeout=0.5, db_path=team)
    # Lifted in an early row, for the fetches after it: each fetch gets what is left again.
    with pytest.raises(QueryError, match="ran longer than"):
        query_scenarios(
            "SELECT set_config('statement_timeout', '0', true), pg_sleep(0.002) FROM generate_series(1, 100000)",
            limit=100_000,
            timeout=1,
            db_path=team,
        )
    assert time.monotonic() - started < 6
    assert other_sessions(team) == []


@pytest.mark.slow
@pytest.mark.postgresql_only
def test_the_cancel_backstop_stops_what_the_server_would_not(team: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # 0 turns statement_timeout (and the other limits) off: only the client's cancel request is left.
    monkeypatch.setattr(sandbox, "_milliseconds", lambda seconds: 0)
    started = time.monotonic()
    with pytest.raises(QueryError, match=r"ran longer than 0\.5 s"):
        query_scenarios("SELECT pg_sleep(5)", timeout=0.5, db_path=team)
    assert time.monotonic() - started < 3
    assert other_sessions(team) == []


@pytest.mark.postgresql_only
def test_sandbox_settings(team: str) -> None:
    result = query_scenarios(
        "SELECT current_setting('transaction_read_only'), current_setting('statement_timeout'), "
        "current_setting('idle_in_transaction_session_timeout') <> '0', current_setting('lock_timeout') <> '0'",
        timeout=20,
        db_path=team,
    )
    read_only, statement_timeout, idle, lock = result["rows"][0]
    assert read_only == "on" and idle and lock
    assert statement_timeout.endswith("s") and statement_timeout != "0"


# --- hostile input ----------------------------------------------------------------------------

HOSTILE = [
    ("insert", "INSERT INTO scenario_tags (scenario_id, tag) SELECT scenario_id, 'x' FROM scenarios", "not INSERT"),
    ("truncate", "TRUNCATE scenario_entities", "not TRUNCATE"),
    ("commented-delete", "/* SELECT */ -- SELECT\n DELETE FROM scenarios", "not DELETE"),
    ("cte-delete", "WITH x AS (DELETE FROM scenarios RETURNING *) SELECT * FROM x", "data-modifying"),
    ("cte-insert", "WITH x AS (SELECT 1) INSERT INTO scenario_tags (tag) SELECT 'x' FROM x", "syntax error"),
    ("copy-program", "COPY scenarios TO PROGRAM 'touch {pwned}'", "not COPY"),
    ("read-file", "SELECT pg_read_file('/etc/passwd')", "permission denied"),
    ("lo-import", "SELECT lo_import('/etc/passwd')", "the query failed"),
    ("set-role", "SET ROLE postgres", "not SET"),
    ("dblink", "SELECT dblink('host=x', 'select 1')", "does not exist"),
    ("second-statement", "SELECT 1; DELETE FROM scenarios", "exactly one statement (found 2)"),
    ("hidden-second-statement", "SELECT $$;$$ /* ; */; DELETE FROM scenarios", "exactly one statement (found 2)"),
    ("commit", "COMMIT", "not COMMIT"),
    ("set-read-write", "SET TRANSACTION READ WRITE", "not SET"),
    ("set-config-read-write", "SELECT set_config('transaction_read_only', 'off', true)", "read-write mode"),
    ("for-update", "SELECT * FROM scenarios FOR UPDATE", "read-only transaction"),
    ("nextval", "SELECT nextval('healthsim_state_entity_ids')", "read-only transaction"),
    ("select-into", "SELECT * INTO stolen FROM scenarios", "INTO is not allowed"),
    ("explain-analyze", "EXPLAIN ANALYZE DELETE FROM scenarios", "not EXPLAIN"),
    ("do-block", "DO $$BEGIN DELETE FROM scenarios; END$$", "not DO"),
    ("call", "CALL nothing()", "not CALL"),
    ("parameter", "SELECT $1", "the query failed"),
    ("syntax", "SELECT FROM WHERE", "the query failed: syntax error"),
    ("missing-table", "SELECT * FROM no_such_table", 'relation "no_such_table" does not exist'),
    ("only-comment", "-- nothing here", "one SELECT statement"),
    ("nul", "SELECT 1\x00", "NUL"),
]


@pytest.mark.postgresql_only
@pytest.mark.parametrize("sql", [h[1] for h in HOSTILE], ids=[h[0] for h in HOSTILE])
def test_hostile_sql_is_refused_and_changes_nothing(team: str, tmp_path: Path, sql: str) -> None:
    problem = {h[1]: h[2] for h in HOSTILE}[sql]
    pwned = tmp_path / "pwned"
    before = table_counts(team)
    listed = ScenarioStore(team).list_scenarios()
    with pytest.raises(QueryError) as info:
        query_scenarios(sql.format(pwned=pwned), db_path=team)
    assert problem in str(info.value)
    assert PASSWORD not in str(info.value)
    assert not pwned.exists()
    assert table_counts(team) == before
    assert ScenarioStore(team).list_scenarios() == listed
    assert other_sessions(team) == []


@pytest.mark.postgresql_only
@pytest.mark.parametrize(
    ("sql", "problem"),
    [
        ("SELECT 1; DELETE FROM scenarios", "cannot insert multiple commands"),
        ("DELETE FROM scenarios", "syntax error"),
        ("SELECT 1) AS x; DELETE FROM scenarios; SELECT (1", "syntax error"),
        ("UPDATE scenarios SET name = 'x' RETURNING name", "syntax error"),
    ],
)
def test_the_server_refuses_what_the_check_would_miss(team: str, sql: str, problem: str) -> None:
    # Past check_statement: DECLARE takes one query only, over the extended protocol.
    before = table_counts(team)
    with pytest.raises(QueryError, match=f"the query failed: {problem}"):
        run_query(TeamDatabase.parse(team), sql, limit=10, max_bytes=10_000, timeout=5)
    assert table_counts(team) == before


@pytest.mark.postgresql_only
def test_a_session_setting_changes_nothing_later(team: str) -> None:
    before = table_counts(team)
    result = query_scenarios("SELECT set_config('default_transaction_read_only', 'off', false)", db_path=team)
    assert result["rows"] == [["off"]]  # allowed, and gone with the rollback and the connection
    with pytest.raises(QueryError, match="read-only transaction"):
        query_scenarios("SELECT nextval('healthsim_state_entity_ids')", db_path=team)
    again = query_scenarios("SELECT current_setting('transaction_read_only')", db_path=team)
    assert again["rows"] == [["on"]]
    assert table_counts(team) == before


@pytest.mark.postgresql_only
def test_nothing_is_left_behind(team: str) -> None:
    query_scenarios("SELECT count(*) FROM patients", db_path=team)
    with psycopg.connect(team) as con:
        leftover = con.execute(
            "SELECT count(*) FROM pg_class WHERE relname IN ('entities', 'patients', 'encounters')"
        ).fetchone()
    assert leftover == (0,)  # the temporary views went with the rolled-back transaction
    assert other_sessions(team) == []


@pytest.mark.postgresql_only
def test_a_type_named_like_a_relation_keeps_its_meaning(pg_url: str) -> None:
    store = ScenarioStore(pg_url)
    types = ["scenarios", "pg_class", "entities", "care_gaps"]
    store.save_scenario("odd", {name: [{"id": f"{name}-1"}] for name in types})
    result = query_scenarios("SELECT count(*) FROM scenarios", db_path=pg_url)
    assert result["rows"] == [[1]]  # the table, not a view of the entities of type "scenarios"
    assert result["views"] == ["entities", "care_gaps"]
    assert query_scenarios("SELECT count(*) FROM pg_class WHERE relname = 'scenarios'", db_path=pg_url)["rows"] == [[1]]
    typed = query_scenarios("SELECT entity_type FROM entities ORDER BY 1", db_path=pg_url)
    assert typed["rows"] == [[name] for name in sorted(types)]


@pytest.mark.postgresql_only
def test_no_scenario_yet(pg_url: str, tmp_path: Path) -> None:
    with pytest.raises(QueryError, match="there is no scenario in postgresql://healthsim@.* yet") as info:
        query_scenarios("SELECT 1", db_path=pg_url)
    assert PASSWORD not in str(info.value)
    with pytest.raises(QueryError, match="no scenario"):
        query_to_file("SELECT 1", tmp_path / "out.csv", db_path=pg_url)
    assert not (tmp_path / "out.csv").exists()
    with psycopg.connect(pg_url) as con:  # and the sandbox created nothing
        assert con.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'").fetchall() == [(0,)]


@pytest.mark.postgresql_only
def test_errors_never_show_the_password(team: str, tmp_path: Path) -> None:
    failing = [
        lambda: query_scenarios("SELECT pg_sleep(2)", timeout=0.2, db_path=team),
        lambda: query_scenarios("SELECT 1/0", db_path=team),
        lambda: query_scenarios("SELECT current_setting('no.such')", db_path=team),
        lambda: query_scenarios("SELECT 1", limit=0, db_path=team),
        lambda: query_to_file("SELECT 1/0", tmp_path / "x.csv", db_path=team),
        lambda: query_scenarios("SELECT 1", db_path=team.replace(f":{PASSWORD}@", ":wrong@")),
    ]
    for call in failing:
        with pytest.raises(Exception) as info:
            call()
        assert PASSWORD not in str(info.value) and PASSWORD not in repr(info.value)
    assert not (tmp_path / "x.csv").exists()


# --- check_statement --------------------------------------------------------------------------


@pytest.mark.postgresql_only
def test_split_statements() -> None:
    assert split_statements("SELECT 1; SELECT 2;") == ["SELECT 1", "SELECT 2"]
    assert split_statements("SELECT ';' -- ;\n; ") == ["SELECT ';'"]
    assert split_statements("SELECT E'\\';'; SELECT 2") == ["SELECT E'\\';'", "SELECT 2"]
    assert split_statements("SELECT 'it''s;'") == ["SELECT 'it''s;'"]
    assert split_statements('SELECT 1 AS "a;b"') == ['SELECT 1 AS "a;b"']
    assert split_statements("SELECT $x$ ; $y$ ; $x$, $$;$$") == ["SELECT $x$ ; $y$ ; $x$, $$;$$"]
    assert split_statements("SELECT a$b FROM t; SELECT $1") == ["SELECT a$b FROM t", "SELECT $1"]
    assert split_statements("/* ; /* ; */ ; */ SELECT 1") == ["SELECT 1"]
    assert split_statements("-- only\n/* comments */ ;") == []
    assert check_statement("  (( select 1 ))") == "  (( select 1 ))"
    with pytest.raises(QueryError, match="not SHOW"):
        check_statement("SHOW statement_timeout")
    with pytest.raises(QueryError, match="one SELECT statement"):
        check_statement(None)


# --- query_to_file ----------------------------------------------------------------------------

FILE_SQL = "SELECT scenario, entity_id, data, data->>'gender' AS g FROM patients ORDER BY entity_id"


@pytest.mark.postgresql_only
@pytest.mark.parametrize("extension", ["csv", "ndjson"])
def test_query_to_file_text_formats_as_on_duckdb(team: str, duck: Path, tmp_path: Path, extension: str) -> None:
    on_pg = query_to_file(FILE_SQL, tmp_path / f"pg.{extension}", db_path=team)
    on_duck = query_to_file(FILE_SQL, tmp_path / f"duck.{extension}", db_path=duck)
    assert on_pg["rows_written"] == on_duck["rows_written"] == 7
    assert on_pg["columns"] == on_duck["columns"] == ["scenario", "entity_id", "data", "g"]
    assert on_pg["format"] == extension and on_pg["path"] == str(tmp_path / f"pg.{extension}")
    assert (tmp_path / f"pg.{extension}").read_bytes() == (tmp_path / f"duck.{extension}").read_bytes()
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".partial")]


@pytest.mark.postgresql_only
def test_query_to_file_ndjson_non_finite_as_on_duckdb(team: str, duck: Path, tmp_path: Path) -> None:
    # JSON has no NaN or infinity: both engines write them as the text query() gives.
    sql = "SELECT 'NaN'::float8 AS a, '-Infinity'::float4 AS b, CAST('{1.5,Infinity}' AS float8[]) AS c, 'NaN'::numeric AS d"
    query_to_file(sql, tmp_path / "pg.ndjson", db_path=team)
    duck_sql = "SELECT 'NaN'::DOUBLE AS a, '-Infinity'::FLOAT AS b, [1.5, 'Infinity'::DOUBLE] AS c, 'NaN'::DOUBLE AS d"
    query_to_file(duck_sql, tmp_path / "duck.ndjson", db_path=duck)

    def strict(constant: str) -> None:
        raise AssertionError(f"{constant} is not JSON")

    for name in ("pg.ndjson", "duck.ndjson"):  # PostgreSQL's numeric NaN as "nan" too
        line = (tmp_path / name).read_text(encoding="utf-8")
        assert json.loads(line, parse_constant=strict) == {"a": "nan", "b": "-inf", "c": [1.5, "inf"], "d": "nan"}


@pytest.mark.postgresql_only
def test_query_to_file_parquet(team: str, duck: Path, tmp_path: Path) -> None:
    query_to_file(FILE_SQL, tmp_path / "pg.parquet", db_path=team)
    query_to_file(FILE_SQL, tmp_path / "duck.parquet", db_path=duck)
    assert pq.read_table(tmp_path / "pg.parquet").to_pylist() == pq.read_table(tmp_path / "duck.parquet").to_pylist()
    typed = tmp_path / "typed.parquet"
    query_to_file(
        "SELECT g AS n, g * 0.5 AS half, DATE '2024-01-01' + g AS day, ARRAY[g, g + 1] AS pair, 'x'::bytea AS blob "
        "FROM generate_series(1, 3) AS g",
        typed,
        db_path=team,
    )
    table = pq.read_table(typed)
    assert table.column("n").to_pylist() == [1, 2, 3]
    assert table.column("half").to_pylist() == ["0.5", "1.0", "1.5"]  # numeric: exact text
    assert str(table.column("day").to_pylist()[0]) == "2024-01-02"
    assert table.column("pair").to_pylist() == [[1, 2], [2, 3], [3, 4]]
    assert table.column("blob").to_pylist() == [b"x"] * 3


@pytest.mark.postgresql_only
def test_query_to_file_writes_every_row(team: str, tmp_path: Path) -> None:
    target = tmp_path / "all.csv"
    result = query_to_file(
        "SELECT g, repeat('z', 100) AS pad FROM generate_series(1, 100000) AS g", target, db_path=team
    )
    assert result["rows_written"] == 100_000
    with open(target, newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["g", "pad"] and len(rows) == 100_001 and rows[-1][0] == "100000"
    empty = tmp_path / "empty.parquet"
    assert query_to_file("SELECT 1 AS one WHERE false", empty, db_path=team)["rows_written"] == 0
    assert pq.read_table(empty).column_names == ["one"]


@pytest.mark.postgresql_only
def test_query_to_file_refused_or_failed_writes_nothing(team: str, tmp_path: Path) -> None:
    target = tmp_path / "out.csv"
    before = table_counts(team)
    for sql in ("DELETE FROM scenarios", "SELECT 1; DROP TABLE scenarios", "SELECT 1/0", "SELECT pg_sleep(3)"):
        with pytest.raises(QueryError):
            query_to_file(sql, target, timeout=0.5, db_path=team)
        assert not target.exists()
        assert not [p for p in tmp_path.iterdir() if p.name.endswith(".partial")]
    assert table_counts(team) == before
    with pytest.raises(QueryError, match="several dimensions"):
        query_to_file("SELECT ARRAY[[1, 2], [3, 4]] AS grid", tmp_path / "grid.parquet", db_path=team)
    assert not (tmp_path / "grid.parquet").exists()
    grid = tmp_path / "grid.csv"
    query_to_file("SELECT ARRAY[[1, 2], [3, 4]] AS grid", grid, db_path=team)
    assert grid.read_text().splitlines() == ['"grid"', '"[[1,2],[3,4]]"']


# --- memory and the engine's name (issue 21, point 19) ----------------------------------------


def _peak_rss_growth(run: Any) -> tuple[Any, int]:
    """``run()``'s result and how far this process's resident memory rose above where it started."""
    process = psutil.Process()
    start = process.memory_info().rss
    peak = [start]
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], process.memory_info().rss)
            time.sleep(0.005)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        result = run()
    finally:
        done.set()
        watcher.join()
    return result, peak[0] - start


@pytest.mark.postgresql_only
def test_large_values_are_cut_on_the_server(team: str) -> None:
    # 16 values of 20 MB: before, the client received every one whole (issue: 16 x 50 MB took
    # 2.85 GB); now the server sends each cut to the byte cap's share and its size.
    sql = "SELECT g, repeat('x', 20000000) AS big FROM generate_series(1, 16) AS g"
    result, growth = _peak_rss_growth(lambda: query_scenarios(sql, db_path=team))
    assert growth < 120 << 20, f"the client grew by {growth >> 20} MiB"
    assert result["total_rows"] == 16 and result["truncated_reason"] == "bytes"
    assert result["cut_values"] == result["row_count"] >= 1
    assert all(row[1].endswith("…[cut, 20,000,000 bytes in all]") for row in result["rows"])
    assert [row[0] for row in result["rows"]] == list(range(1, result["row_count"] + 1))
    assert result["result_bytes"] <= 1_000_000


@pytest.mark.postgresql_only
def test_cuts_on_the_server_match_duckdb(team: str, duck: Path) -> None:
    pg = query_scenarios(
        "SELECT repeat('é', 3000) AS t, decode(repeat('ab', 3000), 'hex') AS b, 'short' AS s, 1 AS n, 1 AS n",
        db_path=team,
        max_bytes=4_000,
    )
    on_duck = query_scenarios(
        "SELECT repeat('é', 3000) AS t, unhex(repeat('ab', 3000)) AS b, 'short' AS s, 1 AS n, 1 AS n",
        db_path=duck,
        max_bytes=4_000,
    )
    assert answer(pg) == answer(on_duck)
    assert pg["cut_values"] == 2
    big_array = query_scenarios("SELECT array_fill(7, ARRAY[100000]) AS a, 2 AS n", db_path=team, max_bytes=4_000)
    assert big_array["rows"] == [["[cut: a large_list<item: int32> value of 400,024 bytes]", 2]]
    assert big_array["cut_values"] == 1


@pytest.mark.postgresql_only
def test_the_answer_names_the_engine(team: str, duck: Path, tmp_path: Path) -> None:
    assert query_scenarios("SELECT 1 AS one", db_path=team)["engine"] == "postgresql"
    assert query_scenarios("SELECT 1 AS one", db_path=duck)["engine"] == "duckdb"
    assert query_to_file("SELECT 1 AS one", tmp_path / "pg.csv", db_path=team)["engine"] == "postgresql"
    assert query_to_file("SELECT 1 AS one", tmp_path / "d.csv", db_path=duck)["engine"] == "duckdb"


# --- statistics after bulk writes (issue 21, point 19) ----------------------------------------


def _planner_rows(url: str) -> float:
    """The rows the planner believes ``scenario_entities`` holds (-1: never analysed)."""
    with psycopg.connect(url) as con:
        row = con.execute("SELECT reltuples FROM pg_class WHERE oid = 'scenario_entities'::regclass").fetchone()
    assert row is not None
    return float(row[0])


def _patients(n: int) -> dict[str, list[dict[str, Any]]]:
    return {"patients": [{"mrn": f"M{i}", "gender": "female"} for i in range(n)]}


@pytest.mark.postgresql_only
def test_a_large_save_is_analysed_at_once(pg_url: str) -> None:
    # Autovacuum would analyse the new rows only after its next nap (a minute): until then a
    # join over them was planned blind (5.0-5.7 s instead of 0.10 s).
    store = ScenarioStore(pg_url)
    store.save_scenario("small", _patients(10))
    assert _planner_rows(pg_url) <= 0  # a small write is left to autovacuum
    store.save_scenario("large", _patients(5000))
    assert _planner_rows(pg_url) == 5010


@pytest.mark.postgresql_only
def test_a_push_is_analysed_at_once(pg_url: str, tmp_path: Path) -> None:
    local = ScenarioStore(tmp_path / "local.duckdb")
    local.save_scenario("cohort", _patients(3000))
    transfer_scenario("cohort", local, pg_url)
    assert _planner_rows(pg_url) == 3000
    assert query_scenarios("SELECT count(*) AS n FROM patients", db_path=pg_url)["rows"] == [[3000]]


# --- the README's query examples (issue 21, point 19) -----------------------------------------

README_QUERIES = [
    "SELECT data->>'gender' AS gender, count(*) AS n FROM patients WHERE scenario = 'diabetes-cohort' "
    "GROUP BY 1 ORDER BY 1",
    "SELECT data->>'loinc' AS loinc, count(*) AS n, round(avg(CAST(data->>'value' AS DOUBLE PRECISION))::numeric, 2) "
    "AS mean FROM lab_results WHERE scenario = 'diabetes-cohort' GROUP BY 1 ORDER BY 1",
    "SELECT p.data->>'mrn' AS mrn, count(l.entity_id) AS labs FROM patients p LEFT JOIN lab_results l "
    "ON l.scenario = p.scenario AND l.data->>'patient_id' = p.data->>'patient_id' "
    "WHERE p.scenario = 'diabetes-cohort' GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 3",
    "SELECT scenario, entity_type, count(*) AS n FROM entities GROUP BY 1, 2 ORDER BY 1, 2",
]


@pytest.mark.postgresql_only
@pytest.mark.parametrize("sql", README_QUERIES)
def test_readme_queries_answer_alike_on_both_engines(pg_url: str, tmp_path: Path, sql: str) -> None:
    # The README's example used GROUP BY ALL (DuckDB only) and counted every scenario.
    cohort = json.loads((Path(__file__).parents[1] / "examples" / "diabetes-cohort.json").read_text())
    duck = tmp_path / "readme.duckdb"
    answers = []
    for database in (pg_url, duck):
        ScenarioStore(database).save_scenario("diabetes-cohort", cohort)
        ScenarioStore(database).save_scenario("other", {"patients": [{"mrn": "X1", "gender": "female"}]})
        answers.append(query_scenarios(sql, db_path=database))
    assert answer(answers[0]) == answer(answers[1]) and answers[0]["rows"]


def test_a_type_named_like_a_system_relation_gets_no_view_on_either_engine(store: ScenarioStore) -> None:
    """An entity type ``pg_class`` had a view on DuckDB but not on PostgreSQL (whose
    catalog has the name), so ``SELECT count(*) FROM pg_class`` counted entities on one
    engine and catalog rows on the other. Names either engine's catalog keeps get no view
    on both; ``entities`` still holds them."""
    system = ["pg_class", "pg_tables", "duckdb_tables", "sqlite_master", "pragma_database_list"]
    store.save_scenario("sys-names", {name: [{"n": 1}] for name in [*system, "care_gaps"]})
    result = store.query("SELECT count(*) FROM entities WHERE scenario = 'sys-names'")
    assert result["rows"] == [[len(system) + 1]]
    assert "care_gaps" in result["views"] and not set(system) & set(result["views"]), result["views"]
