"""The tool list an assistant reads in every conversation: small, still teaching the
workflow, with output schemas; the server's instructions; ``healthsim mcp`` in a terminal."""

from __future__ import annotations

import asyncio
import json
import os
import pty
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from mcp import Client

from healthsim.mcp_server import INSTRUCTIONS, build_server

HEALTHSIM = Path(sys.executable).parent / "healthsim"
#: All tool names, descriptions and input schemas together, as JSON (default separators).
TOOL_LIST_CHARS = 12_000


def listed(db: Path) -> tuple[list[Any], str | None]:
    async def main() -> tuple[list[Any], str | None]:
        async with Client(build_server(db), mode="legacy", cache=None) as client:
            tools = (await client.session.list_tools()).tools
            instructions = client.session.initialize_result.instructions if client.session.initialize_result else None
            return tools, instructions

    return asyncio.run(main())


def test_tool_list_fits_12000_characters_and_teaches_the_workflow(db_path: Path) -> None:
    tools, instructions = listed(db_path)
    size = len(
        json.dumps([{"name": t.name, "description": t.description, "inputSchema": t.input_schema} for t in tools])
    )
    print(f"\ntool list: {size} characters (names, descriptions, input schemas)")
    assert size <= TOOL_LIST_CHARS, size  # was 15,929 (19,700 as the issue counted it)
    by_name = {t.name: t.description or "" for t in tools}
    assert "save_scenario" in by_name["add_entities"] and "batches of up to about 100" in by_name["add_entities"]
    assert "summarize_scenario to check" in by_name["add_entities"]
    assert "add_entities" in by_name["save_scenario"] and "restore_scenario" in by_name["save_scenario"]
    assert "restore_scenario" in by_name["scenario_history"] and "Undo" in by_name["restore_scenario"]
    assert instructions == INSTRUCTIONS


def test_every_tool_declares_an_output_schema_and_answers_structured_content(db_path: Path) -> None:
    tools, _ = listed(db_path)
    for tool in tools:
        assert tool.output_schema is not None and tool.output_schema["type"] == "object", tool.name
        assert tool.output_schema["properties"], tool.name

    async def main() -> None:
        async with Client(build_server(db_path), mode="legacy", cache=None) as client:
            # The client checks the structured content against the declared schema.
            result = await client.session.call_tool("save_scenario", {"name": "s", "entities": {"patients": [{}]}})
            assert result.structured_content == json.loads(result.content[0].text)
            assert result.structured_content["entity_count"] == 1
            listing = await client.session.call_tool("list_scenarios", {})
            assert listing.structured_content is not None and listing.structured_content["total_count"] == 1

    asyncio.run(main())


def test_instructions_teach_history_and_restore_not_copies() -> None:
    text = " ".join(INSTRUCTIONS.split())
    assert "copy_scenario" not in text
    assert "scenario_history" in text and "restore_scenario" in text
    assert "save_scenario with the first batch, then add_entities in batches of up to about 100" in text


def test_export_annotations_tell_the_truth(db_path: Path) -> None:
    tools = {t.name: t for t in listed(db_path)[0]}
    hints = tools["export_scenario"].annotations
    assert hints is not None and hints.destructive_hint is True and not hints.idempotent_hint  # it can replace


@pytest.mark.slow  # a real `healthsim mcp` process
def test_mcp_in_a_terminal_says_what_it_is_on_stderr(db_path: Path) -> None:
    """Standard input a terminal: a note on stderr, nothing on stdout (the protocol channel)."""
    main, replica = pty.openpty()
    process = subprocess.Popen(
        [str(HEALTHSIM), "mcp"],
        stdin=replica,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "HEALTHSIM_DB": str(db_path)},
    )
    os.close(replica)
    try:
        os.write(main, b"\x04")  # Ctrl-D: end of input
        stdout, stderr = process.communicate(timeout=60)
    finally:
        process.kill()
        os.close(main)
    note = stderr.decode()
    assert "serving MCP on stdio" in note and "claude mcp add healthsim" in note and '"args": ["mcp"]' in note
    assert stdout == b""


@pytest.mark.slow  # a real `healthsim mcp` process
def test_mcp_on_a_pipe_prints_no_note(db_path: Path) -> None:
    done = subprocess.run(
        [str(HEALTHSIM), "mcp"],
        input=b"",
        capture_output=True,
        timeout=60,
        env={**os.environ, "HEALTHSIM_DB": str(db_path)},
    )
    assert b"serving MCP" not in done.stderr and done.stdout == b""
