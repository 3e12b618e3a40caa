"""export_scenario in every format: where it writes, what NDJSON holds, types and
versions, and that bad input or a failure leaves nothing half-written."""

from __future__ import annotations

import csv
import json
import os
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import duckdb
import pyarrow.parquet as pq
import pytest

from healthsim.state import InvalidInputError, ScenarioNotFoundError, ScenarioStore
from healthsim.state.exchange import formats
from healthsim.state.safe_csv import restore_cell

ENTITIES: dict[str, list[dict[str, Any]]] = {
    "patients": [{"patient_id": "A", "gender": "female"}, {"patient_id": "B", "gender": "male"}],
    "claims": [{"claim_id": "C1", "total_charge": 12.5, "big": 123456789012345678901234567890}],
}


def lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_ndjson_is_one_exact_line_per_entity_in_saved_order(store: ScenarioStore, tmp_path: Path) -> None:
    store.save_scenario("s", ENTITIES)
    path = store.export_scenario("s", tmp_path / "s.ndjson", format="ndjson")
    written = lines(path)
    assert [(w["entity_type"], w["data"]) for w in written] == [(t, e) for t, items in ENTITIES.items() for e in items]
    assert written[2]["data"]["big"] == 123456789012345678901234567890  # the stored text, exact
    with store.open_scenario("s") as reader:
        ids = reader.connection.execute("SELECT CAST(entity_id AS VARCHAR) FROM scenario_entities ORDER BY id")
        assert [w["entity_id"] for w in written] == [i for (i,) in ids.fetchall()]


def test_ndjson_of_a_pretty_printed_import_is_still_one_line_each(store: ScenarioStore, tmp_path: Path) -> None:
    source = tmp_path / "pretty.json"
    patients = [{"patient_id": f"P{i}", "note": "two\nlines", "tags": ["a", "b"]} for i in range(3)]
    source.write_text(
        json.dumps({"schema_version": "1.0", "name": "pretty", "entities": {"patients": patients}}, indent=2)
    )
    store.import_scenario_from_json(source)
    path = store.export_scenario("pretty", tmp_path / "out.ndjson", format="ndjson")
    assert [w["data"] for w in lines(path)] == patients


def test_default_paths_and_folders(store: ScenarioStore, isolated_home: Path, tmp_path: Path) -> None:
    store.save_scenario("cohort a", ENTITIES)
    downloads = isolated_home / "Downloads"
    assert store.export_scenario("cohort a", format="ndjson") == downloads / "cohort a.ndjson"
    assert store.export_scenario("cohort a", format="parquet") == downloads / "cohort a-parquet"
    assert store.export_scenario("cohort a", format="CSV") == downloads / "cohort a-csv"
    assert sorted(p.name for p in (downloads / "cohort a-csv").iterdir()) == [
        ".healthsim-export.json",
        "claims.csv",
        "patients.csv",
    ]
    (tmp_path / "existing").mkdir()
    assert store.export_scenario("cohort a", tmp_path / "existing", format="ndjson") == (
        tmp_path / "existing" / "cohort a.ndjson"
    )
    assert store.export_scenario("cohort a", str(tmp_path / "new") + "/", format="parquet") == (
        tmp_path / "new" / "cohort a-parquet"
    )


def test_types_and_versions(store: ScenarioStore, tmp_path: Path) -> None:
    store.save_scenario("s", ENTITIES)
    store.add_entities("s", {"patients": [{"patient_id": "C", "gender": "other"}]})
    folder = store.export_scenario("s", tmp_path / "p", format="parquet", types=["patients"])
    assert sorted(p.name for p in folder.iterdir()) == [".healthsim-export.json", "patients.parquet"]
    assert pq.read_table(folder / "patients.parquet").column("patient_id").to_pylist() == ["A", "B", "C"]
    old = store.export_scenario("s", tmp_path / "v1", format="parquet", version=1)
    assert pq.read_table(old / "patients.parquet").column("patient_id").to_pylist() == ["A", "B"]
    assert [
        w["data"]["patient_id"]
        for w in lines(
            store.export_scenario("s", tmp_path / "v1.ndjson", format="ndjson", version=1, types=["patients"])
        )
    ] == ["A", "B"]
    doc = json.loads(store.export_scenario("s", tmp_path / "c.json", types=["claims"]).read_text())
    assert list(doc["entities"]) == ["claims"]
    frames = store.load_frames("s", version=1, types=["claims"])
    assert list(frames) == ["claims"] and frames["claims"].num_rows == 1


def test_bad_input_is_refused_and_nothing_is_written(store: ScenarioStore, tmp_path: Path) -> None:
    store.save_scenario("s", ENTITIES)
    with pytest.raises(InvalidInputError, match="unknown export format 'xlsx'; use one of: json, ndjson, parquet, csv"):
        store.export_scenario("s", tmp_path / "x", format="xlsx")
    with pytest.raises(
        InvalidInputError, match="scenario 's' has no entity type 'aliens'; its types: patients, claims"
    ):
        store.export_scenario("s", tmp_path / "x", format="csv", types=["patients", "aliens"])
    with pytest.raises(InvalidInputError, match="has no entity type 'aliens'"):
        store.export_scenario("s", tmp_path / "x.json", types=["aliens"])
    with pytest.raises(InvalidInputError, match="has no entity type 'aliens'"):
        store.load_frames("s", types=["aliens"])
    blocker = tmp_path / "a-file"
    blocker.write_text("keep me")
    with pytest.raises(InvalidInputError, match="is a file, not a folder"):
        store.export_scenario("s", blocker, format="parquet")
    with pytest.raises(ScenarioNotFoundError):
        store.export_scenario("ghost", tmp_path / "g", format="parquet")
    assert blocker.read_text() == "keep me"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file", "home"]


def test_a_failure_midway_leaves_no_folder_and_keeps_the_earlier_export(
    store: ScenarioStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store.save_scenario("s", ENTITIES)
    target = store.export_scenario("s", tmp_path / "out", format="parquet")
    before = {p.name: p.read_bytes() for p in target.iterdir()}
    written: list[Path] = []
    real_copy = formats._copy

    def copy_then_fail(con: Any, sql: str, path: Path, fmt: str) -> None:
        real_copy(con, sql, path, fmt)
        written.append(path)
        raise OSError(28, "No space left on device")

    real_csv = formats._write_csv

    def csv_then_fail(con: Any, table: Any, path: Path) -> None:
        real_csv(con, table, path)
        written.append(path)
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(formats, "_copy", copy_then_fail)
    monkeypatch.setattr(formats, "_write_csv", csv_then_fail)
    with pytest.raises(InvalidInputError, match="no space left on the disk"):
        store.export_scenario("s", target, format="parquet")
    with pytest.raises(InvalidInputError):
        store.export_scenario("s", tmp_path / "fresh", format="csv")
    assert written and not any(p.exists() for p in written)  # the staging folder is gone
    assert {p.name: p.read_bytes() for p in target.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["home", "out"]


def tree(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


@pytest.mark.parametrize("format", ["ndjson", "parquet", "csv"])
@pytest.mark.parametrize("wal", [False, True])
def test_export_onto_the_scenario_database_is_refused_and_keeps_it(
    store: ScenarioStore, db_path: Path, tmp_path: Path, format: str, wal: bool
) -> None:
    # Was data loss for ndjson (the file renamed over the database); a parquet or csv
    # folder named like the WAL would have kept DuckDB from opening the database.
    store.save_scenario("s", ENTITIES)
    target = Path(f"{db_path}.wal") if wal else db_path
    before = tree(tmp_path)
    with pytest.raises(InvalidInputError) as caught:
        store.export_scenario("s", target, format=format)
    message = str(caught.value)
    expected = "the write-ahead log of the scenario database" if wal else "the scenario database itself"
    assert message.startswith(f"cannot export to '{target}': it is {expected}"), message
    assert message.endswith("choose another file; nothing was written"), message
    assert tree(tmp_path) == before
    assert ScenarioStore(db_path).load_scenario("s")["entities"] == ENTITIES


def test_export_onto_another_duckdb_database_is_refused(store: ScenarioStore, tmp_path: Path) -> None:
    store.save_scenario("s", ENTITIES)
    database = tmp_path / "analysis.duckdb"
    with duckdb.connect(str(database)) as con:
        con.execute("CREATE TABLE kept AS SELECT 42 AS answer")
    before = tree(tmp_path)
    for format in ("ndjson", "parquet", "csv"):
        with pytest.raises(InvalidInputError, match=f"'{database}': it is a DuckDB database, which this would"):
            store.export_scenario("s", database, format=format)
    assert tree(tmp_path) == before
    with duckdb.connect(str(database), read_only=True) as con:
        assert con.execute("SELECT answer FROM kept").fetchall() == [(42,)]


@pytest.mark.parametrize("format", ["parquet", "csv"])
def test_a_folder_holding_a_database_is_not_replaced(tmp_path: Path, format: str) -> None:
    # An existing {name}-{format} folder is replaced whole, the old one deleted: it was
    # deleted with the scenario database (or another DuckDB database) inside it.
    home = tmp_path / f"s-{format}"
    home.mkdir()
    store = ScenarioStore(home / "h.duckdb")
    store.save_scenario("s", ENTITIES)
    before = tree(tmp_path)
    with pytest.raises(InvalidInputError) as caught:
        store.export_scenario("s", tmp_path, format=format)
    message = str(caught.value)
    assert message.startswith(f"cannot export to '{home}': it holds the scenario database '{home / 'h.duckdb'}'")
    assert message.endswith("choose another path; nothing was written"), message
    assert tree(tmp_path) == before
    assert store.load_scenario("s")["entities"] == ENTITIES

    elsewhere = ScenarioStore(tmp_path / "elsewhere.duckdb")  # the database is another store's
    elsewhere.save_scenario("s", ENTITIES)
    before = tree(tmp_path)
    with pytest.raises(InvalidInputError, match=f"'{home}': it holds the DuckDB database '{home / 'h.duckdb'}'"):
        elsewhere.export_scenario("s", tmp_path, format=format)
    assert tree(tmp_path) == before
    assert store.load_scenario("s")["entities"] == ENTITIES


def test_an_earlier_export_folder_is_still_replaced(store: ScenarioStore, tmp_path: Path) -> None:
    store.save_scenario("s", ENTITIES)
    first = store.export_scenario("s", str(tmp_path) + "/", format="csv")
    assert store.export_scenario("s", str(tmp_path) + "/", format="csv", types=["patients"]) == first
    # The earlier export's claims.csv is gone with it: nothing stale stays beside the new files.
    assert sorted(p.name for p in first.iterdir()) == [".healthsim-export.json", "patients.csv"]


def test_an_earlier_export_holding_files_of_the_user_is_not_replaced(store: ScenarioStore, tmp_path: Path) -> None:
    # Replacing the export would delete what the user put in it.
    store.save_scenario("s", ENTITIES)
    first = store.export_scenario("s", str(tmp_path) + "/", format="csv")
    (first / "analysis.csv").write_text("mine")
    os.symlink(tmp_path / "home", first / "link")  # a link to a folder is not looked into
    before = tree(tmp_path)
    with pytest.raises(InvalidInputError) as caught:
        store.export_scenario("s", first, format="csv")
    assert str(caught.value) == (
        f"cannot export to '{first}': this earlier export also holds 'analysis.csv', 'link', which it did not "
        "write and replacing it would delete; move them out or choose another path; nothing was written"
    )
    assert tree(tmp_path) == before
    (first / "analysis.csv").unlink()
    (first / "link").unlink()
    (first / ".DS_Store").write_bytes(b"")  # what a desktop adds does not count
    assert store.export_scenario("s", first, format="csv") == first
    assert sorted(p.name for p in first.iterdir()) == [".healthsim-export.json", "claims.csv", "patients.csv"]


def test_a_folder_export_onto_a_pipe_says_what_it_is(store: ScenarioStore, tmp_path: Path) -> None:
    store.save_scenario("c", {"patients": [{"patient_id": "A"}]})
    pipe = tmp_path / "out"
    os.mkfifo(pipe)
    with pytest.raises(InvalidInputError, match=r"not a regular file \(a pipe, device or socket\)"):
        store.export_scenario("c", pipe, format="parquet")
    assert stat.S_ISFIFO(os.stat(pipe).st_mode)


# --- issue 21: CSV injection, one export per path --------------------------------------------

FORMULAS: dict[str, Any] = {
    "patient_id": "P1",
    "name": '=HYPERLINK("http://evil.example","click")',
    "phone": "+1 555 0100",
    "note": "-cmd|' /C calc'!A0",
    "email": "@SUM(A1)",
    "tabbed": "\t=1+1",
    "returned": "\r=1+1",
    "quoted": "'=1",
    "minus": "-5",
    "count": -5,
    "weight": -70.5,
    "address": {"city": "=CITY()"},
    "=key": "header",
}


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def test_csv_export_neutralises_formulas_and_other_formats_keep_them(store: ScenarioStore, tmp_path: Path) -> None:
    store.save_scenario("evil", {"patients": [FORMULAS]})
    (row,) = read_csv(store.export_scenario("evil", tmp_path / "csv", format="csv") / "patients.csv")
    assert row["name"] == "'" + FORMULAS["name"]
    for field in ("phone", "note", "email", "tabbed", "returned", "quoted"):
        assert row[field] == "'" + FORMULAS[field], field
        assert restore_cell(row[field]) == FORMULAS[field]
    assert (row["minus"], row["count"], row["weight"]) == ("-5", "-5", "-70.5")  # numbers stay numbers
    assert row["address.city"] == "'=CITY()"
    assert row["\\=key"] == "header"  # a name never starts like a formula either
    table = pq.read_table(store.export_scenario("evil", tmp_path / "pq", format="parquet") / "patients.parquet")
    assert table.column("name").to_pylist() == [FORMULAS["name"]] and table.column("count").to_pylist() == [-5]
    assert lines(store.export_scenario("evil", tmp_path / "e.ndjson", format="ndjson"))[0]["data"] == FORMULAS


def test_query_csv_neutralises_formulas_on_both_engines(store: ScenarioStore, tmp_path: Path) -> None:
    store.save_scenario("evil", {"patients": [FORMULAS]})
    sql = (
        "SELECT data->>'name' AS name, data->>'note' AS note, data->>'minus' AS minus, "
        "CAST(data->>'count' AS INTEGER) AS n, -1.5 AS x, 'ok' AS \"=label\" FROM patients"
    )
    store.query_to_file(sql, tmp_path / "q.csv")
    (row,) = read_csv(tmp_path / "q.csv")
    assert row == {
        "name": "'" + FORMULAS["name"],
        "note": "'" + FORMULAS["note"],
        "minus": "-5",
        "n": "-5",
        "x": "-1.5",
        "'=label": "ok",
    }
    store.query_to_file(sql, tmp_path / "q.ndjson")
    assert json.loads((tmp_path / "q.ndjson").read_text())["name"] == FORMULAS["name"]  # exact elsewhere


@pytest.mark.parametrize(("first", "second"), [("parquet", "parquet"), ("csv", "csv"), ("parquet", "csv")])
def test_exporting_again_to_the_same_path_replaces_the_export(
    store: ScenarioStore, tmp_path: Path, first: str, second: str
) -> None:
    # Was: the second export went into PATH/s-{format}, beside the first one's files, so
    # reading PATH/**/*.parquet counted every entity twice.
    store.save_scenario("s", ENTITIES)
    out = tmp_path / "out"
    assert store.export_scenario("s", out, format=first) == out
    assert store.export_scenario("s", out, format=second, types=["patients"]) == out
    assert sorted(p.name for p in out.rglob("*")) == [".healthsim-export.json", f"patients.{second}"]
    assert json.loads((out / ".healthsim-export.json").read_text())["files"] == [f"patients.{second}"]
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # nothing left beside it


def test_a_folder_that_is_not_an_export_is_never_replaced(store: ScenarioStore, tmp_path: Path) -> None:
    store.save_scenario("s", ENTITIES)
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    # The export goes inside a folder of the user's, as it always did...
    assert store.export_scenario("s", mine, format="parquet") == mine / "s-parquet"
    assert store.export_scenario("s", mine, format="parquet") == mine / "s-parquet"  # ...and replaces itself there
    (mine / "s-csv").mkdir()
    (mine / "s-csv" / "patients.csv").write_text("the user's own")
    before = tree(tmp_path)
    with pytest.raises(InvalidInputError) as caught:
        store.export_scenario("s", mine, format="csv")
    assert str(caught.value) == (
        f"cannot export to '{mine / 's-csv'}': it is a folder that is not an earlier HealthSim export (it has no "
        ".healthsim-export.json), which replacing it would delete; choose another path, or remove the folder "
        "yourself; nothing was written"
    )
    assert tree(tmp_path) == before
    assert (mine / "notes.txt").read_text() == "keep me"


def test_query_to_file_again_replaces_the_file(store: ScenarioStore, tmp_path: Path) -> None:
    store.save_scenario("s", ENTITIES)
    target = tmp_path / "rows.parquet"
    for _ in range(2):
        store.query_to_file("SELECT entity_id FROM patients", target)
    assert pq.read_table(target).num_rows == 2
    # (sorted: the listing order is the file system's, and differs in memory)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["home", "rows.parquet"]


WATCH = """
import os, sys
marker, stop = sys.argv[1], sys.argv[2]
missing = 0
while not os.path.exists(stop):
    for _ in range(1000):
        if not os.path.exists(marker):
            missing += 1
print(missing)
"""


@pytest.mark.slow
def test_replacing_an_export_swaps_it_in_one_step(store: ScenarioStore, tmp_path: Path) -> None:
    # A reader of PATH sees the earlier export or the new one, never no folder (Linux: one
    # renameat2 exchange; elsewhere the earlier export is moved aside first). Another process
    # looks as fast as it can while the export is replaced again and again.
    store.save_scenario("s", ENTITIES)
    out = tmp_path / "out"
    store.export_scenario("s", out, format="parquet")
    stop = tmp_path / "stop"
    watcher = subprocess.Popen(
        [sys.executable, "-c", WATCH, str(out / ".healthsim-export.json"), str(stop)], stdout=subprocess.PIPE, text=True
    )
    try:
        time.sleep(0.3)  # the watcher is looking
        for _ in range(40):
            store.export_scenario("s", out, format="parquet", types=["patients"])
    finally:
        stop.write_text("")
        seen, _ = watcher.communicate(timeout=30)
    assert int(seen) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["home", "out", "stop"]
