"""``list_scenarios`` over MCP answers from memory while the database is unchanged, and never
gives a stale list (issue 21, point 21). How long it takes is measured by the benchmark
(``benchmarks/run.py --only query``: at most 0.1 s)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest
from mcp import ClientSession

from healthsim.state import ScenarioStore

WRITE_FROM_ANOTHER_PROCESS = """
import sys
from healthsim.state import ScenarioStore
ScenarioStore(sys.argv[1]).save_scenario(sys.argv[2], {})
"""


def test_a_kept_list_is_never_stale(db_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Lists while the file is unchanged come from memory; a write by another process
    (or this one) changes the file, and the next list reads it again."""
    from mcp import Client

    from healthsim.mcp import listing
    from healthsim.mcp_server import build_server

    ScenarioStore(db_path).save_scenario("first", {})
    monkeypatch.setattr(listing, "QUIET_SECONDS", 0.0)  # no waiting for the file to be quiet
    reads: list[int] = []
    original = ScenarioStore.list_scenarios

    def counted(self: ScenarioStore, *args: object, **kwargs: object) -> object:
        reads.append(1)
        return original(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(ScenarioStore, "list_scenarios", counted)

    async def names(client: ClientSession) -> list[str]:
        result = await client.call_tool("list_scenarios", {})
        return [s["name"] for s in (result.structured_content or {})["scenarios"]]

    async def main() -> None:
        async with Client(build_server(db_path), mode="legacy", cache=None) as client:
            assert await names(client.session) == ["first"]
            assert await names(client.session) == ["first"] and len(reads) == 1  # from memory
            subprocess.run(
                [sys.executable, "-c", WRITE_FROM_ANOTHER_PROCESS, str(db_path), "second"], check=True, timeout=60
            )
            assert await names(client.session) == ["second", "first"] and len(reads) == 2
            await client.session.call_tool("delete_scenario", {"name": "second"})
            assert await names(client.session) == ["first"]
            deleted = await client.session.call_tool("list_scenarios", {"deleted": True})
            assert [s["name"] for s in (deleted.structured_content or {})["scenarios"]] == ["second"]

    asyncio.run(main())


def test_a_file_changed_just_now_is_read_again(db_path: Path) -> None:
    from healthsim.mcp.listing import ListingCache

    ScenarioStore(db_path).save_scenario("x", {})  # changed a moment ago: "racy", never kept
    cache, reads = ListingCache(), []
    for _ in range(3):
        cache.get(db_path, (), lambda: reads.append(1) or {"scenarios": []})
    assert len(reads) == 3
