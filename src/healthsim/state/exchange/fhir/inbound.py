"""FHIR R4 resources -> canonical entities (the fields that have a FHIR home).

:func:`from_resource` reads one resource as the entity of a canonical type (``hint``, the
type our extension names, decides where FHIR alone cannot: a Patient of a member, a
MedicationRequest of a prescription). A resource with no canonical home is kept whole
under ``fhir_{resource type}`` (``fhir_provenance``, ``fhir_care_plan``…).
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable
from typing import Any

from ...entities import normalize_type
from ...errors import InvalidEntityError
from .common import SYSTEMS, TYPE_SYSTEM
from .refs import id_system, ref_key
from .vitals import BP_PANEL, PANEL, VITAL_BY_CODE, vital_values

__all__ = ["from_resource", "kept_type"]

_GENDER_IN = {"male": "M", "female": "F", "other": "O", "unknown": "U"}
_CLASS_IN = {"IMP": "I", "AMB": "O", "EMER": "E", "OBSENC": "OBS"}
_CLAIM_TYPES_IN = {"professional": "PROFESSIONAL", "institutional": "INSTITUTIONAL", "oral": "DENTAL", "pharmacy": "RX"}
_RELATION_IN = {"self": "18", "spouse": "01", "child": "19"}
# (Made once: each is asked for per resource read.)
_TELECOM_FIELDS = {"phone": "phone", "email": "email"}
_TELECOM_USES = {"mobile": "_mobile", "work": "_work"}
# PPRF (primary performer) is how Synthea names the clinician of an encounter.
_PARTICIPANT_FIELDS = {"ATND": "attending_physician", "PPRF": "attending_physician", "ADM": "admitting_physician"}
Entity = dict[str, Any]


def kept_type(resource_type: str) -> str:
    """The entity type a resource with no canonical home is kept under."""
    return "fhir_" + re.sub(r"(?<!^)(?=[A-Z])", "_", resource_type).lower()


def _set(entity: Entity, key: str, value: Any) -> None:
    if value is not None:
        entity[key] = value


def _own(resource: dict[str, Any], entity_type: str) -> Any:
    """The entity's own id: our identifier's value, else the resource's id."""
    system = id_system(entity_type)
    for ident in resource.get("identifier") or []:
        if isinstance(ident, dict) and ident.get("system") == system:
            return ident.get("value")
    return resource.get("id")


def _coding(concept: Any) -> dict[str, Any]:
    if not isinstance(concept, dict):
        return {}
    codings = concept.get("coding")
    return codings[0] if isinstance(codings, list) and codings and isinstance(codings[0], dict) else {}


def _text(concept: Any) -> Any:
    if not isinstance(concept, dict):
        return None
    return concept.get("text", _coding(concept).get("display"))


def _first(values: Any) -> Any:
    return values[0] if isinstance(values, list) and values else None


def _subject(entity: Entity, ref: Any) -> None:
    """``patient_mrn`` (or ``member_id``, for a member's Patient) from a reference."""
    key = ref_key(ref)
    if key is None:
        return
    ident = ref.get("identifier") if isinstance(ref, dict) else None
    member = isinstance(ident, dict) and ident.get("system") == id_system("members")
    entity["member_id" if member else "patient_mrn"] = key


def _encounter_of(entity: Entity, ref: Any) -> None:
    _set(entity, "encounter_id", ref_key(ref))


def _display(ref: Any) -> Any:
    return ref.get("display", ref_key(ref)) if isinstance(ref, dict) else None


def person(resource: dict[str, Any], entity: Entity) -> None:
    """The person fields of a Patient."""
    names = resource.get("name") or []
    name = next((n for n in names if isinstance(n, dict) and n.get("use") == "official"), _first(names))
    if isinstance(name, dict):
        given = [g for g in name.get("given") or [] if isinstance(g, str)]
        parts: Entity = {}
        _set(parts, "given_name", given[0] if given else None)
        _set(parts, "middle_name", " ".join(given[1:]) or None)
        _set(parts, "family_name", name.get("family"))
        _set(parts, "prefix", _first(name.get("prefix")))
        _set(parts, "suffix", _first(name.get("suffix")))
        entity["name"] = parts if parts else name.get("text")
    _set(entity, "birth_date", resource.get("birthDate"))
    _set(entity, "gender", _GENDER_IN.get(resource.get("gender", "")))
    address = _first(resource.get("address"))
    if isinstance(address, dict):
        out: Entity = {}
        lines = address.get("line") or []
        _set(out, "street_address", lines[0] if lines else None)
        _set(out, "street_address_2", " ".join(lines[1:]) or None)
        for ours, theirs in (
            ("city", "city"),
            ("state", "state"),
            ("postal_code", "postalCode"),
            ("country", "country"),
        ):
            _set(out, ours, address.get(theirs))
        entity["address"] = out
    contact: Entity = {}
    for telecom in resource.get("telecom") or []:
        field = _TELECOM_FIELDS.get(telecom.get("system", ""))
        if field is not None and telecom.get("value") is not None:
            suffix = _TELECOM_USES.get(telecom.get("use", ""), "")
            contact.setdefault(field + suffix, telecom["value"])
    _set(entity, "contact", contact or None)
    if "deceasedDateTime" in resource:
        entity["deceased"], entity["death_date"] = True, resource["deceasedDateTime"]
    _set(entity, "deceased", resource.get("deceasedBoolean"))
    ssn = next(
        (
            i.get("value")
            for i in resource.get("identifier") or []
            if i.get("system") == "http://hl7.org/fhir/sid/us-ssn"
        ),
        None,
    )
    _set(entity, "ssn", ssn)
    _set(entity, "language", _text(_first(resource.get("communication") or [{}]).get("language")))


def _patient(resource: dict[str, Any], hint: str) -> tuple[str, Entity]:
    if hint == "members":
        entity: Entity = {}
        _set(entity, "member_id", _own(resource, "members"))
        person(resource, entity)
        return "members", entity
    key = _own(resource, "patients")
    entity = {} if key is None else {"patient_id": key, "mrn": key}  # no id: no null ids
    person(resource, entity)
    return "patients", entity


def _encounter(resource: dict[str, Any], hint: str) -> tuple[str, Entity]:
    entity: Entity = {}
    _set(entity, "encounter_id", _own(resource, "encounters"))
    _subject(entity, resource.get("subject"))
    code = (resource.get("class") or {}).get("code")
    _set(entity, "class_code", _CLASS_IN.get(code, code) if isinstance(code, str) else code)
    _set(entity, "status", resource.get("status"))
    period = resource.get("period") or {}
    _set(entity, "admission_time", period.get("start"))
    _set(entity, "discharge_time", period.get("end"))
    _set(entity, "encounter_type", _text(_first(resource.get("type"))))
    _set(entity, "chief_complaint", _text(_first(resource.get("reasonCode"))))
    _set(entity, "discharge_disposition", _text((resource.get("hospitalization") or {}).get("dischargeDisposition")))
    _set(entity, "facility", _display((_first(resource.get("location")) or {}).get("location")))
    for participant in resource.get("participant") or []:
        role = _coding(_first(participant.get("type"))).get("code")
        field = _PARTICIPANT_FIELDS.get(role or "")
        if field is not None and field not in entity:
            _set(entity, field, _display(participant.get("individual")))
    return "encounters", entity


def _coded(entity: Entity, concept: Any, usual: tuple[str, ...], text_field: str) -> None:
    """``code``, the description and (when not the type's usual system) ``code_system``."""
    coding = _coding(concept)
    _set(entity, "code", coding.get("code"))
    _set(entity, text_field, _text(concept))
    if coding.get("system") is not None and coding.get("system") not in usual:
        entity["code_system"] = coding["system"]


def _condition(resource: dict[str, Any], hint: str) -> tuple[str, Entity]:
    entity: Entity = {}
    _subject(entity, resource.get("subject"))
    _encounter_of(entity, resource.get("encounter"))
    _coded(entity, resource.get("code"), (SYSTEMS["icd10cm"],), "description")
    _set(entity, "diagnosed_date", resource.get("onsetDateTime"))
    _set(entity, "resolved_date", resource.get("abatementDateTime"))
    return "diagnoses", entity


def _procedure(resource: dict[str, Any], hint: str) -> tuple[str, Entity]:
    entity: Entity = {}
    _subject(entity, resource.get("subject"))
    _encounter_of(entity, resource.get("encounter"))
    _coded(entity, resource.get("code"), (SYSTEMS["cpt"], SYSTEMS["icd10pcs"]), "description")
    _set(
        entity,
        "performed_date",
        resource.get("performedDateTime", (resource.get("performedPeriod") or {}).get("start")),
    )
    _set(entity, "performer", _display((_first(resource.get("performer")) or {}).get("actor")))
    _set(entity, "location", _display(resource.get("location")))
    return "procedures", entity


def _medication_request(resource: dict[str, Any], hint: str) -> tuple[str, Entity]:
    if hint == "prescriptions":
        return _prescription(resource)
    entity: Entity = {}
    concept = resource.get("medicationCodeableConcept")
    _set(entity, "name", _text(concept))
    _set(entity, "code", _coding(concept).get("code"))
    _subject(entity, resource.get("subject"))
    _encounter_of(entity, resource.get("encounter"))
    _set(entity, "status", resource.get("status"))
    _set(entity, "start_date", resource.get("authoredOn"))
    _set(entity, "end_date", ((resource.get("dispenseRequest") or {}).get("validityPeriod") or {}).get("end"))
    _set(entity, "prescriber", _display(resource.get("requester")))
    _set(entity, "indication", _text(_first(resource.get("reasonCode"))))
    dosage = _first(resource.get("dosageInstruction")) or {}
    _set(entity, "dose", dosage.get("text"))
    _set(entity, "route", _text(dosage.get("route")))
    _set(entity, "frequency", _text((dosage.get("timing") or {}).get("code")))
    return "medications", entity


def _prescription(resource: dict[str, Any]) -> tuple[str, Entity]:
    entity: Entity = {}
    _set(entity, "prescription_number", _own(resource, "prescriptions"))
    concept = resource.get("medicationCodeableConcept")
    _set(entity, "ndc", _coding(concept).get("code"))
    _set(entity, "drug_name", _text(concept))
    _subject(entity, resource.get("subject"))
    _set(entity, "written_date", resource.get("authoredOn"))
    _set(entity, "prescriber_npi", ref_key(resource.get("requester")))
    _set(entity, "directions", (_first(resource.get("dosageInstruction")) or {}).get("text"))
    dispense = resource.get("dispenseRequest") or {}
    _set(entity, "refills_authorized", dispense.get("numberOfRepeatsAllowed"))
    _set(entity, "quantity_prescribed", (dispense.get("quantity") or {}).get("value"))
    _set(entity, "days_supply", (dispense.get("expectedSupplyDuration") or {}).get("value"))
    _set(entity, "expiration_date", (dispense.get("validityPeriod") or {}).get("end"))
    return "prescriptions", entity


def _observation(resource: dict[str, Any], hint: str) -> tuple[str, Entity]:
    entity: Entity = {}
    _subject(entity, resource.get("subject"))
    _encounter_of(entity, resource.get("encounter"))
    coding = _coding(resource.get("code"))
    code = coding.get("code")
    category = _coding(_first(resource.get("category"))).get("code")
    vital = code in VITAL_BY_CODE or code in (BP_PANEL[0], PANEL[0])
    if hint == "vital_signs" or (not hint and category == "vital-signs" and vital):
        _set(entity, "observation_time", resource.get("effectiveDateTime"))
        entity.update(vital_values(resource, code))
        return "vital_signs", entity
    _set(entity, "test_name", _text(resource.get("code")))
    _set(entity, "loinc_code", code)
    quantity = resource.get("valueQuantity")
    if isinstance(quantity, dict):
        _set(entity, "value", quantity.get("value"))
        _set(entity, "unit", quantity.get("unit"))
    _set(entity, "value", resource.get("valueString", _text(resource.get("valueCodeableConcept"))))
    _set(entity, "collected_time", resource.get("effectiveDateTime"))
    _set(entity, "resulted_time", resource.get("issued"))
    _set(entity, "abnormal_flag", _coding(_first(resource.get("interpretation"))).get("code"))
    _set(entity, "reference_range", (_first(resource.get("referenceRange")) or {}).get("text"))
    _set(entity, "performing_lab", _display(_first(resource.get("performer"))))
    return "lab_results", entity


def _claim(resource: dict[str, Any], hint: str) -> tuple[str, Entity]:
    kind = _coding(resource.get("type")).get("code")
    pharmacy = hint == "pharmacy_claims" or (not hint and kind == "pharmacy")
    entity_type = "pharmacy_claims" if pharmacy else "claims"
    entity: Entity = {}
    _set(entity, "claim_id", _own(resource, entity_type))
    coverage = (_first(resource.get("insurance")) or {}).get("coverage") or {}
    ident = coverage.get("identifier") if isinstance(coverage, dict) else None
    if isinstance(ident, dict) and ident.get("system") == id_system("members"):
        entity["member_id"] = ident.get("value")
    patient: Entity = {}
    _subject(patient, resource.get("patient"))
    entity.update({k: v for k, v in patient.items() if k not in entity})
    if pharmacy:
        _set(entity, "pharmacy_npi", ref_key(resource.get("provider")))
        _set(entity, "service_date", resource.get("created"))
        item = _first(resource.get("item")) or {}
        _set(entity, "ndc", _coding(item.get("productOrService")).get("code"))
        _set(entity, "quantity_dispensed", (item.get("quantity") or {}).get("value"))
        _set(entity, "gross_amount_due", (item.get("net") or {}).get("value"))
        return entity_type, entity
    _set(entity, "claim_type", _CLAIM_TYPES_IN.get(kind or ""))
    _set(entity, "provider_npi", ref_key(resource.get("provider")))
    period = resource.get("billablePeriod") or {}
    _set(entity, "service_date", period.get("start"))
    _set(entity, "discharge_date", period.get("end"))
    codes = [_coding(d.get("diagnosisCodeableConcept")).get("code") for d in resource.get("diagnosis") or []]
    codes = [c for c in codes if c is not None]
    _set(entity, "principal_diagnosis", codes[0] if codes else None)
    _set(entity, "other_diagnoses", codes[1:] or None)
    lines = [_claim_line(item) for item in resource.get("item") or []]
    _set(entity, "claim_lines", lines or None)
    _set(entity, "total_charge", (resource.get("total") or {}).get("value"))
    return entity_type, entity


def _claim_line(item: dict[str, Any]) -> Entity:
    line: Entity = {"line_number": item.get("sequence")}
    _set(line, "procedure_code", _coding(item.get("productOrService")).get("code"))
    modifiers = [_coding(m).get("code") for m in item.get("modifier") or []]
    _set(line, "procedure_modifiers", modifiers or None)
    _set(line, "revenue_code", _coding(item.get("revenue")).get("code"))
    _set(line, "service_date", item.get("servicedDate"))
    _set(line, "units", (item.get("quantity") or {}).get("value"))
    _set(line, "charge_amount", (item.get("net") or {}).get("value"))
    return line


def _research_subject(resource: dict[str, Any], hint: str) -> tuple[str, Entity]:
    entity: Entity = {}
    _set(entity, "subject_id", _own(resource, "subjects"))
    study = resource.get("study") or {}
    _set(entity, "protocol_id", (study.get("identifier") or {}).get("value"))
    _set(entity, "status", resource.get("status"))
    _set(entity, "arm", resource.get("assignedArm"))
    individual = resource.get("individual") or {}
    if (individual.get("identifier") or {}).get("system") != id_system("subjects"):
        _set(entity, "patient_id", ref_key(individual))
    _set(entity, "randomization_date", (resource.get("period") or {}).get("start"))
    return "subjects", entity


def _document(resource: dict[str, Any], hint: str) -> tuple[str, Entity]:
    entity: Entity = {}
    _set(entity, "note_type", _text(resource.get("type")))
    _subject(entity, resource.get("subject"))
    _encounter_of(entity, _first((resource.get("context") or {}).get("encounter")))
    _set(entity, "note_time", resource.get("date"))
    data = ((_first(resource.get("content")) or {}).get("attachment") or {}).get("data")
    if isinstance(data, str):
        try:
            entity["text"] = base64.b64decode(data, validate=True).decode("utf-8", "surrogatepass")
        except (binascii.Error, UnicodeDecodeError, ValueError):
            entity["text"] = data
    _set(entity, "author", _display(_first(resource.get("author"))))
    return "clinical_notes", entity


def _immunization(resource: dict[str, Any], hint: str) -> tuple[str, Entity]:
    entity: Entity = {}
    concept = resource.get("vaccineCode")
    _set(entity, "vaccine_code", _coding(concept).get("code"))
    _set(entity, "description", _text(concept))
    _subject(entity, resource.get("patient"))
    _encounter_of(entity, resource.get("encounter"))
    _set(entity, "date", resource.get("occurrenceDateTime"))
    return "immunizations", entity


def _allergy(resource: dict[str, Any], hint: str) -> tuple[str, Entity]:
    entity: Entity = {}
    concept = resource.get("code")
    _set(entity, "code", _coding(concept).get("code"))
    _set(entity, "substance", _text(concept))
    _subject(entity, resource.get("patient"))
    _encounter_of(entity, resource.get("encounter"))
    _set(entity, "date", resource.get("onsetDateTime"))
    return "allergies", entity


def _basic(resource: dict[str, Any], hint: str) -> tuple[str, Entity] | None:
    coding = _coding(resource.get("code"))
    if coding.get("system") != TYPE_SYSTEM:
        return None
    try:  # the entity is saved under this type: it must be a type name (else kept whole)
        return normalize_type(coding.get("code")), {}
    except InvalidEntityError:
        return None


_READERS: dict[str, Callable[[dict[str, Any], str], tuple[str, Entity] | None]] = {
    "Patient": _patient,
    "Encounter": _encounter,
    "Condition": _condition,
    "Procedure": _procedure,
    "MedicationRequest": _medication_request,
    "Observation": _observation,
    "Claim": _claim,
    "ResearchSubject": _research_subject,
    "DocumentReference": _document,
    "Immunization": _immunization,
    "AllergyIntolerance": _allergy,
    "Basic": _basic,
}


def from_resource(resource: dict[str, Any], hint: str = "") -> tuple[str, Entity]:
    """The canonical ``(type, entity)`` of a resource; one with no canonical home is
    ``(fhir_{type}, the resource whole)``.

    Args:
        resource: a FHIR resource (without our extension).
        hint: the canonical type our extension names ("" for a resource of elsewhere).
    """
    reader = _READERS.get(resource.get("resourceType", ""))
    found = None if reader is None else reader(resource, hint)
    if found is None:
        return kept_type(str(resource.get("resourceType"))), resource
    return found
