"""Checking a scenario: broken references, impossible timelines, malformed codes and
identifiers that look real, found in the database (see ``DESIGN.md``, "Checking a
scenario", and docs/decisions.md).

:func:`check_rows` runs every rule of :mod:`.rules` over a scenario's rows (or only the
rows a save or an add just wrote) and returns ``{ok, checked, problems}``;
:func:`healthsim.summary_view.check_table` draws it for a terminal.
"""

from __future__ import annotations

import datetime as _dt
import re
import uuid
from collections.abc import Mapping
from typing import Any, Literal, TypedDict, cast

from .._engines import Connection
from ..clock import utcnow
from ..reading import ScenarioReader
from ..version_cache import KeyTotal
from .dependents import DEPENDENTS, find_dependents
from .rules import RULES
from .run import Scope, run_rules
from .shape import CHECK_BYTES, result

__all__ = [
    "CheckExample",
    "CheckProblem",
    "CheckResult",
    "CHECK_BYTES",
    "CHECK_MODES",
    "RULES",
    "check_reader",
    "check_rows",
    "problem_lines",
]


class CheckExample(TypedDict):
    """One entity with a problem: its own id (else its stored UUID) and the value."""

    id: str
    value: Any


class CheckProblem(TypedDict):
    """One rule broken by ``count`` entities of one type, in one field."""

    rule: str
    severity: Literal["error", "warning"]
    type: str
    field: str
    count: int
    examples: list[CheckExample]  # at most five, in saved order


class CheckResult(TypedDict, total=False):
    """What :meth:`~healthsim.state.ScenarioStore.check_scenario` returns
    (``truncated``, ``problems_omitted``, ``checked_omitted`` only when it was cut)."""

    ok: bool  # no problem is an error
    checked: dict[str, int]  # type -> entities checked
    problems: list[CheckProblem]  # errors first, then the largest counts
    truncated: bool
    problems_omitted: int
    omitted_counts: dict[str, int]  # the omitted problems' entities per severity
    checked_omitted: int


#: What ``check=`` of a save or an add may ask for (None: no check).
CHECK_MODES = ("warn", "refuse")


_COLUMNS = "id, entity_id, entity_type, entity_data"


def check_reader(
    reader: ScenarioReader,
    *,
    key_totals: Mapping[str, KeyTotal] | None = None,
    budget: int = CHECK_BYTES,
    today: _dt.date | None = None,
) -> CheckResult:
    """Check the scenario (version) ``reader`` reads: see :func:`check_rows`.

    Args:
        key_totals: what the save counted of each type's keys (``VersionCache.key_totals``),
            which spares a pass over the entities to learn their keys.
        today: the day births in the future are told by (default: today in UTC).
    """

    def base(entity_type: str | None) -> str:
        return reader.rows_sql(entity_type, columns=_COLUMNS)

    day = today or utcnow().date()
    scope = Scope(reader.connection, base, day, key_totals=key_totals, parallel=reader.shared_rows)
    return _checked(scope, budget)


def check_rows(
    con: Connection,
    scenario_id: uuid.UUID,
    *,
    only: str | None = None,
    today: _dt.date | None = None,
    budget: int = CHECK_BYTES,
    written: tuple[int, int] | None = None,
) -> CheckResult:
    """Check one scenario's rows in ``scenario_entities`` (all, or those matching the SQL
    condition ``only`` on their ``id``, against all of the scenario's rows), inside the
    caller's transaction (a save or an add about to be committed).

    With ``written`` (an add's ``(version, first new row id)``, ``only`` its rows), the
    stored rows that name an entity the add replaced are checked again for what that can
    change (references to it; a patient's events against its birth and death): see
    :mod:`.dependents`.

    Returns:
        ``{"ok", "checked": {type: n}, "problems": [{"rule", "severity", "type",
        "field", "count", "examples": [{"id", "value"}…]}]}`` within ``budget`` bytes
        (``truncated`` and ``problems_omitted`` say what was cut).
    """

    def base(entity_type: str | None) -> str:
        sql = f"SELECT {_COLUMNS} FROM scenario_entities WHERE scenario_id = '{scenario_id}'"
        return sql if entity_type is None else sql + " AND entity_type = '" + entity_type.replace("'", "''") + "'"

    day = today or utcnow().date()
    checked, found = run_rules(Scope(con, base, day, only))
    if only is not None and written is not None:
        rechecked = find_dependents(con, scenario_id, base, written, only)
        if rechecked:  # those rules again, over the written rows and the stored ones naming what changed
            try:
                again_only = f"({only}) OR id IN (SELECT id FROM {DEPENDENTS})"
                _, again = run_rules(Scope(con, base, day, again_only, recheck=frozenset(rechecked)))
            finally:
                con.execute(f"DROP TABLE IF EXISTS {DEPENDENTS}")
            found = [f for f in found if (f.rule, f.field) not in rechecked]
            found += [f for f in again if (f.rule, f.field) in rechecked]
    return cast(CheckResult, result(checked, found, budget))


def _checked(scope: Scope, budget: int) -> CheckResult:
    checked, found = run_rules(scope)
    return cast(CheckResult, result(checked, found, budget))


# Characters of an entity's id that a terminal would act on or that break a line: escaped
# in an error message (which the CLI prints as it is).
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def problem_lines(answer: CheckResult, limit: int = 3) -> str:
    """The first problems with errors in one line each (for an error message)."""
    errors = [p for p in answer["problems"] if p["severity"] == "error"][:limit]

    def example(e: CheckExample) -> str:
        named = _CONTROL.sub(lambda m: f"\\u{ord(m.group()):04x}", str(e["id"]))
        return f" (e.g. {named}: {e['value']!r})"

    return "; ".join(
        f"{p['count']} {p['type']}.{p['field']} {p['rule']}" + (example(p["examples"][0]) if p["examples"] else "")
        for p in errors
    )
