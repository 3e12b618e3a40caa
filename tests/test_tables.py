"""Scenarios as tables: the Parquet files, the Arrow frames and the CSV files hold every
value of every entity, read back with pyarrow, DuckDB and the csv module."""

from __future__ import annotations

import csv
import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from healthsim.state import ScenarioStore
from healthsim.state.safe_csv import csv_key_path, restore_cell
from helpers.examples import examples
from helpers.paths import EXAMPLES

EXAMPLE = EXAMPLES / "diabetes-cohort.json"


def decode(value: Any, kind: pa.DataType) -> Any:
    """A value read from Arrow, with JSON text columns parsed (exactly)."""
    if value is None:
        return None
    if isinstance(kind, pa.BaseExtensionType) and kind.extension_name == "arrow.json":
        return json.loads(value)
    if pa.types.is_struct(kind):
        return {
            kind.field(i).name: decode(value[kind.field(i).name], kind.field(i).type) for i in range(kind.num_fields)
        }
    if pa.types.is_list(kind) or pa.types.is_large_list(kind):
        return [decode(v, kind.value_type) for v in value]
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else value
    return value


def without_nulls(value: Any) -> Any:
    """``value`` with object members that are null dropped: a table cannot tell a
    missing key from a null one."""
    if isinstance(value, dict):
        return {k: without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [without_nulls(v) for v in value]
    return value


def rows_of(table: pa.Table) -> list[dict[str, Any]]:
    """Each row as the entity it came from (``entity_id`` left out), nulls dropped."""
    schema = table.schema
    out = []
    for row in table.to_pylist():
        entity = {name: decode(row[name], schema.field(name).type) for name in schema.names[1:]}
        out.append(without_nulls(entity))
    return out


def assert_tables_hold(folder: Path, entities: dict[str, list[dict[str, Any]]]) -> None:
    for entity_type, items in entities.items():
        table = pq.read_table(folder / f"{entity_type}.parquet")
        assert table.schema.names[0] == "entity_id"
        assert rows_of(table) == [without_nulls(e) for e in items], entity_type


def test_the_example_reads_back_equal_from_parquet_duckdb_and_frames(store: ScenarioStore, tmp_path: Path) -> None:
    entities = json.loads(EXAMPLE.read_text())
    store.save_scenario("example", entities)
    folder = store.export_scenario("example", tmp_path / "out", format="parquet")
    assert folder == tmp_path / "out" and sorted(p.name for p in folder.iterdir()) == sorted(
        [*(f"{t}.parquet" for t in entities), ".healthsim-export.json"]
    )
    assert_tables_hold(folder, entities)
    claims = pq.read_table(folder / "claims.parquet")
    assert pa.types.is_list(claims.schema.field("lines").type)  # lists stay lists of structs
    assert pa.types.is_struct(pq.read_table(folder / "patients.parquet").schema.field("address").type)

    frames = store.load_frames("example")
    assert list(frames) == list(entities)
    for entity_type, table in frames.items():
        assert table.schema == pq.read_table(folder / f"{entity_type}.parquet").schema, entity_type
        assert rows_of(table) == [without_nulls(e) for e in entities[entity_type]]

    con = duckdb.connect()
    genders = con.execute(
        f"SELECT gender, count(*) FROM '{folder}/patients.parquet' GROUP BY ALL ORDER BY 1"
    ).fetchall()
    expected = sorted((g, sum(1 for p in entities["patients"] if p["gender"] == g)) for g in {"female", "male"})
    assert genders == expected
    cities = con.execute(f"SELECT address.city FROM '{folder}/patients.parquet'").fetchall()
    assert [c for (c,) in cities] == [p["address"]["city"] for p in entities["patients"]]
    ids = con.execute(f"SELECT entity_id FROM '{folder}/patients.parquet'").fetchall()
    with store.open_scenario("example") as reader:
        stored = reader.connection.execute(
            "SELECT CAST(entity_id AS VARCHAR) FROM scenario_entities WHERE entity_type = 'patients' ORDER BY id"
        ).fetchall()
    assert ids == stored


def test_mixed_types_big_integers_and_case_twins_keep_every_value(store: ScenarioStore, tmp_path: Path) -> None:
    big = 123456789012345678901234567890
    entities = {
        "things": [
            {"mixed": 1, "n": 1, "u": 2**64 - 1, "whole": 3, "signed": 5, "list": [1, 2]},
            {"mixed": "one", "n": 2.5, "u": -1, "whole": 2**60, "signed": -(2**62), "list": ["a", {"b": 1}]},
            {"mixed": {"k": [1]}, "n": big, "Name": "upper", "name": "lower"},
            {"mixed": None, "empty": {}, "nothing": None, "nested": {"A": 1, "a": 2}},
            {"entity_id": "their own", "deep": {"x": {"y": {"z": [True, False, None]}}}},
        ]
    }
    store.save_scenario("odd", entities)
    folder = store.export_scenario("odd", tmp_path / "odd", format="parquet")
    table = pq.read_table(folder / "things.parquet")
    names = table.schema.names
    assert names[0] == "entity_id" and "entity_id_" in names  # theirs keeps its value under another name
    types = {name: table.schema.field(name).type for name in names}
    assert str(types["n"]) == "extension<arrow.json>"  # a double could not hold the big integer
    assert pa.types.is_decimal(types["u"])  # past 2**63 and negative: exact decimals
    assert str(types["whole"]) == "uint64"  # never negative (as DuckDB infers it)
    assert str(types["signed"]) == "int64"  # both signs, all within 64 bits
    rows = table.to_pylist()
    assert json.loads(rows[2]["n"]) == big and rows[1]["u"] == -1 and rows[0]["u"] == 2**64 - 1
    assert json.loads(rows[4]["entity_id_"]) == "their own"  # a JSON text column
    twin = "name_"  # equal to "Name" but for case: a column of its own
    assert (rows[2]["Name"], json.loads(rows[2][twin])) == ("upper", "lower")
    assert rows[4]["deep"] == {"x": {"y": {"z": [True, False, None]}}}


def test_scenarios_of_the_earlier_release_export(tmp_path: Path) -> None:
    from legacy_db import LEGACY_SCENARIOS, build  # tests/fixtures: the earlier release's schema and rows

    db = tmp_path / "legacy.duckdb"
    build(str(db))
    store = ScenarioStore(db)
    for _, (name, _, _, _, _) in LEGACY_SCENARIOS.items():
        # The entities as the library reads them (the migration kept legacy ids in _entity_id).
        entities = store.load_scenario(name)["entities"]
        assert any("big" in e for items in entities.values() for e in items) or name != "legacy-diabetes"
        folder = store.export_scenario(name, tmp_path / name, format="parquet")
        assert_tables_hold(folder, entities)
        frames = store.load_frames(name)
        assert {t: rows_of(f) for t, f in frames.items()} == {
            t: [without_nulls(e) for e in items] for t, items in entities.items()
        }


def test_csv_flattens_objects_and_reads_back_the_same_strings(store: ScenarioStore, tmp_path: Path) -> None:
    tricky = 'comma, "quote"\nnew line — ünïcode 🩺'
    entities = {
        "patients": [
            {"id": "a", "name": {"given": ["Ana", "María"], "family": tricky}, "address": {"city": "Springfield"}},
            {"id": "b", "name": {"family": "Chen"}, "age": 41, "weight": 70.5, "active": True, "note": None},
        ]
    }
    store.save_scenario("c", entities)
    folder = store.export_scenario("c", tmp_path / "csv", format="csv")
    with open(folder / "patients.csv", encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == [
        "entity_id",
        "id",
        "name.given",
        "name.family",
        "address.city",
        "age",
        "weight",
        "active",
        "note",
    ]
    assert rows[0]["name.family"] == tricky and rows[0]["address.city"] == "Springfield"
    assert json.loads(rows[0]["name.given"]) == ["Ana", "María"]
    assert rows[1]["name.given"] == "" and rows[1]["address.city"] == ""
    assert (int(rows[1]["age"]), float(rows[1]["weight"]), rows[1]["active"]) == (41, 70.5, "true")


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**80), max_value=2**80)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(st.characters(exclude_categories=("Cs",)), max_size=8),
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(st.sampled_from(["a", "b", "B", "c d", "ü"]), children, max_size=3)
    ),
    max_leaves=8,
)


@settings(max_examples=examples(40), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    entities=st.lists(
        st.dictionaries(st.sampled_from(["x", "y", "z", "Z", "w.v", ""]), json_values, max_size=4),
        min_size=1,
        max_size=6,
    )
)
def test_any_entities_read_back_equal(store: ScenarioStore, tmp_path: Path, entities: list[dict[str, Any]]) -> None:
    store.save_scenario("random", {"things": entities}, overwrite=True)
    folder = store.export_scenario("random", tmp_path / "random", format="parquet")
    table = pq.read_table(folder / "things.parquet")
    expected = [without_nulls(e) for e in entities]
    twins = [n for n in table.schema.names[1:] if n.rstrip("_") != n and n.rstrip("_").lower() in ("z", "")]
    got = rows_of(table)
    for row in got:  # a case twin or the empty key has a column of its own, named with "_"
        for twin in twins:
            if twin in row:
                row[twin.rstrip("_")] = row.pop(twin)
    assert got == expected
    assert rows_of(store.load_frames("random")["things"]) == rows_of(table)


text = st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\x00"), max_size=12)


@settings(max_examples=examples(30), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    entities=st.lists(
        st.fixed_dictionaries({}, optional={"s": text, "o": st.fixed_dictionaries({}, optional={"t": text})}),
        min_size=1,
        max_size=6,
    )
)
def test_csv_strings_read_back_the_same(store: ScenarioStore, tmp_path: Path, entities: list[dict[str, Any]]) -> None:
    store.save_scenario("csv", {"things": entities}, overwrite=True)
    folder = store.export_scenario("csv", tmp_path / "csv", format="csv")
    with open(folder / "things.csv", encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(entities)
    for row, entity in zip(rows, entities, strict=True):
        # (a text starting like a formula has a "'" in front: restore_cell takes it off)
        assert restore_cell(row.get("s", "")) == entity.get("s", "")
        assert restore_cell(row.get("o.t", "")) == entity.get("o", {}).get("t", "")


# --- found by a hunt with hostile entities -----------------------------------------------------


def parquet_column(store: ScenarioStore, tmp_path: Path, name: str, entities: list[dict[str, Any]]) -> pa.Table:
    store.save_scenario(name, {"things": entities})
    folder = store.export_scenario(name, tmp_path / name, format="parquet")
    table = pq.read_table(folder / "things.parquet")
    assert rows_of(table) == [without_nulls(e) for e in entities]  # every value exactly
    assert rows_of(store.load_frames(name)["things"]) == rows_of(table)
    return table


@pytest.mark.parametrize(
    "entities",
    [
        [{"v": [2**53 + 1, 0.5]}],  # DuckDB merges a list's elements to a double
        [{"v": [2**64 - 1, 0.5]}],
        [{"v": [{"a": 2**60}, {"a": 0.5}]}],
        [{"v": [-1, 2**63, 0.5]}],
        [{"v": [{"a": 1}, {"a": "s"}]}, {"v": [{"a": {"b": 1}}]}],  # "JSON" in a list is not an empty object
        [{"v": [{"a": {}}, {"a": 5}]}, {"v": [{"a": {"z": 1}}]}],
        [{"o": {"l": [{"a": 1}, {"a": [1]}]}}, {"o": {"l": [{"a": {"z": 1}}]}}],
    ],
)
def test_values_merged_inside_lists_read_back_exactly(
    store: ScenarioStore, tmp_path: Path, entities: list[dict[str, Any]]
) -> None:
    parquet_column(store, tmp_path, "lists", entities)


def test_more_shapes_than_are_grouped_keep_integers_beside_fractions(store: ScenarioStore, tmp_path: Path) -> None:
    # Past 2,000 shapes DuckDB merges the whole type: a double there may hide integers too.
    # 2,047 shapes (each subset of 11 keys) over 11 columns, not 2,001 columns.
    entities: list[dict[str, Any]] = [{f"k{j}": j for j in range(11) if i >> j & 1} for i in range(1, 2_048)]
    entities += [{"v": 2**53 + 1}, {"v": 0.5}]
    table = parquet_column(store, tmp_path, "shapes", entities)
    assert str(table.schema.field("v").type) == "extension<arrow.json>"


def test_non_negative_integers_beside_fractions_are_doubles(store: ScenarioStore, tmp_path: Path) -> None:
    for name, values in (("weights", [70, 70.5]), ("signed", [-70, 70.5]), ("zero", [0, 1.5, 3])):
        table = parquet_column(store, tmp_path, name, [{"v": v} for v in values])
        assert table.schema.field("v").type == pa.float64(), name


def test_csv_column_names_differing_only_by_case_get_their_own_names(store: ScenarioStore, tmp_path: Path) -> None:
    # DuckDB renames a column equal to another but for case to "…_1", which may be a real key;
    # then "a.b_" (nested a.b, renamed) and a real key "a.b_" could not be told apart.
    store.save_scenario("cases", {"things": [{"a.B": 1, "a": {"b": 2}, "a.b_1": 3, "A.b": 4, "a.b_": 5}]})
    folder = store.export_scenario("cases", tmp_path / "cases", format="csv")
    with open(folder / "things.csv", encoding="utf-8", newline="") as f:
        (row,) = list(csv.DictReader(f))
    del row["entity_id"]
    assert row == {"a\\.B": "1", "a.b": "2", "a\\.b_1": "3", "A\\.b": "4", "a\\.b_": "5"}
    assert {tuple(csv_key_path(name)) for name in row} == {("a.B",), ("a", "b"), ("a.b_1",), ("A.b",), ("a.b_",)}


def _at(entity: Any, path: list[str]) -> Any:
    """The value at ``path`` in ``entity`` (None if a step is missing or not an object)."""
    for key in path:
        if not isinstance(entity, dict) or key not in entity:
            return None
        entity = entity[key]
    return entity


def _cell(value: Any) -> str:
    """What the CSV holds for a value (text restored with restore_cell first)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return str(value)


csv_keys = st.sampled_from(["a", "b", "a.b", "a.b_", "a_", "_", "entity_id", "x\\y", "é.ü", "🩺", "=f", "-"]) | st.text(
    st.characters(exclude_categories=("Cs",), exclude_characters="\x00"), max_size=3
).filter(lambda k: k.strip() == k)
csv_leaves = st.none() | st.booleans() | st.integers(-1000, 1000) | text
csv_entities = st.recursive(csv_leaves, lambda children: st.dictionaries(csv_keys, children, max_size=3), max_leaves=8)


@settings(max_examples=examples(25), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(entities=st.lists(st.dictionaries(csv_keys, csv_entities, max_size=4), min_size=1, max_size=4))
def test_csv_column_names_are_unique_and_give_back_each_value_s_key_path(
    store: ScenarioStore, tmp_path: Path, entities: list[dict[str, Any]]
) -> None:
    # Was: nested a.b written as the column "a.b_" when a key "a.b" existed, and a real key
    # "a.b_" then as "a.b__": no reader could tell which was which.
    store.save_scenario("keys", {"things": entities}, overwrite=True)
    folder = store.export_scenario("keys", tmp_path / "keys", format="csv")
    with open(folder / "things.csv", encoding="utf-8", newline="") as f:
        header, *rows = list(csv.reader(f))
    assert len(set(header)) == len(header) and header[0] == "entity_id"
    assert len(rows) == len(entities)
    for name in header[1:]:
        path = csv_key_path(name)
        assert any(_at(e, path) is not None or _present(e, path) for e in entities), name
        for row, entity in zip(rows, entities, strict=True):
            cell = restore_cell(row[header.index(name)])
            value = _at(entity, path)
            assert _holds(cell, value, _present(entity, path)), (name, entity, cell)


def _holds(cell: str, value: Any, present: bool) -> bool:
    """Whether a CSV cell holds ``value``: as text, or as JSON text in a column of JSON
    (lists, objects, fields of mixed types; there a null that is present is ``null``)."""
    if value is None:
        return cell == "" or (present and cell == "null")
    if cell == _cell(value):
        return True
    try:
        return bool(json.loads(cell) == value)
    except ValueError:
        return False


def _present(entity: Any, path: list[str]) -> bool:
    """Whether ``path`` reaches a key of ``entity`` (its value may be null)."""
    for key in path[:-1]:
        if not isinstance(entity, dict) or key not in entity:
            return False
        entity = entity[key]
    return isinstance(entity, dict) and path[-1] in entity
