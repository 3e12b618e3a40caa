"""Import: every file shape, name and id rules, overwrite, and every kind of bad file."""

from __future__ import annotations

import json
import os
import re
import socket
import time
import uuid
from pathlib import Path

import pytest

from healthsim.state import (
    InvalidScenarioFileError,
    InvalidScenarioNameError,
    ScenarioExistsError,
    ScenarioStore,
    import_scenario_from_json,
    load_scenario,
)
from healthsim.state.entities import ENTITY_ID_NAMESPACE
from helpers import legacy_files
from helpers.database import never_written, orphan_rows, sql_rows
from helpers.paths import NO_SUCH_USER, no_such_user
from helpers.sample import diabetes_cohort


def write(path: Path, text: str | bytes) -> Path:
    if isinstance(text, str):
        text = text.encode("utf-8")
    path.write_bytes(text)
    return path


def test_import_of_an_export_keeps_everything(store: ScenarioStore, tmp_path: Path) -> None:
    entities = {**diabetes_cohort(4), "members": [], "claims": legacy_files.claims()}
    sid = store.save_scenario("origin", entities, "desc", ["a", "b"])
    original = store.load_scenario("origin")
    path = store.export_scenario_to_json("origin", tmp_path / "origin.json")
    store.delete_scenario("origin")
    # In the trash the id is still taken (its history stays restorable): the import is new.
    again = store.import_scenario_from_json(path)
    assert again != sid and [e["scenario_id"] for e in store.list_scenarios(deleted=True)["scenarios"]] == [sid]
    store.delete_scenario(again, purge=True)  # (by id: the name is the trashed one's too)
    store.delete_scenario(sid, purge=True)

    assert store.import_scenario_from_json(path) == sid  # the file's id, unused here
    loaded = store.load_scenario("origin")
    assert loaded["entities"] == entities and list(loaded["entities"]) == list(entities)
    assert loaded["description"] == "desc" and loaded["tags"] == ["a", "b"]
    assert loaded["created_at"] == original["created_at"]
    provenance = loaded["metadata"]["provenance"]
    assert provenance["operation"] == "import"
    assert provenance["source_format"] == "healthsim-1.0"
    assert provenance["source_file"] == str(path)
    assert provenance["lineage"][-1]["operation"] == "save"  # earlier hops, flat, oldest first


def test_name_priority_and_id_reuse(store: ScenarioStore, tmp_path: Path) -> None:
    sid = store.save_scenario("named-in-file", {"patients": [{"patient_id": "A"}]})
    path = store.export_scenario_to_json("named-in-file", tmp_path / "file-stem.json")
    copy_id = store.import_scenario_from_json(path, name="copy")
    assert copy_id != sid  # the file's id is taken by the original
    assert store.load_scenario("copy")["entities"] == {"patients": [{"patient_id": "A"}]}
    nameless = write(tmp_path / "stem-name.json", json.dumps({"entities": {"patients": []}}))
    store.import_scenario_from_json(nameless)
    assert store.load_scenario("stem-name")["entity_count"] == 0


def test_duplicate_name_and_overwrite(store: ScenarioStore, tmp_path: Path) -> None:
    sid = store.save_scenario("target", {"patients": [{"patient_id": "old"}]})
    created = store.load_scenario("target")["created_at"]
    path = write(
        tmp_path / "t.json",
        json.dumps(
            {"name": "target", "created_at": "2020-01-01T00:00:00Z", "entities": {"patients": [{"patient_id": "new"}]}}
        ),
    )
    with pytest.raises(ScenarioExistsError, match="'target' already exists"):
        store.import_scenario_from_json(path)
    time.sleep(0.01)
    assert store.import_scenario_from_json(path, overwrite=True) == sid
    loaded = store.load_scenario("target")
    assert loaded["entities"] == {"patients": [{"patient_id": "new"}]}
    assert loaded["created_at"] == created  # overwrite keeps the scenario's id and creation time


def test_legacy_export_shape(store: ScenarioStore, tmp_path: Path) -> None:
    doc = legacy_files.legacy_export(tmp_path / "old-export.json")
    store.import_scenario_from_json(tmp_path / "old-export.json")
    loaded = store.load_scenario("legacy-export-cohort")
    assert loaded["entities"] == doc["entities"]
    assert loaded["tags"] == ["diabetes", "legacy"]
    assert loaded["created_at"] == "2024-12-26T10:30:00Z"
    assert loaded["metadata"]["provenance"]["source_format"] == "healthsim-legacy-export"
    rx = sql_rows(store.path, "SELECT entity_id FROM scenario_entities WHERE entity_type = 'prescriptions' ORDER BY id")
    assert rx[0][0] == uuid.uuid5(ENTITY_ID_NAMESPACE, "prescriptions:RX-7000")


def test_legacy_workspace(store: ScenarioStore, tmp_path: Path) -> None:
    doc = legacy_files.workspace(tmp_path / "workspace.json")
    sid = store.import_scenario_from_json(tmp_path / "workspace.json")
    loaded = store.load_scenario("legacy-workspace")
    assert loaded["description"] == "Workspace saved by the JSON-file HealthSim"
    assert loaded["tags"] == ["workspace", "diabetes"]
    assert loaded["created_at"] == "2024-11-02T08:00:00Z"
    assert list(loaded["entities"]) == ["patients", "diagnoses", "lab_results"]
    wrapped = doc["entities"]["diagnosis"][0]
    diagnosis = loaded["entities"]["diagnoses"][0]
    assert diagnosis == {**wrapped["data"], "_provenance": wrapped["provenance"], "_entity_id": wrapped["entity_id"]}
    patient = loaded["entities"]["patients"][0]
    assert patient["_entity_id"] == patient["patient_id"]
    meta = loaded["metadata"]
    assert meta["source_metadata"]["workspace_id"] == "ws-2024-11-02-001"
    assert meta["source_metadata"]["schema_version"] == "2.0"
    assert meta["source_fields"]["provenance_summary"] == {"generated": 6, "loaded": 0, "derived": 0}
    assert meta["provenance"]["source_format"] == "healthsim-legacy-workspace"
    ids = sql_rows(
        store.path,
        "SELECT entity_id FROM scenario_entities WHERE scenario_id = ? AND entity_type = 'diagnoses' ORDER BY id",
        [sid],
    )
    assert ids[0][0] == uuid.uuid5(ENTITY_ID_NAMESPACE, f"diagnoses:{wrapped['entity_id']}")


def test_top_level_lists(store: ScenarioStore, tmp_path: Path) -> None:
    doc = legacy_files.top_level_lists(tmp_path / "lists.json")
    store.import_scenario_from_json(tmp_path / "lists.json")
    loaded = store.load_scenario("legacy-lists")
    assert loaded["entities"] == {
        "patients": doc["patients"] + doc["patient"],  # singular and plural merged, in order
        "encounters": doc["encounters"],
        "care_gaps": doc["care_gaps"],
    }
    assert loaded["metadata"]["source_fields"] == {
        "generator": "healthsim-cli 0.5",
        "warnings": ["two patients share an address"],
    }
    assert loaded["metadata"]["provenance"]["source_format"] == "healthsim-legacy-lists"


def test_pretty_printed_export_uses_the_general_reader(store: ScenarioStore, tmp_path: Path) -> None:
    entities = {"patients": [{"patient_id": "A", "big": 2**80, "name": {"given": "Ana"}}]}
    store.save_scenario("pretty", entities)
    exported = store.export_scenario_to_json("pretty", tmp_path / "p.json")
    pretty = write(tmp_path / "pretty.json", json.dumps(json.loads(exported.read_text()), indent=4))
    store.import_scenario_from_json(pretty, name="pretty-copy")
    assert store.load_scenario("pretty-copy")["entities"] == entities


def test_line_layout_with_odd_entity_lines_is_kept_verbatim(store: ScenarioStore, tmp_path: Path) -> None:
    store.save_scenario("odd", {"patients": [{"patient_id": "A"}, {"patient_id": "B"}]})
    exported = store.export_scenario_to_json("odd", tmp_path / "odd.json")
    text = exported.read_text().replace('{"patient_id":"B"}', '{"patient_id": "\\u0042", "n": 1.0E2}')
    edited = write(tmp_path / "edited.json", text)
    store.import_scenario_from_json(edited, name="edited")
    assert store.load_scenario("edited")["entities"]["patients"][1] == {"patient_id": "B", "n": 100.0}
    again = store.export_scenario_to_json("edited", tmp_path / "again.json")
    assert '{"patient_id": "\\u0042", "n": 1.0E2}' in again.read_text()  # kept as written


def test_version_checks(store: ScenarioStore, tmp_path: Path) -> None:
    for version in ("1.0", "1.7"):
        path = write(
            tmp_path / f"v{version}.json",
            json.dumps({"schema_version": version, "name": f"v{version}", "entities": {}}),
        )
        store.import_scenario_from_json(path)
    for bad in ("2.0", "0.9", 1.0, None):
        path = write(tmp_path / "bad-version.json", json.dumps({"schema_version": bad, "name": "nope", "entities": {}}))
        with pytest.raises(InvalidScenarioFileError, match=rf"schema_version {bad!r} is not supported"):
            store.import_scenario_from_json(path)
    # A workspace's own metadata.schema_version is not the file format's version.
    legacy_files.workspace(tmp_path / "ws.json")
    store.import_scenario_from_json(tmp_path / "ws.json")


BAD_FILES = [
    (
        "invalid-json",
        '{"name": "x", "entities": {"patients": [{"a": 1,}]}}',
        r"\$\.entities\.patients\[0\] \(line 1 column \d+\)",
        "invalid JSON",
    ),
    ("empty", "", None, "the file is empty"),
    ("whitespace", "  \n\t ", None, "the file is empty"),
    ("top-level-array", '[{"patient_id": "A"}]', r"\$ \(line 1 column 1\)", "top level is an array"),
    ("entities-not-object", '{"entities": [1, 2]}', r"\$\.entities", "must be an object"),
    (
        "entity-list-not-array",
        '{"entities": {"patients": {"patient_id": "A"}}}',
        r"\$\.entities\.patients",
        "must be a list",
    ),
    (
        "entity-not-object",
        '{"entities": {"patients": [{"patient_id": "A"}, "B"]}}',
        r"\$\.entities\.patients\[1\] \(line 1 column 49\)",
        "must be a JSON object",
    ),
    ("nan", '{"entities": {"patients": [{"v": NaN}]}}', r"\$\.entities\.patients\[0\]", "NaN is not a JSON number"),
    (
        "infinity",
        '{"entities": {"patients": [{"v": -Infinity}]}}',
        r"\$\.entities\.patients\[0\]",
        "-Infinity is not a JSON number",
    ),
    (
        "overflow-to-infinity",
        '{"entities": {"patients": [{"v": 1e400}]}}',
        r"\$\.entities\.patients\[0\]",
        "field $.v is inf",
    ),
    (
        "duplicate-key",
        '{"entities": {"patients": [{"id": 1, "id": 2}]}}',
        r"\$\.entities\.patients\[0\]",
        "key 'id' twice",
    ),
    ("duplicate-top-key", '{"name": "a", "name": "b", "entities": {}}', r"\$ \(line 1", "'name' appears twice"),
    ("duplicate-type", '{"entities": {"patients": [], "patients": []}}', r"\$\.entities", "'patients' appears twice"),
    (
        "deep-nesting",
        '{"entities": {"patients": [{"v": ' + "[" * 150 + "]" * 150 + "}]}}",
        r"\$\.entities\.patients\[0\]",
        "deeper than 100",
    ),
    (
        "hostile-nesting",
        '{"entities": {"patients": [' + "[" * 200_000,
        r"\$\.entities\.patients\[0\]",
        "deeper than 100",
    ),
    (
        "long-integer",
        '{"entities": {"patients": [{"v": ' + "7" * 4301 + "}]}}",
        r"\$\.entities\.patients\[0\]",
        "longer than 4300 digits",
    ),
    ("random-bytes", bytes(range(256)) * 64, "byte", "not UTF-8"),
    ("binary-prefix", b"\x00\x01garbage", r"\$ \(line 1 column 1\)", "not a JSON object"),
    ("trailing-data", '{"entities": {}} {"more": 1}', r"\$ \(line 1", "after the end"),
    ("truncated", '{"name": "t", "entities": {"patients": [{"patient_id": "A"}', r"\$\.entities\.patients", "expected"),
    (
        "bad-type-name",
        '{"entities": {"1patients": []}}',
        r"\$\.entities\.1patients|\$\.entities\[",
        "not a valid type name",
    ),
    (
        "lone-surrogate",
        '{"entities": {"patients": [{"v": "\\ud800"}]}}',
        r"\$\.entities\.patients\[0\]",
        "lone surrogate",
    ),
    ("bad-tags", '{"tags": "diabetes", "entities": {}}', r"\$\.tags", "single string"),
    ("bad-created-at", '{"created_at": "yesterday", "entities": {}}', r"\$\.created_at", "not an ISO 8601"),
    ("uuid-name", '{"name": "' + str(uuid.uuid4()) + '", "entities": {}}', r"\$\.name", "pass a name"),
    ("nan-in-metadata", '{"metadata": {"x": 1e999}, "entities": {}}', r"\$\.metadata\.x", "is inf"),
]


@pytest.mark.parametrize(("content", "where", "problem"), [c[1:] for c in BAD_FILES], ids=[c[0] for c in BAD_FILES])
def test_bad_files_are_refused_with_a_location(
    store: ScenarioStore, tmp_path: Path, content: str | bytes, where: str | None, problem: str
) -> None:
    store.save_scenario("bystander", {"patients": [{"patient_id": "B"}]})
    path = write(tmp_path / "bad.json", content)
    started = time.monotonic()
    with pytest.raises(InvalidScenarioFileError) as info:
        store.import_scenario_from_json(path)  # named by the file, else "bad"
    assert time.monotonic() - started < 1.0  # hostile input is refused quickly
    message = str(info.value)
    assert str(path) in message and problem in message.replace("\n", " ")
    if where:
        assert info.value.location and re.search(where, info.value.location), message
    assert message.endswith("nothing was saved")
    assert [s["name"] for s in store.list_scenarios()["scenarios"]] == ["bystander"]
    assert orphan_rows(store.path) == 0


@pytest.mark.slow
def test_bad_entity_deep_in_a_large_export_file(store: ScenarioStore, tmp_path: Path) -> None:
    store.save_scenario("big", {"patients": [{"patient_id": f"P{i}"} for i in range(130_000)]})
    exported = store.export_scenario_to_json("big", tmp_path / "big.json")
    lines = exported.read_bytes().split(b"\n")
    lines[120_002] = b'{"patient_id":"P120000","v":NaN},'
    broken = write(tmp_path / "broken.json", b"\n".join(lines))
    with pytest.raises(InvalidScenarioFileError) as info:
        store.import_scenario_from_json(broken, name="broken")
    assert "$.entities.patients[120000] (line 120003 column 1)" in str(info.value)
    assert "NaN is not a JSON number" in str(info.value)
    assert {s["name"] for s in store.list_scenarios()["scenarios"]} == {"big"}
    assert sql_rows(store.path, "SELECT count(*) FROM scenario_entities")[0][0] == 130_000
    assert orphan_rows(store.path) == 0


def test_missing_and_unreadable_files(store: ScenarioStore, tmp_path: Path) -> None:
    with pytest.raises(InvalidScenarioFileError, match="no such file"):
        store.import_scenario_from_json(tmp_path / "missing.json")
    with pytest.raises(InvalidScenarioFileError, match="is a folder"):
        store.import_scenario_from_json(tmp_path)
    with pytest.raises(InvalidScenarioNameError):
        store.import_scenario_from_json(write(tmp_path / "ok.json", '{"entities": {}}'), name="  ")


def test_module_function_uses_default_database(store: ScenarioStore, tmp_path: Path) -> None:
    # HEALTHSIM_DB names the store's database, on either engine.
    assert never_written(store.path)
    path = write(
        tmp_path / "module.json", json.dumps({"name": "via-module", "entities": {"Patient": [{"patient_id": "A"}]}})
    )
    import_scenario_from_json(path)
    assert load_scenario("via-module")["entities"] == {"patients": [{"patient_id": "A"}]}
    assert not never_written(store.path)  # DuckDB: the file HEALTHSIM_DB names exists
    assert store.load_scenario("via-module")["entities"] == {"patients": [{"patient_id": "A"}]}


# --------------------------------------------------------------------------- issue 7


def cohort_document(patients: int) -> dict[str, object]:
    """A scenario file's document with non-ASCII text, nested lists of objects and nulls."""
    return {
        "schema_version": "1.0",
        "name": "pretty",
        "description": "Pretty-printed by json.dumps",
        "tags": ["pretty"],
        "entities": {
            "patients": [
                {
                    "patient_id": f"MRN-{i:06d}",
                    "name": {"given": ["Zoë"], "family": "Müller"},
                    "birth_date": "1950-01-02",
                    "deceased": None,
                    "n": i,
                }
                for i in range(patients)
            ],
            "claims": [
                {"claim_id": f"CLM-{i}", "lines": [{"line": 1, "charge": 150.0}, {"line": 2, "charge": 35.5}]}
                for i in range(patients // 2)
            ],
        },
    }


@pytest.mark.parametrize("layout", ["indent-2", "one-line", "crlf", "bom"])
# Each layout at ~1.5 MiB in the quick run, and at ~3 MiB too in the whole suite.
@pytest.mark.parametrize("patients", [8_000, pytest.param(14_000, marks=pytest.mark.slow)])
def test_valid_files_of_megabytes_import_in_every_layout(
    store: ScenarioStore, tmp_path: Path, layout: str, patients: int
) -> None:
    """Issue 7, defect 1: files between 1 and 2 MiB (and larger) pretty-printed with
    indent=2 or on one line failed with "expected ',' or ']', found the end of the file"."""
    document = cohort_document(patients)
    text = json.dumps(document) if layout == "one-line" else json.dumps(document, indent=2)
    data = text.replace("\n", "\r\n").encode() if layout == "crlf" else text.encode()
    if layout == "bom":  # a UTF-8 byte-order mark, as some Windows tools write
        data = b"\xef\xbb\xbf" + data
    path = write(tmp_path / "cohort.json", data)
    assert 1 << 20 < path.stat().st_size < 6 << 20
    store.import_scenario_from_json(path)
    loaded = store.load_scenario("pretty")
    assert loaded["entities"] == document["entities"]
    assert loaded["description"] == document["description"] and loaded["tags"] == ["pretty"]


def test_an_export_with_a_byte_order_mark_imports(store: ScenarioStore, tmp_path: Path) -> None:
    store.save_scenario("marked", diabetes_cohort(3))
    path = store.export_scenario_to_json("marked", tmp_path / "marked.json")
    write(path, b"\xef\xbb\xbf" + path.read_bytes())
    store.import_scenario_from_json(path, name="marked-again")
    assert store.load_scenario("marked-again")["entities"] == store.load_scenario("marked")["entities"]


@pytest.mark.parametrize("gap", [0, 70_000, 1 << 20])
def test_data_after_an_export_is_refused_at_any_distance(store: ScenarioStore, tmp_path: Path, gap: int) -> None:
    """Issue 7, defect 6: two concatenated exports imported as the first one when the
    second started more than 64 KiB after the first's closing brackets."""
    store.save_scenario("first", diabetes_cohort(3))
    exported = store.export_scenario_to_json("first", tmp_path / "first.json").read_bytes()
    path = write(tmp_path / "two.json", exported + b" " * gap + exported)
    with pytest.raises(InvalidScenarioFileError, match="after the end of the JSON object"):
        store.import_scenario_from_json(path, name="two")
    assert [s["name"] for s in store.list_scenarios()["scenarios"]] == ["first"]
    assert orphan_rows(store.path) == 0


def test_top_level_lists_that_are_not_entities_are_kept_as_fields(store: ScenarioStore, tmp_path: Path) -> None:
    """Issue 7, defect 7: "@context" refused the whole file; "warnings": [] became a type."""
    document = {
        "@context": ["https://schema.org"],
        "warnings": [],
        "codes": [1, 2, 3],
        "@graph": [{"kind": "not an entity type name", "n": i} for i in range(20_000)],  # read in batches
        "patients": [{"patient_id": "A"}],
        "members": [],
    }
    store.import_scenario_from_json(write(tmp_path / "linked.json", json.dumps(document, indent=2)))
    loaded = store.load_scenario("linked")
    assert loaded["entities"] == {"patients": [{"patient_id": "A"}], "members": []}
    assert loaded["metadata"]["source_fields"] == {
        "@context": ["https://schema.org"],
        "warnings": [],
        "codes": [1, 2, 3],
        "@graph": document["@graph"],
    }


@pytest.mark.slow
@pytest.mark.duckdb_only  # (engine-neutral code; 105 exports and imports: its PostgreSQL run added ~5 s to the suite)
def test_provenance_stays_flat_however_often_a_scenario_travels(store: ScenarioStore, tmp_path: Path) -> None:
    """Issue 7, defect 5: each export → import nested the provenance one level deeper, so
    after about 100 hops the file could no longer be imported."""
    store.save_scenario("traveller", {"patients": [{"patient_id": "A"}]})
    name = "traveller"
    for hop in range(105):
        path = store.export_scenario_to_json(name, tmp_path / "hop.json")
        name = f"traveller-{hop}"
        store.import_scenario_from_json(path, name=name)
    provenance = store.load_scenario(name)["metadata"]["provenance"]
    assert provenance["operation"] == "import"
    lineage = provenance["lineage"]
    assert len(lineage) == 105 and lineage[0]["operation"] == "save"
    assert all(hop["operation"] == "import" for hop in lineage[1:])
    assert not any(isinstance(value, (dict, list)) for hop in lineage for value in hop.values())


def test_a_nested_provenance_of_earlier_exports_is_flattened(store: ScenarioStore, tmp_path: Path) -> None:
    tower: dict[str, object] = {"operation": "save", "at": "2025-01-01T00:00:00Z"}
    for hop in range(3):
        tower = {"operation": "import", "source_file": f"/f{hop}.json", "source_provenance": tower}
    document = {"schema_version": "1.0", "name": "old", "metadata": {"provenance": tower}, "entities": {}}
    store.import_scenario_from_json(write(tmp_path / "old.json", json.dumps(document)))
    lineage = store.load_scenario("old")["metadata"]["provenance"]["lineage"]
    assert [hop["operation"] for hop in lineage] == ["save", "import", "import", "import"]
    assert [hop.get("source_file") for hop in lineage] == [None, "/f0.json", "/f1.json", "/f2.json"]


@pytest.mark.slow
def test_fields_after_the_entities_are_taken_in_one_read(store: ScenarioStore, tmp_path: Path) -> None:
    """A file whose description, tags and metadata follow its entities, large enough to
    be staged in several transactions: the scenario gets them all."""
    patients = [{"patient_id": f"P{i}"} for i in range(130_000)]
    document = {
        "name": "late-fields",
        "entities": {"patients": patients},
        "description": "given last",
        "tags": ["late"],
        "generator": {"seed": 7},
    }
    store.import_scenario_from_json(write(tmp_path / "late.json", json.dumps(document, indent=1)))
    loaded = store.load_scenario("late-fields")
    assert loaded["entities"]["patients"] == patients
    assert loaded["description"] == "given last" and loaded["tags"] == ["late"]
    assert loaded["metadata"]["source_fields"] == {"generator": {"seed": 7}}


def test_a_name_or_id_after_the_entities_decides_too(store: ScenarioStore, tmp_path: Path) -> None:
    store.save_scenario("taken", {"patients": []})
    late_name = {"entities": {"patients": [{"patient_id": "A"}]}, "name": "taken"}
    with pytest.raises(ScenarioExistsError, match="'taken'"):
        store.import_scenario_from_json(write(tmp_path / "stem.json", json.dumps(late_name, indent=2)))
    sid = str(uuid.uuid4())
    late_id = {"name": "with-id", "entities": {"patients": [{"patient_id": "A"}]}, "scenario_id": sid}
    assert store.import_scenario_from_json(write(tmp_path / "id.json", json.dumps(late_id, indent=2))) == sid
    assert store.load_scenario("with-id")["entities"] == late_id["entities"]
    assert [s["name"] for s in store.list_scenarios()["scenarios"]] == ["with-id", "taken"]


@pytest.mark.timeout(30)  # were the pipe opened, the import would wait for a writer forever
def test_import_of_a_pipe_a_socket_or_a_folder_says_what_it_is(
    store: ScenarioStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A pipe was "a folder, not a JSON file". Sockets and links to pipes are refused alike.
    pipe = tmp_path / "pipe.json"
    os.mkfifo(pipe)
    (tmp_path / "link.json").symlink_to(pipe)
    monkeypatch.chdir(tmp_path)  # a Unix socket's path is limited to ~108 bytes: bind it relative
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind("socket.json")
    folder = tmp_path / "folder.json"
    folder.mkdir()
    for name in ("pipe.json", "link.json", "socket.json"):
        with pytest.raises(InvalidScenarioFileError) as caught:
            store.import_scenario_from_json(tmp_path / name)
        assert str(caught.value) == (
            f"cannot import '{tmp_path / name}': this is not a regular file (a pipe, device or socket); "
            "give the path of a JSON file; nothing was saved"
        )
    with pytest.raises(InvalidScenarioFileError) as caught:
        store.import_scenario_from_json(folder)
    assert str(caught.value) == (
        f"cannot import '{folder}': this is a folder, not a JSON file; give the path of a file in it; nothing was saved"
    )
    assert store.list_scenarios()["scenarios"] == []


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        pytest.param("nul", r"cannot import '.*/a\\x00b\.json': the path holds a NUL character \(\\x00\)", id="nul"),
        pytest.param(
            "user",
            rf"cannot import '~{NO_SUCH_USER}/x\.json': there is no user '{NO_SUCH_USER}', "
            rf"so '~{NO_SUCH_USER}' names no folder",
            id="unknown-user",
        ),
        pytest.param("long", r"cannot import '.*/y{300}\.json': the path or a name in it is too long", id="long"),
        pytest.param(
            "surrogate", r"cannot import '.*/\\ud800\.json': the path holds a lone surrogate", id="lone-surrogate"
        ),
        pytest.param(
            "long-folder", r"cannot import '.*/y{300}/x\.json': the path or a name in it is too long", id="long-folder"
        ),
    ],
)
def test_import_of_a_path_no_file_can_have_names_it(
    store: ScenarioStore, tmp_path: Path, case: str, expected: str
) -> None:
    # Were raw RuntimeError and OSError ("unexpected error"), and "no such file" for a NUL or a surrogate.
    no_such_user()  # (skipped where such a user exists)
    path = {
        "nul": f"{tmp_path}/a\x00b.json",
        "user": f"~{NO_SUCH_USER}/x.json",
        "long": f"{tmp_path}/{'y' * 300}.json",
        "surrogate": f"{tmp_path}/\ud800.json",
        "long-folder": f"{tmp_path}/{'y' * 300}/x.json",
    }[case]
    with pytest.raises(InvalidScenarioFileError, match=expected) as caught:
        store.import_scenario_from_json(path)
    assert str(caught.value).endswith("nothing was saved")
    assert store.list_scenarios()["scenarios"] == []


WRAPPED = [
    {"patient_id": "P0"},  # a plain entity before the first wrapper
    {"entity_id": "e1", "data": {"patient_id": "P1"}},
    {"entity_id": "e2", "entity_type": "patient", "data": {"patient_id": "P2"}, "provenance": {"by": "hand"}},
]


@pytest.mark.parametrize("indent", [None, 1], ids=["one-line", "pretty"])
@pytest.mark.parametrize("version", ["first", "last", "absent"])
def test_add_from_a_file_reads_its_entities_as_import_does(
    store: ScenarioStore, tmp_path: Path, version: str, indent: int | None
) -> None:
    """Bug 2: a 1.0 file whose schema_version followed its entities had its wrapped
    entities unwrapped by ``add --from`` (as legacy workspace entries), not by import."""
    document: dict[str, object] = {"entities": {"patients": WRAPPED}}
    if version == "first":
        document = {"schema_version": "1.0", **document}
    elif version == "last":
        document["schema_version"] = "1.0"
    path = write(tmp_path / "wrapped.json", json.dumps(document, indent=indent))
    store.import_scenario_from_json(path, name="imported")
    store.save_scenario("added", {"patients": []})
    store.add_entities_from_json("added", path)
    store.add_entities_from_json("created", path, create=True)
    imported = store.load_scenario("imported")["entities"]
    assert store.load_scenario("added")["entities"] == imported
    assert store.load_scenario("created")["entities"] == imported
    if version == "absent":
        assert imported["patients"][1] == {"patient_id": "P1", "_entity_id": "e1"}
    else:
        assert imported == {"patients": WRAPPED}


def test_add_from_a_legacy_workspace_unwraps_as_import_does(store: ScenarioStore, tmp_path: Path) -> None:
    legacy_files.workspace(tmp_path / "ws.json")
    store.import_scenario_from_json(tmp_path / "ws.json", name="imported")
    store.add_entities_from_json("added", tmp_path / "ws.json", create=True)
    assert store.load_scenario("added")["entities"] == store.load_scenario("imported")["entities"]


@pytest.mark.parametrize("where", ["first", "last"])
@pytest.mark.parametrize("wrapped", [False, True], ids=["plain", "wrapped"])
def test_add_from_a_file_of_an_unsupported_version_is_refused(
    store: ScenarioStore, tmp_path: Path, where: str, wrapped: bool
) -> None:
    """Bug 2: ``add --from`` took a schema_version 2.0 file that import refuses."""
    entities = {"patients": WRAPPED if wrapped else [{"patient_id": "P9"}]}
    document: dict[str, object] = {"entities": entities}
    document = {"schema_version": "2.0", **document} if where == "first" else {**document, "schema_version": "2.0"}
    path = write(tmp_path / "v2.json", json.dumps(document))
    store.save_scenario("b", {"patients": [{"patient_id": "A"}]})
    with pytest.raises(
        InvalidScenarioFileError, match=r"at \$\.schema_version: schema_version '2\.0' is not supported"
    ):
        store.import_scenario_from_json(path, name="c")
    with pytest.raises(
        InvalidScenarioFileError, match=r"at \$\.schema_version: schema_version '2\.0' is not supported"
    ):
        store.add_entities_from_json("b", path)
    assert store.load_scenario("b")["entities"] == {"patients": [{"patient_id": "A"}]}  # nothing added
    assert store.scenario_history("b")["versions"][0]["version"] == 1


def test_source_fields_in_the_file_metadata_are_merged_not_replaced(store: ScenarioStore, tmp_path: Path) -> None:
    """Bug 3a: a 1.0 file's metadata.source_fields was replaced by the file's own
    top-level members; both are kept, the file's metadata winning a clash."""
    document = {
        "schema_version": "1.0",
        "name": "sf",
        "metadata": {"source_fields": {"generator": "old", "extra": "from metadata"}},
        "entities": {"patients": [{"patient_id": "P1"}]},
        "extra": 2,
        "extra_2": 3,
    }
    store.import_scenario_from_json(write(tmp_path / "sf.json", json.dumps(document)))
    kept = store.load_scenario("sf")["metadata"]["source_fields"]
    assert kept == {"generator": "old", "extra": "from metadata", "extra_2": 3, "extra_3": 2}
    # metadata.source_fields that is not an object: the members go beside it.
    document = {**document, "name": "sf2", "metadata": {"source_fields": "a note"}}
    store.import_scenario_from_json(write(tmp_path / "sf2.json", json.dumps(document)))
    metadata = store.load_scenario("sf2")["metadata"]
    assert metadata["source_fields"] == "a note"
    assert metadata["source_fields_2"] == {"extra": 2, "extra_2": 3}


def test_a_wrapper_never_overwrites_a_field_of_its_data(store: ScenarioStore, tmp_path: Path) -> None:
    """Bug 3b: the wrapper's id, provenance and type replaced the data's own
    ``_wrapper_*`` fields, or were dropped when the data had an ``_entity_type``."""
    patients = [
        {"entity_id": "W", "data": {"patient_id": "P1", "_entity_id": "D", "_wrapper_entity_id": "USER"}},
        {
            "entity_id": "P3",
            "provenance": {"w": 1},
            "data": {"patient_id": "P3", "_provenance": {"d": 1}, "_wrapper_provenance": "U"},
        },
        {"entity_id": "P2", "entity_type": "encounter", "data": {"patient_id": "P2", "_entity_type": "mine"}},
        {"entity_id": "P4", "entity_type": "encounter", "data": {"patient_id": "P4", "_entity_type": "encounter"}},
        {
            "entity_id": "P5",
            "entity_type": "encounter",
            "data": {"patient_id": "P5", "_entity_type": "x", "_wrapper_entity_type": "y"},
        },
    ]
    document = {"metadata": {"workspace_id": "w1"}, "entities": {"patients": patients}}
    store.import_scenario_from_json(write(tmp_path / "ws.json", json.dumps(document)), name="ws")
    stored = store.load_scenario("ws")["entities"]["patients"]
    assert stored == [
        {"patient_id": "P1", "_entity_id": "D", "_wrapper_entity_id": "USER", "_wrapper_entity_id_2": "W"},
        {
            "patient_id": "P3",
            "_provenance": {"d": 1},
            "_wrapper_provenance": "U",
            "_wrapper_provenance_2": {"w": 1},
            "_entity_id": "P3",
        },
        {"patient_id": "P2", "_entity_type": "mine", "_entity_id": "P2", "_wrapper_entity_type": "encounter"},
        {"patient_id": "P4", "_entity_type": "encounter", "_entity_id": "P4"},
        {
            "patient_id": "P5",
            "_entity_type": "x",
            "_wrapper_entity_type": "y",
            "_entity_id": "P5",
            "_wrapper_entity_type_2": "encounter",
        },
    ]


def test_a_lineage_that_is_not_a_list_is_kept(store: ScenarioStore, tmp_path: Path) -> None:
    """Bug 3c: a provenance's ``lineage`` that was not a list was dropped."""
    provenance = {
        "operation": "save",
        "lineage": "hand-written note",
        "source_provenance": {"operation": "x", "lineage": {"a": 1}},
    }
    document = {"schema_version": "1.0", "name": "lin", "metadata": {"provenance": provenance}, "entities": {}}
    store.import_scenario_from_json(write(tmp_path / "lin.json", json.dumps(document)))
    lineage = store.load_scenario("lin")["metadata"]["provenance"]["lineage"]
    assert lineage == [{"operation": "x", "lineage": {"a": 1}}, {"operation": "save", "lineage": "hand-written note"}]
