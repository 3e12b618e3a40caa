"""``diff_scenarios``: an entity is "changed" exactly when it names a field that changed.

It once said "changed" with ``fields: []`` for a nested ``1`` → ``true`` and for ``37`` →
``37.0``: the database told the texts apart, Python's ``==`` did not. Both are changes (JSON
types kept apart: the store gives back a bool, an int or a float as saved), and the field
is named; keys that only moved, and one number written two ways (``1.0``/``1.00``), are no
change. Run on both engines.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from healthsim.state import ScenarioStore
from helpers.examples import examples


def _changed(store: ScenarioStore, a: str, b: str, entity_type: str) -> tuple[int, int, list[list[str]]]:
    counts = store.diff_scenarios(a, b)["types"][entity_type]
    return counts["changed"], counts["unchanged"], [e["fields"] for e in counts["examples"]["changed"]]


def test_nested_one_to_true_and_37_to_37_0_are_changes_that_name_their_field(store: ScenarioStore) -> None:
    store.save_scenario("v", {"vital_signs": [{"vital_sign_id": "V1", "temp": 37, "flags": {"fever": {"on": 1}}}]})
    store.add_entities("v", {"vital_signs": [{"vital_sign_id": "V1", "temp": 37.0, "flags": {"fever": {"on": True}}}]})
    assert _changed(store, "v@1", "v", "vital_signs") == (1, 0, [["temp", "flags.fever"]])


def test_keys_that_only_moved_are_no_change(store: ScenarioStore) -> None:
    store.save_scenario("k", {"patients": [{"patient_id": "P1", "a": 1, "b": {"x": 1, "y": [1, 2.5]}}]})
    store.add_entities("k", {"patients": [{"b": {"y": [1, 2.5], "x": 1}, "a": 1, "patient_id": "P1"}]})
    assert _changed(store, "k@1", "k", "patients") == (0, 1, [])


def test_texts_that_differ_in_form_only_are_no_change(store: ScenarioStore, tmp_path: Path) -> None:
    # Imported files keep their text: one number written two ways, an escape, spacing.
    files = {
        "one": '{"patients": [{"patient_id": "P1", "w": 1.0, "s": "\\u00e9", "o": {"a": 1, "b": 2}}]}',
        "two": '{"patients": [{ "patient_id" : "P1", "w": 1.00, "s": "é", "o": {"b": 2, "a": 1} }]}',
        "three": '{"patients": [{"patient_id": "P1", "w": 1, "s": "é", "o": {"b": 2, "a": true}}]}',
    }
    for name, text in files.items():
        path = tmp_path / f"{name}.json"
        path.write_text(text, encoding="utf-8")
        store.import_scenario_from_json(path, name=name)
    assert _changed(store, "one", "two", "patients") == (0, 1, [])
    assert _changed(store, "one", "three", "patients") == (1, 0, [["w", "o.a"]])


def _canonical(value: Any) -> str:
    """An independent judge: JSON text with sorted keys (it writes ``1``, ``1.0`` and ``true``
    apart), -0.0 taken as 0.0."""

    def fix(v: Any) -> Any:
        if isinstance(v, dict):
            return {k: fix(x) for k, x in v.items()}
        if isinstance(v, list):
            return [fix(x) for x in v]
        return 0.0 if isinstance(v, float) and v == 0 else v

    return json.dumps(fix(value), sort_keys=True)


leaves = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.sampled_from([0, 1, 37, -1, 2**70])
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.sampled_from([0.0, 1.0, 37.0, -0.0])
    | st.text(max_size=4)
)
values = st.recursive(
    leaves,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from("abcde"), inner, max_size=3),
    max_leaves=10,
)
bodies = st.dictionaries(st.sampled_from(["a", "b", "c", "_m", "é"]), values, max_size=4)


def _retyped(value: Any) -> Any:
    """The same numbers as other JSON types (1 → 1.0 / true, 1.0 → 1), deep inside."""
    if isinstance(value, dict):
        return {k: _retyped(v) for k, v in reversed(value.items())}
    if isinstance(value, list):
        return [_retyped(v) for v in value]
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value == 1 if value in (0, 1) else float(value) if abs(value) < 2**53 else value
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return int(value)
    return value


@st.composite
def pairs(draw: st.DrawFn) -> tuple[dict[str, Any], dict[str, Any]]:
    old = draw(bodies)
    how = draw(st.sampled_from(["same", "reordered", "retyped", "other"]))
    if how == "same":
        new = json.loads(json.dumps(old))
    elif how == "reordered":
        new = json.loads(json.dumps(old), object_pairs_hook=lambda items: dict(reversed(items)))
    elif how == "retyped":
        new = _retyped(old)
    else:
        new = draw(bodies)
    return {"id": "E-1", **old}, {"id": "E-1", **new}


@settings(max_examples=examples(40), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cases=st.lists(pairs(), min_size=1, max_size=8))
def test_changed_exactly_when_a_field_is_named(store: ScenarioStore, cases: list[tuple[Any, Any]]) -> None:
    tag = uuid.uuid4().hex[:8]
    store.save_scenario(f"a-{tag}", {f"t{i}": [old] for i, (old, _) in enumerate(cases)})
    store.save_scenario(f"b-{tag}", {f"t{i}": [new] for i, (_, new) in enumerate(cases)})
    types = store.diff_scenarios(f"a-{tag}", f"b-{tag}")["types"]
    for i, (old, new) in enumerate(cases):
        counts = types[f"t{i}"]
        assert (counts["added"], counts["removed"], counts["changed"] + counts["unchanged"]) == (0, 0, 1)
        examples = counts["examples"]["changed"]
        assert len(examples) == counts["changed"] and all(example["fields"] for example in examples), counts
        assert bool(counts["changed"]) == (_canonical(old) != _canonical(new)), (old, new, counts)
