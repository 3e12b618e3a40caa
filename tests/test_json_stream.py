"""The general streaming reader: same values as json.loads, whatever the layout, the
read size, the window's drop threshold and the batch size."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from healthsim.state.errors import InvalidScenarioFileError
from healthsim.state.exchange.json_stream import JsonStream
from helpers.examples import examples

values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**40), max_value=10**40)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=12,
)
documents = st.fixed_dictionaries(
    {
        "name": st.text(max_size=10),
        "entities": st.dictionaries(
            st.from_regex(r"[a-z]{1,8}", fullmatch=True),
            st.lists(st.dictionaries(st.text(max_size=5), values, max_size=4), max_size=6),
            max_size=3,
        ),
    },
    optional={
        "extra": values,
        "care_gaps": st.lists(st.dictionaries(st.text(max_size=5), values, max_size=3), max_size=3),
    },
)


def rebuild(data: bytes, **window: int) -> dict[str, Any]:
    """Walk ``data`` and rebuild the document from the events."""
    result: dict[str, Any] = {}
    current: list[Any] = []
    stream = JsonStream(Path("doc.json"), io.BytesIO(data), **window)
    for event in stream.walk(lambda key: key not in {"name", "entities", "extra"}):
        if event.kind == "field":
            result[event.key] = event.value
        elif event.kind == "list":
            current = []
            target = result.setdefault("entities", {}) if event.value else result
            target[event.key] = current
        elif event.kind == "item":
            current.append(event.value)
        elif event.kind == "batch":
            for value, text, exact in event.value:
                assert json.loads(text) == value and not exact  # the text is the value's, exactly
                current.append(value)
    return result


def layout(document: Any, style: str) -> bytes:
    """``document`` as JSON text in one of the layouts people's tools write."""
    if style == "one-line":
        text = json.dumps(document)
    elif style == "compact":
        text = json.dumps(document, separators=(",", ":"), ensure_ascii=False)
    elif style == "indent-2":
        text = json.dumps(document, indent=2)  # the earlier release's layout (\u escapes)
    elif style == "indent-2-utf8":
        text = json.dumps(document, indent=2, ensure_ascii=False)
    elif style == "crlf":
        text = json.dumps(document, indent=4, ensure_ascii=False).replace("\n", "\r\n")
    else:
        text = json.dumps(document, indent="\t", ensure_ascii=False)
    return text.encode("utf-8")


LAYOUTS = ["one-line", "compact", "indent-2", "indent-2-utf8", "crlf", "tabs"]


#: A read size, a window's drop threshold and a batch size: tiny, so that values cross every boundary.
windows = st.tuples(
    st.integers(min_value=1, max_value=64),
    st.integers(min_value=0, max_value=200),
    st.integers(min_value=0, max_value=120),
)


@pytest.mark.slow  # (a property of about a second even at 3 examples: the whole suite runs it)
# Each document is walked in every layout, each with a window of its own: 1,800 walks of 300 documents. (Drawing
# a document is nearly all of an example's cost: 800 examples of one layout each took twice as long.)
@settings(max_examples=examples(300), deadline=None)
@given(document=documents, windows=st.lists(windows, min_size=len(LAYOUTS), max_size=len(LAYOUTS)))
def test_walk_equals_json_loads(document: dict[str, Any], windows: list[tuple[int, int, int]]) -> None:
    """Tiny reads, tiny windows and tiny batches: every value crosses every boundary, in every layout."""
    for style, (read_bytes, keep_chars, batch_chars) in zip(LAYOUTS, windows, strict=True):
        data = layout(document, style)
        rebuilt = rebuild(data, read_bytes=read_bytes, keep_chars=keep_chars, batch_chars=batch_chars)
        rebuilt.setdefault("entities", {})  # an empty "entities" object yields no list events
        assert rebuilt == document, (style, read_bytes, keep_chars, batch_chars)


entity = st.fixed_dictionaries(
    {"id": st.integers(min_value=0, max_value=10**6), "text": st.text(max_size=30)},
    optional={
        "nested": st.lists(st.dictionaries(st.text(max_size=3), st.integers(), max_size=2), max_size=3),
        "big": st.integers(min_value=-(10**25), max_value=10**25),
    },
)


@settings(max_examples=examples(60), deadline=None)
@given(
    entities=st.lists(entity, min_size=1, max_size=40),
    copies=st.integers(min_value=200, max_value=900),
    style=st.sampled_from(LAYOUTS),
    read_bytes=st.sampled_from([1 << 10, 4096, 65536]),
    keep_chars=st.sampled_from([0, 1 << 12, 1 << 16]),
    batch_chars=st.sampled_from([0, 1 << 10, 1 << 14, 1 << 20]),
)
def test_files_across_the_drop_boundary(
    entities: list[dict[str, Any]], copies: int, style: str, read_bytes: int, keep_chars: int, batch_chars: int
) -> None:
    """Files of tens to hundreds of kilobytes with windows that drop text many times."""
    document = {"name": "x", "entities": {"patients": entities * copies, "claims": entities[:1]}}
    data = layout(document, style)
    assert rebuild(data, read_bytes=read_bytes, keep_chars=keep_chars, batch_chars=batch_chars) == document


@pytest.mark.slow
def test_pretty_printed_megabyte_files_read_with_the_default_window() -> None:
    """The defect of issue 7: 1–2 MB indent=2 files failed once the window dropped text."""
    for count in (2_000, 2_600, 4_000):
        patients = [
            {"patient_id": f"P{i}", "name": {"given": ["Zoë"], "family": "Müller"}, "n": i} for i in range(count * 3)
        ]
        document = {"name": "x", "entities": {"patients": patients, "claims": patients[:count]}}
        data = json.dumps(document, indent=2).encode()
        assert 1 << 20 < len(data) < 3 << 20 or count == 4_000
        assert rebuild(data) == document
        assert rebuild(data.replace(b"\n", b"\r\n")) == document
        assert rebuild(json.dumps(document).encode()) == document


@pytest.mark.slow  # (about a second or more of the quick run's edit loop; the whole suite runs it)
def test_error_locations_stay_exact_after_the_window_moves() -> None:
    lines = ['{"name": "x", "entities": {"patients": [']
    lines += [f'  {{"patient_id": "P{i}", "note": "{"é" * (i % 7)}"}},' for i in range(200_000)]
    lines += ['  {"patient_id": "last", "v": tru}', "]}}"]
    data = "\n".join(lines).encode("utf-8")
    for window in ({"read_bytes": 4096, "keep_chars": 4096, "batch_chars": 0}, {}):
        with pytest.raises(InvalidScenarioFileError) as info:
            rebuild(data, **window)
        assert info.value.location == "$.entities.patients[200000] (line 200002 column 31)"


def test_an_error_at_the_end_of_the_file_points_inside_it() -> None:
    body = json.dumps({"name": "x", "entities": {"patients": [{"a": "b" * 50}] * 30_000}}, indent=2)
    data = body[:-3].encode()  # cut: the last brackets are missing
    with pytest.raises(InvalidScenarioFileError) as info:
        rebuild(data)
    line, column = info.value.location.split("(line ")[1].rstrip(")").split(" column ")
    assert int(line) <= data.count(b"\n") + 1
    assert "found the end of the file" in str(info.value)


@pytest.mark.parametrize("batch_chars", [0, 64, 1 << 20])
def test_batches_refuse_what_the_exact_reader_refuses(batch_chars: int) -> None:
    """Big integers (both signs), repeated keys, NaN, escapes that hide a ':'."""
    good = [{"i": k, "s": "a:b"} for k in range(50)]
    for odd in ({"big": 123456789012345678901234567890}, {"neg": -9_999_999_999_999_999_999}):
        document = {"name": "x", "entities": {"patients": [*good, odd, *good]}}
        assert rebuild(json.dumps(document, indent=2).encode(), batch_chars=batch_chars) == document
    # A repeated key and an escaped ':' together keep the count of ':' equal: still refused.
    hidden = json.dumps({"name": "x", "entities": {"patients": [*good, {"k": 1, "s": "-"}, *good]}})
    hidden = hidden.replace('"k": 1, "s": "-"', '"k": 1, "k": 2, "s": "\\u003a"')
    with pytest.raises(InvalidScenarioFileError, match="'k' twice"):
        rebuild(hidden.encode(), batch_chars=batch_chars)
    escaped = hidden.replace('"k": 1, "k": 2', '"k": 1')
    assert rebuild(escaped.encode(), batch_chars=batch_chars)["entities"]["patients"][50] == {"k": 1, "s": ":"}
    text = json.dumps({"name": "x", "entities": {"patients": [*good, {"k": 1}, *good]}}, indent=2)
    duplicate = text.replace('"k": 1', '"k": 1, "k": 2')
    with pytest.raises(InvalidScenarioFileError, match="twice") as info:
        rebuild(duplicate.encode(), batch_chars=batch_chars)
    assert info.value.location.startswith("$.entities.patients[50] (line ")
    with pytest.raises(InvalidScenarioFileError, match="NaN"):
        rebuild(text.replace('"k": 1', '"k": NaN').encode(), batch_chars=batch_chars)


def test_a_byte_order_mark_is_skipped() -> None:
    assert rebuild(b"\xef\xbb\xbf" + b'{"name": "x"}') == {"name": "x"}


def test_data_after_the_document_is_refused_at_any_distance() -> None:
    document = json.dumps({"name": "x", "entities": {"patients": [{"a": 1}]}}).encode()
    for gap in (0, 10, 70_000, 3 << 20):
        with pytest.raises(InvalidScenarioFileError, match="after the end"):
            rebuild(document + b" " * gap + b"{}")


def test_one_large_value_is_read_in_geometrically_growing_steps() -> None:
    """A value cut by the window is parsed again once per read, so reads must grow
    geometrically (a logarithmic number of parses, linear time), not by a fixed step
    (a 64 MB value took 3.8 s, 128 MB 14 s: quadratic)."""

    class CountingFile(io.BytesIO):
        reads = 0

        def read(self, size: int | None = -1) -> bytes:
            CountingFile.reads += 1
            return super().read(size)

    value = "x" * (32 << 20)
    file = CountingFile(json.dumps({"name": "x", "extra": value}).encode())
    stream = JsonStream(Path("doc.json"), file, read_bytes=1 << 16)
    events = list(stream.walk(lambda key: False))
    assert events[1].value == value
    assert CountingFile.reads < 20  # a fixed 64 KB step would take 512 reads and parses


def test_numbers_split_across_reads() -> None:
    assert rebuild(b'{"name": 12345678901234567890123, "extra": -1.25e-7}', read_bytes=3) == {
        "name": 12345678901234567890123,
        "extra": -1.25e-7,
    }


def test_multibyte_characters_split_across_reads() -> None:
    assert rebuild('{"name": "中文🎉é"}'.encode(), read_bytes=1) == {"name": "中文🎉é"}
