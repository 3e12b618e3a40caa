"""The HTTP server's speed row (issue 25): ``list_scenarios`` over Streamable HTTP with a
token vs the same call over stdio, both against a real ``healthsim mcp`` process on the
same DuckDB file (and, for the team store, the same PostgreSQL database), in one run.

Each figure is the best of ``repeat + 2`` calls after a first one, within one session:
what an assistant pays per call once connected. Target: HTTP <= 3x stdio. Two rows per
database: the listing as the server keeps it while the DuckDB file is unchanged (the
token check is kept likewise: the first call wrote the token's ``last_used_at``, so the
calls are timed once the file has been quiet for 2 s), and ``deleted=true``, which reads
the file at every call.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx2
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client

from data import generate
from healthsim.state import ScenarioStore
from healthsim.state.tokens import create_token

HEALTHSIM = str(Path(sys.executable).parent / "healthsim")
#: HTTP (token checked at every request) over stdio, for the same call.
HTTP_TARGET = 3.0


ARGUMENTS: list[dict[str, Any]] = [{}, {"deleted": True}]

# The in-process MCP rows build the SDK's server object, which sets the root logger to INFO:
# every HTTP request of the client would then be printed among the benchmark's tables.
for _chatty in ("httpx", "httpx2", "mcp"):
    logging.getLogger(_chatty).setLevel(logging.WARNING)


async def _best(session: ClientSession, repeat: int) -> list[float]:
    """The best time of each of :data:`ARGUMENTS`' calls."""
    for arguments in ARGUMENTS:
        await session.call_tool("list_scenarios", arguments)
    await asyncio.sleep(2.1)  # the file quiet again: what is kept may be used
    best = []
    for arguments in ARGUMENTS:
        times = []
        for _ in range(repeat + 2):
            started = time.perf_counter()
            result = await session.call_tool("list_scenarios", arguments)
            times.append(time.perf_counter() - started)
            assert not result.is_error, result
        best.append(min(times))
    return best


async def _over_stdio(db: str, repeat: int) -> list[float]:
    params = StdioServerParameters(command=HEALTHSIM, args=["mcp"], env={**os.environ, "HEALTHSIM_DB": db})
    async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
        await session.initialize()
        return await _best(session, repeat)


async def _over_http(url: str, token: str, repeat: int) -> list[float]:
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx2.AsyncClient(headers=headers, timeout=60) as http:
        async with streamable_http_client(url, http_client=http) as (read, write, *_):
            async with ClientSession(read, write) as session:
                await session.initialize()
                return await _best(session, repeat)


def _serve(db: str) -> tuple[subprocess.Popen[bytes], str]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    process = subprocess.Popen(
        [HEALTHSIM, "mcp", "--http", "--port", str(port)],
        env={**os.environ, "HEALTHSIM_DB": db},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return process, f"http://127.0.0.1:{port}/mcp"
        except OSError:
            time.sleep(0.05)
    process.kill()
    raise RuntimeError("healthsim mcp --http did not start")


def _run(make: Callable[[], Awaitable[list[float]]]) -> list[float]:
    return asyncio.run(make())  # type: ignore[arg-type]


def measure(db: str, repeat: int) -> tuple[list[float], list[float]]:
    """(HTTP seconds, stdio seconds) of each list_scenarios call of :data:`ARGUMENTS` on
    ``db`` (20 scenarios, one in the trash)."""
    store = ScenarioStore(db)
    for i in range(20):
        store.save_scenario(f"bench-{i:02d}", generate(50), tags=["bench"])
    store.delete_scenario("bench-19")
    token = create_token(db, "bench", "read")
    process, url = _serve(db)
    try:
        http = _run(lambda: _over_http(url, token, repeat))
    finally:
        process.terminate()
        process.wait(10)
    stdio = _run(lambda: _over_stdio(db, repeat))
    return http, stdio


def bench_http(folder: Path, repeat: int, team_url: str | None = None) -> list[tuple[str, float, float, float]]:
    """Rows of (label, HTTP seconds, stdio seconds, target ratio)."""
    rows: list[tuple[str, float, float, float]] = []
    databases = [("DuckDB", str(folder / "http.duckdb"))] + ([("team store", team_url)] if team_url else [])
    for label, db in databases:
        http, stdio = measure(db, repeat)
        rows.append((f"MCP list_scenarios, 20 scenarios ({label})", http[0], stdio[0], HTTP_TARGET))
        rows.append((f"MCP list_scenarios deleted=true ({label}: reads the database)", http[1], stdio[1], HTTP_TARGET))
    return rows


def print_http(rows: list[tuple[str, float, float, float]]) -> None:
    print("\n| call (best of runs after the first) | HTTP + token (s) | stdio (s) | ratio | target |")
    print("|---|---:|---:|---:|---:|")
    for label, http, stdio, target in rows:
        ratio = http / stdio
        verdict = "ok" if ratio <= target else "OVER"
        print(f"| {label} | {http:.4f} | {stdio:.4f} | {ratio:.2f}x | <= {target}x {verdict} |")


__all__: list[Any] = ["bench_http", "print_http"]
