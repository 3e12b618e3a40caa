"""The team store's idle connections: reused by the next operation, reset, replaced when dead, never shared
with a forked child (state/_engines/postgres/idle.py), on a real PostgreSQL server."""

from __future__ import annotations

import multiprocessing
from collections.abc import Iterator

import psycopg
import pytest

from healthsim.state import ScenarioNotFoundError, ScenarioStore
from healthsim.state._engines.postgres import idle
from helpers.pg_server import PgServer


@pytest.fixture(autouse=True)
def no_idle_connections() -> Iterator[None]:
    idle.close_idle_connections()
    yield
    idle.close_idle_connections()


def kept(url: str) -> int:
    """The server process of the connection kept for ``url`` (it stays kept)."""
    raw = idle.take(url)
    assert raw is not None, "no connection was kept"
    pid = raw.info.backend_pid
    assert idle.give_back(url, raw)
    return pid


def test_the_next_operation_takes_the_connection_the_last_one_left(pg_url: str) -> None:
    store = ScenarioStore(pg_url)
    store.save_scenario("a", {"patients": [{"patient_id": "A"}]})
    first = kept(pg_url)
    store.add_entities("a", {"patients": [{"patient_id": "B"}]})
    assert store.load_scenario("a")["entity_count"] == 2
    assert kept(pg_url) == first
    assert len([entry for entry in idle._idle if entry.url == pg_url]) == 1


def test_what_an_operation_left_on_its_session_is_gone_for_the_next(pg_url: str) -> None:
    ScenarioStore(pg_url).save_scenario("a", {})
    raw = idle.take(pg_url)
    assert raw is not None
    raw.execute("CREATE TEMP TABLE left_behind (x int)")
    raw.execute("SET work_mem = '7MB'")
    raw.execute("SELECT pg_advisory_lock(4242)")
    assert idle.give_back(pg_url, raw)
    again = idle.take(pg_url)
    assert again is raw
    assert again.execute("SELECT to_regclass('pg_temp.left_behind')").fetchone() == (None,)
    assert again.execute("SHOW work_mem").fetchone() != ("7MB",)
    locks = "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()"
    assert again.execute(locks).fetchone() == (0,)
    idle.give_back(pg_url, again)


def test_a_connection_in_a_transaction_or_after_an_error_is_not_kept(pg_url: str) -> None:
    store = ScenarioStore(pg_url)
    store.save_scenario("a", {})
    raw = idle.take(pg_url)
    assert raw is not None
    raw.execute("BEGIN")
    assert idle.give_back(pg_url, raw) is False
    raw.close()
    with pytest.raises(ScenarioNotFoundError):
        store.load_scenario("missing")  # the operation raised: its connection was closed
    assert idle.take(pg_url) is None


def test_a_connection_the_server_ended_is_replaced_by_a_new_login(pg_url: str, pg_server: PgServer) -> None:
    store = ScenarioStore(pg_url)
    store.save_scenario("a", {"patients": [{"patient_id": "A"}]})
    pid = kept(pg_url)
    with pg_server.admin_connect() as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", [pid])
    assert store.load_scenario("a")["entity_count"] == 1  # not "server closed the connection"
    assert kept(pg_url) != pid


def test_an_old_idle_connection_is_closed_not_used(pg_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    ScenarioStore(pg_url).save_scenario("a", {})
    raw = idle.take(pg_url)
    assert raw is not None and idle.give_back(pg_url, raw)
    monkeypatch.setattr(idle, "MAX_IDLE_SECONDS", 0.0)
    assert idle.take(pg_url) is None
    assert raw.closed


def test_few_connections_wait_whatever_the_number_of_databases(pg_server: PgServer) -> None:
    urls = [pg_server.new_database() for _ in range(idle.MAX_IDLE + 2)]
    for url in urls:
        ScenarioStore(url).save_scenario("a", {})
    assert len(idle._idle) == idle.MAX_IDLE
    assert [entry.url for entry in idle._idle] == urls[-idle.MAX_IDLE :]  # the longest idle went first
    with psycopg.connect(urls[0]) as con:  # closed, not merely dropped: the server has no session left
        count = "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
        assert con.execute(count).fetchone() == (0,)
    for url in urls:
        pg_server.drop_database(url.rsplit("/", 1)[1])


def _child_saves(url: str, inherited: list[psycopg.Connection]) -> None:
    ScenarioStore(url).save_scenario("from-the-child", {"patients": [{"patient_id": "C"}]})
    for raw in inherited:  # what a child's exit does: libpq says goodbye on each socket it has
        raw.close()


def test_a_forked_child_neither_uses_nor_ends_the_parents_connection(pg_url: str) -> None:
    store = ScenarioStore(pg_url)
    store.save_scenario("a", {})
    parent = kept(pg_url)
    inherited = [entry.raw for entry in idle._idle]
    child = multiprocessing.get_context("fork").Process(target=_child_saves, args=(pg_url, inherited))
    child.start()
    child.join(60)
    assert child.exitcode == 0
    assert store.load_scenario("from-the-child")["entity_count"] == 1
    assert kept(pg_url) == parent  # the child logged in on its own and left the parent's session alone
