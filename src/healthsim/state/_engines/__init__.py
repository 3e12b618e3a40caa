"""The database engines behind one interface (:mod:`.base`), and which one a database uses.

``duckdb/`` keeps scenarios in an embedded file, ``postgres/`` on a team's server; each is
the only code that imports its driver. :func:`engine_for` is the one place that tells them
apart, by what the database is: a file's path or a ``postgresql://`` URL's
:class:`TeamDatabase`. Engines are imported on first use (a ``healthsim --help`` opens
neither driver).
"""

from __future__ import annotations

from pathlib import Path

from .base import AnalyticsConnection, Connection, Engine
from .postgres.server import TeamDatabase, is_team_url

__all__ = ["AnalyticsConnection", "Connection", "Database", "Engine", "TeamDatabase", "engine_for", "is_team_url"]

#: Where scenarios are kept: a DuckDB file, or a PostgreSQL database (the team store).
Database = Path | TeamDatabase


def engine_for(database: Database) -> Engine:
    """The engine that keeps ``database``."""
    if isinstance(database, TeamDatabase):
        from .postgres.engine import POSTGRES

        return POSTGRES
    from .duckdb.engine import DUCKDB

    return DUCKDB
