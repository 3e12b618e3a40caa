"""Arguments an assistant got wrong, answered so that it can correct them at once.

The SDK validates a call's arguments with pydantic and answers a mistake with pydantic's
text (``1 validation error for remove_entitiesArguments entity_ids Field required
[type=missing, input_value=…] For further information visit https://errors.pydantic.dev/…``),
and it ignores arguments the tool does not have: ``list_scenarios(name="x")`` listed
everything, ``export_scenario(path=…)`` wrote to the default place, and the assistant was
none the wiser. :class:`CheckedTool` refuses an unknown argument, naming it, the closest
real one and the tool's arguments, and says of a wrong value which argument it is and what
it should be. Nothing runs in either case.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Mapping
from typing import Any

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.mcpserver.tools import Tool
from pydantic import ValidationError

from .._text import cut_middle, safe_text

__all__ = ["CheckedServer", "CheckedTool", "unknown_arguments_text", "validation_text"]

#: The problems of one call that an answer names (the rest are counted).
MAX_PROBLEMS = 3
#: A name the caller gave is quoted with at most this many characters.
NAME_CHARS = 100
_JSON_TYPES = {dict: "an object", list: "an array", str: "a string", bool: "a boolean", int: "an integer"}
_JSON_TYPES |= {float: "a number", type(None): "null"}
_JSON_WORDS = (("a valid dictionary", "a JSON object"), ("a valid list", "a JSON array"))


class CheckedTool(Tool):
    """A tool that refuses unknown arguments and explains wrong ones in plain words.

    The SDK offers no supported hook between a call's raw arguments and its validation
    (its server middleware sees every message, but is documented as provisional), so this
    overrides ``Tool.run``: what it relies on is the first parameter (the raw arguments)
    and a ``ToolError`` caused by pydantic's ``ValidationError``. The rest of the
    signature is passed through as it comes, so a parameter the SDK adds does not break
    the call; ``tests/test_mcp_arguments.py`` fails by name when either assumption goes.
    """

    async def run(self, arguments: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
        unknown = unknown_arguments_text(self.name, self.parameters, arguments)
        if unknown:
            raise ToolError(f"Error executing tool {self.name}: {unknown}")
        try:
            return await super().run(arguments, *args, **kwargs)
        except ToolError as exc:
            cause = exc.__cause__
            if not isinstance(cause, ValidationError):
                raise
            # ``from cause`` keeps the SDK's log line ("rejected arguments: [names]").
            raise ToolError(
                f"Error executing tool {self.name}: {validation_text(self.name, self.parameters, cause)}"
            ) from cause


class CheckedServer(MCPServer):
    """The SDK's server, answering a call of an unknown tool with the one probably meant and
    the tools there are (the SDK said only "Unknown tool: load")."""

    async def call_tool(self, name: str, arguments: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
        names = [tool.name for tool in await self.list_tools()]
        if name not in names:
            close = closest(name, names)
            meant = f" (did you mean {close!r}?)" if close else ""
            shown = cut_middle(safe_text(name), NAME_CHARS)  # (a caller's name may be megabytes long)
            raise ToolError(f"Unknown tool: {shown}{meant}; the tools are: {', '.join(names)}")
        return await super().call_tool(name, arguments, *args, **kwargs)


def arguments_text(schema: Mapping[str, Any]) -> str:
    """The tool's arguments, required ones marked: ``name (required), version, limit``."""
    required = set(schema.get("required", ()))
    names = schema.get("properties", {})
    return ", ".join(f"{name} (required)" if name in required else name for name in names)


def unknown_arguments_text(tool: str, schema: Mapping[str, Any], arguments: Mapping[str, Any]) -> str | None:
    """What is wrong when ``arguments`` holds names the tool does not take, else None."""
    known = list(schema.get("properties", {}))
    unknown = [name for name in arguments if name not in known]
    if not unknown:
        return None
    parts = []
    for name in unknown[:MAX_PROBLEMS]:
        close = closest(name, known)
        shown = cut_middle(safe_text(name), NAME_CHARS)
        parts.append(f"unknown argument {shown!r}" + (f" (did you mean {close!r}?)" if close else ""))
    if len(unknown) > MAX_PROBLEMS:
        parts.append(f"and {len(unknown) - MAX_PROBLEMS} more")
    missing = [name for name in schema.get("required", ()) if name not in arguments]
    if missing:
        parts.append("; ".join(f"{name!r} is required" for name in missing))
    return cut_middle(f"{'; '.join(parts)}; {tool} takes: {arguments_text(schema)}; nothing was done")


def closest(name: str, known: list[str]) -> str | None:
    """The argument ``name`` was probably meant to be: a near spelling (``entity_type`` for
    ``entity_typ``), else one that holds it or that it holds (``entity_ids`` for ``ids``)."""
    near = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    if near:
        return near[0]
    folded = name.lower()
    if len(folded) < 3:
        return None
    return next((k for k in known if folded in k or (len(k) >= 3 and k in folded)), None)


def _given(value: Any) -> str:
    """What the caller passed, in its words: a short scalar as JSON, else its JSON type."""
    if isinstance(value, (int, float)) or (isinstance(value, str) and len(value) <= 40):
        return safe_text(json.dumps(value, ensure_ascii=False))
    return _JSON_TYPES.get(type(value), type(value).__name__)


def validation_text(tool: str, schema: Mapping[str, Any], error: ValidationError) -> str:
    """Pydantic's errors of one call as plain words: the argument, what it should be, what it got."""
    parts = []
    problems = error.errors(include_url=False)
    for problem in problems[:MAX_PROBLEMS]:
        where = ".".join(str(part) for part in problem["loc"]) or "the arguments"
        if problem["type"] == "missing":
            parts.append(f"argument {where!r} is required")
            continue
        given = _given(problem.get("input"))
        message = str(problem["msg"]).replace("Input should", "it should")
        for python, json_name in _JSON_WORDS:  # the assistant writes JSON, not Python
            message = message.replace(python, json_name)
        parts.append(f"argument {where!r}: {message} (got {given})")
    if len(problems) > MAX_PROBLEMS:
        parts.append(f"and {len(problems) - MAX_PROBLEMS} more")
    return cut_middle(f"{'; '.join(parts)}; {tool} takes: {arguments_text(schema)}; nothing was done")
