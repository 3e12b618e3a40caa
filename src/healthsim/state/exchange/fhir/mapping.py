"""One entity to its resources and one resource back to its entity, with the extension."""

from __future__ import annotations

import copy
import datetime as _dt
from typing import Any, cast

import orjson

from .carry import PART, apply_carry, carry_extension, pop_carry
from .common import canonical_type
from .inbound import from_resource
from .keep import FHIR_FIELD, fill, kept_elements, regenerated
from .outbound import to_resources
from .refs import Unmappable

__all__ = ["Unmappable", "copy_resource", "entity_resources", "recarry", "resource_entity"]


def entity_resources(entity: Any, entity_type: str, entity_uuid: str, today: _dt.date) -> list[dict[str, Any]]:
    """The resources of one stored entity, the primary one carrying the HealthSim
    extension, the others marked as parts.

    Raises:
        Unmappable: the entity cannot become a valid resource (the reason).
    """
    resources = to_resources(entity, entity_type, entity_uuid, today)
    primary = resources[0]
    kept = entity.get(FHIR_FIELD)
    if kept is not None:
        fill(primary, kept)
    _carry(primary, entity_type, entity)
    for part in resources[1:]:
        part.setdefault("extension", []).append(PART)
    return resources


def recarry(resource: dict[str, Any], entity_type: str, entity: dict[str, Any]) -> None:
    """Replace the HealthSim extension of ``resource`` (a primary one whose elements were
    changed after it was made: a bundle made its outside references display-only) by the
    one that turns this resource back into ``entity``, as :func:`entity_resources` makes it."""
    pop_carry(resource)
    _carry(resource, entity_type, entity)


def _carry(primary: dict[str, Any], entity_type: str, entity: dict[str, Any]) -> None:
    """Add to ``primary`` the extension that turns its reading back into ``entity``."""
    _, base = from_resource(primary, canonical_type(entity_type))
    kept = entity.get(FHIR_FIELD) is not None
    if kept:
        # What the import will keep of this resource again (see .keep); the extension holds
        # ``_fhir`` itself only where that is not what the entity has.
        base[FHIR_FIELD] = kept_elements(primary, entity_type, regenerated(entity, entity_type))
    primary.setdefault("extension", []).append(carry_extension(entity, entity_type, base, kept=kept))


def resource_entity(resource: dict[str, Any], exact: bool | None = None) -> tuple[str, dict[str, Any]] | None:
    """The ``(type, entity)`` a resource stands for; None for a part of another's.

    A resource of our export comes back as the entity it was made from; one of elsewhere
    as its canonical reading plus ``fhir_id`` (the resource's id, to find it again), or,
    with no canonical home, whole under ``fhir_{type}``. ``exact``: whether the resource's
    text may hold an integer beyond 64 bits (None: not known; its extension is looked at).
    """
    carry = pop_carry(resource, exact)
    if carry is not None:
        if carry.get("part") is True:
            return None
        stored = carry.get("type")
        if isinstance(stored, str):
            _, base = from_resource(resource, canonical_type(stored))
            entity = apply_carry(base, carry)
            if carry.get("fhir") == 1 and FHIR_FIELD not in entity:
                entity[FHIR_FIELD] = kept_elements(resource, stored, regenerated(entity, stored))
            return stored, entity
    entity_type, entity = from_resource(resource)
    if entity is not resource and isinstance(resource.get("id"), str):
        entity["fhir_id"] = resource["id"]
    if entity is not resource:
        kept = kept_elements(resource, entity_type, regenerated(entity, entity_type))
        if kept:
            entity[FHIR_FIELD] = kept
    return entity_type, entity


def copy_resource(resource: dict[str, Any]) -> dict[str, Any]:
    """A deep copy (the bundle writer rewrites references in place)."""
    try:  # a JSON round trip in C: far faster than deepcopy
        return cast(dict[str, Any], orjson.loads(orjson.dumps(resource)))
    except (TypeError, orjson.JSONEncodeError):  # an integer beyond 64 bits, a lone surrogate
        return copy.deepcopy(resource)
