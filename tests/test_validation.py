"""Scenario names, descriptions, tags and limits."""

from __future__ import annotations

import uuid

import pytest

from healthsim.state.errors import InvalidInputError, InvalidScenarioNameError
from healthsim.state.validation import (
    as_uuid,
    normalize_tags,
    validate_description,
    validate_limit,
    validate_name,
)

#: A fixed random UUID: parallel workers (pytest-xdist) must collect the same test ids.
SOME_UUID = uuid.UUID("3f2c9a4e-8b1d-4c6f-9e7a-2d5b8c1f0a93")


def test_name_is_trimmed() -> None:
    assert validate_name("  diabetes-cohort \n") == "diabetes-cohort"
    assert validate_name("x" * 200) == "x" * 200
    assert validate_name("Cohorte médica 中文") == "Cohorte médica 中文"


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("x" * 201, "at most 200"),
        ("bad\x00name", "control character"),
        ("tab\there", "control character"),
        ("line\u2028sep", "control character"),
        (str(SOME_UUID), "is a UUID"),
        ("half\ud800", "lone surrogate"),
        (SOME_UUID.hex, "is a UUID"),
        (None, "must be a string"),
        (42, "must be a string"),
    ],
)
def test_bad_names(name: object, problem: str) -> None:
    with pytest.raises(InvalidScenarioNameError, match=problem) as info:
        validate_name(name)
    assert isinstance(info.value, ValueError)


def test_tags_trimmed_deduplicated_in_order() -> None:
    assert normalize_tags([" b ", "a", "", "b", "  ", "A"]) == ["b", "a", "A"]
    assert normalize_tags(None) == []
    assert normalize_tags(("x",)) == ["x"]


@pytest.mark.parametrize(
    ("tags", "problem"),
    [
        ("diabetes", "single string"),
        (["ok", 3], r"tags\[1\]"),
        (["a\nb"], "control"),
        (["ok", "\udc80"], r"tags\[1\].*surrogate"),
    ],
)
def test_bad_tags(tags: object, problem: str) -> None:
    with pytest.raises(InvalidInputError, match=problem):
        normalize_tags(tags)  # type: ignore[arg-type]


def test_description() -> None:
    assert validate_description(None) is None
    assert validate_description(" kept as given ") == " kept as given "
    with pytest.raises(InvalidInputError, match="description"):
        validate_description(3)
    with pytest.raises(InvalidInputError, match="description contains a lone surrogate"):
        validate_description("x\ud800")


@pytest.mark.parametrize("limit", [0, -1, 1.5, "10", True, None])
def test_bad_limits(limit: object) -> None:
    with pytest.raises(InvalidInputError, match="limit"):
        validate_limit(limit)


def test_as_uuid() -> None:
    u = uuid.uuid4()
    assert as_uuid(f" {u} ") == u
    assert as_uuid("MRN-1") is None
