"""Scenarios of many small types: a summary's and a check's cost per type.

Each type's statements are few, but DuckDB plans a statement in time that grows with its
expressions: a statement of a SELECT (or of four aggregates) per field took ~1 ms a
field to plan, 60-90 ms for a type of 40 fields of three entities (most of the time of
such a scenario). The cost is measured in CPU time of this process (DuckDB's threads
included), which another program on the machine barely changes.
"""

from __future__ import annotations

import json
import re
import time
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from healthsim.state import ScenarioStore
from healthsim.state.checks import run
from helpers.examples import examples

TYPES, FIELDS, ENTITIES = 100, 40, 3


def many_small_types() -> dict[str, list[dict[str, Any]]]:
    """``TYPES`` types of ``ENTITIES`` entities of ``FIELDS`` fields: numbers, strings and dates."""

    def value(j: int, e: int) -> Any:
        return [j * e, f"v{j % 4}", f"2024-0{1 + e}-1{j % 10}"][j % 3]

    return {
        f"type_{t:03d}": [{"id": f"{t}-{e}", **{f"f{j}": value(j, e) for j in range(FIELDS)}} for e in range(ENTITIES)]
        for t in range(TYPES)
    }


def cpu(call: Any) -> tuple[Any, float]:
    start = time.process_time()
    answer = call()
    return answer, time.process_time() - start


@pytest.mark.slow
def test_a_check_of_many_small_types_costs_little_per_type(db_path: Any) -> None:
    store = ScenarioStore(db_path)
    store.save_scenario("many", many_small_types())
    checked, spent = cpu(lambda: store.check_scenario("many"))
    assert checked["checked"] == dict.fromkeys(many_small_types(), ENTITIES)
    # (before: ~115 ms a type, 11.5 s; now ~27 ms)
    assert spent < 0.05 * TYPES, spent


@pytest.mark.slow
def test_a_summary_of_many_small_types_costs_little_per_type(db_path: Any) -> None:
    store = ScenarioStore(db_path)
    store.save_scenario("many", many_small_types())
    store.check_scenario("many")  # (kept: the summary's check is not computed again)
    summary, spent = cpu(lambda: store.summarize_scenario("many"))
    assert summary["types_omitted"] > 0
    # (before: ~60 ms a type, 6 s; now ~22 ms)
    assert spent < 0.035 * TYPES, spent


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
