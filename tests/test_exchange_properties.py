"""Property: save -> export -> import -> export gives byte-identical entity data."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from healthsim.state import ScenarioStore
from test_roundtrip_properties import entity, entity_types

_DIR = Path(tempfile.mkdtemp(prefix="healthsim-exchange-props-"))
scenarios = st.dictionaries(entity_types, st.lists(entity, max_size=4), max_size=3)


def entity_section(path: Path) -> bytes:
    """Everything after the header line: the entity data as written."""
    return path.read_bytes().split(b"\n", 1)[1]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(entities=scenarios, pretty=st.booleans())
def test_export_import_export_is_byte_identical(entities: dict[str, list[dict[str, Any]]], pretty: bool) -> None:
    store = ScenarioStore(_DIR / "props.duckdb")
    store.save_scenario("first", entities, overwrite=True)
    first = store.export_scenario_to_json("first", _DIR / "first.json")
    source = first
    if pretty:  # a colleague's tool re-indented the file: the general reader takes it
        source = _DIR / "pretty.json"
        source.write_text(json.dumps(json.loads(first.read_text(encoding="utf-8")), indent=2, ensure_ascii=False), encoding="utf-8")
    store.import_scenario_from_json(source, name="second", overwrite=True)
    second = store.export_scenario_to_json("second", _DIR / "second.json")
    assert store.load_scenario("second")["entities"] == entities
    if not pretty:
        assert entity_section(second) == entity_section(first)
    else:  # re-encoded from values: the same JSON values, and canonical again afterwards
        assert json.loads(second.read_text())["entities"] == json.loads(first.read_text())["entities"]
