"""Entity types that look like a slip of the keyboard (for ``healthsim save`` and ``add``).

Entity types are free (``care_gaps`` is as good as ``patients``), so a save of
``{"patiens": [...]}`` files its patients under a type of their own, which summaries,
checks and FHIR exports then treat as unknown. Nothing is refused for it; the terminal
points it out (:func:`likely_meant`), naming the type that was probably meant.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

__all__ = ["CANONICAL_TYPES", "likely_meant"]

#: The types HealthSim's tools write: the specification's (``healthsim.state.entities``,
#: written out here as the front ends use only the public surface; a test keeps them equal)
#: and those its FHIR mapping adds.
CANONICAL_TYPES: tuple[str, ...] = (
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
    "immunizations",
    "allergies",
    "pharmacy_claims",
)
#: How alike two names must be (difflib's ratio) to call one a slip for the other:
#: ``patiens``/``patients`` is 0.93, ``encounterz``/``encounters`` 0.9, ``care_gaps``/``claims`` 0.53.
CUTOFF = 0.85


def likely_meant(new_types: Iterable[str], known: Iterable[str] = ()) -> dict[str, str]:
    """``{type: the type probably meant}`` for each new type that is not a HealthSim type but
    is one or two letters away from one, or from one of ``known`` (the scenario's other types)."""
    candidates = list(dict.fromkeys([*CANONICAL_TYPES, *known]))
    slips = {}
    for entity_type in new_types:
        if entity_type in CANONICAL_TYPES:
            continue
        near = difflib.get_close_matches(entity_type, [c for c in candidates if c != entity_type], n=1, cutoff=CUTOFF)
        if near:
            slips[entity_type] = near[0]
    return slips
