"""The query sandbox on a PostgreSQL team store: DuckDB's answers, limits, and every escape refused."""

from __future__ import annotations

import csv
import json
import threading
import time
from pathlib import Path
from typing import Any

import psutil
import psycopg
import pyarrow.parquet as pq
import pytest

from healthsim.state import QueryError, ScenarioStore, query_scenarios, query_to_file, transfer_scenario
from healthsim.state.postgres import sandbox
from healthsim.state.postgres.sandbox import check_statement, run_query, split_statements
from healthsim.state.postgres.server import TeamDatabase
from helpers.pg_server import PASSWORD
from helpers.sample import diabetes_cohort

SCENARIOS: list[tuple[str, dict[str, list[dict[str, Any]]], list[str]]] = [
    ("medicare", diabetes_cohort(6), ["medicare"]),
    ("commercial", {"patients": [{"patient_id": "C1", "gender": "female", "birth_date": "1940-01-01"}]}, []),
]


def fill(store: ScenarioStore) -> ScenarioStore:
    for name, entities, tags in SCENARIOS:
        store.save_scenario(name, entities, tags=tags)
    return store


@pytest.fixture
def team(pg_url: str) -> str:
    """A team store holding the two scenarios: its URL."""
    fill(ScenarioStore(pg_url))
    return pg_url


@pytest.fixture
def duck(tmp_path: Path) -> Path:
    """A DuckDB file holding the same two scenarios."""
    path = tmp_path / "same.duckdb"
    fill(ScenarioStore(path))
    return path


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
    """State and query of the other sessions on this test's database, once the ending ones are gone."""
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


def answer(result: dict[str, Any]) -> dict[str, Any]:
    """A query result without what may differ from run to run, or between the engines (their names)."""
    return {k: v for k, v in result.items() if k not in ("elapsed_seconds", "engine")}


# --- the same answers as DuckDB ---------------------------------------------------------------


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


def test_views_and_store_method(team: str, monkeypatch: pytest.MonkeyPatch) -> None:
    store = ScenarioStore(team)
    result = store.query(
        "SELECT scenario, data->>'gender' AS gender, count(*) AS n FROM patients GROUP BY 1, 2 ORDER BY 1, 2"
    )
    assert result["columns"] == ["scenario", "gender", "n"]
    assert result["rows"] == [["commercial", "female", 1], ["medicare", "female", 3], ["medicare", "male", 3]]
    assert result["truncated"] is False and result["truncated_reason"] is None and result["cut_values"] == 0
    entity = query_scenarios(
        "SELECT scenario, scenario_id, entity_type, entity_id, data FROM entities LIMIT 1", db_path=team
    )
    assert entity["columns"] == ["scenario", "scenario_id", "entity_type", "entity_id", "data"]
    assert isinstance(entity["rows"][0][1], str) and isinstance(entity["rows"][0][4], str)  # uuid and json as text
    assert json.loads(entity["rows"][0][4])
    monkeypatch.setenv("HEALTHSIM_DB", team)  # the team store as the default database
    assert query_scenarios("SELECT count(*) FROM patients")["rows"] == [[7]]


def test_select_forms_that_are_allowed(team: str) -> None:
    for sql in (
        "TABLE scenarios",
        "VALUES (1, 'a')",
        "(SELECT 1) UNION ALL (SELECT 2)",
        "WITH x AS (SELECT 1 AS a) SELECT a FROM x",
        "SELECT 1;",
        "SELECT 1; -- done",
        "-- a comment\nSELECT 1",
        "/* a /* nested */ comment */ select 1",
        "SELECT 'a;b', $$c;d$$, $t$e;f$t$, E'g\\';h', \"?column?\" FROM (SELECT 1) AS q(\"?column?\")",
        "SELECT count(*) FROM scenarios WHERE name LIKE '%a%'",
    ):
        assert query_scenarios(sql, db_path=team)["total_rows"] >= 1, sql


def test_values_are_json_friendly(team: str) -> None:
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


def test_row_cap_reports_the_exact_total(team: str) -> None:
    result = query_scenarios("SELECT g FROM generate_series(0, 4999) AS g", limit=10, db_path=team)
    assert result["row_count"] == 10 and result["total_rows"] == 5000 and result["truncated"]
    assert result["truncated_reason"] == "rows" and result["cut_values"] == 0
    assert [r[0] for r in result["rows"]] == list(range(10))
    exact = query_scenarios("SELECT g FROM generate_series(1, 10) AS g", limit=10, db_path=team)
    assert exact["row_count"] == 10 and not exact["truncated"] and exact["truncated_reason"] is None
    # Several fetches before the cap, and the rest counted on the server.
    many = query_scenarios(
        "SELECT g, repeat('x', 200) AS pad FROM generate_series(1, 50000) AS g", limit=3000, db_path=team
    )
    assert many["row_count"] == 3000 and many["total_rows"] == 50000
    assert [r[0] for r in many["rows"]] == list(range(1, 3001))
    empty = query_scenarios("SELECT 1 AS one WHERE false", db_path=team)
    assert empty["columns"] == ["one"] and empty["rows"] == [] and empty["total_rows"] == 0


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


def test_cut_values_are_marked(team: str) -> None:
    result = query_scenarios("SELECT repeat('x', 100000) AS big", db_path=team, max_bytes=10_000)
    value = result["rows"][0][0]
    assert result["cut_values"] == 1 and not result["truncated"]
    assert value.endswith("…[cut, 100,000 bytes in all]") and len(value) < 10_000


def test_time_limit_stops_the_query_and_leaves_nothing_running(team: str) -> None:
    started = time.monotonic()
    with pytest.raises(QueryError, match=r"ran longer than 0\.5 s and was stopped"):
        query_scenarios("SELECT pg_sleep(5)", timeout=0.5, db_path=team)
    assert time.monotonic() - started < 3
    assert other_sessions(team) == []  # the sandbox's connection is closed, its query gone
    assert query_scenarios("SELECT count(*) FROM patients", db_path=team)["rows"] == [[7]]


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


def test_the_cancel_backstop_stops_what_the_server_would_not(team: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # 0 turns statement_timeout (and the other limits) off: only the client's cancel request is left.
    monkeypatch.setattr(sandbox, "_milliseconds", lambda seconds: 0)
    started = time.monotonic()
    with pytest.raises(QueryError, match=r"ran longer than 0\.5 s"):
        query_scenarios("SELECT pg_sleep(5)", timeout=0.5, db_path=team)
    assert time.monotonic() - started < 3
    assert other_sessions(team) == []


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
    ("update", "UPDATE scenarios SET name = 'x'", "not UPDATE"),
    ("delete", "DELETE FROM scenario_entities", "not DELETE"),
    ("drop", "DROP TABLE scenarios", "not DROP"),
    ("create", "CREATE TABLE t AS SELECT 1", "not CREATE"),
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
    ("empty", "   ", "one SELECT statement"),
    ("nul", "SELECT 1\x00", "NUL"),
]


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


def test_a_session_setting_changes_nothing_later(team: str) -> None:
    before = table_counts(team)
    result = query_scenarios("SELECT set_config('default_transaction_read_only', 'off', false)", db_path=team)
    assert result["rows"] == [["off"]]  # allowed, and gone with the rollback and the connection
    with pytest.raises(QueryError, match="read-only transaction"):
        query_scenarios("SELECT nextval('healthsim_state_entity_ids')", db_path=team)
    again = query_scenarios("SELECT current_setting('transaction_read_only')", db_path=team)
    assert again["rows"] == [["on"]]
    assert table_counts(team) == before


def test_nothing_is_left_behind(team: str) -> None:
    query_scenarios("SELECT count(*) FROM patients", db_path=team)
    with psycopg.connect(team) as con:
        leftover = con.execute(
            "SELECT count(*) FROM pg_class WHERE relname IN ('entities', 'patients', 'encounters')"
        ).fetchone()
    assert leftover == (0,)  # the temporary views went with the rolled-back transaction
    assert other_sessions(team) == []


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


def test_no_scenario_yet(pg_url: str, tmp_path: Path) -> None:
    with pytest.raises(QueryError, match="there is no scenario in postgresql://healthsim@.* yet") as info:
        query_scenarios("SELECT 1", db_path=pg_url)
    assert PASSWORD not in str(info.value)
    with pytest.raises(QueryError, match="no scenario"):
        query_to_file("SELECT 1", tmp_path / "out.csv", db_path=pg_url)
    assert not (tmp_path / "out.csv").exists()
    with psycopg.connect(pg_url) as con:  # and the sandbox created nothing
        assert con.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'").fetchall() == [(0,)]


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


@pytest.mark.parametrize("extension", ["csv", "ndjson"])
def test_query_to_file_text_formats_as_on_duckdb(team: str, duck: Path, tmp_path: Path, extension: str) -> None:
    on_pg = query_to_file(FILE_SQL, tmp_path / f"pg.{extension}", db_path=team)
    on_duck = query_to_file(FILE_SQL, tmp_path / f"duck.{extension}", db_path=duck)
    assert on_pg["rows_written"] == on_duck["rows_written"] == 7
    assert on_pg["columns"] == on_duck["columns"] == ["scenario", "entity_id", "data", "g"]
    assert on_pg["format"] == extension and on_pg["path"] == str(tmp_path / f"pg.{extension}")
    assert (tmp_path / f"pg.{extension}").read_bytes() == (tmp_path / f"duck.{extension}").read_bytes()
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".partial")]


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


def test_a_large_save_is_analysed_at_once(pg_url: str) -> None:
    # Autovacuum would analyse the new rows only after its next nap (a minute): until then a
    # join over them was planned blind (5.0-5.7 s instead of 0.10 s).
    store = ScenarioStore(pg_url)
    store.save_scenario("small", _patients(10))
    assert _planner_rows(pg_url) <= 0  # a small write is left to autovacuum
    store.save_scenario("large", _patients(5000))
    assert _planner_rows(pg_url) == 5010


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
