"""Reading MCP requests from stdio strictly, so that every request gets an answer.

The SDK parses each line with jiter and drops, unanswered, a line it cannot read: one
nested more than about 200 levels, an integer longer than 4,300 digits, a lone
surrogate escape (``"\\ud800"``). The client then waits forever. It also keeps the last
of repeated keys, which an import of the same JSON from a file refuses.

``healthsim mcp`` therefore reads every line a second time, with Python's ``json``
(:func:`screen`): a request that nests more than :data:`MAX_DEPTH` levels (arguments
of a valid call never do: entities nest at most 100), holds an integer longer than
:data:`MAX_DIGITS` digits, NaN or infinity, a repeated key or a lone surrogate is
answered with an error that names the place — a tool error for ``tools/call``, a
JSON-RPC error otherwise — and never reaches a tool. A request the SDK cannot read for
any other reason is answered too, when its id can be found. Notifications and responses
(nobody waits for an answer) keep the SDK's behaviour.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from io import TextIOWrapper
from typing import Any, Self

import anyio
from mcp import types
from mcp.server.mcpserver import MCPServer
from mcp.server.stdio import stdio_server
from mcp.shared.message import SessionMessage

from .._text import cut_middle, json_path, safe_text

__all__ = ["MAX_DEPTH", "MAX_DIGITS", "answer_for", "refusal", "run_stdio", "screen"]

log = logging.getLogger("healthsim.mcp")

#: The deepest nesting of a whole request (the envelope takes 3 levels, an entity in
#: save_scenario's arguments 4 more, and entities may nest 100).
MAX_DEPTH = 120
#: The longest integer, in digits (Python's default conversion limit, as on save and import).
MAX_DIGITS = 4300
_SURROGATE = re.compile("[\ud800-\udfff]")
_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{}:,]|[^\s\[\]{}:,"]+')


class _Refused(ValueError):
    """A value the strict reading refuses, with the reason."""


class _Repeated(dict[str, Any]):
    """An object that had a repeated key (the first one is named)."""

    repeated: str = ""


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) == len(pairs):
        return result
    seen: set[str] = set()
    marked = _Repeated(result)
    marked.repeated = next(key for key, _ in pairs if key in seen or seen.add(key))  # type: ignore[func-returns-value]
    return marked


def _integer(text: str) -> int:
    digits = len(text.lstrip("-"))
    if digits > MAX_DIGITS:
        raise _Refused(f"an integer of {digits:,} digits (at most {MAX_DIGITS:,})")
    return int(text)


def _constant(text: str) -> Any:
    raise _Refused(f"{text}, which is not JSON (write it as a string or null)")


def _problem_in(message: Any) -> str | None:
    """The first defect in a parsed request: depth, a repeated key, a lone surrogate."""
    stack: list[tuple[Any, str, int]] = [(message, "$", 1)]
    while stack:  # a loop, not recursion: the request may nest deeply
        item, where, depth = stack.pop()
        if isinstance(item, str):
            if (found := _SURROGATE.search(item)) is not None:
                return f"a lone surrogate ({safe_text(found.group())}) in a value at {where}, which is not valid text"
        elif isinstance(item, (dict, list)):
            if depth > MAX_DEPTH:
                return f"nesting deeper than {MAX_DEPTH} levels at {where}"
            if isinstance(item, _Repeated):
                return f"the key {safe_text(item.repeated)!r} twice in one object at {where}"
            members = item.items() if isinstance(item, dict) else enumerate(item)
            for key, member in members:
                if isinstance(key, str) and (found := _SURROGATE.search(key)) is not None:
                    escape = safe_text(found.group())
                    return f"a lone surrogate ({escape}) in a key at {safe_text(json_path(where, key))}"
                stack.append((member, json_path(where, key), depth + 1))
    return None


def _arguments_path(problem: str) -> str:
    """A place named from the request's root, renamed from the tool arguments' own root."""
    return problem.replace("$.params.arguments", "$")


def screen(line: str) -> tuple[dict[str, Any] | None, str | None]:
    """Read one request line strictly.

    Returns:
        ``(envelope, problem)``: the request's ``id``, ``method`` and tool ``name`` as
        far as they can be read (None when not even those), and what is wrong with the
        line (None when nothing is).
    """
    try:
        message = json.loads(line, object_pairs_hook=_pairs, parse_int=_integer, parse_constant=_constant)
    except _Refused as exc:
        return _envelope(line), f"{exc}"
    except RecursionError:
        return _envelope(line), f"nesting deeper than {MAX_DEPTH} levels"
    except ValueError as exc:
        return _envelope(line), f"text that is not JSON ({exc})"
    if not isinstance(message, dict):
        return None, "not a JSON-RPC object"
    params = message.get("params")
    envelope = {
        "id": message.get("id"),
        "method": message.get("method"),
        "name": params.get("name") if isinstance(params, dict) else None,
    }
    problem = _problem_in(message)
    return envelope, None if problem is None else _arguments_path(problem)


def _envelope(line: str) -> dict[str, Any] | None:
    """The id, method and tool name of a request too broken to parse, read token by token
    at the top level (and in ``params``); None when there is no usable id."""
    found: dict[str, Any] = {}
    depth, key, expect_value, in_params = 0, None, False, False
    for token in _TOKEN.finditer(line):
        text = token.group()
        if text in "{[":
            if expect_value and depth == 1 and key == "params" and text == "{":
                in_params = True
            depth, expect_value = depth + 1, False
        elif text in "}]":
            depth -= 1
            in_params = in_params and depth >= 2
        elif text == ":":
            expect_value = True
        elif text == ",":
            key, expect_value = None, False
        elif expect_value:
            wanted = (depth == 1 and key in ("id", "method")) or (depth == 2 and in_params and key == "name")
            if wanted and key is not None:
                try:
                    found.setdefault(key, json.loads(text))
                except ValueError:
                    pass
            expect_value = False
        elif depth in (1, 2) and text.startswith('"'):
            key = json.loads(text) if len(text) < 40 else None
        if len(found) == 3:
            break
    return found or None


def answer_for(envelope: dict[str, Any] | None, problem: str) -> types.JSONRPCMessage | None:
    """The error answer to a request whose line has ``problem``; None when nobody waits
    for one (a notification, a response, or an id that cannot be sent back)."""
    if envelope is None:
        return None
    request_id, method = envelope.get("id"), envelope.get("method")
    if isinstance(request_id, bool) or not isinstance(request_id, (int, str)) or not isinstance(method, str):
        return None
    if isinstance(request_id, str) and safe_text(request_id) != request_id:
        return None
    problem = cut_middle(safe_text(problem))  # it may quote a key of megabytes
    if method == "tools/call":
        tool = safe_text(str(envelope.get("name")))[:200]
        text = f"cannot run {tool}: the request holds {problem}. Fix the arguments and call again. Nothing was done"
        result = types.CallToolResult(content=[types.TextContent(type="text", text=text)], is_error=True)
        return types.JSONRPCResponse(
            jsonrpc="2.0", id=request_id, result=result.model_dump(by_alias=True, exclude_none=True)
        )
    return types.JSONRPCError(
        jsonrpc="2.0",
        id=request_id,
        error=types.ErrorData(
            code=types.INVALID_PARAMS, message=f"{safe_text(method)[:200]}: the request holds {problem}"
        ),
    )


def refusal(line: str, parsed: object) -> types.JSONRPCMessage | None:
    """The answer to send instead of passing on what the SDK made of ``line``
    (``parsed``: a message, or the exception it raised), or None to pass it on.

    A request with an id always gets an answer: either the SDK read it and the strict
    reading found nothing wrong (None: the SDK answers it), or this is the error answer.
    """
    envelope, problem = screen(line)
    if problem is None and isinstance(parsed, Exception):
        lines = str(parsed).splitlines() or [type(parsed).__name__]
        problem = "text the server cannot read: " + safe_text(lines[min(1, len(lines) - 1)].strip())[:300]
    return None if problem is None else answer_for(envelope, problem)


class _Lines:
    """Standard input's lines, each kept until :class:`_Screened` takes the item the SDK
    made of it (the SDK sends exactly one item per line, in order)."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream
        self.pending: deque[str] = deque()

    def __aiter__(self) -> AsyncIterator[str]:
        return self._lines()

    async def _lines(self) -> AsyncIterator[str]:
        async for line in self._stream:
            self.pending.append(line)
            yield line


class _Screened:
    """The transport's read stream, with refused or unreadable requests answered instead
    of passed on; each item is judged with the line it was made of."""

    def __init__(self, inner: Any, write_stream: Any, lines: _Lines) -> None:
        self._inner = inner
        self._write = write_stream
        self._lines = lines

    @property
    def last_context(self) -> Any:  # the SDK reads the sender's context from the stream
        return getattr(self._inner, "last_context", None)

    async def receive(self) -> Any:
        while True:
            item = await self._inner.receive()
            line = self._lines.pending.popleft() if self._lines.pending else ""
            answer = refusal(line, item)
            if answer is None:
                return item
            log.warning("answered a refused or unreadable request with an error")
            try:
                await self._write.send(SessionMessage(answer))
            except (anyio.ClosedResourceError, anyio.BrokenResourceError):
                pass  # the connection is closing: nobody is left to answer

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> Any:
        try:
            return await self.receive()
        except anyio.EndOfStream:
            raise StopAsyncIteration from None

    async def aclose(self) -> None:
        await self._inner.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


@asynccontextmanager
async def _stdin_lines() -> AsyncIterator[_Lines]:
    """Standard input as UTF-8 lines (a private copy of fd 0; fd 0 then reads nothing,
    so no child process can take the protocol's bytes)."""
    wire = os.dup(sys.stdin.fileno())
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, sys.stdin.fileno())
    os.close(null)
    # closefd=False and never closed: a worker thread may still block reading it on exit.
    text = TextIOWrapper(os.fdopen(wire, "rb", closefd=False), encoding="utf-8", errors="replace")
    yield _Lines(anyio.wrap_file(text))


async def run_stdio(server: MCPServer) -> None:
    """``MCPServer.run_stdio_async`` with every request screened (see above)."""
    lowlevel = getattr(server, "_lowlevel_server", None)  # no public way to pass the streams
    if lowlevel is None:  # another SDK layout: serve as the SDK does
        await server.run_stdio_async()
        return
    async with _stdin_lines() as lines, stdio_server(stdin=lines) as (read_stream, write_stream):  # type: ignore[arg-type]
        screened = _Screened(read_stream, write_stream, lines)
        await lowlevel.run(screened, write_stream, lowlevel.create_initialization_options())
