"""The rules every CSV file HealthSim writes follows: safe cells and unambiguous column names.

One writer, :class:`SafeCsvWriter`, writes the CSV of a scenario export
(``export_scenario(format="csv")``) and of ``query_to_file`` / ``healthsim query -o x.csv``
on both engines, so the rules below hold for every CSV file the project writes.

**Spreadsheet formulas (CSV injection).** A spreadsheet opening a CSV file runs a cell
that starts with ``=``, ``+``, ``-`` or ``@`` as a formula, and a leading tab or carriage
return can hide one; entity data (a name, a note) then becomes a command
(``=HYPERLINK(…)``, ``=cmd|' /C calc'!A0``). As the OWASP guidance on CSV injection says,
such a text cell is written with a single quote ``'`` in front: ``=1+2`` is written
``'=1+2``, which spreadsheets show as the text ``=1+2``. Only text is touched:

- numbers, booleans and dates are written as they are (``-5`` in a number column stays the
  number ``-5``);
- a text cell that is exactly a number (``-5``, ``+1.5``, ``-2e3``) is left alone: a
  spreadsheet reads it as that number, and no formula can hide in it;
- Parquet, NDJSON and JSON keep every value exactly; only CSV is changed.

A text that already starts with ``'`` and then one of these (``'=x``) gets one more
(``''=x``), so the rule can be undone: a reader that wants the exact text back removes
the first ``'`` of a text cell when what follows it (any further ``'``, then one of
``= + - @``, tab or carriage return) is not just a number (:func:`restore_cell`).

**Column names of a scenario's CSV** (:func:`csv_column_name`). Objects are flattened
to one column per leaf, the keys of its path joined by ``.``: ``{"name": {"family": …}}``
is the column ``name.family``. So that a key holding a dot (or anything else) can never
be mistaken for a path, a backslash escapes: ``\\`` is written ``\\\\`` and ``.`` is
written ``\\.`` inside a key (``{"a.b": 1}`` is the column ``a\\.b``, ``{"a": {"b": 1}}``
the column ``a.b``). A name that would start with ``=``, ``+``, ``-``, ``@``, tab or
carriage return gets a backslash in front (``\\=x``), and so does a top-level key named
``entity_id`` (``\\entity_id``), since the column ``entity_id`` is the stored id. Reading
a name back (:func:`csv_key_path`): split it at each ``.`` not preceded by a backslash,
then replace each backslash and the character after it by that character. Every column
name is different from every other (exactly, not ignoring case), and each gives back
its key path.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, BinaryIO

import pyarrow as pa

from .._lazy import lazy_module

if TYPE_CHECKING:  # imported on first use: see healthsim._lazy
    import pyarrow.compute as pc
    import pyarrow.csv as pa_csv
else:
    pc = lazy_module("pyarrow.compute")
    pa_csv = lazy_module("pyarrow.csv")

__all__ = [
    "FORMULA_STARTS",
    "ID_COLUMN",
    "SafeCsvWriter",
    "csv_column_name",
    "csv_key_path",
    "neutralise_cell",
    "neutralise_text",
    "restore_cell",
]

#: The first characters that make a spreadsheet read a cell as a formula (OWASP).
FORMULA_STARTS = "=+-@\t\r"
#: The first column of a scenario's CSV: the stored id of each entity.
ID_COLUMN = "entity_id"
# Arrow's regular expressions are RE2: the same patterns serve Python's ``re`` below.
_FORMULA = r"^'*[=+\-@\t\r]"
_NUMBER = r"^[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?$"
_FORMULA_RE = re.compile(_FORMULA)
# fullmatch, not "$": Python's "$" also matches before a final line feed, RE2's does not.
_NUMBER_RE = re.compile(_NUMBER.removeprefix("^").removesuffix("$"))
_QUOTE = "'"


def _risky(text: str) -> bool:
    return _FORMULA_RE.match(text) is not None and _NUMBER_RE.fullmatch(text) is None


def neutralise_cell(text: str) -> str:
    """``text`` as a CSV cell a spreadsheet will not run: a ``'`` in front when it starts
    with one of :data:`FORMULA_STARTS` (after any ``'``) and is not just a number (``-5``
    stays). Text that already starts with ``'`` and then one of them gets one more, so
    that :func:`restore_cell` gives every text back exactly."""
    return _QUOTE + text if _risky(text) else text


def restore_cell(text: str) -> str:
    """The exact text of a cell :func:`neutralise_cell` wrote (its added ``'`` removed)."""
    return text[1:] if text.startswith(_QUOTE) and _risky(text[1:]) else text


def _is_text(kind: pa.DataType) -> bool:
    return pa.types.is_string(kind) or pa.types.is_large_string(kind)


def neutralise_text(column: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
    """``column`` with :func:`neutralise_cell` applied to each text value (vectorised).

    Columns that are not text (numbers, booleans, dates) are returned unchanged;
    dictionary-encoded text (a DuckDB ``ENUM``) is decoded first. Nulls stay null.
    """
    if pa.types.is_dictionary(column.type) and _is_text(column.type.value_type):
        column = column.cast(column.type.value_type)
    if not _is_text(column.type):
        return column
    risky = pc.and_kleene(
        pc.match_substring_regex(column, _FORMULA), pc.invert(pc.match_substring_regex(column, _NUMBER))
    )
    if not pc.any(risky).as_py():  # the usual case: nothing to copy
        return column
    quote, empty = pa.scalar(_QUOTE, column.type), pa.scalar("", column.type)
    return pc.if_else(risky, pc.binary_join_element_wise(quote, column, empty), column)


def _plain(kind: pa.DataType) -> pa.DataType:
    """The type :func:`neutralise_text` turns ``kind`` into (dictionary text is decoded)."""
    if pa.types.is_dictionary(kind) and _is_text(kind.value_type):
        return kind.value_type
    return kind


class SafeCsvWriter:
    """Arrow's CSV writer (UTF-8, a header, text quoted) with every text cell and column
    name neutralised (:func:`neutralise_cell`): the one way HealthSim writes CSV.

    Args:
        sink: the binary file to write to.
        schema: the columns of the batches to come.
    """

    def __init__(self, sink: BinaryIO, schema: pa.Schema) -> None:
        self.schema = pa.schema([pa.field(neutralise_cell(f.name), _plain(f.type)) for f in schema])
        self._writer = pa_csv.CSVWriter(sink, self.schema)

    def write_batch(self, batch: pa.RecordBatch) -> None:
        """Write the rows of ``batch`` (columns as in the schema given)."""
        columns = [neutralise_text(column) for column in batch.columns]
        self._writer.write_batch(pa.RecordBatch.from_arrays(columns, schema=self.schema))

    def close(self) -> None:
        """Finish the file (the sink itself stays open)."""
        self._writer.close()


def _escape(key: str) -> str:
    return key.replace("\\", "\\\\").replace(".", "\\.")


def csv_column_name(path: Sequence[str]) -> str:
    """The CSV column of the value at key ``path`` (top-level key first).

    Keys are escaped (``\\`` → ``\\\\``, ``.`` → ``\\.``) and joined by ``.``; a name that
    would start like a formula (also after a ``'``: :func:`neutralise_cell` would change
    it), or be ``entity_id`` for a top-level key, gets a ``\\`` in front.
    """
    name = ".".join(_escape(key) for key in path)
    if (len(path) == 1 and path[0] == ID_COLUMN) or (name and (name[0] in FORMULA_STARTS or _risky(name))):
        name = "\\" + name
    return name


def csv_key_path(name: str) -> list[str]:
    """The key path a CSV column name stands for: the inverse of :func:`csv_column_name`.

    ``entity_id`` (unescaped) is the stored id's column and gives ``["entity_id"]`` too.
    """
    parts: list[str] = []
    current: list[str] = []
    escaped = False
    for char in name:
        if escaped:
            current.append(char)
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == ".":
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    if escaped:  # a trailing lone backslash (no name of ours ends so): kept as it is
        current.append("\\")
    parts.append("".join(current))
    return parts
