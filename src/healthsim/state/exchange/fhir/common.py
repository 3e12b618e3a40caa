"""What the FHIR mapping shares: code systems, the alias table, value checks, ids.

The alias table (:data:`FIELD_ALIASES`, :data:`TYPE_ALIASES`) is how entity variants
are read: saved scenarios spell some canonical fields another way (``patient_id`` for
``patient_mrn``, ``class`` for ``class_code``, ``period.start`` for ``admission_time``,
``labs`` for ``lab_results``). The export reads a field by its canonical name first,
then by each alias in order; what it read under an alias comes back under that alias on
import, because the HealthSim extension records the entity's own spelling (see
:mod:`.carry`).
"""

from __future__ import annotations

import datetime as _dt
import functools
import hashlib
import json
import math
import re
import uuid
from typing import Any

__all__ = [
    "EXTENSION_URL",
    "FHIR_FIELD",
    "FIELD_ALIASES",
    "HS",
    "SYSTEMS",
    "TYPE_ALIASES",
    "canonical_type",
    "exact_loads",
    "deeper",
    "fhir_code",
    "fhir_date",
    "fhir_datetime",
    "fhir_string",
    "may_hold_long_int",
    "nests_deeper",
    "number",
    "pick",
    "resource_id",
    "system_url",
]

#: The base of every URL HealthSim defines (identifier systems, extension, code system).
HS = "https://healthsim.dev/fhir"
#: The one HealthSim extension per resource: the entity's fields with no FHIR home.
EXTENSION_URL = f"{HS}/StructureDefinition/healthsim-entity"
#: The entity field that holds what a resource of elsewhere says beyond its entity (see .keep).
FHIR_FIELD = "_fhir"
#: Code system of entity types (``Basic.code`` of a type with no FHIR resource of its own).
TYPE_SYSTEM = f"{HS}/CodeSystem/entity-type"
#: Namespace of stable resource ids: ``uuid5(NS, "{type}/{own id}")``.
ID_NAMESPACE = uuid.UUID("0b7c2c1e-5a43-5d0e-9f6a-1f3e6b7a2d41")

SYSTEMS = {
    "icd10cm": "http://hl7.org/fhir/sid/icd-10-cm",
    "icd10pcs": "http://www.cms.gov/Medicare/Coding/ICD10",
    "snomed": "http://snomed.info/sct",
    "loinc": "http://loinc.org",
    "rxnorm": "http://www.nlm.nih.gov/research/umls/rxnorm",
    "ndc": "http://hl7.org/fhir/sid/ndc",
    "cpt": "http://www.ama-assn.org/go/cpt",
    "cvx": "http://hl7.org/fhir/sid/cvx",
    "ucum": "http://unitsofmeasure.org",
    "npi": "http://hl7.org/fhir/sid/us-npi",
    "actcode": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
    "obs_category": "http://terminology.hl7.org/CodeSystem/observation-category",
    "claim_type": "http://terminology.hl7.org/CodeSystem/claim-type",
    "priority": "http://terminology.hl7.org/CodeSystem/processpriority",
    "v2_0203": "http://terminology.hl7.org/CodeSystem/v2-0203",
    "interpretation": "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation",
    "relationship": "http://terminology.hl7.org/CodeSystem/subscriber-relationship",
    "condition_clinical": "http://terminology.hl7.org/CodeSystem/condition-clinical",
    "condition_category": "http://terminology.hl7.org/CodeSystem/condition-category",
}

# Names seen in entities' ``system`` / ``code_system`` fields, upper case, spaces and
# dashes removed, and the URL each stands for.
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

#: Entity types saved under another name, and the canonical type they are.
TYPE_ALIASES = {"labs": "lab_results", "vitals": "vital_signs", "conditions": "diagnoses"}

#: Per canonical type: canonical field -> the other names it is read under, in order
#: (a dotted name reads inside an object: ``period.start``). ``*`` applies to every type.
FIELD_ALIASES: dict[str, dict[str, tuple[str, ...]]] = {
    "*": {"patient_mrn": ("patient_id", "mrn"), "encounter_id": ("encounter",)},
    "patients": {
        "mrn": ("patient_id", "id"),
        "gender": ("sex",),
        "birth_date": ("birthDate", "dob"),
        "death_date": ("deceased_date",),  # (the earlier release's name)
    },
    "encounters": {
        "class_code": ("class", "encounter_class"),
        "admission_time": ("period.start", "start", "start_time"),
        "discharge_time": ("period.end", "end", "end_time"),
        "chief_complaint": ("reason",),
    },
    "diagnoses": {
        "description": ("display", "name"),
        "code_system": ("system",),
        "diagnosed_date": ("onset", "onset_date", "recorded_date", "date"),
    },
    "procedures": {"description": ("display", "name"), "code_system": ("system",), "performed_date": ("date",)},
    "medications": {"name": ("drug", "drug_name", "display"), "code": ("rxnorm", "ndc")},
    "lab_results": {
        "loinc_code": ("loinc", "code"),
        "test_name": ("display", "name"),
        "collected_time": ("effective", "effective_time", "date"),
    },
    "vital_signs": {"observation_time": ("effective", "date", "time")},
    "prescriptions": {"drug_name": ("drug", "name"), "patient_mrn": ("patient_id",)},
    "claims": {"claim_lines": ("lines",), "total_charge": ("total",)},
    "claim_lines": {"line_number": ("line",), "procedure_code": ("cpt",), "charge_amount": ("charge",)},
    "immunizations": {"vaccine_code": ("code", "cvx"), "date": ("administered_date", "occurrence")},
    "allergies": {"substance": ("allergen", "description"), "date": ("onset",)},
}

_DATE = re.compile(r"([0-9]{4})(-(0[1-9]|1[0-2])(-(0[1-9]|[12][0-9]|3[01]))?)?")
_DATETIME = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}T([01][0-9]|2[0-3]):[0-5][0-9](:([0-5][0-9]|60)(\.[0-9]+)?)?"
    r"(Z|[+-]((0[0-9]|1[0-3]):[0-5][0-9]|14:00))?"
)
_CODE = re.compile(r"[^\s]+( [^\s]+)*")
_MISSING = object()


_DIGITS_TO_ZERO = bytes.maketrans(b"123456789", b"000000000")
_LONG_RUN = b"0" * 19


def may_hold_long_int(data: bytes) -> bool:
    """Whether JSON text has a run of 19 digits, so maybe an integer beyond 64 bits, which
    orjson would read as a float (two passes in C: far faster than a regular expression)."""
    return _LONG_RUN in data.translate(_DIGITS_TO_ZERO)


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON (JSON has no such number)")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"the number {text[:40]} is beyond what a double holds")
    return value


def exact_loads(text: str | bytes) -> Any:
    """JSON values with integers of any length (orjson reads one beyond 64 bits as a float),
    refusing what orjson refuses too: ``NaN``, ``Infinity`` and numbers beyond a double.

    Raises:
        ValueError: not JSON (RecursionError: nested too deep for Python's stack).
    """
    return json.loads(text, parse_constant=_no_constant, parse_float=_finite)


def canonical_type(entity_type: str) -> str:
    """The canonical type an entity type is read as (``labs`` is ``lab_results``)."""
    return TYPE_ALIASES.get(entity_type, entity_type)


def _lookup(entity: dict[str, Any], name: str) -> Any:
    if "." not in name:
        return entity.get(name, _MISSING)
    value: Any = entity
    for part in name.split("."):
        if not isinstance(value, dict) or part not in value:
            return _MISSING
        value = value[part]
    return value


def _alias_table() -> dict[tuple[str, str], tuple[str, ...]]:
    """(type, field) -> the other names it is read under: one dict look-up per read."""
    table: dict[tuple[str, str], tuple[str, ...]] = {}
    for entity_type, fields in FIELD_ALIASES.items():
        for field, names in fields.items():
            table[entity_type, field] = names
    return table


_ALIASES = _alias_table()
_ANY_TYPE_ALIASES = FIELD_ALIASES["*"]


def pick(entity: dict[str, Any], entity_type: str, field: str) -> Any:
    """The value of canonical ``field`` read through the alias table (None: absent)."""
    value = entity.get(field)
    if value is not None:
        return value
    names = _ALIASES.get((entity_type, field))
    if names is None:
        names = _ANY_TYPE_ALIASES.get(field, ())
    for name in names:
        # Most aliases are plain keys: a dict read, no dotted walk (this runs per field per entity).
        value = entity.get(name) if "." not in name else _lookup(entity, name)
        if value is not _MISSING and value is not None:
            return value
    return None


def fhir_string(value: Any) -> str | None:
    """``value`` if it can be a FHIR ``string`` (text that is not blank), else None."""
    return value if isinstance(value, str) and value.strip() and len(value) < 1_000_000 else None


def fhir_code(value: Any) -> str | None:
    """``value`` if it can be a FHIR ``code`` (no leading, trailing or double spaces)."""
    if type(value) is str and len(value) <= _CACHED_LENGTH:  # most codes: a cached answer
        return _code_text(value)
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        return None
    return _code_of(str(value))


def _code_of(text: str) -> str | None:
    return text if _CODE.fullmatch(text) else None


def fhir_date(value: Any) -> str | None:
    """``value`` as a FHIR ``date`` (the date part of a date-time), else None."""
    if not isinstance(value, str):
        return None
    return _date_text(value) if len(value) <= _CACHED_LENGTH else _date_of(value)


def _date_of(value: str) -> str | None:
    head = value[:10]
    if not _DATE.fullmatch(head) or (len(value) > 10 and value[10] not in "T "):
        return None
    if len(head) == 10:
        try:
            _dt.date.fromisoformat(head)
        except ValueError:
            return None
    return head


_ZONED = re.compile(r".*(Z|[+-][0-9]{2}:[0-9]{2})", re.DOTALL)


def fhir_datetime(value: Any) -> str | None:
    """``value`` as a FHIR ``dateTime``: a date as it is; a time without a zone is taken
    as UTC (FHIR requires a zone with a time); anything else None."""
    if not isinstance(value, str):
        return None
    return _datetime_text(value) if len(value) <= _CACHED_LENGTH else _datetime_of(value)


def _datetime_of(value: str) -> str | None:
    if len(value) <= 10:
        return value if _date_of(value) == value else None
    text = value[:10] + "T" + value[11:] if value[10] == " " else value
    if not _DATETIME.fullmatch(text) or _date_of(text) is None:
        return None
    if len(text) == 16 or text[16] != ":":  # no seconds: FHIR requires them
        text = text[:16] + ":00" + text[16:]
    if text[-1] != "Z" and not _ZONED.fullmatch(text):
        text += "Z"
    return text


# Dates repeat within a scenario (an encounter's time is its diagnoses', labs' and notes'),
# and checking one costs two regular expressions and a parse: the export asks a cache of
# the short texts a date can be (a longer one is no date, and is not kept in memory).
_CACHED_LENGTH = 40
_date_text = functools.lru_cache(maxsize=1 << 14)(_date_of)
_datetime_text = functools.lru_cache(maxsize=1 << 14)(_datetime_of)
# Codes repeat even more (a few hundred ICD-10, LOINC and CPT codes in a scenario).
_code_text = functools.lru_cache(maxsize=1 << 14)(_code_of)


def number(value: Any) -> int | float | None:
    """``value`` if it is a finite JSON number (not a boolean) of FHIR's decimal range."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value if abs(value) < 1e15 else None


def system_url(name: Any, default: str) -> str:
    """The canonical URL of a code system named ``name`` (a URL stays as it is)."""
    if isinstance(name, str):
        # A scenario names a few systems, once per entity: short names' answers are cached.
        known = _system_text(name) if len(name) <= _CACHED_LENGTH else _system_of(name)
        if known is not None:
            return known
    return default


def _system_of(name: str) -> str | None:
    """The URL ``name`` stands for (None: no URL nor known name)."""
    if name.startswith(("http://", "https://", "urn:")) and _CODE.fullmatch(name):
        return name
    return _SYSTEM_NAMES.get(_NOT_IN_SYSTEM_NAME.sub("", name).upper())


_NOT_IN_SYSTEM_NAME = re.compile(r"[\s_-]")
_system_text = functools.lru_cache(maxsize=1024)(_system_of)


_NS_BYTES = ID_NAMESPACE.bytes


_HEX_VARIANT = {c: "89ab"[int(c, 16) & 3] for c in "0123456789abcdef"}


@functools.lru_cache(maxsize=1 << 16)  # a patient's id is asked for by each of its entities
def resource_id(entity_type: str, key: str) -> str:
    """The stable id of the resource of an entity of ``entity_type`` whose own id is ``key``:
    ``str(uuid.uuid5(ID_NAMESPACE, "{type}/{key}"))``, computed without building UUID
    objects (a third of the export's time went there): the SHA-1's first 32 hex digits with
    the version digit set to 5 and the variant bits to RFC 4122's."""
    h = hashlib.sha1(_NS_BYTES + f"{entity_type}/{key}".encode("utf-8", "surrogatepass")).hexdigest()
    return f"{h[:8]}-{h[8:12]}-5{h[13:16]}-{_HEX_VARIANT[h[16]]}{h[17:20]}-{h[20:32]}"


_JSON_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_NOT_BRACKETS = bytes(set(range(256)) - set(b"{}[]"))
_TO_PARENS = bytes.maketrans(b"{[}]", b"(())")


def nests_deeper(text: bytes, limit: int) -> bool:
    """Whether JSON text nests deeper than ``limit`` levels, in C-speed passes: each pass
    removes the innermost bracket pairs, so the passes to empty are the depth."""
    if text.count(b"{") + text.count(b"[") <= limit:
        return False
    brackets = _JSON_STRING.sub(b"", text).translate(_TO_PARENS, _NOT_BRACKETS)
    for _ in range(limit):
        if not brackets:
            return False
        brackets = brackets.replace(b"()", b"")
    return bool(brackets)


def deeper(value: Any, limit: int) -> bool:
    """Whether a JSON value nests deeper than ``limit`` levels (no recursion: it may be deep)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, (dict, list)):
            if depth > limit:
                return True
            stack.extend((child, depth + 1) for child in (item.values() if isinstance(item, dict) else item))
    return False
