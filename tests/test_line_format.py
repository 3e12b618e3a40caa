"""The fast reader of the export's line layout, and when it hands over to the general reader."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from healthsim.state.exchange.line_format import LineLayoutReader, NotLineLayout

HEADER = b'{"schema_version":"1.0","name":"x","entities":{\n'


def read(body: bytes) -> tuple[dict, dict]:
    reader = LineLayoutReader(Path("x.json"), io.BytesIO(HEADER + body))
    lists = {key: [(e.obj, e.text, e.exact) for e in items] for key, items in reader.lists()}
    return reader.fields, lists


def test_reads_the_layout() -> None:
    fields, lists = read(b'"patients":[\n{"a":1},\n{"b":null}\n],\n"members":[],\n"claims":[\n{"c":2}\n]\n}}\n')
    assert fields == {"schema_version": "1.0", "name": "x"}
    assert lists == {
        "patients": [({"a": 1}, b'{"a":1}', False), ({"b": None}, b'{"b":null}', False)],
        "members": [],
        "claims": [({"c": 2}, b'{"c":2}', False)],
    }


def test_lines_orjson_cannot_reproduce_are_parsed_exactly_and_kept() -> None:
    body = b'"patients":[\n{"big":123456789012345678901234567890},\n{"e": "\\u00e9"}\n]\n}}\n'
    _, lists = read(body)
    assert lists["patients"] == [
        ({"big": 123456789012345678901234567890}, b'{"big":123456789012345678901234567890}', True),
        ({"e": "é"}, b'{"e": "\\u00e9"}', True),
    ]


@pytest.mark.parametrize(
    "body",
    [
        b'"patients":[\n{"a":1},\n]\n}}\n',  # trailing comma
        b'"patients":[\n{"a":1}\n{"a":2}\n]\n}}\n',  # missing comma
        b'"patients":[\n{"a":1,"a":2}\n]\n}}\n',  # duplicate key
        b'"patients":[\n{"a":NaN}\n]\n}}\n',
        b'"patients":[\n[1]\n]\n}}\n',  # not an object
        b'"patients":[\n{"a":\n1}\n]\n}}\n',  # an entity over two lines
        b'"patients":[\n{"a":1}\n]\n}}\nmore',  # data after the document
        b'"patients":[\n{"a":1}\n]',  # truncated
        b'"patients":[],\n"patients":[]\n}}\n',  # a type twice
        b'"patients":[],\n}}\n',  # trailing comma after the last type
        b'"patients":[\n{"v":"\\ud800"}\n]\n}}\n',  # lone surrogate
    ],
)
def test_anything_unexpected_goes_to_the_general_reader(body: bytes) -> None:
    with pytest.raises(NotLineLayout):
        read(body)


@pytest.mark.parametrize(
    "first",
    [
        b'{"name":"x","entities":{\n',
        b'{"schema_version":"1.0","entities":{"patients":[]}}\n',
        b'{"schema_version": "1.0", "entities":{\n',
        b"",
    ],
)
def test_other_first_lines_are_not_the_layout(first: bytes) -> None:
    with pytest.raises(NotLineLayout):
        LineLayoutReader(Path("x.json"), io.BytesIO(first + b"}}\n"))
