"""Every MCP answer fits its byte budget, whatever the data: each tool is called through
the official client (in-process) on oversized scenarios, and every answer is measured.

Budgets: 12 KB (12,288 bytes) for summaries, 32 KB (32,768 bytes) for every other
answer, counting the compact JSON the assistant reads (the text content; the structured
content is the same value). A cut answer says so: ``truncated`` and ``truncated_note``.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from mcp import Client, ClientSession

from healthsim.mcp.budget import ANSWER_BUDGET, SUMMARY_BUDGET, Cut, answer_bytes, fit
from healthsim.mcp.wire import answer_for, screen
from healthsim.mcp_server import build_server
from healthsim.state import ScenarioStore
from helpers.examples import examples

SUMMARY_TOOLS = {"summarize_scenario"}
#: The biggest answer of each tool in the oversized run (printed with -s, for the notes).
BIGGEST: dict[str, int] = {}


@asynccontextmanager
async def session(db: Path) -> AsyncIterator[ClientSession]:
    async with Client(build_server(db), mode="legacy", cache=None) as client:
        yield client.session


async def measured(client: ClientSession, tool: str, budget: int | None = None, **arguments: Any) -> dict[str, Any]:
    """Call ``tool`` and check its answer against its budget; return the answer."""
    result = await client.call_tool(tool, arguments)
    assert not result.is_error, (tool, result.content[0].text[:500])
    text = result.content[0].text
    size = len(text.encode("utf-8"))
    limit = budget or (SUMMARY_BUDGET if tool in SUMMARY_TOOLS else ANSWER_BUDGET)
    assert size <= limit, (tool, size, limit)
    assert result.structured_content == json.loads(text), tool  # the same value, structured
    BIGGEST[tool] = max(BIGGEST.get(tool, 0), size)
    answer: dict[str, Any] = json.loads(text)
    return answer


def many_types(count: int) -> dict[str, list[dict[str, Any]]]:
    """``count`` entity types with long names, one entity each: large counts by type."""
    # (names at the 100-character limit: 320 types overflow every answer that echoes them)
    return {f"type_{i:05d}_{'x' * 89}": [{"id": i}] for i in range(count)}


@pytest.mark.slow
def test_every_tool_fits_its_budget_on_oversized_data(db_path: Path, tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.setenv("HEALTHSIM_EXPORT_DIR", str(tmp_path / "out"))
    monkeypatch.setenv("HEALTHSIM_IMPORT_DIRS", str(tmp_path / "out"))
    store = ScenarioStore(db_path)
    long_text = "long description " * 6_000  # ~100 KB
    for i in range(5):
        store.save_scenario(
            f"described-{i}", {}, description=long_text, tags=[f"tag-{j}-{'t' * 80}" for j in range(200)]
        )
    huge = {"patient_id": "BIG", "notes": "n" * 2_000_000, "wide": {f"k{j}": "v" * 50 for j in range(20_000)}}
    store.save_scenario("huge-entity", {"patients": [huge, {"patient_id": "SMALL"}]})
    wide_rows = [{"patient_id": f"P{i:04d}-{'i' * 150}", "text": "w" * 600} for i in range(1_000)]
    store.save_scenario("wide", {"patients": wide_rows})
    changed = [{**row, "patient_id": row["patient_id"], **{f"f{j}": j for j in range(60)}} for row in wide_rows]
    store.add_entities("wide", {"patients": changed})
    # A summary's 12 KB and a check's answer overflow with 130 such types as with 320 (every type is left out
    # of the summary, the counts by type are cut too; the check's list is cut), at 2/5 of the cost: both
    # work out every type before they leave types out (~10 ms a type).
    store.save_scenario("types-130", many_types(130))

    async def test(client: ClientSession) -> None:
        # Long names of many types: every answer that echoes counts by type.
        saved = await measured(client, "save_scenario", name="types", entities=many_types(320))
        assert saved["truncated"] is True and saved["name"] == "types"
        await measured(client, "add_entities", name="types", entities={"type_extra": [{"id": 1}]})
        await measured(client, "copy_scenario", source="types", new_name="types-copy")
        await measured(client, "merge_scenarios", sources=["types", "types-copy"], new_name="types-merged")
        await measured(client, "update_scenario", name="described-0", description=long_text, add_tags=["x" * 190])
        listed = await measured(client, "list_scenarios", limit=100)
        assert listed["truncated"] is True and listed["total_count"] == 11
        assert listed["more"] == listed["total_count"] - len(listed["scenarios"])
        kept = len(listed["scenarios"])
        assert f"continue with offset={kept}" in json.dumps(listed)  # the cut says how to go on
        rest = await measured(client, "list_scenarios", limit=100, offset=kept)
        assert not {s["name"] for s in rest["scenarios"]} & {s["name"] for s in listed["scenarios"]}
        summary = await measured(client, "summarize_scenario", name="types-130")
        assert summary["types_omitted"] == 130 and summary["entities_by_type_omitted"] > 0  # it did overflow
        await measured(client, "summarize_scenario", name="huge-entity", samples=5)
        checked = await measured(client, "check_scenario", name="types-130")
        assert checked["truncated"] is True and checked["checked_omitted"] > 0
        await measured(client, "check_scenario", name="huge-entity")
        await measured(client, "load_scenario", name="types-130", budget=SUMMARY_BUDGET)
        page = await measured(client, "load_scenario", name="huge-entity", entity_type="patients", limit=100)
        assert page["truncated"] is True and page["page"]["returned"] == 1 and page["page"]["next_offset"] == 1
        assert page["entities"]["patients"][0]["patient_id"] == "BIG"
        wide_page = await measured(client, "load_scenario", name="wide", entity_type="patients", limit=100)
        assert wide_page["page"]["next_offset"] == wide_page["page"]["returned"]  # continue where it stopped
        rows = await measured(client, "query", sql="SELECT * FROM patients", limit=1000)
        assert rows["row_count"] == len(rows["rows"]) < rows["total_rows"]
        await measured(client, "query", sql="SELECT data FROM patients WHERE scenario = 'huge-entity'", limit=2)
        diff = await measured(client, "diff_scenarios", a="wide@1", b="wide")
        assert diff["types"]["patients"]["changed"] == 1_000
        await measured(client, "diff_scenarios", a="types", b="huge-entity")
        history = await measured(client, "scenario_history", name="types", limit=100)
        assert history["truncated"] is True and [v["version"] for v in history["versions"]] == [2]
        removed = await measured(
            client,
            "remove_entities",
            name="wide",
            entity_type="patients",
            entity_ids=[f"none-{'z' * 100}-{i}" for i in range(2_000)],
        )
        assert removed["truncated"] is True and len(removed["not_found"]) < 2_000
        exported = await measured(client, "export_scenario", name="types")
        await measured(client, "import_scenario", file_path=exported["path"], name="types-imported")
        await measured(client, "restore_scenario", name="types", version=1)
        await measured(client, "delete_scenario", name="types-imported")
        tools = {tool.name for tool in (await client.list_tools()).tools}
        assert tools == set(BIGGEST), tools ^ set(BIGGEST)  # every tool was measured

    async def main() -> None:
        async with session(db_path) as client:
            await asyncio.wait_for(test(client), timeout=600)

    asyncio.run(main())
    print("\nbiggest answer of each tool (bytes):", json.dumps(dict(sorted(BIGGEST.items()))))


def test_error_texts_are_bounded(db_path: Path) -> None:
    async def main() -> None:
        async with session(db_path) as client:
            result = await client.call_tool("load_scenario", {"name": "n" * 100_000})
            assert result.is_error and len(result.content[0].text.encode()) < 4_096

    asyncio.run(main())


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=1_000),
    lambda inner: st.lists(inner, max_size=40) | st.dictionaries(st.text(max_size=300), inner, max_size=40),
    max_leaves=150,
)


@settings(max_examples=examples(40), deadline=None)
@given(answer=st.dictionaries(st.text(max_size=50), json_values, max_size=30), budget=st.sampled_from([2_048, 4_096]))
def test_fit_always_fits_and_says_so(answer: dict[str, Any], budget: int) -> None:
    fitted = fit(answer, budget, Cut(("rows",)))
    assert answer_bytes(fitted) <= budget
    if fitted is not answer:
        assert fitted["truncated"] is True and fitted["truncated_note"].startswith("answer cut to fit")


def test_fit_keeps_whole_items_and_says_how_to_get_the_rest() -> None:
    rows = [[i, "x" * 100] for i in range(1_000)]
    fitted = fit({"rows": rows, "row_count": 1_000}, 8_192, Cut(("rows",), how=lambda kept, _: f"offset={kept}"))
    kept = len(fitted["rows"])
    assert 0 < kept < 1_000 and fitted["rows"] == rows[:kept]
    assert f"{1_000 - kept} of 1000 rows left out; offset={kept}" in fitted["truncated_note"]


@pytest.mark.parametrize("size", [10, 10_000, 5_000_000])
def test_one_huge_value_is_cut_and_marked(size: int) -> None:
    fitted = fit({"entities": {"patients": [{"notes": "n" * size}]}}, 4_096, Cut(("entities", "patients")))
    assert answer_bytes(fitted) <= 4_096
    if size > 4_096:
        assert "…[cut: " in fitted["entities"]["patients"][0]["notes"]


def test_error_texts_about_the_call_itself_are_bounded(db_path: Path) -> None:
    """Errors raised before a tool runs did not pass the 2,000-character cut: an unknown
    argument or tool named with 100,000 characters, a wrong value of an argument of that
    name, or a repeated key that long (stdio's and HTTP's strict reading) were answered
    with all of it: 100 KB answers, and up to the body limit (16 MB) over HTTP."""
    long = "x" * 100_000
    calls: list[tuple[str, dict[str, Any]]] = [
        ("list_scenarios", {long: 1}),
        ("list_scenarios", {f"{long}{i}": 1 for i in range(5)}),
        (long, {}),
        ("load_scenario", {"name": "a", "entity_type": "patients", "limit": long}),
    ]

    async def main() -> list[str]:
        async with session(db_path) as client:
            return [(await client.call_tool(tool, arguments)).content[0].text for tool, arguments in calls]

    for text in asyncio.run(main()):
        assert len(text.encode()) < 4_096, text[:200]
    for body in (
        '{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"save_scenario","arguments":'
        '{"name":"x","entities":{"patients":[{"LONG":1,"LONG":2}]}}}}',
        '{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"LONG","arguments":{"a":1,"a":2}}}',
        '{"jsonrpc":"2.0","id":2,"method":"LONG","params":{"a":1,"a":2}}',
    ):
        envelope, problem = screen(body.replace("LONG", long))
        assert problem is not None
        answer = answer_for(envelope, problem)
        assert answer is not None and len(answer.model_dump_json()) < 4_096
