"""Counting a type's rules over its fields' distinct values, not over every entity.

A check's cost was its rules' SQL evaluated on every row (a date's regular expression
and day-of-month arithmetic, a LOINC or NPI check digit: several microseconds each), not
the parse: 250,000 lab results took 1.4 s for the LOINC rule alone, 0.06 s over their
distinct codes. So one statement parses the rows once and groups them by ``GROUPING
SETS``, one set per combination of columns some rules read (a code; a date; a start and
an end; a reference and its target's id), and every rule is then counted over its set's
distinct values, each weighed by how many rows have it (``n``): codes, genders and dates
repeat, so most rules look at few values; a column of unique values costs one hash
aggregate of its values. (Materializing the parsed rows in a temporary table instead
cost as much as the parse again.)
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping, Sequence

from .._engines import Connection

__all__ = ["COLUMN_REF", "Counted", "count_grouped"]

#: A column a rule's SQL reads: ``c.k3``/``c.t3`` (the checked rows' fields), ``g0.ref``,
#: ``gm.own`` (id tables of referenced types), ``p.birth``/``p.death`` (the patient's),
#: ``d.n`` (how many entities share a stored id).
#: Every rule's SQL is written by this package with exactly these names.
COLUMN_REF = re.compile(r"\b(?:c\.[kt][0-9]+|g[0-9a-z]*\.(?:ref|own)|p\.(?:birth|death)|d\.n)\b")

#: A named condition to count: ``(name, SQL over the columns above)``.
Counted = tuple[str, str]

#: The total of the rows' ``_hs_keys`` column, in :func:`count_grouped`'s answer.
KEYS = "_hs_keys"


def count_grouped(
    con: Connection,
    source: str,
    joins: Mapping[str, str],
    counted: Sequence[Counted],
    *,
    keys: bool = False,
    unique: Collection[str] = (),
    few: bool = False,
    shared: Mapping[str, str] | None = None,
) -> dict[str, int]:
    """How many rows of ``source`` (SQL of the parsed rows, read as ``c``, with the
    ``joins`` by alias) match each condition, in one statement; with ``keys``, also the
    total of their ``_hs_keys`` column (under :data:`KEYS`).

    A condition that is cheap, or reads a column of ``unique`` (mostly distinct values:
    grouping by it would cost a hash table as large as the rows), is evaluated on every
    row instead, as a flag; the flags are grouped together (a few combinations). With
    ``few`` (the rows a write made), every condition is counted row by row in one plain
    aggregate: on a few rows, planning the grouping costs more than it saves; and each
    expression of ``shared`` (SQL text -> a column name ``d…``) that conditions repeat
    is computed once per row, in a subquery (planning a date check costs about 1 ms,
    more than counting a write's rows)."""
    if few:
        return _count_plain(con, source, joins, counted, keys=keys, shared=shared or {})
    sets: dict[tuple[str, ...], list[Counted]] = {}
    flags: list[tuple[str, str]] = []  # (name, flag column)
    computed: list[str] = []
    for name, where in sorted(counted, key=lambda c: -len(set(COLUMN_REF.findall(c[1])))):
        read = set(COLUMN_REF.findall(where))
        if _row_by_row(read, unique):
            flags.append((name, f"f{len(flags)}"))
            computed.append(f"COALESCE(({where}), false) AS f{len(flags) - 1}")
            continue
        # (any grouping set holds every row: a condition is counted in the first set
        # that has its columns, so there are as few sets, and hash tables, as can be)
        home = next((s for s in sets if read <= set(s)), tuple(sorted(read)))
        sets.setdefault(home, []).append((name, where))
    if not sets and not flags:
        if not keys:
            return {}
        sets[()] = []
    columns = sorted({c for s in sets for c in s})
    aliases = {a for _, w in counted for a in _aliases(w)}
    joined = "".join(clause for alias, clause in joins.items() if alias in aliases)
    rows = ", ".join([*(f"{c} AS {_flat(c)}" for c in columns), *computed, "c._hs_keys"])
    grouped = [_flat(c) for c in columns] + [f for _, f in flags]
    groups = [tuple(_flat(c) for c in s) for s in sets] + ([tuple(f for _, f in flags)] if flags else [])
    picked = [*grouped, *(f"GROUPING({g}) AS {g}__g" for g in grouped)]
    inner = (
        f"SELECT {', '.join([*picked, 'count(*) AS n', f'sum(_hs_keys) AS {KEYS}'])} "
        f"FROM (SELECT {rows} FROM ({source}) AS c{joined}) AS c "
        f"GROUP BY GROUPING SETS ({', '.join('(' + ', '.join(g) + ')' for g in groups)})"
    )
    sums, names = [], []
    for members_of, members in sets.items():
        mine = _exactly(grouped, {_flat(c) for c in members_of})
        for name, where in members:
            rewritten = COLUMN_REF.sub(lambda m: "c." + _flat(m.group(0)), where)
            sums.append(f"sum(n) FILTER (WHERE {mine} AND ({rewritten}))")
            names.append(name)
    mine = _exactly(grouped, set(groups[-1]))
    for name, flag in flags:
        sums.append(f"sum(n) FILTER (WHERE {mine} AND c.{flag})")
        names.append(name)
    if keys:  # (the last set's rows are every row too)
        sums.append(f"sum({KEYS}) FILTER (WHERE {mine})")
        names.append(KEYS)
    row = con.execute(f"SELECT {', '.join(sums)} FROM ({inner}) AS c").fetchall()[0]
    return {name: int(n or 0) for name, n in zip(names, row, strict=True)}


def _row_by_row(read: set[str], unique: Collection[str]) -> bool:
    """Whether a condition reading ``read`` is cheaper on every row than over distinct
    values: it reads no text (a kind, a reference's match: cheap), or a column of
    mostly distinct values (a text in ``unique``, a reference's target, a patient's
    birth or death beside an event's date)."""
    texts = [c for c in read if c.startswith("c.t")]
    return not texts or any(c in unique or c.split(".")[0] not in ("c", "gm", "d") for c in read)


def _count_plain(
    con: Connection,
    source: str,
    joins: Mapping[str, str],
    counted: Sequence[Counted],
    *,
    keys: bool,
    shared: Mapping[str, str],
) -> dict[str, int]:
    used = {e: n for e, n in sorted(shared.items(), key=lambda s: -len(s[0])) if any(e in w for _, w in counted)}
    if used:
        rewritten = []
        for name, where in counted:
            for expression, column in used.items():
                where = where.replace(expression, f"c.{column}")
            rewritten.append((name, where))
        counted = rewritten
        computed = ", ".join(f"{expression} AS {column}" for expression, column in used.items())
        source = f"SELECT *, {computed} FROM ({source}) AS c"
    columns = [f"count(*) FILTER (WHERE {where})" for _, where in counted]
    names = [name for name, _ in counted]
    if keys:
        columns.append("sum(c._hs_keys)")
        names.append(KEYS)
    if not columns:
        return {}
    aliases = {a for _, w in counted for a in _aliases(w)}
    joined = "".join(clause for alias, clause in joins.items() if alias in aliases)
    row = con.execute(f"SELECT {', '.join(columns)} FROM ({source}) AS c{joined}").fetchall()[0]
    return {name: int(n or 0) for name, n in zip(names, row, strict=True)}


def _aliases(where: str) -> set[str]:
    return {c.split(".")[0] for c in COLUMN_REF.findall(where)}


def _exactly(grouped: list[str], members: set[str]) -> str:
    """SQL: a row of the grouping set of exactly ``members`` (a subset's rows are not)."""
    return " AND ".join(f"c.{g}__g = {0 if g in members else 1}" for g in grouped) or "true"


def _flat(column: str) -> str:
    return column.replace(".", "__")
