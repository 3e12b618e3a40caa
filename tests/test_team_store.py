"""The team store on a real PostgreSQL server: what only a server shows.

Clients in separate processes at once (writers of one scenario take turns, writers of
others do not wait), a client killed mid-write, the server's errors named without the
password, transfers between a DuckDB file and the server, and the command line and MCP
server on it. The store, exchange, editing, history, summary and analytics tests run on
both engines already (see ``conftest.py``).
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest
from mcp import Client, ClientSession
from typer.testing import CliRunner

from healthsim.cli import app
from healthsim.mcp_server import build_server
from healthsim.state import (
    DatabaseLockedError,
    InvalidInputError,
    ScenarioExistsError,
    ScenarioNotFoundError,
    ScenarioStore,
    ServerUnavailableError,
    transfer_scenario,
)
from helpers.database import orphan_rows, sql_rows
from helpers.paths import HERE
from helpers.pg_server import PASSWORD, PgServer

WORKER = HERE / "helpers" / "worker.py"


def start_worker(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(WORKER), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ},
    )


def wait_until_waiting_for_a_lock(url: str, waiting: Callable[[], bool]) -> None:
    """Return once a session of the database ``url`` waits for a lock, while ``waiting()`` stays true.

    Seen on the server (``pg_stat_activity``), not guessed from a pause: the change is held up by the lock,
    not merely slow to start. Fails after 60 s, or as soon as ``waiting()`` is false (it went ahead).
    """
    deadline = time.monotonic() + 60
    with psycopg.connect(url, autocommit=True) as watcher:  # (a fresh view of the server at each ask)
        while True:
            [(waiters,)] = watcher.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
            ).fetchall()
            assert waiting(), "the change went ahead while another client held what it needs"
            if waiters:
                return
            assert time.monotonic() < deadline, "no session came to wait for the lock"
            time.sleep(0.02)


def finish(worker: subprocess.Popen[str], timeout: float = 120) -> str:
    out, errors = worker.communicate(timeout=timeout)
    assert worker.returncode == 0, errors
    return out


# --------------------------------------------------------------------------- concurrency


@pytest.mark.slow
def test_two_clients_adding_to_one_scenario_take_turns_and_lose_nothing(pg_url: str) -> None:
    store = ScenarioStore(pg_url)
    store.save_scenario("shared", {"patients": []})
    workers = [start_worker("add", pg_url, "shared", prefix, "8", "5") for prefix in ("left", "right")]
    for worker in workers:
        finish(worker)
    versions = store.scenario_history("shared")["versions"]
    assert [v["version"] for v in versions] == list(range(17, 0, -1))
    assert [v["entity_count"] for v in reversed(versions)] == [5 * i for i in range(17)]
    loaded = store.load_scenario("shared")["entities"]["patients"]
    assert len({p["patient_id"] for p in loaded}) == 80 and orphan_rows(store.path) == 0


@pytest.mark.slow
def test_a_writer_waits_only_for_the_scenario_it_changes(pg_url: str) -> None:
    store = ScenarioStore(pg_url)
    store.save_scenario("a", {"patients": [{"patient_id": "A"}]})
    store.save_scenario("b", {"patients": [{"patient_id": "B"}]})
    # Another client holds scenario "a" as a change of it would (its row locked, in a transaction).
    holder = psycopg.connect(pg_url)
    holder.execute("SELECT 1 FROM scenarios WHERE name = 'a' FOR UPDATE")
    try:
        other = start_worker("add", pg_url, "b", "free", "1", "3")
        finish(other, timeout=60)  # not held up by the lock on "a"
        blocked = start_worker("add", pg_url, "a", "held", "1", "3")
        wait_until_waiting_for_a_lock(pg_url, lambda: blocked.poll() is None)
        assert blocked.poll() is None, "a change of 'a' went ahead while another client held it"
    finally:
        holder.rollback()
        holder.close()
    finish(blocked, timeout=60)
    assert store.scenario_history("a")["versions"][0]["entity_count"] == 4
    assert store.scenario_history("b")["versions"][0]["entity_count"] == 4


@pytest.mark.slow  # waits a second for the lock
def test_a_writer_waits_for_a_stuck_client_only_as_long_as_the_lock_timeout(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A client that holds a scenario and stops answering (its laptop left the network mid-save: the
    server keeps its transaction for hours) must not hold every other writer of it forever."""
    store = ScenarioStore(pg_url)
    store.save_scenario("a", {"patients": [{"patient_id": "A"}]})
    monkeypatch.setenv("HEALTHSIM_LOCK_TIMEOUT", "1")
    holder = psycopg.connect(pg_url)
    holder.execute("SELECT 1 FROM scenarios WHERE name = 'a' FOR UPDATE")
    outcome: list[BaseException | None] = []
    writer = threading.Thread(target=lambda: outcome.append(_try(lambda: store.add_entities("a", {"patients": [{}]}))))
    try:
        writer.start()
        writer.join(30)
        assert outcome, "the writer still waits for the stuck client"
    finally:
        holder.rollback()  # (frees the writer, should it wait)
        holder.close()
        writer.join(30)
    assert isinstance(outcome[0], DatabaseLockedError), outcome[0]
    message = str(outcome[0])
    assert "another client is changing scenario 'a'" in message and "HEALTHSIM_LOCK_TIMEOUT" in message, message
    assert PASSWORD not in message
    assert store.load_scenario("a")["entity_count"] == 1
    assert store.add_entities("a", {"patients": [{}]})["entity_count"] == 2  # the next try goes ahead
    # A save to a new name waits for another client's save to that name no longer either.
    holder = psycopg.connect(pg_url)
    holder.execute("SELECT pg_advisory_xact_lock(hashtextextended('healthsim-state:new', 7261))")
    try:
        with pytest.raises(DatabaseLockedError, match="another client is changing scenario 'new'"):
            store.save_scenario("new", {"patients": []})
    finally:
        holder.close()


@pytest.mark.slow
def test_eight_clients_saving_at_once_lose_nothing(pg_url: str) -> None:
    # Several processes on an empty database: the schema is made once, ids never collide.
    workers = [start_worker("many", pg_url, f"c{i}", "4") for i in range(8)]
    for worker in workers:
        finish(worker)
    listed = ScenarioStore(pg_url).list_scenarios(limit=100)
    assert listed["total_count"] == 32
    assert all(entry["entity_count"] == 200 for entry in listed["scenarios"])
    ids = sql_rows(ScenarioStore(pg_url).path, "SELECT count(DISTINCT id), count(*) FROM scenario_entities")
    assert ids == [(6400, 6400)]


@pytest.mark.slow
def test_a_client_killed_during_an_overwrite_leaves_the_old_or_the_new_version(pg_url: str) -> None:
    store = ScenarioStore(pg_url)
    store.save_scenario("victim", {"patients": [{"patient_id": "MRN-0", "version": 0}]}, description="v0")
    rng = random.Random(5)
    for attempt in range(4):
        worker = start_worker("overwrite", pg_url, "victim", str(attempt + 1), "30000")
        assert worker.stdout is not None and worker.stdout.readline().strip() == "saving"
        time.sleep(rng.uniform(0.05, 0.8))
        worker.send_signal(signal.SIGKILL)
        worker.wait(timeout=30)
        loaded = store.load_scenario("victim")
        stamps = {e["version"] for entities in loaded["entities"].values() for e in entities}
        assert len(stamps) == 1, stamps  # every row from one save
        (stamp,) = stamps
        assert loaded["description"] == f"v{stamp}"
        assert orphan_rows(store.path) == 0
    # The server ended the killed clients' transactions: nothing is left locked.
    store.add_entities("victim", {"patients": [{"patient_id": "after"}]})


# --------------------------------------------------------------------------- errors


def test_wrong_password_missing_database_and_no_server_are_named_without_the_password(
    pg_server: PgServer, pg_url: str
) -> None:
    database = pg_url.rsplit("/", 1)[1]
    host = f"{pg_server.host}:{pg_server.port}"
    cases = [
        (pg_url.replace(PASSWORD, "not-the-password"), "refused the login of user 'healthsim'"),
        (pg_url.rsplit("/", 1)[0] + "/no_such_db", "has no such database"),
        (f"postgresql://healthsim:{PASSWORD}@127.0.0.1:1/{database}", "no server is listening there"),
    ]
    for url, why in cases:
        with pytest.raises(ServerUnavailableError) as caught:
            ScenarioStore(url).list_scenarios()
        message = str(caught.value)
        assert why in message and "\n" not in message, message
        assert PASSWORD not in message and "not-the-password" not in message
        assert ("127.0.0.1:1" in message) if "127.0.0.1:1/" in url else (host in message)
    info = ScenarioStore(pg_url).database_info()
    assert info["engine"] == "postgresql" and PASSWORD not in json.dumps(info)


# --------------------------------------------------------------------------- transfer

ENTITIES = {
    "patients": [
        {"patient_id": "MRN-1", "n": 123456789012345678901234567890, "s": 'é\\"\n\t'},
        {"no_id": True, "nested": {"a": [1, 2.5, None]}},
    ],
    "claims": [{"claim_id": "C-1", "total": 1e-7}],
    "members": [],  # a type without entities is part of the scenario too
}


def stored_rows(store: ScenarioStore, name: str) -> list[tuple[object, ...]]:
    return sql_rows(
        store.path,
        "SELECT e.entity_type, CAST(e.entity_id AS VARCHAR), CAST(e.entity_data AS VARCHAR) FROM scenario_entities e "
        "JOIN scenarios s ON s.scenario_id = e.scenario_id WHERE s.name = ? ORDER BY e.id",
        [name],
    )


def test_transfer_both_ways_keeps_everything_exactly(tmp_path: Path, pg_url: str) -> None:
    laptop = ScenarioStore(tmp_path / "laptop.duckdb")
    home = ScenarioStore(tmp_path / "home.duckdb")
    team = ScenarioStore(pg_url)
    sid = laptop.save_scenario("cohort", ENTITIES, description="made here", tags=["Diabetes", "qa"])
    laptop.update_scenario("cohort", add_tags=["v2"])
    pushed = transfer_scenario("cohort", laptop, pg_url)
    pulled = transfer_scenario("cohort", team, home)
    assert pushed["scenario_id"] == pulled["scenario_id"] == sid
    a, b, c = (s.load_scenario("cohort") for s in (laptop, team, home))
    for key in ("scenario_id", "created_at", "description", "tags", "entities", "entities_by_type"):
        assert a[key] == b[key] == c[key], key
    assert stored_rows(laptop, "cohort") == stored_rows(team, "cohort") == stored_rows(home, "cohort")
    provenance = c["metadata"]["provenance"]
    assert provenance["operation"] == "transfer" and provenance["source"].startswith("postgresql://healthsim@")
    assert PASSWORD not in json.dumps(c["metadata"])
    assert provenance["created_by"]["operation"] == "save"  # how it was first made, kept
    assert team.scenario_history("cohort")["versions"][0]["operation"] == "transfer"


def test_transfer_refuses_a_taken_name_unless_told_and_the_same_database(tmp_path: Path, pg_url: str) -> None:
    laptop = ScenarioStore(tmp_path / "laptop.duckdb")
    laptop.save_scenario("cohort", ENTITIES)
    transfer_scenario("cohort", laptop, pg_url)
    laptop.add_entities("cohort", {"claims": [{"claim_id": "C-2"}]})
    with pytest.raises(ScenarioExistsError):
        transfer_scenario("cohort", laptop, pg_url)
    assert ScenarioStore(pg_url).load_scenario("cohort")["entities_by_type"]["claims"] == 1
    replaced = transfer_scenario("cohort", laptop, pg_url, overwrite=True)
    assert replaced["entities_by_type"]["claims"] == 2
    assert [v["version"] for v in ScenarioStore(pg_url).scenario_history("cohort")["versions"]] == [2, 1]
    copy = transfer_scenario("cohort", pg_url, laptop, new_name="cohort-from-team")
    assert copy["scenario_id"] != replaced["scenario_id"]  # the id is taken in the laptop's file
    with pytest.raises(Exception, match="same database"):
        transfer_scenario("cohort", pg_url, ScenarioStore(pg_url))
    other_name = pg_url.replace("@127.0.0.1:", "@localhost:")  # one server, its host named another way
    assert other_name != pg_url
    with pytest.raises(InvalidInputError, match="same database"):
        transfer_scenario("cohort", pg_url, other_name, overwrite=True)
    assert [v["version"] for v in ScenarioStore(pg_url).scenario_history("cohort")["versions"]] == [2, 1]


@pytest.mark.slow
def test_a_large_transfer_streams(tmp_path: Path, pg_url: str) -> None:
    laptop = ScenarioStore(tmp_path / "laptop.duckdb")
    patients = [{"patient_id": f"MRN-{i}", "i": i, "pad": "x" * 100} for i in range(150_000)]
    laptop.save_scenario("big", {"patients": patients, "labs": [{"v": i} for i in range(1000)]})
    transfer_scenario("big", laptop, pg_url)
    loaded = ScenarioStore(pg_url).load_scenario("big")
    assert loaded["entities_by_type"] == {"patients": 150_000, "labs": 1000}
    assert loaded["entities"]["patients"][-1] == patients[-1]
    assert stored_rows(laptop, "big")[-5:] == stored_rows(ScenarioStore(pg_url), "big")[-5:]


# --------------------------------------------------------------------------- interfaces


def test_the_command_line_on_a_team_store(tmp_path: Path, pg_url: str) -> None:
    runner = CliRunner()
    example = HERE.parent / "examples" / "diabetes-cohort.json"
    local = str(tmp_path / "local.duckdb")

    def ok(*args: str) -> str:
        result = runner.invoke(app, list(args))
        assert result.exit_code == 0, result.output
        return result.stdout

    ok("--db", pg_url, "import", str(example), "--name", "cohort")
    listed = json.loads(ok("--db", pg_url, "list", "--json"))
    assert [s["name"] for s in listed["scenarios"]] == ["cohort"]
    loaded = json.loads(ok("--db", pg_url, "load", "cohort", "--json"))
    assert loaded["entity_count"] == 30
    info = json.loads(ok("--db", pg_url, "info", "--json"))
    assert info["engine"] == "postgresql" and PASSWORD not in json.dumps(info)
    pulled = json.loads(ok("--db", local, "pull", "cohort", "--from", pg_url, "--json"))
    assert pulled["scenario_id"] == loaded["scenario_id"]
    assert "pushed 'cohort-2'" in ok("--db", local, "push", "cohort", "--to", pg_url, "--as", "cohort-2")
    assert PASSWORD not in ok("--db", local, "push", "cohort", "--to", pg_url, "--as", "cohort-3")
    summary = json.loads(ok("--db", pg_url, "summary", "cohort", "--json"))
    assert summary["types"]["patients"]["count"] == 5


def test_the_mcp_server_on_a_team_store(pg_url: str) -> None:
    async def session() -> None:
        async with Client(build_server(pg_url), mode="legacy", cache=None) as connected:
            client: ClientSession = connected.session
            saved = await client.call_tool(
                "save_scenario", {"name": "chat", "entities": {"patients": [{"patient_id": "P1", "gender": "f"}]}}
            )
            assert not saved.is_error, saved
            added = await client.call_tool(
                "add_entities", {"name": "chat", "entities": {"patients": [{"patient_id": "P2"}]}}
            )
            assert not added.is_error, added
            listed = await client.call_tool("list_scenarios", {})
            assert "chat" in listed.content[0].text  # type: ignore[union-attr]
            summary = await client.call_tool("summarize_scenario", {"name": "chat"})
            assert '"count": 2' in summary.content[0].text or '"count":2' in summary.content[0].text  # type: ignore[union-attr]

    asyncio.run(session())
    assert ScenarioStore(pg_url).load_scenario("chat")["entity_count"] == 2


def test_summary_report_and_frames_of_a_team_scenario_equal_the_file_ones(tmp_path: Path, pg_url: str) -> None:
    # Computed on a DuckDB copy of the server's rows: the same answers as from a file.
    laptop = ScenarioStore(tmp_path / "laptop.duckdb")
    laptop.save_scenario("cohort", ENTITIES, description="d", tags=["t"])
    transfer_scenario("cohort", laptop, pg_url)
    team = ScenarioStore(pg_url)
    here, there = laptop.summarize_scenario("cohort"), team.summarize_scenario("cohort")
    assert here["types"] == there["types"]
    assert {t: f.to_pylist() for t, f in laptop.load_frames("cohort").items()} == {
        t: f.to_pylist() for t, f in team.load_frames("cohort").items()
    }
    page = team.report_scenario("cohort", tmp_path / "report.html")
    text = page.read_text(encoding="utf-8")
    assert "cohort" in text and "plotly" in text.lower() and PASSWORD not in text


# --------------------------------------------------------------------------- found in review


@pytest.mark.slow  # (about a second or more of the quick run's edit loop; the whole suite runs it)
def test_a_reader_sees_one_version_while_another_client_overwrites(pg_url: str) -> None:
    store, other = ScenarioStore(pg_url), ScenarioStore(pg_url)
    store.save_scenario("s", {"patients": [{"patient_id": f"P{i}", "v": 1} for i in range(45_000)]})
    with store.open_scenario("s") as reader:
        first = reader.entities("patients", 0, 20_000)
        other.save_scenario("s", {"patients": [{"patient_id": f"Q{i}", "v": 2} for i in range(10)]}, overwrite=True)
        rest = reader.entities("patients", 20_000)
    assert len(first) + len(rest) == 45_000 and {e["v"] for e in first + rest} == {1}
    assert store.load_scenario("s")["entity_count"] == 10


def test_merges_of_the_same_scenarios_in_either_order_do_not_deadlock(pg_url: str) -> None:
    store = ScenarioStore(pg_url)
    store.save_scenario("a", {"patients": [{"patient_id": "A"}]})
    store.save_scenario("b", {"patients": [{"patient_id": "B"}]})
    errors: list[BaseException] = []

    def merge(order: list[str], into: str) -> None:
        try:
            for i in range(6):
                ScenarioStore(pg_url).merge_scenarios(order, f"{into}-{i}")
        except BaseException as exc:
            errors.append(exc)

    threads = [
        threading.Thread(target=merge, args=(["a", "b"], "ab")),
        threading.Thread(target=merge, args=(["b", "a"], "ba")),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert errors == []
    assert store.list_scenarios()["total_count"] == 14


@pytest.mark.slow  # waits for another thread's save
def test_a_rename_to_a_name_being_saved_waits_and_is_refused(pg_url: str) -> None:
    store = ScenarioStore(pg_url)
    store.save_scenario("old", {"patients": [{"patient_id": "A"}]})
    started, go_on = threading.Event(), threading.Event()

    def slow() -> Iterator[dict[str, str]]:
        yield {"patient_id": "X1"}
        started.set()
        go_on.wait(30)
        yield {"patient_id": "X2"}

    saver = threading.Thread(target=lambda: store.save_scenario("taken", {"patients": slow()}))
    saver.start()
    assert started.wait(30)
    outcome: list[BaseException | None] = []
    renamer = threading.Thread(
        target=lambda: outcome.append(_try(lambda: store.update_scenario("old", new_name="taken")))
    )
    renamer.start()
    wait_until_waiting_for_a_lock(pg_url, renamer.is_alive)
    assert renamer.is_alive()  # waits for the save of that name
    go_on.set()
    saver.join(30)
    renamer.join(30)
    assert isinstance(outcome[0], ScenarioExistsError)
    assert store.load_scenario("taken")["entity_count"] == 2 and store.load_scenario("old")["entity_count"] == 1


def _try(action: Callable[[], object]) -> BaseException | None:
    try:
        action()
    except BaseException as exc:
        return exc
    return None


def test_the_server_holds_utf8_whatever_the_client_encoding(pg_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PGCLIENTENCODING", "LATIN1")
    ScenarioStore(pg_url).save_scenario("enc", {"patients": [{"patient_id": "P", "n": "é中😀"}]})
    monkeypatch.delenv("PGCLIENTENCODING")
    with psycopg.connect(pg_url, client_encoding="UTF8") as con:
        row = con.execute("SELECT entity_data::text FROM scenario_entities").fetchone()
    assert row is not None and json.loads(row[0])["n"] == "é中😀"


def test_a_transfer_never_takes_the_id_of_a_scenario_in_the_trash(tmp_path: Path, pg_url: str) -> None:
    laptop, team = ScenarioStore(tmp_path / "laptop.duckdb"), ScenarioStore(pg_url)
    sid = laptop.save_scenario("c", {"patients": [{"patient_id": "A"}]})
    transfer_scenario("c", laptop, team)
    team.add_entities("c", {"patients": [{"patient_id": "secret"}]})
    team.delete_scenario("c")
    again = transfer_scenario("c", laptop, team, new_name="c-again")
    assert again["scenario_id"] != sid
    assert [v["operation"] for v in team.scenario_history("c-again")["versions"]] == ["transfer"]
    assert [e["name"] for e in team.list_scenarios(deleted=True)["scenarios"]] == ["c"]


def test_copy_text_escapes_read_back_exactly(pg_url: str) -> None:
    from healthsim.state._engines.postgres.reading import fetch_arrow
    from healthsim.state.database import connect

    ScenarioStore(pg_url).save_scenario("x", {"patients": []})
    value = "a\\b\x01\x01f\\n\tz\\\\N"
    with connect(ScenarioStore(pg_url).path) as con:
        table = fetch_arrow(
            con, "SELECT 1 AS id, CAST(? AS TEXT) AS b, CAST(NULL AS TEXT) AS c", [value], texts=("b", "c")
        )
    assert table.column("b").to_pylist() == [value] and table.column("c").to_pylist() == [None]


def test_a_cancelled_statement_says_so_not_report_a_bug(pg_url: str) -> None:
    """A statement the server cancels (its statement timeout, an administrator's
    pg_cancel_backend) is an answer to give the user, not a bug to report."""
    from healthsim.state._engines.postgres.server import TeamDatabase
    from healthsim.state.database import connect
    from healthsim.state.errors import DatabaseError

    with connect(TeamDatabase.parse(pg_url), create=True) as con:
        con.execute("SET statement_timeout = 50")
        with pytest.raises(DatabaseError) as caught:
            con.execute("SELECT pg_sleep(2)")
    message = str(caught.value)
    assert "the server cancelled the operation" in message and "statement timeout" in message, message
    assert "report this as a bug" not in message and PASSWORD not in message


@pytest.mark.slow  # waits a second for the restore's commit
def test_a_purge_of_a_deleted_scenario_waits_for_its_restore(pg_url: str, pg_server: PgServer) -> None:
    """A deleted scenario has no row to lock: a purge of it went ahead while another client restored it,
    and left a restored scenario whose history was gone - no serial order gives that."""
    store = ScenarioStore(pg_url)
    store.save_scenario("x", {"patients": [{"patient_id": "A"}]})
    store.delete_scenario("x")
    with psycopg.connect(pg_url, autocommit=True) as owner:  # the restore's commit lasts a second
        owner.execute(
            "CREATE FUNCTION slow_commit() RETURNS trigger LANGUAGE plpgsql AS "
            "$$ BEGIN PERFORM pg_sleep(1); RETURN NULL; END $$"
        )
        owner.execute(
            "CREATE CONSTRAINT TRIGGER slow_commit AFTER INSERT ON scenario_entities "
            "DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION slow_commit()"
        )
    outcome: list[BaseException | None] = []
    restorer = threading.Thread(target=lambda: outcome.append(_try(lambda: store.restore_scenario("x"))))
    restorer.start()
    with pg_server.admin_connect() as admin:
        deadline = time.monotonic() + 30
        while not admin.execute(
            "SELECT 1 FROM pg_stat_activity WHERE query = 'COMMIT' AND state = 'active'"
        ).fetchall():
            assert time.monotonic() < deadline and restorer.is_alive(), "the restore never reached its commit"
            time.sleep(0.01)
    purged = store.delete_scenario("x", purge=True)
    restorer.join(30)
    # The one serial order that fits: the restore, then the purge of what it brought back.
    assert outcome == [None] and purged is True
    assert store.list_scenarios()["scenarios"] == [] and store.list_scenarios(deleted=True)["scenarios"] == []


def test_a_merge_whose_source_is_deleted_while_it_waits_is_refused_not_short(pg_url: str) -> None:
    """A merge read its sources, then waited for their locks: a source another client deleted meanwhile
    was merged as empty (the merged scenario silently lacked its entities)."""
    store = ScenarioStore(pg_url)
    store.save_scenario("x", {"patients": [{"patient_id": "X1"}, {"patient_id": "X2"}]})
    store.save_scenario("z", {"patients": [{"patient_id": "Z1"}]})
    holder = psycopg.connect(pg_url)  # another client deleting "x" (as a delete does: rows, then the scenario)
    holder.execute(
        "DELETE FROM scenario_entities WHERE scenario_id = (SELECT scenario_id FROM scenarios WHERE name = 'x')"
    )
    holder.execute("DELETE FROM scenarios WHERE name = 'x'")
    outcome: list[BaseException | None] = []
    merger = threading.Thread(target=lambda: outcome.append(_try(lambda: store.merge_scenarios(["x", "z"], "m"))))
    merger.start()
    try:
        wait_until_waiting_for_a_lock(pg_url, merger.is_alive)
    finally:
        holder.commit()
        holder.close()
        merger.join(30)
    assert isinstance(outcome[0], ScenarioNotFoundError), outcome[0]  # as if the delete came first
    assert [s["name"] for s in store.list_scenarios()["scenarios"]] == ["z"]
