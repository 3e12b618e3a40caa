"""Seeing a scenario: a bounded, statistical summary computed inside the database.

Every statistic is an SQL aggregate over the stored JSON text; no entity is parsed in
Python (only the few samples). Per type (two types at once, each on a cursor of its own),
DuckDB's JSON parser reads every entity once or twice:

1. **Once**, after a save or an edit: it counted how many top-level keys each type's
   entities have in all (kept beside the file, see :mod:`.key_counts`). The keys are
   guessed from a few entities, and one ``json_extract`` of every entity reads each
   guessed key's value, or null, or nothing (the key is missing). When the keys found add
   up to the save's count, no entity has another key: the guess was every key
   (:func:`_read_once`).
2. **Twice** otherwise (no count kept, or a key outside the guess): ``json_keys`` of every
   entity first (which top-level fields exist, and in how many entities), then
   ``from_json`` of every entity into the JSON texts of the chosen fields.

Either way the values are read into a materialized CTE and counted into ``_hs_values``:
each field's distinct JSON texts and how many entities have each (plus a few pairs of
fields the healthcare facts count together, such as birth date and gender). Every
statistic is then an aggregate over those distinct texts: a JSON text's first character
tells its type (``"`` string, ``{`` object, ``[`` array, ``t``/``f`` boolean, else a
number; JSON null counts as no value), strings are compared quoted (the same string
always has the same text), numbers are cast, and what depends on how often a value
occurs (presence, means, medians, top values) weighs it by its count.

Objects one level down (``address.city``) are read from their parent's distinct
objects, so an object many entities share is parsed once. What the summary says of each
field is documented on :func:`summarize`; the choices (what counts as categorical, which
fields the healthcare facts use) are in ``docs/decisions.md``.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal, localcontext
from fractions import Fraction
from typing import Any, cast

import orjson

from .._text import json_path
from ._engines import AnalyticsConnection
from .checks.parallel import each_type
from .exchange.tables import json_pointer
from .reading import ScenarioReader
from .results import ScenarioOverview
from .version_cache import KeyTotal

__all__ = ["REPORT_BYTES", "SUMMARY_BYTES", "summarize"]

#: The summary's compact JSON (UTF-8) never exceeds this many bytes (12 KB).
SUMMARY_BYTES = 12 * 1024
#: The budget of the summary drawn in a report: every field computed fits.
REPORT_BYTES = 512 * 1024

# Fields computed per type, the most present first; the budget then keeps fewer.
_MAX_FIELDS = 80
# A string field with more distinct values than this is never categorical (no ``top``).
_CATEGORICAL_MAX = 100
_TOP = 5
_TOP_CODES = 10
_SAMPLE_STRING = 80  # characters of a sample's string kept before it is cut
_SAMPLE_DEPTH = 3  # nesting levels of a sample kept before an object or list is cut
_MONTHS_MAX = 60  # more months than this are counted per year instead
# The keys of a type are first guessed from its first entities and runs of consecutive
# entities spread over it (see :func:`_guess_keys`).
_GUESS_FIRST = 16
_GUESS_RUNS = 8
_GUESS_RUN = 32

# Names of the usual HealthSim fields, in order of preference (found, never assumed).
_BIRTH = ("birth_date", "birthdate", "date_of_birth", "dob")
_GENDER = ("gender", "sex", "administrative_gender")
_CODES = ("diagnosis_code", "icd10_code", "icd_code", "code", "code.code")
_CODE_TEXT = ("display", "description", "diagnosis_description", "code_display", "code.display", "text")
_WHEN = (
    "period.start",
    "start",
    "start_date",
    "service_date",
    "date",
    "encounter_date",
    "admission_date",
    "admit_date",
    "effective",
    "effective_date",
    "onset_date",
    "recorded_date",
    "authored_on",
    "issued",
)
_NOT_WHEN = set(_BIRTH) | {"deceased_date", "death_date"}
# A lab's result: its number, the code of its test, the unit and the test's name. One
# field's statistics mix the units of every test, so values are also given per test.
_TEST_VALUES = ("value", "value_numeric", "numeric_value", "result_value")
_TEST_CODES = ("loinc_code", "loinc", "test_code", "code")
_TEST_UNITS = ("unit", "units", "value_unit")
_TEST_NAMES = ("test_name", "display", "description", "name")
_TEST_KEYS = (_TEST_VALUES, _TEST_CODES, _TEST_UNITS, _TEST_NAMES)
_MONEY = re.compile(r"charge|paid|allowed|billed|amount|cost|payment", re.IGNORECASE)

# A JSON text that is a number (of a field's texts, by its first character).
_NUMBER = "left({e}, 1) NOT IN ('\"', '{{', '[', 't', 'f')"
# An ISO 8601 date, or date and time (``T`` or a space), seconds and fraction optional,
# then ``Z`` or an offset (``+05``, ``+0530``, ``+05:30``) or nothing. The same pattern
# checks every value in SQL (RE2) and the extremes here.
_ISO_PATTERN = r"\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}(:?\d{2})?)?)?"
_ISO_DATETIME = re.compile(_ISO_PATTERN)
_PARTIAL = re.compile(r"\d{4}(-\d{2})?")


def _literal(text: str) -> str:
    """``text`` as an SQL string literal."""
    return "'" + text.replace("'", "''") + "'"


@dataclass
class _Field:
    """One field path of one type, and what SQL found of it."""

    path: str
    keyed: int  # entities having the key (null values included)
    keys: list[str]  # where it is in an entity
    index: int  # its number in ``_hs_values``
    stats: dict[str, Any] = field(default_factory=dict)
    objects: int = 0
    strings: int = 0
    numbers: int = 0
    arrays: int = 0
    present: int = 0
    date_format: str | None = None
    got: dict[str, Any] = field(default_factory=dict)
    categorical: bool = False
    place: tuple[int, int] = (0, 0)  # (its top-level field's position, its own under it)


def summarize(
    reader: ScenarioReader,
    samples: int,
    *,
    budget: int = SUMMARY_BYTES,
    key_totals: Mapping[str, KeyTotal] | None = None,
) -> ScenarioOverview:
    """The summary of the scenario ``reader`` reads.

    Args:
        key_totals: per type, how many entities it has, how many top-level keys they
            have in all, and some of those keys, as the save that wrote them counted (see
            :func:`_read_once`).

    Returns:
        The list entry's keys plus ``types``: per type ``count``, ``fields`` (path ->
        ``present``: share 0-1 of the type's entities with a non-null value; ``types``:
        the JSON types seen, ``null`` included; and as they fit ``distinct``, ``top``,
        ``min``, ``max``, ``mean``, ``median``, ``format``, ``true``/``false``,
        ``length``), ``fields_omitted``, the healthcare facts that apply
        (``age_bands``, ``top_codes``, ``over_time``, ``charges``) and ``samples``. Its
        compact JSON is at most ``budget`` bytes.
    """
    con = reader.analytics
    entry: dict[str, Any] = {k: v for k, v in reader.summary().items() if k != "metadata"}
    entry["description"] = _short(entry["description"])
    entry["tags"] = [_short(t) for t in entry["tags"]]
    as_of = reader.header.updated_at.date()
    # The first entities are the samples; the first one's key order also orders fields
    # that are as present as each other; with the save's key totals, their keys are the
    # first guess of every key.
    wanted = max(samples, _GUESS_FIRST) if key_totals else max(samples, 1)
    firsts = {t: reader.entities(t, 0, min(n, wanted)) if n else [] for t, n in reader.counts.items()}

    def about(cursor: AnalyticsConnection, entity_type: str) -> dict[str, Any]:
        count, first = reader.counts[entity_type], firsts[entity_type]
        result: dict[str, Any] = {"count": count, "fields": {}, "fields_omitted": 0}
        rows_sql = reader.rows_sql(entity_type)
        total = (key_totals or {}).get(entity_type)
        guess = None
        if total is not None and total[0] == count:  # the save's count of this version's entities
            sql = reader.rows_sql(entity_type, columns="id, entity_data")
            guess = (_guess_keys(cursor, sql, first, total[2], every=len(first) == count), total[1])
        fields, pairs, omitted = _type_fields(cursor, rows_sql, count, first, guess)
        result["fields"] = {f.path: f.stats for f in fields}
        result["fields_omitted"] = omitted
        if fields:
            result.update(_facts(cursor, fields, pairs, as_of, rows_sql, count))
        result["samples"] = [_cut(e) for e in first[:samples]]
        return result

    types = _each_type(con, reader.counts, about, parallel=reader.shared_rows)
    return cast(ScenarioOverview, _fit({**entry, "types": types}, budget))


def _top_keys(con: AnalyticsConnection, rows_sql: str, first: list[Any]) -> list[tuple[str, int]]:
    """Which top-level fields the entities of ``rows_sql`` have, and how many entities
    have each (null values included), the most frequent first.

    Most entities of a type have the keys of its first entity in the same order: those
    are only counted, and only the key lists of the others are counted key by key
    (counting every key of every entity took half of the pass)."""
    usual = list(first[0]) if first and isinstance(first[0], dict) else None
    usual_sql = "NULL::VARCHAR[]" if usual is None else f"[{', '.join(map(_literal, usual))}]::VARCHAR[]"
    rows = con.execute(
        "WITH shapes AS (SELECT CASE WHEN ks = usual THEN NULL ELSE ks END AS odd, count(*) AS n "
        f"FROM (SELECT json_keys(entity_data) AS ks, {usual_sql} AS usual FROM ({rows_sql})) GROUP BY ALL) "
        "SELECT NULL AS k, n FROM shapes WHERE odd IS NULL UNION ALL "
        "SELECT k, sum(n) FROM (SELECT unnest(odd) AS k, n FROM shapes) GROUP BY ALL"
    ).fetchall()
    counted: dict[str, int] = {}
    for k, n in rows:
        for key in (usual or []) if k is None else [k]:
            counted[key] = counted.get(key, 0) + n
    return sorted(counted.items(), key=lambda kn: (-kn[1], kn[0]))


# A datetime without an offset is read as UTC, whatever the machine's time zone (DuckDB
# reads it in the session's zone, which is the machine's by default).
_UTC = "SET TimeZone = 'UTC'"


def _each_type(
    con: AnalyticsConnection,
    sizes: Mapping[str, int],
    about: Callable[[AnalyticsConnection, str], dict[str, Any]],
    *,
    parallel: bool,
) -> dict[str, dict[str, Any]]:
    """``about(connection, type)`` of every type of ``sizes``, in order; two types at a time
    on two cursors when ``parallel`` (:func:`~healthsim.state.checks.parallel.each_type`: a
    type of under 122,880 entities fills one DuckDB row group, which one thread scans), each
    connection reading datetimes as UTC."""
    (zone,) = cast(tuple[str], con.execute("SELECT current_setting('TimeZone')").fetchone())

    def utc_about(cursor: AnalyticsConnection, entity_type: str) -> dict[str, Any]:
        cursor.execute(_UTC)  # (a worker's cursor has settings of its own)
        return about(cursor, entity_type)

    try:
        return each_type(con, sizes, utc_about, parallel=parallel)
    finally:
        con.execute(f"SET TimeZone = {_literal(zone)}")  # the reader's connection, as it was
        con.execute("DROP TABLE IF EXISTS _hs_values")


# --- the fields of a type ----------------------------------------------------------------


def _type_fields(
    con: AnalyticsConnection,
    rows_sql: str,
    count: int,
    first: list[Any],
    guess: tuple[list[str], int] | None,
) -> tuple[list[_Field], dict[tuple[str, ...], int], int]:
    """The type's fields with their statistics (most present first), the numbers of the
    pairs of top-level fields counted together in ``_hs_values`` (by their keys), and
    how many more fields the type has than were computed. ``guess``: the keys the type
    likely has and how many keys its entities have in all (see :func:`_read_once`)."""
    found = _read_once(con, rows_sql, *guess) if guess is not None else None
    if found is not None:
        chosen, names, pairs, counted = found
        more = 0
    else:  # which keys there are first, then their values: every entity parsed twice
        keys = _top_keys(con, rows_sql, first)
        if not keys:  # no entity of the type has a field
            return [], {}, 0
        chosen = keys[:_MAX_FIELDS]
        names = [k for k, _ in chosen]
        pairs, counted = _count_values(con, rows_sql, names)
        more = len(keys) - len(chosen)
    number = {k: i for i, k in enumerate(names)}  # a field's number in _hs_values
    top = [_Field(json_path("", k).lstrip("."), n, [k], index=number[k]) for k, n in chosen]
    # Among fields as present as each other, the order of the first entity's keys.
    written = {k: i for i, k in enumerate(first[0])} if first and isinstance(first[0], dict) else {}
    for i, (f, (k, _)) in enumerate(zip(top, chosen, strict=True)):
        f.place = (written.get(k, len(written) + i), -1)
    _field_stats(con, top, count)
    nested, deeper = _nested_fields(con, [f for f in top if f.objects], count, _MAX_FIELDS - len(top), counted)
    fields = top + nested
    _tops(con, [f for f in fields if f.categorical])
    # The most present first; among equals, each object's fields right after it.
    fields.sort(key=lambda f: (-f.stats["present"], f.place))
    return fields, pairs, more + deeper


def _guess_keys(
    con: AnalyticsConnection, rows_sql: str, first: list[Any], saved: list[str], *, every: bool = False
) -> list[str]:
    """The keys of the first entities, those the save noted (``saved``: of the first
    entity with each number of keys), then those of a few more spread over the type
    (runs of consecutive ids across its range: a handful of milliseconds), in the order
    found; with ``every`` (``first`` is every entity of the type), no more. ``rows_sql``
    has the columns ``id`` and ``entity_data``."""
    guess = dict.fromkeys(k for e in first if isinstance(e, dict) for k in e)
    guess.update(dict.fromkeys(saved))
    if every:  # (the first entities are all of them: no run has another key)
        return list(guess)
    low, high = cast(
        tuple[int | None, int | None], con.execute(f"SELECT min(id), max(id) FROM ({rows_sql})").fetchone()
    )
    if low is not None and high is not None:
        step = max((high - low) // _GUESS_RUNS, 1)
        runs = " UNION ALL ".join(
            f"SELECT entity_data FROM ({rows_sql}) WHERE id BETWEEN {start} AND {start + _GUESS_RUN - 1}"
            for start in range(low, high + 1, step)[:_GUESS_RUNS]
        )
        for (keys,) in con.execute(f"SELECT DISTINCT json_keys(entity_data) FROM ({runs})").fetchall():
            guess.update(dict.fromkeys(keys))
    return list(guess)


def _read_once(
    con: AnalyticsConnection, rows_sql: str, guess: list[str], key_total: int
) -> tuple[list[tuple[str, int]], list[str], dict[tuple[str, ...], int], int] | None:
    """The values of the keys ``guess`` read with one parse of every entity, when they
    are every key the entities have; else None (and the caller learns the keys first).

    A key's JSON pointer finds its value, JSON null, or nothing (the key is missing), so
    one pass counts how many entities have each key of ``guess``. Their sum equals
    ``key_total``, how many keys the entities have in all (counted by the save that
    wrote them), exactly when no entity has a key outside ``guess``.

    Returns:
        The keys with how many entities have each (the most frequent first), the field
        numbers' keys, and :func:`_count_values`'s pairs and numbers used.
    """
    if not 0 < len(guess) <= _MAX_FIELDS:
        return None
    pairs, counted = _count_values(con, rows_sql, guess, keyed=True)
    keyed = {guess[-1 - f]: n for f, n in con.execute("SELECT f, n FROM _hs_values WHERE f < 0").fetchall()}
    if sum(keyed.values()) != key_total:
        return None
    chosen = sorted(((k, n) for k, n in keyed.items() if n), key=lambda kn: (-kn[1], kn[0]))
    return chosen, guess, pairs, counted


# The pairs of fields the healthcare facts count together (see :func:`_facts`).
_PAIRS = [(b, g) for b in _BIRTH for g in _GENDER] + [(c, t) for c in _CODES for t in _CODE_TEXT if c != t]


def _count_values(
    con: AnalyticsConnection, rows_sql: str, keys: list[str], *, keyed: bool = False
) -> tuple[dict[tuple[str, ...], int], int]:
    """Read the top-level fields ``keys`` of every entity into ``_hs_values`` (field
    ``i`` is ``keys[i]``), then, for the pairs of :data:`_PAIRS` the type may have, the
    two top-level fields they are in (``code`` for ``code.display``) as a JSON array of
    the two values; two fields in one top-level object need no pair: their parent's
    distinct objects have both. With ``keyed``, also how many entities have each key
    (null values included), as rows ``f = -1 - i``. Returns the pairs' numbers, by the
    two top-level keys, and how many numbers were used."""
    if keyed:
        # Every key by its JSON pointer, in one parse: SQL NULL when the key is missing,
        # the text null when its value is. (Each a column of its own name: the pairs read
        # them.)
        pointers = ", ".join(_literal(json_pointer(k)) for k in keys)
        exprs = [f"_hs_{i}" for i in range(len(keys))]
        columns = [f"x[{i + 1}] AS {e}" for i, e in enumerate(exprs)]
        source = f"(SELECT json_extract(entity_data, [{pointers}]) AS x FROM ({rows_sql}))"
        has_value = "{e} IS NOT NULL AND {e} <> 'null'"
    else:
        # Each field a column of its own: the struct's fields by their keys, the others
        # under names no key has.
        prefix = "_hs_"
        while any(k.lower().startswith(prefix) for k in keys):
            prefix += "_"
        inside, apart = _struct_keys(keys, "entity_data", prefix)
        spec = orjson.dumps(dict.fromkeys(inside, "JSON")).decode()
        columns = [f"unnest(from_json(entity_data, {_literal(spec)}))"] if inside else []
        columns += [f"{sql} AS {column}" for sql, column in apart.values()]
        exprs = [apart[k][1] if k in apart else _identifier(k) for k in keys]
        source = f"({rows_sql})"
        has_value = "{e} IS NOT NULL"
    where = {k: i for i, k in enumerate(keys)}
    # Every field's values as rows (f, v) of one list per entity, counted by one GROUP BY:
    # a SELECT per field, in a UNION ALL, took DuckDB ~0.7 ms each to plan, most of a
    # small type's time (see docs/decisions.md "Many small types").
    values = f"SELECT unnest(range({len(exprs)})) AS f, unnest([{', '.join(exprs)}]) AS v FROM e"
    selects = [f"SELECT f, v, count(*) AS n FROM ({values}) WHERE {has_value.format(e='v')} GROUP BY ALL"]
    pairs: dict[tuple[str, ...], int] = {}
    used = len(exprs)  # the numbers of the fields; the pairs' next
    for a, b in _PAIRS:
        parents = (a.partition(".")[0], b.partition(".")[0])
        if parents[0] != parents[1] and parents not in pairs and all(p in where for p in parents):
            x, y = (exprs[where[p]] for p in parents)
            pairs[parents] = used
            selects.append(f"SELECT {used} AS f, json_array({x}, {y}) AS v, count(*) AS n FROM e GROUP BY ALL")
            used += 1
    tests = _tests_of(keys)
    if tests is not None:  # (a lab's value per test, its unit and name: see _values_by_code)
        quad = ", ".join(exprs[where[k]] if k else "NULL::JSON" for k in tests)
        pairs[tests] = used
        selects.append(f"SELECT {used} AS f, json_array({quad}) AS v, count(*) AS n FROM e GROUP BY ALL")
        used += 1
    if keyed:  # (a key is missing where its value is SQL NULL)
        selects.append(f"SELECT -1 - f AS f, NULL::JSON AS v, count(v) AS n FROM ({values}) GROUP BY f")
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE _hs_values AS WITH e AS MATERIALIZED (SELECT {', '.join(columns)} "
        f"FROM {source}) {' UNION ALL '.join(selects)}"
    )
    return pairs, used


def _struct_keys(keys: list[str], source: str, prefix: str) -> tuple[list[str], dict[str, tuple[str, str]]]:
    """The keys a struct can hold (DuckDB's struct names ignore case: the first of keys
    equal but for case; and cannot be empty), and for the others a column of their own:
    ``{key: (SQL, column name)}`` (JSON null read as SQL NULL, as ``from_json`` does)."""
    inside: list[str] = []
    apart: dict[str, tuple[str, str]] = {}
    seen: set[str] = set()
    for key in keys:
        if key.lower() in seen or not key:  # (nor an empty name)
            apart[key] = (_value_at(source, key), f"{prefix}{len(apart)}")
        else:
            inside.append(key)
            seen.add(key.lower())
    return inside, apart


def _value_at(json_text: str, key: str) -> str:
    """SQL of the value of ``key`` in the JSON object ``json_text``: SQL NULL when it has
    no such key or the value is JSON null."""
    return f"NULLIF(json_extract({json_text}, {_literal(json_pointer(key))}), 'null')"


def _identifier(name: str) -> str:
    """``name`` as an SQL identifier."""
    return '"' + name.replace('"', '""') + '"'


def _nested_fields(
    con: AnalyticsConnection, parents: list[_Field], count: int, room: int, start: int
) -> tuple[list[_Field], int]:
    """Fields one level into the object-valued fields ``parents``, and how many more
    there are than ``room``. Their keys and values are read from the parents' distinct
    objects in ``_hs_values`` (each weighed by how many entities have it), so an object
    many entities share is parsed once; their values are added to ``_hs_values`` under
    numbers from ``start``."""
    if not parents:
        return [], 0
    ids = ", ".join(str(p.index) for p in parents)
    keys = con.execute(
        f"SELECT f, k, sum(n)::BIGINT AS n FROM (SELECT f, unnest(json_keys(v)) AS k, n FROM _hs_values "
        f"WHERE f IN ({ids}) AND left(v, 1) = '{{') GROUP BY ALL ORDER BY n DESC, f, k"
    ).fetchall()
    chosen = keys[: max(room, 0)]
    by_parent: dict[int, list[tuple[str, int]]] = {}
    for parent, k, n in chosen:
        by_parent.setdefault(parent, []).append((k, n))
    fields: list[_Field] = []
    selects = []
    index = start  # the first number in _hs_values free for them
    for p in parents:
        if p.index not in by_parent:
            continue
        parent_path = p.path if p.path.startswith("[") else "." + p.path
        pointers = [_literal(json_pointer(k)) for k, _ in by_parent[p.index]]
        selects.append(
            f"SELECT {index} + i AS f, x AS v, sum(n) AS n FROM (SELECT unnest(range({len(pointers)})) AS i, "
            f"unnest(json_extract(v, [{', '.join(pointers)}])) AS x, n FROM _hs_values "
            f"WHERE f = {p.index} AND left(v, 1) = '{{') WHERE x IS NOT NULL AND x <> 'null' GROUP BY ALL"
        )
        for j, (k, n) in enumerate(by_parent[p.index]):
            path = json_path(parent_path, k).lstrip(".")
            fields.append(_Field(path, n, [*p.keys, k], index=index))
            fields[-1].place = (p.place[0], j)
            index += 1
    if fields:
        con.execute(f"INSERT INTO _hs_values {' UNION ALL '.join(selects)}")
        _field_stats(con, fields, count)
    return fields, len(keys) - len(chosen)


# --- statistics -------------------------------------------------------------------------

# Over ``_hs_values`` (``f``: the field's number, ``v``: one of its distinct JSON texts,
# ``n``: how many entities have it). A JSON text's first character tells its type.
_STRING = "left(v, 1) = '\"'"
_ARRAY = "left(v, 1) = '['"
_VALUES_NUMBER = _NUMBER.format(e="v")
_UNQUOTED = "substr(v, 2, length(v) - 2)"
# What every field's distinct values tell, in one query: how many entities have a value
# of each type, and the measures that do not depend on how often a value occurs.
_ABOUT_VALUES = {
    "present": "sum(n)",
    "strings": f"sum(n) FILTER ({_STRING})",
    "objects": "sum(n) FILTER (left(v, 1) = '{')",
    "arrays": f"sum(n) FILTER ({_ARRAY})",
    "trues": "sum(n) FILTER (v = 'true')",
    "falses": "sum(n) FILTER (v = 'false')",
    "distinct": f"count(*) FILTER ({_STRING})",
    "low": f"min(v) FILTER ({_STRING})",
    # (the least string that is a value: an empty string is none, and would hide a date field)
    "low_value": f"min(v) FILTER ({_STRING} AND v <> '\"\"')",
    "high": f"max(v) FILTER ({_STRING})",
    # (CASE, not FILTER: a FILTER's argument is computed for every value first)
    "shortest": f"min(CASE WHEN {_ARRAY} THEN json_array_length(v) END)",
    "longest": f"max(CASE WHEN {_ARRAY} THEN json_array_length(v) END)",
}
# The extremes of number fields as doubles (asked apart, of the fields that have numbers:
# testing every value for a number costs as much as the rest); the exact numbers among
# the texts at them after (:func:`_exact_extremes`): doubles cannot tell 2**53 from 2**53 + 1.
_EXTREMES = {"min_double": "min(TRY_CAST(v AS DOUBLE))", "max_double": "max(TRY_CAST(v AS DOUBLE))"}
# Whether every string of a date-like field is an ISO date or datetime (the ISO pattern,
# then a cast that refuses days that do not exist), and whether their texts sort in time
# order: all of one length, one separator between date and time, and dates or UTC times
# (``Z``). Otherwise the extremes are found by time (``_TIMED``). Distinct values
# answer each of these as all the values would.
# A year, or a year and month, alone is a date too (FHIR allows them), as the check counts
# it (see checks/sql.py); year 0000 is none, in both. Whether a field is one of dates is
# told by its full dates (more than half of its values), as the check tells it.
_FULL_DATE = (
    f"(regexp_full_match({_UNQUOTED}, {_literal(_ISO_PATTERN)}) AND left(v, 5) <> '\"0000' "
    f"AND TRY_CAST({_UNQUOTED} AS TIMESTAMPTZ) IS NOT NULL)"
)
_PARTIAL_DATE = f"(regexp_full_match({_UNQUOTED}, '[0-9]{{4}}(-(0[1-9]|1[0-2]))?') AND left(v, 5) <> '\"0000')"
_VALID_DATE = f"({_FULL_DATE} OR {_PARTIAL_DATE})"
# The instant a date stands for in a range: a partial one's first day (``2024`` is
# ordered as 2024-01-01, before any later day of that year; ties by text).
_INSTANT = (
    f"TRY_CAST(CASE length(v) WHEN 6 THEN {_UNQUOTED} || '-01-01' WHEN 9 THEN {_UNQUOTED} || '-01' "
    f"ELSE {_UNQUOTED} END AS TIMESTAMPTZ)"
)
_DATES = {
    # (an empty string is no value, as in the check: not a date that is wrong)
    "bad_dates": f"count(*) FILTER (NOT {_VALID_DATE} AND v <> '\"\"')",
    "full": f"sum(n) FILTER ({_FULL_DATE})",
    "partial": f"sum(n) FILTER ({_PARTIAL_DATE})",
    "timed": "count(*) FILTER (length(v) > 12)",
    "empty": "sum(n) FILTER (v = '\"\"')",
    "spaced": "count(*) FILTER (substr(v, 12, 1) = ' ')",
    "shortest_text": "min(length(v))",
    "longest_text": "max(length(v))",
    "zoned": "count(*) FILTER (length(v) > 12 AND right(v, 2) <> 'Z\"')",
    # (of entities: the values that are not dates, and the least of them as an example)
    "unfit": f"sum(n) FILTER (NOT {_VALID_DATE} AND v <> '\"\"')",
    "unfit_example": f"min(v) FILTER (NOT {_VALID_DATE} AND v <> '\"\"')",
}
# The earliest and latest strings of a date field, by time (offsets count).
_TIMED = {
    "first": f"arg_min(v, ({_INSTANT}, v))",
    "last": f"arg_max(v, ({_INSTANT}, v))",
}


def _field_stats(con: AnalyticsConnection, fields: list[_Field], count: int) -> None:
    """Fill in each field's statistics from its distinct values in ``_hs_values``."""
    by_index = {f.index: f for f in fields}
    for index, got in _per_field(con, _ABOUT_VALUES, by_index).items():
        by_index[index].got = {k: v for k, v in got.items() if v is not None}
    for f in fields:
        got = f.got
        f.present = got.get("present", 0)
        f.strings, f.objects, f.arrays = (got.get(k, 0) for k in ("strings", "objects", "arrays"))
        trues, falses = got.get("trues", 0), got.get("falses", 0)
        f.numbers = f.present - f.strings - f.objects - f.arrays - trues - falses
        held = {
            "string": f.strings,
            "number": f.numbers,
            "boolean": trues + falses,
            "object": f.objects,
            "array": f.arrays,
            "null": f.keyed - f.present,
        }
        f.stats = {"present": round(f.present / count, 4), "types": [k for k, n in held.items() if n]}
        if trues or falses:
            f.stats.update(true=trues, false=falses)
    numbers = {f.index: f for f in fields if f.numbers}
    for index, got in _per_field(con, _EXTREMES, numbers, only=_VALUES_NUMBER).items():
        numbers[index].got.update(got)
    for index, got in _per_field(
        con, {"mean": "avg(d ORDER BY d)", "median": "median(d)"}, numbers, each_number=True
    ).items():
        numbers[index].got.update(got)
    _exact_extremes(con, list(numbers.values()))
    _finite_means(con, list(numbers.values()))
    # A date field: every value that is not null is an ISO date string (a field that also
    # holds numbers, say, is a mixed field; its min and max are the numbers').
    # A field of strings whose least or greatest is a date may hold a few values that are
    # not ("unknown"): when most are dates, it is a date field whose other values are
    # counted (``unfit``), not one whose dates are hidden.
    dated = {
        f.index: f
        for f in fields
        if f.strings
        and f.strings == f.present
        and (_looks_like_date(_unquote(f.got.get("low_value"))) or _looks_like_date(_unquote(f.got["high"])))
    }
    for index, got in _per_field(con, _DATES, dated).items():
        dated[index].got.update(got)
    timed, partly = {}, {}
    for f in dated.values():
        got = f.got
        if 2 * int(got["full"] or 0) <= f.strings:  # (not mostly full dates: not a date field, as in the check)
            continue
        if got["bad_dates"]:
            f.date_format = "datetime" if got["timed"] else "date"
            dates = int(got["full"] or 0) + int(got["partial"] or 0)
            got["unfit_dates"] = (dates, int(got["unfit"]), _unquote(got["unfit_example"]))
            partly[f.index] = f
        else:
            f.date_format = "datetime" if got["timed"] else "date"
            sortable = got["shortest_text"] == got["longest_text"] and got["spaced"] in (0, got["timed"])
            sortable = sortable and not got["empty"]
            if sortable and not got["zoned"]:
                got["first"], got["last"] = got["low"], got["high"]  # their texts sort by time
            else:
                timed[f.index] = f
    for index, got in _per_field(con, _TIMED, timed, only=_VALID_DATE).items():
        timed[index].got.update(got)
    for index, got in _per_field(con, _TIMED, partly, only=_VALID_DATE).items():
        partly[index].got.update(got)
        # (the values that are not dates do not make it a datetime field)
        partly[index].date_format = "datetime" if max(len(got["first"]), len(got["last"])) > 12 else "date"
    for f in fields:
        _describe(f)


def _per_field(
    con: AnalyticsConnection,
    measures: dict[str, str],
    fields: dict[int, _Field],
    *,
    only: str = "true",
    each_number: bool = False,
) -> dict[int, dict[str, Any]]:
    """The named aggregates ``measures`` over each field's distinct values ``v`` (those
    where ``only`` holds; a field without any has no entry). With ``each_number``, over
    ``d``: every entity's number as a double, each distinct value repeated as often as it
    occurs."""
    if not fields:
        return {}
    where = f"f IN ({', '.join(map(str, fields))}) AND {only}"
    if each_number:
        where = f"{where} AND {_VALUES_NUMBER}"
        source = f"(SELECT f, TRY_CAST(v AS DOUBLE) AS d, unnest(range(n)) FROM _hs_values WHERE {where})"
    else:
        source = f"(SELECT f, v, n FROM _hs_values WHERE {where})"
    rows = con.execute(f"SELECT f, {', '.join(measures.values())} FROM {source} GROUP BY f").fetchall()
    return {row[0]: dict(zip(measures, row[1:], strict=True)) for row in rows}


def _exact_extremes(con: AnalyticsConnection, fields: list[_Field]) -> None:
    """The exact lowest and highest numbers of number fields: every distinct text whose
    double is the field's lowest or highest double (usually one each), compared as Python
    compares what ``json.loads`` makes of them (integers exactly, fractions as the
    doubles they are). Sets ``min``/``max`` (texts) in each field's measures."""
    asked = {f.index: f for f in fields if f.got.get("min_double") is not None}
    if not asked:
        return
    # (one statement for all the fields: a SELECT per field in a UNION ALL cost ~0.5 ms
    # each to plan)
    extremes = ", ".join(
        f"({i}, '{f.got['min_double']!r}'::DOUBLE, '{f.got['max_double']!r}'::DOUBLE)" for i, f in asked.items()
    )
    candidates: dict[int, list[str]] = {}
    for i, text in con.execute(
        f"SELECT f, v FROM _hs_values JOIN (VALUES {extremes}) AS m(i, low, high) ON f = i "
        f"WHERE {_VALUES_NUMBER} AND TRY_CAST(v AS DOUBLE) IN (low, high)"
    ).fetchall():
        candidates.setdefault(i, []).append(text)
    for i, f in asked.items():
        ranked = sorted(candidates[i], key=lambda text: (json.loads(text), text))
        f.got["min"], f.got["max"] = ranked[0], ranked[-1]


def _finite_means(con: AnalyticsConnection, fields: list[_Field]) -> None:
    """Means and medians that overflowed a double although every value fits one
    (``[1e308, 1e308, -1e308]``): the mean again as a sum of values each divided by
    their count. A mean or median still not finite (values beyond a double's range)
    becomes None: JSON has no infinity."""
    redo = {}
    for f in fields:
        got = f.got
        finite = all(isinstance(got.get(k), float) and math.isfinite(got[k]) for k in ("min_double", "max_double"))
        if got.get("mean") is not None and not math.isfinite(got["mean"]) and finite:
            redo[f.index] = f
    # (each value divided by the count of the field's numbers, then summed)
    total = " ".join(f"WHEN {i} THEN {f.numbers}" for i, f in redo.items())
    for index, got in _per_field(
        con, {"mean": f"sum(d / CASE f {total} END ORDER BY d)"}, redo, each_number=True
    ).items():
        redo[index].got.update(got)
    for f in fields:
        for k in ("mean", "median"):
            if isinstance(f.got.get(k), float) and not math.isfinite(f.got[k]):
                f.got[k] = None


def _describe(f: _Field) -> None:
    """Turn the measures in ``f.got`` into the field's statistics."""
    got = f.got
    if f.strings:
        f.stats["distinct"] = got["distinct"]
        if "first" in got:
            f.stats.update(format=f.date_format, min=_unquote(got["first"]), max=_unquote(got["last"]))
        f.categorical = f.date_format is None and _is_categorical(f)
    if "unfit_dates" in got:  # e.g. 295 dates, 5 other values such as "unknown"
        dates, other, example = got["unfit_dates"]
        f.stats["unfit"] = {"dates": dates, "other": other, "example": _short(example)}
    if f.numbers:
        f.stats.update(
            min=_number(got.get("min")), max=_number(got.get("max")), mean=got.get("mean"), median=got.get("median")
        )
        if f.strings and f.strings < f.numbers:  # numbers, and a few strings such as "n/a"
            f.stats["unfit"] = {
                "numbers": f.numbers,
                "other": f.present - f.numbers,
                "example": _short(_unquote(got["low"])),
            }
    if f.arrays:
        f.stats["length"] = {"min": got["shortest"], "max": got["longest"]}


def _is_categorical(f: _Field) -> bool:
    """Whether a string field is worth its top values: some value repeats, and there are
    few distinct values (at most 10, or at most 100 and one per two entities)."""
    distinct: int = f.stats["distinct"]
    return distinct < f.strings and distinct <= _CATEGORICAL_MAX and (distinct <= 10 or distinct <= f.strings // 2)


def _tops(con: AnalyticsConnection, categorical: list[_Field]) -> None:
    """The most frequent values of the categorical string fields (ties by value): each
    has at most 100 distinct strings in ``_hs_values``."""
    if not categorical:
        return
    counted: dict[int, list[tuple[str, int]]] = {}
    for i, v, n in con.execute(
        f"SELECT f, v, n FROM _hs_values WHERE f IN ({', '.join(str(f.index) for f in categorical)}) AND {_STRING}"
    ).fetchall():
        counted.setdefault(i, []).append((_unquote(v), n))
    for f in categorical:
        ranked = sorted(counted.get(f.index, []), key=lambda vn: (-vn[1], vn[0]))
        f.stats["top"] = [[_short(v), n] for v, n in ranked[:_TOP]]


# --- healthcare facts -------------------------------------------------------------------


def _facts(
    con: AnalyticsConnection,
    fields: list[_Field],
    pairs: dict[tuple[str, ...], int],
    as_of: _dt.date,
    rows_sql: str,
    count: int,
) -> dict[str, Any]:
    """The usual HealthSim facts that apply to one type, found by field name, counted
    from ``_hs_values`` (``pairs``: the numbers of the pairs of top-level fields counted
    together, by their keys), and values per test from the rows (``rows_sql``)."""
    by_path = {f.path: f for f in fields}
    tops = {f.keys[0]: f.index for f in fields if len(f.keys) == 1}
    facts: dict[str, Any] = {}

    def pick(names: Iterable[str], ok: Callable[[_Field], bool]) -> _Field | None:
        return next((by_path[n] for n in names if n in by_path and ok(by_path[n])), None)

    birth = pick(_BIRTH, lambda f: f.date_format is not None)
    if birth is not None:
        gender = pick(_GENDER, lambda f: bool(f.strings))
        facts["age_bands"] = _age_bands(con, _together(birth, gender, pairs, tops), birth, gender, as_of)
        _left_out(facts["age_bands"], birth, count)
    code = pick(_CODES, lambda f: bool(f.strings or f.numbers))
    if code is not None:
        text = pick(_CODE_TEXT, lambda f: bool(f.strings) and f is not code)
        facts["top_codes"] = _top_codes(con, _together(code, text, pairs, tops), code, text)
    when = pick(_WHEN, lambda f: f.date_format is not None) or next(
        (
            f
            for f in fields
            if f.date_format is not None and f.path not in _NOT_WHEN and f.path.endswith(("date", "_at", "start"))
        ),
        None,
    )
    if when is not None:
        facts["over_time"] = _over_time(con, when)
    money = [f for f in fields if f.numbers and _MONEY.search(f.path.rsplit(".", 1)[-1])]
    if money:
        facts["charges"] = _charges(con, money)
    top_level = {f.path: f for f in fields if len(f.keys) == 1}
    value = next((top_level[n] for n in _TEST_VALUES if n in top_level and top_level[n].numbers), None)
    test = next((top_level[n] for n in _TEST_CODES if n in top_level and top_level[n].strings), None)
    if value is not None and test is not None:
        unit, name = (
            next((top_level[n] for n in names if n in top_level), None) for names in (_TEST_UNITS, _TEST_NAMES)
        )
        tests = (value.keys[0], test.keys[0], unit.keys[0] if unit else "", name.keys[0] if name else "")
        if tests in pairs:  # counted together in the one parse (see _count_values)
            pointers = ", ".join(f"'$[{i}]'" for i in range(4))
            at = [f"NULLIF(x[{i + 1}], 'null')" for i in range(4)]
            source = (
                f"(SELECT {at[1]} AS c, {at[0]} AS v, {at[2]} AS u, {at[3]} AS t, n FROM (SELECT "
                f"json_extract(v, [{pointers}]) AS x, n FROM _hs_values WHERE f = {pairs[tests]}))"
            )
        else:  # (a key the count took for these was another: read from the rows)
            source = _tests_from_rows(rows_sql, value, test, unit, name)
        facts["values_by_code"] = _values_by_code(con, source, value, test, unit, name)
    return facts


def _tests_of(keys: list[str]) -> tuple[str, str, str, str] | None:
    """The top-level keys of a lab's value, test code, unit and test name among ``keys``
    (the first of each list of names; "" for no unit or name), counted together in
    ``_hs_values`` for :func:`_values_by_code`; None without a value or a code. (The
    facts take the first holding numbers and strings: when that is another key, the
    values are read from the rows instead.)"""
    have = set(keys)
    value, code, unit, name = (next((k for k in names if k in have), "") for names in _TEST_KEYS)
    return (value, code, unit, name) if value and code else None


def _tests_from_rows(rows_sql: str, value: _Field, code: _Field, unit: _Field | None, name: _Field | None) -> str:
    """SQL of rows ``(c, v, u, t, n)`` of :func:`_values_by_code` read from every entity."""

    def at(f: _Field | None) -> str:
        return _value_at("entity_data", f.keys[0]) if f is not None else "NULL::JSON"

    return f"(SELECT {at(code)} AS c, {at(value)} AS v, {at(unit)} AS u, {at(name)} AS t, 1 AS n FROM ({rows_sql}))"


def _together(first: _Field, second: _Field | None, pairs: dict[tuple[str, ...], int], tops: dict[str, int]) -> str:
    """SQL of rows ``(a, b, n)``: the JSON texts of two fields in the same entities (SQL
    NULL for no value) and how many entities have them; ``b`` is NULL without ``second``.
    ``tops``: the number in ``_hs_values`` of each top-level key's values."""
    if second is None:
        return f"(SELECT v AS a, NULL::JSON AS b, n FROM _hs_values WHERE f = {first.index})"
    parents = (first.keys[0], second.keys[0])
    if parents[0] == parents[1]:  # both in one object: its distinct objects have them
        source = f"(SELECT v AS x, v AS y, n FROM _hs_values WHERE f = {tops[parents[0]]})"
    else:
        source = (
            "(SELECT x[1] AS x, x[2] AS y, n FROM "
            f"(SELECT json_extract(v, ['$[0]', '$[1]']) AS x, n FROM _hs_values WHERE f = {pairs[parents]}))"
        )
    return f"(SELECT {_inside('x', first.keys[1:])} AS a, {_inside('y', second.keys[1:])} AS b, n FROM {source})"


def _inside(json_text: str, keys: list[str]) -> str:
    """SQL of the value at ``keys`` (none, or one key) in the JSON text ``json_text``:
    SQL NULL when it has none or it is JSON null."""
    if not keys:
        return f"NULLIF({json_text}, 'null')"
    (key,) = keys
    return f"CASE WHEN left({json_text}, 1) = '{{' THEN {_value_at(json_text, key)} END"


def _age_bands(
    con: AnalyticsConnection, source: str, birth: _Field, gender: _Field | None, as_of: _dt.date
) -> dict[str, Any]:
    """Entities per 10-year age band (age on ``as_of``) and gender, from rows of
    birth dates and genders (``source``, see :func:`_together`)."""
    born = "TRY_CAST(left(substr(a, 2, length(a) - 2), 10) AS DATE)"
    ref = f"DATE {_literal(as_of.isoformat())}"
    age = (
        f"(year({ref}) - year({born}) - CASE WHEN month({ref}) * 100 + day({ref}) "
        f"< month({born}) * 100 + day({born}) THEN 1 ELSE 0 END)"
    )
    counted = con.execute(
        f"SELECT floor({age} / 10)::INTEGER AS band, CASE WHEN left(b, 1) = '\"' THEN b END AS g, "
        f"sum(n)::BIGINT FROM {source} WHERE left(a, 1) = '\"' AND {age} >= 0 GROUP BY ALL"
    ).fetchall()
    rows = [(band, _unquote(g), n) for band, g, n in counted]
    values = {g for _, g, _ in rows if g is not None}
    # Entities without a gender string, and those of the genders not shown, under names
    # no gender value has: a literal "unknown" or "other" (FHIR codes) stays itself.
    missing = _free_name("unknown", values)
    other = _free_name("other", values | {missing})
    totals: dict[str, int] = {}
    for _, g, n in rows:
        label = g if g is not None else missing
        totals[label] = totals.get(label, 0) + n
    shown = [g for g, _ in sorted(totals.items(), key=lambda gn: (-gn[1], gn[0]))][:4]
    labels = [_short(g) for g in shown] + ([other] if len(totals) > len(shown) else [])
    bands: dict[int, dict[str, int]] = {}
    for band, g, n in sorted(rows, key=lambda r: r[0]):
        label = g if g is not None else missing
        label = _short(label) if label in shown else other
        counts = bands.setdefault(band, dict.fromkeys(labels, 0))
        counts[label] += n
    genders: dict[str, int] = {}
    for g in shown:  # (two long values cut alike count together, as in the bands)
        genders[_short(g)] = genders.get(_short(g), 0) + totals[g]
    return {
        "field": _short(birth.path),
        "as_of": as_of.isoformat(),
        "by": _short(gender.path) if gender else None,
        "bands": {f"{b * 10}-{b * 10 + 9}": bands[b] for b in sorted(bands)},
        "genders": genders,
    }


def _left_out(ages: dict[str, Any], birth: _Field, count: int) -> None:
    """Say how many of the type's ``count`` entities the age bands leave out, and why:
    no birth date, a value that is not a date (``unknown``), a year or a year and month
    alone (``partial_date``: no age on a day), or born after ``as_of``."""
    banded = sum(n for counts in ages["bands"].values() for n in counts.values())
    unfit = birth.got.get("unfit_dates", (0, 0, None))
    # (an empty string is no birth date, as null is)
    why = {
        "no_value": count - birth.present + int(birth.got.get("empty") or 0),
        "not_a_date": unfit[1],
        "partial_date": birth.got.get("partial") or 0,
    }
    why["born_after_as_of"] = count - banded - why["no_value"] - why["not_a_date"] - why["partial_date"]
    left = {k: n for k, n in why.items() if n > 0}
    if left:
        ages["left_out"] = left
        if unfit[1]:
            ages["left_out_example"] = _short(unfit[2])


def _free_name(name: str, taken: set[str]) -> str:
    """``name``, or ``name`` with ``*`` added until no value in ``taken`` has it."""
    while name in taken:
        name += "*"
    return name


def _top_codes(con: AnalyticsConnection, source: str, code: _Field, text: _Field | None) -> dict[str, Any]:
    """The most frequent codes (strings or numbers, as written; ties by their JSON text),
    each with its most frequent description (ties: the shortest, then the first
    alphabetically), from rows of codes and descriptions (``source``, see :func:`_together`)."""
    rows = con.execute(
        f"SELECT a AS c, CASE WHEN left(b, 1) = '\"' THEN b END AS d, sum(n)::BIGINT AS n FROM {source} "
        f"WHERE left(a, 1) = '\"' OR {_NUMBER.format(e='a')} GROUP BY ALL"
    ).fetchall()
    per_code: dict[str, int] = {}
    best: dict[str, tuple[int, int, str]] = {}  # the least wins: (-count, length, text)
    for c, d, n in rows:
        per_code[c] = per_code.get(c, 0) + n
        if d is not None:
            label = _unquote(d)
            ranked_label = (-n, len(label), label)
            if c not in best or ranked_label < best[c]:
                best[c] = ranked_label
    ranked = sorted(per_code.items(), key=lambda cn: (-cn[1], cn[0]))[:_TOP_CODES]
    return {
        "field": _short(code.path),
        "description": _short(text.path) if text else None,
        "top": [[_short(_unquote(c)), _short(best[c][2]) if c in best else None, n] for c, n in ranked],
    }


def _over_time(con: AnalyticsConnection, when: _Field) -> dict[str, Any]:
    """Entities per month of a date field (per year when its first and last months span
    more than five years), taken as written: ``2024-03-31T23:30:00-05:00`` counts in March,
    ``2024-03`` too; a year alone is in no month."""
    rows = con.execute(
        f"SELECT left({_UNQUOTED}, 7) AS m, sum(n)::BIGINT FROM _hs_values "
        f"WHERE f = {when.index} AND {_STRING} AND {_VALID_DATE} AND length(v) > 6 GROUP BY m ORDER BY m"
    ).fetchall()
    unit = "month"
    if rows and _month_number(rows[-1][0]) - _month_number(rows[0][0]) + 1 > _MONTHS_MAX:
        unit = "year"
        years: dict[str, int] = {}
        for m, n in rows:
            years[m[:4]] = years.get(m[:4], 0) + n
        rows = list(years.items())
    return {"field": _short(when.path), "unit": unit, "counts": [[m, n] for m, n in rows]}


def _values_by_code(
    con: AnalyticsConnection,
    source: str,
    value: _Field,
    code: _Field,
    unit: _Field | None,
    name: _Field | None,
) -> dict[str, Any]:
    """Statistics of a number field per code (a lab result's ``value`` per LOINC code),
    the most frequent codes first: count, min, max, mean, median, and each code's most
    frequent unit and name (ties: the least JSON text). (The field's own statistics mix
    the units of every test.) ``source``: SQL of rows ``(c, v, u, t, n)``: the JSON
    texts of code, value, unit and name (SQL NULL for none) and how many entities have
    them; each row counts ``n`` times."""
    number = f"CASE WHEN {_NUMBER.format(e='v')} THEN TRY_CAST(v AS DOUBLE) END"
    # The entities with a code string and a finite number, grouped once (the rows are read
    # once when they come from every entity).
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE _hs_tests AS SELECT c, x, u, t, sum(n)::BIGINT AS n FROM "
        f"(SELECT c, {number} AS x, u, t, n FROM {source}) WHERE left(c, 1) = '\"' AND isfinite(x) GROUP BY ALL"
    )
    try:
        rows = con.execute(
            "SELECT c, count(*)::BIGINT AS n, min(x), max(x), avg(x ORDER BY x), median(x) FROM "
            f"(SELECT c, x, unnest(range(n)) FROM _hs_tests) GROUP BY c ORDER BY n DESC, c LIMIT {_TOP_CODES}"
        ).fetchall()
        codes = ", ".join(_literal(c) for c, *_ in rows) or "NULL"
        counted = con.execute(f"SELECT c, u, t, n FROM _hs_tests WHERE c IN ({codes})").fetchall()
    finally:
        con.execute("DROP TABLE IF EXISTS _hs_tests")
    labels: dict[str, tuple[dict[Any, int], dict[Any, int]]] = {}
    for c, u, t, n in counted:
        units, names = labels.setdefault(c, ({}, {}))
        units[u] = units.get(u, 0) + n
        names[t] = names.get(t, 0) + n

    def text(json_text: Any) -> Any:
        return _short(_unquote(json_text)) if isinstance(json_text, str) and json_text.startswith('"') else None

    return {
        "field": _short(value.path),
        "by": _short(code.path),
        "unit": _short(unit.path) if unit else None,
        "name": _short(name.path) if name else None,
        # [code, name, unit, count, min, max, mean, median]
        "codes": [
            [text(c), text(_most(labels[c][1])), text(_most(labels[c][0])), n, low, high]
            + [round(mean, 6) if math.isfinite(mean) else None, median]
            for c, n, low, high, mean, median in rows
        ],
    }


def _most(counted: dict[Any, int]) -> Any:
    """The most frequent of the JSON texts ``counted`` (None, no value, aside; ties: the
    least text), or None."""
    ranked = sorted((-n, text) for text, n in counted.items() if text is not None)
    return ranked[0][1] if ranked else None


def _month_number(month: str) -> int:
    """``YYYY-MM`` as a count of months."""
    return int(month[:4]) * 12 + int(month[5:7])


def _charges(con: AnalyticsConnection, money: list[_Field]) -> dict[str, Any]:
    """Totals of money-like number fields: exact decimal sums of the values rounded to six
    places, as a double (the exact sum's text when no double holds it).

    DuckDB sums each distinct value times its count as ``DECIMAL(38, 6)`` when every
    value and the sum fit (under 10**31 each way); otherwise the distinct values and
    their counts come here and are summed exactly as fractions, so no value is left out
    and nothing overflows.
    """
    out: dict[str, Any] = {}
    rounded = "TRY_CAST(v AS DECIMAL(38, 6))"
    for f in money:
        only = f"FROM _hs_values WHERE f = {f.index} AND {_VALUES_NUMBER}"
        n, refused, largest = con.execute(
            f"SELECT sum(n)::BIGINT, (sum(n) FILTER ({rounded} IS NULL))::BIGINT, "
            f"max(abs(TRY_CAST(v AS DOUBLE))) {only}"
        ).fetchall()[0]
        total: Decimal | Fraction | None = None
        if n and not refused and largest * n < 1e31:
            total = con.execute(f"SELECT sum({rounded} * n) {only}").fetchall()[0][0]
        elif n:
            counted = con.execute(f"SELECT v, n {only}").fetchall()
            six = Decimal("0.000001")
            total = sum((Fraction(_round_six(Decimal(text), six)) * k for text, k in counted), Fraction(0))
        out[_short(f.path)] = {"count": n or 0, "total": _total(total)}
    return out


def _round_six(value: Decimal, six: Decimal) -> Decimal:
    """``value`` rounded to six decimal places, half away from zero (as DuckDB's cast)."""
    if value.as_tuple().exponent >= -6:  # type: ignore[operator]  # (an int for finite values)
        return value  # nothing past six places (and a huge value need not be rounded)
    return value.quantize(six, rounding=ROUND_HALF_UP)


def _total(total: Decimal | Fraction | None) -> float | str | None:
    """A total as a double, or as exact decimal text when it is beyond a double's range."""
    if total is None:
        return None
    try:
        return float(total)
    except OverflowError:
        numerator, denominator = total.as_integer_ratio()
        if denominator == 1:
            return str(numerator)
        # (the values were rounded to six places, so the quotient ends within six places;
        # with the default 28 digits of precision it was cut: "2.000…E+308")
        with localcontext(prec=len(str(abs(numerator))) + 8):
            return str(Decimal(numerator) / Decimal(denominator))


# --- values and the budget ----------------------------------------------------------------


def _unquote(text: Any) -> Any:
    """A JSON string's text as the string (None stays None)."""
    if text is None:
        return None
    return json.loads(text)


def _number(text: str | None) -> Any:
    """A JSON number's text as an exact Python number; its text when a double cannot
    hold it (``1e400``), since JSON has no infinity."""
    if text is None:
        return None
    value = json.loads(text)
    return text if isinstance(value, float) and not math.isfinite(value) else value


def _looks_like_date(text: Any) -> bool:
    """A full or partial date's shape (its values then decide: see _field_stats)."""
    return isinstance(text, str) and (_ISO_DATETIME.fullmatch(text) or _PARTIAL.fullmatch(text)) is not None


def _short(value: Any) -> Any:
    """A string of at most about 80 characters; a longer one is cut and says so."""
    if isinstance(value, str) and len(value) > _SAMPLE_STRING:
        return value[:_SAMPLE_STRING] + f"…[cut: {len(value)} characters]"
    return value


def _cut(value: Any, depth: int = 1) -> Any:
    """A sample entity with long strings and deep nesting cut, saying so."""
    if isinstance(value, str):
        return _short(value)
    if isinstance(value, dict):
        if depth > _SAMPLE_DEPTH and value:
            return f"{{…}} [cut: object of {len(value)} fields]"
        return {k: _cut(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list):
        if depth > _SAMPLE_DEPTH and value:
            return f"[…] [cut: list of {len(value)} items]"
        return [_cut(v, depth + 1) for v in value]
    return value


def _size(value: Any) -> int:
    """Bytes of ``value`` as compact UTF-8 JSON."""
    return len(json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode())


def _fit(summary: dict[str, Any], budget: int) -> dict[str, Any]:
    """``summary`` shortened until its compact JSON fits ``budget`` bytes.

    The header's last tags go first until it takes at most a quarter of the budget
    (counted in ``tags_omitted``). Then samples: down to one per type, then the largest
    go until all samples take at most a quarter of the budget. Then the least present
    fields of all types (counted in ``fields_omitted``), then long lists in the facts,
    then whole types, the largest first (counted in ``types_omitted``), and last the
    per-type counts of the header.
    """
    types: dict[str, dict[str, Any]] = summary["types"]
    if _size(summary) <= budget:
        return summary
    # The header (name, description, tags, counts) takes at most a quarter: the last
    # tags go first (each is cut to 80 characters, but a scenario may have hundreds).
    tags: list[str] = summary["tags"]
    excess = _size({k: v for k, v in summary.items() if k != "types"}) - budget // 4
    while tags and excess > 0:
        excess -= _size(tags.pop()) + 1
        summary["tags_omitted"] = summary.get("tags_omitted", 0) + 1
    if _size(summary) <= budget:
        return summary
    for about in types.values():
        _drop_samples(about, len(about["samples"]) - 1)
    sampled = sorted(((_size(a["samples"]), t) for t, a in types.items() if a["samples"]), reverse=True)
    room = sum(size for size, _ in sampled) - budget // 4
    for size, t in sampled:
        if room <= 0:
            break
        _drop_samples(types[t], 1)
        room -= size
    # The least present field of all types goes first, one at a time; each drop is
    # sized by itself rather than by dumping the whole summary again.
    ranked = sorted(
        ((a["fields"][p]["present"], -i, t, p) for t, a in types.items() for i, p in enumerate(a["fields"])),
        reverse=True,
    )
    while ranked and (excess := _size(summary) - budget) > 0:
        while ranked and excess > 0:
            _, _, t, p = ranked.pop()
            excess -= _size({p: types[t]["fields"].pop(p)}) - 1
            types[t]["fields_omitted"] += 1
    if _size(summary) <= budget:
        return summary
    for about in types.values():
        if "top_codes" in about:
            about["top_codes"]["top"] = about["top_codes"]["top"][:5]
        if "values_by_code" in about:
            about["values_by_code"]["codes"] = about["values_by_code"]["codes"][:5]
        if "over_time" in about and len(about["over_time"]["counts"]) > 12:
            about["over_time"]["counts"] = about["over_time"]["counts"][-12:]
            about["over_time"]["shown"] = "the last 12"
    # Then whole types, the largest first: as many types as can be kept are.
    _drop_entries(
        summary, "types", "types_omitted", sorted(types, key=lambda t: (_size(types[t]), t), reverse=True), budget
    )
    counts: dict[str, int] = summary["entities_by_type"]
    _drop_entries(
        summary, "entities_by_type", "entities_by_type_omitted", sorted(counts, key=lambda t: (counts[t], t)), budget
    )
    return summary


def _drop_entries(summary: dict[str, Any], part: str, counter: str, order: list[str], budget: int) -> None:
    """Drop entries of ``summary[part]`` in ``order`` until the summary fits ``budget`` bytes.

    Each drop is sized by itself (its key, its value, a colon and a comma) rather than by
    dumping the whole summary again: with hundreds of types that was quadratic (seconds).
    The estimate never counts less than a drop saves, so the exact check that follows drops
    no more than dumping after every drop would have.
    """
    entries: dict[str, Any] = summary[part]
    excess = _size(summary) - budget
    for key in order:
        if excess <= 0:
            break
        excess -= _size(key) + _size(entries.pop(key)) + 2
        summary[counter] = summary.get(counter, 0) + 1
    while entries and _size(summary) > budget:
        entries.pop(next(k for k in order if k in entries))
        summary[counter] = summary.get(counter, 0) + 1


def _drop_samples(about: dict[str, Any], n: int) -> None:
    """Drop the last ``n`` samples of a type, counting them in ``samples_omitted``."""
    if n > 0:
        about["samples"] = about["samples"][:-n]
        about["samples_omitted"] = about.get("samples_omitted", 0) + n
