"""``healthsim.mcp.arguments``: what its overrides of the SDK's ``Tool.run`` and
``MCPServer.call_tool`` rely on, so that a new ``mcp`` release that changes it fails here,
by name, instead of silently letting unknown arguments through again.

(The answers themselves are tested through the official client in ``test_first_hour.py``.)
"""

from __future__ import annotations

import asyncio
import inspect

import pytest
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.mcpserver.tools import Tool
from pydantic import ValidationError

from healthsim.mcp.arguments import CheckedServer, CheckedTool


def test_the_overridden_sdk_methods_still_take_the_raw_arguments_first() -> None:
    for base, ours, method, leading in (
        (Tool, CheckedTool, "run", ["self", "arguments"]),
        (MCPServer, CheckedServer, "call_tool", ["self", "name", "arguments"]),
    ):
        assert method in vars(base), (
            f"mcp's {base.__name__} has no {method} any more: {ours.__name__} overrides nothing"
        )
        names = list(inspect.signature(vars(base)[method]).parameters)
        assert names[: len(leading)] == leading, f"mcp changed {base.__name__}.{method}{names}: update {ours.__name__}"


def _server() -> CheckedServer:
    def measure(count: int, label: str = "x") -> str:
        return f"{label}{count}"

    return CheckedServer(name="t", tools=[CheckedTool.from_function(measure, name="measure")])


def test_the_sdk_runs_our_checks_on_every_call() -> None:
    """The server's call of a tool reaches ``CheckedTool.run``, and the SDK still reports
    a wrong value as a ToolError caused by pydantic's ValidationError (which we retell)."""
    server = _server()
    with pytest.raises(ToolError, match="unknown argument 'cuont' \\(did you mean 'count'\\?\\)"):
        asyncio.run(server.call_tool("measure", {"cuont": 1}))
    with pytest.raises(ToolError) as wrong:
        asyncio.run(server.call_tool("measure", {"count": "many"}))
    assert isinstance(wrong.value.__cause__, ValidationError)
    assert "argument 'count': it should be a valid integer" in str(wrong.value), wrong.value
    with pytest.raises(ToolError, match="did you mean 'measure'"):
        asyncio.run(server.call_tool("measur", {"count": 1}))
    assert "y2" in str(asyncio.run(server.call_tool("measure", {"count": 2, "label": "y"})))
