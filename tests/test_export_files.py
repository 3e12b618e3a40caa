"""Exports and query outputs meeting the file system: a full disk, a file size limit, a
writer killed with ``kill -9`` or stopped with Ctrl-C, and the temporary files such a
writer leaves (exchange/partials.py). Real disks, real processes, real signals."""

from __future__ import annotations

import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from healthsim.state import DatabaseError, InvalidInputError, QueryError, ScenarioStore
from healthsim.state._engines.postgres.idle import close_idle_connections
from healthsim.state.partials import remove_stale_partials, temp_prefix
from helpers.pg_server import PgServer
from helpers.processes import ctrl_c_as_at_a_terminal

CLI = [sys.executable, "-c", "from healthsim.cli import main; main()"]


def noise(count: int) -> list[dict[str, Any]]:
    """Entities whose text does not compress: Parquet files about as large as the text."""
    return [{"patient_id": f"P{i}", "noise": os.urandom(48).hex(), "more": os.urandom(48).hex()} for i in range(count)]


def hidden(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def mounted_tmpfs(folder: Path, size: str) -> None:
    """Mount a real tmpfs of ``size`` at ``folder``; skip the test where that is not allowed."""
    folder.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root (the file size limit test covers the rest)")
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A real 1 MiB file system (tmpfs), mounted for this test."""
    folder = tmp_path / "small"
    mounted_tmpfs(folder, "1m")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def cohort() -> dict[str, list[dict[str, Any]]]:
    """The full-disk tests' scenario: 20,000 patients of noise (~4 MB) and a note."""
    return {"patients": noise(20_000), "notes": [{"id": "n1"}]}


@pytest.fixture(scope="session")
def cohort_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A DuckDB file holding "cohort", saved once per worker and copied by each full-disk test (the
    save was most of each test's time); the copy is the file as saved, nothing built beside it yet."""
    path = tmp_path_factory.mktemp("cohort") / "cohort.duckdb"
    ScenarioStore(path).save_scenario("cohort", cohort())
    return path


@pytest.fixture(scope="session")
def cohort_database(pg_server: PgServer) -> Iterator[str]:
    """The name of a team store database holding "cohort", saved once per worker and copied by each
    full-disk test of the team store (``CREATE DATABASE … TEMPLATE``: its tables and rows as saved)."""
    url = pg_server.new_database()
    ScenarioStore(url).save_scenario("cohort", cohort())
    name = url.rsplit("/", 1)[1]
    yield name
    pg_server.drop_database(name)


def cohort_store(engine_name: str, db_path: Path, request: pytest.FixtureRequest) -> ScenarioStore:
    """A store of ``engine_name`` of this test's own, holding a copy of the saved "cohort"."""
    if engine_name == "duckdb":
        db_path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(request.getfixturevalue("cohort_file"), db_path)
        return ScenarioStore(db_path)
    server: PgServer = request.getfixturevalue("pg_server")
    template = request.getfixturevalue("cohort_database")
    close_idle_connections()  # (a database is copied only while nothing is connected to it)
    url = server.new_database(copy_of=template)
    request.addfinalizer(lambda: server.drop_database(url.rsplit("/", 1)[1]))
    return ScenarioStore(url)


def test_a_full_disk_while_building_frames_is_said_plainly(tmp_path: Path) -> None:
    # load_frames builds Parquet files beside the database: was "DuckDB refused the operation".
    folder = tmp_path / "disk"
    mounted_tmpfs(folder, "3m")
    try:
        store = ScenarioStore(folder / "h.duckdb")
        patients = [{"patient_id": f"P{i}", "noise": os.urandom(40).hex()} for i in range(15_000)]
        store.save_scenario("c", {"patients": patients})  # fits, with its write-ahead log
        with pytest.raises(DatabaseError) as caught:
            store.load_frames("c")
        assert str(caught.value) == (
            f"cannot build the tables of scenario 'c' in '{folder / 'h.duckdb.frames'}': No space left on device; "
            "free some space on that disk and try again"
        )
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


@pytest.mark.parametrize("format", ["parquet", "csv"])
@pytest.mark.parametrize("engine_name", ["duckdb", "postgresql"])
def test_a_full_disk_is_said_plainly_and_keeps_the_earlier_export(
    small_disk: Path, db_path: Path, request: pytest.FixtureRequest, format: str, engine_name: str
) -> None:
    # Was: "DuckDB refused the operation (IOException …) please report this as a bug" on
    # DuckDB, "unexpected IOException" on the team store.
    store = cohort_store(engine_name, db_path, request)
    out = small_disk / "out"
    store.export_scenario("cohort", out, format=format, types=["notes"])  # fits
    with pytest.raises(InvalidInputError) as caught:
        store.export_scenario("cohort", out, format=format)
    assert str(caught.value) == (
        f"cannot export to '{out}': no space left on the disk (the disk is full: the disk holding "
        f"'{small_disk}'); free some space or choose an output path on another disk; nothing was written"
    )
    assert sorted(p.name for p in small_disk.iterdir()) == ["out"]  # no temporary folder left
    assert sorted(p.name for p in out.iterdir()) == [".healthsim-export.json", f"notes.{format}"]


@pytest.mark.parametrize("format", ["parquet", "csv", "ndjson"])
@pytest.mark.parametrize("engine_name", ["duckdb", "postgresql"])
def test_a_query_output_onto_a_full_disk_says_so(
    small_disk: Path, db_path: Path, request: pytest.FixtureRequest, format: str, engine_name: str
) -> None:
    # Was "cannot write the rows: No space left on device" (which disk, what to do?).
    store = cohort_store(engine_name, db_path, request)  # (its note is not queried)
    with pytest.raises(QueryError) as caught:
        store.query_to_file("SELECT * FROM patients", small_disk / f"rows.{format}")
    assert str(caught.value) == (
        f"cannot write the rows: no space left on the disk (the disk is full: the disk holding '{small_disk}'); "
        "free some space or choose an output path on another disk"
    )
    assert list(small_disk.iterdir()) == []


def _limit_file_size() -> None:  # in the child, before it runs: files may not grow past 2 MiB
    resource.setrlimit(resource.RLIMIT_FSIZE, (2 << 20, 2 << 20))
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past it fails with EFBIG instead


@pytest.mark.slow
@pytest.mark.parametrize("format", ["parquet", "csv"])
def test_a_file_size_limit_is_said_plainly_in_one_line(db_path: Path, tmp_path: Path, format: str) -> None:
    store = ScenarioStore(db_path)
    store.save_scenario("cohort", {"patients": noise(40_000)})
    out = tmp_path / "out"
    done = subprocess.run(
        [*CLI, "--db", str(db_path), "export", "cohort", "-f", format, "-o", str(out)],
        capture_output=True,
        text=True,
        preexec_fn=_limit_file_size,
        timeout=120,
    )
    assert done.returncode == 1, done.stderr
    assert done.stderr == (
        f"error: cannot export to '{out}': a file grew past the size this process may write (its file size "
        "limit, ulimit -f) or the file system allows; raise the limit, or export fewer types or to another "
        "disk; nothing was written\n"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["home"]


# --- temporary files of writers that are gone -------------------------------------------------


def dead_pid() -> int:
    """The id of a process that ran and is gone."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_only_leftovers_of_writers_gone_from_this_machine_are_removed(tmp_path: Path) -> None:
    target = tmp_path / "out"
    host = temp_prefix(target).split("@")[1].rstrip(".")
    gone, alive = dead_pid(), os.getpid()
    stale_folder = tmp_path / f".out.{gone}@{host}.abcd1234.partial"
    stale_file = tmp_path / f".out.{gone}@{host}.abcd_234.partial"
    stale_old = tmp_path / f".out.{gone}@{host}.{'a' * 32}.old"
    running = tmp_path / f".out.{alive}@{host}.abcd1234.partial"
    elsewhere = tmp_path / f".out.{gone}@another-machine.abcd1234.partial"
    legacy_old = tmp_path / ".out.x1y2z3w4.partial"  # an earlier release's, two days old
    legacy_new = tmp_path / ".out.q1q2q3q4.partial"  # an earlier release's, maybe still running
    other_target = tmp_path / f".outer.{gone}@{host}.abcd1234.partial"
    for folder in (stale_folder, stale_old, running, elsewhere, legacy_old, legacy_new, other_target):
        folder.mkdir()
        (folder / "patients.parquet").write_bytes(b"half")
    stale_file.write_bytes(b"half")
    two_days_ago = time.time() - 2 * 24 * 3600
    os.utime(legacy_old, (two_days_ago, two_days_ago))
    removed = remove_stale_partials(target)
    assert sorted(p.name for p in removed) == sorted(p.name for p in (stale_folder, stale_file, stale_old, legacy_old))
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [*(p.name for p in (running, elsewhere, legacy_new, other_target)), "home"]
    )
    assert host == "".join(c for c in socket.gethostname().split(".")[0] if c.isalnum() or c == "-")[:32]


def test_the_next_export_and_query_remove_what_a_killed_one_left(db_path: Path, tmp_path: Path) -> None:
    store = ScenarioStore(db_path)
    store.save_scenario("s", {"patients": [{"patient_id": "A"}]})
    prefix = temp_prefix(tmp_path / "out").replace(str(os.getpid()), str(dead_pid()))
    left = tmp_path / f"{prefix}abcd1234.partial"
    left.mkdir()
    (left / "patients.csv").write_text("half")
    store.export_scenario("s", tmp_path / "out", format="csv")
    prefix = temp_prefix(tmp_path / "rows.csv").replace(str(os.getpid()), str(dead_pid()))
    (tmp_path / f"{prefix}abcd1234.partial").write_text("half")
    store.query_to_file("SELECT entity_id FROM patients", tmp_path / "rows.csv")
    assert hidden(tmp_path) == []


@pytest.fixture(scope="session")
def signals_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A database holding "big", 400,000 patients: saved once per worker, copied by each signal test.

    The save took several seconds and four tests made the same one; a copy of the closed file is the
    same database (the version cache beside it, if any, is copied too).
    """
    path = tmp_path_factory.mktemp("signals") / "big.duckdb"
    ScenarioStore(path).save_scenario("big", {"patients": noise(400_000)})
    return path


def _scenario_for_signals(db_path: Path, template: Path) -> ScenarioStore:
    db_path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    shutil.copyfile(template, db_path)
    cache = template.with_name(template.name + ".frames")
    if cache.exists():
        shutil.copytree(cache, db_path.with_name(db_path.name + ".frames"))
    return ScenarioStore(db_path)


def _start_export(db_path: Path, out: Path, format: str) -> tuple[subprocess.Popen[str], Path]:
    """An export in a child process, once its temporary folder is there (and the folder)."""
    child = subprocess.Popen(
        [*CLI, "--db", str(db_path), "export", "big", "-f", format, "-o", str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and child.poll() is None:
        staging = [p for p in out.parent.iterdir() if p.name.startswith(f".{out.name}.{child.pid}@")]
        if staging and any(staging[0].iterdir()):  # writing its first file
            return child, staging[0]
        time.sleep(0.005)
    child.kill()
    pytest.fail(f"the export ended before it could be stopped: {child.communicate()}")


@pytest.mark.slow
@pytest.mark.parametrize("format", ["parquet", "csv"])
def test_kill_9_during_an_export_leaves_a_folder_the_next_export_removes(
    db_path: Path, tmp_path: Path, format: str, signals_template: Path
) -> None:
    store = _scenario_for_signals(db_path, signals_template)
    out = tmp_path / "exports" / "out"
    out.parent.mkdir()
    child, staging = _start_export(db_path, out, format)
    child.kill()
    child.communicate()
    assert staging.exists() and not out.exists()  # what kill -9 leaves
    assert store.export_scenario("big", out, format=format, types=["patients"]) == out
    assert sorted(p.name for p in out.parent.iterdir()) == ["out"]  # the leftover is gone


@pytest.mark.slow
@pytest.mark.parametrize("format", ["parquet", "csv"])
def test_ctrl_c_during_an_export_says_interrupted_in_one_line(
    db_path: Path, tmp_path: Path, format: str, signals_template: Path
) -> None:
    # Was "error: unexpected RuntimeError: Query interrupted (please report this)".
    _scenario_for_signals(db_path, signals_template)
    out = tmp_path / "exports" / "out"
    out.parent.mkdir()
    with ctrl_c_as_at_a_terminal():  # (the export's process takes SIGINT as a terminal's Ctrl-C)
        child, _ = _start_export(db_path, out, format)
    child.send_signal(signal.SIGINT)
    stdout, stderr = child.communicate(timeout=60)
    assert (child.returncode, stdout, stderr) == (130, "", "interrupted; nothing further was changed\n")
    assert list(out.parent.iterdir()) == []


def test_a_manifest_that_is_not_ours_or_is_damaged_protects_the_folder(db_path: Path, tmp_path: Path) -> None:
    store = ScenarioStore(db_path)
    store.save_scenario("s", {"patients": [{"patient_id": "A"}]})
    out = store.export_scenario("s", tmp_path / "out", format="csv")
    (out / "mine.txt").write_text("keep")
    (out / ".healthsim-export.json").write_text('{"kind": "healthsim-export", "files": [{"a": 1}, 5]}')
    with pytest.raises(InvalidInputError, match="this earlier export also holds 'mine.txt', 'patients.csv'"):
        store.export_scenario("s", out, format="csv")
    for text in ("not json", '{"kind": "other"}'):  # not an export of ours: the export goes inside
        (out / ".healthsim-export.json").write_text(text)
        assert store.export_scenario("s", out, format="csv") == out / "s-csv"
    assert (out / "mine.txt").read_text() == "keep"
