"""Issue 23 point 4 against hostile and unusual input: ``import_scenario(format="fhir")``
gives a clear error naming the file and the line or entry, or imports correctly, and never
saves half.

Real files, a real DuckDB store (the FHIR reading is engine-neutral; tests/test_fhir_exchange
runs the store's side on both engines).
"""

from __future__ import annotations

import copy
import datetime as dt
import json
import tempfile
import uuid
from pathlib import Path
from typing import Any

import orjson
import pytest
from fhir.resources.R4B import get_fhir_model_class
from hypothesis import given, settings
from hypothesis import strategies as st

from healthsim.state import ScenarioStore
from healthsim.state.errors import InvalidScenarioFileError
from healthsim.state.exchange.fhir.bundles import bundle_of
from healthsim.state.exchange.fhir.common import EXTENSION_URL, deeper, nests_deeper
from healthsim.state.exchange.fhir.load import FhirSource
from healthsim.state.exchange.fhir.mapping import entity_resources
from helpers.examples import examples

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


# --- references inside a Bundle ----------------------------------------------------------------

URN_P = "urn:uuid:7f3c1e2a-0000-4000-8000-000000000001"
URN_E = "urn:uuid:7f3c1e2a-0000-4000-8000-000000000002"


def _encounter_of(subject: str, **more: Any) -> dict[str, Any]:
    return {"resourceType": "Encounter", "status": "finished", "subject": {"reference": subject}, **more}


def test_a_transaction_of_posts_without_ids_keeps_its_links(store: ScenarioStore, tmp_path: Path) -> None:
    # The usual way to create resources on a server: POST entries, no ids, urn:uuid: fullUrls
    # that the references name. The patient must be the one the encounter points at.
    posts = bundle(
        [
            {
                "fullUrl": URN_P,
                "resource": {"resourceType": "Patient"},
                "request": {"method": "POST", "url": "Patient"},
            },
            {"fullUrl": URN_E, "resource": _encounter_of(URN_P), "request": {"method": "POST", "url": "Encounter"}},
        ],
        "transaction",
    )
    found = imported(store, write(tmp_path / "t.json", posts))
    (patient,) = found["patients"]
    (encounter,) = found["encounters"]
    assert patient["mrn"] == URN_P.removeprefix("urn:uuid:")
    assert encounter["patient_mrn"] == patient["mrn"]
    assert encounter["encounter_id"] == URN_E.removeprefix("urn:uuid:")


def test_a_full_url_other_than_the_id_still_links(store: ScenarioStore, tmp_path: Path) -> None:
    entries = [
        {"fullUrl": URN_P, "resource": PATIENT},
        {"fullUrl": URN_E, "resource": _encounter_of(URN_P, id="e1")},
        {"fullUrl": "http://example.org/fhir/Patient/p9", "resource": {**PATIENT, "id": "p9"}},
        {"resource": _encounter_of("http://example.org/fhir/Patient/p9", id="e2")},
    ]
    found = imported(store, write(tmp_path / "c.json", bundle(entries, "transaction")))
    assert {e["encounter_id"]: e["patient_mrn"] for e in found["encounters"]} == {"e1": "p1", "e2": "p9"}
    assert sorted(p["mrn"] for p in found["patients"]) == ["p1", "p9"]


@pytest.mark.parametrize("depth", [150, 1000])
def test_a_resource_nesting_deeper_than_a_scenario_holds_is_named(
    store: ScenarioStore, tmp_path: Path, depth: int
) -> None:
    deep = "[" * depth + "]" * depth
    line = '{"resourceType":"Patient","id":"p","x":' + deep + "}"
    refused(store, write(tmp_path / "d.ndjson", json.dumps(PATIENT) + "\n" + line + "\n"), "line 2", "deeper than")
    text = json.dumps(bundle([{"resource": PATIENT}, {"resource": "@"}], "transaction")).replace('"@"', line)
    refused(store, write(tmp_path / "d.json", text), "entry 1", "deeper than")
    # Brackets inside strings are text, not nesting.
    quoted = {**PATIENT, "x": deep}
    assert imported(store, write(tmp_path / "s.ndjson", json.dumps(quoted)))["patients"][0]["_fhir"] == {"x": deep}


def _depth(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max(map(_depth, value.values()), default=0)
    if isinstance(value, list):
        return 1 + max(map(_depth, value), default=0)
    return 0


_TEXT = st.text(alphabet='{}[]"\\ab\n', max_size=6)
_JSON = st.recursive(
    st.none() | st.integers(-(2**63), 2**63 - 1) | _TEXT,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_TEXT, inner, max_size=3),
    max_leaves=20,
)


@settings(max_examples=examples(300), deadline=None)
@given(_JSON, st.integers(0, 8))
def test_the_depth_checks_count_brackets_outside_strings_only(value: Any, limit: int) -> None:
    expected = _depth(value) > limit
    assert deeper(value, limit) is expected
    assert nests_deeper(orjson.dumps(value), limit) is expected
    assert nests_deeper(json.dumps(value, indent=1).encode(), limit) is expected


# --- our own extension, corrupt or hostile -----------------------------------------------------


def _ours(value: Any) -> dict[str, Any]:
    text = value if isinstance(value, str) else json.dumps(value)
    return {**PATIENT, "extension": [{"url": EXTENSION_URL, "valueString": text}]}


@pytest.mark.parametrize(
    ("carry", "needle"),
    [
        ("{not json", "not JSON"),
        ("[1, 2]", "not an object"),
        ({"type": 5}, "type"),
        ({"type": ""}, "type"),
        ({"type": "no such/type"}, "type"),
        ({"type": "x" * 500}, "type"),
        ({"type": "patients", "drop": 5}, "drop"),
        ({"type": "patients", "drop": [[1]]}, "drop"),
        ({"type": "patients", "fields": [1]}, "fields"),
    ],
)
def test_a_corrupt_healthsim_extension_is_named_not_dropped(
    store: ScenarioStore, tmp_path: Path, carry: Any, needle: str
) -> None:
    message = refused(store, write(tmp_path / "x.ndjson", json.dumps(_ours(carry))), "line 1", "HealthSim extension")
    assert needle in message


def test_an_extension_value_that_is_not_a_string_is_named(store: ScenarioStore, tmp_path: Path) -> None:
    resource = {**PATIENT, "extension": [{"url": EXTENSION_URL, "valueInteger": 5}]}
    refused(store, write(tmp_path / "v.json", bundle([{"resource": resource}])), "entry 0", "HealthSim extension")


def test_an_extension_type_in_another_spelling_is_read_as_its_type(store: ScenarioStore, tmp_path: Path) -> None:
    found = imported(store, write(tmp_path / "t.ndjson", json.dumps(_ours({"type": "LabResult"}))))
    assert list(found) == ["lab_results"]


# --- kinds of Bundle ---------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["document", "message", "collection", "searchset", "batch", "transaction"])
def test_bundles_of_resources_import(store: ScenarioStore, tmp_path: Path, kind: str) -> None:
    found = imported(store, write(tmp_path / "k.json", bundle([{"resource": PATIENT}], kind)))
    assert [p["mrn"] for p in found["patients"]] == ["p1"]


@pytest.mark.parametrize(
    ("kind", "needle"),
    [
        ("history", "versions"),
        ("transaction-response", "response"),
        ("batch-response", "response"),
        ("bogus", "not a Bundle type"),
        (5, "not a Bundle type"),
    ],
)
def test_bundles_that_hold_no_population_are_refused(
    store: ScenarioStore, tmp_path: Path, kind: Any, needle: str
) -> None:
    refused(store, write(tmp_path / "k.json", bundle([{"resource": PATIENT}], kind)), "the Bundle", needle)


def test_an_entry_without_a_resource_says_so(store: ScenarioStore, tmp_path: Path) -> None:
    entries = [{"resource": PATIENT}, {"fullUrl": "urn:uuid:x", "request": {"method": "DELETE", "url": "Patient/p"}}]
    refused(store, write(tmp_path / "e.json", bundle(entries, "batch")), "entry 1", "no resource")


def test_a_nested_bundle_is_kept_whole_as_documented(store: ScenarioStore, tmp_path: Path) -> None:
    inner = bundle([{"resource": PATIENT}])
    found = imported(store, write(tmp_path / "n.json", bundle([{"resource": inner}])))
    assert found == {"fhir_bundle": [inner]}


# --- export: odd ids and values through a transaction Bundle and back ---------------------------

_ODD_IDS = st.text(min_size=1, max_size=30).filter(str.strip) | st.sampled_from(
    ["a/b", " a b ", "Patient/x", "urn:uuid:x", "Practitioner?identifier=s|v", "#c", "x" * 3000, "1", "é中😀"]
)
_ODD_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=8,
)


def _as_multiset(pairs: list[tuple[str, dict[str, Any]]]) -> list[str]:
    return sorted(json.dumps([t, e], sort_keys=True) for t, e in pairs)


@settings(max_examples=examples(300), deadline=None)
@given(
    mrn=_ODD_IDS,
    encounter=_ODD_IDS,
    extra=st.dictionaries(st.sampled_from(["birth_date", "gender", "name", "address", "note", "status"]), _ODD_VALUES),
)
def test_odd_ids_and_values_survive_an_export_and_its_import(mrn: str, encounter: str, extra: Any) -> None:
    entities = [
        ("patients", {"mrn": mrn, **extra}),
        ("encounters", {"encounter_id": encounter, "patient_mrn": mrn, "status": "finished", **extra}),
        ("diagnoses", {"patient_mrn": mrn, "encounter_id": encounter, "code": "E11.9", **extra}),
        ("care_gaps", {"patient_mrn": mrn, **extra}),
        # A patient outside the scenario, and references kept from a source to resources elsewhere:
        # display-only in the bundle, and still given back.
        ("diagnoses", {"patient_mrn": mrn + "-not-here", "code": "E11.9"}),
        (
            "encounters",
            {"encounter_id": "E-2", "patient_mrn": mrn, "_fhir": {"serviceProvider": {"reference": encounter}}},
        ),
    ]
    entities = json.loads(json.dumps(entities))  # as stored: JSON values
    resources = []
    for number, (entity_type, entity) in enumerate(entities):
        resources += entity_resources(
            copy.deepcopy(entity), entity_type, str(uuid.UUID(int=number)), dt.date(2025, 1, 1)
        )
    lines = "".join(json.dumps(r) + "\n" for r in resources)  # Bulk, before the bundle rewrites them
    written = bundle_of(resources)
    for entry in written["entry"]:
        get_fhir_model_class(entry["resource"]["resourceType"]).model_validate(entry["resource"])
    with tempfile.TemporaryDirectory() as scratch:
        for name, text in (("Patient-x.json", json.dumps(written)), ("all.ndjson", lines)):
            path = Path(scratch) / name
            path.write_text(text)
            back = [(entity_type, entity) for entity_type, chunk in FhirSource(path).typed() for entity in chunk]
            assert _as_multiset(back) == _as_multiset(entities), name


# --- conditional references --------------------------------------------------------------------

MRN_SYSTEM = "http://hospital.example/mrn"


def _with_mrn(rid: str, mrn: str) -> dict[str, Any]:
    return {**PATIENT, "id": rid, "identifier": [{"system": MRN_SYSTEM, "value": mrn}]}


def test_a_conditional_reference_to_one_resource_of_the_bundle_links_to_it(
    store: ScenarioStore, tmp_path: Path
) -> None:
    entries = [
        {"resource": _with_mrn("p1", "M-1")},
        {"resource": _with_mrn("p2", "M-2")},
        {"resource": _encounter_of(f"Patient?identifier={MRN_SYSTEM}|M-2", id="e1")},
        {"resource": _encounter_of("Patient?identifier=M-1", id="e2")},  # no system: any system
    ]
    found = imported(store, write(tmp_path / "c.json", bundle(entries, "transaction")))
    assert {e["encounter_id"]: e["patient_mrn"] for e in found["encounters"]} == {"e1": "p2", "e2": "p1"}


def test_a_conditional_reference_matching_nothing_keeps_the_identifier(store: ScenarioStore, tmp_path: Path) -> None:
    entries = [{"resource": _encounter_of(f"Patient?identifier={MRN_SYSTEM}|M-9&active=true", id="e1")}]
    found = imported(store, write(tmp_path / "c.json", bundle(entries, "transaction")))
    assert found["encounters"][0]["patient_mrn"] == "M-9"


@pytest.mark.parametrize("resource", ["x", None, [1]])
def test_an_entry_that_is_no_resource_is_named_before_references_are_resolved(
    store: ScenarioStore, tmp_path: Path, resource: Any
) -> None:
    entries = [{"resource": resource}, {"resource": _encounter_of(f"Patient?identifier={MRN_SYSTEM}|M-1", id="e1")}]
    refused(store, write(tmp_path / "c.json", bundle(entries, "transaction")), "entry 0", "not a FHIR resource")


def test_a_conditional_reference_matching_several_is_named(store: ScenarioStore, tmp_path: Path) -> None:
    entries = [
        {"resource": _with_mrn("p1", "M-1")},
        {"resource": _with_mrn("p2", "M-1")},
        {"resource": _encounter_of(f"Patient?identifier={MRN_SYSTEM}|M-1", id="e1")},
    ]
    refused(store, write(tmp_path / "c.json", bundle(entries, "transaction")), "entry 2", "matches 2", "M-1")


@pytest.mark.parametrize("number", ["NaN", "Infinity", "-Infinity", "1e400"])
def test_numbers_json_cannot_hold_are_named_on_the_exact_path_too(
    store: ScenarioStore, tmp_path: Path, number: str
) -> None:
    # A run of 19 digits sends the text to the exact parser, which read NaN and 1e400 (inf)
    # where orjson refuses them; the store then refused the entity without naming the file.
    line = '{"resourceType":"Patient","id":"p","a":12345678901234567890123,"b":' + number + "}"
    refused(store, write(tmp_path / "n.ndjson", line), "line 1", "not JSON")
    carry = json.dumps({"type": "patients", "fields": {"a": 12345678901234567890123, "b": 1}}).replace(
        " 1}", number + "}"
    )
    refused(store, write(tmp_path / "c.ndjson", json.dumps(_ours(carry))), "line 1", "not JSON")


def test_a_resource_file_whose_first_line_is_no_resource_is_not_passed_over(
    store: ScenarioStore, tmp_path: Path
) -> None:
    # A Bulk log (log.ndjson) is passed over; Patient.000.ndjson says what it holds, so a bad
    # first line there is an error, not a silently skipped file of patients.
    bulk = tmp_path / "bulk"
    bulk.mkdir()
    write(bulk / "log.ndjson", '{"exportId": "e1", "eventId": "kickoff"}\n')
    write(bulk / "Encounter.ndjson", json.dumps(_encounter_of("Patient/p1", id="e1")) + "\n")
    write(bulk / "Patient.000.ndjson", '{"id": "p0"}\n' + json.dumps(PATIENT) + "\n")
    message = refused(store, bulk, "line 1", "no resourceType")
    assert "Patient.000.ndjson" in message
    (bulk / "Patient.000.ndjson").write_text(json.dumps(PATIENT) + "\n")
    store.import_scenario(bulk, "good", format="fhir")
    loaded = store.load_scenario("good")
    assert loaded["metadata"]["provenance"]["files_passed_over"] == ["log.ndjson"]
    assert [p["mrn"] for p in loaded["entities"]["patients"]] == ["p1"]


def test_resources_without_ids_give_entities_without_null_ids(store: ScenarioStore, tmp_path: Path) -> None:
    lines = [
        {"resourceType": "Patient", "gender": "female"},
        {"resourceType": "Encounter", "status": "finished"},
        {"resourceType": "Claim", "status": "active"},
        {"resourceType": "ResearchSubject", "status": "on-study"},
    ]
    found = imported(store, write(tmp_path / "n.ndjson", "\n".join(map(json.dumps, lines))))
    assert found["patients"] == [{"gender": "F"}]
    assert found["encounters"][0]["status"] == "finished"
    assert all(None not in entity.values() for entities in found.values() for entity in entities), found


# --- export: what an entity keeps under _fhir, edited by hand -----------------------------------


@pytest.mark.parametrize(
    "kept",
    [
        {"extension": 5},
        {"extension": [{"url": EXTENSION_URL, "valueString": "{}"}, {"url": "http://x.example/e", "valueCode": "a"}]},
    ],
)
@pytest.mark.parametrize("format", ["fhir", "fhir-bundle"])
def test_an_extension_element_kept_by_hand_neither_breaks_the_export_nor_the_round_trip(
    store: ScenarioStore, tmp_path: Path, kept: dict[str, Any], format: str
) -> None:
    entities = {
        "patients": [{"mrn": "M1", "_fhir": kept}],
        "encounters": [{"encounter_id": "E1", "patient_mrn": "M1", "status": "finished", "_fhir": kept}],
    }
    store.save_scenario("kept", entities)
    out = store.export_scenario("kept", tmp_path / "out", format=format)
    for file in out.glob("*.*json"):
        if file.name in ("manifest.json", "export-report.json") or file.name.startswith("."):
            continue
        text = file.read_text()
        lines = [json.loads(x) for x in text.splitlines()] if file.suffix == ".ndjson" else json.loads(text)["entry"]
        for item in lines:
            resource = item.get("resource", item)
            get_fhir_model_class(resource["resourceType"]).model_validate(resource)
            ours = [e for e in resource["extension"] if e["url"] == EXTENSION_URL]
            assert len(ours) == 1
    store.import_scenario(out, "back", format="fhir")
    assert store.load_scenario("back")["entities"] == entities


def test_references_inside_a_nested_bundle_resolve_in_that_bundle(store: ScenarioStore, tmp_path: Path) -> None:
    # A document Bundle sent in a transaction: its urn:uuid: references name its own entries.
    inner = bundle(
        [
            {"fullUrl": URN_P, "resource": {"resourceType": "Patient"}},
            {"fullUrl": URN_E, "resource": _encounter_of(URN_P)},
        ],
        "document",
    )
    outer = bundle([{"fullUrl": "urn:uuid:doc", "resource": inner, "request": {"method": "POST", "url": "Bundle"}}])
    outer["type"] = "transaction"
    found = imported(store, write(tmp_path / "n.json", outer))
    assert found == {"fhir_bundle": [{**inner, "id": "doc"}]}  # kept whole, with its fullUrl's id


@pytest.mark.parametrize(
    ("code", "kind"), [("care_gaps", "care_gaps"), ("CareGap", "care_gap"), ("no such/type", "fhir_basic")]
)
def test_a_basic_resource_names_a_valid_type_or_is_kept_whole(
    store: ScenarioStore, tmp_path: Path, code: str, kind: str
) -> None:
    basic = {
        "resourceType": "Basic",
        "id": "b1",
        "code": {"coding": [{"system": "https://healthsim.dev/fhir/CodeSystem/entity-type", "code": code}]},
    }
    assert list(imported(store, write(tmp_path / "b.ndjson", json.dumps(basic)))) == [kind]


@pytest.mark.parametrize("target", ["Patient/../../escaped", "Patient/" + "x" * 300])
def test_a_bundle_file_name_is_safe_whatever_a_kept_reference_says(
    store: ScenarioStore, tmp_path: Path, target: str
) -> None:
    # A research subject without a patient of ours keeps its source's individual, by hand here:
    # the bundle was named after it, a path ("Patient-../../escaped.json") that failed the export.
    entities = {"subjects": [{"subject_id": "S1", "_fhir": {"individual": {"reference": target}}}]}
    store.save_scenario("subj", entities)
    out = store.export_scenario("subj", tmp_path / "deep" / "out", format="fhir-bundle")
    written = [p for p in (tmp_path / "deep").rglob("*") if p.is_file()]
    assert all(p.parent == out for p in written), written
    assert all(len(p.name) < 100 for p in written)
    store.import_scenario(out, "back", format="fhir")
    assert store.load_scenario("back")["entities"] == entities


def test_a_bundle_export_of_synthea_imports_back_equal(store: ScenarioStore, tmp_path: Path) -> None:
    # Synthea's encounters keep references to organizations and practitioners of other bundles;
    # in our bundles they become display-only (every reference resolves inside its bundle), and
    # the entities must still come back equal (issue 23: the round trip, or named in the report).
    store.import_scenario(Path(__file__).parent / "fixtures" / "synthea" / "output-fhir", "syn", format="fhir")
    folder = store.export_scenario("syn", tmp_path / "bundles", format="fhir-bundle")
    assert json.loads((folder / "export-report.json").read_text())["skipped"] == []
    store.import_scenario(folder, "again", format="fhir")
    first, again = (store.load_scenario(n)["entities"] for n in ("syn", "again"))
    for entity_type, entities in first.items():
        ordered = [sorted(json.dumps(e, sort_keys=True) for e in side) for side in (entities, again[entity_type])]
        assert ordered[0] == ordered[1], entity_type


# --- the wrong folder --------------------------------------------------------------------------


def test_the_wrong_folder_says_which_to_give(store: ScenarioStore, tmp_path: Path) -> None:
    output = tmp_path / "output"  # Synthea's output folder: fhir/ and csv/ inside
    (output / "fhir").mkdir(parents=True)
    (output / "csv").mkdir()
    write(output / "fhir" / "Patient.ndjson", json.dumps(PATIENT))
    write(output / "csv" / "patients.csv", "Id\np1\n")
    refused(store, output, "fhir", "give that folder")
    refused(store, output / "csv", "synthea-csv")
    with pytest.raises(InvalidScenarioFileError, match="give that folder"):
        store.import_scenario(output, "bad", format="synthea-csv")
    with pytest.raises(InvalidScenarioFileError, match="format='fhir'"):
        store.import_scenario(output / "fhir", "bad", format="synthea-csv")


@pytest.mark.parametrize("marker", ['{"scenario": ""}', '{"scenario": "' + "x" * 1000 + '"}', "[1]", "not json"])
def test_a_hostile_export_marker_falls_back_to_the_folder_name(
    store: ScenarioStore, tmp_path: Path, marker: str
) -> None:
    bulk = tmp_path / "mybulk"
    bulk.mkdir()
    write(bulk / "Patient.ndjson", json.dumps(PATIENT))
    write(bulk / ".healthsim-export.json", marker)
    store.import_scenario(bulk, format="fhir")
    assert names(store) == {"mybulk"}


def test_compressed_files_are_named_not_silently_left_out(store: ScenarioStore, tmp_path: Path) -> None:
    import gzip

    bulk = tmp_path / "bulk"
    bulk.mkdir()
    write(bulk / "Patient.ndjson", json.dumps(PATIENT))
    (bulk / "Encounter.ndjson.gz").write_bytes(gzip.compress(json.dumps(_encounter_of("Patient/p1")).encode()))
    write(bulk / "README.md", "other files are passed over")
    refused(store, bulk, "Encounter.ndjson.gz", "decompress")
    refused(store, bulk / "Encounter.ndjson.gz", "decompress")


def test_a_value_the_store_cannot_hold_is_named_by_file_and_line(store: ScenarioStore, tmp_path: Path) -> None:
    # A lone surrogate reaches the entity on the exact parser's path (a 19-digit run in the line);
    # the store refuses it, and the error must say where it came from.
    line = '{"resourceType":"Patient","id":"p2","n":12345678901234567890123,"note":"a\\ud800b"}'
    message = refused(store, write(tmp_path / "s.ndjson", json.dumps(PATIENT) + "\n" + line + "\n"), "line 2")
    assert "Patient/p2" in message and "surrogate" in message


@pytest.mark.parametrize(("encoding", "suffix"), [("utf-16", ".json"), ("latin-1", ".json"), ("latin-1", ".ndjson")])
def test_text_that_is_not_utf8_says_so(store: ScenarioStore, tmp_path: Path, encoding: str, suffix: str) -> None:
    text = json.dumps({**PATIENT, "name": [{"family": "Muñoz"}]}, ensure_ascii=False)
    if suffix == ".json":
        text = json.dumps(bundle([{"resource": "@"}])).replace('"@"', text)
    refused(store, write(tmp_path / f"e{suffix}", text.encode(encoding)), "not UTF-8", "convert")


@pytest.mark.parametrize(
    "subject", ["Patient/p1/_history/2", "http://example.org/fhir/Patient/p1/_history/7", "Patient/p1"]
)
def test_a_versioned_reference_names_its_resource(store: ScenarioStore, tmp_path: Path, subject: str) -> None:
    lines = [PATIENT, _encounter_of(subject, id="e1")]
    found = imported(store, write(tmp_path / "v.ndjson", "\n".join(map(json.dumps, lines))))
    assert found["encounters"][0]["patient_mrn"] == "p1"


@pytest.mark.parametrize("format", ["fhir", "synthea-csv"])
def test_a_folder_that_cannot_be_listed_is_a_named_error(
    store: ScenarioStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, format: str
) -> None:
    # The tests run as root, whom no permission stops: the listing's refusal is simulated.
    unreadable = tmp_path / "locked"
    unreadable.mkdir()

    def refuse(self: Path) -> Any:
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "iterdir", refuse)
    refused(store, unreadable, "cannot be read", "Permission denied", format=format)


@pytest.mark.parametrize(
    ("format", "name", "text"), [("fhir", "P.ndjson", json.dumps(PATIENT)), ("synthea-csv", "patients.csv", "Id\np1\n")]
)
def test_a_file_that_cannot_be_read_is_a_named_error(
    store: ScenarioStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, format: str, name: str, text: str
) -> None:
    # As above: root reads every file, so the refusal to open this one is simulated.
    source = tmp_path / "in"
    source.mkdir()
    write(source / name, text)
    opened = Path.open

    def refuse(self: Path, *args: Any, **kwargs: Any) -> Any:
        if self.name == name:
            raise PermissionError(13, "Permission denied", str(self))
        return opened(self, *args, **kwargs)

    monkeypatch.setattr(Path, "open", refuse)
    refused(store, source, name, "cannot be read", "Permission denied", format=format)


def test_empty_folders_other_files_and_symlinks(store: ScenarioStore, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    refused(store, empty, "holds no FHIR file")
    bulk = tmp_path / "bulk"
    bulk.mkdir()
    outside = write(tmp_path / "elsewhere.ndjson", json.dumps(PATIENT))
    (bulk / "Patient.ndjson").symlink_to(outside)  # followed: it is a file
    (bulk / "dangling.ndjson").symlink_to(tmp_path / "nowhere.ndjson")  # passed over: no file
    (bulk / "loop.json").symlink_to(bulk / "loop.json")  # passed over: no file
    (bulk / "sub.json").mkdir()  # a folder named like a file: passed over
    write(bulk / "README.md", "notes")
    write(bulk / "data.csv", "a,b\n1,2\n")
    assert [p["mrn"] for p in imported(store, bulk)["patients"]] == ["p1"]
