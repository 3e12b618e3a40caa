"""The test PostgreSQL server itself: the team store tests rely on what these check.

The team store must work for a plain role over TCP with a password, so these make sure the fixtures
really give that (and not, say, a superuser whose rights would hide missing grants).
"""

from __future__ import annotations

from urllib.parse import urlsplit

import psutil
import psycopg
import pytest

from helpers.pg_server import PASSWORD, ROLE, PgServer


def test_pg_url_connects_as_the_plain_role_over_tcp(pg_url: str) -> None:
    parts = urlsplit(pg_url)
    assert (parts.scheme, parts.username, parts.password, parts.hostname) == ("postgresql", ROLE, PASSWORD, "127.0.0.1")
    with psycopg.connect(pg_url) as con:
        user, superuser, createdb, addr = con.execute(
            "SELECT current_user, rolsuper, rolcreatedb, inet_server_addr()::text "
            "FROM pg_roles WHERE rolname = current_user"
        ).fetchone()
    assert (user, superuser, createdb) == ("healthsim", False, False)
    assert addr.startswith("127.0.0.1")  # TCP, not the unix socket


def test_tcp_needs_the_password(pg_server: PgServer, pg_url: str) -> None:
    # If host connections were "trust", a missing or wrong password in the engine's URL handling would pass.
    wrong = pg_url.replace(f":{PASSWORD}@", ":wrong@")
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(wrong, connect_timeout=5).close()


def test_two_pg_urls_are_different_databases(pg_server: PgServer, pg_url: str) -> None:
    # A test gets one pg_url; a second one is made the way the fixture makes it.
    other = pg_server.new_database()
    try:
        assert other != pg_url
        with psycopg.connect(pg_url, autocommit=True) as first, psycopg.connect(other, autocommit=True) as second:
            first.execute("CREATE TABLE only_here (x int)")
            assert (
                first.execute("SELECT current_database()").fetchone()
                != second.execute("SELECT current_database()").fetchone()
            )
            assert second.execute("SELECT to_regclass('only_here')").fetchone() == (None,)
    finally:
        pg_server.drop_database(other.rsplit("/", 1)[1])


def test_the_role_creates_tables_in_public(pg_url: str) -> None:
    # PG15 gives public to pg_database_owner: owning the database is enough, with no extra grant.
    with psycopg.connect(pg_url) as con:
        con.execute("CREATE TABLE scenarios (id int PRIMARY KEY, name text)")
        con.execute("INSERT INTO scenarios VALUES (1, 'a')")
        assert con.execute("SELECT name FROM public.scenarios").fetchall() == [("a",)]
        assert con.execute("SELECT tableowner FROM pg_tables WHERE tablename = 'scenarios'").fetchone() == (ROLE,)


def test_the_role_cannot_read_server_files(pg_url: str) -> None:
    with psycopg.connect(pg_url) as con, pytest.raises(psycopg.errors.InsufficientPrivilege):
        con.execute("SELECT pg_read_file('/etc/passwd')")


def test_the_role_cannot_create_databases(pg_url: str) -> None:
    with psycopg.connect(pg_url, autocommit=True) as con, pytest.raises(psycopg.errors.InsufficientPrivilege):
        con.execute("CREATE DATABASE not_allowed")


def test_drop_database_ends_open_connections(pg_server: PgServer) -> None:
    url = pg_server.new_database()
    con = psycopg.connect(url)
    try:
        pg_server.drop_database(url.rsplit("/", 1)[1])  # FORCE: no "being accessed by other users"
        with pg_server.admin_connect() as admin:
            assert admin.execute(
                "SELECT count(*) FROM pg_database WHERE datname = %s", [url.rsplit("/", 1)[1]]
            ).fetchone() == (0,)
    finally:
        con.close()
    pg_server.drop_database("never_created")  # absent: no error


def test_new_database_takes_a_name(pg_server: PgServer) -> None:
    url = pg_server.new_database("hs_named_db")
    try:
        assert url == f"postgresql://{ROLE}:{PASSWORD}@127.0.0.1:{pg_server.port}/hs_named_db"
        assert url == pg_server.url_for("hs_named_db")
    finally:
        pg_server.drop_database("hs_named_db")
    with pytest.raises(ValueError, match="database name"):
        pg_server.new_database('bad"; DROP')


def test_a_server_of_its_own_starts_and_stops_cleanly() -> None:
    # Its own server (~1 s): stop() must remove the folder, leave no process and be safe to repeat.
    server = PgServer().start()
    folder = server.folder
    assert folder is not None and (folder / "data" / "postmaster.pid").exists()
    pid = int((folder / "data" / "postmaster.pid").read_text().split()[0])
    with psycopg.connect(server.new_database()) as con:
        assert con.execute("SELECT 1").fetchone() == (1,)
    server.stop()
    assert not folder.exists()
    assert not server.running
    # Gone, or a zombie: the postmaster was daemonized, so its parent is init (here a PID 1 that may reap late).
    try:
        assert psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        pass
    server.stop()  # idempotent
