"""The ``healthsim`` command.

Most tests run the Typer app in this process with ``CliRunner`` (stdin empty and not a
terminal, stdout and stderr captured apart, environment overrides applied around the
call). One smoke test runs the installed program as a real subprocess, and the tests whose
behaviour needs a real process (a terminal on stderr) stay subprocess tests too.
"""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rich.cells import cell_len
from rich.console import Console
from typer.testing import CliRunner, Result

from healthsim.cli import app
from healthsim.state import ScenarioStore
from healthsim.summary_view import fitted_table, render_summary
from helpers import legacy_files
from helpers.database import hold_database
from helpers.examples import examples
from helpers.paths import EXAMPLES

HEALTHSIM = Path(sys.executable).parent / "healthsim"
EXAMPLE = EXAMPLES / "diabetes-cohort.json"
COMMANDS = [
    "save",
    "load",
    "list",
    "delete",
    "export",
    "import",
    "add",
    "remove",
    "rename",
    "tag",
    "copy",
    "merge",
    "migrate",
    "query",
    "summary",
    "report",
    "info",
    "mcp",
]

runner = CliRunner()


def run(*args: str, stdin: str | None = None, env: dict[str, str] | None = None) -> Result:
    """``healthsim ARGS`` in this process. Exceptions are not caught: a traceback fails the test.

    ``stdin`` is empty unless given (and never a terminal); ``env`` is set around the call.
    """
    return runner.invoke(app, list(args), input=stdin, env=env, catch_exceptions=False, prog_name="healthsim")


def ok(*args: str, **kwargs: object) -> Result:
    result = run(*args, **kwargs)  # type: ignore[arg-type]
    assert result.exit_code == 0, result.stdout + result.stderr
    assert result.stderr == ""  # no progress bars or noise when not a terminal
    return result


def assert_clean_error(result: Result, code: int, text: str) -> None:
    assert result.exit_code == code, result.stdout + result.stderr
    assert text in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def run_installed(*args: str) -> subprocess.CompletedProcess[str]:
    """The installed ``healthsim`` as a real subprocess (stdin closed, environment inherited)."""
    return subprocess.run(
        [str(HEALTHSIM), *args],
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )


def installed_ok(*args: str) -> subprocess.CompletedProcess[str]:
    result = run_installed(*args)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stderr == ""  # no progress bars, logging or warnings when not a terminal
    return result


@pytest.mark.slow
def test_installed_program_end_to_end_smoke(isolated_home: Path, db_path: Path, tmp_path: Path) -> None:
    """The one real-subprocess smoke test: the entry point on PATH, a real database file."""
    assert HEALTHSIM.exists()
    assert installed_ok("list").stdout.startswith("No scenarios yet. Save one: healthsim save NAME")
    saved = json.loads(
        installed_ok("save", "diabetes-cohort", "--from", str(EXAMPLE), "--tag", "diabetes", "--json").stdout
    )
    assert saved["name"] == "diabetes-cohort" and saved["entity_count"] == 30
    assert db_path.is_file()  # the file named by HEALTHSIM_DB (inherited environment)
    listing = installed_ok("list").stdout
    assert "diabetes-cohort" in listing and "1 of 1 scenario(s)" in listing
    # `python -m healthsim` is the same program (a venv whose scripts are not on the PATH).
    as_module = subprocess.run([sys.executable, "-m", "healthsim", "list"], capture_output=True, text=True, timeout=60)
    assert (as_module.returncode, as_module.stdout, as_module.stderr) == (0, listing, "")
    usage = subprocess.run([sys.executable, "-m", "healthsim", "nope"], capture_output=True, text=True, timeout=60)
    assert usage.returncode == 2 and "Usage: healthsim " in usage.stderr, usage.stderr
    whole = json.loads(installed_ok("load", "diabetes-cohort", "--json").stdout)
    assert whole["entities"] == json.loads(EXAMPLE.read_text())
    rows = json.loads(installed_ok("query", "SELECT count(*) AS n FROM patients", "--json").stdout)
    assert rows["rows"] == [[5]]
    exported = Path(
        json.loads(installed_ok("export", "diabetes-cohort", "-o", f"{tmp_path}/share/", "--json").stdout)["path"]
    )
    assert exported == tmp_path / "share" / "diabetes-cohort.json" and exported.exists()
    imported = json.loads(installed_ok("import", str(exported), "--name", "copy", "--json").stdout)
    assert imported["name"] == "copy" and imported["entity_count"] == 30
    assert "deleted 'copy'" in installed_ok("delete", "copy", "--yes").stdout
    assert [s["name"] for s in ScenarioStore(db_path).list_scenarios()["scenarios"]] == ["diabetes-cohort"]
    refused = run_installed("load", "ghost")  # an error from the real process: one line, exit 1
    assert refused.returncode == 1 and refused.stdout == "", refused.stdout + refused.stderr
    assert refused.stderr.startswith("error: scenario 'ghost' not found") and refused.stderr.count("\n") == 1, (
        refused.stderr
    )


def test_an_empty_list_says_why_and_what_to_do(isolated_home: Path) -> None:
    """A new user's first `healthsim list` gets a next step, not an empty table."""
    assert ok("list").stdout == (
        "No scenarios yet. Save one: healthsim save NAME --from FILE.json; "
        "bring forward older HealthSim files: healthsim migrate\n"
    )
    assert ok("list", "--deleted").stdout == "The trash is empty: no deleted scenario to restore.\n"
    ok("save", "c", "--from", str(EXAMPLE), "--tag", "diabetes")
    assert ok("list", "--tag", "asthma").stdout == "No scenario has the tag 'asthma'. Without filters: healthsim list\n"
    both = ok("list", "--tag", "diabetes", "--search", "renal").stdout
    assert both.startswith("No scenario has the tag 'diabetes' and 'renal' in its name or description."), both
    assert "1 of 1 scenario(s)" in ok("list", "--tag", "DIABETES").stdout
    assert ok("list", "--deleted", "--search", "c").stdout == (
        "No scenario in the trash has 'c' in its name or description. Without filters: healthsim list --deleted\n"
    )
    assert json.loads(ok("list", "--tag", "asthma", "--json").stdout)["scenarios"] == []


def test_list_pages_with_offset(isolated_home: Path) -> None:
    for i in range(5):
        ok("save", f"s{i}", "--from", str(EXAMPLE))
    assert ok("list", "--limit", "2").stdout.endswith("2 of 5 scenario(s) (3 more: --offset 2)\n")
    middle = ok("list", "--limit", "2", "--offset", "2").stdout
    assert (
        middle.endswith("3-4 of 5 scenario(s) (1 more: --offset 4)\n") and "s2" in middle and "s1" in middle
    )  # newest first
    assert ok("list", "--limit", "2", "--offset", "4").stdout.endswith("5-5 of 5 scenario(s)\n")
    assert ok("list", "--offset", "7").stdout == "No scenario past --offset 7: 5 matches.\n"
    assert run("list", "--offset", "-1").exit_code == 2


def test_every_command_has_help_with_an_example() -> None:
    top = ok("--help").stdout
    assert "Examples:" in top and "healthsim save diabetes-cohort" in top
    for command in COMMANDS:
        text = ok(command, "--help").stdout
        assert "Example" in text, command
    assert ok("--version").stdout.strip().startswith("healthsim ")


def test_save_list_load_query_export_import_delete(isolated_home: Path, tmp_path: Path) -> None:
    saved = json.loads(
        ok(
            "save",
            "diabetes-cohort",
            "--from",
            str(EXAMPLE),
            "--tag",
            "diabetes",
            "--tag",
            "example",
            "--description",
            "Example cohort",
            "--json",
        ).stdout
    )
    assert saved["name"] == "diabetes-cohort" and saved["entity_count"] == 30
    assert saved["entities_by_type"]["prescriptions"] == 5

    listing = ok("list").stdout
    assert "diabetes-cohort" in listing and "1 of 1 scenario(s)" in listing
    # `python -m healthsim` is the same program (a venv whose scripts are not on the PATH).
    as_module = subprocess.run([sys.executable, "-m", "healthsim", "list"], capture_output=True, text=True, timeout=60)
    assert (as_module.returncode, as_module.stdout, as_module.stderr) == (0, listing, "")
    usage = subprocess.run([sys.executable, "-m", "healthsim", "nope"], capture_output=True, text=True, timeout=60)
    assert usage.returncode == 2 and "Usage: healthsim " in usage.stderr, usage.stderr
    listed = json.loads(ok("list", "--tag", "DIABETES", "--json").stdout)
    assert listed["total_count"] == 1 and listed["scenarios"][0]["tags"] == ["diabetes", "example"]
    assert json.loads(ok("list", "--search", "nothing-like-this", "--json").stdout)["total_count"] == 0

    summary = ok("load", "diabetes-cohort").stdout
    assert "Example cohort" in summary and "prescriptions" in summary and "MRN-10001" in summary
    whole = json.loads(ok("load", "diabetes-cohort", "--json").stdout)
    assert whole["entities"] == json.loads(EXAMPLE.read_text())
    page = ok("load", "diabetes-cohort", "--type", "patients", "--limit", "2", "--offset", "1").stdout.splitlines()
    assert [json.loads(line)["patient_id"] for line in page] == ["MRN-10002", "MRN-10003"]
    assert json.loads(ok("load", saved["scenario_id"], "--type", "claims", "--limit", "1", "--json").stdout)[0][
        "claim_id"
    ]

    table = ok("query", "SELECT data->>'gender' AS gender, count(*) AS n FROM patients GROUP BY ALL ORDER BY 1").stdout
    assert "female" in table and "2 of 2 row(s)" in table
    rows = json.loads(ok("query", "SELECT * FROM range(50)", "--limit", "5", "--json").stdout)
    assert rows["row_count"] == 5 and rows["total_rows"] == 50 and rows["truncated"]

    exported = Path(json.loads(ok("export", "diabetes-cohort", "-o", f"{tmp_path}/share/", "--json").stdout)["path"])
    assert exported == tmp_path / "share" / "diabetes-cohort.json" and exported.exists()
    default = Path(ok("export", "diabetes-cohort").stdout.strip())
    assert default == isolated_home / "Downloads" / "diabetes-cohort.json"

    imported = json.loads(ok("import", str(exported), "--name", "copy", "--json").stdout)
    assert imported["name"] == "copy" and imported["entity_count"] == 30
    legacy_files.workspace(tmp_path / "ws.json")
    assert "imported 'legacy-workspace'" in ok("import", str(tmp_path / "ws.json")).stdout

    info = json.loads(ok("info", "--json").stdout)
    assert info["scenarios"] == 3 and info["entities"] == 66 and info["schema_version"] == 6

    assert "deleted 'copy'" in ok("delete", "copy", "--yes").stdout
    assert json.loads(ok("delete", "legacy-workspace", "--yes", "--json").stdout)["deleted"] is True
    assert json.loads(ok("list", "--json").stdout)["total_count"] == 1


def test_delete_asks_first(isolated_home: Path) -> None:
    ok("save", "keep-me", "--from", str(EXAMPLE))
    refused = run("delete", "keep-me")  # stdin is not a terminal: no confirmation possible
    assert_clean_error(refused, 1, "not deleted")
    assert json.loads(ok("list", "--json").stdout)["total_count"] == 1


def test_errors_are_one_line_with_exit_codes(isolated_home: Path, tmp_path: Path) -> None:
    assert_clean_error(run("load", "ghost"), 1, "error: scenario 'ghost' not found")
    assert_clean_error(run("delete", "ghost", "--yes"), 1, "not found")
    ok("save", "twice", "--from", str(EXAMPLE))
    # The hint names the flag to type (the library's says overwrite=True, new_name).
    assert_clean_error(
        run("save", "twice", "--from", str(EXAMPLE)), 1, "already exists; choose another name or pass --overwrite"
    )
    ok("save", "twice", "--from", str(EXAMPLE), "--overwrite")
    trashed = json.loads(ok("save", "gone", "--from", str(EXAMPLE), "--json").stdout)["scenario_id"]
    ok("delete", "gone", "--yes")
    ok("save", "gone", "--from", str(EXAMPLE))  # the name is taken again
    assert_clean_error(run("restore", trashed), 1, "pass --as NAME to restore it under another name")
    ok("restore", trashed, "--as", "gone-again")
    bad = tmp_path / "bad.json"
    bad.write_text('{"entities": {"patients": [{"v": NaN}]}}')
    assert_clean_error(run("import", str(bad)), 1, "at $.entities.patients[0] (line 1 column 28)")
    assert_clean_error(run("import", str(tmp_path / "missing.json")), 1, "no such file")
    assert_clean_error(run("query", "DROP TABLE scenarios"), 1, "only read-only SELECT")
    assert_clean_error(run("load", "twice", "--type", "aliens"), 1, "has no entity type 'aliens'")
    for usage in (
        ["list", "--limit", "0"],
        ["nonsense"],
        ["save", "x"],
        ["query"],
        ["migrate", "--status", "--dry-run"],
    ):
        result = run(*usage)
        assert result.exit_code == 2, (usage, result.stderr)
        assert "Traceback" not in result.stderr


def test_db_option_and_environment(tmp_path: Path, isolated_home: Path) -> None:
    other = tmp_path / "other.duckdb"
    ok("--db", str(other), "save", "elsewhere", "--from", str(EXAMPLE))
    assert json.loads(ok("--db", str(other), "list", "--json").stdout)["total_count"] == 1
    assert json.loads(ok("list", "--json").stdout)["total_count"] == 0  # the default database
    assert json.loads(ok("list", "--json", env={"HEALTHSIM_DB": str(other)}).stdout)["total_count"] == 1


def test_locked_database_is_a_clear_error(isolated_home: Path, db_path: Path) -> None:
    # The lock is held by another process (hold_database); the command runs here.
    ok("save", "x", "--from", str(EXAMPLE))
    holder = hold_database(db_path, 60)
    try:
        result = run("list", env={"HEALTHSIM_LOCK_TIMEOUT": "0.5"})
    finally:
        holder.kill()
        holder.wait()
    assert_clean_error(result, 1, "is locked by another process")


def test_migrate_command(isolated_home: Path) -> None:
    (isolated_home / ".healthsim" / "scenarios").mkdir(parents=True)
    legacy_files.legacy_export(isolated_home / ".healthsim" / "scenarios" / "old.json")
    status = json.loads(ok("migrate", "--status", "--json").stdout)
    assert status["found"] == 1 and status["migrated"] == 0
    assert "would migrate" in ok("migrate", "--dry-run").stdout
    assert_clean_error(run("migrate"), 1, "")  # not confirmed: stdin is empty
    report = json.loads(ok("migrate", "--yes", "--json").stdout)
    assert report["migrated"] == 1
    assert "legacy-export-cohort" in ok("list").stdout


def test_progress_bars_on_a_terminal_only(isolated_home: Path, tmp_path: Path) -> None:
    # A real process: stderr must be a terminal (a pty) for the bar to be drawn.
    import pty

    ok("save", "x", "--from", str(EXAMPLE))
    master, slave = pty.openpty()
    try:
        result = subprocess.run(
            [str(HEALTHSIM), "export", "x", "-o", str(tmp_path / "x.json")],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=slave,
            timeout=60,
            env={**os.environ},
        )
        os.close(slave)
        seen = b""
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # the terminal closed
                break
            if not chunk:
                break
            seen += chunk
    finally:
        os.close(master)
    assert result.returncode == 0
    assert b"exporting" in seen  # the bar went to the terminal (stderr) ...
    assert result.stdout.decode().strip() == str(tmp_path / "x.json")  # ... and stdout stays clean


def assert_one_line(result: Result, text: str) -> str:
    """Exit 1, nothing on stdout, and one line on stderr holding ``text``."""
    assert_clean_error(result, 1, text)
    assert result.stdout == "" and result.stderr.count("\n") == 1 and result.stderr.startswith("error: "), result.stderr
    assert "unexpected" not in result.stderr
    return result.stderr


def test_export_under_a_regular_file_is_one_clean_line(isolated_home: Path, tmp_path: Path) -> None:
    ok("save", "x", "--from", str(EXAMPLE))
    blocker = tmp_path / "file.txt"
    blocker.write_text("not a folder")
    for output in (f"{blocker}/out.json", f"{blocker}/"):
        line = assert_one_line(run("export", "x", "-o", output), f"'{blocker}' is a file, not a folder")
        assert "choose another output path" in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file.txt", "home"]


def test_export_to_dash_writes_standard_output(isolated_home: Path, tmp_path: Path, monkeypatch: Any) -> None:
    """``-o -`` is standard output, as for Unix tools (export and report made a file named
    "-"): an export (json, ndjson), the report's page, a query's rows (with ``--format``); a
    folder format or ``--json`` beside it is a usage error (exit 2)."""
    monkeypatch.chdir(tmp_path)
    ok("save", "cohort", "--from", str(EXAMPLE))
    exported = json.loads(ok("export", "cohort", "-o", "-").stdout)
    assert exported["name"] == "cohort" and exported["entities"] == json.loads(EXAMPLE.read_text())
    lines = ok("export", "cohort", "-o", "-", "-f", "ndjson", "--type", "patients").stdout.splitlines()
    patients = json.loads(EXAMPLE.read_text())["patients"]
    assert [json.loads(line)["data"] for line in lines] == patients
    assert_clean_error(
        run("export", "cohort", "-o", "-", "-f", "parquet"), 2, "json or ndjson; parquet writes a folder"
    )
    assert_clean_error(run("export", "cohort", "-o", "-", "--json"), 2, "with -o - the output itself is printed")
    assert ok("report", "cohort", "-o", "-").stdout.startswith("<!DOCTYPE html>")
    rows = ok("query", "SELECT count(*) AS n FROM patients", "-o", "-", "--format", "ndjson").stdout
    assert [json.loads(line) for line in rows.splitlines()] == [{"n": len(patients)}]
    assert_clean_error(run("query", "SELECT 1", "-o", "-"), 2, "needs --format csv, parquet or ndjson")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["home"]  # (no file named "-")


def test_report_or_export_onto_the_database_is_one_clean_line_and_keeps_it(isolated_home: Path, db_path: Path) -> None:
    # Was data loss: the page or the export was renamed over the database file.
    ok("save", "cohort", "--from", str(EXAMPLE))
    for command in (["report", "cohort"], ["export", "cohort"], ["export", "cohort", "-f", "ndjson"]):
        line = assert_one_line(run(*command, "-o", str(db_path)), f"cannot export to '{db_path}': it is ")
        assert "database" in line and "choose another file; nothing was written" in line, line
    assert json.loads(ok("list", "--json").stdout)["scenarios"][0]["entity_count"] == 30
    assert json.loads(ok("load", "cohort", "--json").stdout)["entities"] == json.loads(EXAMPLE.read_text())


def test_unreachable_team_store_is_named_without_the_password(
    isolated_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A URL was taken as a relative path: ./postgresql:/user:secret@host/... with the password.
    monkeypatch.chdir(tmp_path)  # relative paths would land here
    url = "postgresql://user:secret@127.0.0.1:1/healthsim"
    for args, env in (
        (["--db", url, "list"], None),
        (["--db", url, "save", "x", "--from", str(EXAMPLE)], None),
        (["list"], {"HEALTHSIM_DB": url}),
        (["info"], {"HEALTHSIM_DB": url}),
    ):
        line = assert_one_line(run(*args, env=env), "cannot use PostgreSQL database 'healthsim' on 127.0.0.1:1")
        assert "secret" not in line and "no server is listening there" in line, line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["home"]  # nothing created


def test_building_and_editing_a_scenario(isolated_home: Path, tmp_path: Path) -> None:
    batch = tmp_path / "batch.json"
    batch.write_text(json.dumps({"patients": [{"patient_id": "A", "v": 2}, {"patient_id": "B"}]}, indent=2))
    assert_clean_error(run("add", "cohort", "--from", str(batch)), 1, "scenario 'cohort' not found")
    created = json.loads(ok("add", "cohort", "--from", str(batch), "--create", "--json").stdout)
    assert created["added"] == {"patients": 2} and created["entity_count"] == 2
    again = json.loads(ok("add", "cohort", "--from", str(batch), "--json").stdout)
    assert again["updated"] == {} and again["added"] == {} and again["version"] == 1  # the same: no change
    batch.write_text(json.dumps({"patients": [{"patient_id": "A", "v": 3}, {"patient_id": "B"}]}))
    again = json.loads(ok("add", "cohort", "--from", str(batch), "--json").stdout)
    assert again["updated"] == {"patients": 1} and again["added"] == {}
    assert "added patients 2" in ok("add", "cohort", "--from", str(batch), "--no-upsert").stdout
    removed = json.loads(ok("remove", "cohort", "--type", "patients", "A", "nobody", "--json").stdout)
    assert removed["removed"] == {"patients": 2} and removed["not_found"] == ["nobody"]
    assert_clean_error(run("remove", "cohort", "--type", "patients", "nobody"), 1, "not found: nobody")
    assert_clean_error(run("remove", "cohort", "--type", "claims", "A"), 1, "has no entity type 'claims'")
    assert json.loads(ok("rename", "cohort", "cohort-v1", "--json").stdout)["name"] == "cohort-v1"
    assert json.loads(ok("tag", "cohort-v1", "--add", "reviewed", "--add", "draft", "--json").stdout)["tags"] == [
        "reviewed",
        "draft",
    ]
    assert json.loads(ok("tag", "cohort-v1", "--remove", "DRAFT", "--json").stdout)["tags"] == ["reviewed"]
    assert "tagged 'cohort-v1': tags reviewed" in ok("tag", "cohort-v1", "--description", "first cohort").stdout
    assert json.loads(ok("copy", "cohort-v1", "cohort-copy", "--json").stdout)["entity_count"] == 2
    assert_clean_error(run("copy", "cohort-v1", "cohort-copy"), 1, "'cohort-copy' already exists")
    # cohort-v1 holds B twice (the --no-upsert add); merging with --upsert keeps one B.
    assert json.loads(ok("merge", "cohort-v1", "cohort-copy", "--into", "both", "--json").stdout)["entity_count"] == 4
    merged = json.loads(ok("merge", "cohort-v1", "cohort-copy", "--into", "one", "--upsert", "--json").stdout)
    assert merged["entities_by_type"] == {"patients": 1}
    assert ScenarioStore().load_scenario("cohort-v1")["description"] == "first cohort"
    assert_clean_error(run("merge", "cohort-v1", "missing", "--into", "x"), 1, "scenario 'missing' not found")
    assert_clean_error(run("rename", "cohort-v1"), 2, "Missing argument")


def test_history_restore_diff_and_the_trash(isolated_home: Path, tmp_path: Path) -> None:
    first = tmp_path / "first.json"
    first.write_text(json.dumps({"patients": [{"patient_id": "A", "v": 1}, {"patient_id": "B"}]}))
    second = tmp_path / "second.json"
    second.write_text(json.dumps({"patients": [{"patient_id": "A", "v": 2}]}))
    ok("save", "c", "--from", str(first))
    ok("add", "c", "--from", str(second))
    history = json.loads(ok("history", "c", "--json").stdout)
    assert [(v["version"], v["operation"]) for v in history["versions"]] == [(2, "add"), (1, "save")]
    assert "add" in ok("history", "c").stdout
    old = json.loads(ok("load", "c", "--version", "1", "--json").stdout)
    assert old["version"] == 1 and old["entities"]["patients"][0] == {"patient_id": "A", "v": 1}
    assert (
        ok("load", "c", "--version", "1", "--type", "patients", "--limit", "1").stdout.strip()
        == '{"patient_id": "A", "v": 1}'
    )
    diff = json.loads(ok("diff", "c@1", "c", "--json").stdout)
    assert (
        diff["types"]["patients"]["changed"] == 1 and diff["types"]["patients"]["examples"]["changed"][0]["id"] == "A"
    )
    assert "~A (v)" in ok("diff", "c@1", "c").stdout
    assert "now version 3" in ok("restore", "c", "--version", "1").stdout
    assert "deleted 'c'" in ok("delete", "c", "--yes").stdout
    trash = json.loads(ok("list", "--deleted", "--json").stdout)
    assert [s["name"] for s in trash["scenarios"]] == ["c"]
    assert json.loads(ok("restore", "c", "--json").stdout)["version"] == 5
    assert_clean_error(run("load", "c", "--version", "9"), 1, "version 9 of scenario 'c' does not exist")
    assert_clean_error(run("history"), 2, "name a scenario")
    assert "purged 'c'" in ok("delete", "c", "--purge", "--yes").stdout
    assert json.loads(ok("list", "--deleted", "--json").stdout)["total_count"] == 0
    assert "removed 0 version(s)" in ok("history", "--purge").stdout


@pytest.mark.slow  # (about a second or more of the quick run's edit loop; the whole suite runs it)
def test_summary_shows_fields_and_facts_and_report_writes_a_page(isolated_home: Path, tmp_path: Path) -> None:
    ok("save", "cohort", "--from", str(EXAMPLE))
    shown = ok("summary", "cohort").stdout
    for text in ("patients — 5", "birth_date", "age on", "top code", "per month of period.start", "total_charge"):
        assert text in shown, text
    assert "━" in shown or "█" in shown or "▌" in shown  # the inline bars
    wide = {"things": [{f"field_{f:02d}_{'y' * 40}": f"value {f} " * 20 for f in range(70)} for _ in range(3)]}
    ScenarioStore(isolated_home / ".healthsim" / "healthsim.duckdb").save_scenario("wide", wide)
    # A terminal shows every field; its width fixed, as a parallel worker's output is no terminal.
    assert f"field_69_{'y' * 40}" in ok("summary", "wide", env={"COLUMNS": "160"}).stdout
    assert json.loads(ok("summary", "wide", "--json").stdout)["types"]["things"]["fields_omitted"] > 0
    summary = json.loads(ok("summary", "cohort", "--json").stdout)
    assert summary == ScenarioStore(isolated_home / ".healthsim" / "healthsim.duckdb").summarize_scenario("cohort")
    assert summary["types"]["diagnoses"]["top_codes"]["field"] == "code"
    assert_clean_error(run("summary", "ghost"), 1, "error: scenario 'ghost' not found")

    written = json.loads(ok("report", "cohort", "-o", str(tmp_path / "out") + "/", "--json").stdout)
    page = Path(written["path"])
    assert page == tmp_path / "out" / "cohort-report.html"
    html = page.read_text(encoding="utf-8")
    assert html.startswith("<!DOCTYPE html>") and "cohort" in html and "<script src" not in html
    default = Path(ok("report", "cohort").stdout.strip())
    assert default == isolated_home / "Downloads" / "cohort-report.html" and default.is_file()


def test_summary_shows_hostile_strings_literally(isolated_home: Path, db_path: Path) -> None:
    # Was a MarkupError ("[/]" as a gender label, a column header) or restyled text: each
    # of these strings Rich reads as markup (or an emoji code) when given as str.
    genders = ["[bold]", "[/]", "\\[i]", ":smile:"]  # four: each gets its own column
    patients = [{"birth_date": "1990-01-01", "gender": g, "[i]note": "[blink]v"} for g in genders * 2]
    diagnoses = [{"code": "[/code]", "description": "[b]desc[/b]", "onset_date": "2024-01-02"}] * 3
    ScenarioStore(db_path).save_scenario(
        "[bold]mk",
        {"patients": patients, "diagnoses": diagnoses},
        description="[red]x[/red]",
        tags=["[/]", "[link=https://e.test]L[/link]"],
    )
    shown = ok("summary", "[bold]mk").stdout
    header = next(line.split() for line in shown.splitlines() if line.split()[:2] == ["age", ":smile:"])
    assert header == ["age", ":smile:", "[/]", "[bold]", "\\[i]"]  # the gender columns, as they are
    for text in ("[bold]mk", "[red]x[/red]", "[/], [link=https://e.test]L[/link]", "[i]note", "[blink]v 8"):
        assert text in shown, (text, shown)
    assert "[/code]  [b]desc[/b]" in shown and "😄" not in shown


def test_every_command_shows_markup_like_text_as_it_is(isolated_home: Path, db_path: Path) -> None:
    # healthsim list and load failed with a MarkupError on a description or tag holding "[/]".
    hostile = "[red]d[/red] [/] :smile:"
    store = ScenarioStore(db_path)
    store.save_scenario("mk", {"patients": [{"note": "[/] a"}]}, description=hostile, tags=["[/]", ":smile:"])
    store.save_scenario("mk", {"patients": [{"note": "[/] b"}]}, description=hostile, tags=["[/]"], overwrite=True)
    for args, text in (
        (("list",), "[/]"),
        (("list", "--tag", "[/]"), "mk"),
        (("load", "mk", "--version", "1"), hostile),
        (("load", "mk"), '"[/] b"'),
        (("history", "mk"), "overwrite"),
        (("diff", "mk@1", "mk"), "patients"),
        (("query", "SELECT data->>'note' AS n FROM patients"), "[/] b"),
    ):
        shown = ok(*args).stdout
        assert text in shown and "😄" not in shown, (args, shown)
    failed = run("load", "[/]:smile:")
    assert_clean_error(failed, 1, "[/]:smile:")


def test_summary_of_totals_beyond_a_double_does_not_crash(isolated_home: Path, db_path: Path) -> None:
    # Was a TypeError: the total of 1e40 + 2e40 (beyond DECIMAL(38, 6)) comes back as None.
    ScenarioStore(db_path).save_scenario("c3", {"claims": [{"total_charge": 1e40}, {"total_charge": 2e40}]})
    shown = ok("summary", "c3").stdout
    assert "totals" in shown and "total_charge" in shown and "1e+40 … 2e+40" in shown


def hand_made_summary(**about: Any) -> dict[str, Any]:
    """A summary of one type, ``things``, holding ``about`` (as summarize_scenario makes it)."""
    return {
        "name": "s",
        "version": 1,
        "scenario_id": "00000000-0000-0000-0000-000000000001",
        "description": None,
        "tags": [],
        "created_at": "2024-01-01T00:00:00Z",
        "updated_at": "2024-01-01T00:00:00Z",
        "entity_count": 2,
        "types": {"things": {"count": 2, **about}},
    }


def rendered(summary: dict[str, Any]) -> str:
    console = Console(file=io.StringIO(), width=200, highlight=False)
    render_summary(summary, console)
    return console.file.getvalue()  # type: ignore[attr-defined]


def test_summary_view_shows_numbers_it_cannot_format_as_they_are() -> None:
    # None (a sum beyond DECIMAL(38, 6), the mean of no number) and the text of a number
    # beyond a double's range were formatted with :,.2f or :.4g, a TypeError or ValueError.
    charges = {
        "none": {"count": 2, "total": None},
        "text": {"count": 1, "total": "1e400"},
        "huge": {"count": 1, "total": 10**400},
        "exact": {"count": 1, "total": 10**40 + 1},
        "plain": {"count": 3, "total": 1234.5},
    }
    fields = {
        "a": {"present": 1.0, "types": ["number"], "min": "-1e400", "max": None, "mean": None, "median": "1e400"},
        "b": {"present": 0.5, "types": ["number"], "min": 1, "max": 3, "mean": 2.0, "median": 2.5},
    }
    shown = rendered(hand_made_summary(charges=charges, fields=fields))
    lines = {line.split()[0]: line.split() for line in shown.splitlines() if line.split()}
    assert lines["none"][1:] == ["2", "—"]
    assert lines["text"][1:] == ["1", "1e400"]
    assert lines["huge"][2].startswith("10,000,000,000,000,")  # (cut to the terminal's width)
    assert lines["exact"][1:] == ["1", f"{10**40 + 1:,}.00"]  # an integer is not rounded through a float
    assert lines["plain"][1:] == ["3", "1,234.50"]
    assert "-1e400 … —, mean —, median 1e400" in shown
    assert "1 … 3, mean 2, median 2.5" in shown


def test_summary_view_shows_every_string_literally() -> None:
    # Every string of the summary is the scenario's data: none may be read as markup.
    tag = "[red]x[/red]"
    summary = hand_made_summary(
        fields={tag: {"present": 1.0, "types": ["string", tag], "top": [[tag, 2]], "distinct": 1}},
        age_bands={
            "field": tag,
            "as_of": "2024-01-01",
            "by": "[/]",
            "bands": {"[b]0-9": {"[bold]": 1, "[/]": 2, ":smile:": 3}},
            "genders": {"[bold]": 1, "[/]": 2},
        },
        top_codes={"field": "[/]", "description": None, "top": [["[/]", "[b]d", 2], [":smile:", None, 1]]},
        over_time={"field": "[i]when", "unit": "[/]", "counts": [["[b]2024", 2]]},
        charges={"[/]money": {"count": 2, "total": 3.0}},
    )
    summary.update(name="[/]", description=tag, tags=["[/]"], scenario_id="[bold]", created_at="[/]")
    summary["types"]["[/]things"] = summary["types"].pop("things")
    shown = rendered(summary)
    for text in ("[red]x[/red]", "[bold]", "[/]", ":smile:", "[b]0-9", "[b]d", "[i]when", "[b]2024", "[/]money"):
        assert text in shown, (text, shown)
    assert "😄" not in shown
    assert "age on 2024-01-01 (from [red]x[/red]) by [/]" in shown and "[/]things — 2" in shown


def test_export_formats_and_query_output(isolated_home: Path, tmp_path: Path) -> None:
    ok("save", "cohort", "--from", str(EXAMPLE))
    written = json.loads(
        ok(
            "export",
            "cohort",
            "--format",
            "parquet",
            "--type",
            "patients",
            "--type",
            "claims",
            "-o",
            str(tmp_path / "pq"),
            "--json",
        ).stdout
    )
    assert written == {"path": str(tmp_path / "pq"), "format": "parquet"}
    assert sorted(p.name for p in (tmp_path / "pq").iterdir()) == [
        ".healthsim-export.json",  # what marks it as an export (replaced by the next one to this path)
        "claims.parquet",
        "patients.parquet",
    ]
    ndjson = Path(ok("export", "cohort", "-f", "ndjson", "-o", str(tmp_path) + "/").stdout.strip())
    assert ndjson == tmp_path / "cohort.ndjson" and len(ndjson.read_text().splitlines()) == 30
    assert_clean_error(run("export", "cohort", "--format", "xlsx"), 2, "'xlsx' is not one of json")  # bad usage
    assert_clean_error(run("export", "cohort", "--format", "csv", "--type", "aliens"), 1, "no entity type 'aliens'")

    out = ok(
        "query",
        "SELECT data->>'patient_id' AS id, data->'address' AS address FROM patients",
        "-o",
        str(tmp_path / "q.csv"),
    )
    assert "5 row(s) written to" in out.stdout
    rows = (tmp_path / "q.csv").read_text().splitlines()
    assert rows[0] == '"id","address"' and rows[1].startswith('"MRN-10001","{')
    listed = json.loads(
        ok(
            "query",
            "SELECT entity_type, count(*) AS n FROM entities GROUP BY ALL",
            "-o",
            str(tmp_path / "q.out"),
            "--format",
            "ndjson",
            "--json",
        ).stdout
    )
    assert listed["rows_written"] == 6 and listed["format"] == "ndjson"
    assert_clean_error(run("query", "SELECT 1", "-o", str(tmp_path / "q.xlsx")), 1, "cannot tell the format")
    assert not (tmp_path / "q.xlsx").exists()
    assert run("query", "SELECT 1", "--format", "csv").exit_code == 2  # --format goes with --output


# What a start imports, checked without timing (timing is benchmarks/run.py --only startup):
# a fresh interpreter runs the program and reports which heavy modules it loaded.
STARTUP_PROBE = """
import json, sys
sys.argv = ["healthsim", *json.loads(sys.argv[1])]
from healthsim.cli import main
try:
    main()
except SystemExit:
    pass
sys.stdout.flush()
sys.stderr.write(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in ("psycopg", "duckdb", "pyarrow",
    "plotly", "mcp", "pydantic") or m.startswith(("healthsim.state.", "pyarrow.")))))
"""


def imported_by(*args: str) -> set[str]:
    """The heavy modules that ``healthsim ARGS`` imports, in a fresh interpreter."""
    done = subprocess.run(
        [sys.executable, "-c", STARTUP_PROBE, json.dumps(args)],
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )
    return set(json.loads(done.stderr.strip().splitlines()[-1]))


def test_version_and_help_import_no_database_driver(isolated_home: Path) -> None:
    """`healthsim --version` and `--help` answer without DuckDB, PyArrow, psycopg or the
    library's store (issue 21: they took 0.8 s importing them)."""
    for args in (["--version"], ["--help"], ["list", "--help"]):
        heavy = imported_by(*args)
        assert not {m.split(".")[0] for m in heavy} & {"psycopg", "duckdb", "pyarrow", "plotly", "mcp"}, (args, heavy)
        assert heavy <= {"healthsim.state.errors", "healthsim.state.results"} | {
            m for m in heavy if m.startswith("pydantic")
        }, (args, heavy)


def test_list_on_a_file_imports_neither_psycopg_nor_arrow_compute(isolated_home: Path) -> None:
    """A DuckDB file needs no PostgreSQL driver, no query sandbox and none of Arrow's compute,
    CSV or Parquet modules to list its scenarios."""
    ScenarioStore().save_scenario("a", {"patients": [{"patient_id": "p1"}]})
    heavy = imported_by("list")
    assert "duckdb" in heavy  # the probe sees what it should
    for module in ("psycopg", "pyarrow.compute", "pyarrow.csv", "pyarrow.parquet", "plotly", "mcp"):
        assert module not in heavy, module


# ---------------------------------------------------------------- tables that fit 80 columns


def table_lines(output: str) -> list[str]:
    """The lines of the first table in ``output``: header, rule, rows (up to a blank or a
    line that is not part of the table)."""
    lines = output.splitlines()
    start = next(i for i, line in enumerate(lines) if set(line.strip()) == {"─"}) - 1
    end = next((i for i in range(start + 2, len(lines)) if " of " in lines[i] or not lines[i].strip()), len(lines))
    return lines[start:end]


def test_list_and_history_fit_80_columns_with_counts_whole(isolated_home: Path) -> None:
    """Issue 22: at 80 columns `list` cut counts to `7,7…` while a microsecond timestamp
    stayed whole, and `history` wrapped over 13 lines. Now: one line per row, at most 80
    columns, every count and time whole; names, tags and types give way."""
    store = ScenarioStore()
    long_name = "diabetes-cohort-2026-with-a-really-long-name-that-goes-on-and-on-for-ever"
    many = {
        "patients": [{"patient_id": f"P{i}"} for i in range(7_700)],
        "lab_results": [{"lab_result_id": f"L{i}"} for i in range(12_345)],
        "encounters": [{"encounter_id": "E1"}],
        "diagnoses": [{"code": "E11.9"}],
        "claims": [{"claim_id": "C1"}],
    }
    store.save_scenario(long_name, many, tags=["diabetes", "a-long-tag-for-testing", "reviewed"])
    store.save_scenario("small", {"patients": [{"patient_id": "P1"}]})
    store.add_entities(long_name, {"prescriptions": [{"prescription_number": "RX1"}]})
    store.remove_entities(long_name, "patients", ["P1", "P2"])
    store.update_scenario("small", add_tags=["x"])
    for args, rows in ((["list"], 2), (["history", long_name], 3), (["list", "--limit", "1"], 1)):
        output = ok(*args, env={"COLUMNS": "80"}).stdout
        lines = table_lines(output)
        assert len(lines) == 2 + rows, output  # header, rule, one line per row: nothing wraps
        for line in output.splitlines():
            assert len(line.rstrip()) <= 80, line
        numbers = " ".join(lines[2:])
        assert not re.search(r"\d,?…|…\d", numbers), output  # no count cut
        assert not re.search(r"\d{2}:\d{2}:\d{2}", output), output  # times to the minute
    listed = ok("list", env={"COLUMNS": "80"}).stdout
    assert "20,047" in listed and re.search(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}", listed)
    history = ok("history", long_name, env={"COLUMNS": "80"}).stdout
    assert "-2 patients" in history and "+1 prescriptions" in history and "20,049" in history and "20,048" in history


@given(
    rows=st.lists(
        st.tuples(
            st.text(min_size=0, max_size=60),
            st.integers(0, 10**12),
            st.text(min_size=0, max_size=40),
            st.text(min_size=0, max_size=50),
        ),
        min_size=1,
        max_size=6,
    ),
    width=st.integers(60, 200),
)
@settings(max_examples=examples(60), deadline=None)
def test_a_fitted_table_keeps_counts_and_times_whole_in_any_width(
    rows: list[tuple[str, int, str, str]], width: int
) -> None:
    """Any names (wide characters, markup-like text, control characters), any counts: one
    line per row, never wider than the terminal, counts and times as they are."""
    table_rows = [[name, f"{count:,}", tags, "2026-12-06 23:04", types] for name, count, tags, types in rows]
    table = fitted_table(
        ["name", "entities", "tags", "updated (UTC)", "types"],
        table_rows,
        width,
        flexible={0: 3, 2: 1, 4: 1},
        right=[1],
    )
    console = Console(width=width, file=io.StringIO(), markup=False, emoji=False, highlight=False)
    console.print(table)
    lines = console.file.getvalue().splitlines()  # type: ignore[attr-defined]
    assert len(lines) == 2 + len(rows)
    for line, (_, count, _, _) in zip(lines[2:], rows, strict=True):
        assert cell_len(line) <= width
        assert f"{count:,}" in line and "2026-12-06 23:04" in line


def test_a_lazy_module_is_imported_on_first_use_once_from_many_threads() -> None:
    """healthsim._lazy: nothing imported until an attribute is read; threads reading at once
    all get the module's own objects (the MCP server runs tools in worker threads)."""
    code = """
import sys, threading
from healthsim._lazy import lazy_module
colorsys = lazy_module("colorsys")
assert "colorsys" not in sys.modules
got = []
threads = [threading.Thread(target=lambda: got.append(colorsys.rgb_to_hsv)) for _ in range(8)]
for t in threads: t.start()
for t in threads: t.join()
import colorsys as real
assert got == [real.rgb_to_hsv] * 8 and colorsys.hls_to_rgb is real.hls_to_rgb
print("ok")
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == "ok", done.stderr
