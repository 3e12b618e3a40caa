"""The read-only SQL sandbox: answers, limits, and every escape refused."""

from __future__ import annotations

import csv
import hashlib
import json
import os
import re
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import legacy_db
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from healthsim.state import InvalidInputError, QueryError, ScenarioStore, query_scenarios, query_to_file
from healthsim.state import query as query_module
from helpers.paths import NO_SUCH_USER, no_such_user
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


def test_query_to_file_csv_tells_null_from_empty_text(filled: ScenarioStore, tmp_path: Path) -> None:
    target = tmp_path / "nulls.csv"
    query_to_file("SELECT '' AS empty, NULL::VARCHAR AS missing, NULL::INTEGER AS n, 1 AS one", target)
    assert target.read_bytes() == b'"empty","missing","n","one"\n"",,,1\n'


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


def test_query_to_file_empty_result(filled: ScenarioStore, tmp_path: Path) -> None:
    sql = "SELECT 1 AS a, 'x' AS b WHERE false"
    assert query_to_file(sql, tmp_path / "e.csv")["rows_written"] == 0
    assert (tmp_path / "e.csv").read_bytes() == b'"a","b"\n'  # the header still
    assert query_to_file(sql, tmp_path / "e.ndjson")["rows_written"] == 0
    assert (tmp_path / "e.ndjson").read_bytes() == b""
    assert query_to_file(sql, tmp_path / "e.parquet")["rows_written"] == 0
    table = pq.read_table(tmp_path / "e.parquet")
    assert table.num_rows == 0 and table.column_names == ["a", "b"]


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


def test_a_pivot_that_would_create_a_type_is_refused_saying_how_to_write_it(filled: ScenarioStore) -> None:
    # DuckDB runs a PIVOT without its values as several statements (one creates a type).
    with pytest.raises(QueryError, match=r"list the values: PIVOT … ON col IN \('a', 'b'\)"):
        filled.query("PIVOT scenarios ON name")
    rows = filled.query("PIVOT (SELECT name FROM scenarios) ON name IN ('nobody') USING count(*)")["rows"]
    assert rows == [[0]]


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


def test_query_to_file_missing_database_writes_nothing(isolated_home: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    with pytest.raises(QueryError, match="no database"):
        query_to_file("SELECT 1", out / "rows.csv")
    assert leftovers(out) == []


def test_query_to_file_bad_arguments(filled: ScenarioStore, tmp_path: Path) -> None:
    for timeout in (0, -1, True, "5"):
        with pytest.raises(QueryError, match="timeout"):
            query_to_file("SELECT 1", tmp_path / "x.csv", timeout=timeout)  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="output_path"):
        query_to_file("SELECT 1", 42)  # type: ignore[arg-type]
    with pytest.raises(QueryError, match="one SELECT"):
        query_to_file("  ", tmp_path / "x.csv")
    assert leftovers(tmp_path) == ["home"]


def test_query_to_file_time_limit_while_querying(filled: ScenarioStore, tmp_path: Path) -> None:
    target = tmp_path / "slow.csv"
    started = time.monotonic()
    with pytest.raises(QueryError, match="ran longer than 0.3 s"):
        query_to_file("SELECT count(*) FROM range(1000000000000) a", target, timeout=0.3)
    assert time.monotonic() - started < 3
    assert leftovers(tmp_path) == ["home"]


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


def test_a_failure_after_the_first_rows_is_reported_as_the_query_failing(store: ScenarioStore) -> None:
    """DuckDB's error arrives through Arrow's stream once rows have flowed: it is still the
    query's error, not a crashed sandbox."""
    store.save_scenario("s", {"patients": [{"patient_id": "A"}]})
    late = "SELECT CASE WHEN range < 1400000 THEN range ELSE error('late') END AS v FROM range(2000000)"
    with pytest.raises(QueryError, match="the query failed: Invalid Input Error: late"):
        store.query(late, limit=10)


# --- the sandbox worker (issue 21, point 21) ------------------------------------------------


def _idle_pids() -> list[int]:
    return [worker.proc.pid for worker in query_module._idle_workers]


def test_worker_serves_query_after_query(filled: ScenarioStore) -> None:
    query_module.stop_sandbox_workers()
    assert query_scenarios("SELECT 1 AS one")["rows"] == [[1]]
    (pid,) = _idle_pids()
    for n in range(5):
        assert query_scenarios(f"SELECT {n} AS n")["rows"] == [[n]]
    # One process, no start per query: how long a query takes is the benchmark's business
    # (benchmarks/run.py --only query; issue 21's target is 0.15 s).
    assert _idle_pids() == [pid]


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


def test_worker_killed_at_the_deadline_is_replaced(filled: ScenarioStore) -> None:
    query_scenarios("SELECT 1")
    (before,) = _idle_pids()
    with pytest.raises(QueryError, match="ran longer than 1 s and was stopped"):
        query_scenarios("SELECT jaro_similarity(repeat('ab', 2000000), repeat('ba', 2000000))", timeout=1)
    with pytest.raises(ProcessLookupError):
        os.kill(before, 0)  # the hard stop: the process is gone, not left computing
    assert query_scenarios("SELECT 2")["rows"] == [[2]]
    assert _idle_pids() != [before]


def test_worker_follows_the_environment(filled: ScenarioStore, monkeypatch: pytest.MonkeyPatch) -> None:
    query_scenarios("SELECT 1")
    (before,) = _idle_pids()
    monkeypatch.setenv("HEALTHSIM_LOCK_TIMEOUT", "7")
    assert query_scenarios("SELECT 1")["rows"] == [[1]]
    (after,) = _idle_pids()
    assert after != before  # a worker started with other settings is not reused


def test_a_worker_that_died_while_idle_is_replaced(filled: ScenarioStore) -> None:
    query_scenarios("SELECT 1")
    (before,) = _idle_pids()
    os.kill(before, signal.SIGKILL)
    time.sleep(0.1)
    assert query_scenarios("SELECT 3 AS n")["rows"] == [[3]]  # not "the sandbox stopped unexpectedly"
    assert _idle_pids() != [before]
