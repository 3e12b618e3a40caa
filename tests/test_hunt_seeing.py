"""Checking, summaries and reports under hostile and unusual input (the hunt after issue 24).

Each test here showed a defect a user would hit before its fix: a traceback or an engine's raw
error instead of an answer, a check finding that was wrong, the two engines answering
differently, minutes spent cutting an answer, or a scenario's text driving the terminal. Two
property tests hold the answer's cut to the plain one-at-a-time cut it replaced, and an add's
resolution of any name (escaped into patterns) to a whole check's (that search found no defect).
The module runs on both engines (``BOTH_ENGINES`` in conftest).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from healthsim.cli import app
from healthsim.state import CheckFailedError, ScenarioStore
from helpers.examples import examples


@pytest.mark.parametrize("shape", ["one wide entity", "many narrow entities"])
def test_a_type_with_a_thousand_keys_checks_and_summarizes(store: ScenarioStore, shape: str) -> None:
    # The check added up the keys each entity has as one long `a + b + c + ...`: past about
    # 1,000 keys DuckDB refused it ("Max expression depth limit of 1000 exceeded"), raised as
    # "please report this as a bug" by check_scenario and summarize_scenario (which holds the
    # check's counts) alike; PostgreSQL answered.
    if shape == "one wide entity":
        things: list[dict[str, Any]] = [{"thing_id": "T1", **{f"k{i}": i for i in range(1200)}}]
    else:
        things = [{f"k{i}": i} for i in range(1200)]
    store.save_scenario("wide", {"things": things, "patients": [{"patient_id": "P1", "birth_date": "x"}]})
    answer = store.check_scenario("wide")
    assert answer["checked"] == {"things": len(things), "patients": 1}
    assert [(p["rule"], p["field"]) for p in answer["problems"]] == [("not_a_date", "birth_date")]
    summary = store.summarize_scenario("wide")
    assert summary["types"]["things"]["count"] == len(things)
    assert summary["check"]["errors"] == 1


def test_a_diagnosis_code_of_another_system_is_not_icd10_whichever_field_names_the_system(
    store: ScenarioStore,
) -> None:
    # A type whose diagnoses name their system in `code_system` and in `system` (two sources
    # merged) read only `code_system`: a SNOMED code named by `system` was a false
    # malformed_icd10 error.
    diagnoses = [
        {"diagnosis_id": "D1", "code": "38341003", "code_system": "SNOMED CT"},
        {"diagnosis_id": "D2", "code": "38341003", "system": "http://snomed.info/sct"},
        {"diagnosis_id": "D3", "code": "E11.9", "system": "http://hl7.org/fhir/sid/icd-10-cm"},
        {"diagnosis_id": "D4", "code": "38341003", "code_system": "ICD-10-CM"},
        {"diagnosis_id": "D5", "code": "38341003"},
    ]
    answer = store.save_scenario("merged", {"diagnoses": diagnoses}, check="warn")["check"]
    assert answer == store.check_scenario("merged")
    [problem] = answer["problems"]
    assert (problem["rule"], problem["count"]) == ("malformed_icd10", 2)
    assert [e["id"] for e in problem["examples"]] == ["D4", "D5"]


def test_only_text_with_an_at_sign_is_a_real_looking_email(store: ScenarioStore) -> None:
    # "none", "n/a" or "no-at" could reach nobody, yet each was a real_looking_email warning.
    members = [
        {"member_id": "M1", "email": "none"},
        {"member_id": "M2", "email": "n/a"},
        {"member_id": "M3", "email": "jane@gmail.com"},
        {"member_id": "M4", "email": "jane@example.org"},
    ]
    answer = store.save_scenario("mail", {"members": members}, check="warn")["check"]
    assert answer == store.check_scenario("mail")
    [problem] = [p for p in answer["problems"] if p["rule"] == "real_looking_email"]
    assert problem["count"] == 1 and [e["id"] for e in problem["examples"]] == ["M3"]


def test_a_date_field_is_found_among_many_fields_of_numbers(store: ScenarioStore) -> None:
    # "Any field whose values are mostly ISO dates" is checked as a date field, but only the
    # first 40 other fields by name were tested for it, before those that never hold a
    # string were set aside: after 45 number fields, `visit_day` was never checked.
    rows = [
        {"row_id": f"R{i}", **{f"a{j:02}": j for j in range(45)}, "visit_day": "2024-01-0" + str(i)} for i in (1, 2)
    ]
    rows.append({"row_id": "R3", **{f"a{j:02}": j for j in range(45)}, "visit_day": "someday"})
    answer = store.save_scenario("visits", {"visits": rows}, check="warn")["check"]
    assert answer == store.check_scenario("visits")
    assert [(p["rule"], p["field"], p["count"]) for p in answer["problems"]] == [("not_a_date", "visit_day", 1)]


def test_a_charges_total_beyond_a_double_is_exact(store: ScenarioStore) -> None:
    # A total no double holds is given "as its exact text"; it was the quotient's first 28
    # digits (Python's default decimal precision): 2 * 10**308 + 2**70 + 0.1 came out as
    # "2.000000000000000000000000000E+308", the 2**70 and the 0.1 lost.
    claims = [{"claim_id": f"C{i}", "amount": v} for i, v in enumerate([2**70, 1e308, 1e308, 0.1])]
    store.save_scenario("costly", {"claims": claims})
    charges = store.summarize_scenario("costly")["types"]["claims"]["charges"]
    assert charges == {"amount": {"count": 4, "total": str(2 * 10**308 + 2**70) + ".1"}}


def test_an_example_that_is_an_object_a_list_or_a_number_reads_alike_on_both_engines(store: ScenarioStore) -> None:
    # An example's value is the field's JSON text: DuckDB wrote an object as saved and
    # compact, PostgreSQL as its jsonb text (a space after each colon and comma, keys
    # reordered by length), and a number as its numeric type writes it, so one check
    # answered differently on the two engines.
    patients = [
        {"patient_id": "P1", "birth_date": {"year": 1980, "m": [1, "x"]}},
        {"patient_id": "P2", "birth_date": ["1980-01-01", None, {"b": 1, "a": 2}]},
        {"patient_id": "P3", "birth_date": 1e20},  # DuckDB 100000000000000000000.0, PostgreSQL without .0
        {"patient_id": "P4", "birth_date": 1.5e-7},  # DuckDB 1.5e-7, PostgreSQL 0.00000015
    ]
    answer = store.save_scenario("odd", {"patients": patients}, check="warn")["check"]
    assert answer == store.check_scenario("odd")
    assert answer == store.add_entities("odd2", {"patients": patients}, create=True, check="warn")["check"]
    [problem] = answer["problems"]
    assert problem["examples"] == [
        {"id": "P1", "value": '{"m":[1,"x"],"year":1980}'},
        {"id": "P2", "value": '["1980-01-01",null,{"a":2,"b":1}]'},
        {"id": "P3", "value": "100000000000000000000"},
        {"id": "P4", "value": "1.5e-07"},
    ]


def test_examples_of_a_reference_are_the_first_in_saved_order(store: ScenarioStore) -> None:
    # Examples are "the first five in saved order on both engines"; those of a rule reading
    # a joined id table (references, events and births, duplicates) came in the order of
    # DuckDB's hash join: MRN-0, MRN-30, MRN-33, MRN-34, MRN-36 where PostgreSQL (which
    # sorts) gave MRN-0, MRN-30, MRN-31, MRN-32, MRN-33.
    patients = [{"patient_id": f"MRN-{i}", "birth_date": "2000-01-01"} for i in range(1, 30)]
    encounters = [
        {"encounter_id": f"E{i}", "patient_id": f"MRN-{i}", "admission_time": "1999-12-31"} for i in range(40)
    ]
    answer = store.save_scenario("ordered", {"patients": patients, "encounters": encounters}, check="warn")["check"]
    assert answer == store.check_scenario("ordered")
    found = {p["rule"]: [e["id"] for e in p["examples"]] for p in answer["problems"]}
    assert found == {
        "unresolved_reference": ["E0", "E30", "E31", "E32", "E33"],
        "before_birth": ["E1", "E2", "E3", "E4", "E5"],
    }
    added = store.add_entities(
        "ordered", {"encounters": [{**e, "encounter_id": "N" + e["encounter_id"]} for e in encounters]}, check="warn"
    )
    found = {p["rule"]: [e["id"] for e in p["examples"]] for p in added["check"]["problems"]}
    assert found == {
        "unresolved_reference": ["NE0", "NE30", "NE31", "NE32", "NE33"],
        "before_birth": ["NE1", "NE2", "NE3", "NE4", "NE5"],
    }


def test_the_check_table_counts_the_problems_cut_from_the_answer_too() -> None:
    # An answer cut to its 12 KB keeps the entities of the problems it left out in
    # `omitted_counts`; `healthsim check` added up only the problems shown ("NOT OK: 3 errors"
    # of 120), where the summary's check counts (shape.brief) add both.
    from healthsim.state.checks.shape import brief
    from healthsim.summary_view import check_table

    one = {"severity": "error", "rule": "not_a_date", "type": "patients", "field": "birth_date", "examples": []}
    answer = {
        "ok": False,
        "checked": {"patients": 130},
        "problems": [{**one, "count": 3}, {**one, "severity": "warning", "rule": "real_looking_ssn", "count": 1}],
        "truncated": True,
        "problems_omitted": 40,
        "omitted_counts": {"error": 117, "warning": 9},
    }
    assert "NOT OK: 120 errors, 10 warnings" in check_table(answer)
    assert (brief(answer)["errors"], brief(answer)["warnings"]) == (120, 10)


def test_check_prints_ids_and_values_without_terminal_control_characters(store: ScenarioStore) -> None:
    # `healthsim check` printed an example's own id as it is: an id holding an escape
    # sequence (here one that sets the terminal's title) reached the terminal, and a line
    # break in it broke the table's row. Values were shown by repr, ids were not.
    patients = [{"patient_id": "P\x1b]0;pwned\x07\nQ", "birth_date": "soon"}]
    store.save_scenario("esc", {"patients": patients})
    result = CliRunner().invoke(app, ["check", "esc"])
    assert result.exit_code == 1, result.output
    assert "\x1b" not in result.output and "\x07" not in result.output
    [line] = [line for line in result.output.splitlines() if "e.g." in line]
    assert "P\\u001b]0;pwned\\u0007\\u000aQ: 'soon'" in line


def test_a_sparse_date_field_is_told_by_all_of_its_values_not_by_the_sample_alone(store: ScenarioStore) -> None:
    # Whether a field is mostly dates was decided on the first 1,000 entities: in a type of
    # mostly nulls they held two values of `seen_on`, a date and "later" (not more than half
    # dates), so the field was no date field and "later" no error, while the summary showed
    # it as a date field with one value that is not a date (202 values, 201 of them dates).
    rows: list[dict[str, Any]] = [{"row_id": f"R{i}", "seen_on": None} for i in range(3000)]
    for i in [0, *range(1000, 3000, 10)]:
        rows[i]["seen_on"] = "2024-01-01"
    rows[5]["seen_on"] = "later"
    store.save_scenario("sparse", {"rows": rows})
    answer = store.check_scenario("sparse")
    assert [(p["rule"], p["field"], p["count"]) for p in answer["problems"]] == [("not_a_date", "seen_on", 1)]
    assert store.summarize_scenario("sparse")["types"]["rows"]["fields"]["seen_on"]["unfit"]["other"] == 1


_NAME = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), min_size=1, max_size=6) | st.integers(
    min_value=-(2**70), max_value=2**70
)


@pytest.mark.slow  # (about 6 s per engine)
@settings(max_examples=examples(30), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(names=st.lists(_NAME, min_size=1, max_size=6, unique_by=str), picks=st.lists(st.integers(0, 9), max_size=8))
def test_an_add_resolves_any_name_as_a_whole_check_does(
    store: ScenarioStore, names: list[Any], picks: list[int]
) -> None:
    # An add's check finds the patients its rows name by searching their stored text first
    # (regular expressions of the names, escaped): any name, however odd, must resolve as a
    # whole check resolves it.
    known = names[: len(names) // 2 + 1]
    patients = [{"patient_id": f"P{i}", "mrn": n} for i, n in enumerate(known)]
    store.save_scenario("named", {"patients": patients}, overwrite=True)
    encounters = [{"encounter_id": f"E{i}", "patient_mrn": names[p % len(names)]} for i, p in enumerate(picks)]
    added = store.add_entities("named", {"encounters": encounters}, check="warn")["check"]
    missing = sum(1 for e in encounters if str(e["patient_mrn"]) not in {str(n) for n in known})
    found = {p["rule"]: p["count"] for p in added["problems"] if p["rule"] != "duplicate_id"}
    assert found == ({"unresolved_reference": missing} if missing else {})
    assert added["problems"] == [p for p in store.check_scenario("named")["problems"] if p["type"] == "encounters"]


def test_a_time_without_an_offset_is_utc_whatever_the_machines_time_zone(store: ScenarioStore) -> None:
    # Two datetimes compare in time, a time without an offset as UTC (as the summary reads
    # it); the check cast it in the session's zone, which is the machine's: in New York,
    # 10:00 came after 12:00Z (a false end_before_start) and 10:00Z no longer after 08:00.
    encounters = [
        {"encounter_id": "E1", "admission_time": "2024-01-01T10:00:00", "discharge_time": "2024-01-01T12:00:00Z"},
        {"encounter_id": "E2", "admission_time": "2024-01-01T10:00:00Z", "discharge_time": "2024-01-01T08:00:00"},
    ]
    store.save_scenario("zoned", {"encounters": encounters})
    env = {**os.environ, "TZ": "America/New_York", "PGTZ": "America/New_York"}
    run = subprocess.run(
        [sys.executable, "-m", "healthsim", "check", "zoned", "--json"], env=env, capture_output=True, text=True
    )
    answer = json.loads(run.stdout)
    assert [(p["rule"], [e["id"] for e in p["examples"]]) for p in answer["problems"]] == [("end_before_start", ["E2"])]


def test_summary_prints_the_scenarios_text_without_terminal_control_characters(store: ScenarioStore) -> None:
    # `healthsim summary` drew field names, values and the description as they are: an
    # escape sequence in them (colours, the terminal's title, worse) reached the terminal.
    sequence = "\x1b[31mred\x1b]0;title\x07"
    patients = [{"patient_id": f"P{i}", f"note{sequence}": sequence, "gender": sequence} for i in range(3)]
    store.save_scenario("esc", {"patients": patients}, description=f"line one\n{sequence}")
    result = CliRunner().invoke(app, ["summary", "esc"])
    assert result.exit_code == 0, result.output
    assert "\x1b" not in result.output and "\x07" not in result.output
    assert "\\u001b[31mred" in result.output
    assert "line one" in result.output and "\\u000a" not in result.output  # (a line break stays one)
    # The narrow layouts (a value beside or under its label) and `load`'s header drew the
    # description raw.
    store.save_scenario("esc2", {"patients": patients}, description=f"x{sequence}")
    for command, columns in (("summary", "40"), ("load", "40"), ("load", "80")):
        result = CliRunner().invoke(app, [command, "esc2"], env={"COLUMNS": columns})
        assert result.exit_code == 0, result.output
        assert "\x1b" not in result.output and "\x07" not in result.output, (command, columns, result.output)
        assert "\\u001b[31mred" in result.output, (command, columns)


def _size(value: Any) -> int:
    return len(json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode())


def _cut_one_at_a_time(checked: dict[str, int], found: list[Any], budget: int) -> dict[str, Any]:
    """The check's answer cut as result() documents it, one example or problem at a time,
    measuring the whole answer after each (the reference: what result() did, in O(n^2))."""
    from healthsim.state.checks.shape import result

    out = result(checked, found, 10**9)  # (ordered and shortened, nothing cut)
    if _size(out) <= budget:
        return out
    out["truncated"] = True
    problems = out["problems"]
    for p in reversed(problems):
        while p["examples"] and _size(out) > budget:
            p["examples"].pop()
    while problems and _size(out) > budget:
        gone = problems.pop()
        out["problems_omitted"] = out.get("problems_omitted", 0) + 1
        counted = out.setdefault("omitted_counts", {"error": 0, "warning": 0})
        counted[gone["severity"]] += gone["count"]
    counts = out["checked"]
    while counts and _size(out) > budget:
        del counts[min(counts, key=lambda t: (counts[t], t))]
        out["checked_omitted"] = out.get("checked_omitted", 0) + 1
    return out


def test_a_check_of_thousands_of_problems_is_cut_to_its_budget_at_once() -> None:
    # The answer was cut to 12 KB one example at a time, measuring the whole answer after
    # each: 400 problems took 3 s, 2,400 (300 types of 8 bad fields) 204 s.
    import time

    from healthsim.state.checks.run import Found
    from healthsim.state.checks.shape import CHECK_BYTES, result

    found = [
        Found("not_a_date", f"type_{t}", f"f{f}", 5, [(f"id{'x' * 80}{i}", "v" * 200) for i in range(5)])
        for t in range(300)
        for f in range(8)
    ]
    checked = {f"type_{t}": 5 for t in range(300)}
    start = time.perf_counter()
    answer = result(checked, found)
    assert time.perf_counter() - start < 1
    assert _size(answer) <= CHECK_BYTES
    assert len(answer["problems"]) + answer["problems_omitted"] == 2400
    assert answer["omitted_counts"]["error"] + sum(p["count"] for p in answer["problems"]) == 12000


_FOUND = st.builds(
    lambda rule, t, f, n, examples: (rule, t, f, n, examples),
    st.sampled_from(["not_a_date", "duplicate_id", "real_looking_ssn", "after_death"]),
    st.text(min_size=1, max_size=100),
    st.text(min_size=1, max_size=90),
    st.integers(1, 10**12),
    st.lists(st.tuples(st.text(max_size=90), st.one_of(st.none(), st.integers(), st.text(max_size=120))), max_size=5),
)


@settings(max_examples=examples(200), deadline=None)
@given(
    found=st.lists(_FOUND, max_size=60),
    checked=st.dictionaries(st.text(min_size=1, max_size=100), st.integers(0, 10**9), max_size=60),
    budget=st.integers(0, 6000),
)
def test_the_answer_is_cut_as_one_cut_at_a_time_would_cut_it(
    found: list[tuple[Any, ...]], checked: dict[str, int], budget: int
) -> None:
    from healthsim.state.checks.run import Found
    from healthsim.state.checks.shape import result

    made = [Found(*f) for f in found]
    answer = result(checked, made, budget)
    assert answer == _cut_one_at_a_time(checked, made, budget)
    if budget >= 1000:  # (below, even an answer of no problem and no type is larger)
        assert _size(answer) <= budget


def test_a_refusal_names_the_entity_without_its_control_characters(store: ScenarioStore) -> None:
    # A refused add said "e.g. Q\x1b[31mX: ..." with the id's escape sequence as it is, and
    # `healthsim add --check refuse` printed it to the terminal (the value was shown by repr).
    store.save_scenario("guarded", {"patients": [{"patient_id": "P1"}]})
    with pytest.raises(CheckFailedError) as refused:
        store.add_entities(
            "guarded", {"patients": [{"patient_id": "Q\x1b[31mX", "birth_date": "soon"}]}, check="refuse"
        )
    assert "\x1b" not in str(refused.value) and "e.g. Q\\u001b[31mX: 'soon'" in str(refused.value)
    assert store.load_scenario("guarded")["entity_count"] == 1
