"""Realistic files of every shape the importer reads, as older HealthSim tools wrote them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from helpers.sample import diabetes_cohort


def claims(n: int = 2) -> list[dict[str, Any]]:
    return [
        {
            "claim_id": f"CLM-2025-{i:06d}",
            "member_id": f"MBR-{i:05d}",
            "service_date": "2025-01-15",
            "lines": [{"line": 1, "cpt": "99213", "charge": 150.0}, {"line": 2, "cpt": "83036", "charge": 35.5}],
        }
        for i in range(n)
    ]


def prescriptions(n: int = 2) -> list[dict[str, Any]]:
    return [{"prescription_number": f"RX-{7000 + i}", "ndc": "00093-1048-01", "days_supply": 30} for i in range(n)]


def legacy_export(path: Path) -> dict[str, Any]:
    """What the earlier release exported: the 1.0 shape without schema_version."""
    doc = {
        "name": "legacy-export-cohort",
        "description": "Exported by HealthSim 0.9",
        "tags": ["diabetes", "legacy"],
        "created_at": "2024-12-26T10:30:00Z",
        "entities": {**diabetes_cohort(3), "claims": claims(), "prescriptions": prescriptions()},
    }
    path.write_text(json.dumps(doc, indent=2), encoding="utf-8")
    return doc


def workspace(path: Path) -> dict[str, Any]:
    """A legacy workspace file: wrapped entities, singular and plural types, non-UUID ids."""
    cohort = diabetes_cohort(2)

    def wrap(entity_type: str, entity_id: str, data: dict[str, Any], skill: str = "diabetes-cohort") -> dict[str, Any]:
        return {
            "entity_id": entity_id,
            "entity_type": entity_type,
            "data": data,
            "provenance": {
                "source_type": "generated",
                "skill_used": skill,
                "derived_from": [],
                "created_at": "2024-11-02T08:00:00Z",
                "generation_params": {"seed": 7},
            },
        }

    doc = {
        "metadata": {
            "workspace_id": "ws-2024-11-02-001",
            "name": "legacy-workspace",
            "description": "Workspace saved by the JSON-file HealthSim",
            "tags": ["workspace", "diabetes"],
            "created_at": "2024-11-02T08:00:00Z",
            "updated_at": "2024-11-03T09:30:00Z",
            "product": "healthsim",
            "schema_version": "2.0",
        },
        "provenance_summary": {"generated": 6, "loaded": 0, "derived": 0},
        "entities": {
            "patients": [
                wrap("patient", p["patient_id"], {k: v for k, v in p.items() if k != "_provenance"})
                for p in cohort["patients"]
            ],
            "diagnosis": [wrap("diagnosis", f"{d['patient_id']}:{d['code']}", d) for d in cohort["diagnoses"]],
            "lab_results": [wrap("lab_result", f"LAB-{i}", lab) for i, lab in enumerate(cohort["lab_results"])],
        },
    }
    path.write_text(json.dumps(doc, indent=2), encoding="utf-8")
    return doc


def top_level_lists(path: Path) -> dict[str, Any]:
    """Entity lists at the top level, singular and plural keys, an unknown list, extra fields."""
    cohort = diabetes_cohort(2)
    doc = {
        "name": "legacy-lists",
        "generator": "healthsim-cli 0.5",
        "patients": cohort["patients"][:1],
        "encounters": cohort["encounters"],
        "patient": cohort["patients"][1:],
        "care_gaps": [{"gap_id": "GAP-1", "patient_id": "MRN-00000", "measure": "HbA1c testing"}],
        "warnings": ["two patients share an address"],
    }
    path.write_text(json.dumps(doc), encoding="utf-8")
    return doc
