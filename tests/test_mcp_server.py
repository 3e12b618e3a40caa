"""The MCP server end to end: the official mcp client drives ``healthsim mcp`` over stdio."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import duckdb
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client

from helpers import legacy_files
from helpers.sample import diabetes_cohort
from healthsim.state import ScenarioStore
from test_database import hold_database

HEALTHSIM = Path(sys.executable).parent / "healthsim"
TOOLS = {"save_scenario", "load_scenario", "list_scenarios", "delete_scenario", "export_scenario", "import_scenario", "query"}


@asynccontextmanager
async def session(db_path: Path, **env: str) -> AsyncIterator[ClientSession]:
    params = StdioServerParameters(
        command=str(HEALTHSIM), args=["mcp"], env={**os.environ, "HEALTHSIM_DB": str(db_path), **env}
    )
    async with stdio_client(params) as (read, write), ClientSession(read, write) as client:
        await client.initialize()
        yield client


def with_session(db_path: Path, test: Callable[[ClientSession], Awaitable[None]], **env: str) -> None:
    async def main() -> None:
        async with session(db_path, **env) as client:
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


def test_tools_are_described_and_annotated(db_path: Path) -> None:
    async def test(client: ClientSession) -> None:
        tools = {tool.name: tool for tool in (await client.list_tools()).tools}
        assert set(tools) == TOOLS
        for name in ("list_scenarios", "load_scenario", "query"):
            assert tools[name].annotations.read_only_hint is True, name
        assert tools["delete_scenario"].annotations.destructive_hint is True
        assert tools["save_scenario"].annotations.read_only_hint is False
        assert "overwrite REPLACES" in tools["save_scenario"].description
        assert "patients(scenario" in tools["query"].description and "data->>" in tools["query"].description
        for tool in tools.values():
            assert len(tool.description) > 80, tool.name
            properties = tool.input_schema["properties"]
            assert properties and all("description" in p for p in properties.values()), tool.name
        assert tools["query"].input_schema["required"] == ["sql"]
        assert set(tools["load_scenario"].input_schema["properties"]) == {"name", "entity_type", "offset", "limit"}
        assert set(tools["save_scenario"].input_schema["properties"]) == {"name", "entities", "description", "tags", "overwrite"}

    with_session(db_path, test)


def test_every_tool_happy_path(db_path: Path, tmp_path: Path) -> None:
    entities = diabetes_cohort(4)

    async def test(client: ClientSession) -> None:
        saved = await call(client, "save_scenario", name="cohort", entities=entities, description="d", tags=["diabetes"])
        assert saved["entity_count"] == 16 and saved["entities_by_type"]["patients"] == 4
        listed = await call(client, "list_scenarios", tag="Diabetes")
        assert listed["total_count"] == 1 and listed["more"] == 0 and listed["scenarios"][0]["name"] == "cohort"
        loaded = await call(client, "load_scenario", name="cohort")
        assert loaded["entities_by_type"] == {"patients": 4, "encounters": 4, "diagnoses": 4, "lab_results": 4}
        assert loaded["entities"]["patients"] == entities["patients"][:2]  # samples
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
        assert (await call(client, "import_scenario", file_path=str(tmp_path / "ws.json")))["name"] == "legacy-workspace"
        assert (await call(client, "delete_scenario", name="cohort-copy"))["deleted"] is True
        assert (await call(client, "list_scenarios"))["total_count"] == 2
        overwritten = await call(client, "save_scenario", name="cohort", entities={"claims": [{"claim_id": "C"}]}, overwrite=True)
        assert overwritten["scenario_id"] == saved["scenario_id"] and overwritten["entity_count"] == 1

    with_session(db_path, test)
    assert ScenarioStore(db_path).load_scenario("cohort")["entities"] == {"claims": [{"claim_id": "C"}]}


def test_errors_say_what_to_do(db_path: Path, tmp_path: Path) -> None:
    async def test(client: ClientSession) -> None:
        for tool, args in (("load_scenario", {"name": "ghost"}), ("delete_scenario", {"name": "ghost"}),
                           ("export_scenario", {"name": "ghost"})):
            text = await call_error(client, tool, **args)
            assert "scenario 'ghost' not found; list_scenarios shows the scenarios that exist" in text, text
        await call(client, "save_scenario", name="x", entities={"patients": [{"patient_id": "A"}]})
        assert "already exists" in await call_error(client, "save_scenario", name="x", entities={})
        assert "is a UUID" in await call_error(client, "save_scenario", name="3f2b8c1e-9d4a-4e7b-8c6f-1a2b3c4d5e6f", entities={})
        assert "has no entity type 'aliens'" in await call_error(client, "load_scenario", name="x", entity_type="aliens")
        assert "only read-only SELECT" in await call_error(client, "query", sql="DELETE FROM scenarios")
        assert "disabled" in await call_error(client, "query", sql="SELECT * FROM read_text('/etc/passwd')")
        bad = tmp_path / "bad.json"
        bad.write_text("[1]")
        assert "top level is an array" in await call_error(client, "import_scenario", file_path=str(bad))
        assert (await call(client, "list_scenarios"))["total_count"] == 1  # still serving

    with_session(db_path, test)


def test_large_scenario_is_paged_within_a_few_kilobytes(db_path: Path) -> None:
    patients = [
        {"patient_id": f"MRN-{i:05d}", "name": {"given": "Ana", "family": f"F{i}"}, "address": {"city": "Springfield", "zip": "62701"}}
        for i in range(4000)
    ]
    labs = [{"patient_id": f"MRN-{i:05d}", "loinc": "4548-4", "value": 7.1} for i in range(1000)]
    ScenarioStore(db_path).save_scenario("big", {"patients": patients, "lab_results": labs})

    async def test(client: ClientSession) -> None:
        result = await client.call_tool("load_scenario", {"name": "big"})
        assert len(result.model_dump_json()) < 4000  # the whole response, not megabytes
        summary = json.loads(result.content[0].text)
        assert summary["entity_count"] == 5000 and len(summary["entities"]["patients"]) == 2
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


def test_locked_database_is_an_error_and_the_server_keeps_serving(db_path: Path) -> None:
    ScenarioStore(db_path).save_scenario("x", {})

    async def test(client: ClientSession) -> None:
        holder = hold_database(db_path, 60)
        try:
            text = await call_error(client, "list_scenarios")
            assert "is locked by another process" in text and str(db_path) in text
        finally:
            holder.kill()
            holder.wait()
        assert (await call(client, "list_scenarios"))["total_count"] == 1

    with_session(db_path, test, HEALTHSIM_LOCK_TIMEOUT="0.5")


def test_server_holds_no_lock_between_calls(db_path: Path) -> None:
    ScenarioStore(db_path).save_scenario("x", {"patients": [{"patient_id": "A"}]})

    async def test(client: ClientSession) -> None:
        await call(client, "load_scenario", name="x")
        # While the server runs, another program (this test) writes to the same file.
        con = duckdb.connect(str(db_path))
        con.close()
        ScenarioStore(db_path).save_scenario("from-terminal", {})
        assert (await call(client, "list_scenarios"))["total_count"] == 2

    with_session(db_path, test)


def test_missing_database_is_an_error_not_a_crash(tmp_path: Path) -> None:
    async def test(client: ClientSession) -> None:
        assert (await call(client, "list_scenarios"))["total_count"] == 0
        assert "no database" in await call_error(client, "query", sql="SELECT 1")
        assert "not found" in await call_error(client, "load_scenario", name="x")

    with_session(tmp_path / "nothing-yet" / "h.duckdb", test)
