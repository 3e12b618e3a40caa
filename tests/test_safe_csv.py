"""The CSV rules (exchange/csv_format.py): formula cells neutralised reversibly and the
same way in Python and Arrow; column names unique and reversible for any key path."""

from __future__ import annotations

import csv
import io

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from healthsim.state.safe_csv import (
    FORMULA_STARTS,
    ID_COLUMN,
    SafeCsvWriter,
    csv_column_name,
    csv_key_path,
    neutralise_cell,
    neutralise_text,
    restore_cell,
)
from helpers.examples import examples

# Text that often starts like a formula, a number or a quote.
risky_text = st.text(
    st.sampled_from("=+-@\t\r'.0123456789eE aZ\n\\é🩺") | st.characters(exclude_categories=("Cs",)), max_size=8
)


@pytest.mark.parametrize(
    ("text", "cell"),
    [
        ('=HYPERLINK("http://x","y")', '\'=HYPERLINK("http://x","y")'),
        ("+1 555 0100", "'+1 555 0100"),
        ("-cmd|' /C calc'!A0", "'-cmd|' /C calc'!A0"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\t=1+1", "'\t=1+1"),
        ("\r=1+1", "'\r=1+1"),
        ("'=1", "''=1"),  # so that restore_cell gives it back exactly
        ("-5", "-5"),  # just a number: a spreadsheet reads the number, no formula fits in it
        ("+1.5", "+1.5"),
        ("-2.5e3", "-2.5e3"),
        ("-5\n", "'-5\n"),
        ("-", "'-"),
        ("plain", "plain"),
        ("a=1", "a=1"),
        ("", ""),
    ],
)
def test_cells_starting_like_a_formula_get_a_quote(text: str, cell: str) -> None:
    assert neutralise_cell(text) == cell
    assert restore_cell(cell) == text


@settings(max_examples=examples(400))
@given(st.lists(st.none() | risky_text, max_size=12))
def test_neutralising_is_reversible_never_starts_a_formula_and_arrow_agrees(texts: list[str | None]) -> None:
    for text in texts:
        if text is None:
            continue
        cell = neutralise_cell(text)
        assert restore_cell(cell) == text
        assert cell == text or (cell == "'" + text and text.lstrip("'")[:1] in set(FORMULA_STARTS))
        if cell[:1] and cell[0] in FORMULA_STARTS:  # only a plain number may start so
            float(cell)
    for kind in (pa.string(), pa.large_string()):
        column = neutralise_text(pa.array(texts, kind))
        assert column.type == kind
        assert column.to_pylist() == [None if t is None else neutralise_cell(t) for t in texts]
    encoded = neutralise_text(pa.array(texts, pa.string()).dictionary_encode())
    assert encoded.to_pylist() == [None if t is None else neutralise_cell(t) for t in texts]


def test_other_columns_are_left_as_they_are() -> None:
    for column in (pa.array([-5, 3]), pa.array([-1.5, None]), pa.array([True, False]), pa.array([b"=x"])):
        assert neutralise_text(column) is column


def test_the_writer_neutralises_text_cells_and_names_not_numbers() -> None:
    batch = pa.record_batch(
        [pa.array(["=1+2", "-5", None, "ok"]), pa.array([-5, -1, 2, 3]), pa.array([-0.5, None, 1.0, 2.0])],
        names=["=name", "n", "x"],
    )
    sink = io.BytesIO()
    writer = SafeCsvWriter(sink, batch.schema)
    writer.write_batch(batch)
    writer.close()
    text = sink.getvalue().decode("utf-8")
    assert text.splitlines() == ['"\'=name","n","x"', '"\'=1+2",-5,-0.5', '"-5",-1,', ",2,1", '"ok",3,2']
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[1] == ["'=1+2", "-5", "-0.5"]


key = st.just("entity_id") | st.text(
    st.sampled_from("ab.\\_=-é🩺 A\t") | st.characters(exclude_categories=("Cs",)), max_size=4
)


@settings(max_examples=examples(500))
@given(st.lists(st.lists(key, min_size=1, max_size=4), max_size=20, unique_by=tuple))
def test_column_names_are_unique_reversible_and_safe(paths: list[list[str]]) -> None:
    names = [csv_column_name(path) for path in paths]
    for path, name in zip(paths, names, strict=True):
        assert csv_key_path(name) == path
        assert name != ID_COLUMN  # the stored id's column is never a key's
        assert neutralise_cell(name) == name  # no name starts like a formula
    assert len(set(names)) == len(names)


def test_column_names_by_example() -> None:
    assert csv_column_name(["name", "family"]) == "name.family"
    assert csv_column_name(["a.b"]) == "a\\.b"
    assert csv_column_name(["a.b_"]) == "a\\.b_"
    assert csv_column_name(["a", "b_"]) == "a.b_"
    assert csv_column_name(["back\\slash"]) == "back\\\\slash"
    assert csv_column_name(["entity_id"]) == "\\entity_id"
    assert csv_column_name(["o", "entity_id"]) == "o.entity_id"
    assert csv_column_name(["=x"]) == "\\=x"
    assert csv_column_name(["'="]) == "\\'="  # a quote, then a formula: neutralise_cell would add one
    assert csv_key_path("\\'=") == ["'="]
    assert csv_key_path("entity_id") == ["entity_id"]
