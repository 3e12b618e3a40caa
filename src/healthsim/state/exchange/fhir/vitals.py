"""Vital sign sets <-> Observations: one Observation per measurement (LOINC code, UCUM
unit), blood pressure as the 85354-9 panel with systolic and diastolic components, all
gathered by a vital-signs panel (85353-1) that points at them (``hasMember``)."""

from __future__ import annotations

from typing import Any

from .common import SYSTEMS, number, resource_id

__all__ = ["BP_PANEL", "PANEL", "VITALS", "VITAL_BY_CODE", "vital_observations", "vital_values"]

#: Canonical field -> (LOINC code, display, UCUM unit).
VITALS = {
    "temperature": ("8310-5", "Body temperature", "[degF]"),
    "heart_rate": ("8867-4", "Heart rate", "/min"),
    "respiratory_rate": ("9279-1", "Respiratory rate", "/min"),
    "spo2": ("59408-5", "Oxygen saturation in Arterial blood by Pulse oximetry", "%"),
    "height_cm": ("8302-2", "Body height", "cm"),
    "weight_kg": ("29463-7", "Body weight", "kg"),
    "bmi": ("39156-5", "Body mass index (BMI) [Ratio]", "kg/m2"),
}
BP_PANEL = ("85354-9", "Blood pressure panel with all children optional")
PANEL = ("85353-1", "Vital signs, weight, height, head circumference, oxygen saturation and BMI panel")
_BP_PARTS = {
    "systolic_bp": ("8480-6", "Systolic blood pressure"),
    "diastolic_bp": ("8462-4", "Diastolic blood pressure"),
}
#: LOINC code -> canonical field, for reading (2708-6 is another SpO2 code Synthea uses).
VITAL_BY_CODE = {code: field for field, (code, _, _) in VITALS.items()} | {"2708-6": "spo2"}
VITAL_BY_CODE |= {code: field for field, (code, _) in _BP_PARTS.items()}
_CATEGORY = [{"coding": [{"system": SYSTEMS["obs_category"], "code": "vital-signs", "display": "Vital Signs"}]}]


def _quantity(value: int | float, unit: str) -> dict[str, Any]:
    return {"value": value, "unit": unit, "system": SYSTEMS["ucum"], "code": unit}


def _code(code: str, display: str) -> dict[str, Any]:
    return {"coding": [{"system": SYSTEMS["loinc"], "code": code, "display": display}], "text": display}


def _observation(rid: str, code: tuple[str, str], common: dict[str, Any]) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": rid,
        "status": "final",
        "category": _CATEGORY,
        "code": _code(*code),
    } | common


def vital_observations(
    entity: dict[str, Any], rid: str, subject: Any, encounter: Any, when: str | None
) -> list[dict[str, Any]]:
    """The panel (first) and one Observation per measurement of a vital sign set."""
    common: dict[str, Any] = {"subject": subject}
    if encounter is not None:
        common["encounter"] = encounter
    if when is not None:
        common["effectiveDateTime"] = when
    members: list[dict[str, Any]] = []
    for field, (code, display, unit) in VITALS.items():
        value = number(entity.get(field))
        if value is not None:
            members.append(
                _observation(resource_id("vital_signs/part", f"{rid}/{len(members)}"), (code, display), common)
                | {"valueQuantity": _quantity(value, unit)}
            )
    parts = [
        {"code": _code(code, display), "valueQuantity": _quantity(value, "mm[Hg]")}
        for field, (code, display) in _BP_PARTS.items()
        if (value := number(entity.get(field))) is not None
    ]
    if parts:
        members.append(
            _observation(resource_id("vital_signs/part", f"{rid}/{len(members)}"), BP_PANEL, common)
            | {"component": parts}
        )
    panel = _observation(rid, PANEL, common)
    if members:
        panel["hasMember"] = [{"reference": f"Observation/{m['id']}"} for m in members]
    return [panel, *members]


def vital_values(resource: dict[str, Any], code: str | None) -> dict[str, Any]:
    """The canonical measurements an Observation holds (one, or a blood pressure pair)."""
    found: dict[str, Any] = {}
    field = VITAL_BY_CODE.get(code or "")
    quantity = resource.get("valueQuantity")
    if field is not None and isinstance(quantity, dict) and number(quantity.get("value")) is not None:
        found[field] = quantity["value"]
    for part in resource.get("component") or []:
        coding = (part.get("code") or {}).get("coding") or [{}]
        part_field = VITAL_BY_CODE.get(coding[0].get("code", ""))
        value = (part.get("valueQuantity") or {}).get("value")
        if part_field is not None and number(value) is not None:
            found[part_field] = value
    return found
