"""Everyday operations under hostile and unusual input (the hunt after issue 25).

Each test here showed a defect a user would hit before its fix: a traceback or an engine's raw
error instead of a clear one, data changed on a round trip, or the two engines answering
differently. The module runs on both engines (``BOTH_ENGINES`` in conftest).
"""

from __future__ import annotations

import pytest

from healthsim.state import InvalidInputError, ScenarioStore


@pytest.mark.parametrize("limit", [2**63, 10**20])
def test_a_huge_limit_lists_everything(store: ScenarioStore, limit: int) -> None:
    # A limit past the engines' 64-bit LIMIT was DuckDB's "Conversion Error" or PostgreSQL's
    # "bigint out of range", raised as "please report this as a bug".
    store.save_scenario("one", {"patients": [{"patient_id": "P1"}]})
    assert store.list_scenarios(limit=limit)["total_count"] == 1
    assert store.list_scenarios(limit=limit, deleted=True)["total_count"] == 0
    assert len(store.scenario_history("one", limit=limit)["versions"]) == 1


def test_a_limit_below_one_is_still_refused(store: ScenarioStore) -> None:
    with pytest.raises(InvalidInputError, match="limit"):
        store.list_scenarios(limit=0)
