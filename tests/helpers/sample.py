"""Realistic small scenarios for tests (the benchmark has its own large generator)."""

from __future__ import annotations

import uuid
from typing import Any


def diabetes_cohort(n_patients: int = 5) -> dict[str, list[dict[str, Any]]]:
    """Patients with nested name/address/contact, encounters, diagnoses and labs without ids."""
    patients, encounters, diagnoses, labs = [], [], [], []
    for i in range(n_patients):
        mrn = f"MRN-{i:05d}"
        patients.append(
            {
                "patient_id": mrn,
                "mrn": mrn,
                "name": {"given": ["Ana", "María"][: 1 + i % 2], "family": f"Lima-{i}"},
                "birth_date": f"19{50 + i % 40}-03-0{1 + i % 9}",
                "gender": "female" if i % 2 else "male",
                "address": {"line": [f"{i} Main St"], "city": "Springfield", "state": "IL", "postal_code": "62701"},
                "contact": {"phone": None, "email": f"p{i}@example.org"},
                "_provenance": {"source_type": "generated", "skill_used": "diabetes-cohort"},
            }
        )
        enc_id = str(uuid.UUID(int=i + 1))
        encounters.append(
            {"encounter_id": enc_id, "patient_id": mrn, "class": "AMB", "period": {"start": "2024-01-02T09:00:00Z"}}
        )
        diagnoses.append({"patient_id": mrn, "encounter_id": enc_id, "code": "E11.9", "system": "ICD-10-CM"})
        labs.append({"patient_id": mrn, "loinc": "4548-4", "value": 7.2 + i / 10, "unit": "%"})
    return {"patients": patients, "encounters": encounters, "diagnoses": diagnoses, "lab_results": labs}
