"""The general streaming reader: same values as json.loads, whatever the window size."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from healthsim.state.errors import InvalidScenarioFileError
from healthsim.state.exchange import json_stream
from healthsim.state.exchange.json_stream import JsonStream

values = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(10**40), max_value=10**40)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=12,
)
documents = st.fixed_dictionaries(
    {"name": st.text(max_size=10), "entities": st.dictionaries(st.from_regex(r"[a-z]{1,8}", fullmatch=True),
                                                             st.lists(st.dictionaries(st.text(max_size=5), values, max_size=4), max_size=6),
                                                             max_size=3)},
    optional={"extra": values, "care_gaps": st.lists(st.dictionaries(st.text(max_size=5), values, max_size=3), max_size=3)},
)


def rebuild(data: bytes) -> dict[str, Any]:
    """Walk ``data`` and rebuild the document from the events."""
    result: dict[str, Any] = {}
    current: list[Any] = []
    stream = JsonStream(Path("doc.json"), io.BytesIO(data))
    for event in stream.walk(lambda key: key not in {"name", "entities", "extra"}):
        if event.kind == "field":
            result[event.key] = event.value
        elif event.kind == "list":
            current = []
            target = result.setdefault("entities", {}) if event.value else result
            target[event.key] = current
        elif event.kind == "item":
            current.append(event.value)
    return result


@settings(max_examples=150, deadline=None)
@given(document=documents, read_bytes=st.integers(min_value=1, max_value=64), indent=st.sampled_from([None, 1, 4]))
def test_walk_equals_json_loads(document: dict[str, Any], read_bytes: int, indent: int | None) -> None:
    data = json.dumps(document, indent=indent, ensure_ascii=False).encode("utf-8")
    original = json_stream._READ_BYTES
    json_stream._READ_BYTES = read_bytes  # tiny windows: values cross every boundary
    try:
        rebuilt = rebuild(data)
    finally:
        json_stream._READ_BYTES = original
    rebuilt.setdefault("entities", {})  # an empty "entities" object yields no list events
    assert rebuilt == document


def test_long_files_keep_exact_positions(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(json_stream, "_READ_BYTES", 4096)
    lines = ['{"name": "x", "entities": {"patients": [']
    lines += ['  {"patient_id": "P%d", "note": "%s"},' % (i, "é" * (i % 7)) for i in range(200_000)]
    lines += ['  {"patient_id": "last", "v": tru}', "]}}"]
    with pytest.raises(InvalidScenarioFileError) as info:
        rebuild("\n".join(lines).encode("utf-8"))
    assert info.value.location == "$.entities.patients[200000] (line 200002 column 31)"


def test_numbers_split_across_reads(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(json_stream, "_READ_BYTES", 3)
    assert rebuild(b'{"name": 12345678901234567890123, "extra": -1.25e-7}') == {
        "name": 12345678901234567890123, "extra": -1.25e-7,
    }


def test_multibyte_characters_split_across_reads(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(json_stream, "_READ_BYTES", 1)
    assert rebuild('{"name": "中文🎉é"}'.encode()) == {"name": "中文🎉é"}
