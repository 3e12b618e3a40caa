"""What a scenario file says: its format, scenario fields, and entities.

Four shapes are read, every one that HealthSim releases have written:

- ``healthsim-1.0``: the exchange format, with a top-level ``schema_version`` "1.x";
- ``healthsim-legacy-export``: the same shape without ``schema_version`` (earlier releases);
- ``healthsim-legacy-workspace``: ``{"metadata": {...}, "provenance_summary": {...},
  "entities": {"patients": [{"entity_id", "entity_type", "data", "provenance"}]}}``;
- ``healthsim-legacy-lists``: entity lists at the top level (``"patients": [...]``).

Nothing in a file is dropped: a wrapper's ``provenance`` and ``entity_id`` go into the
entity as ``_provenance`` / ``_entity_id`` when it lacks them; top-level members that are
not scenario fields are kept in the scenario's ``metadata["source_fields"]``; a workspace's
``metadata`` in ``metadata["source_metadata"]``. A value whose key is already used by a
different value goes under the first free key of ``key_2``, ``key_3``… (see
:func:`free_key`), never over the file's own.
"""

from __future__ import annotations

import datetime as _dt
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..entities import (
    KNOWN_TYPES,
    MAX_DEPTH,
    Encoded,
    UnrepresentableValue,
    dumps_plain,
    encode_fast,
    json_path,
    normalize_type,
    to_plain,
)
from ..errors import InvalidEntityError, InvalidInputError, InvalidScenarioFileError
from ..validation import normalize_tags, validate_description, validate_name

__all__ = [
    "SCENARIO_FIELDS",
    "ImportPlan",
    "Survey",
    "check_schema_version",
    "free_key",
    "plan_import",
    "is_wrapper",
    "entity_from_item",
    "entity_list_type",
    "list_type",
]

#: Top-level members that describe the scenario (never entity lists).
SCENARIO_FIELDS = frozenset(
    {"schema_version", "scenario_id", "name", "description", "created_at", "updated_at", "tags", "metadata", "entities"}
)
_WRAPPER_KEYS = frozenset({"entity_id", "entity_type", "data", "provenance"})
SUPPORTED_MAJOR = "1"

Locator = Callable[[], str]  # returns where a value is (JSON path, line/column)


@dataclass
class Survey:
    """What a first read of a file found (the general reader reads files twice)."""

    fields: dict[str, Any] = field(default_factory=dict)
    top_level_lists: bool = False
    wrappers: bool = False
    counts: dict[str, int] = field(default_factory=dict)  # entities per stored type, in order


@dataclass
class ImportPlan:
    """The scenario a file describes, apart from its entities."""

    name: str
    description: str | None
    tags: list[str]
    created_at: _dt.datetime | None
    scenario_id: str | None
    metadata: dict[str, Any]
    source_format: str
    unwrap: bool
    source_updated_at: Any = None


def _refuse(path: Path, problem: str, where: str | None) -> InvalidScenarioFileError:
    return InvalidScenarioFileError(path, problem, where)


def check_schema_version(path: Path, fields: dict[str, Any]) -> str | None:
    """The file's top-level ``schema_version`` if this release reads it.

    Raises:
        InvalidScenarioFileError: quoting a version this release does not read.
    """
    if "schema_version" not in fields:
        return None
    version = fields["schema_version"]
    if not isinstance(version, str) or version.split(".")[0] != SUPPORTED_MAJOR:
        raise _refuse(
            path,
            f"schema_version {version!r} is not supported; this release reads "
            f"schema_version {SUPPORTED_MAJOR}.x files (upgrade healthsim-state for newer ones)",
            "$.schema_version",
        )
    return version


def _timestamp(path: Path, value: Any, where: str) -> _dt.datetime:
    try:
        parsed = _dt.datetime.fromisoformat(value)
    except (TypeError, ValueError):
        raise _refuse(path, f"{value!r} is not an ISO 8601 date-time", where) from None
    if parsed.tzinfo is not None:
        parsed = parsed.astimezone(_dt.UTC).replace(tzinfo=None)
    return parsed


def _plain(path: Path, value: Any, where: str) -> Any:
    """Check a value kept in metadata can be stored as JSON without change."""
    try:
        return to_plain(value, where)
    except UnrepresentableValue as exc:
        raise _refuse(path, f"the value {exc.problem}", exc.path) from None
    except RecursionError:
        raise _refuse(path, "the value nests too deeply", where) from None


def _source_format(survey: Survey, fields: dict[str, Any], version: Any, file_metadata: Any) -> tuple[str, bool]:
    """Which kind of file it is, and whether it is an earlier release's workspace (whose
    metadata may hold the scenario's fields)."""
    workspace = (
        version is None and isinstance(file_metadata, dict) and (survey.wrappers or "workspace_id" in file_metadata)
    )
    if version is not None:
        return "healthsim-1.0", False
    if workspace:
        return "healthsim-legacy-workspace", True
    if survey.top_level_lists and "entities" not in fields:
        return "healthsim-legacy-lists", False
    return "healthsim-legacy-export", False


def _checked(path: Path, found: tuple[Any, str] | None, check: Callable[[Any], Any], default: Any) -> Any:
    """A scenario field of the file, checked; an unusable one refused with its place."""
    if found is None:
        return default
    try:
        return check(found[0])
    except InvalidInputError as exc:
        raise _refuse(path, str(exc), found[1]) from None


def _kept_metadata(path: Path, fields: dict[str, Any], version: Any, file_metadata: Any) -> dict[str, Any]:
    """The scenario's metadata: the file's (kept aside for an earlier release's file), and
    every field not mapped to a scenario field, as it was in the file."""
    metadata: dict[str, Any] = {}
    if version is not None and isinstance(file_metadata, dict):
        metadata.update(_plain(path, file_metadata, "$.metadata"))
    elif file_metadata is not None:
        metadata["source_metadata"] = _plain(path, file_metadata, "$.metadata")
    if fields:
        source_fields: dict[str, Any] = {}
        for key, value in fields.items():
            where = json_path("$", key)
            try:
                key.encode("utf-8")
            except UnicodeEncodeError:
                raise _refuse(
                    path,
                    "this key contains a lone surrogate, which UTF-8 JSON cannot hold; "
                    "remove it or encode the text correctly",
                    where,
                ) from None
            source_fields[key] = _plain(path, value, where)
        _keep_source_fields(metadata, source_fields)
    return metadata


def plan_import(path: Path, survey: Survey, name: str | None, *, stem_name: str | None = None) -> ImportPlan:
    """Work out the scenario fields of a file (name priority: argument, file, stem).

    ``stem_name`` stands for the file's stem when the file holds no name (the migration, which
    cannot ask for a name, passes one made usable).

    Raises:
        InvalidScenarioFileError: a field is unusable (the message names it and, for a
            bad name in the file, suggests passing ``name``).
    """
    fields = dict(survey.fields)
    version = check_schema_version(path, fields)
    file_metadata = fields.pop("metadata", None)
    source_format, workspace = _source_format(survey, fields, version, file_metadata)
    fields.pop("entities", None)
    fallback = file_metadata if workspace else {}

    def pick(key: str) -> tuple[Any, str] | None:
        if key in fields:
            return fields.pop(key), f"$.{key}"
        if key in fallback:
            return fallback[key], f"$.metadata.{key}"
        return None

    if name is None:
        found = pick("name")
        if found is not None:
            try:
                name = validate_name(found[0])
            except InvalidInputError as exc:
                raise _refuse(path, f"{exc}; pass a name to import it under another one", found[1]) from None
        else:
            try:
                name = validate_name(path.stem if stem_name is None else stem_name)
            except InvalidInputError as exc:  # a name the caller never gave: say where it came from
                raise _refuse(
                    path, f"the file holds no name and its file name gives none ({exc}); pass a name to import it", None
                ) from None
    else:
        fields.pop("name", None)
        name = validate_name(name)
    description = _checked(path, pick("description"), validate_description, None)
    tags: list[str] = _checked(path, pick("tags"), normalize_tags, [])
    created_at = None
    if (found := pick("created_at")) is not None and found[0] is not None:
        created_at = _timestamp(path, found[0], found[1])
    scenario_id = None
    if isinstance(fields.get("scenario_id"), str):
        try:
            scenario_id = str(uuid.UUID(fields["scenario_id"]))
            fields.pop("scenario_id")
        except ValueError:
            pass  # kept in source_fields below
    fields.pop("schema_version", None)
    source_updated_at = _plain(path, fields.pop("updated_at", None), "$.updated_at")
    return ImportPlan(
        name=name,
        description=description,
        tags=tags,
        created_at=created_at,
        scenario_id=scenario_id,
        metadata=_kept_metadata(path, fields, version, file_metadata),
        source_format=source_format,
        unwrap=version is None,
        source_updated_at=source_updated_at,
    )


def free_key(mapping: dict[str, Any], key: str) -> str:
    """``key`` if ``mapping`` lacks it, else the first of ``key_2``, ``key_3``… it lacks.

    A value from the file that would land on a key the file already uses goes under
    this one instead, so that neither is lost.
    """
    if key not in mapping:
        return key
    suffix = 2
    while f"{key}_{suffix}" in mapping:
        suffix += 1
    return f"{key}_{suffix}"


def _keep_source_fields(metadata: dict[str, Any], source_fields: dict[str, Any]) -> None:
    """Put a file's unmapped top-level members in ``metadata["source_fields"]``.

    A 1.0 file's own metadata may already hold ``source_fields`` (a scenario imported
    once and exported again): the members are merged into it, the metadata's value
    winning a clash and the member going under a free key (``extra_2``); a
    ``source_fields`` that is not an object stays, the members going under a free key
    of the metadata (``source_fields_2``).
    """
    existing = metadata.get("source_fields")
    if existing is None and "source_fields" not in metadata:
        metadata["source_fields"] = source_fields
    elif isinstance(existing, dict):
        merged = {**existing, **{key: value for key, value in source_fields.items() if key not in existing}}
        for key, value in source_fields.items():
            if key in existing:  # after the others, so a free key is not one of theirs
                merged[free_key(merged, key)] = value
        metadata["source_fields"] = merged
    else:
        metadata[free_key(metadata, "source_fields")] = source_fields


def is_wrapper(value: dict[str, Any]) -> bool:
    """A legacy workspace entry: ``{entity_id, entity_type, data, provenance}`` around the data."""
    return isinstance(value.get("data"), dict) and value.keys() <= _WRAPPER_KEYS


def _unwrap(value: dict[str, Any], list_type: str) -> dict[str, Any]:
    """The entity a workspace wrapper holds, with the wrapper's facts it lacks.

    The wrapper's ``provenance``, ``entity_id`` and an ``entity_type`` that differs from
    its list go to ``_provenance``, ``_entity_id`` and ``_entity_type``; when the data has
    a different value there, to ``_wrapper_provenance``… and, should the data use that
    key too, to the first free ``_wrapper_provenance_2``, ``_3``… (never over its own).
    """
    data = dict(value["data"])
    facts = [("provenance", "_provenance"), ("entity_id", "_entity_id")]
    declared = value.get("entity_type")
    if declared is not None:
        try:
            same = normalize_type(declared) == list_type
        except InvalidEntityError:
            same = False
        if not same:  # the list's own type needs no note
            facts.append(("entity_type", "_entity_type"))
    for wrapper_key, data_key in facts:
        if wrapper_key in value:
            if data_key not in data:
                data[data_key] = value[wrapper_key]
            elif data[data_key] != value[wrapper_key]:
                data[free_key(data, f"_wrapper{data_key}")] = value[wrapper_key]
    return data


def entity_from_item(path: Path, value: Any, entity_type: str, unwrap: bool, where: Locator) -> Encoded:
    """Check and encode one element of an entity list.

    Raises:
        InvalidScenarioFileError: at ``where()``, with the field inside the entity.
    """
    if not isinstance(value, dict):
        raise _refuse(path, f"an entity must be a JSON object, not {type(value).__name__}", where())
    if unwrap and is_wrapper(value):
        value = _unwrap(value, entity_type)
    text = encode_fast(value)
    if text is not None:
        return Encoded(value, text, False)
    try:
        plain = to_plain(value)
    except UnrepresentableValue as exc:
        raise _refuse(path, f"entity field {exc.path} {exc.problem}", where()) from None
    except RecursionError:
        raise _refuse(path, f"the entity nests deeper than {MAX_DEPTH} levels", where()) from None
    return Encoded(value, dumps_plain(plain), True)


def list_type(path: Path, key: str, where: str) -> str:
    """The stored entity type of a list named ``key`` in the file.

    Raises:
        InvalidScenarioFileError: the name is not a valid entity type.
    """
    try:
        return normalize_type(key)
    except InvalidEntityError as exc:
        raise _refuse(path, str(exc), where) from None


def entity_list_type(key: str, first: Any, empty: bool) -> str | None:
    """The stored type of a list at the top level of a file, or None if it is a field.

    It holds entities when its first element is an object and ``key`` is a valid type
    name, or when it is empty and ``key`` names one of the specification's types
    (``"patients": []``). Anything else (``"@context": ["https://schema.org"]``,
    ``"warnings": []``) is a field of the file, kept with its other fields.
    """
    try:
        entity_type = normalize_type(key)
    except InvalidEntityError:
        return None
    if empty:
        return entity_type if entity_type in KNOWN_TYPES else None
    return entity_type if isinstance(first, dict) else None
