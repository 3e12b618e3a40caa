"""References between resources: written with both a literal reference (the stable id)
and the entity's own id as an identifier, read back from either."""

from __future__ import annotations

import functools
from typing import Any
from urllib.parse import unquote

from ...entities import reference_text
from .common import HS, fhir_string, pick, resource_id

__all__ = [
    "Unmappable",
    "conditional_identifier",
    "id_system",
    "identifier",
    "ref_key",
    "reference",
    "patient_reference",
]


class Unmappable(Exception):
    """An entity that cannot become a valid resource; the message is the reason."""


@functools.lru_cache(maxsize=256)  # a few types, asked for per reference
def id_system(entity_type: str) -> str:
    """The identifier system of the own ids of ``entity_type``."""
    return f"{HS}/id/{entity_type}"


def identifier(entity_type: str, key: str) -> dict[str, Any]:
    """The identifier of an entity's own id."""
    return {"system": id_system(entity_type), "value": key}


def reference(resource_type: str, entity_type: str, key: Any) -> dict[str, Any] | None:
    """A reference to the resource of the entity of ``entity_type`` whose own id is ``key``."""
    if type(key) is str and len(key) <= _CACHED_KEY:  # most keys: the literal reference cached
        literal = _literal(resource_type, entity_type, key)
        return None if literal is None else {"reference": literal, "identifier": identifier(entity_type, key)}
    # (numbers equal as numbers name one entity: 1.0 is "1", as the check matches them)
    text = fhir_string(reference_text(key))
    if text is None:
        return None
    return {
        "reference": f"{resource_type}/{resource_id(entity_type, text)}",
        "identifier": identifier(entity_type, text),
    }


_CACHED_KEY = 100


@functools.lru_cache(maxsize=1 << 16)  # a patient is referred to by each of its entities
def _literal(resource_type: str, entity_type: str, key: str) -> str | None:
    """``{resource_type}/{id}`` of the entity keyed ``key`` (None: the key is blank)."""
    return None if fhir_string(key) is None else f"{resource_type}/{resource_id(entity_type, key)}"


def patient_reference(entity: dict[str, Any], entity_type: str, *, required: bool = True) -> dict[str, Any] | None:
    """The reference to the entity's patient (``patient_mrn`` or an alias), or to its
    member's Patient when it names only a member.

    Raises:
        Unmappable: ``required`` and the entity names no patient or member.
    """
    found = reference("Patient", "patients", pick(entity, entity_type, "patient_mrn"))
    if found is None:
        found = reference("Patient", "members", entity.get("member_id"))
    if found is None and required:
        raise Unmappable("no patient to point at (patient_mrn, patient_id or member_id)")
    return found


def conditional_identifier(text: str) -> tuple[str | None, str] | None:
    """The ``(system, value)`` a conditional reference searches by
    (``Practitioner?identifier=sys|x&active=true`` → ``("sys", "x")``; no system: None),
    or None when it searches by no identifier."""
    for part in text.split("?", 1)[1].split("&"):
        name, _, value = part.partition("=")
        if name == "identifier" and value:
            system, bar, code = unquote(value).rpartition("|")
            return (system if bar else None), code
    return None


def ref_key(ref: Any) -> str | None:
    """The own id a reference names: its identifier's value, else the id in its
    ``reference`` (``Patient/x``, ``Patient/x/_history/2``, ``urn:uuid:x``,
    ``Practitioner?identifier=sys|x``)."""
    if not isinstance(ref, dict):
        return None
    ident = ref.get("identifier")
    if isinstance(ident, dict) and isinstance(ident.get("value"), str):
        return str(ident["value"])
    text = ref.get("reference")
    if not isinstance(text, str):
        return None
    if "?" in text:
        searched = conditional_identifier(text)
        if searched is not None:
            return searched[1]
    if text.startswith("urn:uuid:"):
        return text[len("urn:uuid:") :]
    if "/_history/" in text:  # a version of the resource: Patient/x/_history/2 names x
        text = text.split("/_history/", 1)[0]
    return text.rsplit("/", 1)[-1] if "/" in text else text
