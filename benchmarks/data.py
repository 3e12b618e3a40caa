"""Realistic synthetic scenarios for the benchmark (deterministic for a seed).

Per patient: the patient (nested name, address, contact), encounters, diagnoses and lab
results (without ids of their own, as generators emit them), and claims with nested
lines. The mix averages about 450 bytes of JSON per entity.

Also the other file layouts the import is measured on (:func:`write_json`): exactly the
bytes of Python's ``json.dumps(doc, indent=2)`` and ``json.dumps(doc)``, as earlier
HealthSim releases wrote scenario files, but written one entity at a time.
"""

from __future__ import annotations

import json
import random
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

_GIVEN = ["Ana", "Bo", "Carmen", "Dmitri", "Eun-ji", "Farah", "Gustavo", "Hana", "Ibrahim", "Jana"]
_FAMILY = ["Lima", "Chen", "Ruiz", "Petrov", "Kim", "Okafor", "Müller", "Nguyen", "Smith", "Rossi"]
_CITIES = [("Springfield", "IL", "62701"), ("Portland", "OR", "97201"), ("Austin", "TX", "73301")]
_ICD = [
    ("E11.9", "Type 2 diabetes mellitus without complications"),
    ("I10", "Essential (primary) hypertension"),
    ("E78.5", "Hyperlipidemia, unspecified"),
    ("N18.3", "Chronic kidney disease, stage 3"),
]
_LOINC = [("4548-4", "Hemoglobin A1c", "%"), ("2345-7", "Glucose", "mg/dL"), ("2160-0", "Creatinine", "mg/dL")]


def generate(n_entities: int, seed: int = 7) -> dict[str, list[dict[str, Any]]]:
    """About ``n_entities`` entities (exactly that many) of five types."""
    rng = random.Random(seed)
    out: dict[str, list[dict[str, Any]]] = {
        "patients": [],
        "encounters": [],
        "diagnoses": [],
        "lab_results": [],
        "claims": [],
    }
    total = 0
    i = 0
    while total < n_entities:
        mrn = f"MRN-{i:08d}"
        city, state, postal = _CITIES[i % 3]
        out["patients"].append(
            {
                "patient_id": mrn,
                "mrn": mrn,
                "name": {"given": [_GIVEN[i % 10]], "family": _FAMILY[(i // 10) % 10], "prefix": None},
                "birth_date": f"{1935 + rng.randrange(70)}-{1 + rng.randrange(12):02d}-{1 + rng.randrange(28):02d}",
                "gender": "female" if rng.random() < 0.52 else "male",
                "address": {
                    "line": [f"{rng.randrange(1, 9999)} Oak Street"],
                    "city": city,
                    "state": state,
                    "postal_code": postal,
                    "country": "US",
                },
                "contact": {"phone": f"+1-555-{rng.randrange(10**7):07d}", "email": f"p{i}@example.org"},
                "deceased_date": None,
                "marital_status": "married",
                "language": "en-US",
                "race": "2106-3",
                "ethnicity": "2186-5",
                "primary_care_provider": {"npi": "1234567890", "name": "Dr. Rivera"},
                "_provenance": {"source_type": "generated", "skill_used": "diabetes-cohort"},
            }
        )
        total += 1
        for _ in range(2):
            if total >= n_entities:
                break
            enc = str(uuid.UUID(int=rng.getrandbits(128), version=4))
            out["encounters"].append(
                {
                    "encounter_id": enc,
                    "patient_id": mrn,
                    "class": "AMB",
                    "status": "finished",
                    "type": {"code": "99213", "display": "Office visit, established patient"},
                    "period": {"start": "2024-03-02T09:00:00Z", "end": "2024-03-02T09:30:00Z"},
                    "provider": {"npi": f"{rng.randrange(10**10):010d}", "name": "Dr. Rivera"},
                    "location": {"name": "Springfield Clinic", "facility_id": "FAC-001"},
                    "reason": {"code": "E11.9", "display": "Diabetes follow-up"},
                    "discharge_disposition": "home",
                }
            )
            code, display = _ICD[rng.randrange(4)]
            loinc, ldisplay, unit = _LOINC[rng.randrange(3)]
            out["diagnoses"].append(
                {
                    "patient_id": mrn,
                    "encounter_id": enc,
                    "code": code,
                    "system": "ICD-10-CM",
                    "display": display,
                    "onset_date": "2019-05-01",
                    "clinical_status": "active",
                    "verification_status": "confirmed",
                    "recorded_by": "Dr. Rivera",
                    "category": "encounter-diagnosis",
                    "severity": {"code": "24484000", "display": "Severe"},
                    "recorded_date": "2024-03-02T09:12:00Z",
                    "code_system_version": "2024",
                }
            )
            out["lab_results"].append(
                {
                    "patient_id": mrn,
                    "encounter_id": enc,
                    "loinc": loinc,
                    "display": ldisplay,
                    "value": round(rng.uniform(4.5, 11.0), 2),
                    "unit": unit,
                    "effective": "2024-03-02",
                    "reference_range": {"low": 4.0, "high": 5.6, "text": "4.0-5.6"},
                    "interpretation": "H",
                    "status": "final",
                    "specimen": "blood",
                    "performer": "Springfield Lab",
                    "method": "HPLC",
                    "note": "Fasting sample",
                    "issued": "2024-03-02T14:05:00Z",
                    "order_id": f"ORD-{i:08d}",
                }
            )
            total += 3  # encounter, diagnosis, lab result
        if total < n_entities:
            out["claims"].append(
                {
                    "claim_id": f"CLM-2024-{i:08d}",
                    "member_id": f"MBR-{i:08d}",
                    "patient_id": mrn,
                    "claim_type": "professional",
                    "status": "paid",
                    "service_date": "2024-03-02",
                    "total_charge": 185.0,
                    "total_paid": 142.35,
                    "payer": {"id": "PAYER-01", "name": "Acme Health"},
                    "diagnosis_codes": ["E11.9", "I10"],
                    "place_of_service": "11",
                    "lines": [
                        {"line": 1, "cpt": "99213", "charge": 150.0, "paid": 112.5, "units": 1},
                        {"line": 2, "cpt": "83036", "charge": 35.0, "paid": 29.85, "units": 1},
                    ],
                }
            )
            total += 1
        i += 1
    # The loop can overshoot by up to two entities; trim to exactly n_entities.
    excess = sum(len(v) for v in out.values()) - n_entities
    for key in ("lab_results", "diagnoses"):
        while excess > 0 and out[key]:
            out[key].pop()
            excess -= 1
    return out


def json_chunks(value: Any, indent: int | None = None, depth: int = 0, stream_depth: int = 3) -> Iterator[str]:
    """The text of ``json.dumps(value, indent=indent)`` in pieces, for a value nested ``depth`` deep.

    Dicts and lists less than ``stream_depth`` deep are walked here (for a scenario
    document: the document, its ``entities`` and each entity list); deeper values (one
    entity each) go through ``json.dumps`` whole. Defaults
    of ``json.dumps`` throughout: ``ensure_ascii=True`` (so "Müller" is written
    ``M\\u00fcller``), separators ``", "``/``": "`` on one line and ``","``/``": "`` with indent.
    """
    if depth >= stream_depth or not isinstance(value, (dict, list)) or not value:
        text = json.dumps(value, indent=indent)
        if indent is not None and depth:
            # Strings never hold a raw newline (json.dumps escapes it): every one is indentation.
            text = text.replace("\n", "\n" + " " * (indent * depth))
        yield text
        return
    if indent is None:
        opening, separator, closing = "", ", ", ""
    else:
        opening = "\n" + " " * (indent * (depth + 1))
        separator, closing = "," + opening, "\n" + " " * (indent * depth)
    if isinstance(value, dict):
        yield "{" + opening
        for position, (key, item) in enumerate(value.items()):
            yield (separator if position else "") + json.dumps(key) + ": "
            yield from json_chunks(item, indent, depth + 1, stream_depth)
        yield closing + "}"
    else:
        yield "[" + opening
        for position, item in enumerate(value):
            if position:
                yield separator
            yield from json_chunks(item, indent, depth + 1, stream_depth)
        yield closing + "]"


def write_json(value: Any, path: Path, indent: int | None = None) -> int:
    """Write ``json.dumps(value, indent=indent)`` to ``path`` without building the text whole.

    Returns:
        The bytes written (the text is ASCII: ``ensure_ascii`` escapes the rest).
    """
    written = 0
    with path.open("wb", buffering=1 << 20) as out:
        batch: list[str] = []
        for chunk in json_chunks(value, indent):
            batch.append(chunk)
            if len(batch) >= 8192:
                written += out.write("".join(batch).encode("ascii"))
                batch.clear()
        written += out.write("".join(batch).encode("ascii"))
    return written
