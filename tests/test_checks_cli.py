"""healthsim check, healthsim add --check, and the MCP tool check_scenario."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner, Result

from healthsim.cli import app
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
    assert "NOT OK: 4 errors, 1 warnings" in result.output
    assert any("3  encounters.patient_mrn" in line and "unresolved_reference" in line for line in lines)
    assert any("1  patients.birth_date" in line and "not_a_date" in line for line in lines)
    assert "E0: 'MRN-404'" in result.output


def test_check_json_is_the_library_answer_and_exits_0_on_warnings(store: ScenarioStore) -> None:
    store.save_scenario("warn", {"patients": [{"mrn": "MRN-1", "ssn": "123456789"}]})
    result = run("check", "warn", "--json")
    assert result.exit_code == 0
    assert json.loads(result.output) == store.check_scenario("warn")
    clean = run("check", "warn", "--version", "1")
    assert clean.exit_code == 0 and "1 warnings" in clean.output


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
