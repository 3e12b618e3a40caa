"""Issue 23: canonical entities -> FHIR R4 -> the same entities, for every canonical type.

Every resource written is checked with the ``fhir.resources`` models (R4B, the closest to
R4 that package has), and read back through the HealthSim extension to an equal entity
(field for field, type for type).
"""

from __future__ import annotations

import datetime as _dt
import json
from typing import Any

import pytest
from fhir.resources.R4B import get_fhir_model_class
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from healthsim.state.exchange.fhir.carry import same
from healthsim.state.exchange.fhir.mapping import Unmappable, entity_resources, resource_entity
from helpers.examples import examples
from helpers.strategies import json_values

TODAY = _dt.date(2025, 6, 1)
UUID = "6f1a3c52-8f9e-5d1b-9a57-3e2c4b7d9f10"

dates = st.dates(min_value=_dt.date(1900, 1, 1), max_value=_dt.date(2030, 12, 31)).map(str)
times = st.datetimes(min_value=_dt.datetime(1950, 1, 1), max_value=_dt.datetime(2030, 1, 1)).map(
    lambda d: d.replace(microsecond=0).isoformat()
)
when = dates | times | times.map(lambda t: t + "Z") | st.text(max_size=12)
words = st.text(min_size=1, max_size=12) | st.sampled_from(["Ana", "Lima", "metformin", "Office visit"])
codes = st.from_regex(r"[A-Z0-9][A-Z0-9.\-]{0,7}", fullmatch=True) | st.text(max_size=6)
numbers = st.integers(-1000, 1000) | st.floats(-1e6, 1e6, allow_nan=False) | st.text(max_size=5)
ids = st.from_regex(r"[A-Z]{2,3}-[0-9]{1,6}", fullmatch=True)
patient = {"patient_mrn": ids}
person = {
    "name": st.fixed_dictionaries(
        {}, optional={"given_name": words, "family_name": words, "middle_name": words, "prefix": words}
    )
    | st.fixed_dictionaries({}, optional={"given": st.lists(words, max_size=2) | words, "family": words}),
    "birth_date": when,
    "gender": st.sampled_from(["M", "F", "O", "U", "male", "female", "x"]),
    "address": st.fixed_dictionaries(
        {},
        optional={
            "street_address": words,
            "city": words,
            "state": words,
            "postal_code": words,
            "line": st.lists(words),
        },
    ),
    "contact": st.fixed_dictionaries({}, optional={"phone": words, "email": words, "phone_work": words}),
    "deceased": st.booleans(),
    "death_date": when,
    "ssn": codes,
    "language": words,
}
line = st.fixed_dictionaries(
    {},
    optional={
        "line_number": st.integers(-2, 5),
        "procedure_code": codes,
        "procedure_modifiers": st.lists(codes, max_size=2),
        "service_date": when,
        "units": numbers,
        "charge_amount": numbers,
        "revenue_code": codes,
        "line": st.integers(1, 3),
        "cpt": codes,
        "charge": numbers,
    },
)
FIELDS: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "patients": ({"mrn": ids}, person | {"patient_id": ids}),
    "encounters": (
        {"encounter_id": ids} | patient,
        {
            "class_code": st.sampled_from(["I", "O", "E", "U", "OBS", "AMB", "??"]),
            "status": st.sampled_from(["planned", "finished", "on-hold", "weird"]),
            "admission_time": when,
            "discharge_time": when,
            "facility": words,
            "chief_complaint": words,
            "attending_physician": words,
            "type": words,
            "period": st.fixed_dictionaries({}, optional={"start": when, "end": when}),
        },
    ),
    "diagnoses": (
        patient,
        {
            "code": codes,
            "description": words,
            "encounter_id": ids,
            "diagnosed_date": when,
            "resolved_date": when,
            "system": st.sampled_from(["ICD-10-CM", "SNOMED", "x"]),
        },
    ),
    "procedures": (patient, {"code": codes, "description": words, "performed_date": when, "performer": words}),
    "medications": (
        patient | {"name": words},
        {
            "code": codes,
            "dose": words,
            "route": words,
            "frequency": words,
            "start_date": when,
            "end_date": when,
            "status": words,
        },
    ),
    "lab_results": (
        patient | {"test_name": words},
        {
            "loinc_code": codes,
            "value": numbers,
            "unit": words,
            "collected_time": when,
            "resulted_time": when,
            "abnormal_flag": codes,
            "reference_range": words,
        },
    ),
    "vital_signs": (
        patient,
        {
            "observation_time": when,
            "temperature": numbers,
            "heart_rate": numbers,
            "systolic_bp": numbers,
            "diastolic_bp": numbers,
            "spo2": numbers,
            "height_cm": numbers,
            "weight_kg": numbers,
            "encounter_id": ids,
        },
    ),
    "clinical_notes": (patient, {"note_type": words, "note_time": when, "text": st.text(max_size=30), "author": words}),
    "members": (
        {"member_id": ids},
        person
        | {
            "group_id": words,
            "coverage_start": when,
            "plan_code": words,
            "relationship_code": st.sampled_from(["18", "01", "19", "7"]),
        },
    ),
    "claims": (
        {"claim_id": ids} | patient,
        {
            "member_id": ids,
            "claim_type": st.sampled_from(["PROFESSIONAL", "INSTITUTIONAL", "RX", "x"]),
            "provider_npi": codes,
            "service_date": when,
            "principal_diagnosis": codes,
            "other_diagnoses": st.lists(codes, max_size=3),
            "claim_lines": st.lists(line, max_size=3),
            "lines": st.lists(line, max_size=2),
            "total_charge": numbers,
        },
    ),
    "prescriptions": (
        {"prescription_number": ids, "drug_name": words} | patient,
        {
            "ndc": codes,
            "quantity_prescribed": numbers,
            "days_supply": numbers,
            "refills_authorized": st.integers(-1, 9),
            "written_date": when,
            "prescriber_npi": codes,
            "directions": words,
        },
    ),
    "pharmacy_claims": (
        {"claim_id": ids, "member_id": ids},
        {"ndc": codes, "pharmacy_npi": codes, "service_date": when, "quantity_dispensed": numbers},
    ),
    "subjects": (
        {"subject_id": ids},
        {"protocol_id": words, "status": words, "arm": words, "patient_id": ids, "randomization_date": when},
    ),
    "immunizations": (patient | {"date": dates}, {"vaccine_code": codes, "description": words}),
    "allergies": (patient, {"substance": words, "code": codes, "date": when}),
    "labs": (patient | {"display": words}, {"loinc": codes, "value": numbers, "effective": when}),
    "care_gaps": ({}, {"gap": words, "patient_id": ids}),
    "claim_lines": ({}, {"claim_id": ids, "line_number": st.integers(1, 4), "procedure_code": codes}),
}
extras = st.dictionaries(st.text(min_size=1, max_size=8), json_values, max_size=3)


_NAMED = words.filter(lambda text: text.strip() != "")


@st.composite
def typed_entities(draw: st.DrawFn) -> tuple[str, dict[str, Any]]:
    entity_type = draw(st.sampled_from(sorted(FIELDS)))
    required, optional = FIELDS[entity_type]
    # A required name that is all blanks cannot become a resource: the export reports such an
    # entity instead (tests/test_fhir_exchange.py), so the round trip draws names with a letter.
    required = {key: _NAMED if value is words else value for key, value in required.items()}
    entity = draw(extras)
    entity.update(draw(st.fixed_dictionaries(required, optional=optional)))
    return entity_type, entity


# Required value sets the models do not check (R4 bindings of the codes we write).
VALUE_SETS = {
    ("Patient", "gender"): {"male", "female", "other", "unknown"},
    ("Encounter", "status"): {
        "planned",
        "arrived",
        "triaged",
        "in-progress",
        "onleave",
        "finished",
        "cancelled",
        "entered-in-error",
        "unknown",
    },
    ("Observation", "status"): {"registered", "preliminary", "final", "amended"},
    ("MedicationRequest", "status"): {
        "active",
        "on-hold",
        "cancelled",
        "completed",
        "entered-in-error",
        "stopped",
        "draft",
        "unknown",
    },
    ("MedicationRequest", "intent"): {"order"},
    ("Claim", "status"): {"active"},
    ("Claim", "use"): {"claim"},
    ("Procedure", "status"): {"completed"},
    ("Immunization", "status"): {"completed"},
    ("DocumentReference", "status"): {"current"},
    ("Coverage", "status"): {"active"},
}


def check_valid(resource: dict[str, Any]) -> None:
    """The resource validates against the fhir.resources R4B model of its type, and its
    codes of required bindings are in their value sets."""
    get_fhir_model_class(resource["resourceType"]).model_validate(resource)
    for (kind, field), allowed in VALUE_SETS.items():
        if resource["resourceType"] == kind and field in resource:
            assert resource[field] in allowed, (kind, field, resource[field])


def round_trip(entity_type: str, entity: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    resources = entity_resources(entity, entity_type, UUID, TODAY)
    for resource in resources:
        check_valid(resource)
    written = [json.loads(json.dumps(r)) for r in resources]  # as a file holds them
    back = [found for r in written if (found := resource_entity(r)) is not None]
    assert len(back) == 1, "one entity per set of resources"
    return back[0]


@settings(max_examples=examples(400), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(typed_entities())
def test_every_canonical_type_round_trips_and_validates(typed: tuple[str, dict[str, Any]]) -> None:
    entity_type, entity = typed
    original = json.loads(json.dumps(entity))
    back_type, back = round_trip(entity_type, entity)
    assert back_type == entity_type
    assert same(back, original), (back, original)


def test_every_canonical_type_has_its_resource() -> None:
    seen = {}
    for entity_type, (required, _) in FIELDS.items():
        entity = {field: "X-1" for field in required} | (
            {"date": "2024-01-02"} if entity_type == "immunizations" else {}
        )
        seen[entity_type] = [r["resourceType"] for r in entity_resources(entity, entity_type, UUID, TODAY)]
    assert seen["patients"] == ["Patient"]
    assert seen["members"] == ["Patient", "Coverage"]
    assert seen["claims"] == ["Claim"] and seen["pharmacy_claims"] == ["Claim"]
    assert seen["diagnoses"] == ["Condition"] and seen["procedures"] == ["Procedure"]
    assert seen["medications"] == ["MedicationRequest"] and seen["prescriptions"] == ["MedicationRequest"]
    assert seen["lab_results"] == ["Observation"] and seen["labs"] == ["Observation"]
    assert seen["subjects"] == ["ResearchSubject"] and seen["clinical_notes"] == ["DocumentReference"]
    assert seen["immunizations"] == ["Immunization"] and seen["allergies"] == ["AllergyIntolerance"]
    assert seen["care_gaps"] == ["Basic"]


def test_vital_signs_one_observation_per_measurement_with_loinc_and_ucum() -> None:
    entity = {
        "patient_mrn": "MRN-1",
        "observation_time": "2024-05-01T10:00:00",
        "heart_rate": 72,
        "temperature": 98.6,
        "systolic_bp": 120,
        "diastolic_bp": 80,
        "weight_kg": 70.5,
    }
    panel, *members = entity_resources(entity, "vital_signs", UUID, TODAY)
    assert panel["code"]["coding"][0]["code"] == "85353-1"
    assert [m["reference"] for m in panel["hasMember"]] == [f"Observation/{m['id']}" for m in members]
    by_code = {m["code"]["coding"][0]["code"]: m for m in members}
    assert by_code["8867-4"]["valueQuantity"] == {
        "value": 72,
        "unit": "/min",
        "system": "http://unitsofmeasure.org",
        "code": "/min",
    }
    assert by_code["8310-5"]["valueQuantity"]["code"] == "[degF]"
    assert by_code["29463-7"]["valueQuantity"]["code"] == "kg"
    bp = by_code["85354-9"]
    assert "valueQuantity" not in bp
    assert {c["code"]["coding"][0]["code"]: c["valueQuantity"]["value"] for c in bp["component"]} == {
        "8480-6": 120,
        "8462-4": 80,
    }
    assert all(m["effectiveDateTime"] == "2024-05-01T10:00:00Z" for m in [panel, *members])
    for resource in [panel, *members]:
        check_valid(resource)


def test_variants_are_read_through_the_alias_table() -> None:
    patient = {"patient_id": "MRN-1", "name": {"given": ["Ana", "Maria"], "family": "Lima"}, "gender": "male"}
    (resource,) = entity_resources(patient, "patients", UUID, TODAY)
    assert resource["name"] == [{"use": "official", "family": "Lima", "given": ["Ana", "Maria"]}]
    assert resource["gender"] == "male"  # not "unknown", as the earlier release wrote
    encounter = {
        "encounter_id": "E1",
        "patient_id": "MRN-1",
        "class": "AMB",
        "period": {"start": "2024-01-15T09:00:00Z"},
    }
    (enc,) = entity_resources(encounter, "encounters", UUID, TODAY)
    assert enc["class"]["code"] == "AMB" and enc["period"] == {"start": "2024-01-15T09:00:00Z"}
    assert enc["subject"]["reference"] == f"Patient/{resource['id']}"
    (lab,) = entity_resources(
        {"patient_id": "MRN-1", "loinc": "4548-4", "value": 6.8, "unit": "%"}, "labs", UUID, TODAY
    )
    assert lab["code"]["coding"][0] == {"system": "http://loinc.org", "code": "4548-4"}


def test_a_deceased_date_is_the_patients_death() -> None:
    """``deceased_date`` (the earlier release's name) is read as ``death_date`` through the
    alias table, and the entity comes back as it was."""
    patient = {"patient_id": "MRN-1", "birth_date": "1950-02-01", "deceased_date": "2020-05-06"}
    (resource,) = entity_resources(json.loads(json.dumps(patient)), "patients", UUID, TODAY)
    assert resource["deceasedDateTime"] == "2020-05-06"
    assert resource_entity(json.loads(json.dumps(resource))) == ("patients", patient)
    both = {**patient, "death_date": "2021-01-01"}  # the canonical field first
    (resource,) = entity_resources(json.loads(json.dumps(both)), "patients", UUID, TODAY)
    assert resource["deceasedDateTime"] == "2021-01-01"
    assert resource_entity(json.loads(json.dumps(resource))) == ("patients", both)


def test_ids_are_stable_and_code_systems_canonical() -> None:
    diagnosis = {"patient_mrn": "MRN-1", "code": "E11.9", "description": "Type 2 diabetes"}
    first = entity_resources(diagnosis, "diagnoses", UUID, TODAY)[0]
    again = entity_resources(dict(diagnosis, description="changed"), "diagnoses", UUID, TODAY)[0]
    assert first["id"] == again["id"]
    assert first["code"]["coding"][0]["system"] == "http://hl7.org/fhir/sid/icd-10-cm"
    claim = entity_resources(
        {"claim_id": "C1", "member_id": "M1", "provider_npi": "1234567893"}, "claims", UUID, TODAY
    )[0]
    assert claim["provider"]["identifier"]["system"] == "http://hl7.org/fhir/sid/us-npi"
    changed = {"claim_id": "C1", "member_id": "M1", "total_charge": 5}
    assert entity_resources(changed, "claims", "another-stored-id", TODAY)[0]["id"] == claim["id"]


@pytest.mark.parametrize(
    ("entity_type", "entity", "reason"),
    [
        ("encounters", {"encounter_id": "E1"}, "no patient"),
        ("medications", {"patient_mrn": "P1"}, "no medication"),
        ("immunizations", {"patient_mrn": "P1", "vaccine_code": "08"}, "no date"),
        ("lab_results", {"patient_mrn": "P1", "value": 3}, "no test name"),
    ],
)
def test_entities_that_cannot_be_resources_say_why(entity_type: str, entity: dict[str, Any], reason: str) -> None:
    with pytest.raises(Unmappable, match=reason):
        entity_resources(entity, entity_type, UUID, TODAY)


@given(
    st.sampled_from(["patients", "encounters", "members/coverage"]),
    st.text().filter(lambda t: t == t.encode("utf-8", "ignore").decode()),
)
def test_resource_ids_are_uuid5_of_type_and_own_id(entity_type: str, key: str) -> None:
    import uuid

    from healthsim.state.exchange.fhir.common import ID_NAMESPACE, resource_id

    assert resource_id(entity_type, key) == str(uuid.uuid5(ID_NAMESPACE, f"{entity_type}/{key}"))


@given(st.text(alphabet="0123456789 ,x-", max_size=60))
def test_long_digit_runs_are_found(text: str) -> None:
    import re

    from healthsim.state.exchange.fhir.common import may_hold_long_int

    assert may_hold_long_int(text.encode()) == bool(re.search(r"[0-9]{19}", text))


@pytest.mark.parametrize("entity_type", ["encounters", "medications", "subjects"])
@pytest.mark.parametrize("status", [[], {"code": "finished"}, ["finished"]])
def test_a_status_that_is_a_list_or_object_is_mapped_not_a_crash(entity_type: str, status: Any) -> None:
    # It was looked up in a set of statuses, which raised TypeError and stopped the whole export.
    entity = {"patient_mrn": "MRN-1", "name": "metformin", "status": status}
    resources = entity_resources(entity, entity_type, "6f1a3c52-8f9e-5d1b-9a57-3e2c4b7d9f10", TODAY)
    assert resources[0]["status"] in {"unknown", "on-study"}
    fields = json.loads(resources[0]["extension"][-1]["valueString"])["fields"]
    assert fields["status"] == status  # the import gives it back
