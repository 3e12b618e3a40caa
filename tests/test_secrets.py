"""A database password never shows: not in errors, ``repr``, ``str``, CLI output or MCP answers.

libpq takes ``?`` and ``#`` in a URL's password unescaped; messages once printed them (a
scheme typo ``postgress://``, a port typo, ``ab@Hunter2#x``, ``repr(ScenarioStore(url))`` of
a working URL). Generated values put passwords made of characters that appear nowhere else
(Cyrillic, CJK, an emoji, and the ASCII marks ``QXJ``/``ZVK``) between ``?#@/:%&=``, raw or
percent-encoded, into URLs of every shape: typos of the scheme and port, passwords in the
query, libpq ``key=value`` strings, URLs without a scheme. Not one of those characters may
appear in what is shown, raw, percent-encoded or escaped, so a leak of even a piece of a
password is caught.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from mcp import Client, ClientSession
from psycopg import sql
from typer.testing import CliRunner

from healthsim.cli import app
from healthsim.mcp_server import build_server
from healthsim.state import ScenarioStore, StateError
from healthsim.state._engines.postgres.server import TeamDatabase
from healthsim.state.database import resolve_database
from healthsim.state.redaction import show_database
from helpers.examples import examples
from helpers.pg_server import PgServer

SECRET_LETTERS = "ЖЯЮБ秘密鍵🔑ΩΨ"
MARKS = ("QXJ", "ZVK")
SPECIALS = "?#@/:%&=+ '\\"


def leaks(text: str) -> list[str]:
    """The pieces of a generated password found in ``text`` (raw, percent-encoded or escaped)."""
    found = [mark for mark in MARKS if mark in text]
    folded = text.lower()
    for letter in SECRET_LETTERS:
        forms = {letter, urllib.parse.quote(letter).lower(), letter.encode("unicode_escape").decode().lower()}
        found += [form for form in forms if form in (text if form == letter else folded)]
    return found


pieces = st.one_of(st.sampled_from(SPECIALS), st.sampled_from(SECRET_LETTERS), st.sampled_from(MARKS))
passwords = (
    st.lists(pieces, min_size=1, max_size=12)
    .map("".join)
    .filter(lambda p: any(c in SECRET_LETTERS for c in p) or any(m in p for m in MARKS))
)
SCHEMES = [
    "postgresql://",
    "postgres://",
    "Postgresql://",
    "postgress://",
    "postgresq://",
    "postgresql:/",
    "postgresql//",
    "postgresql:",
    "psql://",
    "mysql://",
    "jdbc:postgresql://",
    "http://",
    "",
]
HOSTS = ["localhost", "127.0.0.1", "db.example.org", "[::1]", "", "h1:1,h2"]
PORTS = ["", ":5432", ":54x32", ":5432:", ":port", ":", ":-1", ":５４３２"]
PATHS = ["/db", "", "/", "/team_db", "/d%20b", "/db#frag"]
QUERIES = ["", "?sslmode=require", "?application_name=a@b", "?connect_timeout=x&sslmode=disable", "?x=1"]


def _conninfo_quoted(password: str) -> str:
    return "'" + password.replace("\\", "\\\\").replace("'", "\\'") + "'"


@st.composite
def database_values(draw: st.DrawFn) -> str:
    """A database value holding a generated password somewhere, as a user might type it."""
    password = draw(passwords)
    written = draw(
        st.sampled_from(
            [password, urllib.parse.quote(password, safe=""), urllib.parse.quote(password, safe="?#:&=+ '")]
        )
    )
    scheme, user = draw(st.sampled_from(SCHEMES)), draw(st.sampled_from(["u", "healthsim", "ann.lee", ""]))
    host, port, path = draw(st.sampled_from(HOSTS)), draw(st.sampled_from(PORTS)), draw(st.sampled_from(PATHS))
    query = draw(st.sampled_from(QUERIES))
    shape = draw(st.sampled_from(["userinfo", "query", "both", "conninfo"]))
    if shape == "conninfo":
        parts = [f"host={host or 'localhost'}", f"password={_conninfo_quoted(password)}", "dbname=db"]
        value = " ".join(draw(st.permutations(parts)))
    else:
        credentials = f"{user}:{written}@" if shape in ("userinfo", "both") else (f"{user}@" if user else "")
        if shape in ("query", "both"):
            key = draw(st.sampled_from(["password", "sslpassword", "PASSWORD"]))
            query = (query + "&" if query else "?") + f"{key}={written}"
        value = f"{scheme}{credentials}{host}{port}{path}{query}"
    return draw(st.sampled_from(["", " ", "\n"])) + value + draw(st.sampled_from(["", " "]))


def _shown_everywhere(value: str, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every text the library makes of ``value`` without reaching a server."""
    texts = [show_database(value), repr(ScenarioStore(value)), str(ScenarioStore(value))]
    with monkeypatch.context() as env:
        env.setenv("HEALTHSIM_DB", value)
        for given_value in (value, None):
            try:
                found = resolve_database(given_value)
            except StateError as exc:
                texts.append(str(exc))
            else:
                # Never a file path: that made folders named after the URL, password included.
                assert isinstance(found, TeamDatabase), (value, found)
                texts += [str(found), repr(found), found.shown]
    return texts


@settings(max_examples=examples(1500), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(value=database_values())
@example(value="healthsim:/QXJ@localhost/db")  # a user and a password starting with "/", no scheme
@example(value="u:/Ж@localhost/db")  # ... with a one-letter user (not a drive, off Windows)
def test_no_piece_of_a_password_is_ever_shown(value: str, monkeypatch: pytest.MonkeyPatch) -> None:
    for text in _shown_everywhere(value, monkeypatch):
        assert not leaks(text), (value, text)


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ("postgress://u:ab?Hunter2#x@localhost/db", "postgress://u:***@localhost/db"),  # a scheme typo
        ("postgresql://u:ab?Hunter2#x@localhost:54x32/db", "postgresql://u:***@localhost:…/db"),  # a port typo
        ("postgresql://u:ab@Hunter2#x@localhost/db", "postgresql://u:***@…"),  # "@" in it: where it ends is unclear
        ("postgresql://u:ab?Hunter2#x@localhost:5432/db", "postgresql://u:***@localhost:5432/db"),  # works
        ("postgresql:u:ab?Hunter2#x@localhost/db", "postgresql:***@localhost/db"),
        ("u:ab?Hunter2#x@localhost/db", "u:***@localhost/db"),
        ("postgresql://u@h/db?password=Hunter2&sslmode=require", "postgresql://u@h/db?password=***&…"),
        ("host=h password='ab?Hunter2#x'", "a libpq key=value connection string (not shown: it may hold a password)"),
        ("/data/h.duckdb", "/data/h.duckdb"),
    ],
)
def test_the_cases_of_the_report(value: str, shown: str, monkeypatch: pytest.MonkeyPatch) -> None:
    assert show_database(value) == shown
    for text in _shown_everywhere(value, monkeypatch) if value.startswith(("p", "u", "h")) else ():
        assert "Hunter2" not in text, text


def test_a_working_url_is_read_as_libpq_reads_it() -> None:
    team = TeamDatabase.parse("postgresql://u:ab?Hunter2#x@db.example.org:6543/team?sslmode=require")
    assert (team.user, team.host, team.port, team.database) == ("u", "db.example.org", 6543, "team")
    assert "Hunter2" not in repr(team) + str(team)
    assert team.hide_password("password ab?Hunter2#x refused") == "password *** refused"


@pytest.mark.parametrize(
    "value",
    [
        "postgress://u:ab?Hunter2#x@localhost/db",
        "postgresql://u:ab?Hunter2#x@localhost:54x32/db",
        "postgresql://u:ab@Hunter2#x@localhost/db",
        "postgresql:u:ab?Hunter2#x@localhost/db",
        "host=localhost password=ab?Hunter2#x dbname=db",
    ],
)
def test_the_command_line_never_prints_a_password(value: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    for args, env in (
        (["--db", value, "list"], {}),
        (["list", "--json"], {"HEALTHSIM_DB": value}),
        (["--db", str(tmp_path / "h.duckdb"), "push", "x", "--to", value], {}),
    ):
        result = runner.invoke(app, args, env=env)
        assert result.exit_code == 1, result.output
        assert result.output.startswith("error: ") and "Hunter2" not in result.output, result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["home"]  # no folder named after the URL


def test_an_mcp_server_on_a_mistyped_url_answers_without_the_password() -> None:
    async def session() -> str:
        async with Client(build_server("postgress://u:ab?Hunter2#x@localhost/db"), mode="legacy", cache=None) as c:
            client: ClientSession = c.session
            answer = await client.call_tool("list_scenarios", {})
            assert answer.is_error
            return answer.content[0].text  # type: ignore[union-attr]

    text = asyncio.run(session())
    assert "postgress://u:***@localhost/db" in text and "Hunter2" not in text, text


# --------------------------------------------------------------------------- on a real server


@pytest.fixture
def secret_url(pg_server: PgServer) -> Iterator[str]:
    """A database owned by a role whose password holds ``?`` and ``#``, written raw in its URL."""
    role, database = f"hs_secret_{secrets.token_hex(4)}", f"hs_secret_{secrets.token_hex(4)}"
    admin = pg_server.admin_connect()
    try:
        admin.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(sql.Identifier(role), "ab?Hunter2#xЖ"))
        admin.execute(
            sql.SQL("CREATE DATABASE {} OWNER {} TEMPLATE template0").format(
                sql.Identifier(database), sql.Identifier(role)
            )
        )
        yield f"postgresql://{role}:ab?Hunter2#xЖ@{pg_server.host}:{pg_server.port}/{database}"
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(database)))
        admin.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))
    finally:
        admin.close()


def test_a_working_url_with_a_password_holding_question_mark_and_hash(secret_url: str) -> None:
    store = ScenarioStore(secret_url)
    store.save_scenario("c", {"patients": [{"patient_id": "P1"}]})
    texts = [repr(store), str(store.path), json.dumps(store.database_info()), json.dumps(store.list_scenarios())]
    with pytest.raises(StateError) as refused:
        ScenarioStore(secret_url.replace("Hunter2", "Hunter3")).list_scenarios()
    texts.append(str(refused.value))
    assert "refused the login" in texts[-1]
    runner = CliRunner()
    for args in (["info", "--json"], ["list"], ["load", "no-such"], ["query", "SELECT nope"]):
        texts.append(runner.invoke(app, ["--db", secret_url, *args]).output)

    async def session() -> None:
        async with Client(build_server(secret_url), mode="legacy", cache=None) as c:
            client: ClientSession = c.session
            for name, arguments in (("list_scenarios", {}), ("load_scenario", {"name": "nope"})):
                answer = await client.call_tool(name, arguments)
                texts.append(json.dumps([getattr(part, "text", "") for part in answer.content]))

    asyncio.run(session())
    for text in texts:
        assert "Hunter" not in text and not leaks(text), text
    assert '"scenario_count"' in texts[2] or '"scenarios"' in texts[2]


@settings(max_examples=examples(40), deadline=None)
@given(password=passwords, quoted=st.booleans(), query=st.sampled_from(["", "?sslmode=disable", "?connect_timeout=2"]))
def test_a_server_that_cannot_be_reached_is_named_without_the_password(password: str, quoted: bool, query: str) -> None:
    written = urllib.parse.quote(password, safe="") if quoted else password
    url = f"postgresql://u:{written}@127.0.0.1:1/db{query}"  # nothing listens on port 1
    with pytest.raises(StateError) as caught:
        ScenarioStore(url).list_scenarios()
    assert not leaks(str(caught.value)), str(caught.value)
    assert os.environ.get("HEALTHSIM_DB", "") != url
