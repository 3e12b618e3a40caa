"""The few SQL fragments that DuckDB and PostgreSQL write differently.

The shared code's SQL runs on both engines (positional ``GROUP BY``, ``= ANY(?)``,
aliased subqueries, ``array_agg(… ORDER BY …)[1]``); where no common form exists, it asks
here, passing the connection. Each function names what it is for, not how.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pyarrow as pa

from .postgres.connection import is_postgres

__all__ = [
    "create_temp",
    "fetch_arrow",
    "has_scalar",
    "instant",
    "json_equal",
    "json_fields",
    "json_text",
    "json_text_in",
    "matches",
    "stored_entity_id",
    "top_level_keys",
]


def create_temp(con: Any, name: str) -> str:
    """The start of a statement making temporary table ``name`` anew (``… AS SELECT`` or
    ``(columns)`` follows). PostgreSQL has no ``CREATE OR REPLACE TABLE``: the old one is
    dropped first."""
    if is_postgres(con):
        con.execute(f"DROP TABLE IF EXISTS pg_temp.{name}")
        return f"CREATE TEMP TABLE {name}"
    return f"CREATE OR REPLACE TEMP TABLE {name}"


def has_scalar(con: Any, column: str, field: str) -> str:
    """SQL: whether the JSON ``column`` has a string or number at top-level ``field``
    (an entity's own id, as :func:`~.entities.raw_entity_id` takes it); NULL when absent."""
    key = field.replace("'", "''")
    if is_postgres(con):
        return f"json_typeof({column} -> '{key}') IN ('string', 'number')"
    return f"json_type({column}, '$.{key}') IN ('VARCHAR', 'BIGINT', 'UBIGINT', 'DOUBLE', 'HUGEINT')"


def matches(con: Any, column: str, pattern: str) -> str:
    """SQL: whether the text of ``column`` matches the regular expression ``pattern``
    (a literal without quotes)."""
    if is_postgres(con):
        return f"({column})::TEXT ~ '{pattern}'"
    return f"regexp_matches({column}, '{pattern}')"


def json_equal(con: Any, a: str, b: str) -> str:
    """SQL: whether two JSON values are certainly the same JSON (see :mod:`.diffing`): equal
    text, or on DuckDB equal minified text (``json()`` keeps key order and tells ``1`` from
    ``1.0`` and ``true``). Not ``jsonb`` on PostgreSQL: it takes ``1e2`` for ``100``. Values
    this calls different may still be the same (keys in another order, ``1.0`` and
    ``1.00``): the caller decides those."""
    if is_postgres(con):
        return f"({a}::TEXT = {b}::TEXT)"
    return f"({a}::VARCHAR = {b}::VARCHAR OR json({a}) = json({b}))"


def json_text_in(con: Any, column: str, param: str) -> str:
    """SQL: whether the JSON array of strings ``column`` holds one that, lowercased, is
    the parameter ``param``."""
    if is_postgres(con):
        return f"EXISTS (SELECT 1 FROM json_array_elements_text({column}) AS t(v) WHERE lower(t.v) = {param})"
    return f"list_contains(list_transform(CAST({column} AS VARCHAR[]), lambda t: lower(t)), {param})"


def fetch_arrow(con: Any, sql: str, params: Mapping[str, Any] | None = None, *, texts: Sequence[str] = ()) -> pa.Table:
    """A query's rows as an Arrow table (``texts``: its text columns, which PostgreSQL
    sends through ``COPY``; see :mod:`.postgres.reading`)."""
    if is_postgres(con):
        from .postgres.reading import fetch_arrow as pg_fetch_arrow

        return pg_fetch_arrow(con, sql, params, texts=texts)
    return con.sql(sql, params=dict(params or {})).to_arrow_table()


def json_text(con: Any, column: str, keys: Sequence[str]) -> str:
    """SQL: the string (or the JSON text of another value) at object keys ``keys`` of the
    JSON ``column``; NULL where there is none. Keys are plain names of the library's own."""
    if is_postgres(con):
        return f"({column}::json #>> '{{{','.join(keys)}}}')"
    return f"json_extract_string({column}, '$.{'.'.join(keys)}')"


# --- for checking a scenario (see :mod:`.checks`) -------------------------------------------


def json_fields(con: Any, source: str, keep: str, paths: Sequence[Sequence[str]], keyed: Sequence[str] = ()) -> str:
    """SQL of a subquery over the rows of ``source`` (an SQL query with an
    ``entity_data`` column) with the columns ``keep`` (a comma-separated list of
    ``source``'s columns) and, per path ``i`` of ``paths`` (object keys, plain names),
    ``k{i}``: the JSON kind of the value there (``string``, ``number``, ``boolean``,
    ``null``, ``object``, ``array``; NULL when there is none) and ``t{i}``: its text (a
    string unquoted, anything else as JSON text); per top-level key ``j`` of ``keyed``,
    ``e{j}``: not NULL when the entity has the key. Every entity is parsed once."""
    if not paths and not keyed:
        return f"SELECT {keep} FROM ({source}) AS _hs_src"
    if is_postgres(con):  # (jsonb: parsed once per row, then each path is a lookup)
        columns = [
            f"jsonb_typeof(_hs_d #> '{{{','.join(p)}}}') AS k{i}, (_hs_d #>> '{{{','.join(p)}}}') AS t{i}"
            for i, p in enumerate(paths)
        ] + [f"(_hs_d -> '{k}') AS e{j}" for j, k in enumerate(keyed)]
        return (
            f"SELECT {keep}, {', '.join(columns)} FROM (SELECT {keep}, entity_data::jsonb AS _hs_d "
            f"FROM ({source}) AS _hs_src) AS _hs_parsed"
        )
    every = [*paths, *((k,) for k in keyed)]
    pointers = ", ".join("'" + "".join("/" + k.replace("~", "~0").replace("/", "~1") for k in p) + "'" for p in every)
    kinds = (
        "CASE WHEN {v} IS NULL THEN NULL WHEN left({v}, 1) = '\"' THEN 'string' WHEN left({v}, 1) = '{{' "
        "THEN 'object' WHEN left({v}, 1) = '[' THEN 'array' WHEN {v} IN ('true', 'false') THEN 'boolean' "
        "WHEN {v} = 'null' THEN 'null' ELSE 'number' END"
    )
    # A string's text without its quotes, unless it has escapes (then decoded).
    texts = (
        "CASE WHEN left({v}, 1) <> '\"' THEN {v}::VARCHAR WHEN contains({v}, '\\') "
        "THEN json_extract_string({v}, '$') ELSE substr({v}, 2, length({v}) - 2) END"
    )
    columns = [
        f"{kinds.format(v=f'_hs_x[{i + 1}]')} AS k{i}, {texts.format(v=f'_hs_x[{i + 1}]')} AS t{i}"
        for i in range(len(paths))
    ] + [f"_hs_x[{len(paths) + j + 1}] AS e{j}" for j in range(len(keyed))]
    return (
        f"SELECT {keep}, {', '.join(columns)} FROM (SELECT {keep}, json_extract(entity_data, [{pointers}]) AS _hs_x "
        f"FROM ({source}) AS _hs_src) AS _hs_parsed"
    )


def top_level_keys(con: Any, source: str) -> str:
    """SQL of the distinct top-level keys (column ``k``) of the JSON objects in the
    ``entity_data`` column of ``source``."""
    if is_postgres(con):
        return (
            f"SELECT DISTINCT json_object_keys(entity_data) AS k FROM ({source}) AS _hs_src "
            "WHERE json_typeof(entity_data) = 'object'"
        )
    return f"SELECT DISTINCT unnest(json_keys(entity_data)) AS k FROM ({source}) AS _hs_src"


def instant(con: Any, text: str) -> str:
    """SQL: the ISO 8601 date or datetime ``text`` (already checked to be one) as a
    ``TIMESTAMPTZ``, so that datetimes with different offsets compare in time order."""
    if is_postgres(con):
        return f"CAST({text} AS TIMESTAMPTZ)"
    return f"TRY_CAST({text} AS TIMESTAMPTZ)"


def stored_entity_id(con: Any, entity_type: str, text: str) -> str | None:
    """SQL: the stored id of the ``entity_type`` entity whose own id is the text ``text``
    (as :mod:`.id_sql` derives it), or None where the engine cannot compute it in SQL
    (PostgreSQL has no SHA-1 without an extension)."""
    if is_postgres(con):
        return None
    from .id_sql import uuid_from_digest_sql, v5_digest_sql

    name = "'" + entity_type.replace("'", "''") + ":' || " + text
    return f"COALESCE(TRY_CAST({text} AS UUID), {uuid_from_digest_sql(v5_digest_sql(name))})"
