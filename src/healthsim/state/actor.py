"""Who makes a change: the name each history row records as ``by`` (``changed_by``).

Kept apart from :mod:`.history`, which re-exports it, so that :mod:`.access` (a caller's
grant, which names the actor) imports nothing of the operations that consult the grant.
"""

from __future__ import annotations

import contextvars
import getpass
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["acting_as", "current_actor"]

_ACTOR: contextvars.ContextVar[str | None] = contextvars.ContextVar("healthsim_state_actor", default=None)


@contextmanager
def acting_as(name: str | None) -> Iterator[None]:
    """Record changes made inside this block as made by ``name`` (e.g. an HTTP token's
    name); None: the operating-system user. A context variable, so threads and tasks
    serving different callers do not mix their names."""
    token = _ACTOR.set(name.strip() or None if isinstance(name, str) else None)
    try:
        yield
    finally:
        _ACTOR.reset(token)


def current_actor() -> str:
    """Who makes a change now: the name given to :func:`acting_as`, else the
    operating-system user (``getpass.getuser()``), else ``"unknown"``."""
    given = _ACTOR.get()
    if given:
        return given
    try:
        return getpass.getuser() or "unknown"
    except Exception:  # no user name anywhere (a container's bare uid): KeyError or OSError
        return "unknown"
