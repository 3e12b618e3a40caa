"""The exception tree: one base, and the built-in bases callers rely on."""

from __future__ import annotations

from pathlib import Path

import pytest

from healthsim.state import errors


@pytest.mark.parametrize(
    ("cls", "builtin"),
    [
        (errors.ScenarioNotFoundError, LookupError),
        (errors.ScenarioExistsError, ValueError),
        (errors.InvalidInputError, ValueError),
        (errors.InvalidScenarioNameError, ValueError),
        (errors.InvalidEntityError, ValueError),
        (errors.InvalidScenarioFileError, ValueError),
    ],
)
def test_builtin_bases(cls: type, builtin: type) -> None:
    assert issubclass(cls, errors.StateError) and issubclass(cls, builtin)


def test_every_public_error_derives_from_state_error() -> None:
    for name in errors.__all__:
        assert issubclass(getattr(errors, name), errors.StateError)


def test_messages_name_the_subject_and_the_next_step() -> None:
    assert str(errors.ScenarioNotFoundError("x")) == (
        "scenario 'x' not found; list the scenarios (list_scenarios, or healthsim list) to see which exist"
    )
    assert "overwrite=True" in str(errors.ScenarioExistsError("x"))
    locked = errors.DatabaseLockedError(Path("/tmp/h.duckdb"), 2.5)
    assert "/tmp/h.duckdb" in str(locked) and "2.5 s" in str(locked) and "HEALTHSIM_LOCK_TIMEOUT" in str(locked)
    bad = errors.InvalidScenarioFileError("/tmp/f.json", "invalid JSON", "line 3 column 7")
    assert str(bad) == "cannot import '/tmp/f.json' at line 3 column 7: invalid JSON; nothing was saved"
