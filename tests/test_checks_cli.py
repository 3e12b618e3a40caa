"""healthsim check, healthsim add --check, and the MCP tool check_scenario."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any

import pytest
from mcp import Client
from typer.testing import CliRunner, Result

from healthsim.cli import app
from healthsim.mcp_server import build_server
from healthsim.state import ScenarioStore

runner = CliRunner()
EXAMPLE = Path(__file__).parent.parent / "examples" / "diabetes-cohort.json"


def run(*args: str) -> Result:
    return runner.invoke(app, list(args), catch_exceptions=False, prog_name="healthsim", env={"COLUMNS": "200"})


def bad_scenario(store: ScenarioStore) -> None:
    store.save_scenario(
        "bad",
        {
            "patients": [{"mrn": "MRN-1", "birth_date": "unknown", "ssn": "123-45-6789"}],
            "encounters": [{"encounter_id": f"E{i}", "patient_mrn": "MRN-404"} for i in range(3)],
        },
    )


def test_check_prints_a_table_of_80_columns_and_exits_1_on_errors(store: ScenarioStore) -> None:
    bad_scenario(store)
    result = run("check", "bad")
    assert result.exit_code == 1, result.output
    lines = result.output.splitlines()
    assert max(len(line) for line in lines) <= 80
    assert lines[0] == "Checked: patients 1, encounters 3"
    assert "NOT OK: 4 errors, 1 warning" in result.output and "1 warnings" not in result.output
    assert any("3  encounters.patient_mrn" in line and "unresolved_reference" in line for line in lines)
    assert any("1  patients.birth_date" in line and "not_a_date" in line for line in lines)
    assert "E0: 'MRN-404'" in result.output


def test_check_json_is_the_library_answer_and_exits_0_on_warnings(store: ScenarioStore) -> None:
    store.save_scenario("warn", {"patients": [{"mrn": "MRN-1", "ssn": "123456789"}]})
    result = run("check", "warn", "--json")
    assert result.exit_code == 0
    assert json.loads(result.output) == store.check_scenario("warn")
    clean = run("check", "warn", "--version", "1")
    assert clean.exit_code == 0 and "0 errors, 1 warning" in clean.output and "1 warnings" not in clean.output


def test_check_of_the_example_cohort_has_no_errors(store: ScenarioStore) -> None:
    assert run("save", "cohort", "--from", str(EXAMPLE)).exit_code == 0
    result = run("check", "cohort")
    assert result.exit_code == 0, result.output
    # Its claims name members the example does not include: one warning.
    answer = store.check_scenario("cohort")
    assert [(p["rule"], p["type"], p["field"], p["count"]) for p in answer["problems"]] == [
        ("missing_target_type", "claims", "member_id", 5)
    ]


def test_check_of_a_missing_scenario_says_so(store: ScenarioStore) -> None:
    result = run("check", "nope")
    assert result.exit_code == 1 and "nope" in result.output


def test_add_with_check(store: ScenarioStore, tmp_path: Path) -> None:
    bad_scenario(store)
    batch = tmp_path / "batch.json"
    batch.write_text(json.dumps({"encounters": [{"encounter_id": "E9", "patient_mrn": "nobody"}]}))
    refused = run("add", "bad", "--from", str(batch), "--check", "refuse")
    assert refused.exit_code == 1 and "nothing was written" in refused.output
    assert store.load_scenario("bad")["entities_by_type"]["encounters"] == 3
    warned = run("add", "bad", "--from", str(batch), "--check", "warn")
    assert warned.exit_code == 0
    assert "added encounters 1" in warned.output and "unresolved_reference" in warned.output
    as_json = run("add", "bad", "--from", str(batch), "--check", "warn", "--json", "--no-upsert")
    assert json.loads(as_json.output)["check"]["problems"][0]["rule"] in ("duplicate_id", "unresolved_reference")


def test_save_with_check(store: ScenarioStore, tmp_path: Path) -> None:
    cohort = tmp_path / "cohort.json"
    entities = {"patients": [{"mrn": "M1"}], "encounters": [{"encounter_id": "E1", "patient_mrn": "nobody"}]}
    cohort.write_text(json.dumps(entities))
    refused = run("save", "checked", "--from", str(cohort), "--check", "refuse")
    assert refused.exit_code == 1 and "nothing was written" in refused.output, refused.output
    assert "checked" not in [s["name"] for s in store.list_scenarios()["scenarios"]]
    warned = run("save", "checked", "--from", str(cohort), "--check", "warn")
    assert warned.exit_code == 0, warned.output
    assert "saved 'checked'" in warned.output and "unresolved_reference" in warned.output
    as_json = json.loads(
        run("save", "checked", "--from", str(cohort), "--check", "warn", "--overwrite", "--json").output
    )
    assert as_json["name"] == "checked" and as_json["check"]["problems"][0]["rule"] == "unresolved_reference"
    plain = json.loads(run("save", "plain", "--from", str(cohort), "--json").output)
    assert "check" not in plain  # no check asked: none made
    answer = store.import_scenario_from_json(cohort, "lib", check="warn")
    assert isinstance(answer, dict) and answer["check"]["ok"] is False


def call(db: str, tool: str, arguments: dict[str, Any]) -> Any:
    """One tool call through the official client, in process."""

    async def main() -> Any:
        async with Client(build_server(db), mode="legacy", cache=None) as client:
            tools = {t.name: t for t in (await client.session.list_tools()).tools}
            result = await client.session.call_tool(tool, arguments)
            return tools[tool], result

    return asyncio.run(main())


def test_mcp_check_scenario_is_read_only_and_answers_the_check(store: ScenarioStore) -> None:
    bad_scenario(store)
    tool, result = call(os.environ["HEALTHSIM_DB"], "check_scenario", {"name": "bad"})
    assert tool.annotations.read_only_hint is True and not tool.annotations.destructive_hint
    assert not result.is_error
    assert result.structured_content == json.loads(result.content[0].text) == store.check_scenario("bad")
    assert len(result.content[0].text.encode()) <= 12 * 1024


def test_mcp_save_and_add_with_check(store: ScenarioStore) -> None:
    db = os.environ["HEALTHSIM_DB"]
    patients = [{"mrn": "MRN-1", "birth_date": "1980-01-01"}]
    _, saved = call(db, "save_scenario", {"name": "s", "entities": {"patients": patients}, "check": "warn"})
    assert saved.structured_content["check"] == {"ok": True, "checked": {"patients": 1}, "problems": []}
    batch = {"encounters": [{"encounter_id": "E1", "patient_mrn": "MRN-2"}]}
    _, refused = call(db, "add_entities", {"name": "s", "entities": batch, "check": "refuse"})
    assert refused.is_error and "nothing was written" in refused.content[0].text
    assert "encounters.patient_mrn unresolved_reference" in refused.content[0].text
    assert store.load_scenario("s")["entity_count"] == 1
    _, warned = call(db, "add_entities", {"name": "s", "entities": batch, "check": "warn"})
    assert warned.structured_content["added"] == {"encounters": 1}
    assert warned.structured_content["check"]["problems"][0]["rule"] == "unresolved_reference"
    _, plain = call(db, "add_entities", {"name": "s", "entities": {"patients": [{"mrn": "MRN-2"}]}})
    assert "check" not in plain.structured_content  # no check asked: none made


def test_summary_and_report_show_the_check_and_the_values_that_do_not_fit(store: ScenarioStore, tmp_path: Path) -> None:
    people = [{"mrn": f"MRN-{i}", "birth_date": "1980-02-02", "gender": "F"} for i in range(20)]
    people[0]["birth_date"] = "unknown"
    store.save_scenario("s", {"patients": people, "encounters": [{"encounter_id": "E1", "patient_mrn": "MRN-404"}]})
    summary = store.summarize_scenario("s")
    assert summary["check"] == {
        "ok": False,
        "errors": 2,
        "warnings": 0,
        "problems": [
            ["error", "unresolved_reference", "encounters", "patient_mrn", 1],
            ["error", "not_a_date", "patients", "birth_date", 1],
        ],
    }
    assert len(json.dumps(summary, ensure_ascii=False, separators=(",", ":")).encode()) <= 12 * 1024
    shown = run("summary", "s")
    assert shown.exit_code == 0
    assert "19 dates, 1 other value such as 'unknown'" in shown.output
    assert "left out: 1 not a date (such as 'unknown')" in shown.output
    assert "check: 2 errors, 0 warnings" in shown.output and "error 1 encounters.patient_mrn" in shown.output
    page = store.report_scenario("s", tmp_path / "r.html").read_text(encoding="utf-8")
    assert "check: 2 errors, 0 warnings" in page and "19 dates, 1 other value such as &#x27;unknown&#x27;" in page
    assert "left out: 1 not a date" in page


@pytest.mark.slow  # (about a second or more of the quick run's edit loop; the whole suite runs it)
def test_summary_check_counts_fit_the_budget_of_many_problems(store: ScenarioStore) -> None:
    entities = {
        f"type_{'x' * 60}_{i}": [{"birth_date": "unknown", "gender": "?", "ssn": "123456789"}] for i in range(40)
    }
    store.save_scenario("many", entities)
    summary = store.summarize_scenario("many")
    assert len(json.dumps(summary, ensure_ascii=False, separators=(",", ":")).encode()) <= 12 * 1024
    check = summary["check"]
    assert check["errors"] == 80 and check["warnings"] == 40  # the counts of all problems
    assert check["problems_omitted"] > 0 and len(check["problems"]) + check["problems_omitted"] == 120


def test_counts_of_one_are_singular_in_the_table_the_summary_and_the_page() -> None:
    from healthsim.state.checks.shape import brief_lines, unfit_text
    from healthsim.summary_view import check_table

    one = {"severity": "error", "rule": "not_a_date", "type": "patients", "field": "birth_date", "examples": []}
    answer = {"ok": False, "checked": {"patients": 1}, "problems": [{**one, "count": 1}], "problems_omitted": 1}
    table = check_table(answer)
    assert "NOT OK: 1 error, 0 warnings" in table and "… and 1 more problem (use --json)" in table
    assert "1 errors" not in table and "1 more problems" not in table
    two = {**answer, "problems": [{**one, "count": 2}, {**one, "severity": "warning", "count": 1}]}
    two["problems_omitted"] = 2
    assert "NOT OK: 2 errors, 1 warning" in check_table(two) and "2 more problems" in check_table(two)
    brief = {"errors": 1, "warnings": 1, "problems": [["error", "not_a_date", "patients", "birth_date", 1]]}
    assert brief_lines({**brief, "problems_omitted": 1})[0] == "check: 1 error, 1 warning"
    assert brief_lines({**brief, "errors": 1_000, "warnings": 2})[0] == "check: 1,000 errors, 2 warnings"
    assert unfit_text({"dates": 1, "other": 1, "example": "unknown"}) == "1 date, 1 other value such as 'unknown'"
    assert unfit_text({"numbers": 2, "other": 3, "example": "n/a"}) == "2 numbers, 3 other values such as 'n/a'"
