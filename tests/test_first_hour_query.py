"""A new user's first queries (a first-hour walk-through), on both engines."""

from __future__ import annotations

import pytest

from healthsim.state import QueryError, ScenarioStore, query_scenarios


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
