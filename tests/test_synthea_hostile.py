"""Issue 23 point 4 for ``import_scenario(folder, format="synthea-csv")`` against hostile and
unusual CSV: a clear error naming the file and line, or a correct import; never half saved,
never a value silently lost.

Real files and a real DuckDB store (tests/test_fhir_exchange runs the Synthea sample on both
engines).
"""

from __future__ import annotations

import csv
import io
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from healthsim.state import ScenarioStore
from healthsim.state.errors import InvalidScenarioFileError
from helpers.examples import examples

SYNTHEA_CSV = Path(__file__).parent.parent / "examples" / "synthea-csv"  # 3 patients of Synthea 3.0


def folder(tmp_path: Path, files: dict[str, str | bytes], *, sample: bool = False) -> Path:
    """A CSV folder: the Synthea sample or an empty one, with ``files`` written over it."""
    where = tmp_path / "csv"
    tmp_path.mkdir(parents=True, exist_ok=True)
    if sample:
        shutil.copytree(SYNTHEA_CSV, where)
    else:
        where.mkdir()
    for name, data in files.items():
        (where / name).write_bytes(data if isinstance(data, bytes) else data.encode("utf-8"))
    return where


def refused(store: ScenarioStore, path: Path, *needles: str) -> str:
    with pytest.raises(InvalidScenarioFileError) as caught:
        store.import_scenario(path, "bad", format="synthea-csv")
    message = str(caught.value)
    for needle in needles:
        assert needle in message, message
    assert "bad" not in {s["name"] for s in store.list_scenarios()["scenarios"]}
    return message


def imported(store: ScenarioStore, path: Path) -> dict[str, list[dict[str, Any]]]:
    store.import_scenario(path, "good", format="synthea-csv", overwrite=True)
    entities: dict[str, list[dict[str, Any]]] = store.load_scenario("good")["entities"]
    return entities


def test_an_unclosed_quote_is_named_not_swallowing_the_rest(store: ScenarioStore, tmp_path: Path) -> None:
    # Python's csv reads to the end of the file inside the quotes: p2 and p3 vanished into p1's name.
    csv = folder(tmp_path, {"patients.csv": 'Id,FIRST\np1,"Ann\np2,Bob\np3,Cy\n'})
    refused(store, csv, "patients.csv", "line 2", "quote")


def test_text_after_a_closing_quote_is_named(store: ScenarioStore, tmp_path: Path) -> None:
    refused(store, folder(tmp_path, {"patients.csv": 'Id,FIRST\np1,Ann\np2,"Bo"b\n'}), "patients.csv", "line 3")


@pytest.mark.parametrize(
    ("header", "needle"),
    [("Id,FIRST,FIRST", "'FIRST' twice"), ("Id,first,FIRST", "'FIRST' twice"), ("Id,,FIRST", "column 2 has no name")],
)
def test_a_header_that_would_lose_a_column_is_named(
    store: ScenarioStore, tmp_path: Path, header: str, needle: str
) -> None:
    refused(store, folder(tmp_path, {"patients.csv": f"{header}\np1,Ann,Bob\n"}), "patients.csv", "line 1", needle)


def test_header_names_are_read_without_surrounding_spaces(store: ScenarioStore, tmp_path: Path) -> None:
    found = imported(store, folder(tmp_path, {"patients.csv": " Id , FIRST ,Extra \np1,Ann,x\n"}))
    assert found["patients"] == [{"mrn": "p1", "patient_id": "p1", "name": {"given_name": "Ann"}, "Extra": "x"}]


def test_a_value_longer_than_csv_s_default_limit_is_read(store: ScenarioStore, tmp_path: Path) -> None:
    long = "A" * 200_000  # Python's csv refuses fields over 128 KiB by default
    found = imported(store, folder(tmp_path, {"patients.csv": "Id,NOTE\np1," + long + "\n"}))
    assert found["patients"][0]["NOTE"] == long


@pytest.mark.parametrize(
    ("name", "kept"),
    [("care-plans 2.csv", "synthea_care_plans_2"), ("Imaging Studies.CSV", "synthea_imaging_studies")],
)
def test_files_kept_whole_get_a_valid_type_name(store: ScenarioStore, tmp_path: Path, name: str, kept: str) -> None:
    found = imported(store, folder(tmp_path, {"patients.csv": "Id\np1\n", name: "Id,X\nc1,1\n"}))
    assert found[kept] == [{"Id": "c1", "X": "1"}]


def test_a_file_name_that_makes_no_type_name_is_named(store: ScenarioStore, tmp_path: Path) -> None:
    csv = folder(tmp_path, {"patients.csv": "Id\np1\n", "données.csv": "Id,X\nc1,1\n"})
    refused(store, csv, "données.csv", "rename")


def test_two_files_whose_names_differ_only_in_case_are_named(store: ScenarioStore, tmp_path: Path) -> None:
    csv = folder(tmp_path, {"patients.csv": "Id\np1\n", "Patients.csv": "Id\np2\n"})
    refused(store, csv, "patients.csv", "Patients.csv")


def test_a_byte_that_is_not_utf8_names_its_line(store: ScenarioStore, tmp_path: Path) -> None:
    rows = "".join(f"p{n},Ann\n" for n in range(3000)).encode()  # past the first block read
    csv = folder(tmp_path, {"patients.csv": b"Id,FIRST\n" + rows + b"p9,Jos\xe9\n"})
    refused(store, csv, "patients.csv", "line 3002", "not UTF-8")


def test_a_patient_without_an_id_has_no_null_fields(store: ScenarioStore, tmp_path: Path) -> None:
    found = imported(store, folder(tmp_path, {"patients.csv": "Id,FIRST\n,Ann\n"}))
    assert found["patients"] == [{"name": {"given_name": "Ann"}}]


_COLUMN = st.from_regex(r"[A-Za-z][A-Za-z0-9_ ]{0,8}[A-Za-z0-9_]", fullmatch=True)
# A bare carriage return is left out: Python's writer does not quote it (a reader then takes it
# for a line end); one in a quoted value is in the samples.
_VALUE = st.text(
    st.characters(blacklist_categories=["Cs"], blacklist_characters="\x00\r"), max_size=12
) | st.sampled_from(["a,b", '"quoted"', "two\nlines", "crlf\r\nend", "cr\ralone\n", " padded ", "é中😀", '",\n"'])


# One store for every example: each import replaces the scenario (overwrite=True).
@settings(max_examples=examples(60), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    columns=st.lists(_COLUMN, min_size=1, max_size=4, unique_by=str.upper),
    data=st.data(),
    bom=st.booleans(),
    newline=st.sampled_from(["\n", "\r\n"]),
)
def test_any_csv_values_come_back_exactly(
    store: ScenarioStore, columns: list[str], data: st.DataObject, bom: bool, newline: str
) -> None:
    rows = data.draw(st.lists(st.lists(_VALUE, min_size=len(columns), max_size=len(columns)), min_size=1, max_size=4))
    text = io.StringIO()
    writer = csv.writer(text, lineterminator=newline)
    writer.writerow(columns)
    writer.writerows(rows)
    with tempfile.TemporaryDirectory() as scratch:
        where = folder(
            Path(scratch), {"patients.csv": "Id\np1\n", "notes.csv": ("\ufeff" if bom else "") + text.getvalue()}
        )
        found = imported(store, where)
    # Kept whole (an unmapped file), by column name; empty values are left out as for every
    # file (a row of empty values is kept, empty).
    expected = [{c: v for c, v in zip(columns, row, strict=True) if v != ""} for row in rows]
    assert found["synthea_notes"] == expected


def test_absent_or_empty_columns_give_no_null_or_empty_fields(store: ScenarioStore, tmp_path: Path) -> None:
    files = {
        "patients.csv": "Id\np1\n",
        "encounters.csv": "Id,PATIENT,ENCOUNTERCLASS\ne1,p1,\n",
        "observations.csv": "PATIENT,CATEGORY,CODE,VALUE\np1,vital-signs,8867-4,72\n",
    }
    found = imported(store, folder(tmp_path, files))
    assert found["encounters"] == [{"encounter_id": "e1", "patient_mrn": "p1", "status": "in-progress"}]
    assert found["vital_signs"] == [{"patient_mrn": "p1", "CATEGORY": "vital-signs", "heart_rate": 72.0}]


def test_hidden_files_are_passed_over_as_in_the_fhir_import(store: ScenarioStore, tmp_path: Path) -> None:
    # macOS leaves "._patients.csv" (binary) beside each file it copies to another file system.
    files: dict[str, str | bytes] = {"patients.csv": "Id\np1\n", "._patients.csv": b"\x00\x05\x16\x07\xff"}
    assert list(imported(store, folder(tmp_path, files))) == ["patients"]


@pytest.mark.parametrize(
    ("name", "header"),
    [("patients.csv", "Id,mrn"), ("patients.csv", "Id,FIRST,name"), ("encounters.csv", "Id,PATIENT,status")],
)
def test_an_unknown_column_named_like_a_field_it_would_overwrite_is_named(
    store: ScenarioStore, tmp_path: Path, name: str, header: str
) -> None:
    files = {"patients.csv": "Id\np1\n", name: f"{header}\n" + ",".join(["x"] * len(header.split(","))) + "\n"}
    refused(store, folder(tmp_path, files), name, "line 1", repr(header.split(",")[-1]))


def test_a_header_only_file_duplicate_ids_and_ragged_rows(store: ScenarioStore, tmp_path: Path) -> None:
    # A header alone imports nothing of that file; rows with one Id are both kept (nothing is lost;
    # check_scenario names the duplicate); a row with more or fewer values than the header is named.
    found = imported(store, folder(tmp_path / "a", {"patients.csv": "Id,FIRST\n", "allergies.csv": "PATIENT\n"}))
    assert found == {}
    found = imported(store, folder(tmp_path / "b", {"patients.csv": "Id,FIRST\np1,Ann\np1,Bob\n"}))
    assert [p["name"]["given_name"] for p in found["patients"]] == ["Ann", "Bob"]
    refused(store, folder(tmp_path / "c", {"patients.csv": "Id,FIRST\np1,Ann,x\n"}), "line 2", "3 values")
    refused(store, folder(tmp_path / "d", {"patients.csv": "Id,FIRST\np1,Ann\np2\n"}), "line 3", "1 values")
