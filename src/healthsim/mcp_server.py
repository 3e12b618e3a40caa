"""The MCP server: HealthSim State's operations as tools for AI assistants (stdio).

Run with ``healthsim mcp``. Each tool calls one library operation. Results are kept
small enough for a model's context: ``load_scenario`` returns the summary and a bounded
page of entities, lists are capped and say how many more exist. Errors come back as tool
errors whose text says what to do next; the server keeps serving. It holds no database
lock between calls, so a terminal can use the same database while it runs. Nothing is
printed to stdout, which is the protocol channel.

Every text the server sends is valid UTF-8: the SDK cannot encode a lone surrogate and
stops the whole server when a response holds one, so results and error texts escape them
(``\\ud800``). A request whose JSON holds a lone surrogate escape is refused by the SDK's
parser and would be dropped unanswered; the server answers it with an error instead, so
the client does not wait forever.
"""

from __future__ import annotations

import functools
import json
import logging
import os
from collections.abc import Callable
from typing import Annotated, Any, Literal, Self, TypeVar

import anyio
from mcp import types
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.stdio import stdio_server
from mcp.shared.message import SessionMessage
from mcp.types import ToolAnnotations
from pydantic import Field, ValidationError

from . import __version__
from ._text import json_path, safe_text
from .state import ScenarioNotFoundError, ScenarioStore, StateError

__all__ = ["build_server", "serve"]

log = logging.getLogger("healthsim.mcp")

SAMPLE_PER_TYPE = 2
MAX_PAGE = 100
MAX_LIST = 100
MAX_QUERY_ROWS = 1000
#: Entities in one load_scenario response stop once their JSON passes this many bytes.
PAGE_BYTES = 32_000

INSTRUCTIONS = """HealthSim State keeps synthetic healthcare scenarios (patients, encounters,
diagnoses, claims, trial subjects...) in a local database. Find scenarios with
list_scenarios, read one with load_scenario (summary plus a page of entities), answer
questions across scenarios with query (read-only SQL), and save, import, export or delete
scenarios with the other tools. Build a large scenario in steps: save_scenario with the first
batch, then add_entities in batches of up to about 100 entities (an entity whose id is there
already is replaced in place); fix or drop entities with add_entities and remove_entities;
rename and tag with update_scenario; copy_scenario before risky changes."""

F = TypeVar("F", bound=Callable[..., Any])


def _result_text(result: Any) -> str:
    """A tool's result as compact JSON text that can always be sent.

    Non-ASCII stays readable; only a result holding a lone surrogate (a path made from an
    undecodable file name, say) is written with ASCII escapes, which is the same JSON value.
    """
    text = json.dumps(result, ensure_ascii=False, separators=(",", ":"))
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return json.dumps(result, ensure_ascii=True, separators=(",", ":"))
    return text


def _describe(exc: BaseException) -> str:
    """``str(exc)`` as valid UTF-8, even for an exception whose ``__str__`` fails."""
    try:
        return safe_text(str(exc))
    except Exception:
        return "(the error text could not be read)"


def _tool_errors(tool: F) -> F:
    """Results become compact JSON text; library errors become tool errors the assistant
    can act on; nothing crashes the server.

    Every text handed to the SDK is valid UTF-8: the SDK stops the server when it cannot
    encode a response, and the error texts quote the input, which may be anything.
    """

    @functools.wraps(tool)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return _result_text(tool(*args, **kwargs))
        except ScenarioNotFoundError as exc:
            hint = exc.hint or "list_scenarios shows the scenarios that exist"
            raise ToolError(safe_text(f"scenario {exc.name!r} not found; {hint}")) from None
        except StateError as exc:
            raise ToolError(_describe(exc)) from None
        except ToolError as exc:
            raise ToolError(_describe(exc)) from None
        except Exception as exc:  # a bug: report it as a tool error, keep serving
            log.exception("unexpected error in %s", tool.__name__)
            raise ToolError(
                f"unexpected error ({type(exc).__name__}: {_describe(exc)}); the server is still running"
            ) from None

    return wrapper  # type: ignore[return-value]


def build_server(db: str | os.PathLike[str] | None = None) -> MCPServer:
    """The MCP server over the database ``db`` (default: HEALTHSIM_DB or ~/.healthsim)."""
    server = MCPServer(name="healthsim-state", version=__version__, instructions=INSTRUCTIONS)

    def store() -> ScenarioStore:
        return ScenarioStore(db)  # a path read per call: HEALTHSIM_DB changes are followed

    def tool(
        title: str, description: str, *, read_only: bool = False, destructive: bool = False, idempotent: bool = False
    ) -> Callable[[F], F]:
        """Register a tool: compact JSON text out (no structured copy), errors as tool errors."""
        hints = ToolAnnotations(
            title=title,
            read_only_hint=read_only,
            destructive_hint=None if read_only else destructive,
            idempotent_hint=None if read_only else idempotent,
            open_world_hint=False,
        )

        def register(fn: F) -> F:
            server.tool(structured_output=False, annotations=hints, description=description)(_tool_errors(fn))
            return fn

        return register

    @tool(
        "List scenarios",
        (
            "List saved scenarios, newest first, with entity counts by type and tags. Use it to find "
            "a scenario's exact name before load_scenario, query or export. Filters: tag (any case) "
            f"and search (text in name or description). At most {MAX_LIST} are returned; "
            "total_count and more say how many matched in all."
        ),
        read_only=True,
    )
    def list_scenarios(
        tag: Annotated[str | None, Field(description="Only scenarios with this tag (case-insensitive).")] = None,
        search: Annotated[
            str | None, Field(description="Only scenarios whose name or description contains this text.")
        ] = None,
        limit: Annotated[int, Field(ge=1, le=MAX_LIST, description="How many scenarios to return.")] = 20,
        deleted: Annotated[
            bool, Field(description="List the trash instead: deleted scenarios restore_scenario can bring back.")
        ] = False,
    ) -> dict[str, Any]:
        listing = store().list_scenarios(tag=tag, search=search, limit=limit, deleted=deleted)
        return {**listing, "more": listing["total_count"] - len(listing["scenarios"])}

    @tool(
        "Summarize a scenario",
        (
            "See what a scenario holds without reading its entities: per entity type the count; per "
            "field (top level and one level into objects, e.g. address.state) the share of entities "
            "that have it, its JSON types, and its values (top 5 of categorical strings, min/max/"
            "mean/median of numbers, first and last ISO dates, true/false counts, list lengths); "
            "where the usual fields exist, ages by gender (from birth_date), top diagnosis codes, "
            "entities per month and claim charge totals; and sample entities. Always under 12 KB, "
            "for any size: use it to check a scenario you built, then query for anything more."
        ),
        read_only=True,
    )
    def summarize_scenario(
        name: Annotated[str, Field(description="Scenario name or scenario_id.")],
        version: Annotated[
            int | None, Field(ge=1, description="An earlier version (default: the current one).")
        ] = None,
        samples: Annotated[int, Field(ge=1, le=5, description="Sample entities per type.")] = SAMPLE_PER_TYPE,
    ) -> dict[str, Any]:
        return dict(store().summarize_scenario(name, version=version, samples=samples))

    @tool(
        "Load a scenario",
        (
            "Read one scenario by name or scenario_id. Without entity_type you get its summary "
            "(as summarize_scenario: counts, field statistics, facts and samples per type, under "
            f"12 KB). With entity_type you get one page of that type's entities (offset, limit up to "
            f"{MAX_PAGE}); page.next_offset is where the next page starts, null after the last. "
            "Responses stay small: large entities shorten the page. For questions across many "
            "entities use query instead of paging. version reads an earlier version (see "
            "scenario_history)."
        ),
        read_only=True,
    )
    def load_scenario(
        name: Annotated[str, Field(description="Scenario name or scenario_id.")],
        entity_type: Annotated[str | None, Field(description="Entity type to page through, e.g. patients.")] = None,
        offset: Annotated[int, Field(ge=0, description="Position of the first entity of the page.")] = 0,
        limit: Annotated[int, Field(ge=1, le=MAX_PAGE, description="Entities in the page.")] = 10,
        version: Annotated[
            int | None, Field(ge=1, description="An earlier version (default: the current one).")
        ] = None,
    ) -> dict[str, Any]:
        if entity_type is None:
            return dict(store().summarize_scenario(name, version=version, samples=SAMPLE_PER_TYPE))
        with store().open_scenario(name, version) as reader:
            summary = reader.summary()
            page = reader.page(entity_type, offset, limit, PAGE_BYTES)
        return {**summary, "entities": {page["entity_type"]: page.pop("entities")}, "page": page}

    @tool(
        "Save a scenario",
        (
            "Save entities as a new named scenario (for more than about 100 entities, save the first batch, "
            "then use add_entities). entities maps an entity type (patients, encounters, "
            "diagnoses, procedures, medications, lab_results, vital_signs, clinical_notes, members, claims, "
            "claim_lines, prescriptions, subjects, trial_visits, or your own snake_case type) to a list of "
            "JSON objects, saved exactly as given. Fails if the name exists, unless overwrite is true: "
            "overwrite REPLACES that scenario's entities, description and tags (keeping its id). Returns "
            "scenario_id, name, entity_count and entities_by_type."
        ),
        destructive=True,
    )
    def save_scenario(
        name: Annotated[str, Field(description="Unique scenario name, e.g. diabetes-cohort (kebab-case recommended).")],
        entities: Annotated[dict[str, list[dict[str, Any]]], Field(description="Entity type -> list of entities.")],
        description: Annotated[str | None, Field(description="What the scenario is.")] = None,
        tags: Annotated[list[str] | None, Field(description="Tags for finding it later.")] = None,
        overwrite: Annotated[bool, Field(description="Replace an existing scenario of this name.")] = False,
    ) -> dict[str, Any]:
        target = store()
        scenario_id = target.save_scenario(name, entities, description, tags, overwrite)
        return dict(target.scenario_summary(scenario_id))

    @tool(
        "Add entities to a scenario",
        (
            "Add entities to a saved scenario, in one transaction: the way to build a scenario larger "
            "than one call can carry. Start with save_scenario and the first batch, then call add_entities "
            "with batches of up to about 100 entities. An entity whose type and id (patient_id, claim_id, "
            "...) match one already there REPLACES it in place (fix a patient by sending it again); "
            "entities without an id are appended. upsert=false appends everything; create=true makes the "
            "scenario if it does not exist. Returns counts (added, updated, removed per type), never the entities."
        ),
        destructive=True,
    )
    def add_entities(
        name: Annotated[str, Field(description="Scenario name or scenario_id.")],
        entities: Annotated[
            dict[str, list[dict[str, Any]]],
            Field(description="Entity type -> list of entities (up to about 100 per call)."),
        ],
        upsert: Annotated[
            bool, Field(description="Replace entities whose type and id are there already (default).")
        ] = True,
        create: Annotated[bool, Field(description="Make the scenario if it does not exist.")] = False,
    ) -> dict[str, Any]:
        return dict(store().add_entities(name, entities, upsert=upsert, create=create))

    @tool(
        "Remove entities from a scenario",
        (
            "Remove entities of one type from a scenario, named by their own id (e.g. MRN-10001) or stored "
            "UUID; every copy of an id goes. Returns counts and not_found (ids that matched nothing)."
        ),
        destructive=True,
        idempotent=True,
    )
    def remove_entities(
        name: Annotated[str, Field(description="Scenario name or scenario_id.")],
        entity_type: Annotated[str, Field(description="Entity type, e.g. patients.")],
        entity_ids: Annotated[list[str], Field(description="Ids of the entities to remove.")],
    ) -> dict[str, Any]:
        return dict(store().remove_entities(name, entity_type, entity_ids))

    @tool(
        "Rename, describe or tag a scenario",
        (
            "Change a scenario's name (new_name must be free), description (an empty string clears it) "
            "or tags (add_tags, remove_tags; any case). Returns the scenario's list entry."
        ),
        idempotent=True,
    )
    def update_scenario(
        name: Annotated[str, Field(description="Scenario name or scenario_id.")],
        new_name: Annotated[str | None, Field(description="New name.")] = None,
        description: Annotated[str | None, Field(description="New description; empty string clears it.")] = None,
        add_tags: Annotated[list[str] | None, Field(description="Tags to add.")] = None,
        remove_tags: Annotated[list[str] | None, Field(description="Tags to remove.")] = None,
    ) -> dict[str, Any]:
        entry = store().update_scenario(
            name, new_name=new_name, description=description, add_tags=add_tags or (), remove_tags=remove_tags or ()
        )
        return dict(entry)

    @tool(
        "Copy a scenario",
        "Copy a scenario under a new name (same entities in the same order); e.g. before risky edits.",
    )
    def copy_scenario(
        source: Annotated[str, Field(description="Scenario name or scenario_id to copy.")],
        new_name: Annotated[str, Field(description="Name of the copy (must be free).")],
    ) -> dict[str, Any]:
        target = store()
        return dict(target.scenario_summary(target.copy_scenario(source, new_name)))

    @tool(
        "Merge scenarios",
        (
            "Make a new scenario holding the entities of several scenarios, in the order given. With "
            "upsert=true a later scenario's entity replaces an earlier one's of the same type and id."
        ),
    )
    def merge_scenarios(
        sources: Annotated[list[str], Field(description="Scenario names or ids, in order.")],
        new_name: Annotated[str, Field(description="Name of the new scenario (must be free).")],
        upsert: Annotated[bool, Field(description="Later scenarios replace entities of the same id.")] = False,
    ) -> dict[str, Any]:
        target = store()
        return dict(target.scenario_summary(target.merge_scenarios(sources, new_name, upsert=upsert)))

    @tool(
        "Delete a scenario",
        (
            "Delete a scenario (its entities and tags) by name or scenario_id. It goes to the trash: "
            "restore_scenario brings it back, with its history, for 30 days (list_scenarios with "
            "deleted=true shows the trash). purge=true removes it for good and cannot be undone: "
            "confirm with the user first."
        ),
        destructive=True,
        idempotent=True,
    )
    def delete_scenario(
        name: Annotated[str, Field(description="Scenario name or scenario_id.")],
        purge: Annotated[bool, Field(description="Remove it and its history for good (no undo).")] = False,
    ) -> dict[str, Any]:
        if not store().delete_scenario(name, purge=purge):
            raise ScenarioNotFoundError(name)
        return {"deleted": True, "purged": purge, "name": name}

    @tool(
        "Scenario history",
        (
            "List a scenario's versions, newest first: every save, add, remove, update, restore and delete "
            "makes one (version, at, operation, changes per type, entity_count). Use it to find the version "
            "to restore_scenario, load_scenario or diff_scenarios. Works for deleted scenarios too."
        ),
        read_only=True,
    )
    def scenario_history(
        name: Annotated[str, Field(description="Scenario name or scenario_id.")],
        limit: Annotated[int, Field(ge=1, le=MAX_LIST, description="How many versions.")] = 20,
    ) -> dict[str, Any]:
        return dict(store().scenario_history(name, limit))

    @tool(
        "Restore a scenario",
        (
            "Undo: make an earlier version current again (a new version; the history stays), or bring back "
            "a deleted scenario. Without version: for a deleted scenario its last version, else the version "
            "before the current one. new_name restores it as a new scenario instead. Returns counts."
        ),
        destructive=True,
    )
    def restore_scenario(
        name: Annotated[str, Field(description="Scenario name or scenario_id (a deleted one's too).")],
        version: Annotated[int | None, Field(ge=1, description="The version to bring back.")] = None,
        new_name: Annotated[str | None, Field(description="Restore as a new scenario of this name.")] = None,
    ) -> dict[str, Any]:
        return dict(store().restore_scenario(name, version, new_name=new_name))

    @tool(
        "Compare scenarios or versions",
        (
            "What changed from a to b: two scenarios, or versions of one written name@3 (a bare name is its "
            "current version). Per entity type: added, removed, changed, unchanged counts, up to 10 example "
            "ids each and the changed fields; plus changes of name, description and tags. Small for any size."
        ),
        read_only=True,
    )
    def diff_scenarios(
        a: Annotated[str, Field(description="A scenario or version, e.g. diabetes-cohort@3.")],
        b: Annotated[str, Field(description="The other, e.g. diabetes-cohort.")],
    ) -> dict[str, Any]:
        return dict(store().diff_scenarios(a, b))

    @tool(
        "Export a scenario",
        (
            "Write a scenario to files on this computer. format json (default) is the HealthSim exchange "
            "format (schema_version 1.0) to share it; ndjson is one line per entity (entity_type, entity_id, "
            "data); parquet and csv write a folder with one file per entity type for analytics tools "
            "(Parquet: objects as structs, lists as lists; CSV: objects flattened to dotted columns). "
            "Default path: ~/Downloads/<name>.json, <name>.ndjson, <name>-parquet/ or <name>-csv/. An "
            "earlier export at the same path is replaced. types exports only those entity types; version "
            "an earlier version. Returns the path written and the counts."
        ),
        idempotent=True,
    )
    def export_scenario(
        name: Annotated[str, Field(description="Scenario name or scenario_id.")],
        output_path: Annotated[
            str | None, Field(description="File (json, ndjson) or folder (parquet, csv) to write (optional).")
        ] = None,
        version: Annotated[
            int | None, Field(ge=1, description="An earlier version (default: the current one).")
        ] = None,
        format: Annotated[Literal["json", "ndjson", "parquet", "csv"], Field(description="The file format.")] = "json",
        types: Annotated[
            list[str] | None, Field(description='Only these entity types, e.g. ["patients"] (default: all).')
        ] = None,
    ) -> dict[str, Any]:
        target = store()
        path = target.export_scenario(name, output_path, format=format, version=version, types=types)
        with target.open_scenario(name, version) as reader:
            summary = reader.summary()
            written = [reader.stored_type(t) for t in types] if types is not None else list(reader.counts)
        # The counts of what was written: of the types asked for, when some were.
        by_type = {t: n for t, n in summary["entities_by_type"].items() if t in written}
        return {
            "path": str(path),
            "format": format,
            "scenario_id": summary["scenario_id"],
            "name": summary["name"],
            "version": summary["version"],
            "entity_count": sum(by_type.values()),
            "entities_by_type": by_type,
        }

    @tool(
        "Import a scenario file",
        (
            "Import a scenario JSON file from this computer: an export (schema_version 1.0) or a file of an "
            "older HealthSim (workspace files, entity lists). The name comes from name, else the file. "
            "Fails if that name exists unless overwrite is true, which REPLACES the existing scenario. "
            "A bad file is refused with the place of the problem, and nothing is saved."
        ),
        destructive=True,
    )
    def import_scenario(
        file_path: Annotated[str, Field(description="Path of the JSON file.")],
        name: Annotated[str | None, Field(description="Scenario name (default: the file's).")] = None,
        overwrite: Annotated[bool, Field(description="Replace an existing scenario of that name.")] = False,
    ) -> dict[str, Any]:
        target = store()
        scenario_id = target.import_scenario_from_json(
            file_path, name, overwrite
        )  # (the library expands ~ and says what is wrong)
        return dict(target.scenario_summary(scenario_id))

    @tool(
        "Query scenarios with SQL",
        (
            "Run ONE read-only SELECT over all saved scenarios (DuckDB's SQL on a database file, "
            "PostgreSQL's on a team store; what this description shows works on both). Views: "
            "entities(scenario, scenario_id, entity_type, entity_id, data) and one per entity type, e.g. "
            "patients(scenario, scenario_id, entity_id, data); data is the entity's JSON: data->>'gender' gives "
            "text, (data->>'birth_date')::DATE a date, data->'address'->>'city' a nested value. "
            "Tables scenarios(scenario_id, name, description, created_at, updated_at, metadata) and "
            "scenario_tags(scenario_id, tag) are there too. Example: SELECT count(*) FROM patients WHERE "
            "scenario = 'medicare-cohort' AND data->>'gender' = 'female' AND "
            "(data->>'birth_date')::DATE < DATE '1950-01-01'. "
            f"At most limit rows (up to {MAX_QUERY_ROWS}) come back; total_rows counts all. No files, "
            "network, extensions or settings; a time limit stops runaway queries."
        ),
        read_only=True,
    )
    def query(
        sql: Annotated[str, Field(description="One SELECT statement.")],
        limit: Annotated[int, Field(ge=1, le=MAX_QUERY_ROWS, description="Rows to return.")] = 100,
    ) -> dict[str, Any]:
        return dict(store().query(sql, limit=limit))

    return server


def _first_surrogate(text: str) -> str | None:
    """The first lone surrogate of ``text``, escaped (``\\ud800``), or None."""
    for char in text:
        if "\ud800" <= char <= "\udfff":  # json pairs the halves it can: these are lone
            return safe_text(char)
    return None


def _lone_surrogate(value: Any, path: str = "$") -> tuple[str, str, str] | None:
    """The first lone surrogate in a parsed JSON value: (JSON path, "key" or "value", escape)."""
    stack: list[tuple[Any, str]] = [(value, path)]
    while stack:  # a loop, not recursion: the request may nest deeply
        item, where = stack.pop()
        if isinstance(item, str):
            if (escape := _first_surrogate(item)) is not None:
                return where, "value", escape
        elif isinstance(item, dict):
            for key, member in reversed(list(item.items())):
                if (escape := _first_surrogate(key)) is not None:
                    return safe_text(json_path(where, key)), "key", escape
                stack.append((member, json_path(where, key)))
        elif isinstance(item, list):
            stack.extend((member, json_path(where, i)) for i, member in reversed(list(enumerate(item))))
    return None


def _answer_unreadable(exc: Exception) -> types.JSONRPCMessage | None:
    """The answer to a request the SDK could not parse because it holds a lone surrogate.

    The SDK's parser refuses ``"\\ud800"`` escapes (Python's json reads them) and drops
    the request without a reply. Such a request gets an error naming the place: a tool
    error for ``tools/call``, a JSON-RPC "invalid params" error otherwise. Anything else
    (not JSON, no id, another defect) returns ``None`` and keeps the SDK's behaviour.
    """
    if not isinstance(exc, ValidationError):
        return None
    try:
        line = exc.errors(include_url=False)[0]["input"]
        message = json.loads(line)
    except Exception:
        return None
    if not isinstance(message, dict):
        return None
    request_id, method = message.get("id"), message.get("method")
    if isinstance(request_id, bool) or not isinstance(request_id, (int, str)) or not isinstance(method, str):
        return None  # a notification or a response: nobody waits for an answer
    if isinstance(request_id, str) and safe_text(request_id) != request_id:
        return None  # an id that cannot be sent back cannot be answered
    params = message.get("params")
    tool_call = params if method == "tools/call" and isinstance(params, dict) else None
    # A tool's arguments are named from their own root ($.entities…), as the tool sees them.
    found = None if tool_call is None else _lone_surrogate(tool_call.get("arguments"), "$")
    subject = "the arguments hold"
    if found is None:
        found, subject = _lone_surrogate(message, "$"), "the request holds"
    if found is None:
        return None
    where, what, escape = found
    problem = (
        f"{subject} a lone surrogate ({escape}) in a {what} at {where}, which is not valid "
        "Unicode text: remove it, or send both halves of the surrogate pair. Nothing was done"
    )
    if tool_call is not None:
        tool = safe_text(str(tool_call.get("name")))
        result = types.CallToolResult(
            content=[types.TextContent(type="text", text=f"cannot run {tool}: {problem}")], is_error=True
        )
        return types.JSONRPCResponse(
            jsonrpc="2.0", id=request_id, result=result.model_dump(by_alias=True, exclude_none=True)
        )
    return types.JSONRPCError(
        jsonrpc="2.0",
        id=request_id,
        error=types.ErrorData(code=types.INVALID_PARAMS, message=f"{safe_text(method)}: {problem}"),
    )


class _AnswerUnreadable:
    """The transport's read stream, with unreadable requests answered instead of passed on.

    It passes every item through except a parse error that :func:`_answer_unreadable`
    can answer; that answer goes straight to the write stream.
    """

    def __init__(self, inner: Any, write_stream: Any) -> None:
        self._inner = inner
        self._write = write_stream

    @property
    def last_context(self) -> Any:  # the SDK reads the sender's context from the stream
        return getattr(self._inner, "last_context", None)

    async def receive(self) -> Any:
        while True:
            item = await self._inner.receive()
            answer = _answer_unreadable(item) if isinstance(item, Exception) else None
            if answer is None:
                return item
            log.warning("answered an unreadable request (a lone surrogate in its JSON) with an error")
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


async def _run_stdio(server: MCPServer) -> None:
    """``MCPServer.run_stdio_async`` with unreadable requests answered (see above)."""
    lowlevel = getattr(server, "_lowlevel_server", None)  # no public way to pass the streams
    if lowlevel is None:  # another SDK layout: serve as the SDK does
        await server.run_stdio_async()
        return
    async with stdio_server() as (read_stream, write_stream):
        await lowlevel.run(
            _AnswerUnreadable(read_stream, write_stream), write_stream, lowlevel.create_initialization_options()
        )


def serve(db: str | os.PathLike[str] | None = None) -> None:
    """Serve over stdio until the client disconnects (``healthsim mcp``)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")  # stderr
    anyio.run(_run_stdio, build_server(db))
