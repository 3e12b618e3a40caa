"""Checks of the scenario-level arguments: name, description, tags, limit.

Rules: a name is trimmed, non-empty, at most 200 characters, free of control
characters and not itself a UUID, so that name-or-UUID lookups stay unambiguous. Tags are
trimmed, empty ones dropped and exact duplicates removed, keeping the first occurrence.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable

from .errors import InvalidInputError, InvalidScenarioNameError

__all__ = [
    "MAX_NAME_LENGTH",
    "validate_name",
    "validate_description",
    "normalize_tags",
    "listed",
    "validate_limit",
    "validate_version",
    "validate_filter",
    "as_uuid",
]

MAX_NAME_LENGTH = 200
# C0 and C1 control characters, DEL, and the Unicode line/paragraph separators.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def as_uuid(text: str) -> uuid.UUID | None:
    """``text`` as a UUID, or ``None`` if it is not one."""
    try:
        return uuid.UUID(text.strip())
    except (ValueError, AttributeError, TypeError):
        return None


def storable(text: str) -> bool:
    """Whether ``text`` could be a stored name: no NUL (PostgreSQL cannot even be asked)
    and no lone surrogate (not UTF-8). A lookup by anything else finds nothing."""
    if "\x00" in text:
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def check_utf8(text: str, what: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidInputError(
            f"{what} contains a lone surrogate character, which cannot be stored as UTF-8; "
            "remove it or encode the text correctly"
        ) from None


def validate_name(name: object) -> str:
    """Return the trimmed scenario name.

    Raises:
        InvalidScenarioNameError: the name breaks a rule; the message says which.
    """
    if not isinstance(name, str):
        raise InvalidScenarioNameError(
            f"scenario name must be a string, not {type(name).__name__}; e.g. 'diabetes-cohort'"
        )
    trimmed = name.strip()
    if not trimmed:
        raise InvalidScenarioNameError("scenario name is empty; give a name such as 'diabetes-cohort'")
    if len(trimmed) > MAX_NAME_LENGTH:
        raise InvalidScenarioNameError(
            f"scenario name {trimmed[:40]!r}... is {len(trimmed)} characters; use at most {MAX_NAME_LENGTH}"
        )
    if _CONTROL.search(trimmed):
        raise InvalidScenarioNameError(f"scenario name {trimmed!r} contains a control character; use printable text")
    try:
        check_utf8(trimmed, f"scenario name {trimmed!r}")
    except InvalidInputError as exc:
        raise InvalidScenarioNameError(str(exc)) from None
    if as_uuid(trimmed) is not None:
        raise InvalidScenarioNameError(
            f"scenario name {trimmed!r} is a UUID, which would be confused with a scenario id; "
            "choose a descriptive name"
        )
    return trimmed


def validate_description(description: object) -> str | None:
    """Return the description unchanged (``None`` allowed).

    Raises:
        InvalidInputError: it is not a string, or holds a NUL character (which a
            PostgreSQL team store cannot keep: refused on both engines alike).
    """
    if description is None:
        return None
    if isinstance(description, str):
        check_utf8(description, "description")
        if "\x00" in description:
            raise InvalidInputError(f"description holds a NUL character (at {description.index(chr(0))}); remove it")
        return description
    raise InvalidInputError(f"description must be a string or None, not {type(description).__name__}")


def listed(value: object, label: str, example: str) -> list[object]:
    """``value`` as a list, for an argument that takes a list (of names, ids or tags).

    Args:
        value: what the caller passed.
        label: the argument's name, for the message.
        example: a list the message shows as an example (``"['patients']"``).

    Raises:
        InvalidInputError: ``value`` is not iterable (``None``, a number, a bool): Python's own
            "'int' object is not iterable" named neither the argument nor what to pass.
    """
    if isinstance(value, Iterable):
        return list(value)
    raise InvalidInputError(f"{label} must be a list, e.g. {example}, not {type(value).__name__} {value!r}")


def normalize_tags(tags: Iterable[object] | None) -> list[str]:
    """Trim tags, drop empty ones and exact duplicates, keep the order.

    Raises:
        InvalidInputError: ``tags`` is a single string, or holds something not a string.
    """
    if tags is None:
        return []
    if isinstance(tags, (str, bytes)):
        raise InvalidInputError(f"tags must be a list of strings, not a single string; write tags=[{tags!r}]")
    result: list[str] = []
    for position, tag in enumerate(listed(tags, "tags", "['diabetes']")):
        if not isinstance(tag, str):
            raise InvalidInputError(f"tags[{position}] is {type(tag).__name__} {tag!r}; every tag must be a string")
        cleaned = tag.strip()
        if _CONTROL.search(cleaned):
            raise InvalidInputError(f"tags[{position}] {cleaned!r} contains a control character")
        check_utf8(cleaned, f"tags[{position}]")
        if cleaned and cleaned not in result:
            result.append(cleaned)
    return result


def validate_filter(value: object, label: str) -> str | None:
    """A tag or search text for listing (``None`` allowed).

    Raises:
        InvalidInputError: not a string, or not storable as UTF-8.
    """
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidInputError(f"{label} must be a string, not {type(value).__name__}")
    check_utf8(value, label)
    return value


#: The largest limit handed to SQL: both engines' LIMIT is a 64-bit integer, and no store holds more rows.
MAX_LIMIT = 2**63 - 1


def validate_limit(limit: object, *, name: str = "limit", least: int = 1) -> int:
    """Return ``limit`` if it is an integer of at least ``least`` (one beyond 64 bits as
    :data:`MAX_LIMIT`).

    A limit past 64 bits means "all of them"; handed to SQL as it was, it failed as DuckDB's
    "Conversion Error" or PostgreSQL's "bigint out of range".

    Raises:
        InvalidInputError: otherwise.
    """
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < least:
        raise InvalidInputError(f"{name} must be a whole number of at least {least}, not {limit!r}")
    return min(limit, MAX_LIMIT)


def validate_offset(offset: object) -> int:
    """Return ``offset`` if it is a whole number of at least 0 (one beyond 64 bits as
    :data:`MAX_LIMIT`: past every row, as it is).

    Raises:
        InvalidInputError: otherwise.
    """
    return validate_limit(offset, name="offset", least=0)


def validate_version(version: object) -> int | None:
    """Return ``version`` if it is None (the current one) or a whole number (whether it is
    retained is the history's to say).

    ``True`` and ``1.0`` equal 1 in Python, so they read the current version when that is
    1 and failed otherwise; now they fail alike.

    Raises:
        InvalidInputError: otherwise.
    """
    if version is not None and (isinstance(version, bool) or not isinstance(version, int)):
        raise InvalidInputError(
            f"version must be a whole number such as 1, or None for the current one; not {version!r}"
        )
    return version
