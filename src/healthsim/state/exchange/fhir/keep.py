"""What an imported resource says beyond its canonical entity, kept under ``_fhir``.

A resource of elsewhere (a Synthea Encounter with its ``serviceProvider``, a Patient with
five identifiers and the US Core race extension) is read as its canonical entity; the
top-level elements that the entity's own resource would not say again are kept under the
entity's :data:`FHIR_FIELD` (see :func:`kept_elements`: absent ones whole, of the others
what ours lacks). The export writes them
back (:func:`fill`): an element the canonical mapping does not write is put back as it
was; a list both have becomes ours first, then the kept items ours lacks (an item of ours
that a kept item says in full and more gives way to it); an object both have is filled in
the same way, key by key (where a value differs, the canonical one wins,
so an edit of the entity is what the export says).

Our own export records in its HealthSim extension only that the entity had kept elements
(``"fhir": 1``; :mod:`.carry`): the import computes them again, the same way, from the
resource, so they are not written twice.
"""

from __future__ import annotations

import datetime as _dt
from typing import Any, cast

from .carry import same
from .common import EXTENSION_URL, FHIR_FIELD, canonical_type
from .outbound import to_resources
from .refs import Unmappable

__all__ = ["FHIR_FIELD", "fill", "kept_elements", "regenerated"]

# Never kept: the type, what names the resource itself (the id is re-keyed on export; a
# vital sign panel's members are named from it), and the references whose target the
# entity holds (patient_mrn, encounter_id: the export points them at our ids).
_NOT_KEPT = frozenset({"resourceType", "id", "hasMember", "subject", "patient", "encounter", "beneficiary"})
# A vital sign set becomes a panel of Observations: the measurement a source Observation
# held (its code, value, components) is the entity's, not an element to put on the panel.
_NOT_KEPT_OF = {"vital_signs": frozenset({"code", "category", "valueQuantity", "component"})}
# The date a claim without any date is created on: fixed, so export and import agree.
_NO_DATE = _dt.date(1970, 1, 1)


def regenerated(entity: dict[str, Any], entity_type: str) -> dict[str, Any] | None:
    """The primary resource the canonical ``entity`` becomes (None: it cannot become one)."""
    plain = {k: v for k, v in entity.items() if k != FHIR_FIELD}
    try:
        return to_resources(plain, entity_type, "", _NO_DATE)[0]
    except Unmappable:
        return None


def kept_elements(resource: dict[str, Any], entity_type: str, ours: dict[str, Any] | None) -> dict[str, Any]:
    """What ``resource`` (read as an entity of ``entity_type``) says that ``ours`` (the
    entity's own resource) does not: its other elements whole; of a list both have, the
    items ours lacks; of an object both have, the same, key by key; a value that differs.
    Reading back what :func:`fill` wrote gives the same, except for what it does not write
    (a differing value, another type of a choice element, an empty one): the export's
    extension then holds ``_fhir`` itself (see :mod:`.mapping`)."""
    skip = _NOT_KEPT | _NOT_KEPT_OF.get(canonical_type(entity_type), frozenset())
    theirs = {k: v for k, v in resource.items() if k not in skip}
    if ours is None:
        return theirs
    kept = _diff(theirs, ours)
    return {} if kept is _SAME else cast(dict[str, Any], kept)


_SAME = object()


def _diff(theirs: Any, ours: Any) -> Any:
    """What of ``theirs`` ``ours`` lacks (``_SAME``: nothing)."""
    if isinstance(theirs, dict) and isinstance(ours, dict):
        out = {}
        for key, value in theirs.items():
            if key not in ours:
                out[key] = value
            else:
                extra = _diff(value, ours[key])
                if extra is not _SAME:
                    out[key] = extra
        return out or _SAME
    if isinstance(theirs, list) and isinstance(ours, list):
        # ``in`` first: an item no item of ours equals is extra without a closer look.
        extra = [item for item in theirs if item not in ours or not any(same(item, mine) for mine in ours)]
        return extra or _SAME
    return _SAME if same(theirs, ours) else theirs


def _merged(ours: Any, kept: Any) -> Any:
    if isinstance(ours, dict) and isinstance(kept, dict):
        out = dict(ours)
        for key, value in kept.items():
            out[key] = _merged(ours[key], value) if key in ours else value
        return out
    if isinstance(ours, list) and isinstance(kept, list):
        extra = [item for item in kept if not any(same(item, mine) for mine in ours)]
        # An item of ours that a kept one says in full and more (our {"text": t} of an
        # encounter type, the source's {"coding": […], "text": t}) is not written twice.
        mine = [item for item in ours if not any(_within(item, other) for other in extra)]
        return [*mine, *extra]
    return ours


def _within(part: Any, whole: Any) -> bool:
    """Whether ``whole`` says all ``part`` says (an object: each key, with a value within)."""
    if isinstance(part, dict) and isinstance(whole, dict):
        return all(key in whole and _within(value, whole[key]) for key, value in part.items())
    return same(part, whole)


# The top-level choice elements (``value[x]``…) of the resources the export writes: one
# of each, so a kept ``performedPeriod`` does not go beside our ``performedDateTime``.
_CHOICES: tuple[str, ...] = ("deceased", "multipleBirth", "onset", "abatement", "performed", "reported")
_CHOICES += ("medication", "effective", "value", "occurrence")


def _choice(key: str) -> str | None:
    for name in _CHOICES:
        if key.startswith(name) and key[len(name) : len(name) + 1].isupper():
            return name
    return None


def _other_choice(resource: dict[str, Any], key: str) -> bool:
    """Whether ``resource`` has another type of the choice element ``key`` is one of."""
    name = _choice(key)
    return name is not None and any(k != key and _choice(k) == name for k in resource)


def _foreign_extensions(value: Any) -> list[Any] | None:
    """The kept extensions the export may write: a list, without one of ours (the export
    appends its own; a second would be read instead of it). What is left out makes the
    export's extension hold ``_fhir`` itself, so the round trip stays exact."""
    if not isinstance(value, list):
        return None
    return [e for e in value if not (isinstance(e, dict) and e.get("url") == EXTENSION_URL)]


def fill(resource: dict[str, Any], kept: Any) -> None:
    """Put the kept elements back into ``resource`` (the entity's own resource), in place."""
    if not isinstance(kept, dict):
        return
    for key, value in kept.items():
        if key == "extension":
            value = _foreign_extensions(value)
        # FHIR has no empty or null elements (the extension then holds them, see .mapping).
        if key in _NOT_KEPT or value is None or value == [] or value == {} or _other_choice(resource, key):
            continue
        if key in resource:
            resource[key] = _merged(resource[key], value)
        else:  # a copy: the export appends its extension to the resource's list
            resource[key] = (
                list(value) if isinstance(value, list) else dict(value) if isinstance(value, dict) else value
            )
