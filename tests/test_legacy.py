"""Migration of ~/.healthsim JSON files: the library, and the script run as a real process."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from healthsim.state import ScenarioStore
from healthsim.state.legacy import discover_legacy_files, migrate_legacy_files, migration_status
from helpers import legacy_files
from helpers.database import never_written
from helpers.paths import HERE

SCRIPT = HERE.parent / "scripts" / "migrate_json_to_duckdb.py"


@pytest.fixture
def legacy_home(isolated_home: Path) -> Path:
    root = isolated_home / ".healthsim"
    (root / "scenarios").mkdir(parents=True)
    (root / "workspaces").mkdir()
    legacy_files.legacy_export(root / "scenarios" / "cohort.json")
    legacy_files.top_level_lists(root / "scenarios" / "lists.json")
    legacy_files.workspace(root / "workspaces" / "ws.json")
    (root / "scenarios" / "notes.txt").write_text("not a scenario")
    return root


def snapshot(folder: Path) -> dict[str, tuple[str, float]]:
    """Every file below ``folder``: content hash and modification time."""
    return {
        str(p.relative_to(folder)): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime)
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def run_script(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ},
        stdin=None if stdin is not None else subprocess.DEVNULL,
    )


def lines_starting(text: str, prefix: str) -> int:
    return sum(line.startswith(prefix) for line in text.splitlines())


def test_discovery(legacy_home: Path) -> None:
    assert [p.name for p in discover_legacy_files()] == ["cohort.json", "lists.json", "ws.json"]


def test_migrate_backs_up_imports_verifies_and_is_idempotent(legacy_home: Path, store: ScenarioStore) -> None:
    originals = snapshot(legacy_home)
    report = migrate_legacy_files(store)
    assert report.ok and report.count("migrated") == 3
    assert {r.scenario_name for r in report.files} == {"legacy-export-cohort", "legacy-lists", "legacy-workspace"}
    cohort = next(r for r in report.files if r.path.name == "cohort.json")
    assert cohort.counts == {
        "patients": 3,
        "encounters": 3,
        "diagnoses": 3,
        "lab_results": 3,
        "claims": 2,
        "prescriptions": 2,
    }
    assert report.backup_dir == legacy_home / "scenarios_backup"
    for name in ("scenarios/cohort.json", "scenarios/lists.json", "workspaces/ws.json"):
        assert (report.backup_dir / name).read_bytes() == (legacy_home / name).read_bytes()
    after = snapshot(legacy_home)
    assert all(after[name] == value for name, value in originals.items())  # originals untouched

    loaded = store.load_scenario("legacy-workspace")
    assert loaded["metadata"]["provenance"]["operation"] == "migration"
    assert len(loaded["metadata"]["provenance"]["source_sha256"]) == 64

    again = migrate_legacy_files(store)
    assert again.ok and again.count("already-migrated") == 3 and again.count("migrated") == 0
    assert again.backup_dir is None  # nothing to import, nothing to back up
    assert store.list_scenarios()["total_count"] == 3
    assert migration_status(store) == {"found": 3, "migrated": 3, "pending": 0}


def test_recognised_by_content_not_name(legacy_home: Path, store: ScenarioStore) -> None:
    migrate_legacy_files(store)
    shutil.copy(legacy_home / "scenarios" / "cohort.json", legacy_home / "scenarios" / "renamed-copy.json")
    report = migrate_legacy_files(store)
    renamed = next(r for r in report.files if r.path.name == "renamed-copy.json")
    assert renamed.status == "already-migrated" and renamed.scenario_name == "legacy-export-cohort"
    edited = json.loads((legacy_home / "scenarios" / "lists.json").read_text())
    edited["care_gaps"].append({"gap_id": "GAP-2"})
    (legacy_home / "scenarios" / "lists-v2.json").write_text(json.dumps(edited))
    report = migrate_legacy_files(store)
    v2 = next(r for r in report.files if r.path.name == "lists-v2.json")
    assert v2.status == "migrated"
    assert v2.scenario_name == "legacy-lists (migrated)"  # the name was taken: never overwritten
    assert store.load_scenario("legacy-lists")["entities_by_type"]["care_gaps"] == 1
    assert store.load_scenario("legacy-lists (migrated)")["entities_by_type"]["care_gaps"] == 2


def test_bad_file_is_reported_and_others_migrate(legacy_home: Path, store: ScenarioStore) -> None:
    (legacy_home / "scenarios" / "broken.json").write_text('{"name": "broken", "entities": {"patients": [{"a": 1,}]}}')
    report = migrate_legacy_files(store)
    assert not report.ok
    broken = next(r for r in report.files if r.path.name == "broken.json")
    assert broken.status == "failed" and "line 1 column" in broken.message and "broken.json" in broken.message
    assert report.count("migrated") == 3
    again = migrate_legacy_files(store)
    assert next(r for r in again.files if r.path.name == "broken.json").status == "failed"  # reported again


def test_dry_run_changes_nothing_on_disk(legacy_home: Path, store: ScenarioStore) -> None:
    before = snapshot(legacy_home)
    report = migrate_legacy_files(store, dry_run=True)
    assert report.count("would-migrate") == 3
    assert snapshot(legacy_home) == before
    assert not (legacy_home / "scenarios_backup").exists() and never_written(store.path)


def test_dry_run_does_not_upgrade_a_legacy_database(legacy_home: Path, tmp_path: Path) -> None:
    import legacy_db

    db = tmp_path / "old.duckdb"
    legacy_db.build(str(db))
    digest = hashlib.sha256(db.read_bytes()).hexdigest()
    report = migrate_legacy_files(ScenarioStore(db), dry_run=True)
    assert report.count("would-migrate") == 3
    assert hashlib.sha256(db.read_bytes()).hexdigest() == digest


@pytest.mark.slow  # runs the installed program in processes
def test_script_status_dry_run_and_run(legacy_home: Path, store: ScenarioStore) -> None:
    status = run_script("--status")
    assert status.returncode == 0 and "3 legacy file(s) found, 0 already in" in status.stdout

    dry = run_script("--dry-run")
    assert dry.returncode == 0 and lines_starting(dry.stdout, "would migrate ") == 3
    assert "Dry run, nothing changed: 3 found, 3 would migrate." in dry.stdout
    assert never_written(store.path)

    declined = run_script()  # stdin closed: counts as no
    assert declined.returncode == 1 and "nothing was changed" in declined.stdout
    assert never_written(store.path) and not (legacy_home / "scenarios_backup").exists()

    answered_no = run_script(stdin="n\n")
    assert answered_no.returncode == 1 and never_written(store.path)

    answered_yes = run_script(stdin="y\n")
    assert answered_yes.returncode == 0, answered_yes.stdout + answered_yes.stderr
    assert lines_starting(answered_yes.stdout, "migrated ") == 3 and "Backup of every file:" in answered_yes.stdout

    twice = run_script("--yes", "--json")
    assert twice.returncode == 0
    report = json.loads(twice.stdout)
    assert report["already_migrated"] == 3 and report["migrated"] == 0


def test_script_with_source_and_db_and_a_failure(tmp_path: Path) -> None:
    source = tmp_path / "old-tool"
    source.mkdir()
    legacy_files.workspace(source / "ws.json")
    (source / "bad.json").write_text("[1, 2, 3]")
    db = tmp_path / "elsewhere" / "h.duckdb"
    result = run_script("--source", str(source), "--db", str(db), "--yes")
    assert result.returncode == 1
    assert "FAILED" in result.stdout and "top level is an array" in result.stdout
    assert lines_starting(result.stdout, "migrated ") == 1
    assert ScenarioStore(db).list_scenarios()["total_count"] == 1


def test_nothing_to_do(isolated_home: Path) -> None:
    result = run_script()
    assert result.returncode == 0 and "nothing to do" in result.stdout


def test_a_workspace_file_of_megabytes_migrates(isolated_home: Path) -> None:
    """Issue 7, defect 1: a 1.5 MB pretty-printed workspace file was reported FAILED."""
    folder = isolated_home / ".healthsim" / "workspaces"
    folder.mkdir(parents=True)
    path = folder / "big.json"
    doc = legacy_files.workspace(path)
    template = doc["entities"]["patients"][0]
    doc["entities"]["patients"] = [
        {**template, "entity_id": f"MRN-{i:06d}", "data": {**template["data"], "patient_id": f"MRN-{i:06d}"}}
        for i in range(3_000)
    ]
    path.write_text(json.dumps(doc, indent=2), encoding="utf-8")
    assert 1 << 20 < path.stat().st_size < 4 << 20
    store = ScenarioStore()
    report = migrate_legacy_files(store)
    assert [(r.status, r.message) for r in report.files] == [("migrated", "")]
    loaded = store.load_scenario("legacy-workspace")
    patients = loaded["entities"]["patients"]
    assert len(patients) == 3_000 and patients[-1]["patient_id"] == "MRN-002999"
    assert patients[0]["_provenance"] == template["provenance"]  # unwrapped, nothing dropped
    assert loaded["metadata"]["provenance"]["source_format"] == "healthsim-legacy-workspace"
