"""export_scenario in every format: where it writes, what NDJSON holds, types and
versions, and that bad input or a failure leaves nothing half-written."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from healthsim.state import InvalidInputError, ScenarioNotFoundError, ScenarioStore
from healthsim.state.exchange import formats

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
    assert sorted(p.name for p in (downloads / "cohort a-csv").iterdir()) == ["claims.csv", "patients.csv"]
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
    assert [p.name for p in folder.iterdir()] == ["patients.parquet"]
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

    monkeypatch.setattr(formats, "_copy", copy_then_fail)
    with pytest.raises(InvalidInputError, match="no space left on the disk"):
        store.export_scenario("s", target, format="parquet")
    with pytest.raises(InvalidInputError):
        store.export_scenario("s", tmp_path / "fresh", format="csv")
    assert written and not any(p.exists() for p in written)  # the staging folder is gone
    assert {p.name: p.read_bytes() for p in target.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["home", "out"]
