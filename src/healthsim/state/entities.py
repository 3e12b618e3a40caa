"""Entities: type names, id fields, and validated JSON encoding.

An entity is a dict, a pydantic model or a dataclass. It is stored as the JSON text of
its *JSON-normalised* form (datetimes and dates as ISO strings, UUID and Decimal as
strings, enums as their values, tuples as lists). What cannot be represented in JSON
without changing it (NaN, infinities, non-string keys, arbitrary objects, nesting deeper
than :data:`MAX_DEPTH`, integers longer than :data:`MAX_INT_DIGITS`) is refused with an
:class:`InvalidEntityError` naming the entity type, index and field.

Encoding is the hot path of every save and import, so it runs orjson first and only
falls back to an exact (slower) Python walk when orjson cannot decide: orjson refuses
integers beyond 64 bits and writes NaN as ``null``, so any output containing ``null``
is checked for non-finite floats, and any output with enough brackets to be deep is
checked for depth.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import enum
import json
import math
import re
import uuid
from collections.abc import Iterable, Iterator, Mapping
from decimal import Decimal
from typing import Any, NamedTuple

import orjson

from .._text import json_path
from .errors import InvalidEntityError

__all__ = [
    "KNOWN_TYPES",
    "MAX_DEPTH",
    "MAX_INT_DIGITS",
    "ENTITY_ID_NAMESPACE",
    "normalize_type",
    "id_fields",
    "raw_entity_id",
    "reference_text",
    "encode_entity",
    "as_json_object",
    "encode_fast",
    "too_deep",
    "encode_exact",
    "Encoded",
    "UnrepresentableValue",
    "to_plain",
    "dumps_plain",
    "json_path",
    "decode_entity",
    "iter_typed_entities",
]

#: Deepest nesting of objects and arrays inside one entity (the entity itself is level 1).
MAX_DEPTH = 100
#: Longest integer accepted, in decimal digits: Python's default int/str conversion limit.
MAX_INT_DIGITS = 4300
#: Namespace of the UUIDv5 derived from an entity's non-UUID id: ``uuid5(NS, "{type}:{id}")``.
ENTITY_ID_NAMESPACE = uuid.UUID("6f1a3c52-8f9e-5d1b-9a57-3e2c4b7d9f10")

#: The specification's entity types, singular form -> stored (plural) form.
_SINGULAR_TO_PLURAL = {
    "patient": "patients",
    "encounter": "encounters",
    "diagnosis": "diagnoses",
    "procedure": "procedures",
    "medication": "medications",
    "lab_result": "lab_results",
    "vital_sign": "vital_signs",
    "clinical_note": "clinical_notes",
    "member": "members",
    "claim": "claims",
    "claim_line": "claim_lines",
    "prescription": "prescriptions",
    "subject": "subjects",
    "trial_visit": "trial_visits",
}
KNOWN_TYPES: tuple[str, ...] = tuple(_SINGULAR_TO_PLURAL.values())
_PLURAL_TO_SINGULAR = {p: s for s, p in _SINGULAR_TO_PLURAL.items()}

#: Id fields that differ from the "{singular}_id" rule, tried first.
_SPECIAL_ID_FIELDS = {
    "prescriptions": ("prescription_number", "prescription_id", "rx_id"),
    "trial_visits": ("visit_id", "trial_visit_id"),
    "clinical_notes": ("note_id", "clinical_note_id"),
    "lab_results": ("lab_result_id", "result_id"),
    "vital_signs": ("vital_sign_id", "observation_id"),
    "claim_lines": ("claim_line_id", "line_id"),
}

_TYPE_PATTERN = re.compile(r"[a-z][a-z0-9_]*")
_CAMEL_BOUNDARY = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
_MAX_TYPE_LENGTH = 100


def normalize_type(raw: object) -> str:
    """Return the stored name of an entity type.

    ``patient``, ``Patient`` and ``patients`` all become ``patients``; ``LabResult`` and
    ``lab-result`` become ``lab_results``. Types outside the specification's table are
    kept (lower snake_case) if they match ``[a-z][a-z0-9_]*``.

    Raises:
        InvalidEntityError: the type is not a string or not a valid name.
    """
    if not isinstance(raw, str):
        raise InvalidEntityError(f"entity type {raw!r} must be a string such as 'patients'", entity_type=None)
    name = _CAMEL_BOUNDARY.sub("_", raw.strip()).lower().replace("-", "_").replace(" ", "_")
    name = _SINGULAR_TO_PLURAL.get(name, name)
    if not _TYPE_PATTERN.fullmatch(name) or len(name) > _MAX_TYPE_LENGTH:
        raise InvalidEntityError(
            f"entity type {raw!r} is not a valid type name; use lower snake_case letters, "
            "digits and underscores starting with a letter (e.g. 'patients', 'care_gaps')",
            entity_type=str(raw),
        )
    return name


def id_fields(entity_type: str) -> tuple[str, ...]:
    """The fields, in order, whose value is taken as an entity's own id."""
    singular = _PLURAL_TO_SINGULAR.get(entity_type)
    if singular is None:
        singular = entity_type[:-1] if entity_type.endswith("s") else entity_type
    # "_entity_id" last: the id a legacy workspace wrapper carried (see exchange.shapes).
    fields = [*_SPECIAL_ID_FIELDS.get(entity_type, ()), f"{singular}_id", "id", "_entity_id"]
    return tuple(dict.fromkeys(fields))


def raw_entity_id(data: Any, fields: tuple[str, ...]) -> str | None:
    """The entity's own id as text (``None`` when it has none).

    Strings (and UUID objects) are taken as they are; numbers as their JSON text. Other
    values (null, booleans, objects) do not identify an entity.
    """
    get = data.get if isinstance(data, dict) else (lambda f: getattr(data, f, None))
    for field in fields:
        value = get(field)
        if type(value) is str:
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return json.dumps(value) if isinstance(value, float) else str(value)
        if isinstance(value, (str, uuid.UUID)):  # str subclasses; UUID fields of models
            return str(value)
    return None


def reference_text(value: Any) -> str | None:
    """The text an id or a reference is matched by (None: it names nothing): a string as
    it is; a number in its plain form, so that numbers equal as numbers match (``1.0``
    and ``1`` are ``"1"``, ``2.50`` is ``"2.5"``), and a string of those digits too.
    Booleans, null, objects and lists name nothing. The check's SQL follows the same rule
    (``checks/sql.py``: ``ref_text``)."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float) and math.isfinite(value):
        return str(int(value)) if value.is_integer() else repr(value)
    return None


# --------------------------------------------------------------------------- encoding


class Encoded(NamedTuple):
    """An entity already checked and encoded (by an import reader, which knows where
    in its file the entity was, for error messages).

    Attributes:
        obj: the parsed entity (used for its id).
        text: its JSON text, stored as it is.
        exact: the text may hold integers beyond 64 bits (read back with the exact parser).
    """

    obj: Any
    text: bytes
    exact: bool


class UnrepresentableValue(ValueError):
    """A value has no faithful JSON form; ``path`` says where inside the checked value."""

    def __init__(self, path: str, problem: str) -> None:
        self.path = path
        self.problem = problem
        super().__init__(f"{path} {problem}")


def _dataclass_fields(value: Any) -> dict[str, Any]:
    """Every field of a dataclass instance, in definition order (as :func:`to_plain` takes
    them). orjson's own dataclass encoding leaves out fields named ``_…`` (HealthSim
    metadata such as ``_provenance``) and ``init=False`` ones, so it is not used."""
    return {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}


def _orjson_default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):  # (OPT_PASSTHROUGH_DATACLASS)
        return _dataclass_fields(value)
    dump = getattr(value, "model_dump", None)
    if callable(dump):  # a pydantic model nested in plain data
        return dump(mode="json")
    raise TypeError


def _has_nonfinite_float(value: Any) -> bool:
    stack = [value]
    pop, push, extend = stack.pop, stack.append, stack.extend
    while stack:
        item = pop()
        kind = type(item)
        if kind is dict:
            extend(item.values())
        elif kind is list or kind is tuple:
            extend(item)
        elif kind is float:
            if item != item or item in (math.inf, -math.inf):
                return True
        elif not (kind is str or kind is int or kind is bool or item is None):
            push(_plain_or_none(item))
    return False


def _plain_or_none(item: Any) -> Any:
    """Containers hidden in dataclasses/pydantic/enums, for the NaN scan."""
    if dataclasses.is_dataclass(item) and not isinstance(item, type):
        return [getattr(item, f.name) for f in dataclasses.fields(item)]
    if isinstance(item, enum.Enum):
        return item.value
    if isinstance(item, float):
        return float(item)
    if isinstance(item, (dict, list, tuple)):
        return list(item.values()) if isinstance(item, dict) else list(item)
    dump = getattr(item, "model_dump", None)
    if callable(dump):
        return dump(mode="json")
    return None


def to_plain(value: Any, path: str = "$", depth: int = 1) -> Any:
    """Exact JSON normalisation with every check; slow, used when orjson cannot decide.

    Raises:
        UnrepresentableValue: naming the path of the first value JSON cannot hold.
        RecursionError: for structures nested beyond Python's recursion limit (only
            reachable past :data:`MAX_DEPTH`, which is checked first).
    """
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise UnrepresentableValue(path, "contains a lone surrogate, which UTF-8 JSON cannot hold") from None
        return str(value)
    if isinstance(value, int):
        if isinstance(value, enum.Enum):
            return to_plain(value.value, path, depth)
        if value.bit_length() > 14000:  # cheap pre-check; 4300 digits is ~14284 bits
            try:
                digits = len(str(abs(value)))
            except ValueError:
                digits = MAX_INT_DIGITS + 1
            if digits > MAX_INT_DIGITS:
                raise UnrepresentableValue(path, f"is an integer longer than {MAX_INT_DIGITS} digits")
        return int(value)
    if isinstance(value, float):
        if isinstance(value, enum.Enum):
            return to_plain(value.value, path, depth)
        if not math.isfinite(value):
            raise UnrepresentableValue(path, f"is {value!r}, which JSON cannot represent; use null or a number")
        return float(value)
    if depth > MAX_DEPTH and isinstance(value, (dict, list, tuple)):
        raise UnrepresentableValue(path, f"nests deeper than {MAX_DEPTH} levels")
    if isinstance(value, Mapping):
        out = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise UnrepresentableValue(
                    json_path(path, str(key)), f"has a non-string key {key!r}; JSON keys are strings"
                )
            key_path = json_path(path, key)
            try:
                key.encode("utf-8")
            except UnicodeEncodeError:
                raise UnrepresentableValue(key_path, "key contains a lone surrogate") from None
            out[str(key)] = to_plain(item, key_path, depth + 1)
        return out
    if isinstance(value, (list, tuple)):
        return [to_plain(item, json_path(path, i), depth + 1) for i, item in enumerate(value)]
    if isinstance(value, enum.Enum):
        return to_plain(value.value, path, depth)
    if isinstance(value, _dt.datetime | _dt.date | _dt.time):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, Decimal):
        return str(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return to_plain({f.name: getattr(value, f.name) for f in dataclasses.fields(value)}, path, depth)
    dump = getattr(value, "model_dump", None)
    if callable(dump):
        return to_plain(dump(mode="json"), path, depth)
    raise UnrepresentableValue(
        path,
        f"is a {type(value).__name__}, which has no JSON form; convert it to a string, number, list or dict first",
    )


def _max_depth_exceeded(text: bytes) -> bool:
    """Exact nesting depth of JSON text, counting brackets outside strings."""
    depth = 0
    in_string = escaped = False
    for byte in text:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x7B, 0x5B):
            depth += 1
            if depth > MAX_DEPTH:
                return True
        elif byte in (0x7D, 0x5D):
            depth -= 1
    return False


def too_deep(text: bytes) -> bool:
    """Whether JSON text nests deeper than :data:`MAX_DEPTH` (a cheap count first)."""
    return text.count(b"{") + text.count(b"[") > MAX_DEPTH and _max_depth_exceeded(text)


_SLOW_ENCODER = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":"))


def as_json_object(entity: Any, entity_type: str, index: int) -> Any:
    """The entity as something orjson serialises as an object (a dict or a dataclass).

    Raises:
        InvalidEntityError: the entity is not an object.
    """
    if type(entity) is dict:
        return entity
    if dataclasses.is_dataclass(entity) and not isinstance(entity, type):
        return _dataclass_fields(entity)  # a dict: the save counts its keys; nested ones stay as given
    if callable(getattr(entity, "model_dump", None)):
        return entity.model_dump(mode="json")
    if isinstance(entity, Mapping):
        return dict(entity)
    raise InvalidEntityError(
        f"{entity_type}[{index}] is a {type(entity).__name__}; an entity must be a JSON object "
        "(a dict, a pydantic model or a dataclass)",
        entity_type=entity_type,
        index=index,
    )


def encode_fast(obj: Any) -> bytes | None:
    """orjson's text for ``obj`` when it is certainly right, else ``None``.

    ``None`` means :func:`encode_exact` must decide: orjson refused the value (an
    integer beyond 64 bits, a non-string key, an unsupported type), wrote a NaN or
    infinity as ``null``, or the nesting may be deeper than :data:`MAX_DEPTH`.
    """
    try:
        text = orjson.dumps(obj, default=_orjson_default, option=orjson.OPT_PASSTHROUGH_DATACLASS)
    except (TypeError, orjson.JSONEncodeError):
        return None
    if b"null" in text and _has_nonfinite_float(obj):
        return None
    if too_deep(text):
        return None
    return text


def encode_exact(obj: Any, entity_type: str, index: int) -> bytes:
    """The exact (slower) encoder: big integers kept, everything else checked.

    Raises:
        InvalidEntityError: naming the type, index and field of what cannot be stored.
    """
    try:
        plain = to_plain(obj, "$", 1)
    except UnrepresentableValue as refused:
        raise InvalidEntityError(
            f"{entity_type}[{index}] field {refused.path} {refused.problem}",
            entity_type=entity_type,
            index=index,
            field=refused.path,
        ) from None
    except RecursionError:
        raise InvalidEntityError(
            f"{entity_type}[{index}] nests deeper than {MAX_DEPTH} levels",
            entity_type=entity_type,
            index=index,
        ) from None
    return dumps_plain(plain)


def dumps_plain(plain: Any) -> bytes:
    """Compact UTF-8 JSON of a value :func:`to_plain` has checked (big integers exact)."""
    return _SLOW_ENCODER.encode(plain).encode("utf-8")


def encode_entity(entity: Any, entity_type: str, index: int) -> bytes:
    """Return the JSON text (UTF-8) stored for one entity.

    Args:
        entity: a dict, pydantic model or dataclass instance.
        entity_type: its normalised type, for error messages.
        index: its position in its type's list, for error messages.

    Raises:
        InvalidEntityError: naming the type, index and field of what cannot be stored.
    """
    obj = as_json_object(entity, entity_type, index)
    return encode_fast(obj) or encode_exact(obj, entity_type, index)


def decode_entity(text: str | bytes, *, exact: bool = False) -> Any:
    """Parse stored JSON text back into Python values.

    orjson turns integers beyond 64 bits into floats, so text that may hold one
    (``exact=True``: text written by :func:`encode_exact`, or of unknown origin with a
    long digit run) goes through the standard library parser, which keeps them.
    """
    return json.loads(text) if exact else orjson.loads(text)


def iter_typed_entities(
    entities: Mapping[str, Iterable[Any]],
) -> Iterator[tuple[str, Iterable[Any]]]:
    """Yield ``(normalised type, entity list)`` pairs, validating the outer shape.

    Raises:
        InvalidEntityError: ``entities`` is not a mapping of type to list.
    """
    if not isinstance(entities, Mapping):
        raise InvalidEntityError(
            f"entities must be a dict of entity type to list of entities, not a "
            f"{type(entities).__name__}; e.g. {{'patients': [...], 'encounters': [...]}}"
        )
    for raw_type, items in entities.items():
        entity_type = normalize_type(raw_type)
        if isinstance(items, (str, bytes, Mapping)) or not isinstance(items, Iterable):
            raise InvalidEntityError(
                f"entities[{raw_type!r}] must be a list of entities, not a {type(items).__name__}",
                entity_type=entity_type,
            )
        yield entity_type, items
