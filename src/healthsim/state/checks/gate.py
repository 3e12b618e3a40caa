"""``check="warn"|"refuse"`` of a save or an add: the check of the rows just written,
inside the transaction that writes them (so a refusal writes nothing)."""

from __future__ import annotations

import uuid

from .._engines import Connection
from ..errors import CheckFailedError, InvalidInputError
from ..history import BIRTHS
from . import CheckResult, check_rows, problem_lines

__all__ = ["CheckGate", "check_gate", "written_by"]

_MODES = ("warn", "refuse")


class CheckGate:
    """Checks the rows a save or an add wrote; keeps the answer; refuses on errors
    when asked to (raising inside the write's transaction, which then rolls back)."""

    def __init__(self, mode: str, name: str) -> None:
        self.mode = mode
        self.name = name
        self.answer: CheckResult | None = None

    def __call__(self, con: Connection, scenario_id: uuid.UUID, written: tuple[int, int] | None = None) -> None:
        """Check the scenario's rows: all of them, or those ``written`` by ``(version, first
        new row id)`` of an add (see :func:`written_by`)."""
        only = None if written is None else written_by(con, scenario_id, *written)
        self.answer = check_rows(con, scenario_id, only=only, written=written)
        if self.mode == "refuse" and not self.answer["ok"]:
            raise CheckFailedError(self.name, problem_lines(self.answer), self.answer)


def check_gate(check: str | None, name: str) -> CheckGate | None:
    """The gate of ``check=`` (None: no check, no cost).

    Raises:
        InvalidInputError: ``check`` is not None, ``"warn"`` or ``"refuse"``.
    """
    if check is None:
        return None
    if check not in _MODES:
        raise InvalidInputError(f"check must be 'warn', 'refuse' or None (no check), not {check!r}")
    return CheckGate(check, str(name).strip())


def written_by(con: Connection, scenario_id: uuid.UUID, version: int, first_new_id: int) -> str:
    """SQL condition on a row's ``id``: written by ``version`` of an add (a new row from
    ``first_new_id`` on, or a row it replaced in place, recorded in its births). The
    ranges are read first (a few numbers): a condition of constants costs every query
    that filters by it nothing, where a subquery was paid per row."""
    ranges = con.execute(
        f"SELECT first_id, last_id FROM {BIRTHS} WHERE scenario_id = ? AND version = ?", [scenario_id, version]
    ).fetchall()
    parts = [f"id >= {int(first_new_id)}"] + [f"id BETWEEN {int(a)} AND {int(b)}" for a, b in ranges]
    return " OR ".join(parts)
