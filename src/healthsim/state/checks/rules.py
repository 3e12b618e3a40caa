"""What a check looks for: the field names each rule applies to, and its severity.

Rules apply by field name to any entity type that has the field (found by the keys its
entities really have), so a scenario of the canonical HealthSim entities, of the common
variants (``patient_id``, ``sex``) or of types of its own is checked alike. The names
come from the canonical entities (``INTEROP.md``); docs/decisions.md says why each rule
is an error or a warning.
"""

from __future__ import annotations

from typing import Literal

__all__ = [
    "CODE_FIELDS",
    "DATE_FIELDS",
    "EVENT_FIELDS",
    "GENDER_FIELDS",
    "GENDERS",
    "IDENTIFIER_FIELDS",
    "NUMBER_FIELDS",
    "OWN_KEYS",
    "REFERENCES",
    "RULES",
    "SPANS",
    "Severity",
]

Severity = Literal["error", "warning"]

#: Every rule's name, its severity and what it means (the CLI's legend and the docs).
RULES: dict[str, tuple[Severity, str]] = {
    "duplicate_id": ("error", "two or more entities of the type have this own id"),
    "unresolved_reference": ("error", "no entity of the target type has this id"),
    "missing_target_type": ("warning", "the scenario has no entities of the type this field points at"),
    "not_a_date": ("error", "not an ISO 8601 date or datetime"),
    "not_a_number": ("error", "not a number"),
    "unknown_gender": ("error", "not one of M, F, O, U, male, female, other, unknown"),
    "end_before_start": ("error", "ends before it starts"),
    "before_birth": ("error", "the patient's event is dated before the patient's birth"),
    # A warning: records after death are real (Synthea writes a death certification
    # encounter a week after the death); before birth, nothing is.
    "after_death": ("warning", "the patient's event is dated after the patient's death"),
    "birth_in_future": ("error", "born after the day of the check"),
    "malformed_icd10": ("error", "not shaped like an ICD-10-CM code (A00, E11.9, S72.001A)"),
    "bad_loinc_check_digit": ("error", "not a LOINC code with a valid check digit (2345-7)"),
    "bad_npi_check_digit": ("error", "not 10 digits with a valid NPI check digit (Luhn with prefix 80840)"),
    "malformed_ndc": ("error", "not an NDC in a 10-digit (4-4-2, 5-3-2, 5-4-1) or 11-digit form"),
    "real_looking_ssn": ("warning", "an SSN outside the never-issued 9xx range could be a real person's"),
    "real_looking_phone": ("warning", "a phone number outside 555-0100…555-0199 could be a real one"),
    "real_looking_email": ("warning", "an e-mail outside the reserved example domains could be a real one"),
}

#: Date and datetime fields of the canonical entities (any field whose values are mostly
#: ISO dates is checked as one too).
DATE_FIELDS = frozenset(
    {
        "birth_date",
        "death_date",
        "deceased_date",
        "admission_time",
        "discharge_time",
        "diagnosed_date",
        "resolved_date",
        "onset_date",
        "performed_date",
        "start_date",
        "end_date",
        "collected_time",
        "resulted_time",
        "observation_time",
        "note_time",
        "coverage_start",
        "coverage_end",
        "service_date",
        "admission_date",
        "discharge_date",
        "written_date",
        "expiration_date",
        "screening_date",
        "randomization_date",
        "period.start",
        "period.end",
    }
)

#: Numeric fields (a JSON number, or a string of one such as ``"98.6"``).
NUMBER_FIELDS = frozenset(
    {
        "temperature",
        "heart_rate",
        "respiratory_rate",
        "systolic_bp",
        "diastolic_bp",
        "spo2",
        "height_cm",
        "weight_kg",
        "quantity_prescribed",
        "days_supply",
        "refills_authorized",
        "refills_remaining",
        "quantity_dispensed",
        "fill_number",
        "ingredient_cost_submitted",
        "dispensing_fee_submitted",
        "gross_amount_due",
        "age",
    }
)

GENDER_FIELDS = frozenset({"gender", "sex"})
GENDERS = ("m", "f", "o", "u", "male", "female", "other", "unknown")

#: Code fields: rule -> field names (``code`` of diagnoses is added by the checker when
#: the entity names no other code system).
CODE_FIELDS: dict[str, frozenset[str]] = {
    "malformed_icd10": frozenset({"principal_diagnosis", "diagnosis_code", "icd10_code", "icd_code"}),
    "bad_loinc_check_digit": frozenset({"loinc_code", "loinc"}),
    "bad_npi_check_digit": frozenset(
        {"npi", "pcp_npi", "provider_npi", "facility_npi", "prescriber_npi", "pharmacy_npi", "attending_npi"}
    ),
    "malformed_ndc": frozenset({"ndc", "ndc_code"}),
}

#: Identifier fields, top level or under ``contact``: rule -> field names.
IDENTIFIER_FIELDS: dict[str, frozenset[str]] = {
    "real_looking_ssn": frozenset({"ssn"}),
    "real_looking_phone": frozenset({"phone", "phone_mobile", "phone_work", "phone_home"}),
    "real_looking_email": frozenset({"email", "email_work"}),
}

#: Reference field -> (target type, the target's fields whose values it may name).
REFERENCES: dict[str, tuple[str, tuple[str, ...]]] = {
    "patient_mrn": ("patients", ("mrn", "patient_id", "id")),
    "patient_id": ("patients", ("mrn", "patient_id", "id")),
    "encounter_id": ("encounters", ("encounter_id", "id")),
    "member_id": ("members", ("member_id", "id")),
    "claim_id": ("claims", ("claim_id", "id")),
    "prescription_number": ("prescriptions", ("prescription_number", "prescription_id", "id")),
    "subject_id": ("subjects", ("subject_id", "id")),
}
#: Types whose field of a reference's name is their own id, not a reference.
OWN_KEYS: dict[str, frozenset[str]] = {"pharmacy_claims": frozenset({"claim_id"})}

#: (start, end) fields of one entity: the end may not come before the start.
SPANS = (
    ("admission_time", "discharge_time"),
    ("diagnosed_date", "resolved_date"),
    ("onset_date", "resolved_date"),
    ("start_date", "end_date"),
    ("coverage_start", "coverage_end"),
    ("admission_date", "discharge_date"),
    ("written_date", "expiration_date"),
    ("collected_time", "resulted_time"),
    ("period.start", "period.end"),
    ("birth_date", "death_date"),
    ("birth_date", "deceased_date"),
)

#: A patient's fields of the day of death, the first valid one taken (``deceased_date``:
#: the earlier release's name, read by the FHIR export as the death too).
DEATH_FIELDS = ("death_date", "deceased_date")

#: Fields dating a patient's event (compared with the patient's birth and death).
EVENT_FIELDS = (
    "admission_time",
    "discharge_time",
    "diagnosed_date",
    "onset_date",
    "performed_date",
    "start_date",
    "collected_time",
    "observation_time",
    "note_time",
    "service_date",
    "period.start",
)
