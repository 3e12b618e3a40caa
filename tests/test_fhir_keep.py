"""Issue 23, "nothing lost either way": what an imported resource says beyond its
canonical entity (Encounter.serviceProvider, extensions, identifiers beyond the first…)
is kept under the entity's ``_fhir`` and written back by the export.

Real Synthea bundles (tests/fixtures/synthea, see SOURCES.md), the official client of the
store, real files.
"""

from __future__ import annotations

import copy
import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest
from fhir.resources.R4B import get_fhir_model_class
from hypothesis import given, settings
from hypothesis import strategies as st

from healthsim.state import ScenarioStore
from healthsim.state.errors import InvalidScenarioFileError
from healthsim.state.exchange.fhir.carry import same
from healthsim.state.exchange.fhir.common import EXTENSION_URL
from healthsim.state.exchange.fhir.keep import regenerated
from healthsim.state.exchange.fhir.mapping import entity_resources, resource_entity
from helpers.examples import examples

SYNTHEA = Path(__file__).parent / "fixtures" / "synthea"
SOURCE = SYNTHEA / "output-fhir" / "Devin82_Cole117_3af3708d-41f1-cd80-f3dd-ec5ac76072bf.json"


def source_resources() -> dict[str, dict[str, Any]]:
    bundle = json.loads(SOURCE.read_text())
    return {e["resource"]["id"]: e["resource"] for e in bundle["entry"]}


def ndjson(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def by_fhir_id(entities: dict[str, list[dict[str, Any]]], entity_type: str) -> dict[str, dict[str, Any]]:
    return {e["fhir_id"]: e for e in entities[entity_type] if "fhir_id" in e}


def ours_stripped(resource: dict[str, Any]) -> dict[str, Any]:
    """The resource without the HealthSim extension."""
    out = dict(resource)
    out["extension"] = [x for x in resource.get("extension", []) if x.get("url") != EXTENSION_URL]
    if not out["extension"]:
        del out["extension"]
    return out


def test_import_keeps_what_has_no_canonical_field(tmp_path: Path) -> None:
    store = ScenarioStore(tmp_path / "s.duckdb")
    store.import_scenario(SOURCE, "syn", format="fhir")
    entities = store.load_scenario("syn")["entities"]
    source = source_resources()
    patient = by_fhir_id(entities, "patients")["3af3708d-41f1-cd80-f3dd-ec5ac76072bf"]
    kept = patient["_fhir"]
    assert kept["extension"] == source["3af3708d-41f1-cd80-f3dd-ec5ac76072bf"]["extension"]  # race, birth place…
    assert kept["identifier"] == source["3af3708d-41f1-cd80-f3dd-ec5ac76072bf"]["identifier"]  # all five
    encounter = by_fhir_id(entities, "encounters")["01cadf9d-92a0-3bdc-2a26-5d8c981df4eb"]
    assert encounter["_fhir"]["serviceProvider"] == source["01cadf9d-92a0-3bdc-2a26-5d8c981df4eb"]["serviceProvider"]
    assert encounter["_fhir"]["type"] == source["01cadf9d-92a0-3bdc-2a26-5d8c981df4eb"]["type"]  # the SNOMED code
    assert "subject" not in encounter["_fhir"] and "id" not in encounter["_fhir"]  # re-pointed at our ids


def test_export_writes_the_kept_elements_back_and_import_gives_equal_entities(tmp_path: Path) -> None:
    store = ScenarioStore(tmp_path / "s.duckdb")
    store.import_scenario(SOURCE, "syn", format="fhir")
    folder = store.export_scenario("syn", tmp_path / "out", format="fhir")
    source = source_resources()
    patients = {p["identifier"][0]["value"]: p for p in ndjson(folder / "Patient.ndjson")}
    patient = ours_stripped(patients["3af3708d-41f1-cd80-f3dd-ec5ac76072bf"])
    original = source["3af3708d-41f1-cd80-f3dd-ec5ac76072bf"]
    assert patient["extension"] == original["extension"]
    for ident in original["identifier"]:  # identifiers beyond the first: there again, after ours
        assert ident in patient["identifier"]
    assert patient["meta"] == original["meta"] and patient["maritalStatus"] == original["maritalStatus"]
    encounters = {
        next(i["value"] for i in e["identifier"] if i["system"].endswith("/id/encounters")): e
        for e in ndjson(folder / "Encounter.ndjson")
    }
    encounter = encounters["01cadf9d-92a0-3bdc-2a26-5d8c981df4eb"]
    original = source["01cadf9d-92a0-3bdc-2a26-5d8c981df4eb"]
    assert encounter["serviceProvider"] == original["serviceProvider"]
    assert encounter["type"] == original["type"]  # the SNOMED-coded type, not also our text-only one
    # The kept elements are written once: the extension only marks that there are some.
    carry = json.loads(next(x["valueString"] for x in encounter["extension"] if x["url"] == EXTENSION_URL))
    assert carry["fhir"] == 1 and "_fhir" not in carry.get("fields", {})
    # Every written resource is valid FHIR.
    for path in folder.glob("*.ndjson"):
        for resource in ndjson(path):
            get_fhir_model_class(resource["resourceType"]).model_validate(resource)
    store.import_scenario(folder, "again", format="fhir")
    first, again = (store.load_scenario(n)["entities"] for n in ("syn", "again"))
    assert first == again


def test_bundle_export_of_kept_elements_resolves_inside_and_imports_back(tmp_path: Path) -> None:
    store = ScenarioStore(tmp_path / "s.duckdb")
    store.import_scenario(SYNTHEA / "output-fhir", "syn", format="fhir")
    folder = store.export_scenario("syn", tmp_path / "bundles", format="fhir-bundle", validate=True, strict=True)
    store.import_scenario(folder, "again", format="fhir")  # every reference resolves inside its bundle
    first, again = (store.load_scenario(n)["entities"] for n in ("syn", "again"))
    assert {t: len(v) for t, v in first.items()} == {t: len(v) for t, v in again.items()}
    served = by_fhir_id(again, "encounters")["01cadf9d-92a0-3bdc-2a26-5d8c981df4eb"]["_fhir"]["serviceProvider"]
    assert served["display"] == "GRACEMED HEALTH CLINIC INC"  # its conditional reference is outside the bundle


def test_an_edit_of_the_entity_wins_over_the_kept_element(tmp_path: Path) -> None:
    store = ScenarioStore(tmp_path / "s.duckdb")
    store.import_scenario(SOURCE, "syn", format="fhir")
    data = store.load_scenario("syn")
    for encounter in data["entities"]["encounters"]:
        encounter["status"] = "cancelled"
        encounter["_fhir"]["status"] = "finished"  # a stale kept value is not what the export says
    store.save_scenario("edited", data["entities"])
    folder = store.export_scenario("edited", tmp_path / "out", format="fhir")
    assert {e["status"] for e in ndjson(folder / "Encounter.ndjson")} == {"cancelled"}


def test_entities_without_kept_elements_export_as_before(tmp_path: Path) -> None:
    store = ScenarioStore(tmp_path / "s.duckdb")
    store.save_scenario("plain", {"encounters": [{"encounter_id": "E1", "patient_mrn": "M1", "status": "finished"}]})
    folder = store.export_scenario("plain", tmp_path / "out", format="fhir")
    (encounter,) = ndjson(folder / "Encounter.ndjson")
    carry = json.loads(encounter["extension"][0]["valueString"])
    assert "fhir" not in carry and "serviceProvider" not in encounter
    store.import_scenario(folder, "again", format="fhir")
    assert store.load_scenario("again")["entities"]["encounters"] == [
        {"encounter_id": "E1", "patient_mrn": "M1", "status": "finished"}
    ]


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(10**6), 10**6) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=8,
)
objects = st.dictionaries(
    st.sampled_from(["system", "value", "code", "display", "text", "use"]), json_values, max_size=3
)
# Further elements of an Encounter (of the shapes FHIR gives them: the reader takes the
# resource as valid FHIR) and elements of no such name.
extras = st.fixed_dictionaries(
    {},
    optional={
        "serviceProvider": objects,
        "meta": objects,
        "text": objects,
        "priority": objects,
        "class": objects,
        "period": st.fixed_dictionaries({}, optional={"start": st.sampled_from(["2024-01-01", "x"])}),
        "type": st.lists(objects, max_size=3),
        "identifier": st.lists(objects, max_size=3),
        "extension": st.lists(st.fixed_dictionaries({"url": st.sampled_from(["http://a", "http://b"])}), max_size=2),
    },
) | st.dictionaries(st.text(alphabet="abcdefgh", min_size=1, max_size=6), json_values, max_size=3)


@settings(max_examples=examples(300), deadline=None)
@given(extras)
def test_elsewhere_to_entity_to_resource_and_back_is_exact(extra: dict[str, Any]) -> None:
    """A resource of elsewhere with any further elements: imported, exported, imported
    again gives the same entity (``_fhir`` included), and the export says every kept
    element ours does not write, and every kept list item."""
    source = {"resourceType": "Encounter", "id": "x", "status": "finished", "subject": {"reference": "Patient/p"}}
    source |= extra
    found = resource_entity(copy.deepcopy(source))
    assert found is not None
    entity_type, entity = found
    resources = entity_resources(copy.deepcopy(entity), entity_type, "u", dt.date(2024, 1, 1))
    written = copy.deepcopy(resources[0])
    assert resource_entity(written) == (entity_type, entity)
    ours = regenerated(entity, entity_type)
    assert ours is not None
    for key, value in entity.get("_fhir", {}).items():
        if value is None or value == [] or value == {}:
            continue  # FHIR has no empty elements: kept, not written
        if key not in ours:
            assert resources[0][key] == value if key != "extension" else resources[0][key][: len(value)] == value
        elif isinstance(value, list) and isinstance(ours[key], list):
            assert all(item in resources[0][key] for item in value)


def strictly_equal(a: Any, b: Any) -> bool:
    """The definition: equal as JSON values, types included, walked in Python."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(strictly_equal(v, b[k]) for k, v in a.items())
    if isinstance(a, list):
        return len(a) == len(b) and all(strictly_equal(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


numbers = st.integers(-3, 3) | st.integers(2**63, 2**70) | st.sampled_from([0.0, 1.0, 2.5, -1.0])
leaves = st.none() | st.booleans() | numbers | st.sampled_from(["a", "b", "\ud800"])
nested = st.recursive(
    leaves, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from("xyz"), inner, max_size=3)
)


@settings(max_examples=examples(500), deadline=None)
@given(nested, nested)
def test_same_is_strict_json_equality(a: Any, b: Any) -> None:
    """The fast comparison (C first, orjson texts for equal containers) says what the
    walk says: ``1``, ``1.0`` and ``True`` differ at any depth; huge integers and lone
    surrogates (which orjson cannot write) are walked."""
    assert same(a, b) == strictly_equal(a, b)
    assert same(a, copy.deepcopy(a)) == strictly_equal(a, copy.deepcopy(a))


def test_a_medication_named_only_by_reference_exports_with_it(tmp_path: Path) -> None:
    """HL7's MedicationRequest medrx0302 names its drug by a reference to a contained
    Medication: no name or code for the canonical entity, but kept, so the export writes
    it again instead of refusing the entity."""
    source = json.loads(
        (Path(__file__).parent / "fixtures" / "fhir-r4-examples" / "MedicationRequest-medrx0302.json").read_text()
    )
    bundle = tmp_path / "b.json"
    bundle.write_text(json.dumps({"resourceType": "Bundle", "type": "collection", "entry": [{"resource": source}]}))
    store = ScenarioStore(tmp_path / "s.duckdb")
    store.import_scenario(bundle, "rx", format="fhir")
    folder = store.export_scenario("rx", tmp_path / "out", format="fhir", strict=True, validate=True)
    (written,) = ndjson(folder / "MedicationRequest.ndjson")
    assert written["medicationReference"] == source["medicationReference"]
    assert written["contained"] == source["contained"]
    store.import_scenario(folder, "again", format="fhir")
    assert store.load_scenario("rx")["entities"] == store.load_scenario("again")["entities"]


def test_an_element_not_of_its_type_is_a_clear_error(tmp_path: Path) -> None:
    """``"identifier": true`` is no FHIR: the import names the file and the resource, and
    saves nothing (it raised a bare TypeError before)."""
    bad = tmp_path / "bad.ndjson"
    bad.write_text(
        '{"resourceType": "Patient", "id": "p"}\n{"resourceType": "Encounter", "id": "x", "identifier": true}\n'
    )
    store = ScenarioStore(tmp_path / "s.duckdb")
    with pytest.raises(InvalidScenarioFileError) as caught:
        store.import_scenario(bad, "bad", format="fhir")
    message = str(caught.value)
    assert "bad.ndjson" in message and "Encounter/x" in message and "nothing was saved" in message
    assert store.list_scenarios()["total_count"] == 0
