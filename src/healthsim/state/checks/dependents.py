"""The stored entities an upsert may make wrong: those that name an entity it replaced.

An add's check checks the rows the add wrote. But a row it replaced in place can change
what *stored* rows mean: a patient given a later birth date puts its stored encounters
before the birth, an earlier death puts them after it, another MRN leaves the stored
references to the old one pointing at nothing. A whole check reports those; so must the
add's. The rows to look at again are found here: for each referenced type, the entities
the add replaced (their old rows, archived by the add, and their new ones) — only when a
name they may be referenced by, or a patient's birth or death, changed — then the stored
rows of other types that name one of those names (a text search of the stored JSON for
the names, then an exact match of the reference fields).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable

from .._engines import Connection
from ..history import ENTITY_HISTORY
from .names import names_filter
from .rules import DEATH_FIELDS, EVENT_FIELDS, REFERENCES
from .sql import ref_text

__all__ = ["DEPENDENTS", "Rechecked", "find_dependents"]

#: The temporary table of the row ids of the stored rows to check again (the caller drops it).
DEPENDENTS = "_hs_check_dependents"
_SCALAR = "IN ('string', 'number')"

#: The (rule, field) pairs a replaced entity of a type can change in the rows naming it.
Rechecked = set[tuple[str, str]]


def find_dependents(
    con: Connection,
    scenario_id: uuid.UUID,
    rows: Callable[[str | None], str],
    written: tuple[int, int],
    only: str,
) -> Rechecked:
    """Fill :data:`DEPENDENTS` with the ids of the stored rows (not written by the add)
    that name an entity the add replaced in a way that matters, and answer the rules and
    fields to count again over them and the written rows (empty: nothing to check again;
    the table is then not made).

    Args:
        rows: SQL of the scenario's rows, of one type or all (``base`` of the check).
        written: the add's ``(version, first new row id)``.
        only: the SQL condition on ``id`` of the rows the add wrote.
    """
    version, first_new = written
    rechecked: Rechecked = set()
    conditions: list[str] = []
    # (the types of which the add replaced or removed entities: it archived their old rows)
    archived = con.execute(
        f"SELECT DISTINCT entity_type FROM {ENTITY_HISTORY} WHERE scenario_id = ? AND to_version = ?",
        [scenario_id, version],
    ).fetchall()
    for target in sorted({t for t, _ in REFERENCES.values()} & {t for (t,) in archived}):
        names = _changed_names(con, scenario_id, rows, target, version, f"id < {int(first_new)} AND ({only})")
        if not names:
            continue
        fields = [f for f, (t, _) in REFERENCES.items() if t == target]
        rechecked |= {("unresolved_reference", f) for f in fields}
        if target == "patients":
            rechecked |= {(rule, f) for rule in ("before_birth", "after_death") for f in EVENT_FIELDS}
        conditions.append(_naming(con, rows, fields, names, target, only))
    if not conditions:
        return set()
    con.execute(f"{con.engine.create_temp(con, DEPENDENTS)} AS {' UNION '.join(conditions)}")
    return rechecked


def _changed_names(
    con: Connection,
    scenario_id: uuid.UUID,
    rows: Callable[[str | None], str],
    target: str,
    version: int,
    replaced: str,
) -> list[str]:
    """The names (values of the fields references to ``target`` may name) of the entities
    of ``target`` the add replaced or removed, old and new, when any of those names or
    (patients) a birth or death differs between the old rows and the new; else none."""
    fields = REFERENCES[next(r for r, (t, _) in REFERENCES.items() if t == target)][1]
    read = list(fields) + (["birth_date", *DEATH_FIELDS] if target == "patients" else [])
    paths = [(f,) for f in read]
    old = (
        f"SELECT row_id AS id, entity_data FROM {ENTITY_HISTORY} WHERE scenario_id = '{scenario_id}' "
        f"AND to_version = {int(version)} AND entity_type = '{target}'"
    )
    new = f"SELECT id, entity_data FROM ({rows(target)}) AS r WHERE {replaced}"
    values = ", ".join(f"CASE WHEN k{i} {_SCALAR} THEN {ref_text(f'k{i}', f't{i}')} END" for i in range(len(read)))
    seen: list[set[tuple[str | None, ...]]] = []
    for source in (old, new):
        parsed = con.engine.json_fields(source, "id", paths, few=True)
        seen.append({tuple(r) for r in con.execute(f"SELECT {values} FROM ({parsed}) AS p").fetchall()})
    if seen[0] == seen[1] or not seen[0]:  # (nothing replaced, or nothing that matters changed)
        return []
    n = len(fields)
    return sorted({str(v) for each in seen for row in each for v in row[:n] if v not in (None, "")})


def _naming(
    con: Connection, rows: Callable[[str | None], str], fields: list[str], names: list[str], target: str, only: str
) -> str:
    """SQL of the ids of the stored rows not written by the add (nor of ``target``) whose
    reference ``fields`` hold one of ``names``: their text searched first, then parsed."""
    text = names_filter(con, "CAST(a.entity_data AS VARCHAR)", names)
    candidates = (
        f"SELECT a.* FROM ({rows(None)}) AS a WHERE a.entity_type <> '{target}' AND NOT ({_on(only, 'a')}) AND {text}"
    )
    parsed = con.engine.json_fields(candidates, "id", [(f,) for f in fields], few=True)
    listed = ", ".join("'" + n.replace("'", "''") + "'" for n in names)
    matched = " OR ".join(
        f"(k{i} {_SCALAR} AND {ref_text(f'k{i}', f't{i}')} IN ({listed}))" for i in range(len(fields))
    )
    return f"SELECT id FROM ({parsed}) AS p WHERE {matched}"


def _on(condition: str, alias: str) -> str:
    """``condition`` (SQL on a bare ``id``) on the rows of ``alias``."""
    return condition.replace("id", f"{alias}.id")
