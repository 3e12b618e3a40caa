"""Where the database is, its permissions, and sharing it with other processes."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from healthsim.state import (
    DatabaseError,
    DatabaseLockedError,
    InvalidInputError,
    ScenarioStore,
    ServerUnavailableError,
    list_scenarios,
    load_scenario,
    save_scenario,
)
from healthsim.state._engines.duckdb.connection import lock_timeout
from healthsim.state._engines.postgres.server import TeamDatabase
from healthsim.state.database import connect, resolve_db_path
from helpers.database import hold_database
from helpers.paths import no_such_user


def test_default_path_is_under_home(monkeypatch: pytest.MonkeyPatch, isolated_home: Path) -> None:
    monkeypatch.delenv("HEALTHSIM_DB")
    assert resolve_db_path() == isolated_home / ".healthsim" / "healthsim.duckdb"
    save_scenario("home", {})
    assert (isolated_home / ".healthsim" / "healthsim.duckdb").exists()


def test_env_var_is_read_at_each_call(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HEALTHSIM_DB", str(tmp_path / "one.duckdb"))
    save_scenario("in-one", {})
    monkeypatch.setenv("HEALTHSIM_DB", str(tmp_path / "two.duckdb"))
    assert list_scenarios()["total_count"] == 0
    save_scenario("in-two", {})
    monkeypatch.setenv("HEALTHSIM_DB", str(tmp_path / "one.duckdb"))
    assert [s["name"] for s in list_scenarios()["scenarios"]] == ["in-one"]
    assert load_scenario("in-one")["name"] == "in-one"


def test_tilde_is_expanded(monkeypatch: pytest.MonkeyPatch, isolated_home: Path) -> None:
    monkeypatch.setenv("HEALTHSIM_DB", "~/custom/h.duckdb")
    assert resolve_db_path() == isolated_home / "custom" / "h.duckdb"


def test_owner_only_permissions(db_path: Path) -> None:
    save_scenario("private", {"patients": [{"patient_id": "A"}]})
    assert stat.S_IMODE(db_path.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE(db_path.stat().st_mode) == 0o600


@pytest.mark.parametrize(("raw", "expected"), [("", 30.0), ("2.5", 2.5), ("0", 0.0)])
def test_lock_timeout_values(monkeypatch: pytest.MonkeyPatch, raw: str, expected: float) -> None:
    monkeypatch.setenv("HEALTHSIM_LOCK_TIMEOUT", raw)
    assert lock_timeout() == expected


@pytest.mark.parametrize("raw", ["soon", "-1", "nan"])
def test_bad_lock_timeout(monkeypatch: pytest.MonkeyPatch, raw: str) -> None:
    monkeypatch.setenv("HEALTHSIM_LOCK_TIMEOUT", raw)
    with pytest.raises(InvalidInputError, match="HEALTHSIM_LOCK_TIMEOUT"):
        lock_timeout()


def test_not_a_database_file(tmp_path: Path) -> None:
    path = tmp_path / "notes.duckdb"
    path.write_text("these are my notes, not a database\n" * 200)
    with pytest.raises(DatabaseError, match="notes.duckdb"):
        ScenarioStore(path).list_scenarios()
    assert path.read_text().startswith("these are my notes")


def test_locked_database_times_out_with_a_clear_error(
    store: ScenarioStore, db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store.save_scenario("before", {})
    holder = hold_database(db_path, 60)
    try:
        monkeypatch.setenv("HEALTHSIM_LOCK_TIMEOUT", "0.5")
        started = time.monotonic()
        with pytest.raises(DatabaseLockedError) as info:
            store.save_scenario("blocked", {})
        waited = time.monotonic() - started
        assert 0.5 <= waited < 5
        assert str(db_path) in str(info.value) and "another process" in str(info.value)
    finally:
        holder.kill()
        holder.wait()
    assert [s["name"] for s in store.list_scenarios()["scenarios"]] == ["before"]


@pytest.mark.slow
def test_locked_database_waits_for_release(
    store: ScenarioStore, db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store.save_scenario("before", {})
    holder = hold_database(db_path, 1.0)
    try:
        monkeypatch.setenv("HEALTHSIM_LOCK_TIMEOUT", "20")
        started = time.monotonic()
        store.save_scenario("after-wait", {"patients": [{"patient_id": "A"}]})
        assert time.monotonic() - started >= 0.5  # it really waited for the other process
    finally:
        holder.kill()
        holder.wait()
    assert store.load_scenario("after-wait")["entity_count"] == 1


def test_idle_process_holds_no_lock(store: ScenarioStore, db_path: Path) -> None:
    store.save_scenario("mine", {"patients": [{"patient_id": "A"}]})
    store.load_scenario("mine")
    store.list_scenarios()
    # This process is alive and has used the file; another process can take it read-write.
    code = (
        "import sys, duckdb; con = duckdb.connect(sys.argv[1]); "
        "con.execute(\"INSERT INTO scenario_tags VALUES (999, gen_random_uuid(), 'x')\"); "
        "con.execute('DELETE FROM scenario_tags WHERE id = 999'); print('ok')"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, str(db_path)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ},
    )
    assert result.stdout.strip() == "ok", result.stderr


@pytest.mark.parametrize(
    ("db", "shown"),
    [
        (Path("postgresql://u:secret@h/db"), "postgresql:/u:***@h/db"),  # Path collapses "//"
        ("file:///tmp/h.duckdb", "file:///tmp/h.duckdb"),
        ("https://u:secret@h/db", "https://u:***@h/db"),
    ],
)
def test_url_is_refused_and_nothing_is_created(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, db: str | Path, shown: str
) -> None:
    # A URL was taken as a relative path: folders named after it, password included.
    monkeypatch.chdir(tmp_path)
    store = ScenarioStore(db)
    for operation in (lambda: store.save_scenario("x", {"patients": [{"patient_id": "A"}]}), store.list_scenarios):
        with pytest.raises(InvalidInputError) as caught:
            operation()
        message = str(caught.value)
        assert "secret" not in message and f"database {shown!r} is a URL" in message, message
        assert "DuckDB file path" in message and "postgresql:// URL" in message
    assert sorted(p.name for p in tmp_path.iterdir()) == ["home"]  # the fixture's home only


@pytest.mark.parametrize(
    ("db", "named"),
    [
        ("postgresql://u:secret@h/db", "database 'db' on h:5432"),
        ("postgres://u:secret@127.0.0.1:1/db?sslmode=disable", "database 'db' on 127.0.0.1:1"),
        ("postgresql://127.0.0.1:1/db?user=u&password=secret", "database 'db' on 127.0.0.1:1"),
        # libpq's query parameters name the host, port and database it connects to.
        ("postgresql://u:secret@/db?host=127.0.0.1&port=1", "database 'db' on 127.0.0.1:1"),
        ("postgresql://u:secret@127.0.0.1:1/db?dbname=other", "database 'other' on 127.0.0.1:1"),
    ],
)
def test_a_team_store_that_cannot_be_reached_is_named_without_its_password(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, db: str, named: str
) -> None:
    monkeypatch.chdir(tmp_path)
    store = ScenarioStore(db)
    assert "secret" not in repr(store) and "secret" not in str(store.path)
    for operation in (lambda: store.save_scenario("x", {"patients": [{"patient_id": "A"}]}), store.list_scenarios):
        with pytest.raises(ServerUnavailableError) as caught:
            operation()
        message = str(caught.value)
        assert "secret" not in message and named in message and "\n" not in message, message
    assert sorted(p.name for p in tmp_path.iterdir()) == ["home"]


def test_a_url_password_with_a_slash_is_refused_without_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(InvalidInputError) as caught:
        ScenarioStore("postgresql://u:sec/ret@h/db").list_scenarios()
    # Where a password holding "/" ends is unclear, so everything after the user is hidden.
    assert "sec" not in str(caught.value) and "postgresql://u:***@… is not a usable" in str(caught.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["home"]


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://u:secret@h/db", "postgresql://u@h:6000/db"),  # PGPORT
        ("postgres://h:6543/db?user=ann&password=secret", "postgresql://ann@h:6543/db"),
        ("postgresql:///db?host=10.0.0.1&port=7&user=u", "postgresql://u@10.0.0.1:7/db"),
        ("postgresql://u@h/db?dbname=other", "postgresql://u@h:6000/other"),
        ("postgresql://u:p%40ss%2Fw@[::1]:5/d%20b", "postgresql://u@[::1]:5/d b"),
        ("postgresql://u@h1:1,h2:2/db", "postgresql://u@h1,h2:1/db"),  # several hosts: the first port
        ("postgresql://", "postgresql://envuser@envhost:6000/envdb"),  # libpq's environment defaults
        ("postgresql://u@/?port=1", "postgresql://u@envhost:1/envdb"),
    ],
)
def test_team_urls_are_read_as_libpq_reads_them(monkeypatch: pytest.MonkeyPatch, url: str, shown: str) -> None:
    for name, value in {"PGHOST": "envhost", "PGPORT": "6000", "PGDATABASE": "envdb", "PGUSER": "envuser"}.items():
        monkeypatch.setenv(name, value)
    team = TeamDatabase.parse(url)
    assert team.shown == shown and "secret" not in repr(team)


def test_team_urls_without_names_use_the_login_name(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("PGHOST", "PGPORT", "PGDATABASE", "PGUSER"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("LOGNAME", "carla")  # getpass.getuser() reads it first
    assert TeamDatabase.parse("postgresql://").shown == "postgresql://carla@localhost:5432/carla"


@pytest.mark.parametrize("url", ["postgresql://u:p@ss@h/db", "postgresql://u:pa/ss@h:5/db"])
def test_a_password_libpq_would_split_is_refused_without_showing_it(url: str) -> None:
    with pytest.raises(InvalidInputError) as caught:
        TeamDatabase.parse(url)
    message = str(caught.value)
    assert "ss" not in message.replace("ssword", "") and "percent-encoded (%40, %2F)" in message, message


def test_a_team_url_with_a_port_that_is_not_a_number() -> None:
    with pytest.raises(InvalidInputError, match="its port is not a number"):
        TeamDatabase.parse("postgresql://h:abc/db")


def test_a_database_under_a_home_that_names_no_user_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HEALTHSIM_DB", f"~{no_such_user()}/h.duckdb")
    with pytest.raises(InvalidInputError, match="starts with a '~' that names no home folder"):
        ScenarioStore().list_scenarios()


def test_url_in_the_environment_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HEALTHSIM_DB", " mysql://user:secret@db.example.org/healthsim ")
    with pytest.raises(InvalidInputError) as caught:
        save_scenario("x", {})
    message = str(caught.value)
    assert message.startswith("HEALTHSIM_DB=mysql://user:***@db.example.org/healthsim is a URL"), message
    assert "secret" not in message and "the only URLs taken are postgresql:// ones" in message
    assert "set HEALTHSIM_DB to a DuckDB file path" in message
    assert sorted(p.name for p in tmp_path.iterdir()) == ["home"]


@pytest.mark.parametrize("path", ["C:/data/h.duckdb", "md:h.duckdb", "h:duckdb", "./postgresql/h.duckdb"])
def test_paths_that_are_not_urls(path: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert resolve_db_path(path) == tmp_path / path.removeprefix("./")


def test_redact_url_over_redacts_rather_than_leaks() -> None:
    from healthsim.state.database import redact_url

    assert redact_url("postgresql://u:p@ss@h/db") == "postgresql://u:***@…"  # where it ends is unclear
    assert redact_url("postgresql://u:ab?Hunter2#x@h:5432/db") == "postgresql://u:***@h:5432/db"  # libpq's reading
    assert redact_url("postgresql://u@h/db") == "postgresql://u@h/db"  # no password: nothing hidden
    assert (
        redact_url("mysql://h/db?sslmode=require&x=1&password=abc&y") == "mysql://h/db?sslmode=require&…&password=***&…"
    )
    assert "secret" not in redact_url("http://[::1:secret@h")
    assert redact_url("/data/h.duckdb") == "/data/h.duckdb"  # a path is shown as it is


def test_database_folder_that_cannot_be_created(tmp_path: Path) -> None:
    # Was a raw FileExistsError.
    blocker = tmp_path / "file.txt"
    blocker.write_text("not a folder")
    with pytest.raises(DatabaseError, match="cannot create the folder of database .*file.txt/sub/h.duckdb"):
        ScenarioStore(blocker / "sub" / "h.duckdb").save_scenario("x", {})
    assert blocker.read_text() == "not a folder"


def test_duckdb_error_inside_an_operation_ends_in_the_exception_tree(db_path: Path) -> None:
    with (
        pytest.raises(DatabaseError, match="DuckDB refused the operation .*no_such_table.*please report"),
        connect(db_path, create=True) as con,
    ):
        assert con is not None
        con.execute("SELECT * FROM no_such_table")
