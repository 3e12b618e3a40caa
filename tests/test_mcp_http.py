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

from healthsim.mcp.tools import TOOLS
from healthsim.state import ScenarioStore
from healthsim.state.access import Grant
from healthsim.state.tokens import create_token, revoke_token
from helpers.mcp_wire import INITIALIZE
from helpers.pg_server import PgServer

# One worker: one server per engine. Each test talks to a real `healthsim mcp --http` process: slow.
pytestmark = [pytest.mark.xdist_group("mcp_http"), pytest.mark.slow]

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
    payload = body or INITIALIZE
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


def test_every_method_on_the_endpoint_needs_a_token(served: Served) -> None:
    """GET (the server's stream), DELETE (ending a session) and a tool call sent straight
    away, without initialize, are refused alike without a valid token; nothing runs."""
    owner = served.token("method-owner")
    session_id = post(served.url, owner).headers["mcp-session-id"]
    save = json.dumps(
        {
            "jsonrpc": "2.0",
            "id": 2,
            "method": "tools/call",
            "params": {"name": "save_scenario", "arguments": {"name": "unauthorised", "entities": {}}},
        }
    ).encode()
    base = {"Accept": "application/json, text/event-stream", "mcp-session-id": session_id}
    for token in (None, "hst_0123456789abcdef_" + "A" * 43):
        auth = {"Authorization": f"Bearer {token}"} if token else {}
        for method in ("GET", "DELETE"):
            answer = httpx2.request(method, served.url, headers={**base, **auth}, timeout=60)
            assert answer.status_code == 401, (method, token, answer.text)
        assert post(served.url, token, save, **{"mcp-session-id": session_id}).status_code == 401
        assert post(served.url, token, save).status_code == 401
    assert "unauthorised" not in {s["name"] for s in ScenarioStore(served.db).list_scenarios()["scenarios"]}
    deleted = httpx2.request("DELETE", served.url, headers={**base, "Authorization": f"Bearer {owner}"}, timeout=60)
    assert deleted.status_code == 200  # the owner may end its session


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


def test_a_new_token_of_a_revoked_tokens_name_cannot_continue_its_sessions(served: Served) -> None:
    # Sessions belong to one token, not to a name: a name may be used again after a revocation.
    old = served.token("reused-name")
    session_id = post(served.url, old).headers["mcp-session-id"]
    revoke_token(served.db, "reused-name")
    new = create_token(served.db, "reused-name", "write")
    served.tokens["reused-name (again)"] = new
    call = json.dumps(
        {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "list_scenarios", "arguments": {}}}
    ).encode()
    assert post(served.url, new, call, **{"mcp-session-id": session_id}).status_code == 404
    assert post(served.url, new).status_code == 200  # its own sessions work


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


def test_a_body_over_the_limit_without_a_valid_token_gets_401(served: Served) -> None:
    """Every request without a valid token gets 401 (issue 25, point 3), a large one too:
    the body limit is told only to callers who may send."""

    def chunks() -> Iterator[bytes]:
        for _ in range(17):
            yield b" " * 1_000_000

    headers = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream"}
    for token in (None, "nonsense", "hst_0123456789abcdef_" + "A" * 43):
        auth = {"Authorization": f"Bearer {token}"} if token else {}
        declared = post(served.url, token, b" " * 16_000_001)
        streamed = httpx2.post(served.url, content=chunks(), headers={**headers, **auth}, timeout=60)
        for answer in (declared, streamed):
            assert answer.status_code == 401, (token, answer.text)
            assert "invalid_token" in answer.headers["www-authenticate"]
            assert "limit" not in answer.text


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


# ------------------------------------------------------------------ scopes and tags, end to end
# Issue 25, point 6: what a token may do, shown over Streamable HTTP against the module's
# real server process (tests/test_access.py shows the same in-process, under ``granted``).

#: Arguments of every tool that needs the write scope, each of which would change the
#: store if it ran (the scenario ``e2e-w`` and the file ``e2e-w.json`` are made first).
WRITE_CALLS: dict[str, dict[str, Any]] = {
    "save_scenario": {"name": "e2e-w-new", "entities": {"patients": [{"patient_id": "P"}]}},
    "add_entities": {"name": "e2e-w", "entities": {"patients": [{"patient_id": "Q"}]}},
    "remove_entities": {"name": "e2e-w", "entity_type": "patients", "entity_ids": ["W-1"]},
    "update_scenario": {"name": "e2e-w", "description": "changed", "add_tags": ["changed"]},
    "copy_scenario": {"source": "e2e-w", "new_name": "e2e-w-copy"},
    "merge_scenarios": {"sources": ["e2e-w", "seed"], "new_name": "e2e-w-merge"},
    "delete_scenario": {"name": "e2e-w"},
    "restore_scenario": {"name": "e2e-w", "version": 1},
    "import_scenario": {"file_path": "e2e-w.json", "name": "e2e-w-imported"},
}


def store_state(db: str) -> Any:
    """What a refused call must leave as it was: every scenario (current and in the
    trash) with its version, tags and description, and every history row's count."""
    store = ScenarioStore(db)
    current = store.list_scenarios(limit=1000)["scenarios"]
    trash = store.list_scenarios(deleted=True, limit=1000)["scenarios"]
    return (
        sorted((s["name"], s["version"], s["entity_count"], s["tags"], s.get("description")) for s in current),
        sorted(s["name"] for s in trash),
        {s["name"]: store.scenario_history(s["name"])["total_count"] for s in current},
    )


async def calls(url: str, token: str, made: list[tuple[str, dict[str, Any]]]) -> list[Any]:
    """The results (errors too) of ``made``, in one session of the token's."""
    async with session(url, token) as opened:
        return [await opened.call_tool(name, arguments) for name, arguments in made]


def error_text(result: Any) -> str:
    assert result.is_error, result.structured_content
    return str(result.content[0].text)


def test_every_write_tool_is_refused_for_a_read_token_over_http(served: Served) -> None:
    assert set(WRITE_CALLS) == {spec.name for spec in TOOLS if spec.scope == "write"}  # a new one must be added
    ScenarioStore(served.db).save_scenario("e2e-w", {"patients": [{"patient_id": "W-1"}, {"patient_id": "W-2"}]})
    ScenarioStore(served.db).add_entities("e2e-w", {"patients": [{"patient_id": "W-3"}]})  # a version 1 to restore
    imports = served.log.parent / ".healthsim"  # (the server's HOME: a default import folder)
    imports.mkdir(exist_ok=True)
    ScenarioStore(served.db).export_scenario_to_json("e2e-w", imports / "e2e-w.json")
    token = served.token("e2e-reader", "read")
    before = store_state(served.db)

    results = asyncio.run(calls(served.url, token, list(WRITE_CALLS.items())))

    for (name, _), result in zip(WRITE_CALLS.items(), results, strict=True):
        text = error_text(result)
        assert f"{name} needs the write scope" in text and "(e2e-reader) has read" in text, text
    assert store_state(served.db) == before  # nothing ran
    reads = asyncio.run(calls(served.url, token, [("list_scenarios", {}), ("load_scenario", {"name": "e2e-w"})]))
    assert not any(r.is_error for r in reads)


def test_purge_is_refused_for_a_write_token_and_allowed_for_admin_over_http(served: Served) -> None:
    store = ScenarioStore(served.db)
    store.save_scenario("e2e-p-kept", {"patients": [{"patient_id": "K"}]})
    store.save_scenario("e2e-p-trashed", {"patients": [{"patient_id": "T"}]})
    store.delete_scenario("e2e-p-trashed")
    purges = [
        ("delete_scenario", {"name": "e2e-p-kept", "purge": True}),
        ("delete_scenario", {"name": "e2e-p-trashed", "purge": True}),
    ]
    before = store_state(served.db)

    for result in asyncio.run(calls(served.url, served.token("e2e-writer", "write"), purges)):
        text = error_text(result)
        assert "needs the admin scope" in text and "(e2e-writer) has write" in text, text
    assert store_state(served.db) == before

    done = asyncio.run(calls(served.url, served.token("e2e-admin", "admin"), purges))
    assert [r.structured_content for r in done] == [
        {"deleted": True, "purged": True, "name": "e2e-p-kept"},
        {"deleted": True, "purged": True, "name": "e2e-p-trashed"},
    ]
    names = {s["name"] for s in store.list_scenarios(limit=1000)["scenarios"]}
    trash = {s["name"] for s in store.list_scenarios(deleted=True, limit=1000)["scenarios"]}
    assert not {"e2e-p-kept", "e2e-p-trashed"} & (names | trash)


def test_a_tag_limited_token_sees_nothing_of_another_tags_scenarios_over_http(served: Served) -> None:
    store = ScenarioStore(served.db)
    store.save_scenario("e2e-t-mine", {"patients": [{"patient_id": "MINE-1"}]}, tags=["e2e-mine"])
    store.save_scenario("e2e-t-theirs", {"patients": [{"patient_id": "THEIRS-1"}]}, tags=["e2e-theirs"])
    store.save_scenario("e2e-t-gone", {"patients": [{"patient_id": "GONE-1"}]}, tags=["e2e-theirs"])
    store.delete_scenario("e2e-t-gone")  # in the trash
    theirs = store.load_scenario("e2e-t-theirs")["scenario_id"]
    exports = served.log.parent / "Downloads"  # (the server's HOME: its default export folder)
    exported_before = set(exports.rglob("*")) if exports.exists() else set()
    token = served.token("e2e-tagged", "write", ["E2E-Mine"])  # tags match in any case
    hidden = ("e2e-t-theirs", theirs, theirs.upper())
    refused = [
        *(("load_scenario", {"name": name}) for name in hidden),
        *(("load_scenario", {"name": name, "entity_type": "patients"}) for name in hidden),
        *(("summarize_scenario", {"name": name}) for name in hidden),
        *(("scenario_history", {"name": name}) for name in hidden),
        ("diff_scenarios", {"a": "e2e-t-mine", "b": "e2e-t-theirs"}),
        ("diff_scenarios", {"a": theirs, "b": "e2e-t-mine"}),
        ("export_scenario", {"name": "e2e-t-theirs"}),
        ("export_scenario", {"name": theirs, "format": "ndjson"}),
        ("merge_scenarios", {"sources": ["e2e-t-mine", "e2e-t-theirs"], "new_name": "e2e-t-stolen"}),
        ("merge_scenarios", {"sources": [theirs, "e2e-t-mine"], "new_name": "e2e-t-stolen"}),
        ("copy_scenario", {"source": theirs, "new_name": "e2e-t-stolen"}),
        ("add_entities", {"name": "e2e-t-theirs", "entities": {"patients": [{"patient_id": "X"}]}}),
        ("restore_scenario", {"name": "e2e-t-gone"}),
        ("scenario_history", {"name": "e2e-t-gone"}),
    ]
    queries = [
        "SELECT DISTINCT scenario FROM entities ORDER BY 1",
        "SELECT DISTINCT scenario FROM patients ORDER BY 1",
        "SELECT name FROM scenarios ORDER BY 1",
        "SELECT count(*) FROM scenario_entities WHERE entity_data::VARCHAR LIKE '%THEIRS%'",
        "SELECT count(*) FROM healthsim_state_versions",  # no history of any scenario
        "SELECT count(*) FROM healthsim_state_tokens",  # nor the tokens
    ]
    made = [
        ("list_scenarios", {"limit": 100}),
        ("list_scenarios", {"tag": "e2e-theirs"}),
        ("list_scenarios", {"deleted": True, "limit": 100}),
        ("update_scenario", {"name": "e2e-t-mine", "remove_tags": ["e2e-mine"]}),
        *refused,
        ("load_scenario", {"name": "no-such-scenario"}),
        ("restore_scenario", {"name": "no-such-scenario"}),
        *(("query", {"sql": sql}) for sql in queries),
        ("save_scenario", {"name": "e2e-t-saved", "entities": {"patients": [{"patient_id": "S"}]}, "tags": ["x"]}),
        ("scenario_history", {"name": "e2e-t-saved"}),
        ("load_scenario", {"name": "e2e-t-mine", "entity_type": "patients"}),
    ]

    listed, by_tag, trash, untag, *results = asyncio.run(calls(served.url, token, made))
    answers, rows = results[: len(refused)], results[len(refused) + 2 :]
    missing_load, missing_restore = (
        error_text(result).split(": ", 1)[1].replace("no-such-scenario", "<name>")
        for result in results[len(refused) : len(refused) + 2]
    )
    entities, scenarios_rows, names, leaked, versions, tokens, saved, history, mine = rows

    assert {s["name"] for s in listed.structured_content["scenarios"]} == {"e2e-t-mine"}
    assert by_tag.structured_content["scenarios"] == []
    assert "e2e-t-gone" not in {s["name"] for s in trash.structured_content["scenarios"]}
    assert "would leave it without a tag this token (e2e-tagged) may use" in error_text(untag)
    for (tool, arguments), result in zip(refused, answers, strict=True):
        text = error_text(result)
        assert "not found" in text, (tool, arguments, text)
        for name in (*hidden, "e2e-t-stolen", "e2e-t-gone"):
            text = text.replace(name, "<name>")
        text = text.split(": ", 1)[1]  # (after "Error executing tool <tool>: ")
        if tool in ("load_scenario", "summarize_scenario", "scenario_history"):
            assert text == missing_load, (tool, arguments)  # as a missing one: nothing tells it exists
        elif tool == "restore_scenario":
            assert text == missing_restore, (tool, arguments)
    assert entities.structured_content["rows"] == [["e2e-t-mine"]]
    assert scenarios_rows.structured_content["rows"] == [["e2e-t-mine"]]
    assert names.structured_content["rows"] == [["e2e-t-mine"]]
    assert [r.structured_content["rows"] for r in (leaked, versions, tokens)] == [[[0]], [[0]], [[0]]]
    assert saved.structured_content["name"] == "e2e-t-saved"
    assert [v["by"] for v in history.structured_content["versions"]] == ["e2e-tagged"]
    assert mine.structured_content["entities"]["patients"] == [{"patient_id": "MINE-1"}]

    assert (set(exports.rglob("*")) if exports.exists() else set()) == exported_before  # nothing exported
    assert store.load_scenario("e2e-t-saved")["tags"] == ["x", "E2E-Mine"]  # it gets the token's tag
    assert store.scenario_history("e2e-t-saved")["versions"][0]["by"] == "e2e-tagged"
    assert store.load_scenario("e2e-t-theirs")["entities"]["patients"] == [{"patient_id": "THEIRS-1"}]
    assert store.scenario_history("e2e-t-theirs")["total_count"] == 1
    assert store.load_scenario("e2e-t-mine")["tags"] == ["e2e-mine"]
    assert "e2e-t-gone" in {s["name"] for s in store.list_scenarios(deleted=True)["scenarios"]}
    assert "e2e-t-stolen" not in {s["name"] for s in store.list_scenarios(limit=1000)["scenarios"]}


def test_a_token_without_tags_reads_every_scenario_but_no_token(served: Served) -> None:
    """Before, only a token with tags queried a private copy: one without tags ran its SQL
    on the store and read every token's name, scope, tags and hashes."""
    token = served.token("q-reader", "read")
    served.token("q-other", "admin", ["q-secret-team"])
    queries = (
        "SELECT * FROM healthsim_state_tokens",
        "SELECT count(*) FROM healthsim_state_versions",
        "SELECT DISTINCT scenario FROM entities WHERE scenario = 'seed'",
    )

    async def work() -> list[dict[str, Any]]:
        async with session(served.url, token) as opened:
            return [await call(opened, "query", sql=sql) for sql in queries]

    tokens, versions, seen = asyncio.run(work())
    assert tokens["rows"] == [] and "q-other" not in json.dumps(tokens)
    assert versions["rows"] == [[0]]
    assert seen["rows"] == [["seed"]]


def test_requests_are_read_as_strictly_as_over_stdio(served: Served) -> None:
    """The SDK's JSON reader keeps the last of repeated keys: over HTTP an entity
    ``{"a": 1, "a": 2}`` was saved as ``{"a": 2}`` and ``load_scenario(name=…, name=…)``
    loaded the second scenario, while stdio (``mcp.wire``) refused both. Over HTTP the
    same strict reading now answers such a request with a tool error; nothing runs."""
    token = served.token("strict", "write")
    session_id = post(served.url, token).headers["mcp-session-id"]
    headers = {"mcp-session-id": session_id, "mcp-protocol-version": "2025-06-18"}
    initialized = b'{"jsonrpc":"2.0","method":"notifications/initialized"}'
    assert post(served.url, token, initialized, **headers).status_code in (200, 202)
    call_text = '{"jsonrpc":"2.0","id":%d,"method":"tools/call","params":{"name":"%s","arguments":%s}}'
    bodies = [
        call_text % (2, "save_scenario", '{"name":"twice-a","entities":{"patients":[{"patient_id":"P","a":1,"a":2}]}}'),
        call_text % (3, "load_scenario", '{"name":"seed","name":"twice-b"}'),
        call_text % (4, "save_scenario", '{"name":"twice-c","name":"twice-d","entities":{}}'),
    ]
    for body in bodies:
        answer = post(served.url, token, body.encode(), **headers)
        assert answer.status_code == 200, answer.text
        result = answer.json()["result"]
        assert result["isError"] and "twice in one object" in result["content"][0]["text"], result
        assert "Nothing was done" in result["content"][0]["text"]
    ping = post(served.url, token, b'{"jsonrpc":"2.0","id":5,"method":"ping","params":{"a":1,"a":2}}', **headers)
    assert ping.json()["error"]["code"] == -32602 and "twice" in ping.json()["error"]["message"]
    names = {s["name"] for s in ScenarioStore(served.db).list_scenarios(limit=1000)["scenarios"]}
    assert not names & {"twice-a", "twice-b", "twice-c", "twice-d"}
    # Without a valid token such a request is answered 401, as every other one.
    assert post(served.url, "hst_0123456789abcdef_" + "A" * 43, bodies[0].encode(), **headers).status_code == 401
    assert post(served.url, None, bodies[0].encode(), **headers).status_code == 401


def test_one_token_cannot_fill_the_servers_sessions(served: Served) -> None:
    """The SDK keeps up to 10,000 sessions, each for 30 idle minutes: one token (a client
    that opens a session per call and never ends it, or a leaked read token) filled them in
    about a minute, and every other client then got 503. A token keeps at most
    ``SESSIONS_PER_TOKEN`` sessions: opening one more ends its least recently used one."""
    from healthsim.mcp.http import SESSIONS_PER_TOKEN

    token, other = served.token("many-sessions", "read"), served.token("bystander", "read")
    theirs = post(served.url, other).headers["mcp-session-id"]
    opened = [post(served.url, token).headers["mcp-session-id"] for _ in range(SESSIONS_PER_TOKEN)]
    ping = b'{"jsonrpc":"2.0","id":9,"method":"ping"}'

    def alive(session_id: str, owner: str) -> int:
        headers = {"mcp-session-id": session_id, "mcp-protocol-version": "2025-06-18"}
        return post(served.url, owner, ping, **headers).status_code

    assert alive(opened[0], token) == 200  # now the most recently used
    more = [post(served.url, token).headers["mcp-session-id"] for _ in range(3)]
    assert [alive(s, token) for s in opened[1:4]] == [404, 404, 404]  # the least recently used ended
    assert alive(opened[0], token) == 200 and all(alive(s, token) == 200 for s in [*opened[4:], *more])
    assert alive(theirs, other) == 200  # another token's sessions are its own


def test_a_team_store_that_cannot_be_reached_gets_503_not_500(tmp_path: Path) -> None:
    """With the team store down, every request with a bearer token got a bare 500
    "Internal Server Error" (a client cannot tell a bug from an outage) and the log a
    30-line traceback per request. It now gets 503 with a JSON-RPC error that says to try
    again, which names neither the store's host nor its database (anyone may send a
    bearer header); the log has one line saying why."""
    server = PgServer()
    server.start()
    try:
        db = server.new_database()
        ScenarioStore(db).save_scenario("seed", {"patients": [{"patient_id": "S"}]})
        token = create_token(db, "outage", "read")
        process, port, log, _ = start_server(db, tmp_path)
    finally:
        server.stop()
    try:
        url = f"http://127.0.0.1:{port}/mcp"
        for sent in (token, "hst_0123456789abcdef_" + "A" * 43):
            answer = post(url, sent)
            assert answer.status_code == 503, answer.text
            message = answer.json()["error"]["message"]
            assert "try again" in message and "127.0.0.1" not in message and "hs_test" not in message, message
        assert post(url, None).status_code == 401  # no token: 401, as always
    finally:
        process.terminate()
        process.wait(10)
    said = log.read_text()
    assert "Traceback" not in said and "no server is listening" in said, said[-2000:]
