"""Everyday operations under hostile and unusual input (the hunt after issue 25).

Each test here showed a defect a user would hit before its fix: a traceback or an engine's raw
error instead of a clear one, data changed on a round trip, or the two engines answering
differently. The module runs on both engines (``BOTH_ENGINES`` in conftest).
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from healthsim.cli import app
from healthsim.state import DatabaseError, InvalidInputError, InvalidScenarioFileError, ScenarioStore
from healthsim.state.legacy import migrate_legacy_files
from helpers.examples import examples
from helpers.strategies import entity, entity_types


@pytest.mark.parametrize("limit", [2**63, 10**20])
def test_a_huge_limit_lists_everything(store: ScenarioStore, limit: int) -> None:
    # A limit past the engines' 64-bit LIMIT was DuckDB's "Conversion Error" or PostgreSQL's
    # "bigint out of range", raised as "please report this as a bug".
    store.save_scenario("one", {"patients": [{"patient_id": "P1"}]})
    assert store.list_scenarios(limit=limit)["total_count"] == 1
    assert store.list_scenarios(limit=limit, deleted=True)["total_count"] == 0
    assert len(store.scenario_history("one", limit=limit)["versions"]) == 1


def test_a_limit_below_one_is_still_refused(store: ScenarioStore) -> None:
    with pytest.raises(InvalidInputError, match="limit"):
        store.list_scenarios(limit=0)


def test_import_refuses_a_single_string_of_tags(store: ScenarioStore, tmp_path: Path) -> None:
    # import_scenario(tags="diabetes") stored the tags d, i, a, b, e, t, s (the store turned the
    # string into a list of its letters before the tag rules saw it); save_scenario refused it.
    path = tmp_path / "cohort.json"
    path.write_text('{"patients": [{"patient_id": "P1"}]}', encoding="utf-8")
    with pytest.raises(InvalidInputError, match=r"tags=\['diabetes'\]"):
        store.import_scenario(path, name="cohort", tags="diabetes")  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match=r"tags=\['diabetes'\]"):
        store.import_scenario_from_json(path, name="cohort", tags="diabetes")  # type: ignore[arg-type]
    assert store.list_scenarios()["total_count"] == 0
    store.import_scenario(path, name="cohort", tags=["diabetes"])
    assert store.load_scenario("cohort")["tags"] == ["diabetes"]


NOT_A_LIST = [None, 0, 1.5, True, object()]


@pytest.mark.parametrize("value", NOT_A_LIST, ids=lambda v: type(v).__name__)
def test_a_list_argument_that_is_not_a_list_is_a_clear_error(store: ScenarioStore, value: object) -> None:
    # Each of these raised Python's "TypeError: 'int' object is not iterable" from deep inside.
    store.save_scenario("one", {"patients": [{"patient_id": "P1"}]})
    calls: list[tuple[str, Callable[[], object]]] = [
        ("entity_ids", lambda: store.remove_entities("one", "patients", value)),  # type: ignore[arg-type]
        ("sources", lambda: store.merge_scenarios(value, "merged")),  # type: ignore[arg-type]
        ("types", lambda: store.export_scenario("one", format="ndjson", types=value)),  # type: ignore[arg-type]
        ("types", lambda: store.load_frames("one", types=value)),  # type: ignore[arg-type]
    ]
    if value is not None:  # None is "no tags" / "all types" where it is allowed
        calls += [
            ("tags", lambda: store.save_scenario("two", {}, tags=value)),  # type: ignore[arg-type]
            ("tags", lambda: store.copy_scenario("one", "two", tags=value)),  # type: ignore[arg-type]
            ("tags", lambda: store.merge_scenarios(["one"], "two", tags=value)),  # type: ignore[arg-type]
            ("tags", lambda: store.update_scenario("one", add_tags=value)),  # type: ignore[arg-type]
            ("tags", lambda: store.update_scenario("one", remove_tags=value)),  # type: ignore[arg-type]
        ]
    else:
        calls = calls[:2]
    for label, call in calls:
        with pytest.raises(InvalidInputError, match=label):
            call()
    assert [s["name"] for s in store.list_scenarios()["scenarios"]] == ["one"]
    assert store.scenario_history("one")["total_count"] == 1


def test_types_given_as_a_generator_are_all_read(store: ScenarioStore) -> None:
    # The check that every type is a string read the generator up: load_frames returned no table.
    store.save_scenario("one", {"patients": [{"patient_id": "P1"}], "claims": [{"claim_id": "C1"}]})
    assert list(store.load_frames("one", types=(t for t in ["patients"]))) == ["patients"]


UUID_STEM = "6f1c2d3e-4b5a-4c6d-8e7f-901a2b3c4d5e"


def test_importing_a_nameless_file_whose_file_name_is_no_scenario_name_says_to_pass_a_name(
    store: ScenarioStore, tmp_path: Path
) -> None:
    # The error was the bare name rule ("scenario name '<uuid>' is a UUID ... choose a descriptive
    # name"), naming neither the file nor the way out: a name the caller never gave was refused.
    path = tmp_path / f"{UUID_STEM}.json"
    path.write_text('{"patients": [{"patient_id": "P1"}]}', encoding="utf-8")
    with pytest.raises(InvalidScenarioFileError, match=r"holds no name.*pass a name") as caught:
        store.import_scenario(path)
    assert str(path) in str(caught.value)
    store.import_scenario(path, name="cohort")
    assert store.load_scenario("cohort")["entities_by_type"] == {"patients": 1}


@pytest.mark.parametrize(
    ("stem", "expected"),
    [(UUID_STEM, f"legacy {UUID_STEM}"), ("n" * 240, "n" * 200), ("tab\tname", "tab name")],
    ids=["uuid", "long", "control"],
)
def test_a_legacy_file_whose_file_name_is_no_scenario_name_still_migrates(
    store: ScenarioStore, isolated_home: Path, stem: str, expected: str
) -> None:
    # A file without a name inside takes its file name; one named by its id (or 240 characters
    # long, or with a tab) failed to migrate on every run, and migration has no way to pass a name.
    folder = isolated_home / ".healthsim" / "scenarios"
    folder.mkdir(parents=True)
    (folder / f"{stem}.json").write_text('{"patients": [{"patient_id": "P1"}]}', encoding="utf-8")
    report = migrate_legacy_files(store)
    assert [(r.status, r.scenario_name) for r in report.files] == [("migrated", expected)], report.files[0].message
    assert store.load_scenario(expected)["entities_by_type"] == {"patients": 1}
    assert migrate_legacy_files(store).files[0].status == "already-migrated"


def test_a_taken_legacy_name_of_200_characters_migrates_under_a_shortened_one(
    store: ScenarioStore, isolated_home: Path
) -> None:
    # The second of two files named alike became "<name> (migrated)": 211 characters, refused.
    folder = isolated_home / ".healthsim" / "scenarios"
    folder.mkdir(parents=True)
    name = "c" * 200
    for i in (1, 2, 3):
        (folder / f"v{i}.json").write_text(json.dumps({"name": name, "patients": [{"patient_id": f"P{i}"}]}))
    report = migrate_legacy_files(store)
    assert [(r.status, r.scenario_name) for r in report.files] == [
        ("migrated", name),
        ("migrated", "c" * 189 + " (migrated)"),
        ("migrated", "c" * 187 + " (migrated 2)"),
    ], [r.message for r in report.files]


scenarios = st.dictionaries(entity_types, st.lists(entity, max_size=4), max_size=3)


def _appended(first: dict[str, list[Any]], then: dict[str, list[Any]], *, empty: bool) -> dict[str, list[Any]]:
    """``then``'s entities after ``first``'s, type by type, new types last (empty ones too if ``empty``:
    a merge keeps a source's empty type; an add keeps them when it adds anything at all)."""
    out = {t: list(items) for t, items in first.items()}
    for t, items in then.items():
        if items or empty:
            out[t] = out.get(t, []) + list(items)
    return out


@pytest.mark.slow  # ~0.5 s an example: a dozen writes and loads
@settings(
    max_examples=examples(15),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(first=scenarios, then=scenarios)
def test_every_edit_keeps_unusual_entities_exactly(
    store: ScenarioStore, first: dict[str, list[Any]], then: dict[str, list[Any]]
) -> None:
    # Copy, add (appending), merge, overwrite, an old version, restore and the trash all give back
    # exactly what was saved: values, key order, Python types (-0.0, big integers, unicode).
    def same(name: str, expected: dict[str, list[Any]], version: int | None = None) -> None:
        loaded = store.load_scenario(name, version=version)["entities"]
        assert json.dumps(loaded) == json.dumps(expected)  # key order, -0.0 and int vs float too
        assert loaded == expected

    run = uuid.uuid4().hex[:8]  # one store for every example: fresh names each time
    a, b = f"a-{run}", f"b-{run}"
    store.save_scenario(a, first)
    store.save_scenario(b, then)
    store.copy_scenario(a, f"copy-{run}")
    same(f"copy-{run}", first)
    store.merge_scenarios([a, b], f"merged-{run}")
    same(f"merged-{run}", _appended(first, then, empty=True))
    store.add_entities(a, then, upsert=False)
    same(a, _appended(first, then, empty=any(then.values())))
    store.save_scenario(a, then, overwrite=True)
    same(a, then)
    same(a, first, version=1)
    store.restore_scenario(a, 1)
    same(a, first)
    store.delete_scenario(a)
    store.restore_scenario(a)
    same(a, first)


@pytest.mark.parametrize("timeout", [10**20, float("inf")], ids=["huge", "inf"])
def test_a_huge_query_timeout_means_no_practical_limit(store: ScenarioStore, tmp_path: Path, timeout: float) -> None:
    # PostgreSQL's statement_timeout refused it ("Value exceeds integer range", raised as "please
    # report this as a bug"), and the time limit's timer thread died of an OverflowError.
    store.save_scenario("one", {"patients": [{"patient_id": "P1"}]})
    assert store.query("SELECT count(*) AS n FROM patients", timeout=timeout)["rows"] == [[1]]
    written = store.query_to_file("SELECT 1 AS a", tmp_path / "out.csv", timeout=timeout)
    assert written["rows_written"] == 1


def test_query_to_a_file_whose_name_is_not_utf8(store: ScenarioStore, tmp_path: Path) -> None:
    # A file name with an undecodable byte (b"caf\xe9.csv" arrives as "caf\udce9.csv") stopped
    # DuckDB's sandbox with a UnicodeEncodeError traceback while the request was sent to it; a
    # team store wrote the file.
    store.save_scenario("one", {"patients": [{"patient_id": "P1"}]})
    target = tmp_path / os.fsdecode(b"caf\xe9.csv")
    written = store.query_to_file("SELECT count(*) AS n FROM patients", target)
    assert written["rows_written"] == 1 and written["path"] == str(target)
    assert (tmp_path / os.fsdecode(b"caf\xe9.csv")).read_text(encoding="utf-8").splitlines() == ['"n"', "1"]


def test_parquet_export_to_a_folder_whose_name_is_not_utf8(store: ScenarioStore, tmp_path: Path) -> None:
    # DuckDB's Parquet writer takes its path as UTF-8 text: a folder name with an undecodable byte
    # was "DuckDB refused the operation ... please report this as a bug" on a DuckDB file and a
    # bare InvalidInputException traceback on a team store. CSV and JSON exports wrote it.
    store.save_scenario("one", {"patients": [{"patient_id": "P1", "gender": "F"}]})
    folder = store.export_scenario("one", tmp_path / os.fsdecode(b"caf\xe9"), format="parquet")
    assert folder == tmp_path / os.fsdecode(b"caf\xe9")
    with open(folder / "patients.parquet", "rb") as file:  # (pyarrow takes no such path either)
        assert pq.read_table(file).to_pylist()[0]["gender"] == "F"


def test_import_from_a_file_whose_name_is_not_utf8(store: ScenarioStore, tmp_path: Path) -> None:
    # The file's path goes into the scenario's provenance; with an undecodable byte in it the
    # import failed: "DuckDB refused the operation" on a file, a UnicodeEncodeError traceback on a
    # team store. The path is recorded with the byte escaped, as error messages write it.
    path = tmp_path / os.fsdecode(b"caf\xe9.json")
    path.write_text('{"patients": [{"patient_id": "P1"}]}', encoding="utf-8")
    store.import_scenario(path, name="cafe")
    loaded = store.load_scenario("cafe")
    assert loaded["entities"] == {"patients": [{"patient_id": "P1"}]}
    assert loaded["metadata"]["provenance"]["source_file"] == str(tmp_path) + "/caf\\udce9.json"
    with pytest.raises(InvalidScenarioFileError, match="holds no name"):  # the stem is no name either
        store.import_scenario(path)


def test_a_database_file_whose_name_is_not_utf8_is_a_clear_error(tmp_path: Path) -> None:
    # DuckDB cannot open such a path: a save raised "RuntimeError: std::bad_cast" and a load said
    # the scenario was not found.
    path = tmp_path / os.fsdecode(b"caf\xe9.duckdb")
    with pytest.raises(InvalidInputError, match=r"not valid UTF-8.*choose another") as caught:
        ScenarioStore(path).save_scenario("one", {"patients": [{"patient_id": "P1"}]})
    assert "caf\\udce9.duckdb" in str(caught.value)
    with pytest.raises(InvalidInputError, match="not valid UTF-8"):
        ScenarioStore(path).load_scenario("one")
    assert not path.exists()


@pytest.mark.parametrize("name", ["日本語" * 40, "😀" * 100], ids=["cjk", "emoji"])
def test_the_default_export_path_of_a_long_unicode_name_fits_the_file_system(store: ScenarioStore, name: str) -> None:
    # The default file name kept 120 characters of the name: 360-480 bytes, past the 255 bytes a
    # file name may have. Every export without a path failed ("too long ... choose a shorter
    # name", a name the user never gave); once ~/Downloads existed, a second CSV or Parquet export
    # failed with an OSError traceback ("File name too long", from checking the folder).
    store.save_scenario(name, {"patients": [{"patient_id": "P1"}]})
    for _ in range(2):
        for format in ("json", "ndjson", "parquet", "csv"):
            written = store.export_scenario(name, format=format)
            assert written.exists() and len(os.fsencode(written.name)) <= 255
        assert store.report_scenario(name).exists()


NON_ASCII_NAMES = ["Äpfel-Studie", "İstanbul cohort", "ΣΟΦΟΣ", "東京コホート", "ＡＢＣ trial"]


@pytest.mark.parametrize("deleted", [False, True], ids=["current", "trash"])
def test_a_scenario_is_found_by_its_own_non_ascii_name_and_tag(store: ScenarioStore, deleted: bool) -> None:
    # The search text and tag were lowercased in Python and the stored ones in SQL, which lowercase
    # differently: on a team store in the C locale (lower() of ASCII only) searching "Äpfel-Studie"
    # found nothing, and on DuckDB "İstanbul cohort" (Python: "i̇", DuckDB: "i") and "ΣΟΦΟΣ" (a
    # final sigma in Python only) found nothing either, by name, description or tag.
    for name in NON_ASCII_NAMES:
        store.save_scenario(name, {}, description=f"about {name}", tags=[f"tag {name}"])
        if deleted:
            store.delete_scenario(name)
    for name in NON_ASCII_NAMES:
        for search in (name, name[:4], f"about {name}"):
            found = store.list_scenarios(search=search, deleted=deleted)["scenarios"]
            assert [s["name"] for s in found] == [name], search
        found = store.list_scenarios(tag=f"tag {name}", deleted=deleted)["scenarios"]
        assert [s["name"] for s in found] == [name]
    # ASCII case still folds on both engines.
    assert store.list_scenarios(search="TRIAL", deleted=deleted)["total_count"] == 1


@pytest.mark.parametrize("form", ["upper", "braces", "urn", "hex"])
def test_a_deleted_scenario_is_found_by_its_id_in_any_form_the_others_take(store: ScenarioStore, form: str) -> None:
    # load, copy, export... take "{id}", "urn:uuid:id" and the 32 hex digits; restoring or purging
    # a deleted scenario by them said "not found" (only the plain and upper-case forms matched).
    sid = store.save_scenario("trashed", {"patients": [{"patient_id": "P1"}]})
    key = {"upper": sid.upper(), "braces": "{" + sid + "}", "urn": f"urn:uuid:{sid}", "hex": sid.replace("-", "")}[form]
    assert store.load_scenario(key)["name"] == "trashed"
    store.delete_scenario(key)
    assert store.restore_scenario(key)["scenario_id"] == sid
    store.delete_scenario(sid)
    assert store.delete_scenario(key, purge=True) is True
    assert store.list_scenarios(deleted=True)["total_count"] == 0


@pytest.mark.parametrize(
    ("file_name", "content"),
    [
        ("cohort.json", b'{"patients": [{"patient_id": "P1"}]}'),
        ("cohort.csv", b"patient_id,gender\nP1,F\n"),
        ("cohort.sqlite", b"SQLite format 3\x00" + bytes(4080)),
    ],
    ids=["json", "csv", "sqlite"],
)
def test_a_database_path_naming_a_file_of_other_data_is_refused(tmp_path: Path, file_name: str, content: bytes) -> None:
    # `healthsim --db cohort.json save ...` (for --from): DuckDB attached the JSON or CSV file as a
    # database of its own in memory, so the save "worked" into nothing and the next read said the
    # scenario was not found; a SQLite file made DuckDB try to download an extension.
    path = tmp_path / file_name
    path.write_bytes(content)
    store = ScenarioStore(path)
    with pytest.raises(DatabaseError, match=r"not a DuckDB database.*import"):
        store.save_scenario("one", {"patients": [{"patient_id": "P1"}]})
    with pytest.raises(DatabaseError, match="not a DuckDB database"):
        store.list_scenarios()
    assert path.read_bytes() == content


@pytest.mark.parametrize("given", ["", "   "], ids=["empty", "spaces"])
def test_an_empty_database_path_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, given: str) -> None:
    # `--db ""` opened the current folder ("Is a directory"); `--db "   "` saved into a file named
    # "   " in the current folder (HEALTHSIM_DB of spaces falls back to the default, trimmed).
    monkeypatch.chdir(tmp_path)
    with pytest.raises(InvalidInputError, match="database path is empty"):
        ScenarioStore(given).save_scenario("one", {"patients": [{"patient_id": "P1"}]})
    assert list(tmp_path.iterdir()) == [tmp_path / "home"]


def test_cli_db_given_the_scenario_file_by_mistake(tmp_path: Path) -> None:
    # The slip `--db cohort.json` for `--from cohort.json`: the save said "saved" or "not found",
    # now one line on stderr says what is wrong, exit 1, and the file is untouched.
    path = tmp_path / "cohort.json"
    path.write_text('{"patients": [{"patient_id": "P1"}]}', encoding="utf-8")
    result = CliRunner().invoke(app, ["--db", str(path), "save", "cohort", "--from", str(path)])
    assert result.exit_code == 1
    assert "not a DuckDB database" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert path.read_text(encoding="utf-8") == '{"patients": [{"patient_id": "P1"}]}'


@pytest.mark.parametrize("version", [True, 1.0, "1"], ids=["bool", "float", "text"])
def test_a_version_that_is_not_a_whole_number_is_refused_everywhere(store: ScenarioStore, version: object) -> None:
    # `True` and `1.0` equal 1: they read the current version when that was 1 (and failed
    # only when it was not), so a caller's slip went unnoticed.
    store.save_scenario("one", {"patients": [{"patient_id": "P1"}]})
    reads = {
        "load": lambda: store.load_scenario("one", version=version),  # type: ignore[arg-type]
        "summary": lambda: store.summarize_scenario("one", version=version),  # type: ignore[arg-type]
        "check": lambda: store.check_scenario("one", version=version),  # type: ignore[arg-type]
        "open": lambda: store.open_scenario("one", version=version).__enter__(),  # type: ignore[arg-type]
        "diff": lambda: store.diff_scenarios(("one", version), "one"),  # type: ignore[arg-type]
    }
    for what, read in reads.items():
        with pytest.raises(InvalidInputError, match="version must be a whole number"):
            read()
            pytest.fail(what)


@pytest.mark.parametrize("given", ["", "   "], ids=["empty", "spaces"])
def test_an_empty_output_path_is_refused(
    store: ScenarioStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, given: str
) -> None:
    # export_scenario(name, "") and report_scenario(name, "") wrote into the current folder.
    monkeypatch.chdir(tmp_path)
    store.save_scenario("one", {"patients": [{"patient_id": "P1"}]})
    for write in (
        lambda: store.export_scenario("one", given),
        lambda: store.report_scenario("one", given),
        lambda: store.query_to_file("SELECT 1 AS a", given, format="csv"),
    ):
        with pytest.raises(InvalidInputError, match="is empty; give a file or folder"):
            write()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["home"]
