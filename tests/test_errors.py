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


def test_messages_are_valid_utf8_with_lone_surrogates_escaped() -> None:
    # A message quoting input with a lone surrogate could not be printed or sent over MCP.
    from healthsim.state.query import QueryError

    made = [
        errors.StateError("bad \ud800 text"),
        errors.InvalidInputError("bad \ud800 text"),
        errors.InvalidScenarioNameError("bad \ud800 text"),
        errors.InvalidEntityError("bad \ud800 text", field='$["\ud800"]'),
        errors.InvalidScenarioFileError("/tmp/\udcff.json", "bad \ud800 text", '$["\ud800"]'),
        errors.ScenarioNotFoundError("\ud800"),
        errors.ScenarioExistsError("\ud800"),
        errors.DatabaseLockedError(Path("/tmp/\udcff.duckdb"), 1, "held by \ud800"),
        errors.DatabaseError("bad \ud800 text"),
        QueryError("bad \ud800 text"),
    ]
    for exc in made:
        text = str(exc)
        text.encode("utf-8")  # no UnicodeEncodeError
        assert "\\ud800" in text or "\\udcff" in text, text
    assert str(errors.InvalidScenarioFileError("/tmp/f.json", "key \ud800", '$["\ud800"]')) == (
        "cannot import '/tmp/f.json' at $[\"\\ud800\"]: key \\ud800; nothing was saved"
    )
    assert str(errors.InvalidInputError("café 🎉")) == "café 🎉"  # valid text is left alone
    assert errors.InvalidEntityError("x", field='$["\ud800"]').field == '$["\ud800"]'  # attributes keep the data


def test_safe_text() -> None:
    assert errors.safe_text("plain é 🎉") == "plain é 🎉"
    assert errors.safe_text("a\ud800b\udfffc") == "a\\ud800b\\udfffc"
    assert errors.safe_text("\ud83c\udf89") == "\\ud83c\\udf89"  # a pair never joined: two lone halves


# A lone surrogate in a top-level key of an imported file (the escape written literally in
# the JSON text). These once reached DuckDB as a raw InvalidInputException ("cannot encode str
# as UTF-8, surrogate '\ud800'"); the import refuses them as an InvalidScenarioFileError naming
# the key, before anything is written (see docs/decisions.md, "Lone surrogates").
@pytest.mark.parametrize(
    "text",
    [
        r'{"name": "x", "\ud800": [1], "entities": {}}',
        r'{"name": "x", "\ud800": [{"a": 1}], "entities": {}}',
        r'{"name": "x", "\ud800": 1, "entities": {}}',
        r'{"name": "x", "\ud800": [1, 2, 3], "entities": {}}',
        r'{"name": "x", "\ud800": "text"}',
        r'{"\ud800": {"nested": true}, "patients": [{"patient_id": "A"}]}',
    ],
)
def test_lone_surrogate_in_a_top_level_key_of_an_imported_file(tmp_path: Path, text: str) -> None:
    from healthsim.state import ScenarioStore

    path = tmp_path / "f.json"
    path.write_text(text, encoding="utf-8")
    store = ScenarioStore(tmp_path / "h.duckdb")
    with pytest.raises(errors.InvalidScenarioFileError) as caught:
        store.import_scenario_from_json(path)
    message = str(caught.value)
    message.encode("utf-8")
    assert '$["\\ud800"]' in message and "nothing was saved" in message, message
    assert store.list_scenarios()["total_count"] == 0


def test_lone_surrogate_in_a_top_level_key_of_an_export_layout_file(tmp_path: Path) -> None:
    # The same, in the header line of a file in the export's own layout (another reader).
    from healthsim.state import ScenarioStore

    store = ScenarioStore(tmp_path / "h.duckdb")
    store.save_scenario("x", {"patients": [{"patient_id": "A"}]})
    path = store.export_scenario_to_json("x", tmp_path / "x.json")
    path.write_text(
        path.read_text(encoding="utf-8").replace('"name":"x"', '"name":"y","\\ud800":1', 1), encoding="utf-8"
    )
    with pytest.raises(errors.InvalidScenarioFileError, match=r'\$\["\\ud800"\]'):
        store.import_scenario_from_json(path)
    assert [s["name"] for s in store.list_scenarios()["scenarios"]] == ["x"]
