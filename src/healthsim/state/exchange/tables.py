"""A scenario as tables: one per entity type, with columns inferred from its entities.

Every column is decided from all the entities of the type, never from a sample, so no
value is dropped or changed on the way to Parquet, CSV or Arrow:

- DuckDB's ``json_structure`` of each entity, grouped (generated entities share a few
  shapes), merged here: objects become structs (keys in first-seen order), lists lists,
  numbers the narrowest exact type (``BIGINT``, ``UBIGINT``, ``HUGEINT`` or ``DOUBLE``),
  and a field whose values have different JSON types a ``JSON`` text column. A field
  that is always null is a ``JSON`` column of nulls; missing keys are nulls.
- Integers a double cannot hold exactly (beyond 2**53 in a field that also has
  fractions, beyond 64 bits anywhere) make their field a ``JSON`` text column: the rows
  that may hold one are found by a pattern over the stored text and parsed exactly.
- An object below the top with two keys equal but for case, or an empty key, is a
  ``JSON`` column.
- ``entity_id`` (the stored UUID, as text) comes first. A top-level field named
  ``entity_id``, equal to an earlier field but for case (DuckDB's struct names ignore
  case), or empty, is a column of JSON text of its own named with a trailing ``_``
  (``entity_id_``; ``_`` for the empty key) in Parquet and Arrow. CSV names its columns
  by key path instead (:mod:`healthsim.state.safe_csv`: ``a.b`` is nested, ``a\\.b`` a key with a dot).

``json_transform(entity_data, structure)`` then builds the rows, in saved order.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import orjson

from ..reading import BIG_INT_PATTERN, ScenarioReader
from ..safe_csv import csv_column_name

__all__ = ["ENTITY_ID", "TypeTable", "json_pointer", "type_tables"]

ENTITY_ID = "entity_id"
# More distinct shapes than this in one type: DuckDB merges them (json_group_structure).
_MAX_SHAPES = 2_000
_EXACT_DOUBLE = 2**53
_INTEGERS = ("BIGINT", "UBIGINT", "HUGEINT")
_NUMBERS = (*_INTEGERS, "DOUBLE", "DOUBLE~")
# Integer texts of 16 digits or more: the only ones a double may not hold exactly.
_LONG_INTEGER = r"[0-9]{16}"

Structure = Any  # a type name (str), a one-element list, or a dict of key -> Structure


class TypeTable:
    """The columns of one entity type and the SQL that produces its rows."""

    def __init__(self, reader: ScenarioReader, entity_type: str, structure: dict[str, Structure]) -> None:
        self.entity_type = entity_type
        # Top-level keys equal but for case cannot share a struct: the first stays in it,
        # the others are columns of JSON text of their own (named with a trailing "_").
        self.structure: dict[str, Structure] = {}
        # So is a field named like the first column, entity_id (the stored id).
        self.apart: list[tuple[str, str]] = []  # (key, column)
        self.id_column = ENTITY_ID
        taken: set[str] = {ENTITY_ID}
        for key, kind in structure.items():
            if key.lower() in taken or not key:  # (a struct cannot have an empty name either)
                self.apart.append((key, key or "_"))
            else:
                self.structure[key] = kind
                taken.add(key.lower())
        for i, (key, column) in enumerate(self.apart):
            while column.lower() in taken:
                column += "_"
            taken.add(column.lower())
            self.apart[i] = (key, column)
        source = reader.rows_sql(entity_type, columns="id, entity_id, entity_data")
        columns = [f"CAST(entity_id AS VARCHAR) AS {_ident(self.id_column)}"]
        if self.structure:
            columns.append(f"json_transform(entity_data, {_literal(orjson.dumps(self.structure).decode())}) AS s")
        for key, column in self.apart:
            columns.append(f"json_extract(entity_data, {_literal(json_pointer(key))}) AS {_ident(column)}")
        # Ordered once here: the outer projections keep this order.
        self._base = f"SELECT {', '.join(columns)} FROM ({source}) ORDER BY id"

    @property
    def sql(self) -> str:
        """The rows: ``entity_id``, then one column per top-level field (objects as structs)."""
        columns = [_ident(self.id_column)] + (["unnest(s)"] if self.structure else [])
        columns += [_ident(column) for _, column in self.apart]
        return f"SELECT {', '.join(columns)} FROM ({self._base})"

    def csv_sql(self) -> tuple[str, list[str]]:
        """The rows with objects flattened to one column per leaf and lists and JSON values
        as JSON text (the CSV layout), and the CSV names of their columns.

        The names follow :func:`healthsim.state.safe_csv.csv_column_name` (the key path joined by ``.``,
        dots and backslashes inside keys escaped): unique and reversible. The SQL itself
        names its columns ``c0``, ``c1``… (DuckDB compares names ignoring case and would
        rename some), so the names are given to the file by position.
        """
        names = [self.id_column]
        columns = [f"{_ident(self.id_column)} AS c0"]
        flat = list(_flatten(self.structure, (), "s")) + [((key,), _ident(c), "JSON") for key, c in self.apart]
        for path, expr, kind in flat:
            if isinstance(kind, list):
                expr = f"CAST(to_json({expr}) AS VARCHAR)"
            elif kind == "JSON":
                expr = f"CAST({expr} AS VARCHAR)"
            columns.append(f"{expr} AS c{len(names)}")
            names.append(csv_column_name(path))
        return f"SELECT {', '.join(columns)} FROM ({self._base})", names


def _flatten(
    structure: dict[str, Structure], prefix: tuple[str, ...], parent: str
) -> Iterator[tuple[tuple[str, ...], str, Structure]]:
    for key, kind in structure.items():
        path = (*prefix, key)
        expr = f"struct_extract({parent}, {_literal(key)})"
        if isinstance(kind, dict):
            yield from _flatten(kind, path, expr)
        else:
            yield path, expr, kind


def json_pointer(key: str) -> str:
    """The JSON Pointer of a top-level key (any key: empty, quotes, slashes)."""
    return "/" + key.replace("~", "~0").replace("/", "~1")


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def type_tables(reader: ScenarioReader, types: list[str] | None = None) -> list[TypeTable]:
    """The tables of the scenario ``reader`` reads (of ``types``, in saved order)."""
    chosen = [t for t in reader.counts if types is None or t in types]
    return [TypeTable(reader, t, _structure(reader, t)) for t in chosen]


# --- inference -------------------------------------------------------------------------------


def _structure(reader: ScenarioReader, entity_type: str) -> dict[str, Structure]:
    con = reader.connection
    source = reader.rows_sql(entity_type, columns="id, entity_data")
    # Shapes in the order they first appear: columns follow the keys as entities have them.
    shapes = con.execute(
        f"SELECT json_structure(entity_data) AS s, min(id) AS first FROM ({source}) GROUP BY s "
        f"ORDER BY first LIMIT {_MAX_SHAPES + 1}"
    ).fetchall()
    merged: Structure = "NULL"
    if len(shapes) > _MAX_SHAPES:
        rows = con.execute(f"SELECT json_group_structure(entity_data) FROM ({source})").fetchall()
        # DuckDB merged every entity's types: any double may hide integers, as in a list.
        merged = _merge("NULL", _doubles_checked(json.loads(rows[0][0])))
    else:
        for text, _ in shapes:
            merged = _merge(merged, _objects(json.loads(text)))
    if not isinstance(merged, dict):  # every entity is an object, but an empty one is "JSON"
        return {}
    _exact_integers(reader, entity_type, merged)
    return _finish(merged, top=True)


def _objects(shape: Structure) -> Structure:
    """One entity's ``json_structure`` with its empty objects as ``{}``: it calls them
    ``JSON``, which in one entity's shape means an empty object. An entity is an object.

    Inside a list DuckDB has already merged the elements' types, so there ``JSON`` may
    also be values of different types (``[{"a": 1}, {"a": "s"}]``) and stays JSON, and a
    double may hide integers beside fractions (``[2**53 + 1, 0.5]``): :func:`_doubles_checked`.
    """
    if isinstance(shape, dict):
        return {k: {} if v == "JSON" else _objects(v) for k, v in shape.items()}
    if isinstance(shape, list) and shape:
        return [_doubles_checked(shape[0])]
    return {} if shape == "JSON" else shape


def _doubles_checked(shape: Structure) -> Structure:
    """A merged structure with its doubles as ``DOUBLE~`` (checked row by row for integers
    a double cannot hold) and its ``JSON`` kept as JSON (not taken for empty objects)."""
    if isinstance(shape, dict):
        return {k: _doubles_checked(v) for k, v in shape.items()}
    if isinstance(shape, list):
        return [_doubles_checked(shape[0])] if shape else shape
    return "DOUBLE~" if shape == "DOUBLE" else shape


def _merge(a: Structure, b: Structure) -> Structure:
    """The type that holds every value of types ``a`` and ``b`` exactly.

    ``DOUBLE~`` is a double field that also holds integers (checked row by row later).
    """
    if a == b:
        return a
    if a == "NULL":
        return b
    if b == "NULL":
        return a
    if isinstance(a, dict) and isinstance(b, dict):
        out = dict(a)
        for k, v in b.items():
            out[k] = _merge(out[k], v) if k in out else v
        return out
    if isinstance(a, list) and isinstance(b, list):
        return [_merge(a[0] if a else "NULL", b[0] if b else "NULL")]
    if isinstance(a, str) and isinstance(b, str) and a in _NUMBERS and b in _NUMBERS:
        if a in _INTEGERS and b in _INTEGERS:
            return "HUGEINT"  # two different integer types: 128 bits hold both
        # Integers with fractions: a double, which holds integers exactly up to 2**53; the
        # rows that may hold larger ones are checked later (a non-negative integer is
        # UBIGINT to DuckDB however small, so 70 beside 70.5 is a double too).
        return "DOUBLE~"
    return "JSON"


def _exact_integers(reader: ScenarioReader, entity_type: str, structure: dict[str, Structure]) -> None:
    """Settle the number fields a structure alone cannot: doubles holding an integer no
    double holds exactly become ``JSON``; integer fields of both signs (``HUGEINT``)
    become ``BIGINT`` when every value fits in 64 bits.

    ``json_structure`` calls an integer beyond 64 bits a double, a field mixing integers
    and fractions is a double, and a non-negative integer is ``UBIGINT``: the rows whose
    text may hold a long integer (by pattern) are parsed exactly and their integers checked.
    """
    kinds = {kind for _, kind in _leaves(structure)}
    mixed = "DOUBLE~" in kinds
    beyond_64 = reader.header.metadata.get("exact_json_rows") != 0 and "DOUBLE" in kinds
    signed = "HUGEINT" in kinds
    if not (mixed or beyond_64 or signed):
        return
    # 16 digits reach past 2**53, 19 past 2**63; BIG_INT_PATTERN finds those past 64 bits.
    pattern = _LONG_INTEGER if mixed else r"[0-9]{19}" if signed else BIG_INT_PATTERN
    source = reader.rows_sql(entity_type)
    rows = reader.connection.execute(
        f"SELECT entity_data FROM ({source}) WHERE regexp_matches(entity_data, '{pattern}')"
    ).fetchall()
    wide: set[tuple[str, ...]] = set()
    for (text,) in rows:
        for path, value in _integers(json.loads(text)):
            if abs(value) > _EXACT_DOUBLE:
                _set_json(structure, path, ("DOUBLE", "DOUBLE~"))
            if not -(2**63) <= value < 2**63:
                wide.add(path)
    for path, kind in list(_leaves(structure)):
        if kind == "HUGEINT" and path not in wide:
            _set_json(structure, path, ("HUGEINT",), to="BIGINT")


def _integers(value: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], int]]:
    if isinstance(value, bool):
        return
    if isinstance(value, int):
        yield path, value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from _integers(v, (*path, k))
    elif isinstance(value, list):
        for v in value:
            yield from _integers(v, (*path, "*"))


def _set_json(structure: Structure, path: tuple[str, ...], kinds: tuple[str, ...], to: str = "JSON") -> None:
    """Set the type at ``path`` (``*`` for list elements) to ``to`` if it is one of ``kinds``."""
    node: Structure = structure
    parent: Structure = None
    key: int | str = 0
    for step in path:
        parent = node
        if step == "*" and isinstance(node, list) and node:
            node, key = node[0], 0
        elif isinstance(node, dict) and step in node:
            node, key = node[step], step
        else:
            return  # a part already JSON
    if node in kinds and parent is not None:
        parent[key] = to


def _leaves(structure: Structure, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Structure]]:
    if isinstance(structure, dict):
        for k, v in structure.items():
            yield from _leaves(v, (*path, k))
    elif isinstance(structure, list):
        yield from _leaves(structure[0] if structure else "NULL", (*path, "*"))
    else:
        yield path, structure


def _finish(structure: Structure, top: bool = False) -> Structure:
    """The structure as ``json_transform`` takes it: ``NULL`` and empty lists or objects
    become ``JSON``, as does an object (below the top) with keys equal but for case."""
    if isinstance(structure, dict):
        if not top and (not structure or "" in structure or len({k.lower() for k in structure}) < len(structure)):
            return "JSON"
        return {k: _finish(v) for k, v in structure.items()}
    if isinstance(structure, list):
        return [_finish(structure[0])] if structure else "JSON"
    if structure == "DOUBLE~":
        return "DOUBLE"
    if structure == "HUGEINT":  # negative and past 2**63 in one field: a 38-digit decimal holds
        return "DECIMAL(38,0)"  # both (Parquet would get a HUGEINT as a double)
    return "JSON" if structure == "NULL" else structure
