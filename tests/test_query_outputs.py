"""One rule for every query output, on both engines (issue 21, point 17).

The same query runs on DuckDB and on a PostgreSQL team store; its ``query_scenarios``
answer, NDJSON, CSV and Parquet files must agree with each other and across the engines:
unique column names, instants in UTC, intervals in ISO 8601, exact decimals, blobs as hex,
integers of any size as numbers, non-finite floats as ``"nan"``/``"inf"``/``"-inf"``.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from healthsim.state import ScenarioStore, query_scenarios, query_to_file
from healthsim.state.sandbox_rules import iso_interval, json_text, ndjson_lines, unique_names
from healthsim.state.sandbox_rules import json_value as _json_value
from helpers.examples import examples

# (column, PostgreSQL expression, DuckDB expression, what query() gives on both)
CASES: list[tuple[str, str, str, Any]] = [
    (
        "ts",
        "TIMESTAMP '2024-01-02 03:04:05.123456'",
        "TIMESTAMP '2024-01-02 03:04:05.123456'",
        "2024-01-02T03:04:05.123456",
    ),
    ("ts_whole", "TIMESTAMP '2024-01-02 03:04:05'", "TIMESTAMP '2024-01-02 03:04:05'", "2024-01-02T03:04:05"),
    (
        "tstz",
        "TIMESTAMPTZ '2024-01-02 03:04:05+02'",
        "TIMESTAMPTZ '2024-01-02 03:04:05+02'",
        "2024-01-02T01:04:05+00:00",
    ),
    ("d", "DATE '2024-02-29'", "DATE '2024-02-29'", "2024-02-29"),
    ("t", "TIME '03:04:05.5'", "TIME '03:04:05.5'", "03:04:05.500000"),
    ("blob", "'\\xab01'::bytea", "'\\xAB\\x01'::BLOB", "ab01"),
    ("dec", "1.50::numeric(5,2)", "1.50::DECIMAL(5,2)", "1.50"),
    ("dec_small", "0.0000000001::numeric(12,10)", "0.0000000001::DECIMAL(12,10)", "0.0000000001"),
    ("big", "9223372036854775807::int8", "9223372036854775807::BIGINT", 9223372036854775807),
    ("negative", "(-9223372036854775807 - 1)::int8", "(-9223372036854775807 - 1)::BIGINT", -9223372036854775808),
    ("nan", "'NaN'::float8", "'NaN'::DOUBLE", "nan"),
    ("inf", "'Infinity'::float8", "'Infinity'::DOUBLE", "inf"),
    ("minus_inf", "'-Infinity'::float8", "'-Infinity'::DOUBLE", "-inf"),
    ("real", "0.1::real", "0.1::REAL", 0.1),
    ("ints", "ARRAY[1, NULL, 3]", "[1, NULL, 3]", [1, None, 3]),
    ("texts", "ARRAY['a,b', 'c\"d']", "['a,b', 'c\"d']", ["a,b", 'c"d']),
    ("j", '\'{"a": [1, {"b": 2}]}\'::json', '\'{"a": [1, {"b": 2}]}\'::JSON', '{"a": [1, {"b": 2}]}'),
    ("span", "interval '1 month 2 days 03:04:05.5'", "INTERVAL '1 month 2 days 03:04:05.5'", "P1M2DT3H4M5.5S"),
    (
        "id",
        "'7f1f7d3c-1d63-4e86-9a0e-6a3c0f1b2c3d'::uuid",
        "'7f1f7d3c-1d63-4e86-9a0e-6a3c0f1b2c3d'::UUID",
        "7f1f7d3c-1d63-4e86-9a0e-6a3c0f1b2c3d",
    ),
    ("nothing", "NULL::timestamp", "NULL::TIMESTAMP", None),
    (
        "quoted",
        "'say \"hi\"' || chr(10) || chr(1) || '\\'",
        "'say \"hi\"' || chr(10) || chr(1) || '\\'",
        'say "hi"\n\x01\\',
    ),
    ("whole", "1.0::float8", "1.0::DOUBLE", 1.0),
    ("a", "1", "1", 1),
    ("a", "2", "2", 2),  # a duplicate name: a_2 (a_1 is taken by the next column)
    ("a_1", "'x'", "'x'", "x"),
]
COLUMNS = ["ts", "ts_whole", "tstz", "d", "t", "blob", "dec", "dec_small", "big", "negative", "nan", "inf"]
COLUMNS += ["minus_inf", "real", "ints", "texts", "j", "span", "id", "nothing", "quoted", "whole", "a", "a_2", "a_1"]
JSON_COLUMNS = {"j"}
PG_SQL = "SELECT " + ", ".join(f'{pg} AS "{name}"' for name, pg, _, _ in CASES)
DUCK_SQL = "SELECT " + ", ".join(f'{duck} AS "{name}"' for name, _, duck, _ in CASES)


@pytest.fixture(scope="module")
def engines(pg_server: Any, tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[str, Any]]:
    """A team store and a DuckDB file with one scenario each: {engine: (sql, database)}."""
    url = pg_server.new_database()
    ScenarioStore(url).save_scenario("one", {"patients": [{"mrn": "M1"}]})
    path = tmp_path_factory.mktemp("outputs") / "outputs.duckdb"
    ScenarioStore(path).save_scenario("one", {"patients": [{"mrn": "M1"}]})
    return {"postgresql": (PG_SQL, url), "duckdb": (DUCK_SQL, path)}


def outputs(engine: tuple[str, Any], folder: Path) -> dict[str, Any]:
    """Every output of the engine's query: the answer, and each file read back."""
    sql, database = engine
    answer = query_scenarios(sql, db_path=database)
    for ext in ("ndjson", "csv", "parquet"):
        query_to_file(sql, folder / f"rows.{ext}", db_path=database)
    with open(folder / "rows.csv", encoding="utf-8", newline="") as handle:
        csv_rows = list(csv.reader(handle))
    return {
        "answer": answer,
        "ndjson": [json.loads(line) for line in (folder / "rows.ndjson").read_text(encoding="utf-8").splitlines()],
        "csv": csv_rows,
        "csv_bytes": (folder / "rows.csv").read_bytes(),
        "parquet": pq.read_table(folder / "rows.parquet"),  # refused duplicate names before
    }


@pytest.fixture(scope="module")
def both(engines: dict[str, tuple[str, Any]], tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    return {name: outputs(engine, tmp_path_factory.mktemp(name)) for name, engine in engines.items()}


@pytest.mark.parametrize("engine", ["duckdb", "postgresql"])
def test_the_answer_follows_the_rule(both: dict[str, dict[str, Any]], engine: str) -> None:
    answer = both[engine]["answer"]
    assert answer["columns"] == COLUMNS
    assert answer["rows"] == [[expected for _, _, _, expected in CASES]]
    assert answer["engine"] == engine


@pytest.mark.parametrize("engine", ["duckdb", "postgresql"])
def test_ndjson_is_the_answer_as_objects(both: dict[str, dict[str, Any]], engine: str) -> None:
    answer = both[engine]["answer"]
    (line,) = both[engine]["ndjson"]
    assert list(line) == answer["columns"]  # unique keys, in order: nothing merged
    expected = dict(zip(answer["columns"], answer["rows"][0], strict=True))
    for name in JSON_COLUMNS:  # JSON text is embedded as JSON
        expected[name] = json.loads(expected[name])
    assert line == expected
    assert isinstance(line["whole"], float) and isinstance(line["real"], float)  # 1.0 stays a float


@pytest.mark.parametrize("engine", ["duckdb", "postgresql"])
def test_csv_cells_are_the_answers_text(both: dict[str, dict[str, Any]], engine: str) -> None:
    answer = both[engine]["answer"]
    header, row = both[engine]["csv"]
    assert header == answer["columns"]
    texts = ["" if v is None else v if isinstance(v, str) else json_text(v) for v in answer["rows"][0]]
    # Numbers are typed cells: the CSV writer writes the float 1.0 as 1 (the same number).
    floats = [i for i, v in enumerate(answer["rows"][0]) if isinstance(v, float)]
    assert [float(row[i]) for i in floats] == [float(texts[i]) for i in floats]
    assert [c for i, c in enumerate(row) if i not in floats] == [c for i, c in enumerate(texts) if i not in floats]


@pytest.mark.parametrize("engine", ["duckdb", "postgresql"])
def test_parquet_keeps_types_and_the_answers_values(both: dict[str, dict[str, Any]], engine: str) -> None:
    table = both[engine]["parquet"]
    assert table.column_names == COLUMNS
    (row,) = table.to_pylist()
    assert row["ts"] == dt.datetime(2024, 1, 2, 3, 4, 5, 123456)
    assert row["tstz"] == dt.datetime(2024, 1, 2, 1, 4, 5, tzinfo=dt.UTC)
    assert str(table.schema.field("tstz").type) == "timestamp[us, tz=UTC]"
    assert row["d"] == dt.date(2024, 2, 29) and row["t"] == dt.time(3, 4, 5, 500000)
    assert row["blob"] == b"\xab\x01"
    assert row["dec"] == Decimal("1.50") and str(table.schema.field("dec").type) == "decimal128(5, 2)"
    assert row["big"] == 9223372036854775807 and row["negative"] == -9223372036854775808
    assert str(row["nan"]) == "nan" and row["inf"] == float("inf") and row["minus_inf"] == float("-inf")
    assert str(table.schema.field("real").type) == "float"
    assert row["ints"] == [1, None, 3] and row["texts"] == ["a,b", 'c"d']
    assert json.loads(row["j"]) == {"a": [1, {"b": 2}]}
    assert row["span"] == "P1M2DT3H4M5.5S" and row["id"] == "7f1f7d3c-1d63-4e86-9a0e-6a3c0f1b2c3d"
    assert row["nothing"] is None and (row["a"], row["a_2"], row["a_1"]) == (1, 2, "x")


def test_the_engines_agree(both: dict[str, dict[str, Any]]) -> None:
    duck, pg = both["duckdb"], both["postgresql"]
    assert duck["answer"]["rows"] == pg["answer"]["rows"]
    assert duck["ndjson"] == pg["ndjson"]
    assert duck["csv_bytes"] == pg["csv_bytes"]
    assert duck["parquet"].to_pylist()[0].keys() == pg["parquet"].to_pylist()[0].keys()
    nan = "nan"
    same = {k: v for k, v in duck["parquet"].to_pylist()[0].items() if k != nan}
    assert same == {k: v for k, v in pg["parquet"].to_pylist()[0].items() if k != nan}


def test_duckdb_types_postgresql_lacks(engines: dict[str, tuple[str, Any]], tmp_path: Path) -> None:
    _, path = engines["duckdb"]
    sql = (
        "SELECT 170141183460469231731687303715884105727::HUGEINT AS huge, {'k': 1.5::DECIMAL(3,1)} AS s, "
        "MAP {'x': 1} AS m, [{'when': TIMESTAMPTZ '2024-01-02 03:04:05+02'}] AS nested"
    )
    expected = [2**127 - 1, {"k": "1.5"}, {"x": 1}, [{"when": "2024-01-02T01:04:05+00:00"}]]
    answer = query_scenarios(sql, db_path=path)
    assert answer["rows"] == [expected]
    query_to_file(sql, tmp_path / "rows.ndjson", db_path=path)
    assert json.loads((tmp_path / "rows.ndjson").read_text()) == dict(zip(answer["columns"], expected, strict=True))
    query_to_file(sql, tmp_path / "rows.csv", db_path=path)
    with open(tmp_path / "rows.csv", encoding="utf-8", newline="") as handle:
        _, row = list(csv.reader(handle))
    assert row == [str(2**127 - 1), '{"k":"1.5"}', '{"x":1}', '[{"when":"2024-01-02T01:04:05+00:00"}]']


def test_unique_names() -> None:
    assert unique_names(["a", "a", "a_1"]) == ["a", "a_2", "a_1"]
    assert unique_names(["A", "a", "b"]) == ["A", "a_1", "b"]
    assert unique_names(["x", "x", "x"]) == ["x", "x_1", "x_2"]


@settings(max_examples=examples(150), deadline=None)
@given(
    months=st.integers(-3000, 3000),
    days=st.integers(-100_000, 100_000),
    micros=st.integers(-(10**14), 10**14),
)
def test_iso_intervals_as_postgresql_writes_them(pg_url_module: str, months: int, days: int, micros: int) -> None:
    with psycopg.connect(pg_url_module, autocommit=True) as con:
        con.execute("SET intervalstyle = 'iso_8601'")
        row = con.execute(
            "SELECT (make_interval(months => %s, days => %s) + make_interval(secs => %s::numeric / 1000000))::text",
            [months, days, micros],
        ).fetchone()
    assert row is not None
    assert iso_interval(months, days, micros) == row[0]


@pytest.fixture(scope="module")
def pg_url_module(pg_server: Any) -> str:
    return str(pg_server.new_database())


@settings(max_examples=examples(100), deadline=None)
@given(
    texts=st.lists(st.one_of(st.none(), st.text()), min_size=1, max_size=20),
    floats=st.lists(st.one_of(st.none(), st.floats()), min_size=20, max_size=20),
    ints=st.lists(st.one_of(st.none(), st.integers(-(2**63), 2**63 - 1)), min_size=20, max_size=20),
)
def test_ndjson_lines_are_the_rules_values(
    texts: list[str | None], floats: list[float | None], ints: list[int | None]
) -> None:
    # The NDJSON writer builds lines column by column in Arrow; each must read back as the
    # values query() gives (strings with quotes and control characters, floats, NaN…).
    n = len(texts)
    batch = pa.RecordBatch.from_arrays(
        [pa.array(texts, pa.string()), pa.array(floats[:n], pa.float64()), pa.array(ints[:n], pa.int64())],
        names=["t", "f", "i"],
    )
    lines = ndjson_lines(batch, ["t", "f", "i"], [None, None, None]).to_pylist()
    for line, t, f, i in zip(lines, texts, floats, ints, strict=False):
        assert line.endswith("\n") and "\n" not in line[:-1]
        assert json.loads(line) == {"t": t, "f": _json_value(f), "i": i}
