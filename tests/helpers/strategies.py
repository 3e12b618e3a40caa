"""Hypothesis strategies shared by the property tests: JSON values, entities, entity types."""

from __future__ import annotations

from hypothesis import strategies as st

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
