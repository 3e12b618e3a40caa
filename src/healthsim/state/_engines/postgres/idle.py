"""Idle team store connections kept for this process's next operation.

Every store operation used to log in anew: a TCP connection, SCRAM password exchange (and
TLS, on a real network), a new server process. That cost ~5 ms next to the server and
several round trips across a network, on every call of an assistant's tool. The
operation's connection is now handed back when the operation ends cleanly and taken by the
next operation on the same database (the same URL: user, password, host, options):

- at most :data:`MAX_IDLE` connections wait, all databases together, each at most
  :data:`MAX_IDLE_SECONDS` (an idle process soon holds none of the server's connection slots);
- a connection is kept only when it is idle (no transaction open: the operation committed
  or rolled back) and the operation raised nothing; it is reset on the way in (temporary
  tables, settings and session locks go: ``DISCARD TEMP``, ``RESET ALL``,
  ``pg_advisory_unlock_all()``) and asked ``SELECT 1`` on the way out, so that one the server
  closed meanwhile (a restart, a dropped database) is replaced by a new login instead of
  failing the operation;
- a forked child never uses its parent's connections, and letting go of them there does not
  end the parent's sessions on the sockets both share (see :func:`_forget_after_fork`).

The SQL sandbox does not take part: its sessions are its own, cut off at its deadline.
"""

from __future__ import annotations

import atexit
import os
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ...._lazy import lazy_module
from .server import SESSION_SETTINGS

if TYPE_CHECKING:  # imported on first use: see healthsim._lazy
    import psycopg
else:
    psycopg = lazy_module("psycopg")

__all__ = ["MAX_IDLE", "MAX_IDLE_SECONDS", "close_idle_connections", "give_back", "take"]

#: Idle connections kept at most, all databases together.
MAX_IDLE = 4
#: An idle connection older than this is closed rather than used.
MAX_IDLE_SECONDS = 30.0
#: Everything a finished operation may have left on its session, undone in one round trip
#: (``RESET ALL`` returns to the role's and database's settings: the library's own follow).
_RESET = f"DISCARD TEMP; RESET ALL; {SESSION_SETTINGS}; SELECT pg_advisory_unlock_all()"


@dataclass
class _Idle:
    url: str
    raw: psycopg.Connection
    since: float


_idle: list[_Idle] = []
_guard = threading.Lock()


def _close(raw: psycopg.Connection) -> None:
    try:
        raw.close()
    except Exception:  # already broken: nothing to end
        pass


def take(url: str) -> psycopg.Connection | None:
    """An idle connection to ``url`` that answers, or None (then log in anew)."""
    now = time.monotonic()
    found: _Idle | None = None
    stale: list[_Idle] = []
    with _guard:
        for entry in reversed(_idle):  # the most recently used first
            if now - entry.since > MAX_IDLE_SECONDS:
                stale.append(entry)
            elif found is None and entry.url == url:
                found = entry
        for entry in [*stale, *([found] if found else [])]:
            _idle.remove(entry)
    for entry in stale:
        _close(entry.raw)
    if found is None:
        return None
    try:
        found.raw.execute("SELECT 1")
    except psycopg.Error:  # the server closed it meanwhile
        _close(found.raw)
        return None
    return found.raw


def give_back(url: str, raw: psycopg.Connection) -> bool:
    """Keep ``raw`` for the next operation on ``url``, if it is idle and resets cleanly.

    Returns:
        Whether it was kept; when not, the caller closes it.
    """
    if raw.closed or raw.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
        return False
    try:
        raw.execute(_RESET)
    except psycopg.Error:
        return False
    evicted: _Idle | None = None
    with _guard:
        _idle.append(_Idle(url, raw, time.monotonic()))
        if len(_idle) > MAX_IDLE:
            evicted = _idle.pop(0)  # the longest idle
    if evicted is not None:
        _close(evicted.raw)
    return True


def close_idle_connections() -> None:
    """Close this process's idle connections (they are also closed when it exits)."""
    with _guard:
        mine = list(_idle)
        _idle.clear()
    for entry in mine:
        _close(entry.raw)


def _forget_after_fork() -> None:
    """In a forked child: the parent's connections are not this process's to use or end.

    Their sockets are pointed at the null device here, so that when the child lets go of
    them (closing, or collecting them as it exits) the goodbye libpq sends goes nowhere
    instead of ending the parent's session on the socket both processes share.
    """
    global _guard
    _guard = threading.Lock()  # another thread may have held it at the fork
    for entry in _idle:
        try:
            null = os.open(os.devnull, os.O_RDWR)
            try:
                os.dup2(null, entry.raw.fileno())
            finally:
                os.close(null)
        except Exception:  # no socket left to protect
            pass
    _idle.clear()


atexit.register(close_idle_connections)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_after_fork)
