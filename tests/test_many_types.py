"""Scenarios of many small types: a summary's and a check's cost per type.

Each type's statements are few, but DuckDB plans a statement in time that grows with its
expressions: a statement of a SELECT (or of four aggregates) per field took ~1 ms a
field to plan, 60-90 ms for a type of 40 fields of three entities (most of the time of
such a scenario). The cost is measured in CPU time of this process (DuckDB's threads
included), which another program on the machine barely changes.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from healthsim.state import ScenarioStore

TYPES, FIELDS, ENTITIES = 100, 40, 3


def many_small_types() -> dict[str, list[dict[str, Any]]]:
    """``TYPES`` types of ``ENTITIES`` entities of ``FIELDS`` fields: numbers, strings and dates."""

    def value(j: int, e: int) -> Any:
        return [j * e, f"v{j % 4}", f"2024-0{1 + e}-1{j % 10}"][j % 3]

    return {
        f"type_{t:03d}": [{"id": f"{t}-{e}", **{f"f{j}": value(j, e) for j in range(FIELDS)}} for e in range(ENTITIES)]
        for t in range(TYPES)
    }


def cpu(call: Any) -> tuple[Any, float]:
    start = time.process_time()
    answer = call()
    return answer, time.process_time() - start


@pytest.mark.slow
def test_a_summary_of_many_small_types_costs_little_per_type(db_path: Any) -> None:
    store = ScenarioStore(db_path)
    store.save_scenario("many", many_small_types())
    store.check_scenario("many")  # (kept: the summary's check is not computed again)
    summary, spent = cpu(lambda: store.summarize_scenario("many"))
    assert summary["types_omitted"] > 0
    # (before: ~65 ms a type, 6.5 s; now ~20 ms)
    assert spent < 0.035 * TYPES, spent
