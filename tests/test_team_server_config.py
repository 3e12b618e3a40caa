"""The team store on a server its administrator configured differently, or gave a user fewer rights.

Settings a role or database may carry (``ALTER DATABASE … SET``) must not change the library's answers,
and rights it lacks must be said as such, not as a bug to report. A real server (helpers/pg_server.py).
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import threading
import time
from collections.abc import Iterator

import psycopg
import pytest
from psycopg import sql

from healthsim.state import DatabaseError, ScenarioStore
from healthsim.state._engines.postgres import idle
from helpers.pg_server import PASSWORD, PgServer

ENTITIES = {
    "patients": [
        {"patient_id": "P-1", "birth_date": "1970-02-03", "note": "back\\slash 'quote'", "n": 1.0},
        {"patient_id": "P-2", "birth_date": "1980-01-01T10:00:00", "nul": "a\u0000b"},
    ],
    "conditions": [{"condition_id": "C-1", "patient_id": "P-1", "code": "E11X5", "onset": "1969-01-01"}],
}
#: Floats, backslashes, dates and intervals: what the session's formatting settings would change.
QUERY = (
    "SELECT 1/3.0::float8 AS third, '\\' AS backslash, DATE '2020-01-02' AS day, "
    "TIMESTAMPTZ '2020-01-02 03:04:05+00' AS at, INTERVAL '1 day 2 hours' AS span, count(*) AS n FROM entities"
)


@pytest.fixture(autouse=True)
def no_idle_connections() -> Iterator[None]:
    # A setting is read when a session starts: each case logs in anew.
    idle.close_idle_connections()
    yield
    idle.close_idle_connections()


def answers(store: ScenarioStore) -> dict[str, object]:
    """What a user sees of one save, one add and the reads after them (ids and times left out)."""
    store.save_scenario("cfg 'é'", ENTITIES, tags=["t'1", "b\\2"], description="d\\'")
    store.add_entities("cfg 'é'", {"patients": [{"patient_id": "P-3", "when": "2001-01-01"}]})
    loaded = store.load_scenario("cfg 'é'")
    check = store.check_scenario("cfg 'é'")
    return {
        "entities": loaded["entities"],
        "tags": loaded["tags"],
        "description": loaded["description"],
        "check": json.dumps({k: v for k, v in check.items() if k not in ("scenario_id",)}, sort_keys=True),
        "query": store.query(QUERY)["rows"],
    }


def database_with(pg_server: PgServer, url: str, setting: str, value: str) -> str:
    with pg_server.admin_connect() as admin:
        admin.execute(
            sql.SQL("ALTER DATABASE {} SET {} = {}").format(
                sql.Identifier(url.rsplit("/", 1)[1]), sql.Identifier(setting), sql.SQL(value)
            )
        )
    return url


@pytest.fixture(scope="module")
def plain_answers(pg_server: PgServer) -> dict[str, object]:
    """The answers on a database without settings of its own (the same for every case: made once)."""
    url = pg_server.new_database()
    try:
        return answers(ScenarioStore(url))
    finally:
        pg_server.drop_database(url.rsplit("/", 1)[1])


SLOW = pytest.mark.slow  # (each case a second of saves, checks and queries; one stays in the quick run)


@pytest.mark.parametrize(
    ("setting", "value"),
    [
        ("standard_conforming_strings", "off"),
        pytest.param("extra_float_digits", "-15", marks=SLOW),
        pytest.param("datestyle", "'SQL, DMY'", marks=SLOW),
        pytest.param("intervalstyle", "'sql_standard'", marks=SLOW),
        pytest.param("timezone", "'Pacific/Kiritimati'", marks=SLOW),
        pytest.param("client_encoding", "'LATIN1'", marks=SLOW),
    ],
)
def test_settings_of_the_database_do_not_change_answers(
    pg_server: PgServer, pg_url: str, plain_answers: dict[str, object], setting: str, value: str
) -> None:
    assert answers(ScenarioStore(database_with(pg_server, pg_url, setting, value))) == plain_answers


# --------------------------------------------------------------------------- rights


READER_PASSWORD = "reader@pw/%1"


@pytest.fixture
def reader_url(pg_server: PgServer, pg_url: str) -> Iterator[str]:
    """``pg_url`` as a user who may only read the library's tables (made by the owner first)."""
    owner = ScenarioStore(pg_url)
    owner.save_scenario("shared", {"patients": [{"patient_id": "P-1"}]})
    owner.add_entities("shared", {"patients": [{"patient_id": "P-2"}]})
    role = f"reader_{pg_url.rsplit('_', 1)[1]}"
    database = pg_url.rsplit("/", 1)[1]
    with pg_server.admin_connect() as admin:
        admin.execute(
            sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(sql.Identifier(role), sql.Literal(READER_PASSWORD))
        )
    with pg_server.admin_connect(database) as admin:
        admin.execute(sql.SQL("GRANT SELECT ON ALL TABLES IN SCHEMA public TO {}").format(sql.Identifier(role)))
    yield f"postgresql://{role}:reader%40pw%2F%251@{pg_server.host}:{pg_server.port}/{database}"
    idle.close_idle_connections()
    pg_server.drop_database(database)
    with pg_server.admin_connect() as admin:
        admin.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


def refused(action: object) -> str:
    with pytest.raises(DatabaseError) as caught:
        action()  # type: ignore[operator]
    message = str(caught.value)
    assert "report this as a bug" not in message, message
    assert READER_PASSWORD not in message and PASSWORD not in message and "reader%40pw" not in message
    return message


def test_a_user_who_may_only_read_reads_and_is_told_why_a_write_is_refused(reader_url: str) -> None:
    reader = ScenarioStore(reader_url)
    assert reader.load_scenario("shared")["entity_count"] == 2
    assert reader.load_scenario("shared", version=1)["entity_count"] == 1
    assert reader.query("SELECT count(*) FROM entities")["rows"] == [[2]]
    for write in (
        lambda: reader.save_scenario("mine", {"patients": []}),
        lambda: reader.add_entities("shared", {"patients": [{"patient_id": "P-3"}]}),
        lambda: reader.delete_scenario("shared"),
    ):
        message = refused(write)
        assert "may not change" in message and "reader_" in message and "ask" in message, message
    assert reader.load_scenario("shared")["entity_count"] == 2


def test_an_older_schema_that_the_user_may_not_upgrade_is_named(pg_server: PgServer, reader_url: str) -> None:
    # As if the database's owner had last used it with the release before this one.
    owner = reader_url.split("://", 1)[0] + f"://healthsim:{PASSWORD}@" + reader_url.split("@", 1)[1]
    with psycopg.connect(owner, autocommit=True) as con:
        con.execute(
            "DELETE FROM healthsim_state_schema_version WHERE version = (SELECT max(version) FROM healthsim_state_schema_version)"
        )
    message = refused(lambda: ScenarioStore(reader_url).list_scenarios())
    assert "schema" in message and "upgrade" in message and "owner" in message, message


def test_a_read_only_database_says_so(pg_server: PgServer, pg_url: str) -> None:
    ScenarioStore(pg_url).save_scenario("shared", {"patients": [{"patient_id": "P-1"}]})
    database_with(pg_server, pg_url, "default_transaction_read_only", "on")
    idle.close_idle_connections()
    store = ScenarioStore(pg_url)
    assert store.load_scenario("shared")["entity_count"] == 1
    message = refused(lambda: store.add_entities("shared", {"patients": [{"patient_id": "P-2"}]}))
    assert "only reads" in message, message
    # (a query's views are temporary: on a read-only server it cannot run, and says why)
    assert "temporary tables" in refused(lambda: store.query("SELECT count(*) FROM entities"))


def test_a_search_path_without_a_schema_to_create_in_says_so(pg_server: PgServer, pg_url: str) -> None:
    database_with(pg_server, pg_url, "search_path", "'no_such_schema'")
    message = refused(lambda: ScenarioStore(pg_url).save_scenario("a", {"patients": []}))
    assert "search_path" in message, message


# --------------------------------------------------------------------------- isolation, timeouts


def wait_for_a_lock_wait(url: str, writer: threading.Thread) -> None:
    """Return once a session of ``url`` waits for a lock (seen on the server), while ``writer`` runs."""
    deadline = time.monotonic() + 30
    with psycopg.connect(url, autocommit=True) as watcher:
        while watcher.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
        ).fetchone() == (0,):
            assert writer.is_alive() and time.monotonic() < deadline, "the writer did not wait for the lock"
            time.sleep(0.02)


@pytest.mark.parametrize("level", ["'repeatable read'", "serializable"])
def test_two_writers_take_turns_whatever_the_default_isolation(pg_server: PgServer, pg_url: str, level: str) -> None:
    store = ScenarioStore(pg_url)
    store.save_scenario("a", {"patients": [{"patient_id": "A"}]})
    database_with(pg_server, pg_url, "default_transaction_isolation", level)
    idle.close_idle_connections()
    # Another client changes the scenario's row and commits while this one waits for it.
    holder = psycopg.connect(pg_url)
    holder.execute("UPDATE scenarios SET description = 'held' WHERE name = 'a'")
    outcome: list[object] = []

    def add() -> None:
        try:
            outcome.append(store.add_entities("a", {"patients": [{"patient_id": "B"}]}))
        except Exception as exc:
            outcome.append(exc)

    writer = threading.Thread(target=add)
    writer.start()
    try:
        wait_for_a_lock_wait(pg_url, writer)
    finally:
        holder.commit()
        holder.close()
        writer.join(30)
    assert not isinstance(outcome[0], Exception), outcome[0]
    assert store.load_scenario("a")["entity_count"] == 2


def test_a_session_the_server_ends_for_idling_in_a_transaction_is_said_so(pg_server: PgServer, pg_url: str) -> None:
    store = ScenarioStore(pg_url)
    store.save_scenario("a", {"patients": [{"patient_id": "A"}]})
    database_with(pg_server, pg_url, "idle_in_transaction_session_timeout", "'100ms'")
    idle.close_idle_connections()
    with pytest.raises(DatabaseError) as caught, store.open_scenario("a") as reader:
        time.sleep(0.5)  # a slow consumer: the reader's snapshot waits on the server meanwhile
        reader.entities("patients")
    message = str(caught.value)
    assert "idle_in_transaction_session_timeout" in message and "report this as a bug" not in message, message
    assert store.load_scenario("a")["entity_count"] == 1  # the next call logs in anew


# --------------------------------------------------------------------------- encodings


def latin1_database(pg_server: PgServer) -> str:
    name = f"hs_test_{secrets.token_hex(6)}_latin1"
    with pg_server.admin_connect() as admin:
        admin.execute(
            sql.SQL("CREATE DATABASE {} OWNER healthsim TEMPLATE template0 ENCODING 'LATIN1' LOCALE 'C'").format(
                sql.Identifier(name)
            )
        )
    return pg_server.url_for(name)


def test_a_database_that_cannot_hold_every_character_is_refused_before_tables_are_made(pg_server: PgServer) -> None:
    url = latin1_database(pg_server)
    try:
        message = refused(lambda: ScenarioStore(url).save_scenario("a", {"patients": [{"patient_id": "A"}]}))
        assert "LATIN1" in message and "UTF8" in message, message
        with psycopg.connect(url) as con:  # nothing was made there
            assert con.execute("SELECT to_regclass('scenarios')").fetchone() == (None,)
    finally:
        pg_server.drop_database(url.rsplit("/", 1)[1])


def test_text_an_older_latin1_store_cannot_hold_is_said_so(pg_server: PgServer) -> None:
    from healthsim.state._engines.ddl import apply_migrations
    from healthsim.state._engines.postgres.connection import PgConnection
    from healthsim.state._engines.postgres.schema import MIGRATIONS
    from healthsim.state._engines.postgres.server import TeamDatabase

    url = latin1_database(pg_server)
    try:
        # Its tables made before this release refused such a database.
        target = TeamDatabase.parse(url)
        with target.connect() as raw:
            con = PgConnection(raw, target)
            con.execute("BEGIN")
            apply_migrations(con, MIGRATIONS, 0)
            con.execute("COMMIT")
        store = ScenarioStore(url)
        store.save_scenario("a", {"patients": [{"patient_id": "é"}]})  # Latin-1 text it holds
        message = refused(lambda: store.add_entities("a", {"patients": [{"patient_id": "日本"}]}))
        assert "LATIN1" in message and "UTF8" in message, message
        assert store.load_scenario("a")["entities"] == {"patients": [{"patient_id": "é"}]}
    finally:
        pg_server.drop_database(url.rsplit("/", 1)[1])


# --------------------------------------------------------------------------- the network


def keepalive_idle(raw: psycopg.Connection) -> int:
    with socket.socket(fileno=os.dup(raw.fileno())) as sock:
        return sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE)


def test_a_server_gone_from_the_network_is_noticed_in_minutes_not_hours(pg_url: str) -> None:
    """A connection whose server vanished (a dropped VPN, a pulled cable) sends nothing back: without TCP
    keepalives sooner than the system's two hours, an operation waiting for an answer waited that long."""
    from healthsim.state._engines.postgres.server import TeamDatabase

    with TeamDatabase.parse(pg_url).connect() as raw:
        assert 0 < keepalive_idle(raw) <= 60
        # The server's side too: a client gone mid-save held its scenario's locks on the server for the
        # system's two hours (every other writer refused after HEALTHSIM_LOCK_TIMEOUT meanwhile).
        assert raw.execute("SHOW tcp_keepalives_idle").fetchone() == ("30",)
    # A URL that says otherwise is the user's to decide.
    with TeamDatabase.parse(pg_url + "?keepalives_idle=321").connect() as raw:
        assert keepalive_idle(raw) == 321


def test_a_connection_lost_at_commit_says_the_change_may_have_been_saved(pg_server: PgServer, pg_url: str) -> None:
    """Lost while COMMIT was on its way, a change may have been saved or not: "try again" could add the
    entities twice (those without an id of their own are appended). The session is ended here while
    the commit runs (a deferred trigger makes it last) - the real case, a commit whose answer was lost,
    cannot be produced on demand."""
    store = ScenarioStore(pg_url)
    store.save_scenario("a", {"patients": [{"patient_id": "A"}]})
    with psycopg.connect(pg_url, autocommit=True) as owner:
        owner.execute(
            "CREATE FUNCTION slow_commit() RETURNS trigger LANGUAGE plpgsql AS "
            "$$ BEGIN PERFORM pg_sleep(30); RETURN NULL; END $$"
        )
        owner.execute(
            "CREATE CONSTRAINT TRIGGER slow_commit AFTER INSERT ON scenario_entities "
            "DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION slow_commit()"
        )
    outcome: list[BaseException | None] = []
    writer = threading.Thread(
        target=lambda: outcome.append(_attempt(lambda: store.add_entities("a", {"patients": [{}]})))
    )
    writer.start()
    try:
        with pg_server.admin_connect() as admin:
            deadline = time.monotonic() + 30
            while not admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query = 'COMMIT' AND state = 'active'"
            ).fetchall():
                assert time.monotonic() < deadline and writer.is_alive(), "the add never reached its commit"
                time.sleep(0.02)
    finally:
        writer.join(60)
    assert isinstance(outcome[0], DatabaseError), outcome[0]
    message = str(outcome[0])
    assert "may or may not have been saved" in message and "history" in message, message
    assert store.load_scenario("a")["entity_count"] in (1, 2)


def _attempt(action: object) -> BaseException | None:
    try:
        action()  # type: ignore[operator]
    except BaseException as exc:
        return exc
    return None


def test_a_server_without_a_free_connection_slot_says_so(pg_server: PgServer, pg_url: str) -> None:
    ScenarioStore(pg_url).save_scenario("a", {"patients": []})
    idle.close_idle_connections()
    database = pg_url.rsplit("/", 1)[1]
    with pg_server.admin_connect() as admin:
        admin.execute(sql.SQL("ALTER DATABASE {} CONNECTION LIMIT 1").format(sql.Identifier(database)))
    with psycopg.connect(pg_url):  # a teammate's client takes the one slot
        with pytest.raises(DatabaseError) as caught:
            ScenarioStore(pg_url).list_scenarios()
    message = str(caught.value)
    assert "no connection free" in message and "try again" in message and PASSWORD not in message, message


def test_a_copy_cut_off_is_one_error_without_psycopgs_teardown_noise(
    pg_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """psycopg logs "error ignored terminating <psycopg.Copy [BAD] at 0x…>" when a COPY cannot be ended on
    a lost connection; with no logging set up (the command line) Python printed it on stderr above the
    library's own error. Here the session ends itself at the COPY's first row, while rows still come."""
    from healthsim.state._engines.postgres.bulk import copy_rows
    from healthsim.state._engines.postgres.server import TeamDatabase
    from healthsim.state.database import connect

    ScenarioStore(pg_url).save_scenario("a", {"patients": []})
    with psycopg.connect(pg_url, autocommit=True) as owner:
        owner.execute("CREATE TABLE cut (scenario_id uuid, tag varchar)")
        owner.execute(
            "CREATE FUNCTION cut_off() RETURNS trigger LANGUAGE plpgsql AS "
            "$$ BEGIN PERFORM pg_terminate_backend(pg_backend_pid()); RETURN NEW; END $$"
        )
        owner.execute("CREATE TRIGGER cut_off BEFORE INSERT ON cut FOR EACH ROW EXECUTE FUNCTION cut_off()")
    rows = b"00000000-0000-0000-0000-000000000000\tt\n" * 500_000  # (more than the socket's buffers)
    with connect(TeamDatabase.parse(pg_url), create=True) as con:
        with pytest.raises(DatabaseError, match="was lost"):
            copy_rows(con, "cut", ["scenario_id", "tag"], rows)  # type: ignore[arg-type]
    assert "error ignored" not in caplog.text, caplog.text


def test_a_lock_timeout_longer_than_the_server_counts_waits_as_long_as_it_can(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for seconds in ("1e12", "inf"):  # (PostgreSQL's lock_timeout stops at 2^31-1 ms; "inf" waits on a file)
        monkeypatch.setenv("HEALTHSIM_LOCK_TIMEOUT", seconds)
        assert ScenarioStore(pg_url).save_scenario(f"a{seconds}", {"patients": [{"patient_id": "A"}]})
