"""Who is calling and what they may touch: the grant an HTTP caller's token carries.

A server that serves many callers (``healthsim mcp --http``) checks each request's token and
runs the tool inside :func:`granted`; the operations read :func:`current_grant` to decide
what the caller may see and change. Outside a grant (the library, the terminal, the stdio
server) everything is allowed, as before: the person at the keyboard owns the database.

A context variable, so threads and tasks serving different callers never mix their grants.
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Literal

from .actor import acting_as

__all__ = ["SCOPES", "Grant", "Scope", "current_grant", "granted"]

Scope = Literal["read", "write", "admin"]

#: The scopes from least to most: each allows what the ones before it allow.
SCOPES: tuple[Scope, ...] = ("read", "write", "admin")


@dataclass(frozen=True)
class Grant:
    """What one token allows.

    Attributes:
        name: The token's name (never its secret): recorded as ``by`` in history.
        scope: ``read``, ``write`` or ``admin``.
        tags: The tags whose scenarios the token may see and change; empty: all scenarios.
    """

    name: str
    scope: Scope
    tags: tuple[str, ...] = ()

    def allows(self, needed: Scope) -> bool:
        """Whether this grant's scope includes ``needed``."""
        return SCOPES.index(self.scope) >= SCOPES.index(needed)


_GRANT: contextvars.ContextVar[Grant | None] = contextvars.ContextVar("healthsim_state_grant", default=None)


@contextmanager
def granted(grant: Grant) -> Iterator[None]:
    """Run the block as ``grant``'s caller: its limits apply and its changes are recorded
    as made by the token's name."""
    token = _GRANT.set(grant)
    try:
        with acting_as(grant.name):
            yield
    finally:
        _GRANT.reset(token)


def current_grant() -> Grant | None:
    """The grant of the caller being served now, or None when nothing limits the caller."""
    return _GRANT.get()
