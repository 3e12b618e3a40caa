"""Entity type names, id rules and the validated JSON encoder."""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import json
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import pydantic
import pytest

from healthsim.state.database import connect
from healthsim.state.editing import stored_entity_ids
from healthsim.state.entities import (
    ENTITY_ID_NAMESPACE,
    KNOWN_TYPES,
    MAX_DEPTH,
    decode_entity,
    encode_entity,
    id_fields,
    iter_typed_entities,
    normalize_type,
    raw_entity_id,
)
from healthsim.state.errors import InvalidEntityError
from healthsim.state.id_sql import entity_uuid_select


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("patient", "patients"),
        ("Patient", "patients"),
        ("patients", "patients"),
        (" Patients ", "patients"),
        ("lab_result", "lab_results"),
        ("LabResult", "lab_results"),
        ("lab-result", "lab_results"),
        ("diagnosis", "diagnoses"),
        ("claim_line", "claim_lines"),
        ("trial_visit", "trial_visits"),
        ("care_gaps", "care_gaps"),
        ("CareGap", "care_gap"),
    ],
)
def test_normalize_type(raw: str, expected: str) -> None:
    assert normalize_type(raw) == expected


@pytest.mark.parametrize("raw", ["", "1patients", "pa tients!", "ünï", 7, None, "x" * 101])
def test_normalize_type_refuses_bad_names(raw: object) -> None:
    with pytest.raises(InvalidEntityError, match="entity type"):
        normalize_type(raw)


def test_every_specification_type_is_known() -> None:
    assert set(KNOWN_TYPES) == {
        "patients",
        "encounters",
        "diagnoses",
        "procedures",
        "medications",
        "lab_results",
        "vital_signs",
        "clinical_notes",
        "members",
        "claims",
        "claim_lines",
        "prescriptions",
        "subjects",
        "trial_visits",
    }


def test_id_fields() -> None:
    assert id_fields("patients") == ("patient_id", "id", "_entity_id")
    assert id_fields("prescriptions")[0] == "prescription_number"
    assert id_fields("trial_visits")[0] == "visit_id"
    assert id_fields("care_gaps") == ("care_gap_id", "id", "_entity_id")
    assert "patient_id" not in id_fields("diagnoses")  # a diagnosis is not its patient


def test_raw_entity_id_kinds() -> None:
    fields = id_fields("patients")
    assert raw_entity_id({"patient_id": "MRN-1"}, fields) == "MRN-1"
    assert raw_entity_id({"patient_id": 42}, fields) == "42"
    assert raw_entity_id({"id": 1.5}, fields) == "1.5"
    assert raw_entity_id({"patient_id": None, "id": "X"}, fields) == "X"
    assert raw_entity_id({"patient_id": True}, fields) is None
    assert raw_entity_id({"name": "no id"}, fields) is None


def test_stored_entity_ids_follow_the_save_rules(tmp_path: Path) -> None:
    u = uuid.uuid4()
    # A UUID the save's cast takes is used as it is, in its forms; anything else (Python's
    # uuid.UUID would take urn:uuid:…, doubled braces, a space) is a UUIDv5 of "type:id".
    tricky = [str(u), str(u).upper(), "{" + str(u) + "}", u.hex, "MRN-1", "urn:uuid:" + str(u), "{{" + str(u) + "}}"]
    tricky += [" " + str(u), "uuid:" + str(u), " MRN-1"]
    with connect(tmp_path / "ids.duckdb", create=True) as con:
        derived = stored_entity_ids(con, "patients", tricky)
        assert stored_entity_ids(con, "patients", []) == []
    assert derived[:4] == [u] * 4
    for raw, stored in zip(tricky[4:], derived[4:], strict=True):
        assert stored == uuid.uuid5(ENTITY_ID_NAMESPACE, f"patients:{raw}"), raw


def test_sql_id_derivation_equals_uuid5() -> None:
    names = ["MRN-0001", "CLM-2025-000123", "MRN:E11.9", "é✓ ünïcode", "", "42", str(uuid.uuid4()), None]
    con = duckdb.connect()
    con.execute("CREATE TABLE src (entity_type VARCHAR, raw_id VARCHAR)")
    con.executemany("INSERT INTO src VALUES ('claims', ?)", [[n] for n in names])
    rows = con.execute(
        "SELECT raw_id, _uuid FROM ("
        + entity_uuid_select("src", "raw_id", "entity_type || ':' || raw_id", "entity_type, raw_id")
        + ")"
    ).fetchall()
    for raw, derived in rows:
        if raw is None:
            assert derived.version == 4
        elif raw == names[6]:
            assert derived == uuid.UUID(raw)
        else:
            assert derived == uuid.uuid5(ENTITY_ID_NAMESPACE, f"claims:{raw}")


class Color(enum.Enum):
    RED = "red"


class Level(enum.IntEnum):
    HIGH = 3


@dataclasses.dataclass
class Visit:
    visit_id: str
    when: dt.datetime
    tags: tuple[str, ...]


class Address(pydantic.BaseModel):
    city: str
    zip_code: str


class Patient(pydantic.BaseModel):
    patient_id: uuid.UUID
    birth_date: dt.date
    address: Address


def roundtrip(entity: object) -> object:
    return decode_entity(encode_entity(entity, "things", 0), exact=True)


def test_json_normalisation() -> None:
    when = dt.datetime(2024, 1, 2, 3, 4, 5, 6, tzinfo=dt.UTC)
    u = uuid.UUID(int=5)
    entity = {
        "when": when,
        "naive": dt.datetime(2024, 1, 2, 3, 4, 5),
        "day": dt.date(2024, 1, 2),
        "time": dt.time(8, 30),
        "u": u,
        "amount": Decimal("10.50"),
        "color": Color.RED,
        "level": Level.HIGH,
        "pair": (1, 2),
        "nested": {"visit": Visit("V-1", when, ("a",))},
        "model": Address(city="X", zip_code="01"),
    }
    assert roundtrip(entity) == {
        "when": when.isoformat(),
        "naive": "2024-01-02T03:04:05",
        "day": "2024-01-02",
        "time": "08:30:00",
        "u": str(u),
        "amount": "10.50",
        "color": "red",
        "level": 3,
        "pair": [1, 2],
        "nested": {"visit": {"visit_id": "V-1", "when": when.isoformat(), "tags": ["a"]}},
        "model": {"city": "X", "zip_code": "01"},
    }


def test_pydantic_and_dataclass_entities() -> None:
    pid = uuid.uuid4()
    model = Patient(patient_id=pid, birth_date=dt.date(1980, 1, 15), address=Address(city="A", zip_code="1"))
    assert roundtrip(model) == model.model_dump(mode="json")
    assert raw_entity_id(model, id_fields("patients")) == str(pid)
    visit = Visit("V-9", dt.datetime(2024, 5, 1), ("x", "y"))
    assert roundtrip(visit) == {"visit_id": "V-9", "when": "2024-05-01T00:00:00", "tags": ["x", "y"]}
    assert raw_entity_id(visit, id_fields("trial_visits")) == "V-9"


def test_fidelity_of_values_and_key_order() -> None:
    entity = {
        "z": "\u0000 nul, é, 中文, 🎉",
        "a": 2**200,
        "m": -(2**64),
        "f": 0.1 + 0.2,
        "tiny": 5e-324,
        "neg0": -0.0,
        "i": 1.0,
        "n": None,
        "empty": {},
        "list": [],
        "deep": [[{"k": [None, True, False]}]],
    }
    back = roundtrip(entity)
    assert back == entity
    assert list(back) == list(entity)
    assert type(back["a"]) is int and type(back["i"]) is float
    assert str(back["neg0"]) == "-0.0"


def test_depth_limit() -> None:
    ok: object = "leaf"
    for _ in range(MAX_DEPTH - 1):
        ok = [ok]
    encode_entity({"v": ok}, "things", 0)  # exactly MAX_DEPTH levels
    with pytest.raises(InvalidEntityError, match=r"things\[0\].*deeper than 100"):
        encode_entity({"v": [ok]}, "things", 0)
    very_deep: object = 1
    for _ in range(100_000):
        very_deep = [very_deep]
    with pytest.raises(InvalidEntityError, match="deeper than 100"):
        encode_entity({"v": very_deep}, "things", 3)


def test_many_brackets_but_shallow_is_fine() -> None:
    entity = {"codes": [{"c": str(i)} for i in range(500)], "text": "[[[[{{{{" * 50}
    assert roundtrip(entity) == entity


@pytest.mark.parametrize(
    ("value", "field", "problem"),
    [
        (float("nan"), "$.x", "nan"),
        (float("inf"), "$.x", "inf"),
        ([1, float("-inf")], r"$.x[1]", "inf"),
        ({"a b": float("nan")}, '$.x["a b"]', "nan"),
        (10**4300, "$.x", "4300 digits"),
        ({1: "a"}, '$.x["1"]', "non-string key"),
        ({"s"}, "$.x", "set"),
        (object(), "$.x", "object"),
        (b"bytes", "$.x", "bytes"),
        ("\ud800", "$.x", "lone surrogate"),
    ],
    ids=["nan", "inf", "-inf-in-list", "nan-odd-key", "4301-digits", "int-key", "set", "object", "bytes", "surrogate"],
)
def test_refused_values_name_type_index_and_field(value: object, field: str, problem: str) -> None:
    with pytest.raises(InvalidEntityError) as info:
        encode_entity({"ok": 1, "x": value}, "patients", 7)
    message = str(info.value)
    assert "patients[7]" in message and field in message and problem in message
    assert (info.value.entity_type, info.value.index, info.value.field) == ("patients", 7, field)
    assert isinstance(info.value, ValueError)


def test_integer_of_4300_digits_is_accepted() -> None:
    big = 10**4299  # 4300 digits
    assert roundtrip({"n": big}) == {"n": big}


def test_nan_next_to_nulls_is_found() -> None:
    with pytest.raises(InvalidEntityError, match=r"\$\.b\.c"):
        encode_entity({"a": None, "b": {"c": float("nan")}}, "patients", 0)


def test_nan_inside_pydantic_model_is_refused() -> None:
    class M(pydantic.BaseModel):
        x: float

    with pytest.raises(InvalidEntityError, match="nan"):
        encode_entity(M(x=float("nan")), "things", 0)


def test_non_object_entity_is_refused() -> None:
    with pytest.raises(InvalidEntityError, match=r"patients\[2\] is a list"):
        encode_entity([1, 2], "patients", 2)


def test_encoded_text_is_compact_utf8_json() -> None:
    text = encode_entity({"name": "José", "n": 2**70}, "patients", 0)
    assert json.loads(text) == {"name": "José", "n": 2**70}
    assert "José".encode() in text


def test_iter_typed_entities_shape_errors() -> None:
    with pytest.raises(InvalidEntityError, match="must be a dict"):
        list(iter_typed_entities([{"patient_id": 1}]))  # type: ignore[arg-type]
    with pytest.raises(InvalidEntityError, match=r"entities\['patients'\] must be a list"):
        list(iter_typed_entities({"patients": {"patient_id": 1}}))
    assert [t for t, _ in iter_typed_entities({"Patient": [], "lab_result": []})] == ["patients", "lab_results"]


@pytest.mark.parametrize("big", [1, 10**20])  # the fast encoder, and the exact one (past 64 bits)
def test_both_encoders_take_100_levels_and_refuse_101(big: int) -> None:
    def nested(levels: int) -> dict[str, Any]:
        value: Any = []
        for _ in range(levels - 2):
            value = [value]
        return {"n": big, "deep": value}  # the entity, then levels - 1 of lists

    assert encode_entity(nested(100), "patients", 0)
    with pytest.raises(InvalidEntityError, match="deeper than 100"):
        encode_entity(nested(101), "patients", 0)
