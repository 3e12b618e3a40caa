"""The MCP server: HealthSim State's operations as tools for AI assistants (stdio).

Run with ``healthsim mcp``. The tools are module-level functions in ``mcp.tools``;
this module registers them over one database. Each tool calls one library operation and
answers compact JSON, as text and as structured content (each tool declares its output schema). Every
answer fits a byte budget (``mcp.budget``: 12 KB for summaries, 32 KB for the rest) and
says when it was cut and how to get the rest. Exports and imports stay inside their
folders (``mcp.folders``). Errors come back as tool errors whose text says what to do
next; the server keeps serving. It holds no database lock between calls, so a terminal
can use the same database while it runs. Nothing is printed to stdout, which is the
protocol channel.

Every text the server sends is valid UTF-8: the SDK cannot encode a lone surrogate and
stops the whole server when a response holds one, so results and error texts escape them
(``\\ud800``). Requests are read strictly (``mcp.wire``): one that is too deep, holds a
too long integer, a repeated key or a lone surrogate gets an error answer instead of
being dropped unanswered (the SDK's parser drops what it cannot read).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import signal
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import anyio
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.mcpserver.tools import Tool
from mcp.types import CallToolResult, TextContent

from . import __version__
from ._text import ERROR_CHARS, cut_middle, safe_text
from .mcp.arguments import CheckedServer, CheckedTool
from .mcp.budget import ANSWER_BUDGET, answer_text, fit
from .mcp.caller import as_caller
from .mcp.tools import TOOLS, Answer, ToolContext, ToolSpec
from .mcp.wire import run_stdio
from .state import ScenarioNotFoundError, StateError
from .state.access import Scope
from .state.visibility import require_scope

__all__ = ["build_server", "serve", "INSTRUCTIONS"]

log = logging.getLogger("healthsim.mcp")


INSTRUCTIONS = """HealthSim State keeps synthetic healthcare scenarios (patients, encounters,
claims...) in a local database. Find them with list_scenarios, check one with
summarize_scenario, page its entities with load_scenario, answer questions with query
(read-only SQL). Build a large scenario in steps: save_scenario with the first batch, then
add_entities in batches of up to about 100, then summarize_scenario to check. Every change
makes a version: scenario_history lists them, restore_scenario undoes a change or a delete,
diff_scenarios shows what changed. Answers are cut to fit 12-32 KB and then say so
(truncated, truncated_note). Files: export_scenario writes in the export folder,
import_scenario reads from the import folders."""

F = TypeVar("F", bound=Callable[..., Any])


def _describe(exc: BaseException) -> str:
    """``str(exc)`` as valid UTF-8 and at most :data:`ERROR_CHARS` long, even for an
    exception whose ``__str__`` fails."""
    try:
        text = safe_text(str(exc))
    except Exception:
        return "(the error text could not be read)"
    return cut_middle(text, ERROR_CHARS)


def _tool_errors(tool: F, budget: int = ANSWER_BUDGET, scope: Scope = "read") -> F:
    """The tool with its answer cut to ``budget`` and sent as compact JSON text plus the
    same structured content; library errors become tool errors the assistant can act on;
    nothing crashes the server.

    Every text handed to the SDK is valid UTF-8: the SDK stops the server when it cannot
    encode a response, and the error texts quote the input, which may be anything.
    """

    @functools.wraps(tool)
    def wrapper(*args: Any, **kwargs: Any) -> CallToolResult:
        try:
            with as_caller():  # over HTTP: the request token's grant (scope, tags, history's "by")
                require_scope(scope, tool.__name__)  # the token's scope (issue 25); nothing limits stdio
                result = tool(*args, **kwargs)
            answer = result if isinstance(result, Answer) else Answer(result)
            value = fit(answer.value, budget, answer.cut)
            return CallToolResult(content=[TextContent(type="text", text=answer_text(value))], structured_content=value)
        except ScenarioNotFoundError as exc:
            hint = exc.hint or "list_scenarios shows the scenarios that exist"
            raise ToolError(_describe(ToolError(f"scenario {exc.name!r} not found; {hint}"))) from None
        except (StateError, ToolError) as exc:
            raise ToolError(_describe(exc)) from None
        except Exception as exc:  # a bug: report it as a tool error, keep serving
            log.exception("unexpected error in %s", tool.__name__)
            raise ToolError(
                f"unexpected error ({type(exc).__name__}: {_describe(exc)}); the server is still running"
            ) from None

    return wrapper  # type: ignore[return-value]


def _compact(schema: Any) -> Any:
    """A JSON schema without pydantic's generated titles: they repeat the property names
    and cost a quarter of the tool list an assistant reads in every conversation."""
    if isinstance(schema, list):
        return [_compact(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    compact = {
        key: ({name: _compact(sub) for name, sub in value.items()} if key == "properties" else _compact(value))
        for key, value in schema.items()
        if key != "title"
    }
    options = compact.get("anyOf")
    # An optional value: {"anyOf": [{"type": "string"}, {"type": "null"}]} says the same as
    # {"type": ["string", "null"]}, in half the characters.
    if isinstance(options, list) and len(options) == 2 and options[1] == {"type": "null"}:
        if isinstance(options[0], dict) and isinstance(options[0].get("type"), str):
            del compact["anyOf"]
            compact = {**options[0], "type": [options[0]["type"], "null"], **compact}
    return compact


def _register(spec: ToolSpec, ctx: ToolContext) -> Tool:
    """The SDK's tool for ``spec`` over ``ctx``: its answer cut to its budget, errors as
    tool errors, input schema without titles, ``spec.output`` as its declared output schema."""
    made = CheckedTool.from_function(  # unknown or wrong arguments answered in plain words
        _tool_errors(spec.bound(ctx), spec.budget, spec.scope),
        name=spec.name,
        description=spec.description,
        annotations=spec.annotations(),
        structured_output=False,
    )
    made.parameters = _compact(made.parameters)
    made.fn_metadata.output_schema = spec.output  # advertised; the answers are built to match it
    return made


def build_server(db: str | os.PathLike[str] | None = None, **options: Any) -> MCPServer:
    """The MCP server over the database ``db`` (default: HEALTHSIM_DB or ~/.healthsim);
    ``options`` go to the SDK's server (the HTTP server's ``auth`` and ``token_verifier``)."""
    ctx = ToolContext(db)
    tools = [_register(spec, ctx) for spec in TOOLS]
    return CheckedServer(name="healthsim-state", version=__version__, instructions=INSTRUCTIONS, tools=tools, **options)


TERMINAL_NOTE = """healthsim mcp: serving MCP on stdio (standard input and output), for an MCP client
to start, not for typing into. Add it to a client, e.g. Claude Code:
  claude mcp add healthsim -- {program} mcp
or Claude Desktop (claude_desktop_config.json):
  {{"mcpServers": {{"healthsim": {{"command": "{program}", "args": ["mcp"]}}}}}}
Press Ctrl-D or Ctrl-C to stop."""


def serve(db: str | os.PathLike[str] | None = None) -> None:
    """Serve over stdio until the client disconnects (``healthsim mcp``).

    Run in a terminal (standard input is a TTY), it first says on stderr what it is and
    how to configure a client; stdout carries only the protocol.
    """
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")  # stderr
    if sys.stdin.isatty():
        program = os.path.abspath(sys.argv[0]) if sys.argv and sys.argv[0] else "healthsim"
        print(TERMINAL_NOTE.format(program=program), file=sys.stderr, flush=True)
    # Ctrl-C ends the process at once. asyncio's own handler cancels the serving task,
    # which then waits for the thread that reads standard input, and that thread cannot be
    # interrupted: the process printed a traceback and stayed alive until another line came
    # (found in the first-hour walk-through). Every write is one transaction and no file is held between calls, so
    # ending here loses nothing (asyncio keeps a handler installed before it runs).
    signal.signal(signal.SIGINT, _stop)
    server = build_server(db)
    _warm_up()
    anyio.run(run_stdio, server)


def _stop(signum: int, frame: object) -> None:
    """SIGINT: say so on stderr (a plain write: no lock another thread may hold) and end."""
    with contextlib.suppress(OSError):
        os.write(2, b"healthsim mcp: stopped (Ctrl-C)\n")
    os._exit(130)


def _warm_up() -> None:
    """Pay DuckDB's first-use costs (its JSON functions, catalog) before the first call:
    the first ``list_scenarios`` took 0.15 s instead of 0.03 s. Best effort, on an
    in-memory database: the store's file is not opened (nor locked) until a tool runs."""
    try:
        import duckdb

        with duckdb.connect() as con:
            con.execute("SELECT json_keys(CAST('{\"a\": 1}' AS JSON)), uuid(), now()").fetchall()
    except Exception:  # nothing depends on it
        log.debug("warm-up skipped", exc_info=True)
