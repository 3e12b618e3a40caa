"""The MCP server: HealthSim State's operations as tools for AI assistants (stdio).

Run with ``healthsim mcp``. Each tool calls one library operation and answers compact
JSON, as text and as structured content (each tool declares its output schema). Every
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

import functools
import logging
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, Literal, TypeVar

import anyio
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.mcpserver.tools import Tool
from mcp.types import CallToolResult, TextContent, ToolAnnotations
from pydantic import Field

from . import __version__
from ._text import safe_text
from .mcp.budget import ANSWER_BUDGET, SUMMARY_BUDGET, Cut, answer_text, fit
from .mcp.folders import export_target, import_source
from .mcp.listing import ListingCache
from .mcp.wire import run_stdio
from .state import ScenarioNotFoundError, ScenarioStore, StateError

__all__ = ["build_server", "serve", "INSTRUCTIONS"]

log = logging.getLogger("healthsim.mcp")

SAMPLE_PER_TYPE = 2
MAX_PAGE = 100
MAX_LIST = 100
MAX_QUERY_ROWS = 1000
#: Entities in one load_scenario page stop once their JSON passes this many bytes
#: (the rest of the 32 KB answer is the scenario's header).
PAGE_BYTES = 24_000
#: Rows of a query answer stop once their JSON passes this many bytes.
QUERY_BYTES = 28_000
#: An error text longer than this is cut in the middle (it may quote the caller's input).
ERROR_CHARS = 2_000

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


@dataclass
class Answer:
    """A tool's answer and how to cut it to its budget (see :func:`budget.fit`)."""

    value: dict[str, Any]
    cut: Cut | None = None


def _describe(exc: BaseException) -> str:
    """``str(exc)`` as valid UTF-8 and at most :data:`ERROR_CHARS` long, even for an
    exception whose ``__str__`` fails."""
    try:
        text = safe_text(str(exc))
    except Exception:
        return "(the error text could not be read)"
    if len(text) > ERROR_CHARS:
        half = ERROR_CHARS // 2
        text = f"{text[:half]}…[cut: {len(text) - ERROR_CHARS} characters]…{text[-half:]}"
    return text


def _tool_errors(tool: F, budget: int = ANSWER_BUDGET) -> F:
    """The tool with its answer cut to ``budget`` and sent as compact JSON text plus the
    same structured content; library errors become tool errors the assistant can act on;
    nothing crashes the server.

    Every text handed to the SDK is valid UTF-8: the SDK stops the server when it cannot
    encode a response, and the error texts quote the input, which may be anything.
    """

    @functools.wraps(tool)
    def wrapper(*args: Any, **kwargs: Any) -> CallToolResult:
        try:
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


def _obj(**properties: str) -> dict[str, Any]:
    """A compact output schema: an object with these top-level properties (JSON types;
    ``"string?"`` for a string or null). None is required: a cut answer may be the note alone."""
    return {
        "type": "object",
        "properties": {
            name: {"type": [kind[:-1], "null"] if kind.endswith("?") else kind} for name, kind in properties.items()
        },
    }


_ENTRY = {
    "scenario_id": "string",
    "name": "string",
    "version": "integer",
    "entity_count": "integer",
    "entities_by_type": "object",
}
_EDIT = {**_ENTRY, "added": "object", "updated": "object", "removed": "object"}


def build_server(db: str | os.PathLike[str] | None = None) -> MCPServer:
    """The MCP server over the database ``db`` (default: HEALTHSIM_DB or ~/.healthsim)."""
    tools: list[Tool] = []

    def store() -> ScenarioStore:
        return ScenarioStore(db)  # a path read per call: HEALTHSIM_DB changes are followed

    def tool(
        title: str,
        description: str,
        output: dict[str, Any],
        *,
        read_only: bool = False,
        destructive: bool = False,
        idempotent: bool = False,
        budget: int = ANSWER_BUDGET,
    ) -> Callable[[F], F]:
        """Register a tool: its answer cut to ``budget``, errors as tool errors, input
        schema without titles, ``output`` as its declared output schema."""
        hints = ToolAnnotations(
            title=title,
            read_only_hint=read_only,
            destructive_hint=None if read_only else destructive,
            idempotent_hint=None if read_only else idempotent,
            open_world_hint=False,
        )

        def register(fn: F) -> F:
            made = Tool.from_function(
                _tool_errors(fn, budget), description=description, annotations=hints, structured_output=False
            )
            made.parameters = _compact(made.parameters)
            made.fn_metadata.output_schema = output  # advertised; the answers are built to match it
            tools.append(made)
            return fn

        return register

    _reading_tools(tool, store)
    _paging_tools(tool, store)
    _editing_tools(tool, store)
    _copying_tools(tool, store)
    _history_tools(tool, store)
    _file_tools(tool, store)
    return MCPServer(name="healthsim-state", version=__version__, instructions=INSTRUCTIONS, tools=tools)


Register = Callable[..., Callable[[F], F]]
Store = Callable[[], ScenarioStore]

_NAME = Field(description="Scenario name or scenario_id.")
_VERSION = Field(ge=1, description="An earlier version (default: current).")
_ENTITIES = Field(description="Entity type -> list of JSON objects (up to about 100 per call).")


def _page_cut(offset: int, entity_type: str) -> Cut:
    """A page's entities leave from the end; its ``page`` says where to continue."""

    def after(answer: dict[str, Any], kept: int) -> None:
        page = dict(answer["page"])
        end = offset + kept
        page.update(returned=kept, next_offset=end if end < page["total"] else None)
        answer["page"] = page

    return Cut(
        path=("entities", entity_type),
        after=after,
        how=lambda kept, _: f"continue with offset={offset + kept}",
        rest=(
            "an entity alone is larger than the budget: read its fields with query "
            f"(SELECT data->'field' FROM {entity_type} WHERE entity_id = '…') or export_scenario it"
        ),
    )


def _reading_tools(tool: Register, store: Store) -> None:
    listings = ListingCache()  # list_scenarios while the file is unchanged (see mcp.listing)

    @tool(
        "List scenarios",
        "List saved scenarios, newest first: name, scenario_id, version, counts by type, tags. Filter by tag "
        "(any case) or search (text in name or description); deleted=true lists the trash.",
        _obj(scenarios="array", total_count="integer", more="integer"),
        read_only=True,
    )
    def list_scenarios(
        tag: Annotated[str | None, Field(description="Only scenarios with this tag.")] = None,
        search: Annotated[str | None, Field(description="Text in the name or description.")] = None,
        limit: Annotated[int, Field(ge=1, le=MAX_LIST)] = 20,
        deleted: Annotated[bool, Field(description="List deleted scenarios instead.")] = False,
    ) -> Answer:
        target = store()

        def run() -> dict[str, Any]:
            return dict(target.list_scenarios(tag=tag, search=search, limit=limit, deleted=deleted))

        # The trash depends on the clock (how long deleted scenarios stay): always read.
        listing = run() if deleted else listings.get(target.path, (tag, search, limit), run)
        total = listing["total_count"]

        def after(answer: dict[str, Any], kept: int) -> None:
            answer["more"] = total - kept

        cut = Cut(("scenarios",), after=after, how=lambda *_: "narrow with tag or search, or lower limit")
        return Answer({**listing, "more": total - len(listing["scenarios"])}, cut)

    @tool(
        "Summarize a scenario",
        "What a scenario holds, without its entities: per type the count; per field (also one level into "
        "objects) its share, JSON types and values (top values, min/max/mean/median, date range, list "
        "lengths); ages by gender, top diagnosis codes, entities per month and charge totals where such "
        "fields exist; samples. Under 12 KB: use it to check a scenario you built.",
        _obj(name="string", scenario_id="string", version="integer", entities_by_type="object", types="object"),
        read_only=True,
        budget=SUMMARY_BUDGET,
    )
    def summarize_scenario(
        name: Annotated[str, _NAME],
        version: Annotated[int | None, _VERSION] = None,
        samples: Annotated[int, Field(ge=1, le=5, description="Sample entities per type.")] = SAMPLE_PER_TYPE,
    ) -> dict[str, Any]:
        return dict(store().summarize_scenario(name, version=version, samples=samples))


def _paging_tools(tool: Register, store: Store) -> None:
    @tool(
        "Load a scenario",
        "Read a scenario. Without entity_type: its summary (as summarize_scenario). With entity_type: one "
        "page of those entities from offset; page.next_offset continues, null after the last. For questions "
        "across many entities use query.",
        _obj(name="string", scenario_id="string", version="integer", types="object", entities="object", page="object"),
        read_only=True,
    )
    def load_scenario(
        name: Annotated[str, _NAME],
        entity_type: Annotated[str | None, Field(description="Type to page through, e.g. patients.")] = None,
        offset: Annotated[int, Field(ge=0)] = 0,
        limit: Annotated[int, Field(ge=1, le=MAX_PAGE)] = 10,
        version: Annotated[int | None, _VERSION] = None,
    ) -> Answer:
        if entity_type is None:  # the summary, with its own budget
            overview = dict(store().summarize_scenario(name, version=version, samples=SAMPLE_PER_TYPE))
            return Answer(fit(overview, SUMMARY_BUDGET))
        with store().open_scenario(name, version) as reader:
            header = reader.summary()
            page = reader.page(entity_type, offset, limit, PAGE_BYTES)
        stored = page["entity_type"]
        return Answer({**header, "entities": {stored: page.pop("entities")}, "page": page}, _page_cut(offset, stored))

    @tool(
        "Query scenarios with SQL",
        "Run ONE read-only SELECT over all scenarios (DuckDB's SQL on a file, PostgreSQL's on a team store; "
        "this works on both). Views: entities(scenario, scenario_id, entity_type, entity_id, data) and one "
        "per type, e.g. patients(scenario, scenario_id, entity_id, data); data is the entity's JSON: "
        "data->>'gender' is text, (data->>'birth_date')::DATE a date, data->'address'->>'city' nested. "
        "Tables scenarios(scenario_id, name, description, created_at, updated_at, metadata), "
        "scenario_tags(scenario_id, tag). Example: SELECT data->>'gender' AS g, count(*) FROM patients WHERE "
        "scenario = 'cohort' GROUP BY 1. Returns at most limit rows; total_rows counts all; page with "
        "LIMIT/OFFSET. No files, network or settings; a time limit.",
        _obj(columns="array", rows="array", row_count="integer", total_rows="integer", truncated="boolean"),
        read_only=True,
    )
    def query(
        sql: Annotated[str, Field(description="One SELECT statement.")],
        limit: Annotated[int, Field(ge=1, le=MAX_QUERY_ROWS, description="Rows to return.")] = 100,
    ) -> Answer:
        result = dict(store().query(sql, limit=limit, max_bytes=QUERY_BYTES))

        def after(answer: dict[str, Any], kept: int) -> None:
            answer["row_count"] = kept

        how = "select fewer or narrower columns, or page with LIMIT/OFFSET in the SQL"
        return Answer(result, Cut(("rows",), after=after, how=lambda *_: how, rest=how))


def _editing_tools(tool: Register, store: Store) -> None:
    @tool(
        "Save a scenario",
        "Save a new scenario. entities maps a type (patients, encounters, diagnoses, lab_results, medications, "
        "claims, members, subjects... or your own snake_case type) to a list of JSON objects, kept exactly. "
        "For more than about 100 entities save the first batch here, then use add_entities. overwrite=true "
        "REPLACES an existing scenario of that name (undo: restore_scenario).",
        _obj(**_ENTRY),
        destructive=True,
    )
    def save_scenario(
        name: Annotated[str, Field(description="A new name, e.g. diabetes-cohort.")],
        entities: Annotated[dict[str, list[dict[str, Any]]], _ENTITIES],
        description: Annotated[str | None, Field(description="What it is.")] = None,
        tags: Annotated[list[str] | None, Field(description="Tags to find it by.")] = None,
        overwrite: Annotated[bool, Field(description="Replace a scenario of this name.")] = False,
    ) -> dict[str, Any]:
        target = store()
        return dict(target.scenario_summary(target.save_scenario(name, entities, description, tags, overwrite)))

    @tool(
        "Add entities to a scenario",
        "Add entities to a scenario in one transaction: build large scenarios with save_scenario and a "
        "first batch, then add_entities in batches of up to about 100, then summarize_scenario to check. "
        "An entity whose type and id (patient_id, claim_id...) match one there REPLACES it in place; others "
        "are appended. upsert=false appends all; create=true makes a missing scenario. Answers counts.",
        _obj(**_EDIT),
        destructive=True,
    )
    def add_entities(
        name: Annotated[str, _NAME],
        entities: Annotated[dict[str, list[dict[str, Any]]], _ENTITIES],
        upsert: Annotated[bool, Field(description="Replace entities of the same type and id.")] = True,
        create: Annotated[bool, Field(description="Make the scenario if missing.")] = False,
    ) -> dict[str, Any]:
        return dict(store().add_entities(name, entities, upsert=upsert, create=create))

    @tool(
        "Remove entities from a scenario",
        "Remove entities of one type by own id (e.g. MRN-10001) or stored UUID. Answers counts and not_found.",
        _obj(**_EDIT, not_found="array"),
        destructive=True,
        idempotent=True,
    )
    def remove_entities(
        name: Annotated[str, _NAME],
        entity_type: Annotated[str, Field(description="e.g. patients.")],
        entity_ids: Annotated[list[str], Field(description="Own ids or UUIDs.")],
    ) -> Answer:
        return Answer(
            dict(store().remove_entities(name, entity_type, entity_ids)),
            Cut(("not_found",), how=lambda *_: "the ids left out matched nothing either"),
        )

    @tool(
        "Rename, describe or tag a scenario",
        "Rename (new_name must be free), set the description (empty string clears it), add or remove tags.",
        _obj(**_ENTRY, tags="array", description="string?"),
        idempotent=True,
    )
    def update_scenario(
        name: Annotated[str, _NAME],
        new_name: Annotated[str | None, Field(description="New name.")] = None,
        description: Annotated[str | None, Field(description="New description.")] = None,
        add_tags: Annotated[list[str] | None, Field(description="Tags to add.")] = None,
        remove_tags: Annotated[list[str] | None, Field(description="Tags to remove.")] = None,
    ) -> dict[str, Any]:
        entry = store().update_scenario(
            name, new_name=new_name, description=description, add_tags=add_tags or (), remove_tags=remove_tags or ()
        )
        return dict(entry)


def _copying_tools(tool: Register, store: Store) -> None:
    @tool("Copy a scenario", "Copy a scenario under a new name (same entities, same order).", _obj(**_ENTRY))
    def copy_scenario(
        source: Annotated[str, _NAME],
        new_name: Annotated[str, Field(description="A free name.")],
    ) -> dict[str, Any]:
        target = store()
        return dict(target.scenario_summary(target.copy_scenario(source, new_name)))

    @tool(
        "Merge scenarios",
        "A new scenario with the entities of several, in order; upsert=true: later ones replace equal ids.",
        _obj(**_ENTRY),
    )
    def merge_scenarios(
        sources: Annotated[list[str], Field(description="Names or ids, in order.")],
        new_name: Annotated[str, Field(description="A free name.")],
        upsert: Annotated[bool, Field(description="Later ones replace equal ids.")] = False,
    ) -> dict[str, Any]:
        target = store()
        return dict(target.scenario_summary(target.merge_scenarios(sources, new_name, upsert=upsert)))


def _history_tools(tool: Register, store: Store) -> None:
    @tool(
        "Delete a scenario",
        "Delete a scenario to the trash: restore_scenario brings it back, with its history, for 30 days "
        "(list_scenarios deleted=true shows the trash). purge=true deletes for good: ask the user first.",
        _obj(deleted="boolean", purged="boolean", name="string"),
        destructive=True,
        idempotent=True,
    )
    def delete_scenario(
        name: Annotated[str, _NAME],
        purge: Annotated[bool, Field(description="For good, with its history.")] = False,
    ) -> dict[str, Any]:
        if not store().delete_scenario(name, purge=purge):
            raise ScenarioNotFoundError(name)
        return {"deleted": True, "purged": purge, "name": name}

    @tool(
        "Scenario history",
        "A scenario's versions, newest first (each save, add, remove, update, restore and delete makes one): "
        "version, at, operation, changes. Find the version to restore_scenario, load_scenario or "
        "diff_scenarios. Works for deleted scenarios.",
        _obj(name="string", scenario_id="string", versions="array", total_count="integer"),
        read_only=True,
    )
    def scenario_history(
        name: Annotated[str, _NAME],
        limit: Annotated[int, Field(ge=1, le=MAX_LIST)] = 20,
    ) -> Answer:
        how = "these are the newest; older versions load by number with load_scenario or diff_scenarios"
        return Answer(dict(store().scenario_history(name, limit)), Cut(("versions",), how=lambda *_: how))

    @tool(
        "Restore a scenario",
        "Undo: make an earlier version current again (as a new version; the history stays) or bring back a "
        "deleted scenario. No version: a deleted one's last, else the one before the current. new_name "
        "restores it as a new scenario.",
        _obj(**_EDIT),
        destructive=True,
    )
    def restore_scenario(
        name: Annotated[str, Field(description="Scenario name or scenario_id (deleted too).")],
        version: Annotated[int | None, Field(ge=1, description="The version to bring back.")] = None,
        new_name: Annotated[str | None, Field(description="Restore as a new scenario.")] = None,
    ) -> dict[str, Any]:
        return dict(store().restore_scenario(name, version, new_name=new_name))

    @tool(
        "Compare scenarios or versions",
        "What changed from a to b (scenarios, or versions written name@3): per type added, removed, changed "
        "and unchanged counts with example ids and changed fields; name, description and tag changes.",
        _obj(a="object", b="object", types="object", scenario="object"),
        read_only=True,
    )
    def diff_scenarios(
        a: Annotated[str, Field(description="e.g. cohort@3.")],
        b: Annotated[str, Field(description="e.g. cohort.")],
    ) -> Answer:
        return Answer(dict(store().diff_scenarios(a, b)), Cut(rest="compare fewer types or versions closer together"))


def _file_tools(tool: Register, store: Store) -> None:
    @tool(
        "Export a scenario",
        "Write a scenario into the export folder (HEALTHSIM_EXPORT_DIR, default ~/Downloads): json (the "
        "exchange format), ndjson (a line per entity), or parquet/csv (a folder, a file per type). "
        "output_path: a name or path inside that folder (default <name>.json, <name>-parquet...). Replaces "
        "only an earlier HealthSim export. types: only these; version: an earlier one.",
        _obj(path="string", format="string", **_ENTRY),
        destructive=True,
    )
    def export_scenario(
        name: Annotated[str, _NAME],
        output_path: Annotated[str | None, Field(description="File or folder name in the export folder.")] = None,
        version: Annotated[int | None, _VERSION] = None,
        format: Literal["json", "ndjson", "parquet", "csv"] = "json",
        types: Annotated[list[str] | None, Field(description="Only these entity types.")] = None,
    ) -> dict[str, Any]:
        target = store()
        with target.open_scenario(name, version) as reader:
            checked = export_target(reader.header.name, output_path, format)
        path = target.export_scenario(name, checked, format=format, version=version, types=types)
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
        "Import a scenario JSON file (an export, or an older HealthSim file) from an import folder "
        "(HEALTHSIM_IMPORT_DIRS, default ~/Downloads and ~/.healthsim). The name: name, else the file's. "
        "overwrite=true REPLACES a scenario of that name. A bad file is refused with the place of the "
        "problem; nothing is saved.",
        _obj(**_ENTRY),
        destructive=True,
    )
    def import_scenario(
        file_path: Annotated[str, Field(description="A file in an import folder (a bare name is looked for there).")],
        name: Annotated[str | None, Field(description="Scenario name (default: the file's).")] = None,
        overwrite: Annotated[bool, Field(description="Replace a scenario of that name.")] = False,
    ) -> dict[str, Any]:
        target = store()
        return dict(
            target.scenario_summary(target.import_scenario_from_json(import_source(file_path), name, overwrite))
        )


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
    server = build_server(db)
    _warm_up()
    anyio.run(run_stdio, server)


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
