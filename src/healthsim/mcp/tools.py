"""The MCP server's tools: module-level functions over a :class:`ToolContext`.

Each tool calls one library operation and returns its answer as a dict, or as an
:class:`Answer` that says how to cut it to its byte budget (``mcp.budget``). The
:func:`_tool` decorator records, beside the function, what the tool list says of it
(title, description, output schema, annotations, budget) in :data:`TOOLS`, in the order an
assistant reads them; ``healthsim.mcp_server.build_server`` registers them over one
database. The functions are plain Python: a test may call ``save_scenario(ctx, ...)``.

The first parameter, the context, is not part of a tool's input: :meth:`ToolSpec.bound`
hides it from the signature the SDK reads the input schema from.
"""

from __future__ import annotations

import functools
import inspect
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal, TypeVar

from mcp.types import ToolAnnotations
from pydantic import Field

from ..state import ScenarioNotFoundError, ScenarioStore
from ..state.access import Scope
from ..state.exchange.fhir.report import skipped_of
from ..state.visibility import limiting_tags
from .budget import ANSWER_BUDGET, SUMMARY_BUDGET, Cut, fit
from .folders import export_target, import_source
from .listing import ListingCache

__all__ = ["TOOLS", "Answer", "ToolContext", "ToolSpec"]

SAMPLE_PER_TYPE = 2
MAX_PAGE = 100
MAX_LIST = 100
MAX_QUERY_ROWS = 1000
#: Entities in one load_scenario page stop once their JSON passes this many bytes
#: (the rest of the 32 KB answer is the scenario's header).
PAGE_BYTES = 24_000
#: Rows of a query answer stop once their JSON passes this many bytes.
QUERY_BYTES = 28_000

F = TypeVar("F", bound=Callable[..., Any])


@dataclass
class Answer:
    """A tool's answer and how to cut it to its budget (see :func:`budget.fit`)."""

    value: dict[str, Any]
    cut: Cut | None = None


@dataclass
class ToolContext:
    """What the tools of one server work over: its database and its kept listing."""

    db: str | os.PathLike[str] | None = None
    #: list_scenarios while the file is unchanged (see mcp.listing); one per server.
    listings: ListingCache = field(default_factory=ListingCache)

    def store(self) -> ScenarioStore:
        """The store, made per call: a path read per call, so HEALTHSIM_DB changes are followed."""
        return ScenarioStore(self.db)


@dataclass(frozen=True)
class ToolSpec:
    """A tool as the tool list describes it; ``fn`` takes the context first."""

    fn: Callable[..., Any]
    title: str
    description: str
    output: dict[str, Any]
    read_only: bool = False
    destructive: bool = False
    idempotent: bool = False
    budget: int = ANSWER_BUDGET
    #: The scope an HTTP caller's token needs (issue 25; not advertised in the tool list).
    scope: Scope = "read"

    @property
    def name(self) -> str:
        """The tool's name: its function's."""
        return self.fn.__name__

    def annotations(self) -> ToolAnnotations:
        """The hints an assistant reads (a read-only tool says nothing of the others)."""
        return ToolAnnotations(
            title=self.title,
            read_only_hint=self.read_only,
            destructive_hint=None if self.read_only else self.destructive,
            idempotent_hint=None if self.read_only else self.idempotent,
            open_world_hint=False,
        )

    def bound(self, ctx: ToolContext) -> Callable[..., Any]:
        """The function over ``ctx``, with the signature (names, annotations, defaults)
        of its other parameters: the SDK builds the input schema from it."""
        fn = self.fn

        @functools.wraps(fn)
        def call(*args: Any, **kwargs: Any) -> Any:
            return fn(ctx, *args, **kwargs)

        # Evaluated here, where the annotations' names are defined; the SDK reads
        # ``__signature__`` as it is and must not see the context parameter.
        signature = inspect.signature(fn, eval_str=True)
        first, *rest = signature.parameters
        call.__annotations__ = {k: v for k, v in fn.__annotations__.items() if k != first}
        setattr(call, "__signature__", signature.replace(parameters=[signature.parameters[p] for p in rest]))  # noqa: B010
        return call


#: Every tool, in the order of the tool list.
TOOLS: list[ToolSpec] = []


def _tool(
    title: str,
    description: str,
    output: dict[str, Any],
    *,
    read_only: bool = False,
    destructive: bool = False,
    idempotent: bool = False,
    budget: int = ANSWER_BUDGET,
    scope: Scope | None = None,
) -> Callable[[F], F]:
    """Record the function as a tool in :data:`TOOLS`; the function is returned unchanged.
    ``scope``: the scope a token needs (default: ``read`` for a read-only tool, else ``write``)."""
    needed: Scope = scope or ("read" if read_only else "write")

    def record(fn: F) -> F:
        TOOLS.append(ToolSpec(fn, title, description, output, read_only, destructive, idempotent, budget, needed))
        return fn

    return record


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

_NAME = Field(description="Scenario name or scenario_id.")
_VERSION = Field(ge=1, description="An earlier version (default: current).")
_ENTITIES = Field(description="Entity type -> list of JSON objects (up to about 100 per call).")
_CHECK = Field(description="refuse: write nothing on errors.")


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


# ------------------------------------------------------------------ reading
@_tool(
    "List scenarios",
    "List saved scenarios, newest first: name, scenario_id, version, counts by type, tags. Filter by tag "
    "(any case) or search; offset pages on; deleted=true lists the trash.",
    _obj(scenarios="array", total_count="integer", more="integer"),
    read_only=True,
)
def list_scenarios(
    ctx: ToolContext,
    tag: Annotated[str | None, Field(description="Only scenarios with this tag.")] = None,
    search: Annotated[str | None, Field(description="Text in the name or description.")] = None,
    limit: Annotated[int, Field(ge=1, le=MAX_LIST)] = 20,
    deleted: Annotated[bool, Field(description="List deleted scenarios instead.")] = False,
    offset: Annotated[int, Field(ge=0)] = 0,
) -> Answer:
    target = ctx.store()

    def run() -> dict[str, Any]:
        return dict(target.list_scenarios(tag=tag, search=search, limit=limit, deleted=deleted, offset=offset))

    # The trash depends on the clock (how long deleted scenarios stay): always read.
    # A tag-limited caller's listing is its own: its tags are part of the key (issue 25).
    arguments = (tag, search, limit, offset, limiting_tags())
    listing = run() if deleted else ctx.listings.get(target.path, arguments, run)
    total = listing["total_count"]

    def after(answer: dict[str, Any], kept: int) -> None:
        answer["more"] = max(total - offset - kept, 0)

    cut = Cut(("scenarios",), after=after, how=lambda kept, _: f"continue with offset={offset + kept}")
    return Answer({**listing, "more": max(total - offset - len(listing["scenarios"]), 0)}, cut)


@_tool(
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
    ctx: ToolContext,
    name: Annotated[str, _NAME],
    version: Annotated[int | None, _VERSION] = None,
    samples: Annotated[int, Field(ge=1, le=5, description="Sample entities per type.")] = SAMPLE_PER_TYPE,
) -> dict[str, Any]:
    return dict(ctx.store().summarize_scenario(name, version=version, samples=samples))


@_tool(
    "Check a scenario",
    "Duplicate ids, broken references, bad dates/codes, impossible timelines, real-looking SSNs/phones.",
    _obj(ok="boolean", checked="object", problems="array"),
    read_only=True,
    idempotent=True,
    budget=SUMMARY_BUDGET,
)
def check_scenario(
    ctx: ToolContext, name: Annotated[str, _NAME], version: Annotated[int | None, _VERSION] = None
) -> dict[str, Any]:
    return dict(ctx.store().check_scenario(name, version=version))


# ------------------------------------------------------------------ paging
@_tool(
    "Load a scenario",
    "Read a scenario. Without entity_type: its summary (as summarize_scenario). With entity_type: one "
    "page of those entities from offset; page.next_offset continues, null after the last. Across many "
    "entities, use query.",
    _obj(name="string", scenario_id="string", version="integer", types="object", entities="object", page="object"),
    read_only=True,
)
def load_scenario(
    ctx: ToolContext,
    name: Annotated[str, _NAME],
    entity_type: Annotated[str | None, Field(description="Type to page through, e.g. patients.")] = None,
    offset: Annotated[int, Field(ge=0)] = 0,
    limit: Annotated[int, Field(ge=1, le=MAX_PAGE)] = 10,
    version: Annotated[int | None, _VERSION] = None,
) -> Answer:
    if entity_type is None:  # the summary, with its own budget
        overview = dict(ctx.store().summarize_scenario(name, version=version, samples=SAMPLE_PER_TYPE))
        return Answer(fit(overview, SUMMARY_BUDGET))
    with ctx.store().open_scenario(name, version) as reader:
        header = reader.summary()
        page = reader.page(entity_type, offset, limit, PAGE_BYTES)
    stored = page["entity_type"]
    return Answer({**header, "entities": {stored: page.pop("entities")}, "page": page}, _page_cut(offset, stored))


@_tool(
    "Query scenarios with SQL",
    "Run ONE read-only SELECT over all scenarios (DuckDB's or PostgreSQL's SQL, as the answer's engine "
    "says; this works on both). Views: entities(scenario, scenario_id, entity_type, entity_id, data) and one "
    "per type, e.g. patients(scenario, scenario_id, entity_id, data); data is the entity's JSON: "
    "data->>'gender' is text, (data->>'birth_date')::DATE a date, data->'address'->>'city' nested. "
    "Tables scenarios(scenario_id, name, description, created_at, updated_at, metadata), "
    "scenario_tags(scenario_id, tag). Example: SELECT data->>'gender' AS g, count(*) FROM patients WHERE "
    "scenario = 'cohort' GROUP BY 1. At most limit rows; total_rows counts all; page with LIMIT/OFFSET.",
    _obj(columns="array", rows="array", row_count="integer", total_rows="integer", truncated="boolean"),
    read_only=True,
)
def query(
    ctx: ToolContext,
    sql: Annotated[str, Field(description="One SELECT statement.")],
    limit: Annotated[int, Field(ge=1, le=MAX_QUERY_ROWS, description="Rows to return.")] = 100,
) -> Answer:
    result = dict(ctx.store().query(sql, limit=limit, max_bytes=QUERY_BYTES))

    def after(answer: dict[str, Any], kept: int) -> None:
        answer["row_count"] = kept

    how = "select fewer or narrower columns, or page with LIMIT/OFFSET in the SQL"
    return Answer(result, Cut(("rows",), after=after, how=lambda *_: how, rest=how))


# ------------------------------------------------------------------ editing
@_tool(
    "Save a scenario",
    "Save a new scenario. entities maps a type (patients, encounters, diagnoses, lab_results, medications, "
    "claims, members, subjects... or your own snake_case type) to a list of JSON objects, kept exactly. "
    "For more than about 100 entities save the first batch here, then use add_entities. overwrite=true "
    "REPLACES an existing scenario of that name (undo: restore_scenario).",
    _obj(**_ENTRY, check="object"),
    destructive=True,
)
def save_scenario(
    ctx: ToolContext,
    name: Annotated[str, Field(description="A new name, e.g. diabetes-cohort.")],
    entities: Annotated[dict[str, list[dict[str, Any]]], _ENTITIES],
    description: Annotated[str | None, Field(description="What it is.")] = None,
    tags: Annotated[list[str] | None, Field(description="Tags to find it by.")] = None,
    overwrite: Annotated[bool, Field(description="Replace a scenario of this name.")] = False,
    check: Annotated[Literal["warn", "refuse"] | None, _CHECK] = None,
) -> dict[str, Any]:
    target = ctx.store()
    saved = target.save_scenario(name, entities, description, tags, overwrite, check=check)
    if check is None:
        return dict(target.scenario_summary(saved))
    return {**target.scenario_summary(saved["scenario_id"]), "check": saved["check"]}


@_tool(
    "Add entities to a scenario",
    "Add entities to a scenario in one transaction: build large scenarios with save_scenario and a "
    "first batch, then add_entities in batches of up to about 100, then summarize_scenario to check. "
    "An entity whose type and id (patient_id, claim_id...) match one there REPLACES it in place; others "
    "are appended. upsert=false appends all; create=true makes a missing scenario.",
    _obj(**_EDIT, check="object"),
    destructive=True,
)
def add_entities(
    ctx: ToolContext,
    name: Annotated[str, _NAME],
    entities: Annotated[dict[str, list[dict[str, Any]]], _ENTITIES],
    upsert: Annotated[bool, Field(description="Replace entities of the same type and id.")] = True,
    create: Annotated[bool, Field(description="Make the scenario if missing.")] = False,
    check: Annotated[Literal["warn", "refuse"] | None, _CHECK] = None,
) -> dict[str, Any]:
    return dict(ctx.store().add_entities(name, entities, upsert=upsert, create=create, check=check))


@_tool(
    "Remove entities from a scenario",
    "Remove entities of one type by own id (e.g. MRN-10001) or stored UUID. Answers counts and not_found.",
    _obj(**_EDIT, not_found="array"),
    destructive=True,
    idempotent=True,
)
def remove_entities(
    ctx: ToolContext,
    name: Annotated[str, _NAME],
    entity_type: Annotated[str, Field(description="e.g. patients.")],
    entity_ids: Annotated[list[str], Field(description="Own ids or UUIDs.")],
) -> Answer:
    return Answer(
        dict(ctx.store().remove_entities(name, entity_type, entity_ids)),
        Cut(("not_found",), how=lambda *_: "the ids left out matched nothing either"),
    )


@_tool(
    "Rename, describe or tag a scenario",
    "Rename (new_name must be free), set the description (empty string clears it), add or remove tags.",
    _obj(**_ENTRY, tags="array", description="string?"),
    idempotent=True,
)
def update_scenario(
    ctx: ToolContext,
    name: Annotated[str, _NAME],
    new_name: Annotated[str | None, Field(description="New name.")] = None,
    description: Annotated[str | None, Field(description="New description.")] = None,
    add_tags: Annotated[list[str] | None, Field(description="Tags to add.")] = None,
    remove_tags: Annotated[list[str] | None, Field(description="Tags to remove.")] = None,
) -> dict[str, Any]:
    entry = ctx.store().update_scenario(
        name, new_name=new_name, description=description, add_tags=add_tags or (), remove_tags=remove_tags or ()
    )
    return dict(entry)


# ------------------------------------------------------------------ copying
@_tool("Copy a scenario", "Copy a scenario under a new name (same entities, same order).", _obj(**_ENTRY))
def copy_scenario(
    ctx: ToolContext,
    source: Annotated[str, _NAME],
    new_name: Annotated[str, Field(description="A free name.")],
) -> dict[str, Any]:
    target = ctx.store()
    return dict(target.scenario_summary(target.copy_scenario(source, new_name)))


@_tool(
    "Merge scenarios",
    "A new scenario with the entities of several, in order; upsert=true: later ones replace equal ids.",
    _obj(**_ENTRY),
)
def merge_scenarios(
    ctx: ToolContext,
    sources: Annotated[list[str], Field(description="Names or ids, in order.")],
    new_name: Annotated[str, Field(description="A free name.")],
    upsert: Annotated[bool, Field(description="Later ones replace equal ids.")] = False,
) -> dict[str, Any]:
    target = ctx.store()
    return dict(target.scenario_summary(target.merge_scenarios(sources, new_name, upsert=upsert)))


# ------------------------------------------------------------------ history
@_tool(
    "Delete a scenario",
    "Delete a scenario to the trash: restore_scenario brings it back, with its history, for 30 days "
    "(list_scenarios deleted=true shows the trash). purge=true deletes for good: ask the user first.",
    _obj(deleted="boolean", purged="boolean", name="string"),
    destructive=True,
    idempotent=True,
)
def delete_scenario(
    ctx: ToolContext,
    name: Annotated[str, _NAME],
    purge: Annotated[bool, Field(description="For good, with its history.")] = False,
) -> dict[str, Any]:
    if not ctx.store().delete_scenario(name, purge=purge):
        raise ScenarioNotFoundError(name)
    return {"deleted": True, "purged": purge, "name": name}


@_tool(
    "Scenario history",
    "A scenario's versions, newest first (each save, add, remove, update, restore and delete makes one): "
    "version, at, operation, changes. Find the version to restore_scenario, load_scenario or "
    "diff_scenarios. Works for deleted scenarios.",
    _obj(name="string", scenario_id="string", versions="array", total_count="integer"),
    read_only=True,
)
def scenario_history(
    ctx: ToolContext,
    name: Annotated[str, _NAME],
    limit: Annotated[int, Field(ge=1, le=MAX_LIST)] = 20,
) -> Answer:
    how = "these are the newest; older versions load by number with load_scenario or diff_scenarios"
    return Answer(dict(ctx.store().scenario_history(name, limit)), Cut(("versions",), how=lambda *_: how))


@_tool(
    "Restore a scenario",
    "Undo: make an earlier version current again (as a new version; the history stays) or bring back a "
    "deleted scenario. No version: a deleted one's last, else the one before the current. new_name "
    "restores it as a new scenario.",
    _obj(**_EDIT),
    destructive=True,
)
def restore_scenario(
    ctx: ToolContext,
    name: Annotated[str, Field(description="Scenario name or scenario_id (deleted too).")],
    version: Annotated[int | None, Field(ge=1, description="The version to bring back.")] = None,
    new_name: Annotated[str | None, Field(description="Restore as a new scenario.")] = None,
) -> dict[str, Any]:
    return dict(ctx.store().restore_scenario(name, version, new_name=new_name))


@_tool(
    "Compare scenarios or versions",
    "What changed from a to b (scenarios, or versions written name@3): per type added, removed, changed "
    "and unchanged counts with example ids and changed fields; name, description and tag changes.",
    _obj(a="object", b="object", types="object", scenario="object"),
    read_only=True,
)
def diff_scenarios(
    ctx: ToolContext,
    a: Annotated[str, Field(description="e.g. cohort@3.")],
    b: Annotated[str, Field(description="e.g. cohort.")],
) -> Answer:
    return Answer(dict(ctx.store().diff_scenarios(a, b)), Cut(rest="compare fewer types or versions closer together"))


# ------------------------------------------------------------------ file
@_tool(
    "Export a scenario",
    "Write a scenario into the export folder (HEALTHSIM_EXPORT_DIR, default ~/Downloads) as json, "
    "ndjson, parquet/csv (a file per type), fhir (FHIR R4 Bulk NDJSON) or fhir-bundle (a Bundle per "
    "patient). output_path: a name in that folder. Replaces only an earlier HealthSim export.",
    _obj(path="string", format="string", **_ENTRY),
    destructive=True,
    scope="read",  # it writes a file in the export folder, but changes no scenario
)
def export_scenario(
    ctx: ToolContext,
    name: Annotated[str, _NAME],
    output_path: Annotated[str | None, Field(description="File or folder name in the export folder.")] = None,
    version: Annotated[int | None, _VERSION] = None,
    format: Literal["json", "ndjson", "parquet", "csv", "fhir", "fhir-bundle"] = "json",
    types: Annotated[list[str] | None, Field(description="Only these entity types.")] = None,
) -> dict[str, Any]:
    target = ctx.store()
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
        # FHIR: what could not become a valid resource, as the folder's export report says.
        **(skipped_of(path) if format in ("fhir", "fhir-bundle") else {}),
    }


@_tool(
    "Import a scenario file",
    "Import from an import folder (HEALTHSIM_IMPORT_DIRS, default ~/Downloads and ~/.healthsim) a "
    "scenario JSON file, FHIR Bundles or Bulk NDJSON (fhir) or a Synthea CSV folder (synthea-csv). "
    "overwrite=true REPLACES a scenario of that name. A bad file is refused; nothing is saved.",
    _obj(**_ENTRY),
    destructive=True,
)
def import_scenario(
    ctx: ToolContext,
    file_path: Annotated[str, Field(description="A file in an import folder (a bare name is looked for there).")],
    name: Annotated[str | None, Field(description="Scenario name (default: the file's).")] = None,
    overwrite: Annotated[bool, Field(description="Replace a scenario of that name.")] = False,
    format: Literal["json", "fhir", "synthea-csv"] = "json",
) -> dict[str, Any]:
    target = ctx.store()
    source = import_source(file_path)
    if format == "json":
        return dict(target.scenario_summary(target.import_scenario_from_json(source, name, overwrite)))
    return dict(target.scenario_summary(target.import_scenario(source, name, overwrite, format=format)))
