"""Database schema: the specification's three tables, a version table, and migrations.

The tables are exactly the specification's, minus the ``REFERENCES`` clauses: DuckDB
checks foreign keys too eagerly to delete a scenario's entities and the scenario in one
transaction ("Violates foreign key constraint … still referenced"), so the library keeps
the link itself, and tests check that no entity or tag row is ever orphaned.

Migrations are ordered and recorded in :data:`VERSION_TABLE` (not ``schema_migrations``,
which earlier HealthSim releases own). Migration 1 creates the tables, or rebuilds the
tables an earlier release wrote (VARCHAR ids, foreign keys, a unique triple) into ours,
keeping every row and leaving that release's other tables alone. All pending migrations
run in one transaction on the first read-write open.
"""

from __future__ import annotations

import datetime as _dt
import json
import uuid
from collections.abc import Callable

import duckdb
import pyarrow as pa

from ...entities import id_fields
from ...errors import DatabaseError
from ...id_sql import entity_uuid_select
from ..ddl import (
    VERSION_TABLE,
    add_changed_by,
    apply_migrations,
    create_history_tables,
    create_tokens_table,
    hash_token_lookups,
)
from .connection import DuckConnection, transaction

__all__ = [
    "SCHEMA_VERSION",
    "STAGING_TABLE",
    "VERSION_TABLE",
    "begin_staging",
    "discard_staging",
    "end_staging",
    "ensure_schema",
    "entity_uuid_select",
    "prepare",
    "recover_staging",
    "schema_version",
]


_TABLES_DDL = """
CREATE TABLE scenarios (
    scenario_id   UUID PRIMARY KEY,
    name          VARCHAR UNIQUE NOT NULL,
    description   VARCHAR,
    created_at    TIMESTAMP DEFAULT CURRENT_TIMESTAMP,
    updated_at    TIMESTAMP DEFAULT CURRENT_TIMESTAMP,
    metadata      JSON
);
CREATE TABLE scenario_entities (
    id            INTEGER PRIMARY KEY,
    scenario_id   UUID NOT NULL,
    entity_type   VARCHAR NOT NULL,
    entity_id     UUID NOT NULL,
    entity_data   JSON NOT NULL,
    created_at    TIMESTAMP DEFAULT CURRENT_TIMESTAMP
);
CREATE TABLE scenario_tags (
    id            INTEGER PRIMARY KEY,
    scenario_id   UUID NOT NULL,
    tag           VARCHAR NOT NULL,
    UNIQUE(scenario_id, tag)
);
"""

_OUR_COLUMNS = {
    "scenarios": {
        "scenario_id": "UUID",
        "name": "VARCHAR",
        "description": "VARCHAR",
        "created_at": "TIMESTAMP",
        "updated_at": "TIMESTAMP",
        "metadata": "JSON",
    },
    "scenario_entities": {
        "id": "INTEGER",
        "scenario_id": "UUID",
        "entity_type": "VARCHAR",
        "entity_id": "UUID",
        "entity_data": "JSON",
        "created_at": "TIMESTAMP",
    },
    "scenario_tags": {"id": "INTEGER", "scenario_id": "UUID", "tag": "VARCHAR"},
}


def _table_columns(con: DuckConnection, table: str) -> dict[str, str] | None:
    rows = con.execute(
        "SELECT column_name, data_type FROM duckdb_columns() "
        "WHERE database_name = current_database() AND schema_name = 'main' AND table_name = ?",
        [table],
    ).fetchall()
    return {name: dtype for name, dtype in rows} if rows else None


def _has_foreign_keys(con: DuckConnection, table: str) -> bool:
    return bool(
        con.execute(
            "SELECT count(*) FROM duckdb_constraints() WHERE database_name = current_database() "
            "AND table_name = ? AND constraint_type = 'FOREIGN KEY'",
            [table],
        ).fetchall()[0][0]
    )


def _legacy_entity_data(entity_type: str, entity_id: str, entity_data: str) -> str:
    """Keep a legacy non-UUID ``entity_id`` as ``_entity_id`` when the data lacks it."""
    data = json.loads(entity_data)
    if not isinstance(data, dict) or "_entity_id" in data:
        return entity_data
    if any(data.get(field) == entity_id for field in id_fields(entity_type)):
        return entity_data  # the entity's own id field already carries it
    data["_entity_id"] = entity_id
    return json.dumps(data, ensure_ascii=False, separators=(",", ":"))


def _keep_legacy_entity_ids(con: DuckConnection) -> None:
    """Write ``_entity_id`` into rows whose legacy non-UUID id the data does not carry."""
    rows = con.execute(
        "SELECT id, entity_type, entity_id::VARCHAR, entity_data FROM _hs_upgrade_scenario_entities "
        "WHERE TRY_CAST(entity_id::VARCHAR AS UUID) IS NULL AND entity_data IS NOT NULL"
    ).fetchall()
    changed = [
        (row_id, new)
        for row_id, entity_type, entity_id, data in rows
        if (new := _legacy_entity_data(entity_type, entity_id, data)) is not data
    ]
    if not changed:
        return
    updates = pa.table(
        {
            "id": pa.array([row_id for row_id, _ in changed], pa.int32()),
            "entity_data": pa.array([text for _, text in changed], pa.string()),
        }
    )
    con.register("_hs_legacy_updates", updates)
    try:
        con.execute(
            "UPDATE scenario_entities SET entity_data = u.entity_data FROM _hs_legacy_updates u "
            "WHERE scenario_entities.id = u.id"
        )
    finally:
        con.unregister("_hs_legacy_updates")


def _rebuild_legacy_tables(con: DuckConnection) -> None:
    """Turn an earlier release's three tables into ours, row for row."""
    for table, ours in _OUR_COLUMNS.items():
        columns = _table_columns(con, table)
        if columns is None:
            continue
        unknown = set(columns) - set(ours)
        if unknown:
            raise DatabaseError(
                f"table {table!r} has columns this release does not know ({', '.join(sorted(unknown))}); "
                "it was not changed. Back up the database file and report this, or point "
                "HEALTHSIM_DB at a new file"
            )
    for table in _OUR_COLUMNS:
        if _table_columns(con, table) is not None:
            con.execute(f"CREATE TABLE _hs_upgrade_{table} AS SELECT * FROM {table}")
    # Children first: the legacy foreign keys point at scenarios.
    for table in ("scenario_tags", "scenario_entities", "scenarios"):
        con.execute(f"DROP TABLE IF EXISTS {table}")
    con.execute(_TABLES_DDL)

    def with_scenario_uuid(source: str, columns: str) -> str:
        return entity_uuid_select(source, "scenario_id::VARCHAR", "'scenario:' || scenario_id::VARCHAR", columns)

    if _table_columns(con, "_hs_upgrade_scenarios") is not None:
        con.execute(
            f"""INSERT INTO scenarios (scenario_id, name, description, created_at, updated_at, metadata)
            SELECT _uuid, name, description, created_at, updated_at,
                   CASE WHEN _as_uuid IS NULL
                        THEN json_merge_patch(COALESCE(metadata, '{{}}'),
                                              json_object('legacy_scenario_id', scenario_id::VARCHAR))
                        ELSE metadata END
            FROM ({with_scenario_uuid("_hs_upgrade_scenarios", "*")})"""
        )
    if _table_columns(con, "_hs_upgrade_scenario_entities") is not None:
        entities = entity_uuid_select(
            f"({with_scenario_uuid('_hs_upgrade_scenario_entities', '*')}) AS s",
            "s.entity_id::VARCHAR",
            "s.entity_type || ':' || s.entity_id::VARCHAR",
            "s.id, s._uuid AS new_scenario_id, s.entity_type, s.entity_id, s.entity_data, s.created_at",
        )
        con.execute(
            f"""INSERT INTO scenario_entities (id, scenario_id, entity_type, entity_id, entity_data, created_at)
            SELECT id, new_scenario_id, entity_type, _uuid, COALESCE(entity_data, 'null'), created_at
            FROM ({entities})"""
        )
        _keep_legacy_entity_ids(con)
    if _table_columns(con, "_hs_upgrade_scenario_tags") is not None:
        con.execute(
            "INSERT INTO scenario_tags (id, scenario_id, tag) SELECT id, _uuid, tag "
            f"FROM ({with_scenario_uuid('_hs_upgrade_scenario_tags', '*')})"
        )
    for table in _OUR_COLUMNS:
        con.execute(f"DROP TABLE IF EXISTS _hs_upgrade_{table}")


def _migration_1(con: DuckConnection) -> None:
    present = {t: _table_columns(con, t) for t in _OUR_COLUMNS}
    if all(cols is None for cols in present.values()):
        con.execute(_TABLES_DDL)
        return
    ours = all(cols == _OUR_COLUMNS[t] and not _has_foreign_keys(con, t) for t, cols in present.items())
    if not ours:
        _rebuild_legacy_tables(con)


STAGING_TABLE = "healthsim_state_staging"


def _migration_2(con: DuckConnection) -> None:
    # Scenarios being written in several transactions (see bulk.py): rows staged under
    # an id recorded here are invisible, and removed on the next open after a crash.
    con.execute(f"CREATE TABLE {STAGING_TABLE} (scenario_id UUID PRIMARY KEY, started_at TIMESTAMP NOT NULL)")


#: Ordered migrations: (version, description, function). Append; never edit a released one.
MIGRATIONS: list[tuple[int, str, Callable[[DuckConnection], None]]] = [
    (1, "specification tables (rebuilds tables of earlier HealthSim releases)", _migration_1),
    (2, "staging table for large writes committed in chunks", _migration_2),
    (3, "history: versions, the id ranges each wrote, archived entity rows", create_history_tables),
    (4, "history: who made each version (changed_by)", add_changed_by),
    (5, "access tokens of the HTTP server (salted hashes only)", create_tokens_table),
    (6, "access tokens: a hash of each lookup id, not the id", hash_token_lookups),
]
SCHEMA_VERSION = MIGRATIONS[-1][0]


def schema_version(con: DuckConnection) -> int:
    """The schema version recorded in the database (0 when none is)."""
    try:
        row = con.execute(f"SELECT max(version) FROM {VERSION_TABLE}").fetchall()
    except duckdb.CatalogException:
        return 0
    return int(row[0][0] or 0)


def ensure_schema(con: DuckConnection) -> None:
    """Apply pending migrations in one transaction (a no-op when up to date).

    Raises:
        DatabaseError: the database was written by a newer release, or an upgrade failed
            (in which case nothing was changed).
    """
    current = schema_version(con)
    if current == SCHEMA_VERSION:
        return
    if current > SCHEMA_VERSION:
        raise DatabaseError(
            f"the database schema is version {current}, newer than this release understands "
            f"({SCHEMA_VERSION}); upgrade healthsim-state"
        )
    con.execute("BEGIN TRANSACTION")
    try:
        apply_migrations(con, MIGRATIONS, current)
        con.execute("COMMIT")
    except BaseException as exc:
        con.execute("ROLLBACK")
        if isinstance(exc, DatabaseError):
            raise
        if isinstance(exc, duckdb.Error):
            raise DatabaseError(f"upgrading the database schema failed, nothing was changed: {exc}") from exc
        raise


# --------------------------------------------------------------------------- staging
# A write of more than one chunk commits its chunks under a staging id recorded in
# STAGING_TABLE, which no reader sees (it has no ``scenarios`` row), and publishes them in
# one final transaction (see bulk.py). What a killed writer left is removed on next open.


def begin_staging(con: DuckConnection, staging_id: uuid.UUID, now: _dt.datetime) -> None:
    """Record a staging id (committed) before any of its rows is written."""
    with transaction(con):
        con.execute(f"INSERT INTO {STAGING_TABLE} VALUES (?, ?)", [staging_id, now])


def end_staging(con: DuckConnection, staging_id: uuid.UUID) -> None:
    """Forget a staging id; call inside the transaction that makes its rows visible."""
    con.execute(f"DELETE FROM {STAGING_TABLE} WHERE scenario_id = ?", [staging_id])


def discard_staging(con: DuckConnection, staging_id: uuid.UUID) -> None:
    """Delete a staged write that will not be finished (its rows, then its record)."""
    with transaction(con):
        con.execute(
            "DELETE FROM scenario_entities WHERE scenario_id = ? AND NOT EXISTS "
            "(SELECT 1 FROM scenarios s WHERE s.scenario_id = scenario_entities.scenario_id)",
            [staging_id],
        )
        end_staging(con, staging_id)


def recover_staging(con: DuckConnection) -> None:
    """Remove what an interrupted staged write left (cheap when there is nothing: one
    look at a table of at most a few rows)."""
    for (staging_id,) in con.execute(f"SELECT scenario_id FROM {STAGING_TABLE}").fetchall():
        discard_staging(con, staging_id)


def prepare(con: DuckConnection) -> None:
    """Make a read-write connection ready for the library: apply pending migrations,
    then remove what an interrupted staged write left.

    Raises:
        DatabaseError: the database is newer than this release, or an upgrade failed.
    """
    ensure_schema(con)
    recover_staging(con)
