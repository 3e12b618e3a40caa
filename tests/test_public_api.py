"""The public surface is exactly what the README documents."""

from __future__ import annotations

import inspect
import re

import healthsim.state as state
from conftest import HERE

README = (HERE.parent / "README.md").read_text(encoding="utf-8")


def documented_names() -> list[str]:
    section = README.split("## Public API", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"^- `([A-Za-z_]+)", section, flags=re.MULTILINE)


def test_all_matches_the_readme() -> None:
    assert sorted(state.__all__) == sorted(documented_names())


def test_every_exported_name_exists_and_is_documented() -> None:
    for name in state.__all__:
        obj = getattr(state, name)
        assert inspect.getdoc(obj), f"{name} has no docstring"


def test_module_functions_have_the_specified_signatures() -> None:
    assert str(inspect.signature(state.save_scenario)) == (
        "(name: 'str', entities: 'Mapping[str, Iterable[Any]]', description: 'str | None' = None, "
        "tags: 'Iterable[str] | None' = None, overwrite: 'bool' = False) -> 'str'"
    )
    assert list(inspect.signature(state.load_scenario).parameters) == ["name"]
    assert list(inspect.signature(state.list_scenarios).parameters) == ["tag", "search", "limit"]
    assert inspect.signature(state.list_scenarios).parameters["limit"].default == 100
    assert list(inspect.signature(state.delete_scenario).parameters) == ["name"]
