"""Property: whatever JSON-representable entities are saved come back exactly."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from healthsim.state import ScenarioStore
from healthsim.state.entities import KNOWN_TYPES

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(10**60), max_value=10**60)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
)
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)
entity = st.dictionaries(st.text(max_size=10), json_values, max_size=6)
entity_types = st.sampled_from(KNOWN_TYPES) | st.from_regex(r"[a-z][a-z0-9_]{0,12}", fullmatch=True).filter(
    lambda t: t not in KNOWN_TYPES and not t.endswith("s") or t in KNOWN_TYPES
)
# Control characters and lone surrogates in tags are refused (tested in test_validation).
printable_tags = st.text(alphabet=st.characters(exclude_categories=("Cc", "Cs", "Zl", "Zp")), max_size=8)
scenarios = st.dictionaries(entity_types, st.lists(entity, max_size=5), max_size=4)

_DB = Path(tempfile.mkdtemp(prefix="healthsim-props-")) / "props.duckdb"


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(entities=scenarios, description=st.none() | st.text(st.characters(exclude_categories=("Cs",)), max_size=30), tags=st.lists(printable_tags, max_size=4))
def test_save_load_roundtrip(entities: dict[str, list[dict[str, Any]]], description: str | None, tags: list[str]) -> None:
    store = ScenarioStore(_DB)
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
