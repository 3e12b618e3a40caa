"""The MCP server, driven by the official mcp client.

Most tests connect the client in-process to ``build_server(db)`` (the SDK's in-memory
transport: the same JSON-RPC session and handshake as over stdio, without a subprocess).
One smoke test runs ``healthsim mcp`` over stdio, and the tests whose behaviour lives in
the stdio loop of a real process (requests the SDK cannot parse, responses it cannot
encode) stay subprocess tests too.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from mcp import Client, ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client

from healthsim.mcp_server import build_server
from healthsim.state import ScenarioStore
from helpers import legacy_files
from helpers.database import hold_database
from helpers.paths import NO_SUCH_USER, no_such_user
from helpers.sample import diabetes_cohort

HEALTHSIM = Path(sys.executable).parent / "healthsim"


@pytest.fixture(autouse=True)
def file_folders(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Over MCP, exports and imports stay in their folders: here the test's own folder."""
    monkeypatch.setenv("HEALTHSIM_EXPORT_DIR", str(tmp_path))
    monkeypatch.setenv("HEALTHSIM_IMPORT_DIRS", str(tmp_path))


TOOLS = {
    "summarize_scenario",
    "check_scenario",
    "save_scenario",
    "load_scenario",
    "list_scenarios",
    "delete_scenario",
    "export_scenario",
    "import_scenario",
    "query",
    "add_entities",
    "remove_entities",
    "update_scenario",
    "copy_scenario",
    "merge_scenarios",
    "scenario_history",
    "restore_scenario",
    "diff_scenarios",
}


@asynccontextmanager
async def session(db: Path | None) -> AsyncIterator[ClientSession]:
    """A client session connected in-process to ``build_server(db)``.

    ``mode="legacy"``: the initialize handshake over in-memory JSON-RPC streams, as
    ``ClientSession`` does over stdio (not the SDK's direct in-process dispatch).
    ``db=None`` follows HEALTHSIM_DB at each call, as ``healthsim mcp`` does.
    """
    async with Client(build_server(db), mode="legacy", cache=None) as client:
        yield client.session


def with_session(db: Path | None, test: Callable[[ClientSession], Awaitable[None]]) -> None:
    async def main() -> None:
        async with session(db) as client:
            await asyncio.wait_for(test(client), timeout=120)

    asyncio.run(main())


@asynccontextmanager
async def stdio_session(db_path: Path, **env: str) -> AsyncIterator[ClientSession]:
    """A client session with ``healthsim mcp`` run as a real subprocess over stdio."""
    params = StdioServerParameters(
        command=str(HEALTHSIM), args=["mcp"], env={**os.environ, "HEALTHSIM_DB": str(db_path), **env}
    )
    async with stdio_client(params) as (read, write), ClientSession(read, write) as client:
        await client.initialize()
        yield client


def with_stdio_session(db_path: Path, test: Callable[[ClientSession], Awaitable[None]], **env: str) -> None:
    async def main() -> None:
        async with stdio_session(db_path, **env) as client:
            await asyncio.wait_for(test(client), timeout=120)

    asyncio.run(main())


async def call(client: ClientSession, tool: str, **arguments: Any) -> Any:
    result = await client.call_tool(tool, arguments)
    assert not result.is_error, result.content[0].text
    return json.loads(result.content[0].text)


async def call_error(client: ClientSession, tool: str, **arguments: Any) -> str:
    result = await client.call_tool(tool, arguments)
    assert result.is_error
    return result.content[0].text


@pytest.mark.slow
def test_installed_server_over_stdio_smoke(db_path: Path, tmp_path: Path) -> None:
    """The one real-subprocess smoke test: ``healthsim mcp`` on PATH, stdio, a real database file."""
    assert HEALTHSIM.exists()

    async def test(client: ClientSession) -> None:
        assert TOOLS <= {tool.name for tool in (await client.list_tools()).tools}  # the exact set: below
        saved = await call(client, "save_scenario", name="cohort", entities=diabetes_cohort(3), tags=["smoke"])
        assert saved["entity_count"] == 12
        assert (await call(client, "list_scenarios", tag="smoke"))["total_count"] == 1
        page = await call(client, "load_scenario", name="cohort", entity_type="patients", limit=2)
        assert [p["patient_id"] for p in page["entities"]["patients"]] == ["MRN-00000", "MRN-00001"]
        assert (await call(client, "query", sql="SELECT count(*) FROM patients"))["rows"] == [[3]]
        exported = await call(client, "export_scenario", name="cohort", output_path=str(tmp_path / "cohort.json"))
        assert (await call(client, "import_scenario", file_path=exported["path"], name="copy"))["entity_count"] == 12
        assert (await call(client, "delete_scenario", name="copy"))["deleted"] is True
        assert "not found" in await call_error(client, "load_scenario", name="copy")

    with_stdio_session(db_path, test)
    assert [s["name"] for s in ScenarioStore(db_path).list_scenarios()["scenarios"]] == ["cohort"]


def test_tools_are_described_and_annotated(db_path: Path) -> None:
    async def test(client: ClientSession) -> None:
        tools = {tool.name: tool for tool in (await client.list_tools()).tools}
        assert set(tools) == TOOLS
        for name in ("list_scenarios", "load_scenario", "query", "summarize_scenario"):
            assert tools[name].annotations.read_only_hint is True, name
        assert tools["delete_scenario"].annotations.destructive_hint is True
        assert tools["save_scenario"].annotations.read_only_hint is False
        assert "overwrite=true REPLACES" in tools["save_scenario"].description
        assert "patients(scenario" in tools["query"].description and "data->>" in tools["query"].description
        for tool in tools.values():
            assert len(tool.description) > 50, tool.name
            properties = tool.input_schema["properties"]
            # Every argument but the self-explanatory limit, offset and format says what it is.
            described = {n for n, p in properties.items() if "description" in p}
            assert set(properties) - described <= {"limit", "offset", "format"}, tool.name
        assert tools["query"].input_schema["required"] == ["sql"]
        assert set(tools["load_scenario"].input_schema["properties"]) == {
            "name",
            "entity_type",
            "offset",
            "limit",
            "version",
        }
        assert set(tools["save_scenario"].input_schema["properties"]) == {
            "name",
            "entities",
            "description",
            "tags",
            "overwrite",
            "check",
        }

    with_session(db_path, test)


def test_every_tool_happy_path(db_path: Path, tmp_path: Path) -> None:
    entities = diabetes_cohort(4)

    async def test(client: ClientSession) -> None:
        saved = await call(
            client, "save_scenario", name="cohort", entities=entities, description="d", tags=["diabetes"]
        )
        assert saved["entity_count"] == 16 and saved["entities_by_type"]["patients"] == 4
        listed = await call(client, "list_scenarios", tag="Diabetes")
        assert listed["total_count"] == 1 and listed["more"] == 0 and listed["scenarios"][0]["name"] == "cohort"
        loaded = await call(client, "load_scenario", name="cohort")
        assert loaded["entities_by_type"] == {"patients": 4, "encounters": 4, "diagnoses": 4, "lab_results": 4}
        assert loaded["types"]["patients"]["samples"] == entities["patients"][:2]
        assert loaded["types"]["patients"]["fields"]["patient_id"]["present"] == 1.0  # the summary
        page = await call(client, "load_scenario", name=saved["scenario_id"], entity_type="patients", offset=1, limit=2)
        assert page["entities"]["patients"] == entities["patients"][1:3]
        assert page["page"] == {"entity_type": "patients", "offset": 1, "returned": 2, "total": 4, "next_offset": 3}
        counted = await call(client, "query", sql="SELECT count(*) AS n FROM patients WHERE scenario = 'cohort'")
        assert counted["rows"] == [[4]]
        exported = await call(client, "export_scenario", name="cohort", output_path=str(tmp_path / "cohort.json"))
        assert Path(exported["path"]).exists()
        imported = await call(client, "import_scenario", file_path=exported["path"], name="cohort-copy")
        assert imported["entity_count"] == 16
        legacy_files.workspace(tmp_path / "ws.json")
        assert (await call(client, "import_scenario", file_path=str(tmp_path / "ws.json")))[
            "name"
        ] == "legacy-workspace"
        assert (await call(client, "delete_scenario", name="cohort-copy"))["deleted"] is True
        assert (await call(client, "list_scenarios"))["total_count"] == 2
        overwritten = await call(
            client, "save_scenario", name="cohort", entities={"claims": [{"claim_id": "C"}]}, overwrite=True
        )
        assert overwritten["scenario_id"] == saved["scenario_id"] and overwritten["entity_count"] == 1

    with_session(db_path, test)
    assert ScenarioStore(db_path).load_scenario("cohort")["entities"] == {"claims": [{"claim_id": "C"}]}


def test_errors_say_what_to_do(db_path: Path, tmp_path: Path) -> None:
    async def test(client: ClientSession) -> None:
        for tool, args in (
            ("load_scenario", {"name": "ghost"}),
            ("delete_scenario", {"name": "ghost"}),
            ("export_scenario", {"name": "ghost"}),
        ):
            text = await call_error(client, tool, **args)
            assert "scenario 'ghost' not found; list_scenarios shows the scenarios that exist" in text, text
        await call(client, "save_scenario", name="x", entities={"patients": [{"patient_id": "A"}]})
        assert "already exists" in await call_error(client, "save_scenario", name="x", entities={})
        assert "is a UUID" in await call_error(
            client, "save_scenario", name="3f2b8c1e-9d4a-4e7b-8c6f-1a2b3c4d5e6f", entities={}
        )
        assert "has no entity type 'aliens'" in await call_error(
            client, "load_scenario", name="x", entity_type="aliens"
        )
        assert "only read-only SELECT" in await call_error(client, "query", sql="DELETE FROM scenarios")
        assert "disabled" in await call_error(client, "query", sql="SELECT * FROM read_text('/etc/passwd')")
        bad = tmp_path / "bad.json"
        bad.write_text("[1]")
        assert "top level is an array" in await call_error(client, "import_scenario", file_path=str(bad))
        missing_home = await call_error(client, "import_scenario", file_path=f"~{no_such_user()}/x.json")
        assert f"there is no user '{NO_SUCH_USER}'" in missing_home and "unexpected" not in missing_home
        assert (await call(client, "list_scenarios"))["total_count"] == 1  # still serving

    with_session(db_path, test)


def test_large_scenario_is_paged_within_a_few_kilobytes(db_path: Path) -> None:
    patients = [
        {
            "patient_id": f"MRN-{i:05d}",
            "name": {"given": "Ana", "family": f"F{i}"},
            "address": {"city": "Springfield", "zip": "62701"},
        }
        for i in range(4000)
    ]
    labs = [{"patient_id": f"MRN-{i:05d}", "loinc": "4548-4", "value": 7.1} for i in range(1000)]
    ScenarioStore(db_path).save_scenario("big", {"patients": patients, "lab_results": labs})

    async def test(client: ClientSession) -> None:
        result = await client.call_tool("load_scenario", {"name": "big"})
        assert len(result.model_dump_json()) < 2 * 12 * 1024  # the summary, text and structured
        summary = json.loads(result.content[0].text)
        assert len(result.content[0].text.encode()) <= 12 * 1024
        assert summary["entity_count"] == 5000 and len(summary["types"]["patients"]["samples"]) == 2
        assert summary["types"]["patients"]["fields"]["address.city"]["top"] == [["Springfield", 4000]]
        assert summary == await call(client, "summarize_scenario", name="big")
        seen: list[str] = []
        offset: int | None = 0
        while offset is not None:
            page = await call(client, "load_scenario", name="big", entity_type="patients", offset=offset, limit=100)
            seen += [p["patient_id"] for p in page["entities"]["patients"]]
            offset = page["page"]["next_offset"]
        assert seen == [p["patient_id"] for p in patients]  # every entity once, in order
        listed = await call(client, "list_scenarios", limit=1)
        assert listed["more"] == 0
        rows = await call(client, "query", sql="SELECT * FROM patients", limit=5)
        assert rows["row_count"] == 5 and rows["total_rows"] == 4000

    with_session(db_path, test)


def test_list_scenarios_pages_on_with_offset(db_path: Path) -> None:
    """An assistant reaches every scenario, however many: offset pages on, ``more`` counts
    what is after the page, and a page past the last is empty."""
    store = ScenarioStore(db_path)
    for i in range(5):
        store.save_scenario(f"s{i}", {})

    async def test(client: ClientSession) -> None:
        pages = [await call(client, "list_scenarios", limit=2, offset=offset) for offset in (0, 2, 4)]
        names = [s["name"] for page in pages for s in page["scenarios"]]
        assert names == [s["name"] for s in store.list_scenarios()["scenarios"]]
        assert [page["more"] for page in pages] == [3, 1, 0]
        past = await call(client, "list_scenarios", offset=9)
        assert (past["scenarios"], past["total_count"], past["more"]) == ([], 5, 0)
        assert "offset" in await call_error(client, "list_scenarios", offset=-1)

    with_session(db_path, test)


def test_locked_database_is_an_error_and_the_server_keeps_serving(
    db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ScenarioStore(db_path).save_scenario("x", {})
    monkeypatch.setenv("HEALTHSIM_LOCK_TIMEOUT", "0.5")  # read at each call

    async def test(client: ClientSession) -> None:
        holder = hold_database(db_path, 60)  # another process holds the file
        try:
            text = await call_error(client, "list_scenarios")
            assert "is locked by another process" in text and str(db_path) in text
        finally:
            holder.kill()
            holder.wait()
        assert (await call(client, "list_scenarios"))["total_count"] == 1

    with_session(db_path, test)


WRITE_FROM_TERMINAL = """
import sys, duckdb
from healthsim.state import ScenarioStore
con = duckdb.connect(sys.argv[1])
con.close()
ScenarioStore(sys.argv[1]).save_scenario("from-terminal", {})
"""


def test_server_holds_no_lock_between_calls(db_path: Path) -> None:
    ScenarioStore(db_path).save_scenario("x", {"patients": [{"patient_id": "A"}]})

    async def test(client: ClientSession) -> None:
        await call(client, "load_scenario", name="x")
        # While the server runs, another program writes to the same file. It must be another
        # process: a connection this process kept open would be shared, not refused.
        subprocess.run(
            [sys.executable, "-c", WRITE_FROM_TERMINAL, str(db_path)],
            check=True,
            timeout=60,
            env={**os.environ, "HEALTHSIM_LOCK_TIMEOUT": "5"},
        )
        assert (await call(client, "list_scenarios"))["total_count"] == 2

    with_session(db_path, test)


def test_missing_database_is_an_error_not_a_crash(tmp_path: Path) -> None:
    async def test(client: ClientSession) -> None:
        assert (await call(client, "list_scenarios"))["total_count"] == 0
        assert "no database" in await call_error(client, "query", sql="SELECT 1")
        assert "not found" in await call_error(client, "load_scenario", name="x")

    with_session(tmp_path / "nothing-yet" / "h.duckdb", test)


# Sits between the client and `healthsim mcp` and turns the placeholder into the JSON escape
# "\ud800": the client's own JSON encoder refuses to send a lone surrogate, but other clients
# (JavaScript's JSON.stringify, Python's json) write one as this escape.
SURROGATE_SHIM = r"""
import subprocess, sys
server = subprocess.Popen(sys.argv[1:], stdin=subprocess.PIPE)
for line in sys.stdin.buffer:
    server.stdin.write(line.replace(b"LONE-SURROGATE", b"\\ud800"))
    server.stdin.flush()
server.stdin.close()
sys.exit(server.wait())
"""


@pytest.mark.slow  # a real `healthsim mcp` process
def test_lone_surrogate_escape_in_a_request_is_a_tool_error_and_the_server_keeps_serving(db_path: Path) -> None:
    # The SDK's parser refuses the escape and used to drop the request unanswered: the
    # client waited forever (here: the time limit below).
    params = StdioServerParameters(
        command=sys.executable,
        args=["-c", SURROGATE_SHIM, str(HEALTHSIM), "mcp"],
        env={**os.environ, "HEALTHSIM_DB": str(db_path)},
    )

    async def main() -> None:
        async with stdio_client(params) as (read, write), ClientSession(read, write) as client:
            await client.initialize()
            entities = {"patients": [{"patient_id": "A"}, {"patient_id": "B", "LONE-SURROGATE": 1}]}
            result = await asyncio.wait_for(client.call_tool("save_scenario", {"name": "s", "entities": entities}), 20)
            assert result.is_error
            text = result.content[0].text
            assert "save_scenario" in text and "lone surrogate" in text and "\\ud800" in text, text
            assert "key at $.entities.patients[1]" in text and "Nothing was done" in text, text
            assert (await asyncio.wait_for(call(client, "list_scenarios"), 20))["total_count"] == 0
            # A description holding the escape: a text, not a key.
            result = await asyncio.wait_for(
                client.call_tool("save_scenario", {"name": "s", "entities": {}, "description": "aLONE-SURROGATE"}), 20
            )
            assert result.is_error and "value at $.description" in result.content[0].text, result.content[0].text
            assert (await asyncio.wait_for(call(client, "save_scenario", name="s", entities={}), 20))["name"] == "s"

    asyncio.run(main())
    assert ScenarioStore(db_path).list_scenarios()["total_count"] == 1


@pytest.mark.slow  # a real `healthsim mcp` process
def test_lone_surrogate_in_an_imported_file_is_a_tool_error_and_the_server_keeps_serving(
    db_path: Path, tmp_path: Path
) -> None:
    # Error texts quoted the file's key with the raw surrogate; the SDK could not encode
    # the response and the server exited. The escape is written literally in the files.
    # A real process over stdio: the failure was in the stdio transport's encoder.
    files = {
        "entity-key.json": r'{"entities": {"patients": [{"\ud800": 1}]}}',
        "type-key.json": r'{"entities": {"\ud800": [{"a": 1}]}}',
        "top-level-key.json": r'{"name": "x", "\ud800": 1, "entities": {}}',
        "top-level-list.json": r'{"name": "x", "\ud800": [{"a": 1}], "entities": {}}',
    }
    for file_name, text in files.items():
        (tmp_path / file_name).write_text(text, encoding="utf-8")

    async def test(client: ClientSession) -> None:
        for file_name in files:
            result = await asyncio.wait_for(
                client.call_tool("import_scenario", {"file_path": str(tmp_path / file_name)}), 20
            )
            assert result.is_error, file_name
            text = result.content[0].text
            assert "\\ud800" in text and "unexpected" not in text, (file_name, text)
            text.encode("utf-8")
            assert (await asyncio.wait_for(call(client, "list_scenarios"), 20))["total_count"] == 0

    with_stdio_session(db_path, test)


def test_unreadable_requests_are_answered_only_when_someone_waits() -> None:
    from healthsim.mcp.wire import answer_for, screen

    def answer(line: str) -> dict[str, Any] | None:
        envelope, problem = screen(line)
        assert problem is not None, line
        message = answer_for(envelope, problem)
        return None if message is None else json.loads(message.model_dump_json(by_alias=True, exclude_unset=True))

    other = answer(r'{"jsonrpc":"2.0","id":"r1","method":"resources/read","params":{"uri":"x\udc00"}}')
    assert other is not None and other["id"] == "r1" and other["error"]["code"] == -32602
    assert "lone surrogate (\\udc00) in a value at $.params.uri" in other["error"]["message"]
    named = answer(r'{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"q\ud800","arguments":{}}}')
    assert named is not None and named["result"]["isError"] is True
    assert (
        "cannot run q\\ud800: the request holds a lone surrogate (\\ud800) in a value at $.params.name"
        in (named["result"]["content"][0]["text"])
    )
    assert answer(r'{"jsonrpc":"2.0","method":"notifications/x","params":{"a":"\ud800"}}') is None  # no id
    assert answer(r'{"jsonrpc":"2.0","id":"\ud800","method":"tools/list"}') is None  # id cannot be sent back
    assert answer("not json at all") is None
    cut_short = answer(r'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"query","arguments":{}},"x":1')
    assert cut_short is not None and "not JSON" in cut_short["result"]["content"][0]["text"]


def test_export_and_database_path_errors_are_tool_errors(
    db_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocker = tmp_path / "file.txt"
    blocker.write_text("not a folder")

    async def export(client: ClientSession) -> None:
        await call(client, "save_scenario", name="x", entities={})
        text = await call_error(client, "export_scenario", name="x", output_path=f"{blocker}/out.json")
        assert f"'{blocker}' is a file, not a folder" in text and "unexpected" not in text, text

    async def url(client: ClientSession) -> None:
        text = await call_error(client, "list_scenarios")
        assert "cannot use PostgreSQL database 'db' on 127.0.0.1:1" in text and "secret" not in text, text

    with_session(db_path, export)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.setenv("HEALTHSIM_DB", "postgresql://u:secret@127.0.0.1:1/db")
    with_session(None, url)  # the database from HEALTHSIM_DB, as `healthsim mcp` reads it
    assert list(work.iterdir()) == []  # no folders named after the URL


def test_tool_texts_are_always_valid_utf8() -> None:
    # Whatever a tool raises or returns, the SDK must be able to encode it (else it exits).
    from mcp.server.mcpserver.exceptions import ToolError

    from healthsim.mcp_server import _tool_errors
    from healthsim.state import StateError

    class RawMessage(StateError):
        def __str__(self) -> str:
            return "raw \ud800"

    class BrokenMessage(Exception):
        def __str__(self) -> str:
            raise RuntimeError("no text")

    for exc in (RawMessage(), ValueError("bad \udcff"), BrokenMessage(), ToolError("tool \ud800")):

        def tool(exc: Exception = exc) -> None:
            raise exc

        with pytest.raises(ToolError) as caught:
            _tool_errors(tool)()
        str(caught.value).encode("utf-8")
    result = {"path": "/tmp/\udcff.json", "name": "café"}
    text = _tool_errors(lambda: result)().content[0].text
    text.encode("utf-8")
    assert json.loads(text) == result  # the same JSON value, the surrogate as an escape
    assert _tool_errors(lambda: {"name": "café"})().content[0].text == '{"name":"café"}'  # readable when it can be


def test_a_scenario_built_in_ten_batches_loads_like_one_save(db_path: Path) -> None:
    """The assistant's workflow: save the first batch, add the rest in batches of 100."""
    patients = [{"patient_id": f"MRN-{i:05d}", "age": i % 90, "big": -(2**70) + i} for i in range(600)]
    claims = [{"claim_id": f"CLM-{i:05d}", "patient_id": f"MRN-{i:05d}", "lines": [{"line": 1}]} for i in range(400)]
    batches = [
        {"patients": patients[i * 60 : (i + 1) * 60], "claims": claims[i * 40 : (i + 1) * 40]} for i in range(10)
    ]

    async def test(client: ClientSession) -> None:
        tools = {tool.name: tool for tool in (await client.list_tools()).tools}
        assert "batches of up to about 100" in (tools["add_entities"].description or "")
        assert tools["add_entities"].annotations is not None and tools["add_entities"].annotations.destructive_hint
        await call(client, "save_scenario", name="built", entities=batches[0])
        for batch in batches[1:]:
            result = await call(client, "add_entities", name="built", entities=batch)
            assert result["added"] == {"patients": 60, "claims": 40} and "entities" not in result
            assert len(json.dumps(result)) < 500  # counts, never the entities
        fixed = await call(client, "add_entities", name="built", entities={"patients": [{**patients[5], "age": 99}]})
        assert fixed["updated"] == {"patients": 1}
        removed = await call(
            client, "remove_entities", name="built", entity_type="claims", entity_ids=["CLM-00000", "nope"]
        )
        assert removed["removed"] == {"claims": 1} and removed["not_found"] == ["nope"]
        entry = await call(client, "update_scenario", name="built", new_name="built-v1", add_tags=["batched"])
        assert entry["name"] == "built-v1" and entry["tags"] == ["batched"]
        copied = await call(client, "copy_scenario", source="built-v1", new_name="built-copy")
        assert copied["entity_count"] == 999
        merged = await call(client, "merge_scenarios", sources=["built-v1", "built-copy"], new_name="both", upsert=True)
        assert merged["entity_count"] == 999
        error = await call_error(client, "add_entities", name="missing", entities={"patients": []})
        assert "'missing' not found" in error

    with_session(db_path, test)
    store = ScenarioStore(db_path)
    store.save_scenario("one-save", {"patients": patients, "claims": claims})
    expected = {"patients": [*patients[:5], {**patients[5], "age": 99}, *patients[6:]], "claims": claims[1:]}
    assert store.load_scenario("built-v1")["entities"] == expected
    assert store.load_scenario("one-save")["entities"] == {"patients": patients, "claims": claims}


def test_undo_over_mcp_history_restore_diff_and_the_trash(db_path: Path) -> None:
    async def test(client: ClientSession) -> None:
        tools = {tool.name: tool for tool in (await client.list_tools()).tools}
        assert "restore_scenario brings it back" in (tools["delete_scenario"].description or "")
        assert (
            tools["scenario_history"].annotations is not None and tools["scenario_history"].annotations.read_only_hint
        )
        await call(client, "save_scenario", name="c", entities={"patients": [{"patient_id": "A", "v": 1}]})
        await call(
            client, "add_entities", name="c", entities={"patients": [{"patient_id": "A", "v": 2}, {"patient_id": "B"}]}
        )
        history = await call(client, "scenario_history", name="c")
        assert [v["version"] for v in history["versions"]] == [2, 1]
        old = await call(client, "summarize_scenario", name="c", version=1, samples=5)
        assert old["version"] == 1 and old["types"]["patients"]["samples"] == [{"patient_id": "A", "v": 1}]
        page = await call(client, "load_scenario", name="c", version=2, entity_type="patients", limit=1)
        assert page["page"]["next_offset"] == 1 and page["entities"]["patients"] == [{"patient_id": "A", "v": 2}]
        diff = await call(client, "diff_scenarios", a="c@1", b="c")
        assert diff["types"]["patients"]["added"] == 1 and diff["types"]["patients"]["changed"] == 1
        restored = await call(client, "restore_scenario", name="c", version=1)
        assert restored["version"] == 3
        # Writes that change nothing make no version, as in the library and the CLI: the
        # same restore again, an add of an empty type only (the type is not recorded).
        again = await call(client, "restore_scenario", name="c", version=1)
        assert (again["version"], again["changed"]) == (3, [])
        empty = await call(client, "add_entities", name="c", entities={"care_gaps": []})
        assert (empty["version"], empty["added"], empty["entities_by_type"]) == (3, {}, {"patients": 1})
        await call(client, "delete_scenario", name="c")
        trash = await call(client, "list_scenarios", deleted=True)
        assert [s["name"] for s in trash["scenarios"]] == ["c"]
        back = await call(client, "restore_scenario", name="c")
        assert back["entities_by_type"] == {"patients": 1}
        error = await call_error(client, "load_scenario", name="c", version=42)
        assert "version 42 of scenario 'c' does not exist" in error
        await call(client, "delete_scenario", name="c", purge=True)
        assert (await call(client, "list_scenarios", deleted=True))["total_count"] == 0

    with_session(db_path, test)


def test_export_scenario_writes_analytics_formats(db_path: Path, tmp_path: Path) -> None:
    ScenarioStore(db_path).save_scenario(
        "c", {"patients": [{"patient_id": "A", "address": {"city": "X"}}], "claims": []}
    )

    async def test(client: ClientSession) -> None:
        tools = {tool.name: tool for tool in (await client.list_tools()).tools}
        assert tools["export_scenario"].input_schema["properties"]["format"]["enum"] == [
            "json",
            "ndjson",
            "parquet",
            "csv",
            "fhir",
            "fhir-bundle",
        ]
        folder = await call(
            client, "export_scenario", name="c", output_path=str(tmp_path / "pq"), format="parquet", types=["patients"]
        )
        assert folder["path"] == str(tmp_path / "pq") and folder["format"] == "parquet"
        assert sorted(p.name for p in (tmp_path / "pq").iterdir()) == [".healthsim-export.json", "patients.parquet"]
        # The counts are those of what was written (they were the whole scenario's).
        assert (folder["entity_count"], folder["entities_by_type"], folder["version"]) == (1, {"patients": 1}, 1)
        lines = await call(
            client, "export_scenario", name="c", output_path=str(tmp_path / "p.ndjson"), format="ndjson", types=[]
        )
        assert (lines["entity_count"], lines["entities_by_type"]) == (0, {})
        assert (tmp_path / "p.ndjson").read_text() == ""
        every = await call(client, "export_scenario", name="c", output_path=str(tmp_path / "all.json"))
        assert every["entities_by_type"] == {"patients": 1, "claims": 0}
        error = await call_error(client, "export_scenario", name="c", format="csv", types=["aliens"])
        assert "no entity type 'aliens'" in error
        # A type is named as when saving: "patient" is patients.
        single = await call(
            client, "export_scenario", name="c", output_path=str(tmp_path / "s.json"), types=["patient"]
        )
        assert single["entities_by_type"] == {"patients": 1}
        page = await call(client, "load_scenario", name="c", entity_type="Patient")
        assert page["entities"] == {"patients": [{"patient_id": "A", "address": {"city": "X"}}]}
        assert page["page"]["entity_type"] == "patients"

    with_session(db_path, test)
