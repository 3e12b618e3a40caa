"""Dicts, pydantic models and dataclasses are entities, through every way in and back out.

The README promises all three. A save of dataclasses once failed with ``TypeError: object
of type 'Vital' has no len()`` (the key count taken while saving), and orjson's own
dataclass encoding left out fields whose names start with ``_`` (HealthSim metadata such as
``_provenance``) and fields made with ``init=False``; the stored entity is now every field of
the dataclass, as :func:`dataclasses.fields` lists them, at any depth.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from decimal import Decimal
from typing import Any

import pydantic

from healthsim.state import ScenarioStore


@dataclasses.dataclass
class Reading:
    code: str
    value: Decimal


@dataclasses.dataclass
class Vital:
    vital_sign_id: str
    patient_mrn: str
    taken: dt.datetime
    readings: list[Reading]
    _provenance: dict[str, Any] = dataclasses.field(default_factory=lambda: {"source_type": "generated"})
    unit_system: str = dataclasses.field(default="metric", init=False)


@dataclasses.dataclass(slots=True, frozen=True)
class Note:
    note_id: int
    text: str
    parent: Vital | None = None


class Address(pydantic.BaseModel):
    city: str
    since: dt.date


class Patient(pydantic.BaseModel):
    patient_id: uuid.UUID
    mrn: str
    address: Address
    visit: Vital | None = None  # a dataclass inside a model


WHEN = dt.datetime(2024, 5, 1, 8, 30, tzinfo=dt.UTC)
PID = uuid.UUID(int=7)


def _vital(n: int) -> Vital:
    return Vital(f"V-{n}", "MRN-1", WHEN, [Reading("8867-4", Decimal("72.5")), Reading("8480-6", Decimal(120 + n))])


def _vital_json(n: int) -> dict[str, Any]:
    return {
        "vital_sign_id": f"V-{n}",
        "patient_mrn": "MRN-1",
        "taken": WHEN.isoformat(),
        "readings": [{"code": "8867-4", "value": "72.5"}, {"code": "8480-6", "value": str(120 + n)}],
        "_provenance": {"source_type": "generated"},
        "unit_system": "metric",
    }


def _patient() -> Patient:
    return Patient(
        patient_id=PID, mrn="MRN-1", address=Address(city="Oslo", since=dt.date(2020, 1, 2)), visit=_vital(0)
    )


def _patient_json() -> dict[str, Any]:
    # A model is stored as model_dump(mode="json"): pydantic writes the datetime of the
    # dataclass inside it its own way ("Z"), and keeps every field of it too.
    return {
        "patient_id": str(PID),
        "mrn": "MRN-1",
        "address": {"city": "Oslo", "since": "2020-01-02"},
        "visit": _vital_json(0) | {"taken": "2024-05-01T08:30:00Z"},
    }


def test_dataclasses_models_and_dicts_save_and_load_back(store: ScenarioStore) -> None:
    entities = {
        "vital_signs": [_vital(1), _vital(2)],
        "notes": [Note(1, "nested", parent=_vital(3)), Note(2, "plain")],
        "patients": [_patient()],
        "encounters": [
            {"encounter_id": "E-1", "vital": _vital(4), "model": Address(city="Bergen", since=dt.date(2021, 3, 4))}
        ],
    }
    store.save_scenario("kinds", entities)
    loaded = store.load_scenario("kinds")
    assert loaded["entities"] == {
        "vital_signs": [_vital_json(1), _vital_json(2)],
        "notes": [
            {"note_id": 1, "text": "nested", "parent": _vital_json(3)},
            {"note_id": 2, "text": "plain", "parent": None},
        ],
        "patients": [_patient_json()],
        "encounters": [
            {"encounter_id": "E-1", "vital": _vital_json(4), "model": {"city": "Bergen", "since": "2021-03-04"}}
        ],
    }
    assert list(loaded["entities"]["vital_signs"][0]) == list(_vital_json(1))  # field order kept
    summary = store.summarize_scenario("kinds")  # the key count made at save time is right
    assert summary["types"]["vital_signs"]["fields"]["_provenance"]["present"] == 1


def test_dataclasses_and_models_through_add_entities(store: ScenarioStore) -> None:
    store.save_scenario("batches", {"vital_signs": [_vital(1)]})
    moved = dataclasses.replace(_vital(1), patient_mrn="MRN-2")  # V-1 again, changed
    result = store.add_entities("batches", {"vital_signs": [_vital(2), moved], "patients": [_patient()]})
    assert result["added"] == {"vital_signs": 1, "patients": 1} and result["updated"] == {"vital_signs": 1}
    # The same dataclass again, exactly as stored, changes nothing (and makes no version).
    assert store.add_entities("batches", {"vital_signs": [moved]})["updated"] == {}
    store.add_entities("batches", {"notes": [Note(5, "x", parent=_vital(5))]}, upsert=False)
    loaded = store.load_scenario("batches")["entities"]
    assert loaded == {
        "vital_signs": [{**_vital_json(1), "patient_mrn": "MRN-2"}, _vital_json(2)],
        "patients": [_patient_json()],
        "notes": [{"note_id": 5, "text": "x", "parent": _vital_json(5)}],
    }
    # Dataclasses are matched by their own id like dicts: V-1 was replaced in place, not added.
    assert store.load_scenario("batches", version=1)["entities"] == {"vital_signs": [_vital_json(1)]}


def test_a_dataclass_with_a_value_json_cannot_hold_is_refused_by_name(store: ScenarioStore) -> None:
    import pytest

    from healthsim.state.errors import InvalidEntityError

    bad = _vital(1)
    bad.readings.append(Reading("x", Decimal("NaN")))
    bad.readings[-1].value = float("nan")  # type: ignore[assignment]
    with pytest.raises(InvalidEntityError, match=r"vital_signs\[0\] field \$\.readings\[2\]\.value"):
        store.save_scenario("bad", {"vital_signs": [bad]})
