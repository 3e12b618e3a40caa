"""Canonical entity -> FHIR R4 resources (the fields that have a FHIR home).

:func:`to_resources` returns the entity's resources, its primary one first (the one that
carries the HealthSim extension, see :mod:`.carry`). Values that cannot be valid FHIR
(a date that is not one, a blank string) are left out of the resource; the extension
keeps them. An entity that cannot become a valid resource at all raises
:class:`~.refs.Unmappable` with the reason.
"""

from __future__ import annotations

import base64
import datetime as _dt
import functools
from collections.abc import Callable
from typing import Any

from ...entities import id_fields, reference_text
from .common import (
    FHIR_FIELD,
    SYSTEMS,
    TYPE_SYSTEM,
    canonical_type,
    fhir_code,
    fhir_date,
    fhir_datetime,
    fhir_string,
    number,
    pick,
    resource_id,
    system_url,
)
from .refs import Unmappable, identifier, patient_reference, reference
from .vitals import BP_PANEL, VITALS, vital_observations

__all__ = ["GENDER_OUT", "Unmappable", "to_resources"]

GENDER_OUT = {"m": "male", "male": "male", "f": "female", "female": "female", "o": "other", "other": "other"}
GENDER_OUT |= {"u": "unknown", "unknown": "unknown"}
_CLASS_OUT = {"I": "IMP", "O": "AMB", "E": "EMER", "OBS": "OBSENC", "U": "AMB"}
_CLASS_NAMES = {
    "IMP": "inpatient encounter",
    "AMB": "ambulatory",
    "EMER": "emergency",
    "OBSENC": "observation encounter",
}
_ENCOUNTER_STATUS = {"planned", "arrived", "triaged", "in-progress", "onleave", "finished", "cancelled"}
_MED_STATUS = {"active", "on-hold", "cancelled", "completed", "entered-in-error", "stopped", "draft", "unknown"}
_RELATION_OUT = {"18": "self", "01": "spouse", "19": "child"}
_CLAIM_TYPES = {"PROFESSIONAL": "professional", "INSTITUTIONAL": "institutional", "DENTAL": "oral", "RX": "pharmacy"}


def _status(entity: dict[str, Any]) -> str | None:
    """The entity's status when it is text (a list or object cannot be looked up in a set)."""
    status = entity.get("status")
    return status if isinstance(status, str) else None


def _put(target: dict[str, Any], key: str, value: Any) -> None:
    """Set ``key`` unless the value is empty (FHIR has no empty elements)."""
    # Left out: None, [] and {}, told by truth and type (no [] and {} made to compare with).
    if value is not None and (value or not isinstance(value, (list, dict))):
        target[key] = value


def _text_concept(value: Any) -> dict[str, Any] | None:
    text = fhir_string(value)
    return None if text is None else {"text": text}


def _concept(code: Any, system: str, display: Any = None) -> dict[str, Any] | None:
    """A CodeableConcept of one coding (or only text, when the code is not a valid code)."""
    coded, text = fhir_code(code), fhir_string(display)
    if coded is None:
        return None if text is None else {"text": text}
    coding: dict[str, Any] = {"system": system, "code": coded}
    _put(coding, "display", text)
    concept: dict[str, Any] = {"coding": [coding]}
    _put(concept, "text", text)
    return concept


def _display_ref(value: Any) -> dict[str, Any] | None:
    text = fhir_string(value) if not isinstance(value, (int, float)) or isinstance(value, bool) else str(value)
    return None if text is None else {"display": text}


def _npi_ref(value: Any) -> dict[str, Any] | None:
    code = fhir_code(value)
    return None if code is None else {"identifier": {"system": SYSTEMS["npi"], "value": code}}


def _money(value: Any) -> dict[str, Any] | None:
    amount = number(value)
    return None if amount is None else {"value": amount, "currency": "USD"}


def human_name(name: Any) -> list[dict[str, Any]]:
    """The Patient.name of a canonical ``name`` (``given_name``/``family_name`` or the
    ``given``/``family`` variant, lists or strings; a plain string is the name's text)."""
    if isinstance(name, str):
        return [{"text": name}] if fhir_string(name) else []
    if not isinstance(name, dict):
        return []
    given = name.get("given_name", name.get("given"))
    given_list = [given] if isinstance(given, str) else given if isinstance(given, list) else []
    middle = name.get("middle_name")
    given_list = [*given_list, *([middle] if isinstance(middle, str) else [])]
    family = name.get("family_name", name.get("family"))
    if isinstance(family, list):
        family = " ".join(f for f in family if isinstance(f, str)) or None
    human: dict[str, Any] = {"use": "official"}
    _put(human, "family", fhir_string(family))
    _put(human, "given", [g for g in given_list if fhir_string(g)])
    for part in ("prefix", "suffix"):
        value = name.get(part)
        values = [value] if isinstance(value, str) else value if isinstance(value, list) else []
        _put(human, part, [v for v in values if fhir_string(v)])
    return [human] if len(human) > 1 else []


def _address(address: Any) -> list[dict[str, Any]]:
    if not isinstance(address, dict):
        return []
    lines = address.get("line")
    if not isinstance(lines, list):
        lines = [address.get("street_address"), address.get("street_address_2")]
    out: dict[str, Any] = {}
    _put(out, "line", [line for line in lines if fhir_string(line)])
    for ours, theirs in (("city", "city"), ("state", "state"), ("postal_code", "postalCode"), ("country", "country")):
        _put(out, theirs, fhir_string(address.get(ours)))
    return [out] if out else []


_TELECOM = (
    ("phone", "phone", "home"),
    ("phone_mobile", "phone", "mobile"),
    ("phone_work", "phone", "work"),
    ("email", "email", "home"),
    ("email_work", "email", "work"),
)


def _telecom(contact: Any) -> list[dict[str, Any]]:
    if not isinstance(contact, dict):
        return []
    return [
        {"system": system, "value": contact[field], "use": use}
        for field, system, use in _TELECOM
        if fhir_string(contact.get(field))
    ]


def person(resource: dict[str, Any], entity: dict[str, Any], entity_type: str) -> None:
    """The person fields of a patient or member on a Patient resource."""
    _put(resource, "name", human_name(entity.get("name")))
    _put(resource, "telecom", _telecom(entity.get("contact")))
    gender = pick(entity, entity_type, "gender")
    _put(resource, "gender", GENDER_OUT.get(gender.lower()) if isinstance(gender, str) else None)
    _put(resource, "birthDate", fhir_date(pick(entity, entity_type, "birth_date")))
    death = fhir_datetime(pick(entity, entity_type, "death_date"))
    if death is not None:
        resource["deceasedDateTime"] = death
    elif isinstance(entity.get("deceased"), bool):
        resource["deceasedBoolean"] = entity["deceased"]
    _put(resource, "address", _address(entity.get("address")))
    language = _text_concept(entity.get("language"))
    _put(resource, "communication", [{"language": language}] if language else None)


def _patient(entity: dict[str, Any], key: str, own: bool) -> list[dict[str, Any]]:
    resource: dict[str, Any] = {"resourceType": "Patient", "id": resource_id("patients", key)}
    if own:
        mrn = identifier("patients", key) | {"type": {"coding": [{"system": SYSTEMS["v2_0203"], "code": "MR"}]}}
        resource["identifier"] = [mrn]
    ssn = fhir_code(entity.get("ssn"))
    if ssn is not None:
        resource.setdefault("identifier", []).append({"system": "http://hl7.org/fhir/sid/us-ssn", "value": ssn})
    person(resource, entity, "patients")
    return [resource]


def _encounter(entity: dict[str, Any], key: str, own: bool) -> list[dict[str, Any]]:
    resource: dict[str, Any] = {"resourceType": "Encounter", "id": resource_id("encounters", key)}
    if own:
        resource["identifier"] = [identifier("encounters", key)]
    status = _status(entity)
    resource["status"] = status if status in _ENCOUNTER_STATUS else "onleave" if status == "on-hold" else "unknown"
    raw = pick(entity, "encounters", "class_code")
    code = _CLASS_OUT.get(raw, raw) if isinstance(raw, str) else None
    coded = fhir_code(code)
    resource["class"] = {"system": SYSTEMS["actcode"], "code": coded or "AMB"}
    if coded in _CLASS_NAMES:
        resource["class"]["display"] = _CLASS_NAMES[coded]
    kind = _text_concept(pick(entity, "encounters", "encounter_type"))
    _put(resource, "type", [kind] if kind else None)
    _put(resource, "subject", patient_reference(entity, "encounters"))
    period: dict[str, Any] = {}
    _put(period, "start", fhir_datetime(pick(entity, "encounters", "admission_time")))
    _put(period, "end", fhir_datetime(pick(entity, "encounters", "discharge_time")))
    _put(resource, "period", period)
    participants = []
    for field, c in (("attending_physician", "ATND"), ("admitting_physician", "ADM")):
        individual = _display_ref(entity.get(field))
        if individual:
            role = {"system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "code": c}
            participants.append({"type": [{"coding": [role]}], "individual": individual})
    _put(resource, "participant", participants)
    reason = _text_concept(pick(entity, "encounters", "chief_complaint"))
    _put(resource, "reasonCode", [reason] if reason else None)
    disposition = _text_concept(entity.get("discharge_disposition"))
    _put(resource, "hospitalization", {"dischargeDisposition": disposition} if disposition else None)
    facility = _display_ref(entity.get("facility"))
    _put(resource, "location", [{"location": facility}] if facility else None)
    return [resource]


def _condition(entity: dict[str, Any], key: str, own: bool) -> list[dict[str, Any]]:
    resource: dict[str, Any] = {"resourceType": "Condition", "id": resource_id("diagnoses", key)}
    system = system_url(pick(entity, "diagnoses", "code_system"), SYSTEMS["icd10cm"])
    resolved = fhir_datetime(entity.get("resolved_date"))
    status = "resolved" if resolved else "active"
    resource["clinicalStatus"] = {"coding": [{"system": SYSTEMS["condition_clinical"], "code": status}]}
    resource["category"] = [{"coding": [{"system": SYSTEMS["condition_category"], "code": "encounter-diagnosis"}]}]
    _put(resource, "code", _concept(entity.get("code"), system, pick(entity, "diagnoses", "description")))
    resource["subject"] = patient_reference(entity, "diagnoses")
    _put(resource, "encounter", reference("Encounter", "encounters", pick(entity, "diagnoses", "encounter_id")))
    _put(resource, "onsetDateTime", fhir_datetime(pick(entity, "diagnoses", "diagnosed_date")))
    _put(resource, "abatementDateTime", resolved)
    return [resource]


def _procedure(entity: dict[str, Any], key: str, own: bool) -> list[dict[str, Any]]:
    resource: dict[str, Any] = {
        "resourceType": "Procedure",
        "id": resource_id("procedures", key),
        "status": "completed",
    }
    code = entity.get("code")
    guess = SYSTEMS["icd10pcs"] if isinstance(code, str) and len(code) == 7 else SYSTEMS["cpt"]
    system = system_url(pick(entity, "procedures", "code_system"), guess)
    _put(resource, "code", _concept(code, system, pick(entity, "procedures", "description")))
    resource["subject"] = patient_reference(entity, "procedures")
    _put(resource, "encounter", reference("Encounter", "encounters", pick(entity, "procedures", "encounter_id")))
    _put(resource, "performedDateTime", fhir_datetime(pick(entity, "procedures", "performed_date")))
    performer = _display_ref(entity.get("performer"))
    _put(resource, "performer", [{"actor": performer}] if performer else None)
    _put(resource, "location", _display_ref(entity.get("location")))
    return [resource]


def _medication(entity: dict[str, Any], key: str, own: bool) -> list[dict[str, Any]]:
    status = _status(entity)
    resource: dict[str, Any] = {
        "resourceType": "MedicationRequest",
        "id": resource_id("medications", key),
        "status": status if status in _MED_STATUS else "unknown",
        "intent": "order",
    }
    medication = _concept(pick(entity, "medications", "code"), SYSTEMS["rxnorm"], pick(entity, "medications", "name"))
    kept = entity.get(FHIR_FIELD)
    named = kept.get("medicationReference") if isinstance(kept, dict) else None
    if medication is not None:
        resource["medicationCodeableConcept"] = medication
    elif isinstance(named, dict) and named:  # a source's reference to its Medication (HL7's examples)
        resource["medicationReference"] = dict(named)
    else:
        raise Unmappable("no medication name or code")
    resource["subject"] = patient_reference(entity, "medications")
    _put(resource, "encounter", reference("Encounter", "encounters", pick(entity, "medications", "encounter_id")))
    _put(resource, "authoredOn", fhir_datetime(entity.get("start_date")))
    _put(resource, "requester", _display_ref(entity.get("prescriber")))
    reason = _text_concept(entity.get("indication"))
    _put(resource, "reasonCode", [reason] if reason else None)
    dosage: dict[str, Any] = {}
    _put(dosage, "text", fhir_string(entity.get("dose")))
    frequency = _text_concept(entity.get("frequency"))
    _put(dosage, "timing", {"code": frequency} if frequency else None)
    _put(dosage, "route", _text_concept(entity.get("route")))
    _put(resource, "dosageInstruction", [dosage] if dosage else None)
    period: dict[str, Any] = {}
    _put(period, "start", fhir_datetime(entity.get("start_date")))
    _put(period, "end", fhir_datetime(entity.get("end_date")))
    _put(resource, "dispenseRequest", {"validityPeriod": period} if period else None)
    return [resource]


def _lab(entity: dict[str, Any], key: str, own: bool) -> list[dict[str, Any]]:
    code = _concept(
        pick(entity, "lab_results", "loinc_code"), SYSTEMS["loinc"], pick(entity, "lab_results", "test_name")
    )
    if code is None:
        raise Unmappable("no test name or LOINC code")
    category = {"coding": [{"system": SYSTEMS["obs_category"], "code": "laboratory"}]}
    resource: dict[str, Any] = {
        "resourceType": "Observation",
        "id": resource_id("lab_results", key),
        "status": "final",
        "category": [category],
        "code": code,
        "subject": patient_reference(entity, "lab_results"),
    }
    _put(resource, "encounter", reference("Encounter", "encounters", pick(entity, "lab_results", "encounter_id")))
    _put(resource, "effectiveDateTime", fhir_datetime(pick(entity, "lab_results", "collected_time")))
    resulted = fhir_datetime(entity.get("resulted_time"))
    _put(resource, "issued", resulted if resulted is not None and len(resulted) > 10 else None)
    value, unit = entity.get("value"), fhir_string(entity.get("unit"))
    if number(value) is not None:
        resource["valueQuantity"] = {"value": value} | ({"unit": unit} if unit else {})
    else:
        _put(resource, "valueString", fhir_string(value))
    flag = fhir_code(entity.get("abnormal_flag"))
    _put(
        resource,
        "interpretation",
        [{"coding": [{"system": SYSTEMS["interpretation"], "code": flag}]}] if flag else None,
    )
    ranges = fhir_string(entity.get("reference_range"))
    _put(resource, "referenceRange", [{"text": ranges}] if ranges else None)
    lab = _display_ref(entity.get("performing_lab"))
    _put(resource, "performer", [lab] if lab else None)
    return [resource]


def _vitals(entity: dict[str, Any], key: str, own: bool) -> list[dict[str, Any]]:
    subject = patient_reference(entity, "vital_signs")
    encounter = reference("Encounter", "encounters", pick(entity, "vital_signs", "encounter_id"))
    when = fhir_datetime(pick(entity, "vital_signs", "observation_time"))
    return vital_observations(entity, resource_id("vital_signs", key), subject, encounter, when)


def _member(entity: dict[str, Any], key: str, own: bool) -> list[dict[str, Any]]:
    if not own:
        raise Unmappable("no member_id")
    patient: dict[str, Any] = {"resourceType": "Patient", "id": resource_id("members", key)}
    patient["identifier"] = [identifier("members", key)]
    person(patient, entity, "members")
    coverage: dict[str, Any] = {
        "resourceType": "Coverage",
        "id": resource_id("members/coverage", key),
        "status": "active",
        "beneficiary": {"reference": f"Patient/{patient['id']}", "identifier": identifier("members", key)},
        "payor": [
            {"display": f"group {entity.get('group_id')}" if fhir_string(entity.get("group_id")) else "not given"}
        ],
    }
    _put(coverage, "subscriberId", fhir_string(entity.get("subscriber_id")))
    relation = fhir_code(_RELATION_OUT.get(str(entity.get("relationship_code"))))
    _put(
        coverage,
        "relationship",
        {"coding": [{"system": SYSTEMS["relationship"], "code": relation}]} if relation else None,
    )
    period: dict[str, Any] = {}
    _put(period, "start", fhir_datetime(entity.get("coverage_start")))
    _put(period, "end", fhir_datetime(entity.get("coverage_end")))
    _put(coverage, "period", period)
    classes = [
        {
            "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/coverage-class", "code": kind}]},
            "value": entity[field],
        }
        for field, kind in (("group_id", "group"), ("plan_code", "plan"))
        if fhir_string(entity.get(field))
    ]
    _put(coverage, "class", classes)
    return [patient, coverage]


def _claim_item(line: Any, position: int, system: str, code_field: str) -> dict[str, Any]:
    line = line if isinstance(line, dict) else {}
    get = functools.partial(pick, line, "claim_lines")  # (a call in C: seven fields per line)
    number_given = get("line_number")
    sequence = (
        number_given
        if isinstance(number_given, int) and not isinstance(number_given, bool) and 0 < number_given < 2**31
        else position
    )
    item: dict[str, Any] = {"sequence": sequence}
    item["productOrService"] = _concept(get(code_field), system) or {"text": "not given"}
    modifiers = get("procedure_modifiers")
    codes = [fhir_code(m) for m in modifiers] if isinstance(modifiers, list) else []
    _put(item, "modifier", [{"coding": [{"system": SYSTEMS["cpt"], "code": c}]} for c in codes if c])
    _put(item, "revenue", _concept(get("revenue_code"), "https://www.nubc.org/CodeSystem/RevenueCodes"))
    _put(item, "servicedDate", fhir_date(get("service_date")))
    units = number(get("units"))
    _put(item, "quantity", {"value": units} if units is not None else None)
    _put(item, "net", _money(get("charge_amount")))
    return item


def _claim_common(entity: dict[str, Any], key: str, entity_type: str, kind: str, today: str) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "Claim",
        "id": resource_id(entity_type, key),
        "identifier": [identifier(entity_type, key)],
        "status": "active",
        "type": {"coding": [{"system": SYSTEMS["claim_type"], "code": kind}]},
        "use": "claim",
        "patient": patient_reference(entity, entity_type),
    }
    dates = [fhir_datetime(entity.get(f)) for f in ("service_date", "admission_date", "written_date")]
    resource["created"] = next((d for d in dates if d), today)
    resource["priority"] = {"coding": [{"system": SYSTEMS["priority"], "code": "normal"}]}
    member = reference("Coverage", "members/coverage", entity.get("member_id"))
    if member is not None:
        member["identifier"] = identifier("members", str(reference_text(entity["member_id"])))
    resource["insurance"] = [{"sequence": 1, "focal": True, "coverage": member or {"display": "not given"}}]
    return resource


def _claim(entity: dict[str, Any], key: str, own: bool, today: str) -> list[dict[str, Any]]:
    kind = _CLAIM_TYPES.get(str(entity.get("claim_type")).upper(), "professional")
    resource = _claim_common(entity, key, "claims", kind, today)
    resource["provider"] = _npi_ref(entity.get("provider_npi")) or {"display": "not given"}
    period: dict[str, Any] = {}
    _put(period, "start", fhir_datetime(entity.get("admission_date") or entity.get("service_date")))
    _put(period, "end", fhir_datetime(entity.get("discharge_date")))
    _put(resource, "billablePeriod", period)
    codes = [entity.get("principal_diagnosis")]
    others = entity.get("other_diagnoses")
    codes += others if isinstance(others, list) else []
    diagnoses = [_concept(c, SYSTEMS["icd10cm"]) for c in codes]
    _put(
        resource,
        "diagnosis",
        [{"sequence": n, "diagnosisCodeableConcept": d} for n, d in enumerate(diagnoses, 1) if d is not None],
    )
    lines = pick(entity, "claims", "claim_lines")
    items = (
        [_claim_item(line, n, SYSTEMS["cpt"], "procedure_code") for n, line in enumerate(lines or [], 1)]
        if isinstance(lines, list)
        else []
    )
    _put(resource, "item", items)
    _put(resource, "total", _money(pick(entity, "claims", "total_charge")))
    return [resource]


def _pharmacy_claim(entity: dict[str, Any], key: str, own: bool, today: str) -> list[dict[str, Any]]:
    resource = _claim_common(entity, key, "pharmacy_claims", "pharmacy", today)
    resource["provider"] = _npi_ref(entity.get("pharmacy_npi")) or {"display": "not given"}
    item: dict[str, Any] = {
        "sequence": 1,
        "productOrService": _concept(entity.get("ndc"), SYSTEMS["ndc"]) or {"text": "not given"},
    }
    quantity = number(entity.get("quantity_dispensed"))
    _put(item, "quantity", {"value": quantity} if quantity is not None else None)
    _put(item, "net", _money(entity.get("gross_amount_due")))
    resource["item"] = [item]
    return [resource]


def _prescription(entity: dict[str, Any], key: str, own: bool) -> list[dict[str, Any]]:
    medication = _concept(entity.get("ndc"), SYSTEMS["ndc"], pick(entity, "prescriptions", "drug_name"))
    if medication is None:
        raise Unmappable("no drug name or NDC")
    resource: dict[str, Any] = {
        "resourceType": "MedicationRequest",
        "id": resource_id("prescriptions", key),
        "identifier": [identifier("prescriptions", key)],
        "status": "active",
        "intent": "order",
        "medicationCodeableConcept": medication,
        "subject": patient_reference(entity, "prescriptions"),
    }
    _put(resource, "authoredOn", fhir_datetime(entity.get("written_date")))
    _put(resource, "requester", _npi_ref(entity.get("prescriber_npi")))
    directions = fhir_string(entity.get("directions"))
    _put(resource, "dosageInstruction", [{"text": directions}] if directions else None)
    dispense: dict[str, Any] = {}
    refills = entity.get("refills_authorized")
    if isinstance(refills, int) and not isinstance(refills, bool) and 0 <= refills < 2**31:
        dispense["numberOfRepeatsAllowed"] = refills
    quantity = number(entity.get("quantity_prescribed"))
    _put(dispense, "quantity", {"value": quantity} if quantity is not None else None)
    days = number(entity.get("days_supply"))
    if days is not None:
        dispense["expectedSupplyDuration"] = {"value": days, "unit": "days", "system": SYSTEMS["ucum"], "code": "d"}
    expires = fhir_datetime(entity.get("expiration_date"))
    _put(dispense, "validityPeriod", {"end": expires} if expires else None)
    _put(resource, "dispenseRequest", dispense)
    return [resource]


def _subject(entity: dict[str, Any], key: str, own: bool) -> list[dict[str, Any]]:
    status = _status(entity)
    states = {
        "candidate",
        "eligible",
        "follow-up",
        "ineligible",
        "not-registered",
        "off-study",
        "on-study",
        "on-study-intervention",
        "on-study-observation",
        "pending-on-study",
        "potential-candidate",
        "screening",
        "withdrawn",
    }
    resource: dict[str, Any] = {
        "resourceType": "ResearchSubject",
        "id": resource_id("subjects", key),
        "status": status if status in states else "on-study",
        "study": {"identifier": identifier("studies", str(entity.get("protocol_id")))}
        if fhir_string(str(entity.get("protocol_id") or ""))
        else {"display": "not given"},
        "individual": patient_reference(entity, "subjects", required=False)
        or {"identifier": identifier("subjects", key)},
    }
    if own:
        resource["identifier"] = [identifier("subjects", key)]
    _put(resource, "assignedArm", fhir_string(entity.get("arm")))
    period: dict[str, Any] = {}
    _put(period, "start", fhir_datetime(entity.get("randomization_date") or entity.get("screening_date")))
    _put(resource, "period", period)
    return [resource]


def _note(entity: dict[str, Any], key: str, own: bool) -> list[dict[str, Any]]:
    text = entity.get("text")
    attachment: dict[str, Any] = {"contentType": "text/plain"}
    if isinstance(text, str) and text:
        attachment["data"] = base64.b64encode(text.encode("utf-8", "surrogatepass")).decode("ascii")
    resource: dict[str, Any] = {
        "resourceType": "DocumentReference",
        "id": resource_id("clinical_notes", key),
        "status": "current",
        "content": [{"attachment": attachment}],
        "subject": patient_reference(entity, "clinical_notes"),
    }
    _put(resource, "type", _text_concept(entity.get("note_type")))
    when = fhir_datetime(entity.get("note_time"))
    _put(resource, "date", when if when is not None and len(when) > 10 else None)
    author = _display_ref(entity.get("author"))
    _put(resource, "author", [author] if author else None)
    encounter = reference("Encounter", "encounters", pick(entity, "clinical_notes", "encounter_id"))
    _put(resource, "context", {"encounter": [encounter]} if encounter else None)
    return [resource]


def _immunization(entity: dict[str, Any], key: str, own: bool) -> list[dict[str, Any]]:
    when = fhir_datetime(pick(entity, "immunizations", "date"))
    if when is None:
        raise Unmappable("no date the vaccine was given (date)")
    vaccine = _concept(pick(entity, "immunizations", "vaccine_code"), SYSTEMS["cvx"], entity.get("description"))
    resource: dict[str, Any] = {
        "resourceType": "Immunization",
        "id": resource_id("immunizations", key),
        "status": "completed",
        "vaccineCode": vaccine or {"text": "not given"},
        "patient": patient_reference(entity, "immunizations"),
        "occurrenceDateTime": when,
    }
    _put(resource, "encounter", reference("Encounter", "encounters", pick(entity, "immunizations", "encounter_id")))
    return [resource]


def _allergy(entity: dict[str, Any], key: str, own: bool) -> list[dict[str, Any]]:
    resource: dict[str, Any] = {"resourceType": "AllergyIntolerance", "id": resource_id("allergies", key)}
    _put(resource, "code", _concept(entity.get("code"), SYSTEMS["snomed"], pick(entity, "allergies", "substance")))
    resource["patient"] = patient_reference(entity, "allergies")
    _put(resource, "encounter", reference("Encounter", "encounters", pick(entity, "allergies", "encounter_id")))
    _put(resource, "onsetDateTime", fhir_datetime(pick(entity, "allergies", "date")))
    return [resource]


def _basic(entity: dict[str, Any], key: str, own: bool, entity_type: str) -> list[dict[str, Any]]:
    """A type with no FHIR resource of its own: a Basic resource; the extension holds it."""
    resource: dict[str, Any] = {
        "resourceType": "Basic",
        "id": resource_id(entity_type, key),
        "code": {"coding": [{"system": TYPE_SYSTEM, "code": entity_type}]},
    }
    if own:
        resource["identifier"] = [identifier(entity_type, key)]
    _put(resource, "subject", patient_reference(entity, entity_type, required=False))
    return [resource]


Mapper = Callable[[dict[str, Any], str, bool], list[dict[str, Any]]]
_MAPPERS: dict[str, Mapper] = {
    "patients": _patient,
    "encounters": _encounter,
    "diagnoses": _condition,
    "procedures": _procedure,
    "medications": _medication,
    "lab_results": _lab,
    "vital_signs": _vitals,
    "members": _member,
    "prescriptions": _prescription,
    "subjects": _subject,
    "clinical_notes": _note,
    "immunizations": _immunization,
    "allergies": _allergy,
}


_id_fields = functools.lru_cache(maxsize=256)(id_fields)


def own_key(entity: dict[str, Any], entity_type: str) -> str | None:
    """The entity's own id as the mapping keys it (a patient: its MRN or patient_id)."""
    canonical = canonical_type(entity_type)
    # (a number as references name it: 1.0 is "1", see entities.reference_text)
    if canonical == "patients":
        return fhir_string(reference_text(pick(entity, "patients", "mrn")))
    if canonical == "prescriptions":
        return fhir_string(reference_text(entity.get("prescription_number")))
    fields = _id_fields(canonical)
    for field in fields:
        # Most entities of a type without an own id field (diagnoses, labs): no look at types.
        if entity.get(field) is not None:
            # (the first id field holding a string or a number, as raw_entity_id takes it)
            for name in fields:
                value = entity.get(name)
                if isinstance(value, (str, int, float)) and not isinstance(value, bool):
                    return fhir_string(reference_text(value))
            return None
    return None


def to_resources(entity: Any, entity_type: str, entity_uuid: str, today: _dt.date) -> list[dict[str, Any]]:
    """The resources of one entity (its primary resource first).

    Args:
        entity: the stored entity (a JSON object).
        entity_type: its stored type (``labs`` is read as ``lab_results``).
        entity_uuid: the stored entity id, which keys entities with no own id.
        today: the date claims without any date are created on (the scenario's last change).

    Raises:
        Unmappable: the entity cannot become a valid resource (the reason).
    """
    if not isinstance(entity, dict):
        raise Unmappable("the entity is not a JSON object")
    canonical = canonical_type(entity_type)
    key = own_key(entity, canonical)
    own = key is not None
    key = key if key is not None else entity_uuid
    if canonical == "claims":
        return _claim(entity, key, own, today.isoformat())
    if canonical == "pharmacy_claims":
        return _pharmacy_claim(entity, key, own, today.isoformat())
    mapper = _MAPPERS.get(canonical)
    if mapper is None:
        return _basic(entity, key, own, entity_type)
    return mapper(entity, key, own)


__all__ += ["BP_PANEL", "VITALS", "human_name", "own_key", "person"]
