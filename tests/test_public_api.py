"""The public surface is exactly what the README documents."""

from __future__ import annotations

import ast
import inspect
import re
import types

import healthsim.state as state
from helpers.paths import HERE

README = (HERE.parent / "README.md").read_text(encoding="utf-8")


def documented_names() -> list[str]:
    section = README.split("## Public API", 1)[1].split("\n## ", 1)[0]
    names: list[str] = []
    for line in re.findall(r"^- (`.*?) —", section, flags=re.MULTILINE | re.DOTALL):
        names += re.findall(r"`([A-Za-z_]+)`", line)
    return names


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
    # The specification's parameters first, then what the history adds (with defaults).
    assert list(inspect.signature(state.load_scenario).parameters) == ["name", "version"]
    assert list(inspect.signature(state.list_scenarios).parameters) == ["tag", "search", "limit", "deleted", "offset"]
    assert inspect.signature(state.list_scenarios).parameters["limit"].default == 100
    assert list(inspect.signature(state.delete_scenario).parameters) == ["name", "purge"]
    for function, extra in (
        (state.load_scenario, "version"),
        (state.list_scenarios, "deleted"),
        (state.list_scenarios, "offset"),
        (state.delete_scenario, "purge"),
    ):
        assert inspect.signature(function).parameters[extra].default in (None, False)


def test_nothing_else_in_the_package_namespace_is_public() -> None:
    """httpx-style: every public name that ``healthsim.state`` defines is in ``__all__``
    (its submodules are implementation, not documented as API)."""
    ours = {
        name
        for name in dir(state)
        if not name.startswith("_")
        and not isinstance(getattr(state, name), types.ModuleType)
        and getattr(getattr(state, name), "__module__", "").startswith("healthsim")
    }
    assert ours == set(state.__all__)  # (typing names imported for hints are not ours)


def test_the_front_ends_use_only_the_public_surface() -> None:
    """The CLI and the MCP server import the library only through ``healthsim.state``
    (the migration command also through its public module ``healthsim.state.legacy``)."""
    allowed = {
        "healthsim.state",
        "healthsim._text",
        "healthsim.progress",
        "healthsim.summary_view",  # shows summarize_scenario's dict in the terminal
        "healthsim",
        "healthsim.mcp_server",
        "healthsim.migrate_cli",
        "healthsim.token_cli",
        "healthsim.mcp.http",  # healthsim mcp --http
        "healthsim.state.access",  # the caller's grant (issue 25): public modules
        "healthsim.state.tokens",
        "healthsim.cli_choices",  # the options' choices, kept equal to the library's (test_first_hour)
        "healthsim.cli_typos",  # the entity types a slip is checked against (likewise)
        "healthsim.cli_pipes",  # output cut by a closed pipe: exit 141, quietly
        "healthsim.state.exchange.fhir.report",  # what a FHIR export skipped (CLI warning, MCP answer)
    }  # front ends may call each other
    src = HERE.parent / "src" / "healthsim"
    mcp_parts = {f"healthsim.mcp.{p.stem}" for p in (src / "mcp").glob("*.py")} | {"healthsim.mcp"}
    # The MCP server's parts: the export folder names files as the exporter does, and knows an
    # earlier Parquet/CSV export by the formats' manifest (their public names).
    exchange = {"healthsim.state.exchange.export", "healthsim.state.exchange.formats"}
    # ... and a caller's grant over HTTP (issue 25): the scope a tool needs, the tags that limit a list.
    grants = {"healthsim.state.access", "healthsim.state.visibility"}
    # ... and each other (the tools use the budget, the folders and the kept listing).
    parts = [(f"mcp/{p.name}", exchange | mcp_parts | grants) for p in sorted((src / "mcp").glob("*.py"))]
    for module, extra in (
        ("cli.py", set()),
        ("mcp_server.py", mcp_parts | grants),
        ("migrate_cli.py", {"healthsim.state.legacy"}),
        ("token_cli.py", set()),
        *parts,
    ):
        tree = ast.parse((src / module).read_text(encoding="utf-8"))
        imported = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.level:  # from .state import …
                package = "healthsim.mcp" if module.startswith("mcp/") and node.level == 1 else "healthsim"
                imported.add((package + "." + (node.module or "")).rstrip("."))
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("healthsim"):
                imported.add(node.module)
        assert imported <= allowed | extra, (module, imported - allowed - extra)
