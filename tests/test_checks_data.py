"""check_scenario on data no rule should fault: generated clean cohorts (hypothesis), the
project's example cohort, the values of the 17 HL7 FHIR R4 examples, and a real Synthea
CSV export (where the one rule that fires is the right one)."""

from __future__ import annotations

import csv
import datetime as _dt
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from healthsim.state import ScenarioStore
from helpers.examples import examples

SAMPLES = Path("/work/shared/interop-samples")
if not SAMPLES.exists():  # (the samples beside the project, as INTEROP.md names them)
    SAMPLES = Path(__file__).resolve().parents[2] / "shared" / "interop-samples"


def luhn_npi(nine: str) -> str:
    """A valid NPI from nine digits (Luhn over 80840 + the digits)."""
    digits = [int(c) for c in "80840" + nine]
    total = 0
    for i, d in enumerate(reversed(digits)):
        total += (d * 2 - 9 if d * 2 > 9 else d * 2) if i % 2 == 0 else d
    return nine + str((10 - total % 10) % 10)


def loinc(number: int) -> str:
    digits = [int(c) for c in str(number)]
    total = sum((d * 2 - 9 if d * 2 > 9 else d * 2) if i % 2 == 0 else d for i, d in enumerate(reversed(digits)))
    return f"{number}-{(10 - total % 10) % 10}"


def test_helpers_agree_with_published_codes() -> None:
    assert luhn_npi("123456789") == "1234567893"
    assert [loinc(n) for n in (2345, 4548, 8480, 85354, 29463)] == ["2345-7", "4548-4", "8480-6", "85354-9", "29463-7"]


_day = st.dates(min_value=_dt.date(1900, 1, 1), max_value=_dt.date(2020, 12, 31))
_zone = st.sampled_from(["Z", "+05:30", "-08:00", "+0100", ""])


@st.composite
def cohorts(draw: st.DrawFn) -> dict[str, list[dict[str, Any]]]:
    """A clean cohort: every reference resolves, events fall between birth and death, codes
    and identifiers have valid shapes and reserved ranges."""
    n = draw(st.integers(1, 6))
    patients, encounters, diagnoses, labs, members, claims = [], [], [], [], [], []
    for i in range(n):
        born = draw(_day)
        dead = draw(
            st.one_of(st.none(), st.dates(min_value=born + _dt.timedelta(days=400), max_value=_dt.date(2024, 1, 1)))
        )
        patients.append(
            {
                "patient_id": f"P{i}",
                "mrn": f"MRN-{i:05d}",
                "birth_date": born.isoformat(),
                "death_date": dead.isoformat() if dead else None,
                "gender": draw(st.sampled_from(["M", "F", "O", "U", "male", "female", "other", "unknown"])),
                "ssn": f"9{draw(st.integers(0, 99)):02d}-{draw(st.integers(10, 99))}-{draw(st.integers(1000, 9999))}",
                "contact": {
                    "phone": f"({draw(st.integers(200, 999))}) 555-01{draw(st.integers(0, 99)):02d}",
                    "email": f"p{i}@{draw(st.sampled_from(['example.com', 'example.org', 'mail.test', 'x.example']))}",
                },
            }
        )
        last = dead or _dt.date(2024, 12, 31)
        for j in range(draw(st.integers(0, 3))):
            start = draw(st.dates(min_value=born + _dt.timedelta(days=1), max_value=last - _dt.timedelta(days=2)))
            hours = draw(st.integers(0, 36))
            zone = draw(_zone)
            admitted = f"{start.isoformat()}T10:00:00{zone}"
            left_at = _dt.datetime(start.year, start.month, start.day, 10) + _dt.timedelta(hours=hours)
            encounters.append(
                {
                    "encounter_id": f"E{i}-{j}",
                    "patient_mrn": f"MRN-{i:05d}",
                    "admission_time": admitted,
                    "discharge_time": left_at.isoformat() + zone if left_at.date() <= last else None,
                }
            )
            diagnoses.append(
                {
                    "code": draw(st.sampled_from(["E11.9", "I10", "E78.5", "N18.3", "S72.001A", "J45909", "Z00.00"])),
                    "patient_id": f"P{i}",
                    "encounter_id": f"E{i}-{j}",
                    "diagnosed_date": start.isoformat(),
                    "resolved_date": draw(st.one_of(st.none(), st.just(last.isoformat()))),
                }
            )
            labs.append(
                {
                    "loinc_code": loinc(draw(st.integers(1, 999_999))),
                    "value": draw(st.one_of(st.floats(0, 500).map(str), st.sampled_from(["positive", "<5"]))),
                    "patient_mrn": f"MRN-{i:05d}",
                    "collected_time": start.isoformat(),
                }
            )
        members.append({"member_id": f"M{i}", "pcp_npi": luhn_npi(f"{draw(st.integers(0, 10**9 - 1)):09d}")})
        claims.append(
            {
                "claim_id": f"C{i}",
                "member_id": f"M{i}",
                "provider_npi": int(luhn_npi(f"1{draw(st.integers(0, 10**8 - 1)):08d}")),
                "principal_diagnosis": "E119",
                "service_date": draw(_day).isoformat(),
            }
        )
    return {
        "patients": patients,
        "encounters": encounters,
        "diagnoses": diagnoses,
        "lab_results": labs,
        "members": members,
        "claims": claims,
    }


@pytest.mark.slow  # (a property of about a second even at 3 examples: the whole suite runs it)
@settings(max_examples=examples(15), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cohorts())
def test_clean_generated_cohorts_have_no_problems(
    store: ScenarioStore, cohort: dict[str, list[dict[str, Any]]]
) -> None:
    store.save_scenario("gen", cohort, overwrite=True)
    answer = store.check_scenario("gen")
    assert answer["problems"] == [] and answer["ok"] is True


def fhir_values() -> dict[str, list[dict[str, Any]]]:
    """The dates and codes of the 17 HL7 FHIR R4 examples, as the canonical fields that hold them."""
    dates: list[str] = []
    loincs: list[str] = []

    def walk(value: Any, key: str = "") -> None:
        if isinstance(value, dict):
            if value.get("system") == "http://loinc.org":
                loincs.append(value["code"])
            for k, v in value.items():
                walk(v, k)
        elif isinstance(value, list):
            for v in value:
                walk(v, key)
        elif isinstance(value, str) and (
            key in ("birthDate", "start", "end", "authoredOn", "created", "issued", "servicedDate", "date")
            or key.endswith(("DateTime", "Date"))
        ):
            dates.append(value)

    files = sorted((SAMPLES / "fhir-r4-examples").glob("*.json"))
    for path in files:
        if path.name != "package.json":
            walk(json.loads(path.read_text(encoding="utf-8")))
    assert len(dates) >= 20 and len(set(loincs)) == 7
    return {
        "events": [{"start_date": d} for d in dates],
        "lab_results": [{"loinc_code": c} for c in loincs],
    }


def test_hl7_examples_values_pass_the_shape_rules(store: ScenarioStore) -> None:
    values = fhir_values()
    assert {"2012", "2014", "2013-04-02T09:30:10+01:00", "1974-12-25T14:35:45-05:00"} <= {
        e["start_date"] for e in values["events"]
    }  # years alone, offsets: FHIR dates
    store.save_scenario("hl7", values)
    assert store.check_scenario("hl7")["problems"] == []


def test_example_cohort_values_pass(store: ScenarioStore) -> None:
    cohort = json.loads((Path(__file__).parent.parent / "examples" / "diabetes-cohort.json").read_text())
    store.save_scenario("cohort", {k: v for k, v in cohort.items() if isinstance(v, list)})
    answer = store.check_scenario("cohort")
    assert answer["ok"] is True
    assert [(p["rule"], p["type"], p["field"]) for p in answer["problems"]] == [
        ("missing_target_type", "claims", "member_id")  # the example has claims but no members
    ]


def rows(name: str) -> list[dict[str, str]]:
    with open(SAMPLES / "synthea-csv-3.0" / f"{name}.csv", encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def synthea() -> dict[str, list[dict[str, Any]]]:
    """The Synthea 3.0 CSV sample's values in the canonical fields (until issue 23's importer)."""
    return {
        "patients": [
            {
                "patient_id": r["Id"],
                "birth_date": r["BIRTHDATE"],
                "death_date": r["DEATHDATE"] or None,
                "gender": r["GENDER"],
                "ssn": r["SSN"],
            }
            for r in rows("patients")
        ],
        "encounters": [
            {
                "encounter_id": r["Id"],
                "patient_id": r["PATIENT"],
                "admission_time": r["START"],
                "discharge_time": r["STOP"],
            }
            for r in rows("encounters")
        ],
        "diagnoses": [
            {
                "code": r["CODE"],
                "system": "http://snomed.info/sct",
                "patient_id": r["PATIENT"],
                "encounter_id": r["ENCOUNTER"],
                "diagnosed_date": r["START"],
                "resolved_date": r["STOP"] or None,
            }
            for r in rows("conditions")
        ],
        "lab_results": [
            {
                "loinc_code": r["CODE"],
                "patient_id": r["PATIENT"],
                "encounter_id": r["ENCOUNTER"],
                "collected_time": r["DATE"],
            }
            for r in rows("observations")
        ],
        "medications": [
            {
                "patient_id": r["PATIENT"],
                "encounter_id": r["ENCOUNTER"],
                "start_date": r["START"],
                "end_date": r["STOP"] or None,
            }
            for r in rows("medications")
        ],
        "organizations": [{"organization_id": r["Id"], "phone": r["PHONE"]} for r in rows("organizations")],
    }


def test_synthea_sample_values_check_without_false_errors(store: ScenarioStore) -> None:
    store.save_scenario("synthea", synthea())
    answer = store.check_scenario("synthea")
    found = [(p["rule"], p["severity"], p["type"], p["field"], p["count"]) for p in answer["problems"]]
    assert found == [
        # Synthea's own quality-of-life measures (QALY, DALY, QOLS) are not LOINC codes: a
        # mapping that puts them in loinc_code is wrong, and the check says so.
        ("bad_loinc_check_digit", "error", "lab_results", "loinc_code", 75),
        ("real_looking_phone", "warning", "organizations", "phone", 58),  # real hospitals' numbers
        # Synthea's "Death Certification" encounter, and its cause-of-death observation, a
        # week after the death: real, so a warning.
        ("after_death", "warning", "encounters", "admission_time", 2),
        ("after_death", "warning", "encounters", "discharge_time", 2),
        ("after_death", "warning", "lab_results", "collected_time", 2),
    ]
    assert {e["value"] for e in answer["problems"][0]["examples"]} == {"QALY", "DALY", "QOLS"}


def test_empty_strings_are_no_value(store: ScenarioStore) -> None:
    store.save_scenario(
        "s",
        {
            "patients": [{"mrn": "MRN-1", "birth_date": "", "gender": "", "ssn": ""}],
            "lab_results": [{"patient_mrn": "MRN-1", "encounter_id": "", "loinc_code": "", "collected_time": ""}],
            "encounters": [{"encounter_id": "E1", "patient_mrn": "MRN-1"}],
        },
    )
    assert store.check_scenario("s")["problems"] == []
