"""A new user's first queries (a first-hour walk-through), on both engines."""

from __future__ import annotations

from pathlib import Path

import pytest

from healthsim.state import InvalidInputError, QueryError, ScenarioStore, query_scenarios


def test_a_query_of_a_table_that_is_not_there_names_the_views(store: ScenarioStore) -> None:
    """`healthsim query "SELECT * FROM patiens"` answered `Catalog Error: Table with name
    patiens does not exist!` and nothing else (DuckDB's own suggestion was on the line the
    sandbox dropped, and for `encounters` it suggested `duckdb_constraints`, a system
    table the sandbox hides). Now the error names the nearest view and the views there are."""
    store.save_scenario("cohort", {"patients": [{"patient_id": "P1"}], "lab_results": [{"lab_result_id": "L1"}]})
    with pytest.raises(QueryError) as typo:
        query_scenarios("SELECT * FROM patiens")
    text = str(typo.value)
    assert "did you mean 'patients'" in text, text
    assert "the views are entities, lab_results, patients" in text, text
    with pytest.raises(QueryError) as absent:
        query_scenarios("SELECT count(*) FROM encounters e JOIN patients p ON true")
    text = str(absent.value)
    assert "encounters" in text and "the views are entities, lab_results, patients" in text, text
    assert "duckdb_" not in text and "did you mean" not in text, text


def test_the_views_named_after_a_missing_table_are_bounded(store: ScenarioStore) -> None:
    """A store of many types (a Synthea import holds 20; a generator may make hundreds) named
    every view in the error: 15-27 KB for 300 types of long names on the terminal (MCP cut
    it in the middle). The nearest view is still named, and the rest counted."""
    types = {f"type_{i:03d}_" + "x" * 40: [{"a": 1}] for i in range(300)}  # (PostgreSQL names: 63 bytes)
    store.save_scenario("many", {"patients": [{"patient_id": "P1"}], **types})
    with pytest.raises(QueryError) as typo:
        query_scenarios("SELECT * FROM patiens")
    text = str(typo.value)
    assert "did you mean 'patients'" in text, text
    assert len(text) < 2_000 and "and 282 more" in text, text


def test_a_missing_entity_type_names_some_types_and_counts_the_rest(store: ScenarioStore, tmp_path: Path) -> None:
    """`remove_entities` and `export_scenario(types=…)` of a type the scenario lacks listed
    every type it holds: 15-27 KB on the terminal for 300 types. Now 20, and the rest counted."""
    store.save_scenario("many", {f"type_{i:03d}_" + "x" * 40: [{"a": 1}] for i in range(300)})
    for call in (
        lambda: store.remove_entities("many", "nope", ["x"]),
        lambda: store.export_scenario("many", tmp_path / "out.json", types=["nope"]),
    ):
        with pytest.raises(InvalidInputError) as missing:
            call()
        text = str(missing.value)
        assert "has no entity type 'nope'" in text and text.endswith("and 280 more"), text
        assert len(text) < 2_000, text
