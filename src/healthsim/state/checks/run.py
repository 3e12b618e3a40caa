"""Running the rules of one scenario (version) in the database.

Per checked type: its top-level keys (a sample, checked against the save's key count;
else one pass), then one statement parses every entity once and counts every rule over
the distinct values of the fields it reads (:mod:`.counting`), joined to temporary tables
of the ids each referenced type may be named by (with the patients' birth and death).
Examples (at most five per problem, by row order) are fetched with ``LIMIT`` only for
rules that found something, so a clean scenario costs the passes and no more. A check of
the rows a write made copies them into a temporary table first and reads the rest of the
scenario only through its stored ids or a text search of the names the rows use. Nothing
is parsed in Python but the counts and the examples. A whole check of committed rows checks
two types at a time where the engine can (:mod:`.parallel`), its id tables shared.
"""

from __future__ import annotations

import datetime as _dt
import json
import re
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from dataclasses import field as _field
from decimal import Decimal
from typing import Any

from .._engines import Connection
from ..entities import id_fields
from ..version_cache import KeyTotal
from . import sql
from .counting import COLUMN_REF, KEYS, Counted, count_grouped
from .names import names_filter
from .parallel import each_type
from .plan import PLAIN_KEY, TypePlan, plan_type
from .rules import DEATH_FIELDS, REFERENCES

__all__ = ["Found", "Scope", "run_rules"]

_EXAMPLES = 5
_WRITTEN = "_hs_check_written"  # the rows a write made (a check of ``only`` those)
_VALUES = "_hs_check_values"  # their top-level values, a row each (see _written_keys)
_SCALAR = "IN ('string', 'number')"


@dataclass
class Scope:
    """What to check: the rows ``base(type)`` gives (SQL with the columns ``id,
    entity_id, entity_type, entity_data`` of one scenario's rows, of one type or all of
    them); with ``only`` (an SQL condition on the row ``id``), only those rows, compared
    with all of the scenario's."""

    con: Connection
    base: Callable[[str | None], str]
    today: _dt.date
    only: str | None = None
    #: A temporary table of the rows ``only`` selects, once made (see :func:`run_rules`).
    written: str | None = None
    #: Per type, what the save counted of its keys (see :mod:`..version_cache`): lets a
    #: sample's keys stand for all when the entities' keys add up to the saved total.
    key_totals: Mapping[str, KeyTotal] | None = None
    #: The rows are committed in a table other connections read (not a write's own rows
    #: in its transaction, nor a temporary table): types may be checked two at a time, on
    #: cursors of their own, where the engine can (see :mod:`.parallel`).
    parallel: bool = False
    #: While types are checked at once: the id tables every cursor reads.
    shared: _Shared | None = None
    #: Per type, how many of the rows ``only`` selects share their stored id with another
    #: row of the type (counted for every type in one statement; see :func:`_duplicated`).
    duplicated: Mapping[str, int] | None = None
    #: Per type of the rows a write made, its fields of mostly dates among the date
    #: candidates the rows may fault, told by every entity of the type (see :func:`_date_fields`).
    date_fields: Mapping[str, set[str]] | None = None
    #: Only these (rule, field) pairs are counted (an upsert's second look at the stored rows
    #: naming what it replaced: see :mod:`.dependents`); None: every rule.
    recheck: frozenset[tuple[str, str]] | None = None

    def rows(self, entity_type: str | None = None, *, checked: bool = True) -> str:
        """SQL of the rows, of one type or all (``checked``: only those checked)."""
        sql = self.base(entity_type)
        if checked and self.written:
            kind = "" if entity_type is None else f" WHERE entity_type = {_literal(entity_type)}"
            return f"SELECT * FROM {self.written}{kind}"
        return f"SELECT * FROM ({sql}) AS _hs_rows WHERE {self.only}" if checked and self.only else sql


@dataclass
class _Shared:
    """The id tables of a check of types at once (target type -> table every cursor
    reads), each made once, by the first worker that needs it, under its own lock."""

    tables: dict[str, str] = _field(default_factory=dict)
    locks: dict[str, threading.Lock] = _field(default_factory=dict)
    guard: threading.Lock = _field(default_factory=threading.Lock)

    def lock(self, target: str) -> threading.Lock:
        with self.guard:
            return self.locks.setdefault(target, threading.Lock())


@dataclass
class Found:
    """One rule's finding: how many entities, and a few of them as ``(id, value)``."""

    rule: str
    entity_type: str
    field: str
    count: int
    examples: list[tuple[str, Any]] = _field(default_factory=list)


@dataclass
class _Spec:
    """A rule over one field: the entities (``c``, with its joins) matching ``where``;
    ``value``: what an example shows."""

    rule: str
    field: str
    where: str
    value: str


def _plain(key: str) -> bool:
    return PLAIN_KEY.fullmatch(key) is not None


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def run_rules(scope: Scope) -> tuple[dict[str, int], list[Found]]:
    """The checked entities per type and every rule's findings (counts over zero)."""
    con = scope.con
    found: list[Found] = []
    with _temporary(con) as made:
        if scope.only:  # the rows a write made, copied once: every query of them is then small
            con.execute(f"{con.engine.create_temp(con, _WRITTEN)} AS {scope.rows()}")
            made.add(_WRITTEN)
            scope = replace(scope, written=_WRITTEN)
        checked = {
            t: n
            for t, n in con.execute(
                f"SELECT entity_type, count(*) FROM ({scope.rows()}) AS r GROUP BY entity_type ORDER BY min(id)"
            ).fetchall()
        }
        every = set(checked)
        if scope.only:
            rows = scope.rows(checked=False)
            every = {t for (t,) in con.execute(f"SELECT DISTINCT entity_type FROM ({rows}) AS a").fetchall()}
            made.add(_VALUES)
            keyed = _written_keys(scope, list(checked))
            scope = replace(scope, duplicated=_duplicated(scope) if scope.recheck is None else {})
            plans = {t: _plan_of(t, keyed.get(t, {})) for t in checked}
            if scope.recheck is not None:  # (only references and events: no id table, no date field else)
                for plan in plans.values():
                    plan.references = [f for f in plan.references if ("unresolved_reference", f) in scope.recheck]
                    plan.events = [f for f in plan.events if ("before_birth", f) in scope.recheck]
            scope = replace(scope, date_fields={} if scope.recheck is not None else _date_fields(scope, plans, keyed))
            _prepare_targets(scope, plans, every, made)
            for t, plan in plans.items():
                told = {k: counts for k, (_, *counts) in keyed.get(t, {}).items()}
                found += _check_type(scope, plan, every, made, checked[t], told)[0]
        else:
            parallel = scope.parallel and con.engine.concurrent_cursors and len(checked) > 1
            if parallel := parallel and con.engine.shared_table(con, "_hs_check") is not None:
                scope = replace(scope, shared=_Shared())

            def check(cursor: Connection, entity_type: str) -> list[Found]:
                return _check_keys(replace(scope, con=cursor), entity_type, checked[entity_type], every, made)

            for each in each_type(con, checked, check, parallel=parallel).values():
                found += each
    return checked, found


# Names searched for in the stored text of referenced entities, at most (more: all parsed).
_MAX_NAMES = 2000


def _prepare_targets(scope: Scope, plans: dict[str, TypePlan], every: set[str], made: set[str]) -> None:
    """For a check of the rows a write made: each referenced type's id table, of only the
    entities whose stored text holds a name the rows use (one regular expression over the
    text is far cheaper than parsing every entity); all of them when a name holds what
    JSON escapes, or there are very many names."""
    con = scope.con
    for target in sorted({t for t, _ in REFERENCES.values()} & every):
        named = [q for plan in plans.values() if (q := _named(scope, plan, target)) is not None]
        if not named:
            continue
        union = " UNION ".join(named)
        if target != "patients" and _by_stored_id(scope, target, union, made):
            continue
        names = [
            r for (r,) in con.execute(f"SELECT DISTINCT ref FROM ({union}) AS w LIMIT {_MAX_NAMES + 1}").fetchall()
        ]
        where = None
        if len(names) <= _MAX_NAMES and not any(_UNSEARCHABLE.search(str(n)) for n in names):
            where = names_filter(con, "CAST(a.entity_data AS VARCHAR)", [str(n) for n in names if n is not None])
        _target_ids(scope, target, made, where)


def _check_keys(scope: Scope, entity_type: str, count: int, every: set[str], made: set[str]) -> list[Found]:
    """The findings of one type, its keys found in the cheapest way that is exact: the keys
    of a sample and those the save noted, when every entity's keys add up to the save's
    total (then no entity has another key); else every entity's keys first."""
    con = scope.con
    total = (scope.key_totals or {}).get(entity_type) if not scope.only else None
    # (a type of few entities is counted row by row, as a write's rows are: planning the
    # grouping of its distinct values cost ~2 ms a field, more than counting a few rows)
    plain = count <= _PLAIN_ROWS
    sample = f"SELECT * FROM ({scope.rows(entity_type)}) AS r LIMIT {_SAMPLE}"
    kinds = dict(con.execute(con.engine.top_level_key_kinds(sample)).fetchall())
    if total is not None and total[0] == count:
        guess = list(dict.fromkeys([*kinds, *total[2]]))
        if all(_plain(k) for k in guess):
            # (a key the sample never holds a string in is no date candidate: the sample
            # tells candidates, and would find no date in it)
            plan = plan_type(entity_type, guess, {k for k, s in kinds.items() if s})
            plan.verify = guess
            found, keyed = _check_type(scope, plan, every, made, plain=plain)
            if keyed == total[1]:
                return found
    keys = [k for (k,) in con.execute(con.engine.top_level_keys(scope.rows(entity_type))).fetchall()]
    # (the sample's keys that hold a string are the date candidates, as above: the sample
    # tells which are mostly dates)
    return _check_type(
        scope, plan_type(entity_type, keys, {k for k, s in kinds.items() if s}), every, made, plain=plain
    )[0]


def _plan_of(entity_type: str, keyed: Mapping[str, tuple[bool, int, int, int, int]]) -> TypePlan:
    """The plan of the type from its written rows' keys (see :func:`_written_keys`)."""
    return plan_type(entity_type, list(keyed), {k for k, (string, *_) in keyed.items() if string})


def _written_keys(scope: Scope, types: list[str]) -> dict[str, dict[str, tuple[bool, int, int, int, int]]]:
    """Per type of the rows a write made, each top-level key with whether a row holds a
    string there, and what tells whether it is mostly dates (see :func:`_check_type`):
    how many rows hold a full date there, a value (not null, not an empty string),
    anything but null, an object or an array, and a date (partial ones too). One statement for every type: planning
    a statement, not counting a write's few rows, is what costs (the date check is
    planned once, not once per field and type). The rows' top-level values are kept in
    the temporary table :data:`_VALUES` (the caller drops it). With ``scope.recheck``,
    only the keys its rules and the rows' own ids read (the stored rows naming what an
    upsert replaced may be many: parsing every key of each cost most of that look)."""
    con = scope.con
    if scope.recheck is None:
        values = con.engine.top_level_values(scope.rows(), "entity_type")
    else:
        values = " UNION ALL ".join(_some_values(scope, t) for t in types)
    con.execute(f"{con.engine.create_temp(con, _VALUES)} AS {values}")
    values = f"SELECT * FROM {_VALUES}"  # (read again for the names the rows use: see _named)
    date = sql.is_date(con, "v.kind", "v.text", partial=False)
    dated = sql.is_date(con, "v.kind", "v.text")
    rows = con.execute(
        f"SELECT entity_type, k, bool_or(kind = 'string'), count(*) FILTER (WHERE {date}), "
        "count(*) FILTER (WHERE kind <> 'null' AND NOT (kind = 'string' AND text = '')), "
        f"count(*) FILTER (WHERE kind NOT IN ('null', 'object', 'array')), count(*) FILTER (WHERE {dated}) "
        f"FROM ({values}) AS v GROUP BY entity_type, k"
    ).fetchall()
    keyed: dict[str, dict[str, tuple[bool, int, int, int, int]]] = {}
    for entity_type, key, string, dates, present, sample, partly in rows:
        keyed.setdefault(entity_type, {})[key] = (bool(string), int(dates), int(present), int(sample), int(partly))
    return keyed


def _some_values(scope: Scope, entity_type: str) -> str:
    """SQL of the rows ``entity_type, k, kind, text`` of :meth:`Engine.top_level_values`,
    of the type's checked rows, for the keys a re-check reads alone (its rules' fields,
    the patient references, the type's own id fields and a patient's MRN)."""
    assert scope.recheck is not None
    keys = sorted({f for _, f in scope.recheck} | {"patient_mrn", "patient_id", "mrn", *id_fields(entity_type)})
    keys = [k for k in keys if PLAIN_KEY.fullmatch(k) and "." not in k]
    parsed = scope.con.engine.json_fields(scope.rows(entity_type), "entity_type", [(k,) for k in keys])
    picked = f"SELECT entity_type, {_unnested([_literal(k) for k in keys], ('k', 'kind', 'text'))} FROM ({parsed}) AS p"
    return f"SELECT * FROM ({picked}) AS v WHERE kind IS NOT NULL"


def _date_fields(
    scope: Scope, plans: Mapping[str, TypePlan], keyed: Mapping[str, Mapping[str, tuple[bool, int, int, int, int]]]
) -> dict[str, set[str]]:
    """Per written type, of the date candidates where the rows a write made hold a value
    that is no date (their counts ``keyed``, see :func:`_written_keys`), those that are
    fields of mostly dates, told as a whole check tells them: by every entity of the type,
    the stored ones too (a sample of the first 1,000 first, then all of them). A write's
    rows alone could say otherwise (one bad value added to 10,000 stored dates). Costs
    nothing when every value the rows give a candidate is a date; else one statement of
    the samples of every such type and, for fields of dates in a sample, one parse of
    those fields of the type's entities."""
    con = scope.con
    need = {
        t: names
        for t, plan in plans.items()
        if (names := [n for n in plan.candidates if (c := keyed.get(t, {}).get(n)) is not None and c[2] > c[4]])
    }
    if not need:
        return {}
    parts = []  # (one statement of every type's sample: planning, not the rows, is the cost)
    for t, names in need.items():
        sample = f"SELECT * FROM ({scope.base(t)}) AS r LIMIT {_SAMPLE}"
        parts.append(
            f"SELECT {_literal(t)} AS ty, {_unnested([str(i) for i in range(len(names))])} "
            f"FROM ({con.engine.json_fields(sample, 'id', [(n,) for n in names])}) AS s"
        )
    sampled = con.execute(
        f"SELECT ty, i, {_date_counts(con)} FROM ({' UNION ALL '.join(parts)}) AS u GROUP BY ty, i"
    ).fetchall()
    maybe: dict[str, list[str]] = {}
    for t, i, dates, values in sorted(sampled, key=lambda r: (r[0], r[1])):
        if dates and (dates * 2 > values or values < _FEW_VALUES):  # (as _sampled tells it)
            maybe.setdefault(t, []).append(need[t][int(i)])
    return {t: _mostly_dates(scope, t, names) for t, names in maybe.items()}


def _mostly_dates(scope: Scope, entity_type: str, names: list[str]) -> set[str]:
    """Which of the type's fields ``names`` hold more than half full dates, of every entity
    (values that are no value counted as a whole check counts them: see :func:`_counted`)."""
    con = scope.con
    columns = []
    for i in range(len(names)):
        k, t = f"k{i}", f"t{i}"
        columns += [
            f"count(*) FILTER (WHERE {sql.is_date(con, k, t, partial=False)})",
            f"count(*) FILTER (WHERE {k} <> 'null' AND NOT ({k} = 'string' AND {t} = ''))",
            f"count(*) FILTER (WHERE {k} NOT IN ('null', 'object', 'array'))",
        ]
    parsed = con.engine.json_fields(scope.base(entity_type), "id", [(n,) for n in names])
    row = con.execute(f"SELECT {', '.join(columns)} FROM ({parsed}) AS c").fetchall()[0]
    counted = [tuple(int(x or 0) for x in row[3 * i : 3 * i + 3]) for i in range(len(names))]
    return {n for n, (dates, present, values) in zip(names, counted, strict=True) if dates * 2 > max(present, values)}


@contextmanager
def _temporary(con: Connection) -> Iterator[set[str]]:
    """The names of the temporary tables made meanwhile, dropped at the end."""
    made: set[str] = set()
    try:
        yield made
    finally:
        for name in made:
            con.execute(f"DROP TABLE IF EXISTS {name}")


def _check_type(
    scope: Scope,
    plan: TypePlan,
    every: set[str],
    made: set[str],
    rows: int | None = None,
    told: Mapping[str, Sequence[int]] | None = None,
    *,
    plain: bool = False,
) -> tuple[list[Found], int]:
    """Every rule's findings of one type: one parse of its rows, joined to the id tables
    of the types it references, the rules counted over the distinct values they read
    (see :mod:`.counting`); and how many of the keys of ``plan.verify`` its entities have
    in all. ``rows``: how many rows are checked, when known (a few: their fields that
    may be dates are told in the same statement, the sample being all of them, or were
    told before: ``told``, see :func:`_written_keys`)."""
    con = scope.con
    if scope.shared is not None:
        _free_ids_first(scope, scope.shared, plan, every, made)
    own = _own_id(plan)  # (its columns read with the others)
    joins: dict[str, str] = {}  # alias -> JOIN clause
    specs = _row_specs(con, plan, scope.today) if scope.recheck is None else []
    specs += _reference_specs(scope, plan, every, made, joins) + _event_specs(scope, plan, every, made, joins)
    if scope.recheck is not None:
        specs = [s for s in specs if (s.rule, s.field) in scope.recheck]
    elif "mrn" in plan.own_ids and "patients" in every:
        specs += _mrn_specs(scope, plan, made, joins)
    whole = rows is not None and rows <= _SAMPLE  # (the sample would be every row)
    told = told if whole else None
    decided = None if scope.date_fields is None else scope.date_fields.get(plan.entity_type, set())
    unique: set[str] = set()
    if decided is not None:  # a write's rows: the fields of dates were told by the whole type
        maybe = [n for n in plan.candidates if n in decided]
    else:
        maybe, unique = _sampled(scope, plan, whole)
    candidates = [(name, *plan.column(name)) for name in maybe]
    parsed = _parsed(scope, plan)
    counts = count_grouped(
        con,
        parsed,
        joins,
        _counted(con, specs, candidates if told is None else [], sampled=True),
        keys=bool(plan.verify),
        unique=unique,
        few=bool(scope.only) or plain,
        shared=_date_checks(con, plan) if scope.only else {},
    )
    keys = counts.pop(KEYS, 0)
    if plan.verify and keys != (scope.key_totals or {}).get(plan.entity_type, (0, -1))[1]:
        return [], keys  # a key outside the guess: the caller reads every key first
    faulted: list[tuple[str, str, str, int, int, int | None]] = []  # (name, k, t, present, dates, dated)
    for name, k, t in candidates:  # mostly dates: the others are not
        if told is not None:
            dates, present, _, dated = told[name]
        else:
            dates, present = counts.pop(f"date:{name}"), counts.pop(f"present:{name}")
            # (not a date field: as _sampled tells it, now of every entity: a sample of a few
            # values, in a type of mostly nulls, could not tell)
            if decided is None and not (dates and dates * 2 > counts.pop(f"sample:{name}")):
                continue
            dated = None  # (partial dates among them: counted below, only where some value is no full date)
        if present and (decided is not None or dates * 2 > present) and dates < present:
            faulted.append((name, k, t, present, dates, dated))
    partial = _partial_dates(scope, plan, [(k, t) for _, k, t, _, _, dated in faulted if dated is None])
    for name, k, t, present, dates, known in faulted:
        # (its values that are not dates, partial dates being dates: as the summary counts them)
        dated = known if known is not None else dates + partial[k]
        if dated < present:
            specs.append(_Spec("not_a_date", name, sql.bad_date(con, f"c.{k}", f"c.{t}"), f"c.{t}"))
            counts[str(len(specs) - 1)] = present - dated
    found = [(s, counts[str(i)]) for i, s in enumerate(specs) if counts.get(str(i))]
    out = [Found(s.rule, plan.entity_type, s.field, n, _examples(scope, plan, own, s, joins)) for s, n in found]
    return (_duplicates(scope, plan, own) if scope.recheck is None else []) + out, keys


def _partial_dates(scope: Scope, plan: TypePlan, columns: list[tuple[str, str]]) -> dict[str, int]:
    """Per kind column ``k{i}`` of ``columns``, how many of the checked rows hold a partial
    date there (a year, or a year and month, alone): one statement, made only for fields of
    mostly dates with values that are no full date (counting it for every date candidate
    in the counting statement cost a quarter more of a check of many small types: planning)."""
    if not columns:
        return {}
    con = scope.con
    read = " ".join(f"c.{k} c.{t}" for k, t in columns)
    counted = ", ".join(f"count(*) FILTER (WHERE {sql.is_partial_date(con, f'c.{k}', f'c.{t}')})" for k, t in columns)
    row = con.execute(f"SELECT {counted} FROM ({_parsed(scope, plan, read)}) AS c").fetchall()[0]
    return {k: int(n or 0) for (k, _), n in zip(columns, row, strict=True)}


def _parsed(scope: Scope, plan: TypePlan, read: str | None = None) -> str:
    """SQL of the checked rows of the type with the plan's fields (``k{i}``, ``t{i}``),
    an empty string read as no value (a CSV's empty cell), as null is: no rule faults it.
    With ``read`` (SQL over ``c``), only the fields it reads: a statement's planning grows
    with its expressions (an example's statement reads a few of a type's fields)."""
    columns = list(range(len(plan.paths)))
    if read is not None:
        columns = sorted({int(m[3:]) for m in COLUMN_REF.findall(read) if m.startswith(("c.k", "c.t"))})
    paths = [plan.paths[i] for i in columns]
    verify = plan.verify if read is None else []
    few = bool(scope.only)  # (a write's rows)
    source = scope.con.engine.json_fields(scope.rows(plan.entity_type), "id, entity_id", paths, verify, few=few)
    kinds = "".join(
        f", CASE WHEN k{j} = 'string' AND t{j} = '' THEN 'null' ELSE k{j} END AS k{i}, t{j} AS t{i}"
        for j, i in enumerate(columns)
    )
    # (how many of the keys of ``plan.verify`` each row has: see _check_keys)
    keyed = _sum([f"CASE WHEN e{j} IS NULL THEN 0 ELSE 1 END" for j in range(len(verify))])
    return f"SELECT id, entity_id{kinds}, {keyed} AS _hs_keys FROM ({source}) AS f"


def _sum(terms: list[str]) -> str:
    """SQL: the sum of ``terms``, nested as a balanced tree. ``a + b + c + …`` nests one
    level per term, and DuckDB refuses an expression deeper than 1,000 (a type with that
    many keys); halves nest as deep as the logarithm of their number."""
    if len(terms) <= 2:
        return " + ".join(terms) or "0"
    half = len(terms) // 2
    return f"({_sum(terms[:half])}) + ({_sum(terms[half:])})"


# Rows of a type read to tell which of its other fields are mostly dates.
_SAMPLE = 1000
# A type of at most this many entities has its rules counted row by row (see _check_keys).
_PLAIN_ROWS = 1000
# Fewer values of a field in the sample than this do not tell whether it is mostly dates.
_FEW_VALUES = 100


def _sampled(scope: Scope, plan: TypePlan, whole: bool) -> tuple[list[str], set[str]]:
    """From one sample of the type's rows (one statement, not one per question): the
    plan's other fields of which the sample holds mostly full dates (their values are
    then counted over every entity; with ``whole``, the rows are few and all of them are
    told in the counting statement itself), and the text columns (``c.t{i}``) whose
    values are mostly distinct: rules reading them are counted row by row, not over
    their distinct values (see :mod:`.counting`). The rows a write made are few: they
    are counted row by row, no column is sampled."""
    dated = [] if whole else [tuple(name.split(".")) for name in plan.candidates]
    if whole:
        for name in plan.candidates:
            plan.column(name)
    paths = [*plan.paths, *(p for p in dated if p not in plan.paths)]
    if not paths or (scope.only and not dated):
        return (plan.candidates if whole else []), set()
    counted = _sample_counts(scope, plan, paths, distinct=not scope.only, dates=bool(dated))
    distinct: dict[tuple[str, ...], bool] = {}
    maybe = []
    for i, path in enumerate(paths):
        n, present, dates, values = counted.get(i, (0, 0, 0, 0))
        if not scope.only:
            distinct[path] = n * 10 > present * 3
        if path in dated:
            # (a sample of a few values, as in a type of mostly nulls, cannot tell: a date
            # among them makes every entity's values decide, in the counting statement)
            if dates and (dates * 2 > values or values < _FEW_VALUES):
                maybe.append(".".join(path))
    if whole:
        maybe = list(plan.candidates)
    else:
        for name in maybe:
            plan.column(name)
    unique = {f"c.t{plan.paths.index(p)}" for p, many in distinct.items() if many and p in plan.paths}
    return maybe, unique


def _unnested(labels: list[str], names: tuple[str, str, str] = ("i", "k", "t")) -> str:
    """SQL select list that turns a row of :meth:`Engine.json_fields` columns ``k0, t0,
    k1, t1…`` (a pair per label) into a row per pair, named ``names``: the pair's label
    (a number or a literal), its kind and its text."""
    each = range(len(labels))
    lists = (", ".join(labels), ", ".join(f"k{j}" for j in each), ", ".join(f"t{j}" for j in each))
    return ", ".join(f"unnest(ARRAY[{items}]) AS {name}" for items, name in zip(lists, names, strict=True))


def _date_counts(con: Connection) -> str:
    """SQL of two aggregates over rows ``(k, t)`` (see :func:`_unnested`): how many hold a
    full date, and how many a value that is not null, an object or an array (what tells,
    in a sample, whether a field is mostly dates)."""
    date = sql.is_date(con, "k", "t", partial=False)
    return f"count(*) FILTER (WHERE {date}), count(*) FILTER (WHERE k NOT IN ('null', 'object', 'array'))"


def _sample_counts(
    scope: Scope, plan: TypePlan, paths: list[tuple[str, ...]], *, distinct: bool, dates: bool
) -> dict[int, tuple[int, int, int, int]]:
    """Per path number of a sample of the type's rows: its distinct texts and values (with
    ``distinct``), its full dates and values that are not null, an object or an array
    (with ``dates``); a path with no row has none. Each row's paths are unnested into
    rows ``(i, k, t)`` counted by one GROUP BY: a statement of four aggregates per path
    took DuckDB ~1.5 ms a path to plan, most of a small type's check."""
    con = scope.con
    columns = ["count(DISTINCT t), count(t)" if distinct else "0, 0", _date_counts(con) if dates else "0, 0"]
    sample = f"SELECT * FROM ({scope.rows(plan.entity_type)}) AS r LIMIT {_SAMPLE}"
    unnested = (
        f"SELECT {_unnested([str(i) for i in range(len(paths))])} "
        if len(paths) > 1
        else "SELECT k0 AS k, t0 AS t "  # (one path: nothing to unnest, nor to group)
    ) + f"FROM ({con.engine.json_fields(sample, 'id', paths, few=True)}) AS s"
    grouped = "i" if len(paths) > 1 else "0"
    rows = con.execute(
        f"SELECT {grouped}, {', '.join(columns)} FROM ({unnested}) AS u{' GROUP BY i' * (len(paths) > 1)}"
    ).fetchall()
    return {int(i): (int(n), int(present), int(d), int(v)) for i, n, present, d, v in rows}


def _row_specs(con: Connection, plan: TypePlan, today: _dt.date) -> list[_Spec]:
    """The rules that read one row alone."""
    specs: list[_Spec] = []

    def add(rule: str, name: str, where: Any, extra: str = "") -> None:
        k, t = plan.column(name)
        specs.append(_Spec(rule, name, where(k, t) + extra, f"c.{t}"))

    for name in plan.dates:
        add("not_a_date", name, lambda k, t: sql.bad_date(con, f"c.{k}", f"c.{t}"))
    for name in plan.numbers:
        add("not_a_number", name, lambda k, t: sql.bad_number(con, f"c.{k}", f"c.{t}"))
    for name in plan.genders:
        add("unknown_gender", name, lambda k, t: sql.bad_gender(f"c.{k}", f"c.{t}"))
    rule_sql = {
        "malformed_icd10": sql.bad_icd10,
        "bad_loinc_check_digit": sql.bad_loinc,
        "bad_npi_check_digit": sql.bad_npi,
        "malformed_ndc": sql.bad_ndc,
    }
    for rule, names in plan.codes.items():
        for name in names:
            extra = ""
            if name == "code":  # another code system's code is not ICD-10's, whichever field names it
                for sk, st in map(plan.column, plan.code_systems):
                    extra += f" AND (c.{sk} IS NULL OR c.{sk} = 'null' OR lower(c.{st}) LIKE '%icd%')"
            add(rule, name, lambda k, t, r=rule: rule_sql[r](con, f"c.{k}", f"c.{t}"), extra)
    for rule, names in plan.identifiers.items():
        for name in names:
            if rule == "real_looking_email":
                add(rule, name, lambda k, t: sql.real_email(con, f"c.{k}", f"c.{t}"))
            else:
                test = sql.real_ssn if rule == "real_looking_ssn" else sql.real_phone
                add(rule, name, lambda k, t, f=test: f(con, f"c.{k}", f"c.{t}"))
    for start, end in plan.spans:
        (sk, st), (ek, et) = plan.column(start), plan.column(end)
        where = sql.earlier(con, (f"c.{ek}", f"c.{et}"), (f"c.{sk}", f"c.{st}"))
        specs.append(_Spec("end_before_start", f"{start}..{end}", where, f"c.{st} || ' .. ' || c.{et}"))
    if "birth_date" in plan.dates and plan.entity_type in ("patients", "members"):
        k, t = plan.column("birth_date")
        future = f"({sql.is_date(con, f'c.{k}', f'c.{t}')} AND left(c.{t}, 10) > '{today.isoformat()}')"
        specs.append(_Spec("birth_in_future", "birth_date", future, f"c.{t}"))
    return specs


def _date_checks(con: Connection, plan: TypePlan) -> dict[str, str]:
    """Each field's date check (partial dates allowed, and not), as rules write it, and
    the column that may hold it (see :func:`.counting.count_grouped`'s ``shared``)."""
    checks = {}
    for i in range(len(plan.paths)):
        checks[sql.is_date(con, f"c.k{i}", f"c.t{i}")] = f"d{i}"
        checks[sql.is_date(con, f"c.k{i}", f"c.t{i}", partial=False)] = f"dd{i}"
    return checks


def _counted(
    con: Connection, specs: list[_Spec], candidates: list[tuple[str, str, str]], *, sampled: bool = False
) -> list[Counted]:
    """What :func:`.counting.count_grouped` counts: every rule (by its index), and each
    date candidate's dates and present values (with ``sampled``, also the values
    :func:`_sampled` counts: any but null, an object or an array, an empty string
    included)."""
    counted = [(str(i), s.where) for i, s in enumerate(specs)]
    for name, k, t in candidates:
        counted.append((f"date:{name}", sql.is_date(con, f"c.{k}", f"c.{t}", partial=False)))
        counted.append((f"present:{name}", f"c.{k} <> 'null'"))
        if sampled:
            value = f"(c.{k} NOT IN ('null', 'object', 'array') OR (c.{k} = 'null' AND c.{t} = ''))"
            counted.append((f"sample:{name}", value))
    return counted


def _own_id(plan: TypePlan) -> str:
    """SQL of an entity's own id as text: its first id field holding a string or number,
    else its stored UUID."""
    parts = []
    for name in plan.own_ids:
        k, t = plan.column(name)
        parts.append(f"CASE WHEN c.{k} {_SCALAR} THEN c.{t} END")
    return f"COALESCE({', '.join([*parts, 'CAST(c.entity_id AS VARCHAR)'])})"


def _examples(
    scope: Scope, plan: TypePlan, own: str, spec: _Spec, joins: Mapping[str, str] | None = None
) -> list[tuple[str, Any]]:
    """The first entities (at most five) of the type's checked rows (as ``c``) where the
    spec holds, joined only to the id tables the spec reads, parsed only for the fields
    the statement reads."""
    read = {m.split(".")[0] for m in COLUMN_REF.findall(f"{spec.where} {spec.value}")}
    joined = "".join(clause for alias, clause in (joins or {}).items() if alias in read)
    # (a field's value comes with its kind: an object's or a list's text is made alike below)
    kind = f"c.k{column[1]}" if (column := _TEXT_COLUMN.fullmatch(spec.value)) else "NULL"
    parsed = _parsed(scope, plan, f"{own} {spec.value} {kind} {spec.where} {joined}")
    # The first five in saved order (DuckDB: no ORDER BY, the scan stops at the fifth match;
    # but a join, in the order of its hash table, keeps no order on either engine).
    first = " ORDER BY c.id" if joined else scope.con.engine.first_rows("c.id")
    rows = scope.con.execute(
        f"SELECT c.id, {own}, {spec.value}, {kind} FROM ({parsed}) AS c{joined} "
        f"WHERE {spec.where}{first} LIMIT {_EXAMPLES}"
    ).fetchall()
    return [(str(i), _alike(v, k)) for _, i, v, k in sorted(rows, key=lambda r: r[0])]


_TEXT_COLUMN = re.compile(r"c\.t([0-9]+)")


def _alike(text: Any, kind: Any) -> Any:
    """An example's value as both engines then write it alike: an object's or a list's JSON
    text compact with sorted keys (DuckDB's text is compact in saved order, PostgreSQL's
    jsonb text spaced, its keys ordered by length); a number whole as an integer, else as
    Python writes its double (DuckDB keeps ``1e20`` as saved, ``100000000000000000000.0``;
    PostgreSQL's numeric writes ``100000000000000000000``, and ``1.5e-7`` as ``0.00000015``)."""
    if not isinstance(text, str):
        return text
    try:
        if kind == "number":
            number = Decimal(text)
            return str(int(number)) if number == number.to_integral_value() else repr(float(number))
        if kind in ("object", "array"):
            return json.dumps(json.loads(text), ensure_ascii=False, separators=(",", ":"), sort_keys=True)
    except (ArithmeticError, ValueError):  # (never from an engine's JSON text; kept as it is)
        pass
    return text


def _duplicates(scope: Scope, plan: TypePlan, own: str) -> list[Found]:
    """Entities sharing their own id with another of the type: the stored id is derived
    from the own id, so equal stored ids are equal own ids (no entity is parsed). Only
    the stored ids of the checked rows are counted among all of the type's."""
    if not plan.own_ids or plan.own_ids[0] == "mrn":
        return []
    con = scope.con
    checked = scope.rows(plan.entity_type)
    mine = f" WHERE a.entity_id IN (SELECT entity_id FROM ({checked}) AS w)" if scope.only else ""
    shared = (
        f"(SELECT entity_id, count(*) AS n FROM ({scope.rows(plan.entity_type, checked=False)}) AS a{mine} "
        "GROUP BY entity_id HAVING count(*) > 1)"
    )
    if scope.duplicated is not None:  # (a write's rows: counted for every type at once)
        n = scope.duplicated.get(plan.entity_type, 0)
    else:
        statement = f"SELECT count(*) FROM ({checked}) AS c JOIN {shared} AS d ON d.entity_id = c.entity_id"
        (n,) = con.execute(statement).fetchall()[0]
    if not n:
        return []
    spec = _Spec("duplicate_id", plan.own_ids[0], "true", "d.n")
    joins = {"d": f" JOIN {shared} AS d ON d.entity_id = c.entity_id"}
    return [Found("duplicate_id", plan.entity_type, plan.own_ids[0], n, _examples(scope, plan, own, spec, joins))]


def _duplicated(scope: Scope) -> dict[str, int]:
    """Per type, how many of the rows a write made share their stored id with another row
    of the type (as :func:`_duplicates` counts them, for every type in one statement)."""
    written = scope.rows()
    shared = (
        f"SELECT a.entity_type, a.entity_id FROM ({scope.rows(checked=False)}) AS a "
        f"WHERE a.entity_id IN (SELECT entity_id FROM ({written}) AS w) "
        "GROUP BY a.entity_type, a.entity_id HAVING count(*) > 1"
    )
    rows = scope.con.execute(
        f"SELECT c.entity_type, count(*) FROM ({written}) AS c JOIN ({shared}) AS d "
        "ON d.entity_id = c.entity_id AND d.entity_type = c.entity_type GROUP BY c.entity_type"
    ).fetchall()
    return {t: int(n) for t, n in rows}


def _mrn_specs(scope: Scope, plan: TypePlan, made: set[str], joins: dict[str, str]) -> list[_Spec]:
    """Patients sharing an MRN (counted in the patients' id table, over all of them)."""
    ids = _target_ids(scope, "patients", made)
    k, t = plan.column("mrn")
    joins["gm"] = f" LEFT JOIN {ids} gm ON gm.ref = {sql.ref_text(f'c.{k}', f'c.{t}')}"
    return [_Spec("duplicate_id", "mrn", f"c.{k} {_SCALAR} AND gm.own > 1", "gm.own")]


def _by_stored_id(scope: Scope, target: str, union: str, made: set[str]) -> bool:
    """Make the id table of ``target`` from the entities whose stored id is the one their
    own id would give each name of ``union`` (no text is searched, none parsed but
    those); True when that found every name (else the caller searches)."""
    con = scope.con
    stored = con.engine.stored_entity_id(target, "w.ref")
    if stored is None:
        return False
    con.execute(f"{con.engine.create_temp(con, '_hs_check_named')} AS SELECT DISTINCT ref FROM ({union}) AS w")
    made.add("_hs_check_named")
    ids = _target_ids(scope, target, made, f"a.entity_id IN (SELECT {stored} FROM _hs_check_named w)")
    (missing,) = con.execute(
        f"SELECT count(*) FROM _hs_check_named w WHERE NOT EXISTS (SELECT 1 FROM {ids} g WHERE g.ref = w.ref)"
    ).fetchall()[0]
    if missing:
        made.discard(ids)
    return not missing


def _named(scope: Scope, plan: TypePlan, target: str) -> str | None:
    """SQL of the distinct values (``ref``) the checked rows of the type give the fields
    that name ``target`` entities (and their MRNs, for patients); None when none does."""
    names = [f for f in plan.references if REFERENCES[f][0] == target]
    if target == "patients" and "mrn" in plan.own_ids:
        names.append("mrn")
    if not names:
        return None
    # (top-level fields all: read from the written rows' values, see _written_keys)
    keys = ", ".join(_literal(n) for n in names)
    return (
        f"SELECT {sql.ref_text('kind', 'text')} AS ref FROM {_VALUES} WHERE entity_type = {_literal(plan.entity_type)} "
        f"AND k IN ({keys}) AND kind {_SCALAR}"
    )


# A name a text search may not find as written in stored JSON: one with what JSON escapes,
# and, as other writers may escape them, "/" and anything outside printable ASCII.
_UNSEARCHABLE = re.compile(r'[^\x20-\x7e]|["\\/]')


def _target_ids(scope: Scope, target: str, made: set[str], where: str | None = None) -> str:
    """A temporary table of the ids (``ref``) the entities of ``target`` may be named by,
    over all of the scenario's rows of that type (those where ``where`` holds, over their
    row ``a``) parsed once, with ``own``: how many entities have it in the first of those
    fields (an MRN for patients); for patients also the day of birth and of death
    (``birth``, ``death``: valid dates only, the widest span per id)."""
    name = f"_hs_check_ids_{target}"
    if scope.shared is None:
        if name not in made:
            _make_ids(scope, target, scope.con.engine.create_temp(scope.con, name), where)
            made.add(name)
        return name
    with scope.shared.lock(target):  # (made once, by the first worker that needs it; another waits)
        return _shared_ids(scope, scope.shared, target, made)


def _shared_ids(scope: Scope, shared: _Shared, target: str, made: set[str]) -> str:
    """The id table of ``target`` every worker reads, made now if it is not yet (the
    caller holds its lock)."""
    if target not in shared.tables:
        name = f"_hs_check_ids_{target}"
        table = scope.con.engine.shared_table(scope.con, name)
        assert table is not None  # (run_rules asked before the workers started)
        _make_ids(scope, target, f"CREATE TABLE {table}", None)
        made.add(table)
        shared.tables[target] = table
    return shared.tables[target]


def _free_ids_first(scope: Scope, shared: _Shared, plan: TypePlan, every: set[str], made: set[str]) -> None:
    """Make the id tables the type reads that no other worker is making now (at the start,
    while one worker makes the patients' table, the other makes the encounters' instead of
    waiting); the others are waited for when the rules ask for them."""
    targets = [REFERENCES[name][0] for name in plan.references]
    if plan.events or "mrn" in plan.own_ids:
        targets.append("patients")
    for target in dict.fromkeys(t for t in targets if t in every):
        lock = shared.lock(target)
        if lock.acquire(blocking=False):
            try:
                _shared_ids(scope, shared, target, made)
            finally:
                lock.release()


def _make_ids(scope: Scope, target: str, create: str, where: str | None) -> None:
    """Make the id table of :func:`_target_ids` by ``create`` (the start of the statement)."""
    con = scope.con
    fields = REFERENCES[next(r for r, (t, _) in REFERENCES.items() if t == target)][1]
    paths = [(f,) for f in fields] + ([(f,) for f in ("birth_date", *DEATH_FIELDS)] if target == "patients" else [])
    rows = scope.rows(target, checked=False)
    if where is not None:
        rows = f"SELECT a.* FROM ({rows}) AS a WHERE {where}"
    # (the entities a write's rows name, found by their text or stored ids: a few)
    parsed = con.engine.json_fields(rows, "id", paths, few=where is not None and scope.only is not None)
    birth = death = "NULL"
    if target == "patients":
        n = len(fields)
        birth = f"CASE WHEN {sql.is_date(con, f'k{n}', f't{n}')} THEN left(t{n}, 10) END"
        # (the first of the fields that names a valid date: death_date, else deceased_date)
        deaths = [
            f"CASE WHEN {sql.is_date(con, f'k{i}', f't{i}')} THEN left(t{i}, 10) END"
            for i in range(n + 1, n + 1 + len(DEATH_FIELDS))
        ]
        death = f"COALESCE({', '.join(deaths)})"
    refs = ", ".join(
        f"CASE WHEN k{i} {_SCALAR} AND t{i} <> '' THEN {sql.ref_text(f'k{i}', f't{i}')} END" for i in range(len(fields))
    )
    which = ", ".join(str(i) for i in range(len(fields)))
    each = (
        f"SELECT unnest(ARRAY[{refs}]) AS ref, unnest(ARRAY[{which}]) AS f, {birth} AS birth, {death} AS death "
        f"FROM ({parsed}) AS p"
    )
    con.execute(
        f"{create} AS SELECT ref, count(*) FILTER (WHERE f = 0) AS own, min(birth) AS birth, "
        f"max(death) AS death FROM ({each}) AS e WHERE ref IS NOT NULL GROUP BY ref"
    )


def _reference_specs(
    scope: Scope, plan: TypePlan, every: set[str], made: set[str], joins: dict[str, str]
) -> list[_Spec]:
    """References to other types: unresolved ones, or the target type missing."""
    specs = []
    for j, name in enumerate(plan.references):
        target = REFERENCES[name][0]
        k, t = plan.column(name)
        if target not in every:
            specs.append(_Spec("missing_target_type", name, f"c.{k} {_SCALAR}", f"c.{t}"))
            continue
        ids = _target_ids(scope, target, made)
        joins[f"g{j}"] = f" LEFT JOIN {ids} g{j} ON g{j}.ref = {sql.ref_text(f'c.{k}', f'c.{t}')}"
        specs.append(_Spec("unresolved_reference", name, f"c.{k} {_SCALAR} AND g{j}.ref IS NULL", f"c.{t}"))
    return specs


def _event_specs(scope: Scope, plan: TypePlan, every: set[str], made: set[str], joins: dict[str, str]) -> list[_Spec]:
    """A patient's events dated before the patient's birth or after the death."""
    if not plan.events or "patients" not in every:
        return []
    con = scope.con
    people = _target_ids(scope, "patients", made)
    refs = [plan.column(f) for f in ("patient_mrn", "patient_id") if f in plan.references]
    key = sql.ref_text(f"c.{refs[0][0]}", f"c.{refs[0][1]}")
    if len(refs) == 2:  # the MRN where there is one, else the patient id
        other = sql.ref_text(f"c.{refs[1][0]}", f"c.{refs[1][1]}")
        key = f"CASE WHEN c.{refs[0][0]} {_SCALAR} THEN {key} ELSE {other} END"
    joins["p"] = f" LEFT JOIN {people} p ON p.ref = {key}"
    specs = []
    for name in plan.events:
        k, t = plan.column(name)
        valid = sql.is_date(con, f"c.{k}", f"c.{t}")
        before, after = sql.day_before(f"c.{t}", "p.birth"), sql.day_before("p.death", f"c.{t}")
        specs.append(_Spec("before_birth", name, f"{valid} AND {before}", f"c.{t}"))
        specs.append(_Spec("after_death", name, f"{valid} AND {after}", f"c.{t}"))
    return specs
