"""The tables both engines create alike: the schema version table, history, migrations.

Each engine's schema module (``duckdb/schema.py``, ``postgres/schema.py``) creates the
specification's tables its own way and runs its ordered migrations through
:func:`apply_migrations`; the history tables are the same SQL on both.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import uuid
from collections.abc import Callable
from typing import Any

__all__ = [
    "BIRTHS",
    "ENTITY_HISTORY",
    "VERSIONS",
    "VERSION_TABLE",
    "TOKENS",
    "add_changed_by",
    "apply_migrations",
    "create_history_tables",
    "create_tokens_table",
    "hash_token_lookups",
    "token_lookup_key",
]

VERSION_TABLE = "healthsim_state_schema_version"
VERSIONS = "healthsim_state_versions"
BIRTHS = "healthsim_state_births"
ENTITY_HISTORY = "healthsim_state_entity_history"
TOKENS = "healthsim_state_tokens"

_DDL = f"""
CREATE TABLE {VERSIONS} (
    scenario_id      UUID NOT NULL,
    version          INTEGER NOT NULL,
    changed_at       TIMESTAMP NOT NULL,
    operation        VARCHAR NOT NULL,
    name             VARCHAR NOT NULL,
    description      VARCHAR,
    tags             JSON NOT NULL,
    created_at       TIMESTAMP,
    metadata         JSON,
    changes          JSON NOT NULL,
    entity_count     BIGINT NOT NULL,
    entities_by_type JSON NOT NULL,
    PRIMARY KEY (scenario_id, version)
);
CREATE TABLE {BIRTHS} (
    scenario_id UUID NOT NULL,
    version     INTEGER NOT NULL,
    first_id    INTEGER NOT NULL,
    last_id     INTEGER NOT NULL
);
CREATE TABLE {ENTITY_HISTORY} (
    scenario_id  UUID NOT NULL,
    row_id       INTEGER NOT NULL,
    entity_type  VARCHAR NOT NULL,
    entity_id    UUID NOT NULL,
    entity_data  JSON NOT NULL,
    from_version INTEGER NOT NULL,
    to_version   INTEGER NOT NULL
);
"""


def apply_migrations(con: Any, migrations: list[tuple[int, str, Callable[[Any], None]]], current: int) -> None:
    """Run the migrations newer than ``current`` in order, each recorded in
    :data:`VERSION_TABLE` (made if missing), inside the caller's transaction (either engine)."""
    con.execute(
        f"CREATE TABLE IF NOT EXISTS {VERSION_TABLE} "
        "(version INTEGER PRIMARY KEY, description VARCHAR NOT NULL, applied_at TIMESTAMP NOT NULL)"
    )
    for version, description, migrate in migrations:
        if version > current:
            migrate(con)
            con.execute(
                f"INSERT INTO {VERSION_TABLE} VALUES (?, ?, ?)",
                [version, description, _dt.datetime.now(_dt.UTC).replace(tzinfo=None)],
            )


def _declared_types(metadata: Any) -> list[str]:
    """The entity types a scenario's metadata (JSON text) records, in order."""
    try:
        declared = json.loads(metadata).get("entity_types") if isinstance(metadata, str) else None
    except (ValueError, AttributeError):
        return []
    return [t for t in declared if isinstance(t, str)] if isinstance(declared, list) else []


def create_history_tables(con: Any) -> None:
    """Migration 3: the history tables, and version 1 of every scenario already there
    (on either engine: a DuckDB connection or the team store's)."""
    con.execute(_DDL)
    counts: dict[uuid.UUID, dict[str, int]] = {}
    for sid, entity_type, count, _ in con.execute(
        "SELECT scenario_id, entity_type, count(*), min(id) AS first FROM scenario_entities GROUP BY 1, 2 ORDER BY first"
    ).fetchall():
        counts.setdefault(sid, {})[entity_type] = count
    tags: dict[uuid.UUID, list[str]] = {}
    for sid, tag in con.execute("SELECT scenario_id, tag FROM scenario_tags ORDER BY id").fetchall():
        tags.setdefault(sid, []).append(tag)
    rows = con.execute(
        "SELECT scenario_id, name, description, created_at, updated_at, metadata FROM scenarios"
    ).fetchall()
    for row in rows:
        sid, name, description, created_at, updated_at, metadata = row
        declared = _declared_types(metadata)
        by_type = {**dict.fromkeys(declared, 0), **counts.get(sid, {})}
        con.execute(
            f"INSERT INTO {VERSIONS} VALUES (?, 1, ?, 'baseline', ?, ?, ?, ?, ?, '{{}}', ?, ?)",
            [
                sid,
                updated_at or created_at or _dt.datetime(1970, 1, 1),
                name,
                description,
                json.dumps(tags.get(sid, [])),
                created_at,
                metadata,
                sum(by_type.values()),
                json.dumps(by_type),
            ],
        )
    con.execute(
        f"INSERT INTO {BIRTHS} SELECT scenario_id, 1, min(id), max(id) FROM scenario_entities "
        "WHERE scenario_id IN (SELECT scenario_id FROM scenarios) GROUP BY scenario_id"
    )


def add_changed_by(con: Any) -> None:
    """Migration 4 (DuckDB; 3 on PostgreSQL): who made each version. Versions recorded
    before it say nobody (None): the library did not know."""
    con.execute(f"ALTER TABLE {VERSIONS} ADD COLUMN changed_by VARCHAR")


def create_tokens_table(con: Any) -> None:
    """Migration 5 (DuckDB; 4 on PostgreSQL): the HTTP server's access tokens (issue 25).

    Only a salted scrypt hash of each token is kept; ``lookup`` finds the token's row (its
    text is ``hst_<lookup>_<secret>``) through an index, so a check reads one row instead of
    hashing every row (see ``healthsim.state.tokens``). Since migration 6 (5) the column holds
    :func:`token_lookup_key` of the id, not the id."""
    con.execute(
        f"CREATE TABLE {TOKENS} (name VARCHAR PRIMARY KEY, lookup VARCHAR NOT NULL, hash VARCHAR NOT NULL, "
        "scope VARCHAR NOT NULL, tags JSON NOT NULL, created_at TIMESTAMP NOT NULL, "
        "last_used_at TIMESTAMP, revoked_at TIMESTAMP)"
    )
    con.execute(f"CREATE INDEX {TOKENS}_by_lookup ON {TOKENS} (lookup)")


def token_lookup_key(lookup: str) -> str:
    """What the tokens table keeps of a token's lookup id, and finds its row by: the id's
    SHA-256 (hex). The id itself is in no table, so SQL that can read the table (the query
    sandbox) learns no token's id (see ``healthsim.state.tokens``)."""
    return hashlib.sha256(lookup.encode("ascii")).hexdigest()


def hash_token_lookups(con: Any) -> None:
    """Migration 6 (DuckDB; 5 on PostgreSQL): tokens made before it kept their lookup id in
    the clear (16 hex digits); each is replaced by :func:`token_lookup_key` of it. The
    tokens are the same: their texts still verify."""
    rows = con.execute(f"SELECT name, lookup FROM {TOKENS} WHERE length(lookup) = 16").fetchall()
    for name, lookup in rows:
        con.execute(f"UPDATE {TOKENS} SET lookup = ? WHERE name = ?", [token_lookup_key(lookup), name])
