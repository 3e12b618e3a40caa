"""Every request gets an answer: deep nesting, huge integers, repeated keys and other
lines the SDK's parser drops are answered with an error (``healthsim.mcp.wire``)."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

import mcp_types as types
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client

from healthsim.mcp.wire import MAX_DEPTH, MAX_DIGITS, refusal, screen
from healthsim.state import ScenarioStore
from helpers.examples import examples

HEALTHSIM = Path(sys.executable).parent / "healthsim"


def call_line(arguments_text: str, request_id: int | str = 7, tool: str = "save_scenario") -> str:
    """A tools/call request line whose arguments are ``arguments_text`` (raw JSON)."""
    head = json.dumps({"jsonrpc": "2.0", "id": request_id, "method": "tools/call"})[:-1]
    return f'{head},"params":{{"name":"{tool}","arguments":{arguments_text}}}}}\n'


def sdk_reads(line: str) -> object:
    """What the SDK's stdio transport makes of a line: a message or the exception."""
    try:
        return types.jsonrpc_message_adapter.validate_json(line, by_name=False)
    except Exception as exc:
        return exc


def outcome(line: str) -> tuple[str, dict[str, Any] | None]:
    """("sdk", None): the SDK reads it and nothing is wrong; ("answer", json): refused."""
    parsed = sdk_reads(line)
    answer = refusal(line, parsed)
    if answer is None:
        assert not isinstance(parsed, Exception), f"dropped unanswered: {line[:200]}"
        return "sdk", None
    return "answer", json.loads(answer.model_dump_json(by_alias=True, exclude_unset=True))


def tool_error(answer: dict[str, Any] | None) -> str:
    assert answer is not None and answer["id"] == 7 and answer["result"]["isError"] is True
    text: str = answer["result"]["content"][0]["text"]
    return text


@settings(max_examples=examples(80), deadline=None)
@given(depth=st.integers(min_value=1, max_value=3_000))
@example(depth=MAX_DEPTH - 6).via("the deepest the SDK is given")
@example(depth=MAX_DEPTH - 5).via("the shallowest refused")
def test_any_nesting_depth_gets_an_answer(depth: int) -> None:
    nested = "[" * depth + "]" * depth
    kind, answer = outcome(call_line(f'{{"name":"x","entities":{{"patients":[{{"deep":{nested}}}]}}}}'))
    total = depth + 6  # the envelope, params, arguments, entities, the list, the entity: 6 levels
    if total <= MAX_DEPTH:
        assert kind == "sdk"
    else:
        text = tool_error(answer)
        assert f"nesting deeper than {MAX_DEPTH} levels" in text and "save_scenario" in text, text
        assert "Nothing was done" in text


@settings(max_examples=examples(80), deadline=None)
@given(digits=st.integers(min_value=1, max_value=20_000), negative=st.booleans())
def test_any_integer_size_gets_an_answer(digits: int, negative: bool) -> None:
    number = ("-" if negative else "") + "9" * digits
    kind, answer = outcome(call_line(f'{{"name":"x","entities":{{"patients":[{{"n":{number}}}]}}}}'))
    if digits <= MAX_DIGITS:
        assert kind == "sdk"
    else:
        text = tool_error(answer)
        assert f"an integer of {digits:,} digits (at most 4,300)" in text, text


@settings(max_examples=examples(50), deadline=None)
@given(key=st.text(min_size=1, max_size=20).filter(lambda k: not any("\ud800" <= c <= "\udfff" for c in k)))
def test_repeated_keys_are_refused_with_their_place(key: str) -> None:
    encoded = json.dumps(key)
    _, answer = outcome(call_line(f'{{"name":"x","entities":{{"patients":[{{{encoded}:1,{encoded}:2}}]}}}}'))
    text = tool_error(answer)
    assert f"the key {key!r} twice in one object at $.entities.patients[0]" in text, text


def test_lines_broken_beyond_parsing_are_answered_when_their_id_can_be_read() -> None:
    deep = "[" * 100_000  # Python's json gives up (RecursionError): the id is read token by token
    _, answer = outcome(call_line('{"x":' + deep))
    assert "nesting deeper than" in tool_error(answer)
    _, answer = outcome('{"jsonrpc":"2.0","id":"a","method":"tools/list","params":{"x":NaN}}')
    assert answer is not None and answer["id"] == "a" and "NaN, which is not JSON" in answer["error"]["message"]
    notification = '{"jsonrpc":"2.0","method":"notifications/x","params":{"a":' + "1" * 5_000 + "}}"
    assert refusal(notification, sdk_reads(notification)) is None  # nobody waits for an answer


def test_a_valid_request_reads_as_before() -> None:
    envelope, problem = screen(call_line('{"name":"x","entities":{"patients":[{"a":-12345678901234567890123}]}}'))
    assert problem is None and envelope == {"id": 7, "method": "tools/call", "name": "save_scenario"}


# Sits between the client and `healthsim mcp` and puts raw JSON no client library writes
# in place of placeholders: 250 levels of nesting, a 5,000-digit integer, a repeated key.
SHIM = r"""
import subprocess, sys
server = subprocess.Popen(sys.argv[1:], stdin=subprocess.PIPE)
swaps = {
    b'"DEEP-NESTING"': b"[" * 250 + b"]" * 250,
    b'"HUGE-INTEGER"': b"9" * 5000,
    b'"REPEATED-KEY"': b'"patient_id"',
}
for line in sys.stdin.buffer:
    for placeholder, raw in swaps.items():
        line = line.replace(placeholder, raw)
    server.stdin.write(line)
    server.stdin.flush()
server.stdin.close()
sys.exit(server.wait())
"""


@pytest.mark.slow  # a real `healthsim mcp` process
def test_a_real_server_answers_every_request(db_path: Path) -> None:
    params = StdioServerParameters(
        command=sys.executable,
        args=["-c", SHIM, str(HEALTHSIM), "mcp"],
        env={**os.environ, "HEALTHSIM_DB": str(db_path)},
    )

    async def call(client: ClientSession, entity: dict[str, Any]) -> str:
        arguments = {"name": "s", "entities": {"patients": [entity]}}
        result = await asyncio.wait_for(client.call_tool("save_scenario", arguments), 20)  # it used to wait forever
        assert result.is_error
        return result.content[0].text

    async def main() -> None:
        async with stdio_client(params) as (read, write), ClientSession(read, write) as client:
            await client.initialize()
            assert "nesting deeper than 120 levels" in await call(client, {"deep": "DEEP-NESTING"})
            assert "an integer of 5,000 digits" in await call(client, {"n": "HUGE-INTEGER"})
            text = await call(client, {"patient_id": "A", "REPEATED-KEY": "B"})
            assert "the key 'patient_id' twice in one object at $.entities.patients[0]" in text, text
            saved = await asyncio.wait_for(client.call_tool("save_scenario", {"name": "s", "entities": {}}), 20)
            assert not saved.is_error  # still serving

    asyncio.run(main())
    assert [s["name"] for s in ScenarioStore(db_path).list_scenarios()["scenarios"]] == ["s"]


@settings(max_examples=examples(25), deadline=None)
@given(depth=st.integers(min_value=1, max_value=150), digits=st.integers(min_value=1, max_value=9_000))
@example(depth=99, digits=20)  # 100 levels with an integer past 64 bits: the exact encoder counted one more
@example(depth=100, digits=20)
def test_in_process_calls_of_any_depth_and_integer_get_an_answer(depth: int, digits: int) -> None:
    """Through the in-process client (no JSON on the way) the library's own limits answer.
    (The client itself refuses to send about 200 levels: pydantic's serialization depth.)"""
    from mcp import Client

    from healthsim.mcp_server import build_server

    nested: Any = []
    for _ in range(depth - 1):
        nested = [nested]
    entity = {"patient_id": "A", "deep": nested, "n": 10**digits - 1}

    async def main() -> None:
        async with Client(build_server(None), mode="legacy", cache=None) as client:
            arguments = {"name": "s", "entities": {"patients": [entity]}, "overwrite": True}
            result = await asyncio.wait_for(client.session.call_tool("save_scenario", arguments), 60)
            text = result.content[0].text
            if depth + 1 > 100 or digits > MAX_DIGITS:  # the entity is one level, its list the next
                assert result.is_error and ("deeper than 100" in text or "4300 digits" in text), text
            else:
                assert not result.is_error, text

    asyncio.run(main())
