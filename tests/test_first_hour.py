"""What a new user hits in the first hour (a first-hour walk-through): help texts, tables at
narrow widths, exit codes, typos and the MCP server's answers to wrong arguments.

Each test names what the user did, what happened before and what happens now.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

import pytest
import typer
from mcp import Client
from typer.testing import CliRunner, Result

from healthsim.cli import app
from healthsim.mcp_server import build_server
from healthsim.state import ScenarioStore
from helpers.mcp_wire import INITIALIZE
from helpers.paths import EXAMPLES

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


def test_help_examples_are_whole_lines_that_can_be_copied() -> None:
    """At 80 columns `healthsim export --help` showed its example as
    `... -o /tmp/cohort-` and `parquet` on the next line: copied, it ran the wrong
    command. Every command's examples are now shown unwrapped, one per line."""
    for path in every_command():
        command = typer.main.get_command(app)
        for name in path:
            command = command.commands[name]  # type: ignore[attr-defined]
        examples = re.findall(r"^\s*(Example[^:]*: .*)$", command.help or "", re.M)
        assert examples, path
        shown = run(*path, "--help", env={"COLUMNS": "80"}).stdout
        for example in examples:
            assert example.strip() in shown, (path, shown)
    narrow = run("export", "--help", env={"COLUMNS": "40"}).stdout
    assert "Example: healthsim export diabetes-cohort --format parquet -o /tmp/cohort-parquet" in narrow, narrow


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


# ---------------------------------------------------------------- MCP: arguments an assistant gets wrong


async def _answers(db: Path, calls: list[tuple[str, dict[str, Any]]]) -> list[tuple[bool, str]]:
    """Each call's (is_error, text) from the server over ``db``, through the official client."""
    answers = []
    async with Client(build_server(db), mode="legacy", cache=None) as client:
        for tool, arguments in calls:
            result = await client.session.call_tool(tool, arguments)
            answers.append((bool(result.is_error), result.content[0].text))  # type: ignore[union-attr]
    return answers


def test_mcp_unknown_and_wrong_arguments_are_named_with_the_tools_arguments(db_path: Path) -> None:
    """An assistant that guessed an argument's name got either pydantic's text ("1 validation
    error for remove_entitiesArguments entity_ids Field required [type=missing, ...] For
    further information visit https://errors.pydantic.dev/...") or, worse, no error at all:
    `list_scenarios(name=...)` listed everything and `export_scenario(path=...)` wrote to
    the default place while the assistant believed it had chosen the path. Now every
    unknown argument is refused, naming it, the closest real one and the tool's arguments,
    and a wrong value names the argument and what it should be. Nothing runs."""
    ScenarioStore(db_path).save_scenario("cohort", {"patients": [{"patient_id": "P1"}]})
    calls: list[tuple[str, dict[str, Any]]] = [
        ("remove_entities", {"name": "cohort", "entity_type": "patients", "ids": ["P1"]}),
        ("list_scenarios", {"name": "cohort"}),
        ("export_scenario", {"name": "cohort", "path": "cohort.json"}),
        ("load_scenario", {"name": "cohort", "limit": 1000}),
        ("save_scenario", {"name": "other", "entities": [{"patient_id": "P1"}]}),
        ("load_scenario", {"scenario": "cohort"}),
    ]
    answers = asyncio.run(_answers(db_path, calls))
    for is_error, text in answers:
        assert is_error, text
        assert "pydantic" not in text and "validation error for" not in text and "[type=" not in text, text
        assert text.startswith("Error executing tool "), text
    removal, listing, export, limit, save, load = (text for _, text in answers)
    assert "unknown argument 'ids'" in removal and "did you mean 'entity_ids'" in removal
    assert "entity_ids (required)" in removal  # the arguments it takes
    assert "unknown argument 'name'" in listing and "search" in listing
    assert "unknown argument 'path'" in export and "output_path" in export
    assert "'limit'" in limit and "100" in limit and "got 1000" in limit
    assert "'entities'" in save and "object" in save and "got an array" in save
    assert "unknown argument 'scenario'" in load and "'name' is required" in load
    assert ScenarioStore(db_path).load_scenario("cohort")["entity_count"] == 1  # nothing ran
    assert not ScenarioStore(db_path).list_scenarios(search="other")["scenarios"]


def test_mcp_an_unknown_tool_is_answered_with_the_closest_and_the_list(db_path: Path) -> None:
    """`call_tool("load", ...)` answered only "Unknown tool: load". An assistant that
    shortened a name now learns the one it meant and the tools there are."""
    [(is_error, text)] = asyncio.run(_answers(db_path, [("load", {"name": "cohort"})]))
    assert is_error
    assert text.startswith("Unknown tool: load") and "did you mean 'load_scenario'" in text, text
    assert "list_scenarios" in text and "diff_scenarios" in text, text


# ---------------------------------------------------------------- narrow terminals


def test_list_at_40_columns_keeps_names_readable(isolated_home: Path) -> None:
    """At 40 columns `healthsim list` cut every name to five characters (`synth…` twice,
    for `synthea-demo` and `synthea-demo-again`) to keep the tags and the time: the one
    column a user needs to tell scenarios apart was the first to go. Now the tags and then
    the time give way first, and names up to 20 characters stay whole."""
    store = ScenarioStore()
    for name in ("synthea-demo", "synthea-demo-again", "diabetes-cohort"):
        store.save_scenario(name, {"patients": [{"patient_id": "P1"}]}, tags=["synthea", "reviewed"])
    store.save_scenario("old-cohort-of-last-year", {"patients": [{"patient_id": "P1"}]}, tags=["old"])
    store.delete_scenario("old-cohort-of-last-year")
    for columns in ("40", "30", "80"):
        for deleted in ((), ("--deleted",)):
            shown = run("list", *deleted, env={"COLUMNS": columns})
            assert shown.exit_code == 0, shown.output
            for line in shown.stdout.splitlines():
                assert len(line.rstrip()) <= int(columns), (columns, line)
            # a longer name keeps at least 18 characters and an ellipsis
            names = (
                [r"old-cohort-of-last(…|-year)"]
                if deleted
                else ["synthea-demo", "synthea-demo-again", "diabetes-cohort"]
            )
            for name in names:
                assert re.search(rf"^{name}\s", shown.stdout, re.M), (columns, shown.stdout)


def test_check_table_at_40_columns_keeps_the_rule_and_field(isolated_home: Path) -> None:
    """At 40 columns `healthsim check` printed a 52-column header and cut each problem's
    line to `warning  5  claims.member_id   …`: the rule, what is wrong, was lost. Now a
    narrow terminal gets the rule on the problem's line and the field on the next."""
    store = ScenarioStore()
    store.save_scenario(
        "draft",
        {
            "patients": [{"patient_id": "P1", "birth_date": "unknown"}],
            "encounters": [{"encounter_id": "E1", "patient_id": "P404"}],
        },
    )
    for columns in ("40", "80"):
        shown = run("check", "draft", env={"COLUMNS": columns})
        assert shown.exit_code == 1, shown.output  # errors found
        lines = shown.stdout.splitlines()
        assert all(len(line) <= int(columns) for line in lines), (columns, shown.stdout)
        for rule, field in (("not_a_date", "patients.birth_date"), ("unresolved_reference", "encounters.patient_id")):
            assert re.search(rf"\b{rule}\b", shown.stdout), (columns, shown.stdout)
            assert re.search(rf"\b{re.escape(field)}\b", shown.stdout), (columns, shown.stdout)


# ---------------------------------------------------------------- typos


def test_a_mistyped_entity_type_is_pointed_out_on_save_and_add(isolated_home: Path, tmp_path: Path) -> None:
    """`healthsim save typo --from f.json` with `{"patiens": [...]}` said `saved 'typo':
    patiens 1` and nothing more: the patients were filed under a type of their own, which
    summaries, checks and FHIR exports then treat as unknown. Types are free, so the save
    still happens, but a type one letter away from a HealthSim type (or from one the
    scenario holds) gets a note on stderr naming the likely one and how to undo."""
    typo = tmp_path / "typo.json"
    typo.write_text('{"patiens": [{"patient_id": "P1"}], "encounter": [{"encounter_id": "E1"}]}')
    saved = run("save", "typo", "--from", str(typo))
    assert saved.exit_code == 0, saved.output
    assert "'patiens'" in saved.stderr and "did you mean 'patients'" in saved.stderr
    assert "encounter" not in saved.stderr  # a singular is a known spelling: stored as encounters
    assert "healthsim delete typo" in saved.stderr
    batch = tmp_path / "batch.json"
    batch.write_text('{"lab_result": [{"lab_result_id": "L1"}], "encounterz": [{"encounter_id": "E2"}]}')
    added = run("add", "typo", "--from", str(batch), "--json")
    assert added.exit_code == 0, added.output
    assert "did you mean 'encounters'" in added.stderr and "'patiens'" not in added.stderr  # only what this call wrote
    assert "healthsim restore typo" in added.stderr
    assert ScenarioStore().load_scenario("typo")["entities_by_type"] == {
        "patiens": 1,
        "encounters": 1,
        "lab_results": 1,
        "encounterz": 1,
    }
    fine = tmp_path / "fine.json"
    fine.write_text('{"care_gaps": [{"care_gap_id": "G1"}], "patients": [{"patient_id": "P2"}]}')
    assert run("add", "typo", "--from", str(fine)).stderr == ""  # a type of its own, not a near miss


# ---------------------------------------------------------------- exit codes


@pytest.mark.parametrize(
    ("args", "option", "choices"),
    [
        (["export", "cohort", "--format", "xml"], "--format", "json, ndjson, parquet, csv, fhir, fhir-bundle"),
        (["import", "cohort.json", "--format", "csv"], "--format", "json, fhir, synthea-csv"),
        (["query", "SELECT 1", "-o", "rows.csv", "--format", "xlsx"], "--format", "csv, parquet, ndjson"),
        (["save", "cohort", "--from", "cohort.json", "--check", "wrn"], "--check", "warn, refuse"),
        (["add", "cohort", "--from", "cohort.json", "--check", "strict"], "--check", "warn, refuse"),
        (["token", "create", "bot", "--scope", "super"], "--scope", "read, write, admin"),
    ],
)
def test_a_value_outside_an_options_choices_is_bad_usage(
    isolated_home: Path, args: list[str], option: str, choices: str
) -> None:
    """`healthsim export cohort --format xml` exited 1, the code for a failed operation,
    and `--check wrn` answered "check must be 'warn', 'refuse' or None (no check)", the
    library's words. A value outside an option's choices is bad usage: exit 2, naming the
    option and its choices, before anything is opened."""
    shown = run(*args)
    assert shown.exit_code == 2, shown.output
    assert option in shown.stderr and choices in shown.stderr, shown.stderr
    assert "None" not in shown.stderr
    assert not (isolated_home / ".healthsim").exists()  # nothing was opened or made


def test_the_terminals_choices_are_the_librarys() -> None:
    """The choices the terminal checks are those the library takes (kept in step)."""
    from healthsim.cli import CHOICES
    from healthsim.state.access import SCOPES
    from healthsim.state.checks import CHECK_MODES
    from healthsim.state.exchange.formats import FORMATS
    from healthsim.state.exchange.healthcare import IMPORT_FORMATS
    from healthsim.state.query import QUERY_FORMATS

    assert CHOICES["export"] == FORMATS
    assert CHOICES["import"] == IMPORT_FORMATS
    assert set(CHOICES["query"]) == set(QUERY_FORMATS.values())
    assert CHOICES["check"] == CHECK_MODES
    assert set(CHOICES["scope"]) == set(SCOPES)


def test_the_types_a_slip_is_checked_against_are_the_librarys() -> None:
    """The canonical types the terminal knows are the specification's, then the FHIR mapping's."""
    from healthsim.cli_typos import CANONICAL_TYPES
    from healthsim.state.entities import KNOWN_TYPES

    assert CANONICAL_TYPES[: len(KNOWN_TYPES)] == KNOWN_TYPES
    assert set(CANONICAL_TYPES[len(KNOWN_TYPES) :]) == {"immunizations", "allergies", "pharmacy_claims"}


# ---------------------------------------------------------------- imports of the wrong kind


def test_importing_a_healthcare_folder_or_ndjson_without_its_format_says_which_format(
    isolated_home: Path, tmp_path: Path
) -> None:
    """`healthsim import examples/synthea-csv` (the README's command without `--format`)
    answered "this is a folder, not a JSON file; give the path of a file in it", which
    sends the user looking for a JSON file inside; a FHIR NDJSON file answered "unexpected
    data after the end of the JSON object". Now each names the format to use."""
    synthea = run("import", str(EXAMPLES / "synthea-csv"))
    assert synthea.exit_code == 1 and "--format synthea-csv" in synthea.stderr, synthea.stderr
    fhir_folder = tmp_path / "fhir"
    fhir_folder.mkdir()
    bulk = '{"resourceType": "Patient", "id": "p1"}\n{"resourceType": "Patient", "id": "p2"}\n'
    (fhir_folder / "Patient.ndjson").write_text(bulk)
    folder = run("import", str(fhir_folder))
    assert folder.exit_code == 1 and "--format fhir" in folder.stderr, folder.stderr
    ndjson = run("import", str(fhir_folder / "Patient.ndjson"))
    assert ndjson.exit_code == 1 and "line 2" in ndjson.stderr and "--format fhir" in ndjson.stderr, ndjson.stderr
    empty = tmp_path / "empty"
    empty.mkdir()
    plain = run("import", str(empty))
    assert plain.exit_code == 1 and "folder" in plain.stderr and "--format" not in plain.stderr, plain.stderr
    assert ScenarioStore().list_scenarios()["total_count"] == 0


def test_diff_at_40_columns_is_readable(isolated_home: Path) -> None:
    """At 40 columns `healthsim diff` drew its six-column box table with every header and
    type name cut to two letters (`pa…`, `la…`, `-MR…`): nothing could be read. A narrow
    terminal now gets one line of counts per type and its examples below, each whole or
    cut at the terminal's edge."""
    store = ScenarioStore()
    store.save_scenario("cohort", {"patients": [{"patient_id": "MRN-10001"}, {"patient_id": "MRN-10002"}]})
    store.add_entities("cohort", {"patients": [{"patient_id": "MRN-10003"}], "lab_results": [{"lab_result_id": "L1"}]})
    store.remove_entities("cohort", "patients", ["MRN-10001"])
    for columns in ("40", "80"):
        shown = run("diff", "cohort@1", "cohort", env={"COLUMNS": columns})
        assert shown.exit_code == 0, shown.output
        assert all(len(line) <= int(columns) for line in shown.stdout.splitlines()), (columns, shown.stdout)
        for text in ("patients", "lab_results", "+MRN-10003", "-MRN-10001"):
            assert text in shown.stdout, (columns, shown.stdout)
    narrow = run("diff", "cohort@1", "cohort", env={"COLUMNS": "40"}).stdout
    assert "patients: +1 -1 ~0 =1" in narrow and "lab_results: +1 -0 ~0 =0" in narrow, narrow


def test_a_query_table_is_one_line_per_row_at_80_columns(isolated_home: Path) -> None:
    """`healthsim query "SELECT * FROM patients WHERE scenario = 'cohort'"` at 80 columns
    wrapped each entity's JSON at its spaces and cut every piece: three lines per row
    reading `{"patient_id":"MRN…`, `Oak`, `Street"],"city":"S…`. Now every row is one
    line, long values end in `…`, short columns stay whole and numbers are right-aligned."""
    patients = [
        {"patient_id": f"MRN-1000{i}", "address": {"line": ["100 Oak Street"], "city": "Springfield"}} for i in range(3)
    ]
    ScenarioStore().save_scenario("cohort", {"patients": patients})
    sql = "SELECT scenario, 12345 AS n, data FROM patients WHERE scenario = 'cohort'"
    shown = run("query", sql, env={"COLUMNS": "80"})
    assert shown.exit_code == 0, shown.output
    lines = shown.stdout.splitlines()
    assert all(len(line) <= 80 for line in lines), shown.stdout
    rows = [line for line in lines if line.startswith("cohort")]
    assert len(rows) == 3 and all("12,345" in row or "12345" in row for row in rows), shown.stdout
    assert all(row.rstrip().endswith("…") and '{"patient_id":"MRN-1000' in row for row in rows), shown.stdout
    assert "Oak" not in shown.stdout.replace(rows[0], "").replace(rows[1], "").replace(rows[2], ""), shown.stdout


def test_terminal_errors_name_the_commands_to_type(isolated_home: Path, tmp_path: Path) -> None:
    """At the terminal the library's hints named Python: "list the scenarios
    (list_scenarios, or healthsim list)", "list_scenarios(deleted=True) shows the trash",
    "scenario_history lists its versions", "save with check='warn'". Now they name the
    command and flag to type."""
    store = ScenarioStore()
    store.save_scenario("one", {"patients": [{"patient_id": "P1"}]})
    bad = tmp_path / "bad.json"
    bad.write_text('{"patients": [{"patient_id": "P2", "birth_date": "unknown"}]}')
    cases = [
        (["load", "nosuch"], "healthsim list shows the scenarios that exist"),
        (["restore", "nosuch"], "healthsim list --deleted shows the trash"),
        (["restore", "one"], "healthsim history lists its versions"),
        (["add", "one", "--from", str(bad), "--check", "refuse"], "or add with --check warn"),
        (["save", "two", "--from", str(bad), "--check", "refuse"], "or save with --check warn"),
    ]
    for args, words in cases:
        shown = run(*args)
        assert shown.exit_code == 1, shown.output
        assert words in shown.stderr, (args, shown.stderr)
        for python in ("list_scenarios", "scenario_history", "check='warn'", "deleted=True"):
            assert python not in shown.stderr, (args, shown.stderr)


def test_help_shows_what_to_type_for_repeated_and_choice_options() -> None:
    """`healthsim save --help` showed `--tag <list[str]>` (a Python type: it reads as if a
    list went into one argument) and `--check <str>` (no hint of warn or refuse). Repeated
    options now show one value's name and choice options their choices."""
    for path in every_command():
        shown = run(*path, "--help", env={"COLUMNS": "200"}).stdout
        options = shown.split("Options:")[1] if "Options:" in shown else ""
        assert "<list[" not in options, (path, options)
    assert "--tag <tag>" in run("save", "--help", env={"COLUMNS": "200"}).stdout
    assert "--check <warn|refuse>" in run("add", "--help", env={"COLUMNS": "200"}).stdout
    assert "--format <json|fhir|synthea-csv>" in run("import", "--help", env={"COLUMNS": "200"}).stdout
    assert "--scope <read|write|admin>" in run("token", "create", "--help", env={"COLUMNS": "200"}).stdout


def test_info_at_40_columns_shows_the_whole_database_path(tmp_path: Path) -> None:
    """At 40 columns `healthsim info` showed `database  /tmp/…/.healt…`: the one value a
    user runs it for was cut. Long values now fold onto the next lines, whole."""
    db = tmp_path / "a-rather-long-folder-name" / "my-team-scenarios.duckdb"
    ScenarioStore(db).save_scenario("one", {"patients": [{"patient_id": "P1"}]})
    shown = run("--db", str(db), "info", env={"COLUMNS": "40"})
    assert shown.exit_code == 0, shown.output
    assert "…" not in shown.stdout, shown.stdout
    assert all(len(line.rstrip()) <= 40 for line in shown.stdout.splitlines()), shown.stdout
    lines = shown.stdout.splitlines()
    path_lines = lines[: next(i for i, line in enumerate(lines) if line.startswith("engine"))]
    folded = "".join(line.removeprefix("database").strip() for line in path_lines)
    assert str(db) in folded, shown.stdout
    assert "healthsim_state_version" in shown.stdout


# ---------------------------------------------------------------- Ctrl-C


def _interrupt_mcp(on_terminal: bool) -> tuple[int | None, str]:
    """Start `healthsim mcp` (on a pseudo-terminal, or on pipes as a client does), wait until
    it serves, send SIGINT and give it 10 s: its exit code (None: still running) and output."""
    import os
    import pty
    import select
    import signal
    import subprocess
    import sys
    import time

    program = str(Path(sys.executable).parent / "healthsim")
    if on_terminal:
        main, side = pty.openpty()
        process = subprocess.Popen([program, "mcp"], stdin=side, stdout=side, stderr=side)
        os.close(side)
        reader = main
    else:
        process = subprocess.Popen(
            [program, "mcp"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        reader = process.stdout.fileno()  # type: ignore[union-attr]
        process.stdin.write(INITIALIZE + b"\n")  # type: ignore[union-attr]
        process.stdin.flush()  # type: ignore[union-attr]
    # Serving: on a terminal a moment after its note (the loop reads stdin by then), on
    # pipes once it has answered the client's first request.
    serving = b"Ctrl-C to stop." if on_terminal else b'"result"'
    output = b""
    deadline = time.monotonic() + 30
    seen = sent = None
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([reader], [], [], 0.1)
            if ready:
                try:
                    chunk = os.read(reader, 65536)
                except OSError:
                    chunk = b""
                output += chunk
            if seen is None and serving in output:
                seen = time.monotonic()
            if sent is None and seen is not None and time.monotonic() > seen + (3 if on_terminal else 0.5):
                sent = time.monotonic()
                process.send_signal(signal.SIGINT)
            if process.poll() is not None or (sent is not None and time.monotonic() > sent + 10):
                break
        return process.poll(), output.decode(errors="replace")
    finally:
        if process.poll() is None:
            process.kill()
        process.wait()
        if on_terminal:
            os.close(main)


@pytest.mark.slow  # real processes, a few seconds each
@pytest.mark.parametrize("on_terminal", [True, False], ids=["terminal", "pipes"])
def test_ctrl_c_stops_the_mcp_server_at_once_without_a_traceback(isolated_home: Path, on_terminal: bool) -> None:
    """`healthsim mcp` in a terminal says "Press Ctrl-D or Ctrl-C to stop", but Ctrl-C
    printed a KeyboardInterrupt traceback and the process stayed alive (its thread reading
    standard input cannot be interrupted) until another line was typed, or for good. Now it
    stops within a moment, exit code 130, with one line saying so."""
    code, output = _interrupt_mcp(on_terminal)
    assert code == 130, output
    assert "Traceback" not in output and "KeyboardInterrupt" not in output, output
    assert "stopped" in output, output


def test_history_at_40_columns_keeps_times_and_changes(isolated_home: Path) -> None:
    """At 40 columns `healthsim history` cut every time to `2026-12-07 1…`, its headers to
    `ver…` and `opera…`, and left out what changed and by whom. A narrow terminal now gets
    each version on a line (version, minute, operation, entity count) and its changes and
    author on the next."""
    store = ScenarioStore()
    store.save_scenario("cohort", {"patients": [{"patient_id": "P1"}, {"patient_id": "P2"}]})
    store.remove_entities("cohort", "patients", ["P1"])
    shown = run("history", "cohort", env={"COLUMNS": "40"})
    assert shown.exit_code == 0, shown.output
    lines = shown.stdout.splitlines()
    assert all(len(line) <= 40 for line in lines), shown.stdout
    assert len(re.findall(r"\b\d{4}-\d{2}-\d{2} \d{2}:\d{2}\b", shown.stdout)) == 2, shown.stdout
    assert re.search(r"^\s*2  \S+ \S+  remove\b.*\n\s+1 entities; -1 patients", shown.stdout, re.M), shown.stdout
    assert re.search(r"^\s*1  \S+ \S+  save\b.*\n\s+2 entities; \+2 patients", shown.stdout, re.M), shown.stdout


def test_load_at_40_columns_shows_short_samples_and_the_whole_id(isolated_home: Path) -> None:
    """At 40 columns `healthsim load` wrapped each type's 100-character sample over ten
    lines of a 12-column cell and cut the scenario_id to `58fc8eb3-4d19-4ead-bfdd-9e…`.
    Now a sample takes at most three lines and long header values fold, whole. Since the
    terminal work (tests/test_terminal.py) a value that does not fit goes under its label,
    whole, and each type is one line of a table (no value split mid-word)."""
    store = ScenarioStore()
    entity = {"patient_id": "MRN-10001", "name": {"given": ["Ana"], "family": "Lima"}, "birth_date": "1948-01-10"}
    sid = store.save_scenario("cohort", {"patients": [entity], "prescriptions": [{"prescription_number": "RX-1"}]})
    shown = run("load", "cohort", env={"COLUMNS": "40"})
    assert shown.exit_code == 0, shown.output
    lines = shown.stdout.splitlines()
    assert all(len(line) <= 40 for line in lines), shown.stdout
    assert "…" not in "".join(lines[:9]), shown.stdout  # the header: nothing cut
    assert sid in [line.strip() for line in lines[:4]], shown.stdout
    body = lines[next(i for i, line in enumerate(lines) if "entity type" in line) + 2 :]
    assert [line.split()[:2] for line in body] == [["patients", "1"], ["prescriptions", "1"]], shown.stdout


def test_token_list_at_40_columns_keeps_the_names(isolated_home: Path) -> None:
    """At 40 columns `healthsim token list` cut the name column to nothing (`  s…  2026-1…`):
    the one thing to revoke a token by was gone. A narrow terminal now gets each token's
    name, scope and tags on a line and its dates on the next."""
    for name in ("claude-alice", "ci-bot"):
        assert run("token", "create", name, "--scope", "read").exit_code == 0
    assert run("token", "revoke", "ci-bot").exit_code == 0
    shown = run("token", "list", env={"COLUMNS": "40"})
    assert shown.exit_code == 0, shown.output
    assert all(len(line) <= 40 for line in shown.stdout.splitlines()), shown.stdout
    assert re.search(r"^claude-alice\s+read\b", shown.stdout, re.M), shown.stdout
    assert re.search(r"^ci-bot\s+read\b.*\n\s+.*revoked \d{4}-\d{2}-\d{2}", shown.stdout, re.M), shown.stdout
