"""``healthsim mcp --http``: a real server process, the official mcp client over Streamable HTTP.

One server per engine for the whole module (DuckDB file; a database on the suite's
throwaway PostgreSQL server), started as ``healthsim mcp --http --port <free port>``;
its stderr is kept in a file, to look for token texts in it at the end.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx2
import pytest
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client

from healthsim.state import ScenarioStore
from healthsim.state.access import Grant
from healthsim.state.tokens import create_token
from helpers.pg_server import PgServer

pytestmark = pytest.mark.xdist_group("mcp_http")  # one worker: one server per engine

HEALTHSIM = str(Path(sys.executable).parent / "healthsim")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_listening(port: int, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"the server stopped: {log.read_text(errors='replace')}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise AssertionError("the server did not start listening in 30 s")


@dataclass
class Served:
    """A running server: its database, URL, log and the tokens made for it."""

    db: str
    url: str
    log: Path
    process: subprocess.Popen[bytes]
    env: dict[str, str]
    tokens: dict[str, str] = field(default_factory=dict)

    def token(self, name: str, scope: str = "write", tags: list[str] | None = None) -> str:
        text = create_token(self.db, name, scope, tags)
        self.tokens[name] = text
        return text


def start_server(db: str, home: Path, *extra: str) -> tuple[subprocess.Popen[bytes], int, Path, dict[str, str]]:
    port = free_port()
    log = home / f"server-{port}.log"
    env = {**os.environ, "HOME": str(home), "HEALTHSIM_DB": db}
    with log.open("wb") as stderr:
        process = subprocess.Popen(
            [HEALTHSIM, "mcp", "--http", "--port", str(port), *extra],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
    wait_listening(port, process, log)
    return process, port, log, env


@pytest.fixture(scope="module", params=["duckdb", "postgresql"])
def served(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    home = tmp_path_factory.mktemp(f"http-{request.param}")
    pg: PgServer | None = None
    if request.param == "postgresql":
        pg = request.getfixturevalue("pg_server")
        db = pg.new_database()
    else:
        db = str(home / "team.duckdb")
    ScenarioStore(db).save_scenario("seed", {"patients": [{"patient_id": "S-1"}]}, tags=["seed"])
    process, port, log, env = start_server(db, home)
    served = Served(db, f"http://127.0.0.1:{port}/mcp", log, process, env)
    try:
        yield served
        process.terminate()
        process.wait(10)
        assert_no_token_text(served)  # every token the module's tests made, its whole log
    finally:
        process.terminate()
        process.wait(10)
        if pg is not None:
            pg.drop_database(db.rsplit("/", 1)[1])


@asynccontextmanager
async def session(url: str, token: str | None, **headers: str) -> AsyncIterator[ClientSession]:
    """An initialised MCP session over Streamable HTTP, with the token as a bearer header."""
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    async with httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(60)) as http:
        async with streamable_http_client(url, http_client=http) as (read, write, *_):
            async with ClientSession(read, write) as opened:
                await opened.initialize()
                yield opened


async def call(opened: ClientSession, tool: str, **arguments: Any) -> dict[str, Any]:
    result = await opened.call_tool(tool, arguments)
    assert not result.is_error, result.content
    assert result.structured_content is not None
    return result.structured_content


def messages(exc: BaseException) -> str:
    """The messages of an exception and of every exception grouped inside it."""
    inner = getattr(exc, "exceptions", ())
    return " | ".join([str(exc), *(messages(e) for e in inner)])


def post(url: str, token: str | None, body: bytes | None = None, **headers: str) -> httpx2.Response:
    """One raw initialize POST (what a client sends first)."""
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    payload = (
        body
        or json.dumps(
            {
                "jsonrpc": "2.0",
                "id": 1,
                "method": "initialize",
                "params": {
                    "protocolVersion": "2025-06-18",
                    "capabilities": {},
                    "clientInfo": {"name": "t", "version": "1"},
                },
            }
        ).encode()
    )
    headers = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream", **headers}
    return httpx2.post(url, content=payload, headers=headers, timeout=60)


def test_a_request_without_a_valid_token_gets_401(served: Served) -> None:
    valid = served.token("valid-for-401")
    lookup = valid.split("_")[1]
    assert post(served.url, valid).status_code == 200  # (then remembered: wrong secrets pause only others)
    for token in (None, "nonsense", valid[:-1] + ("A" if valid[-1] != "A" else "B"), f"hst_{lookup}_" + "x" * 43):
        answer = post(served.url, token)
        assert answer.status_code == 401, (token, answer.text)
        assert "invalid_token" in answer.headers["www-authenticate"]
    assert post(served.url, valid).status_code == 200


def test_the_official_client_without_a_token_is_refused_and_nothing_runs(served: Served) -> None:
    async def attempt() -> None:
        async with session(served.url, None) as opened:
            await call(opened, "save_scenario", name="never", entities={"patients": [{"patient_id": "N"}]})

    with pytest.raises(BaseException) as refused:
        asyncio.run(attempt())
    assert "Server returned an error response" in messages(refused.value)
    assert "never" not in [s["name"] for s in ScenarioStore(served.db).list_scenarios()["scenarios"]]


def test_a_valid_token_lists_saves_loads_and_is_recorded_as_by(served: Served) -> None:
    token = served.token("claude-alice", "write")

    async def work() -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
        async with session(served.url, token) as opened:
            await call(opened, "save_scenario", name="via-http", entities={"patients": [{"patient_id": "H-1"}]})
            listed = await call(opened, "list_scenarios")
            loaded = await call(opened, "load_scenario", name="via-http", entity_type="patients")
            history = await call(opened, "scenario_history", name="via-http")
            return listed, loaded, history

    listed, loaded, history = asyncio.run(work())
    assert {"seed", "via-http"} <= {s["name"] for s in listed["scenarios"]}
    assert loaded["entities"]["patients"] == [{"patient_id": "H-1"}]
    assert [v["by"] for v in history["versions"]] == ["claude-alice"]
    assert ScenarioStore(served.db).scenario_history("via-http")["versions"][0]["by"] == "claude-alice"


def test_a_revoked_token_gets_401_at_its_next_request(served: Served) -> None:
    token = served.token("soon-revoked", "read")

    async def work() -> None:
        async with session(served.url, token) as opened:
            assert (await call(opened, "list_scenarios"))["scenarios"]
            done = subprocess.run(
                [HEALTHSIM, "token", "revoke", "soon-revoked"], env=served.env, capture_output=True, text=True
            )
            assert done.returncode == 0, done.stderr
            with pytest.raises(BaseException) as refused:  # the same session's next request
                await call(opened, "list_scenarios")
            assert "Server returned an error response" in messages(refused.value)

    asyncio.run(work())
    assert post(served.url, token).status_code == 401


def test_a_session_answers_only_the_token_that_opened_it(served: Served) -> None:
    owner, other = served.token("session-owner"), served.token("session-thief", "admin")
    opened = post(served.url, owner)
    session_id = opened.headers["mcp-session-id"]
    call = json.dumps(
        {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "list_scenarios", "arguments": {}}}
    ).encode()
    assert post(served.url, other, call, **{"mcp-session-id": session_id}).status_code == 404
    assert post(served.url, owner, call, **{"mcp-session-id": session_id}).status_code == 200


def test_a_body_over_the_limit_gets_a_clear_413(served: Served) -> None:
    token = served.token("big-sender")
    answer = post(served.url, token, b" " * 16_000_001)
    assert answer.status_code == 413
    message = answer.json()["error"]["message"]
    assert "16,000,001 bytes" in message and "limit of 16,000,000 bytes" in message and "--max-body-mb" in message

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it arrives
        for _ in range(17):
            yield b" " * 1_000_000

    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json", "Accept": "application/json"}
    chunked = httpx2.post(served.url, content=chunks(), headers=headers, timeout=60)
    assert chunked.status_code == 413 and "more than 16,000,000 bytes" in chunked.json()["error"]["message"]


def test_a_body_under_the_limit_but_over_the_sdks_4_mib_is_taken(served: Served) -> None:
    token = served.token("big-saver")
    patients = [{"patient_id": f"P-{i}", "note": "x" * 5000} for i in range(1000)]  # ~5 MB of JSON

    async def work() -> dict[str, Any]:
        async with session(served.url, token) as opened:
            return await call(opened, "save_scenario", name="five-mb", entities={"patients": patients})

    assert asyncio.run(work())["entity_count"] == 1000


def test_host_and_origin_headers_are_checked(served: Served) -> None:
    token = served.token("rebinding")
    assert post(served.url, token, Host="evil.example:80").status_code == 421
    assert post(served.url, token, Origin="http://evil.example").status_code == 403
    assert post(served.url, token, Origin="http://localhost:3000").status_code == 200


@pytest.mark.slow
def test_twenty_clients_saving_and_querying_at_once_lose_nothing(served: Served) -> None:
    token = served.token("crowd", "write")

    async def one(i: int) -> int:
        async with session(served.url, token) as opened:
            entities = {"patients": [{"patient_id": f"C{i}-{k}"} for k in range(20)]}
            await call(opened, "save_scenario", name=f"crowd-{i}", entities=entities, tags=["crowd"])
            await call(opened, "add_entities", name=f"crowd-{i}", entities={"patients": [{"patient_id": f"C{i}-x"}]})
            answer = await call(opened, "query", sql=f"SELECT count(*) AS n FROM patients WHERE scenario = 'crowd-{i}'")
            return int(answer["rows"][0][0])

    async def crowd() -> list[int]:
        return list(await asyncio.gather(*(one(i) for i in range(20))))

    assert asyncio.run(crowd()) == [21] * 20
    listed = ScenarioStore(served.db).list_scenarios(tag="crowd")["scenarios"]
    assert sorted(s["name"] for s in listed) == sorted(f"crowd-{i}" for i in range(20))
    assert all(s["entity_count"] == 21 for s in listed)


def test_a_remote_address_needs_allow_remote_and_then_says_tls_goes_in_front(tmp_path: Path) -> None:
    db = str(tmp_path / "remote.duckdb")
    refused = subprocess.run(
        [HEALTHSIM, "mcp", "--http", "--host", "0.0.0.0", "--port", str(free_port())],
        env={**os.environ, "HEALTHSIM_DB": db},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert refused.returncode == 2 and "--allow-remote" in refused.stderr
    token = create_token(db, "remote", "read")
    process, port, log, _ = start_server(
        db, tmp_path, "--host", "0.0.0.0", "--allow-remote", "--allowed-host", "team.example"
    )
    try:
        url = f"http://127.0.0.1:{port}/mcp"
        assert post(url, None).status_code == 401
        assert post(url, token, Host="team.example").status_code == 200
        assert post(url, token, Host="team.example:8443").status_code == 200
        assert post(url, token, Host="other.example").status_code == 421
    finally:
        process.terminate()
        process.wait(10)
    said = log.read_text()
    assert "plain HTTP" in said and "reverse proxy" in said and "TLS" in said


def stored_text(db: str) -> bytes:
    """Everything the database holds, as bytes: the DuckDB file and its log, or every
    row of every table of the PostgreSQL database as text."""
    if "://" not in db:
        return b"".join(Path(p).read_bytes() for p in (db, f"{db}.wal") if Path(p).exists())
    import psycopg

    with psycopg.connect(db) as con:
        tables = [r[0] for r in con.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")]
        return b"".join(str(con.execute(f'SELECT t::text FROM "{table}" t').fetchall()).encode() for table in tables)


def assert_no_token_text(served: Served) -> None:
    """No token made for this server, used or not, appears in its log or its database."""
    logged = served.log.read_bytes()
    stored = stored_text(served.db)
    for name, text in served.tokens.items():
        assert re.fullmatch(r"hst_[0-9a-f]{16}_[A-Za-z0-9_-]{43}", text)
        secret = text[len("hst_") + 17 :]
        assert secret.encode() not in logged, name
        assert secret.encode() not in stored, name


def test_no_token_text_in_the_database_or_the_logs(served: Served) -> None:
    """Here for the tokens made so far; the module's server checks all of them again when
    it stops (see ``served``)."""
    used = served.token("logged-user", "write")
    served.token("never-used", "read")
    assert post(served.url, used).status_code == 200
    assert post(served.url, used[:-2] + "zz").status_code == 401  # a wrong secret is not logged either

    async def work() -> None:
        async with session(served.url, used) as opened:
            await call(opened, "save_scenario", name="by-logged-user", entities={"patients": [{"patient_id": "L"}]})

    asyncio.run(work())
    assert b"POST /mcp" in served.log.read_bytes()  # the log is the server's: requests are logged
    assert_no_token_text(served)


def test_the_sdks_record_of_a_caller_holds_no_secret(tmp_path: Path) -> None:
    """What the SDK keeps for a request (and may log or show) names the token, never its secret."""
    from healthsim.mcp.caller import grant_of
    from healthsim.mcp.http import StoreTokens

    db = str(tmp_path / "record.duckdb")
    text = create_token(db, "recorded", "write", ["team-a"])
    record = StoreTokens(db).check(text)
    assert record is not None
    secret = text[len("hst_") + 17 :]
    assert secret not in repr(record) and secret not in record.model_dump_json()
    assert record.token == text[: len("hst_") + 17] + "…"
    assert grant_of(record) == Grant("recorded", "write", ("team-a",))
    assert StoreTokens(db).check(text[:-1] + ("A" if text[-1] != "A" else "B")) is None
