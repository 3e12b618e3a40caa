"""Property: whatever JSON-representable entities are saved come back exactly."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from healthsim.state import ScenarioStore
from helpers.examples import examples
from helpers.pg_server import PgServer
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


# --------------------------------------------------------------------------- both engines, the same bytes

# JSON text as a person or another tool writes it: numbers in every form (1.0, 1E2, -0, integers past
# 64 bits), escapes or raw characters, any key order; what PostgreSQL's jsonb would rewrite.
json_numbers = st.from_regex(r"-?(0|[1-9][0-9]{0,24})(\.[0-9]{1,6})?([eE][+-]?[0-9]{1,2})?", fullmatch=True)
json_strings = st.builds(
    lambda text, ascii_only: json.dumps(text, ensure_ascii=ascii_only),
    st.text(st.characters(exclude_categories=("Cs",)), max_size=8),
    st.booleans(),
)
json_texts = st.recursive(
    json_numbers | json_strings | st.sampled_from(["true", "false", "null"]),
    lambda children: (
        st.lists(children, max_size=3).map(lambda items: "[" + ",".join(items) + "]")
        | st.dictionaries(json_strings, children, max_size=3).map(
            lambda members: "{" + ", ".join(f"{k}:{v}" for k, v in members.items()) + "}"
        )
    ),
    max_leaves=12,
)
entity_texts = st.dictionaries(json_strings, json_texts, max_size=5).map(
    lambda members: "{" + ",".join(f"{k}:{v}" for k, v in members.items()) + "}"
)


@pytest.fixture(scope="module")
def both_engines(tmp_path_factory: pytest.TempPathFactory, pg_server: PgServer) -> Iterator[dict[str, ScenarioStore]]:
    url = pg_server.new_database()
    folder = tmp_path_factory.mktemp("healthsim-both")
    yield {"duckdb": ScenarioStore(folder / "both.duckdb"), "postgresql": ScenarioStore(url)}
    pg_server.drop_database(url.rsplit("/", 1)[1])


def _without_ids_and_times(text: bytes, loaded: dict[str, Any]) -> bytes:
    for value in (loaded["scenario_id"], loaded["created_at"], loaded["updated_at"]):
        text = text.replace(str(value).encode(), b"*")
    return re.sub(rb'"at":"[^"]*"', b'"at":"*"', text)


@pytest.mark.slow
@settings(max_examples=examples(20), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    entities=st.lists(entity_texts, max_size=4),
    name=st.text(st.characters(exclude_categories=("Cc", "Cs", "Zl", "Zp")), min_size=1, max_size=8).filter(str.strip),
    tags=st.lists(printable_tags, max_size=3),
)
def test_both_engines_keep_the_same_json_text(
    both_engines: dict[str, ScenarioStore],
    tmp_path_factory: pytest.TempPathFactory,
    entities: list[str],
    name: str,
    tags: list[str],
) -> None:
    folder = tmp_path_factory.mktemp("in")
    source = folder / "in.json"
    source.write_text('{"patients": [' + ",\n".join(entities) + "]}", encoding="utf-8")
    seen: dict[str, tuple[bytes, str]] = {}
    for engine, store in both_engines.items():
        store.import_scenario_from_json(source, name, True, tags=tags)
        loaded = store.load_scenario(name)
        exported = store.export_scenario_to_json(name, folder / f"{engine}.json")
        text = _without_ids_and_times(Path(exported).read_bytes(), loaded)
        seen[engine] = (text, repr({k: loaded[k] for k in ("name", "tags", "entities", "entities_by_type")}))
    assert seen["postgresql"] == seen["duckdb"]
