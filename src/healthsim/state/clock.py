"""The library's clock: one definition of "now" for every stored time."""

from __future__ import annotations

import datetime as _dt

__all__ = ["utcnow"]


def utcnow() -> _dt.datetime:
    """Now in UTC without a time zone: the tables store naive UTC times."""
    return _dt.datetime.now(_dt.UTC).replace(tzinfo=None)
