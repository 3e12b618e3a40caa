"""Property: save -> export -> import -> export gives byte-identical entity data."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from healthsim.state import ScenarioStore
from helpers.examples import examples
from helpers.strategies import entity, entity_types

scenarios = st.dictionaries(entity_types, st.lists(entity, max_size=4), max_size=3)


def entity_section(path: Path) -> bytes:
    """Everything after the header line: the entity data as written."""
    return path.read_bytes().split(b"\n", 1)[1]


@pytest.fixture(scope="module")
def props_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One folder for every example (files are overwritten), under pytest's tmp folder.

    Module scope: Hypothesis runs all examples in one call of the test, and a
    function-scoped fixture would fail its health check.
    """
    return tmp_path_factory.mktemp("healthsim-exchange-props")


@settings(max_examples=examples(25), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(entities=scenarios, pretty=st.booleans())
def test_export_import_export_is_byte_identical(
    props_dir: Path, entities: dict[str, list[dict[str, Any]]], pretty: bool
) -> None:
    store = ScenarioStore(props_dir / "props.duckdb")
    store.save_scenario("first", entities, overwrite=True)
    first = store.export_scenario_to_json("first", props_dir / "first.json")
    source = first
    if pretty:  # a colleague's tool re-indented the file: the general reader takes it
        source = props_dir / "pretty.json"
        source.write_text(
            json.dumps(json.loads(first.read_text(encoding="utf-8")), indent=2, ensure_ascii=False), encoding="utf-8"
        )
    store.import_scenario_from_json(source, name="second", overwrite=True)
    second = store.export_scenario_to_json("second", props_dir / "second.json")
    assert store.load_scenario("second")["entities"] == entities
    if not pretty:
        assert entity_section(second) == entity_section(first)
    else:  # re-encoded from values: the same JSON values, and canonical again afterwards
        assert json.loads(second.read_text())["entities"] == json.loads(first.read_text())["entities"]
