"""The tool list an assistant reads, kept byte for byte: every tool's name,
description, input and output schema and annotations as ``tools/list`` sends them, compared
with a snapshot taken from the server before its tools moved into ``healthsim.mcp.tools``.

A change to the tool list is a change an assistant sees: make it on purpose, then refresh
the snapshot with ``HEALTHSIM_UPDATE_SNAPSHOT=1 pytest tests/test_mcp_tool_snapshot.py``
and review its diff.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import os
from pathlib import Path
from typing import Any

from mcp import Client

from healthsim.mcp import tools
from healthsim.mcp_server import INSTRUCTIONS, build_server

SNAPSHOT = Path(__file__).parent / "fixtures" / "mcp_tool_list.json"


def tools_list(db: Path) -> list[dict[str, Any]]:
    """``tools/list`` as the client receives it, in the server's order and key order."""

    async def main() -> list[dict[str, Any]]:
        async with Client(build_server(db), mode="legacy", cache=None) as client:
            tools = (await client.session.list_tools()).tools
            return [tool.model_dump(mode="json", by_alias=True, exclude_none=True) for tool in tools]

    return asyncio.run(main())


def as_text(value: Any) -> str:
    # Key order kept (not sorted): the bytes on the wire follow it.
    return json.dumps(value, indent=1, ensure_ascii=False) + "\n"


def test_the_tool_list_is_byte_for_byte_the_snapshot(db_path: Path) -> None:
    listed = {"instructions": INSTRUCTIONS, "tools": tools_list(db_path)}
    if os.environ.get("HEALTHSIM_UPDATE_SNAPSHOT") == "1":
        SNAPSHOT.write_text(as_text(listed), encoding="utf-8")
    expected = SNAPSHOT.read_text(encoding="utf-8")
    assert as_text(listed) == expected
    # What the snapshot must hold to prove anything: every field an assistant reads.
    tools = json.loads(expected)["tools"]
    assert len(tools) == 17
    for tool in tools:
        assert {"name", "description", "inputSchema", "outputSchema", "annotations"} <= tool.keys(), tool


def test_every_tool_is_registered_once_with_a_distinct_name(db_path: Path) -> None:
    names = [tool["name"] for tool in tools_list(db_path)]
    assert len(names) == len(set(names)) == 17


def test_the_tools_are_module_level_functions_over_a_context(db_path: Path) -> None:
    # What build_server registers is healthsim.mcp.tools.TOOLS, each a plain function whose
    # first parameter is the context (hidden from the input schema) ...
    names = [tool["name"] for tool in tools_list(db_path)]
    assert [spec.name for spec in tools.TOOLS] == names
    for spec in tools.TOOLS:
        assert getattr(tools, spec.name) is spec.fn and spec.fn.__qualname__ == spec.name
        assert next(iter(inspect.signature(spec.fn).parameters)) == "ctx"
    # ... that Python can call as it is.
    ctx = tools.ToolContext(db_path)
    saved = tools.save_scenario(ctx, "direct", {"patients": [{"patient_id": "p1"}]})
    assert saved["entity_count"] == 1
    listed = tools.list_scenarios(ctx)
    assert [s["name"] for s in listed.value["scenarios"]] == ["direct"] and listed.value["more"] == 0
