"""Property: whatever JSON-representable entities are saved come back exactly."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from healthsim.state import ScenarioStore
from helpers.examples import examples
from helpers.strategies import entity, entity_types

# Control characters and lone surrogates in tags are refused (tested in test_validation).
printable_tags = st.text(alphabet=st.characters(exclude_categories=("Cc", "Cs", "Zl", "Zp")), max_size=8)
scenarios = st.dictionaries(entity_types, st.lists(entity, max_size=5), max_size=4)


@pytest.fixture(scope="module")
def props_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One database for every example (saves overwrite "prop"), under pytest's tmp folder.

    Module scope: Hypothesis runs all examples in one call of the test, and a
    function-scoped fixture would fail its health check.
    """
    return tmp_path_factory.mktemp("healthsim-props") / "props.duckdb"


@settings(max_examples=examples(60), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    entities=scenarios,
    # Any text but NUL, which a description may not hold (a team store could not keep it).
    description=st.none() | st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\x00"), max_size=30),
    tags=st.lists(printable_tags, max_size=4),
)
def test_save_load_roundtrip(
    props_db: Path, entities: dict[str, list[dict[str, Any]]], description: str | None, tags: list[str]
) -> None:
    store = ScenarioStore(props_db)
    sid = store.save_scenario("prop", entities, description, tags, overwrite=True)
    loaded = store.load_scenario(sid)
    assert loaded["entities"] == entities
    assert list(loaded["entities"]) == list(entities)
    for entity_type, items in entities.items():
        for got, want in zip(loaded["entities"][entity_type], items, strict=True):
            assert list(got) == list(want)  # key order kept
    assert loaded["description"] == description
    expected_tags = list(dict.fromkeys(t.strip() for t in tags if t.strip()))
    assert loaded["tags"] == expected_tags
    assert loaded["entities_by_type"] == {t: len(v) for t, v in entities.items()}
