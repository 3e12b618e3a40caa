"""What a new user hits in the first hour (issue 26's walk-through): help texts, tables at
narrow widths, exit codes, typos and the MCP server's answers to wrong arguments.

Each test names what the user did, what happened before and what happens now.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
import typer
from typer.testing import CliRunner, Result

from healthsim.cli import app

runner = CliRunner()


def run(*args: str, env: dict[str, str] | None = None) -> Result:
    """``healthsim ARGS`` in this process; a traceback fails the test."""
    return runner.invoke(app, list(args), env=env, catch_exceptions=False, prog_name="healthsim")


def every_command() -> list[tuple[str, ...]]:
    """The command paths of every ``healthsim`` command, sub-commands of groups included."""
    paths: list[tuple[str, ...]] = []

    def walk(command: Any, path: tuple[str, ...]) -> None:
        if hasattr(command, "commands"):  # a group (Typer's own copy of Click's classes)
            for name, sub in command.commands.items():
                walk(sub, (*path, name))
        else:
            paths.append(path)

    walk(typer.main.get_command(app), ())
    return paths


# ---------------------------------------------------------------- help texts


@pytest.mark.parametrize("columns", ["80", "40"])
def test_help_examples_are_whole_lines_that_can_be_copied(columns: str) -> None:
    """At 80 columns `healthsim export --help` showed its example as
    `... -o /tmp/cohort-` and `parquet` on the next line: copied, it ran the wrong
    command. Every command's examples are now shown unwrapped, one per line."""
    for path in every_command():
        command = typer.main.get_command(app)
        for name in path:
            command = command.commands[name]  # type: ignore[attr-defined]
        examples = re.findall(r"^\s*(Example[^:]*: .*)$", command.help or "", re.M)
        assert examples, path
        shown = run(*path, "--help", env={"COLUMNS": columns}).stdout
        for example in examples:
            assert example.strip() in shown, (path, shown)


def test_short_help_in_the_command_list_is_not_cut_inside_a_parenthesis() -> None:
    """`healthsim --help` listed `push  Copy a scenario from this database to another store
    (e.g.`: Click ends the short help at the first word ending in a full stop."""
    shown = run("--help", env={"COLUMNS": "200"}).stdout
    listing = shown.split("Commands:")[1].split("Examples:")[0]
    for line in listing.strip().splitlines():
        text = line.split(None, 1)[1]
        assert not text.endswith("e.g."), line
        assert text.count("(") == text.count(")") or text.endswith("..."), line


def test_pull_help_says_where_its_name_and_overwrite_apply() -> None:
    """`healthsim pull --help` said `--as: Its name in the other store` and `--overwrite:
    Replace a scenario of that name there`, copied from push: a pull names and replaces
    the scenario in THIS database."""
    shown = " ".join(run("pull", "--help", env={"COLUMNS": "200"}).stdout.split())
    assert "in the other store (default" not in shown
    assert "name in this database" in shown
    assert "of that name here" in shown
    pushed = " ".join(run("push", "--help", env={"COLUMNS": "200"}).stdout.split())
    assert "name in the other store" in pushed and "of that name there" in pushed
