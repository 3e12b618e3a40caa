"""Scenarios of many small types: a small type's check is counted row by row, and answers
as the grouped counting does.

Why (docs/decisions.md, "Many small types"): DuckDB plans a statement in time that grows
with its expressions, and a statement of a SELECT (or of four aggregates) per field took
~1 ms a field to plan, most of the time of a scenario of many small types. That speed is
measured by hand and written there, not asserted here: timings belong to the benchmark.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from healthsim.state import ScenarioStore
from healthsim.state.checks import run
from helpers.examples import examples

# Values the rules fault, or not, put in place of a clean scenario's fields.
_VALUES = st.sampled_from(
    ["2024-02-30", "2024-01-15", "unknown", "", None, "X", "F", "E11.9", "E119", "bad code", "MRN-9", "MRN-1"]
    + ["1234567890", "1245319599", "00093-1048-01", "123-45-6789", "2160-0", "2160-1", 7, 3.5, True, [], {}]
)


def clean() -> dict[str, list[dict[str, Any]]]:
    """A small scenario of the canonical entities, every rule's fields present."""
    patients = [
        {"patient_id": f"P{i}", "mrn": f"MRN-{i}", "birth_date": f"19{50 + i}-0{1 + i}-1{i}", "gender": "MFOU"[i]}
        for i in range(4)
    ]
    encounters = [
        {"encounter_id": f"E{i}", "patient_mrn": f"MRN-{i}", "admission_time": "2024-01-15T09:00:00Z"}
        | {"discharge_time": "2024-01-16T09:00:00+05:00"}
        for i in range(4)
    ]
    diagnoses = [{"code": c, "patient_mrn": "MRN-1", "diagnosed_date": "2024-01-15"} for c in ("E11.9", "I10")]
    labs = [{"loinc_code": c, "value": "6.8", "patient_mrn": "MRN-2"} for c in ("4548-4", "2345-7")]
    members = [{"member_id": "M1", "birth_date": "1980-05-05", "gender": "female", "pcp_npi": "1234567893"}]
    claims = [{"claim_id": "C1", "member_id": "M1", "provider_npi": "1245319599", "service_date": "2024-01-01"}]
    prescriptions = [{"prescription_number": "RX1", "member_id": "M1", "ndc": "00093-1048-01"}]
    return {
        "patients": patients,
        "encounters": encounters,
        "diagnoses": diagnoses,
        "lab_results": labs,
        "members": members,
        "claims": claims,
        "prescriptions": prescriptions,
    }


@settings(max_examples=examples(30), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    changes=st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 10**6), _VALUES), max_size=12),
    copies=st.integers(1, 3),
)
def test_a_small_type_counted_row_by_row_answers_as_grouped(
    store: ScenarioStore, changes: list[tuple[int, int, Any]], copies: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A type of few entities has its rules counted row by row (planning the grouping of
    its distinct values cost more than the counting): the answer is the one the grouping
    gives, problems, counts and examples alike."""
    data = clean()
    types = sorted(data)
    for at, field, value in changes:  # (a field of an entity set to a value a rule reads)
        entities = data[types[at % len(types)]]
        entity = entities[at // len(types) % len(entities)]
        entity[sorted(entity)[field % len(entity)]] = value
    data = {t: [dict(e) for e in entities * copies] for t, entities in data.items()}  # (duplicates too)
    store.save_scenario("rows", data, overwrite=True)
    by_rows = store.check_scenario("rows")
    monkeypatch.setattr(run, "_PLAIN_ROWS", 0)  # (every type grouped, as a large one is)
    store.save_scenario("grouped", data, overwrite=True)
    assert without_ids(store.check_scenario("grouped")) == without_ids(by_rows)


def without_ids(answer: Any) -> Any:
    """A check's answer with the examples' entity ids left out (each save draws its own)."""
    return json.loads(re.sub(r'"id": "[0-9a-f-]{36}"', '"id": null', json.dumps(answer)))
