"""Issue 23 point 4 against hostile and unusual input: ``import_scenario(format="fhir")``
gives a clear error naming the file and the line or entry, or imports correctly, and never
saves half.

Real files, a real DuckDB store (the FHIR reading is engine-neutral; tests/test_fhir_exchange
runs the store's side on both engines).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from healthsim.state import ScenarioStore
from healthsim.state.errors import InvalidScenarioFileError

PATIENT = {"resourceType": "Patient", "id": "p1"}


def bundle(entries: Any, kind: str = "collection") -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": kind, "entry": entries}


def write(path: Path, data: Any) -> Path:
    if isinstance(data, (dict, list)):
        data = json.dumps(data)
    path.write_bytes(data if isinstance(data, bytes) else data.encode("utf-8"))
    return path


def names(store: ScenarioStore) -> set[str]:
    return {s["name"] for s in store.list_scenarios()["scenarios"]}


def refused(store: ScenarioStore, path: Path, *needles: str, format: str = "fhir") -> str:
    """The import fails with the project's error naming the file and each needle; nothing saved."""
    with pytest.raises(InvalidScenarioFileError) as caught:
        store.import_scenario(path, "bad", format=format)
    message = str(caught.value)
    assert path.name in message
    for needle in needles:
        assert needle in message, message
    assert "bad" not in names(store)
    return message


def imported(store: ScenarioStore, path: Path, format: str = "fhir") -> dict[str, list[dict[str, Any]]]:
    store.import_scenario(path, "good", format=format, overwrite=True)
    entities: dict[str, list[dict[str, Any]]] = store.load_scenario("good")["entities"]
    return entities


# --- the shape of a Bundle ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("entries", "needles"),
    [
        (["x"], ("entry 0", "not an object")),
        ([PATIENT, 5], ("entry 1", "not an object")),
        ({"resource": PATIENT}, ("entry", "not a list")),
        (5, ("entry", "not a list")),
    ],
)
def test_bundle_entries_that_are_not_objects_are_named(
    store: ScenarioStore, tmp_path: Path, entries: Any, needles: tuple[str, ...]
) -> None:
    if isinstance(entries, list):
        entries = [{"resource": e} if isinstance(e, dict) else e for e in entries]
    refused(store, write(tmp_path / "b.json", bundle(entries)), *needles)


@pytest.mark.parametrize("kind", [["Patient"], {"a": 1}, None])
def test_a_resource_type_that_is_not_a_string_is_named(store: ScenarioStore, tmp_path: Path, kind: Any) -> None:
    lines = json.dumps(PATIENT) + "\n" + json.dumps({"resourceType": kind, "id": "x"}) + "\n"
    refused(store, write(tmp_path / "r.ndjson", lines), "line 2", "resourceType")
    refused(store, write(tmp_path / "r.json", bundle([{"resource": {"resourceType": kind}}])), "entry 0")


@pytest.mark.parametrize("rid", [5, {"a": 1}, ["p"], True])
def test_an_id_that_is_not_a_string_is_named(store: ScenarioStore, tmp_path: Path, rid: Any) -> None:
    refused(store, write(tmp_path / "i.ndjson", json.dumps({"resourceType": "Patient", "id": rid})), "line 1", "id")


# --- the bytes of a file -----------------------------------------------------------------------


def test_nesting_too_deep_for_the_exact_parser_is_named(store: ScenarioStore, tmp_path: Path) -> None:
    # 19 digits send the text to the exact parser (integers beyond 64 bits), whose recursion
    # limit is Python's: it must still be an error naming the place, not a RecursionError.
    deep = '{"resourceType":"Patient","id":"p","n":12345678901234567890123,"x":' + "[" * 5000 + "]" * 5000 + "}"
    refused(store, write(tmp_path / "d.ndjson", deep + "\n"), "line 1", "deep")
    whole = '{"resourceType":"Bundle","n":12345678901234567890123,"entry":' + "[" * 5000 + "]" * 5000 + "}"
    refused(store, write(tmp_path / "d.json", whole), "the file", "deep")


def test_a_byte_order_mark_is_read_past(store: ScenarioStore, tmp_path: Path) -> None:
    bom = b"\xef\xbb\xbf"
    write(tmp_path / "b.json", bom + json.dumps(bundle([{"resource": PATIENT}])).encode())
    assert [p["mrn"] for p in imported(store, tmp_path / "b.json")["patients"]] == ["p1"]
    lines = bom + json.dumps(PATIENT).encode() + b"\r\n" + json.dumps({**PATIENT, "id": "p2"}).encode() + b"\r\n"
    write(tmp_path / "b.ndjson", lines)
    assert [p["mrn"] for p in imported(store, tmp_path / "b.ndjson")["patients"]] == ["p1", "p2"]
    # Only at the start of the file: one in the middle of a line is not JSON.
    write(tmp_path / "m.ndjson", json.dumps(PATIENT).encode() + b"\n" + bom + json.dumps(PATIENT).encode())
    refused(store, tmp_path / "m.ndjson", "line 2", "not JSON")


def test_file_suffixes_are_read_whatever_their_case(store: ScenarioStore, tmp_path: Path) -> None:
    folder = tmp_path / "bulk"
    folder.mkdir()
    write(folder / "Patient.NDJSON", json.dumps(PATIENT) + "\n")
    write(folder / "Encounter.ndjson", json.dumps({"resourceType": "Encounter", "id": "e", "status": "finished"}))
    write(folder / "more.JSON", bundle([{"resource": {**PATIENT, "id": "p2"}}]))
    found = imported(store, folder)
    assert sorted(p["mrn"] for p in found["patients"]) == ["p1", "p2"]
    assert len(found["encounters"]) == 1
    assert [p["mrn"] for p in imported(store, folder / "Patient.NDJSON")["patients"]] == ["p1"]


def test_ndjson_in_a_json_file_says_to_name_it_ndjson(store: ScenarioStore, tmp_path: Path) -> None:
    lines = json.dumps(PATIENT) + "\n" + json.dumps({**PATIENT, "id": "p2"}) + "\n"
    refused(store, write(tmp_path / "lines.json", lines), "not JSON", ".ndjson")
