"""Issue 23's export speed: the mapper's shortcuts give what the plain checks give.

The FHIR export asks cached answers for short texts (codes, code system names, the literal
text of a reference) and decides the extension's field diff inline for the common cases.
Each property here holds the shortcut to the plain rule it replaces, written out in the
test as it was before the shortcut, over wide inputs (odd spaces, URLs, numbers, lone
surrogates, equal values of other types), asked twice so the second answer is the cached one.
"""

from __future__ import annotations

import copy
import json
import re
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from healthsim.state.entities import id_fields, raw_entity_id, reference_text
from healthsim.state.exchange.fhir.carry import carry_extension, same
from healthsim.state.exchange.fhir.common import SYSTEMS, fhir_code, fhir_string, resource_id, system_url
from healthsim.state.exchange.fhir.outbound import own_key
from healthsim.state.exchange.fhir.refs import identifier, reference
from helpers.examples import examples
from helpers.strategies import json_values

_CODE = re.compile(r"[^\s]+( [^\s]+)*")
_SYSTEM_NAMES = {
    "ICD10CM": SYSTEMS["icd10cm"],
    "ICD10": SYSTEMS["icd10cm"],
    "ICD10PCS": SYSTEMS["icd10pcs"],
    "SNOMED": SYSTEMS["snomed"],
    "SNOMEDCT": SYSTEMS["snomed"],
    "SCT": SYSTEMS["snomed"],
    "LOINC": SYSTEMS["loinc"],
    "RXNORM": SYSTEMS["rxnorm"],
    "NDC": SYSTEMS["ndc"],
    "CPT": SYSTEMS["cpt"],
    "CVX": SYSTEMS["cvx"],
}

# Texts near the rules' edges: spaces of every kind, code system names in any spelling,
# URLs, lone surrogates, long texts (past the cached length).
_pieces = st.sampled_from(
    [" ", "  ", "\t", "\n", "\u00a0", "-", "_", "icd", "ICD-10-CM", "10", "loinc", "http://", "urn:", "x", "\ud800"]
)
texts = (
    st.text(max_size=12)
    | st.lists(_pieces, max_size=6).map("".join)
    | st.text(min_size=35, max_size=120)
    | st.sampled_from(["ICD-10-CM", "icd 10", "SNOMED CT", "Loinc", "https://x.org/cs", "http://a b", "E11.9"])
)
values = texts | st.integers() | st.booleans() | st.none() | st.floats(allow_nan=False) | json_values


def plain_code(value: Any) -> str | None:
    """``fhir_code`` as it was: no cache."""
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        return None
    text = str(value)
    return text if _CODE.fullmatch(text) else None


def plain_system(name: Any, default: str) -> str:
    """``system_url`` as it was: no cache."""
    if isinstance(name, str):
        if name.startswith(("http://", "https://", "urn:")) and _CODE.fullmatch(name):
            return name
        known = _SYSTEM_NAMES.get(re.sub(r"[\s_-]", "", name).upper())
        if known is not None:
            return known
    return default


def plain_reference(resource_type: str, entity_type: str, key: Any) -> dict[str, Any] | None:
    """``reference`` as it was: no cached literal (a number as references name it, 1.0 as "1")."""
    text = fhir_string(reference_text(key))
    if text is None:
        return None
    return {
        "reference": f"{resource_type}/{resource_id(entity_type, text)}",
        "identifier": identifier(entity_type, text),
    }


@settings(max_examples=examples(500), deadline=None)
@given(values)
def test_a_cached_code_check_is_the_plain_one(value: Any) -> None:
    expected = plain_code(value)
    assert fhir_code(value) == expected
    assert fhir_code(value) == expected  # the second time from the cache


@settings(max_examples=examples(500), deadline=None)
@given(values, st.sampled_from(sorted(set(SYSTEMS.values()))))
def test_a_cached_code_system_name_is_the_plain_one(name: Any, default: str) -> None:
    expected = plain_system(name, default)
    assert system_url(name, default) == expected
    assert system_url(name, default) == expected


@settings(max_examples=examples(300), deadline=None)
@given(values, st.sampled_from(["Patient", "Encounter", "Coverage"]), st.sampled_from(["patients", "members"]))
def test_a_reference_with_a_cached_literal_is_the_plain_one(key: Any, resource_type: str, entity_type: str) -> None:
    expected = plain_reference(resource_type, entity_type, key)
    assert reference(resource_type, entity_type, key) == expected
    assert reference(resource_type, entity_type, key) == expected


def plain_carry_fields(entity: dict[str, Any], base: dict[str, Any]) -> dict[str, Any]:
    """The extension's ``fields`` as they were: every field compared with ``same``."""
    return {k: v for k, v in entity.items() if k not in base or not same(base[k], v)}


# A reading shares keys with the entity; its values are the entity's own objects, equal
# copies, equal values of another JSON type (1 and 1.0 and true) or other values.
_other_types = st.sampled_from([1, 1.0, True, "1", [1], [1.0], {"a": 1}, {"a": 1.0}, None, ""])


@st.composite
def entity_and_reading(draw: st.DrawFn) -> tuple[dict[str, Any], dict[str, Any]]:
    entity = draw(st.dictionaries(st.text(max_size=6), json_values | _other_types, max_size=8))
    base: dict[str, Any] = {}
    for key, value in entity.items():
        how = draw(st.sampled_from(["absent", "same object", "copy", "other"]))
        if how == "same object":
            base[key] = value
        elif how == "copy":
            base[key] = copy.deepcopy(value)
        elif how == "other":
            base[key] = draw(json_values | _other_types)
    base.update(draw(st.dictionaries(st.text(max_size=6), json_values, max_size=2)))
    return entity, base


@settings(max_examples=examples(500), deadline=None)
@given(entity_and_reading())
def test_the_extensions_field_diff_is_the_plain_one(pair: tuple[dict[str, Any], dict[str, Any]]) -> None:
    entity, base = pair
    expected = plain_carry_fields(entity, base)
    text = carry_extension(entity, "labs", base)["valueString"]
    # The written diff names exactly the plain rule's fields, in the entity's order, as they are.
    written = json.loads(text).get("fields", {})
    assert list(written) == list(expected)
    assert same(written, json.loads(json.dumps(expected)))


def plain_own_key(entity: dict[str, Any], entity_type: str) -> str | None:
    """``own_key`` of a type keyed by its id fields, as it was: every field looked at (a
    number as references name it: 1.0 as "1")."""
    found = raw_entity_id(entity, id_fields(entity_type))
    if found is None:
        return None
    value = next(v for f in id_fields(entity_type) if raw_entity_id({f: (v := entity.get(f))}, (f,)) is not None)
    return fhir_string(reference_text(value))


_id_values = st.none() | values | st.uuids().map(str) | st.just("  ")


@settings(max_examples=examples(500), deadline=None)
@given(
    st.sampled_from(["diagnoses", "lab_results", "encounters", "claims", "care_gaps", "procedures"]),
    st.fixed_dictionaries(
        {},
        optional={
            "diagnosis_id": _id_values,
            "lab_result_id": _id_values,
            "encounter_id": _id_values,
            "claim_id": _id_values,
            "care_gap_id": _id_values,
            "procedure_id": _id_values,
            "id": _id_values,
            "_entity_id": _id_values,
            "code": _id_values,
        },
    ),
)
def test_an_entitys_own_key_is_the_plain_one(entity_type: str, entity: dict[str, Any]) -> None:
    assert own_key(entity, entity_type) == plain_own_key(entity, entity_type)
