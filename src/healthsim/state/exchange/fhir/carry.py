"""The HealthSim extension: what of an entity its resource cannot say.

On export the entity's primary resource is read back (:func:`.inbound.from_resource`),
and what that reading gets wrong is recorded in one extension on the resource::

    {"url": EXTENSION_URL, "valueString": "{\\"type\\": \\"labs\\", \\"fields\\": {…}, \\"drop\\": […]}"}

``type`` is the entity's stored type, ``fields`` every field the reading does not give
back exactly (no FHIR home, a value FHIR cannot hold, a variant spelling), ``drop`` what
the reading adds that the entity did not have (a default such as ``status: unknown``).
Import applies it to the same reading, so an entity comes back equal, field for field
and type for type. Secondary resources (a member's Coverage, the measurements of a vital
sign set) carry ``{"part": true}`` and are skipped on import: their primary says it all.
"""

from __future__ import annotations

import functools
import json
from typing import Any

import orjson

from ...entities import normalize_type
from ...errors import InvalidEntityError
from .common import EXTENSION_URL, exact_loads, may_hold_long_int

__all__ = ["PART", "BadExtension", "apply_carry", "carry_extension", "pop_carry", "same"]


class BadExtension(ValueError):
    """The HealthSim extension of a resource is not what HealthSim writes; the message says
    what is wrong with it."""


#: The extension of a secondary resource.
PART = {"url": EXTENSION_URL, "valueString": '{"part":true}'}


_SCALARS = (str, int, float, bool, type(None))


def same(a: Any, b: Any) -> bool:
    """Equal as JSON values, types included (``1`` is not ``1.0`` nor ``True``)."""
    if type(a) is not type(b):
        return False
    if type(a) in _SCALARS or a != b:  # most values: one comparison in C, no walk
        return bool(a == b)
    # Equal containers: equal types too when their JSON texts are equal (1, 1.0 and true
    # are written apart), which orjson tells far faster than a walk in Python.
    try:
        return orjson.dumps(a, option=orjson.OPT_SORT_KEYS) == orjson.dumps(b, option=orjson.OPT_SORT_KEYS)
    except (TypeError, orjson.JSONEncodeError):  # a huge integer or a lone surrogate
        return _same_walk(a, b)


def _same_walk(a: Any, b: Any) -> bool:
    """:func:`same` of two containers that ``==`` finds equal: their items' types too."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(v, b[k]) for k, v in a.items())
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def _changed(entity: dict[str, Any], base: dict[str, Any]) -> dict[str, Any]:
    """The fields of ``entity`` that ``base`` (the reading) lacks or does not give back as
    they are (:func:`same`), in the entity's order. The common cases are decided here
    without a call (this runs for every field of every entity): a field the reading lacks,
    the very object (the reading often hands the entity's own text back), an equal text."""
    fields = {}
    for key, value in entity.items():
        if key in base:
            back = base[key]
            if back is value:
                continue
            if type(back) is type(value) and (back == value if type(back) is str else same(back, value)):
                continue
        fields[key] = value
    return fields


def carry_extension(
    entity: dict[str, Any], entity_type: str, base: dict[str, Any], *, kept: bool = False
) -> dict[str, Any]:
    """The extension that turns ``base`` (the resource read back) into ``entity``;
    ``kept``: the entity has elements of a source resource (``_fhir``, see :mod:`.keep`),
    which the import is to compute again from the resource (``"fhir": 1``)."""
    carry: dict[str, Any] = {"type": entity_type}
    if kept:
        carry["fhir"] = 1
    fields = _changed(entity, base)
    drop = [k for k in base if k not in entity]
    if fields:
        carry["fields"] = fields
    if drop:
        carry["drop"] = drop
    try:
        text = orjson.dumps(carry).decode("utf-8")
    except (TypeError, orjson.JSONEncodeError):  # a lone surrogate or a huge integer: the exact, slower way
        text = json.dumps(carry, separators=(",", ":"))  # ASCII: a lone surrogate stays an escape
    return {"url": EXTENSION_URL, "valueString": text}


def pop_carry(resource: dict[str, Any], exact: bool | None = None) -> dict[str, Any] | None:
    """Remove our extension from ``resource`` and return what it says (None: none).

    Args:
        exact: whether its text may hold an integer beyond 64 bits (None: look).

    Raises:
        BadExtension: the extension is not what HealthSim writes.
    """
    extensions = resource.get("extension")
    if not isinstance(extensions, list):
        return None
    for position, extension in enumerate(extensions):
        if isinstance(extension, dict) and extension.get("url") == EXTENSION_URL:
            del extensions[position]
            if not extensions:
                del resource["extension"]
            text = extension.get("valueString")
            if not isinstance(text, str):
                raise BadExtension("it has no valueString text")
            try:
                # orjson reads an integer beyond 64 bits as a float: such text takes the exact parser.
                if exact is None:
                    exact = may_hold_long_int(text.encode("utf-8", "surrogatepass"))
                carry = exact_loads(text) if exact else orjson.loads(text)
            except (TypeError, ValueError) as exc:
                raise BadExtension(f"its valueString is not JSON ({exc})") from None
            except RecursionError:
                raise BadExtension("its valueString nests too deep") from None
            return _checked(carry)
    return None


@functools.lru_cache(maxsize=1024)  # a scenario has a few types, each asked for per resource
def _type_name(stored: str) -> str | None:
    """The entity type ``stored`` names (None: no type name)."""
    try:
        return normalize_type(stored)
    except InvalidEntityError:
        return None


def _checked(carry: Any) -> dict[str, Any]:
    """What the extension says, its ``type`` in its stored spelling.

    Raises:
        BadExtension: it says something HealthSim does not write (a hand edit, another tool).
    """
    if not isinstance(carry, dict):
        raise BadExtension(f"its valueString is a JSON {type(carry).__name__}, not an object")
    if carry.get("part") is True:
        return carry
    # The import saves the entity under this type: it must be a valid type name.
    stored = carry.get("type")
    name = _type_name(stored) if isinstance(stored, str) else None
    if name is None:
        raise BadExtension(f"its type {stored!r:.60} is no entity type name such as 'patients'")
    carry["type"] = name
    drop = carry.get("drop", [])
    if not isinstance(drop, list) or (drop and not {type(key) for key in drop} <= {str}):
        raise BadExtension("its drop is not a list of field names")
    if not isinstance(carry.get("fields", {}), dict):
        raise BadExtension("its fields is not an object of fields")
    return carry


def apply_carry(base: dict[str, Any], carry: dict[str, Any]) -> dict[str, Any]:
    """The entity: ``base`` with the extension's ``drop`` removed and ``fields`` set."""
    for key in carry.get("drop") or []:
        base.pop(key, None)
    fields = carry.get("fields")
    if isinstance(fields, dict):
        base.update(fields)
    return base
