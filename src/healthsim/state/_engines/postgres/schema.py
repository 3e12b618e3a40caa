"""The team store's schema on PostgreSQL: the specification's tables, history, migrations.

The tables are the specification's, with ids as ``uuid`` and entity data as ``json``
(not ``jsonb``: ``json`` keeps the text exactly, with its key order, duplicate keys and
integers of any size). Row ids come from sequences, because several clients write at
once: a row takes the next value as it is inserted, so the rows one write adds are in
their order, and ids still only grow (what history's id ranges rely on). As on DuckDB,
the tables have no ``REFERENCES`` clauses: one schema rule for both engines, and a
deferred foreign key would check every row of a million-entity save again at commit.
The library deletes children first, and tests check that no row is ever orphaned.

Migrations are ordered and recorded in the same version table as on DuckDB; they run in
one transaction, under an advisory lock, so that two clients opening a new database at
once do not both create the tables.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from ...._lazy import lazy_module
from ...errors import DatabaseError
from ..ddl import (
    VERSION_TABLE,
    add_changed_by,
    apply_migrations,
    create_history_tables,
    create_tokens_table,
    hash_token_lookups,
)
from .connection import PgConnection
from .transactions import transaction

if TYPE_CHECKING:  # imported on first use: see healthsim._lazy
    import psycopg
else:
    psycopg = lazy_module("psycopg")

__all__ = ["ENTITY_IDS", "SCHEMA_VERSION", "ensure_schema", "schema_version"]

ENTITY_IDS = "healthsim_state_entity_ids"
TAG_IDS = "healthsim_state_tag_ids"
#: Any fixed number: the advisory lock key of schema changes.
_MIGRATION_LOCK = 0x6865616C74680001

_UTC_NOW = "(now() AT TIME ZONE 'utc')"

_TABLES = [
    f"CREATE SEQUENCE {ENTITY_IDS} AS integer",
    f"CREATE SEQUENCE {TAG_IDS} AS integer",
    f"""CREATE TABLE scenarios (
        scenario_id   uuid PRIMARY KEY,
        name          varchar UNIQUE NOT NULL,
        description   varchar,
        created_at    timestamp DEFAULT {_UTC_NOW},
        updated_at    timestamp DEFAULT {_UTC_NOW},
        metadata      json
    )""",
    f"""CREATE TABLE scenario_entities (
        id            integer PRIMARY KEY DEFAULT nextval('{ENTITY_IDS}'),
        scenario_id   uuid NOT NULL,
        entity_type   varchar NOT NULL,
        entity_id     uuid NOT NULL,
        entity_data   json NOT NULL,
        created_at    timestamp DEFAULT {_UTC_NOW}
    )""",
    f"""CREATE TABLE scenario_tags (
        id            integer PRIMARY KEY DEFAULT nextval('{TAG_IDS}'),
        scenario_id   uuid NOT NULL,
        tag           varchar NOT NULL,
        UNIQUE (scenario_id, tag)
    )""",
    f"ALTER SEQUENCE {ENTITY_IDS} OWNED BY scenario_entities.id",
    f"ALTER SEQUENCE {TAG_IDS} OWNED BY scenario_tags.id",
    # A scenario's rows by type in id order: loads, pages, counts, per-scenario deletes.
    "CREATE INDEX scenario_entities_by_scenario ON scenario_entities (scenario_id, entity_type, id)",
    # An entity by its id within its scenario and type: an add's upsert, a remove, a diff
    # touch what they name, not the whole scenario (a server has no file-wide scan to share).
    "CREATE INDEX scenario_entities_by_entity ON scenario_entities (scenario_id, entity_type, entity_id)",
]


def _migration_1(con: PgConnection) -> None:
    for statement in _TABLES:
        con.execute(statement)


def _migration_2(con: PgConnection) -> None:
    create_history_tables(con)  # the same tables as on DuckDB (its SQL runs on both)
    con.execute("CREATE INDEX healthsim_state_births_by_scenario ON healthsim_state_births (scenario_id)")
    con.execute(
        "CREATE INDEX healthsim_state_entity_history_by_scenario "
        "ON healthsim_state_entity_history (scenario_id, to_version)"
    )


#: Ordered migrations: (version, description, function). Append; never edit a released one.
MIGRATIONS: list[tuple[int, str, Callable[[PgConnection], None]]] = [
    (1, "specification tables, id sequences", _migration_1),
    (2, "history: versions, the id ranges each wrote, archived entity rows", _migration_2),
    (3, "history: who made each version (changed_by)", add_changed_by),
    (4, "access tokens of the HTTP server (salted hashes only)", create_tokens_table),
    (5, "access tokens: a hash of each lookup id, not the id", hash_token_lookups),
]
SCHEMA_VERSION = MIGRATIONS[-1][0]


def schema_version(con: PgConnection) -> int:
    """The schema version recorded in the database (0 when none is)."""
    exists = con.execute("SELECT to_regclass(?) IS NOT NULL", [VERSION_TABLE]).fetchall()[0][0]
    if not exists:
        return 0
    return int(con.execute(f"SELECT COALESCE(max(version), 0) FROM {VERSION_TABLE}").fetchall()[0][0])


def ensure_schema(con: PgConnection) -> None:
    """Apply pending migrations in one transaction (a no-op when up to date).

    Raises:
        DatabaseError: the database was written by a newer release, or the user may not
            create tables in it (nothing was changed).
    """
    current = schema_version(con)
    if current == SCHEMA_VERSION:
        return
    if current > SCHEMA_VERSION:
        raise DatabaseError(
            f"the schema of {con.target.shown} is version {current}, newer than this release understands "
            f"({SCHEMA_VERSION}); upgrade healthsim-state"
        )
    if current == 0:
        _refuse_other_encodings(con)
    # The lock is taken before the transaction begins, not inside it: a transaction's start
    # is where a backend catches up with the catalog changes other clients committed, and a
    # client that had looked for the tables, found none, and then waited inside its
    # transaction still saw none after the first client made them (DuplicateTable).
    con.execute("SELECT pg_advisory_lock(?)", [_MIGRATION_LOCK])
    try:
        with transaction(con):
            apply_migrations(con, MIGRATIONS, schema_version(con))  # (another client may have just done it)
    except DatabaseError as exc:
        refusal = (psycopg.errors.InsufficientPrivilege, psycopg.errors.ReadOnlySqlTransaction)
        if isinstance(exc.__cause__, refusal):
            raise DatabaseError(_upgrade_refused(con, current, exc.__cause__)) from exc
        raise
    finally:
        if not con.raw.closed:
            con.execute("SELECT pg_advisory_unlock(?)", [_MIGRATION_LOCK])


def _upgrade_refused(con: PgConnection, current: int, cause: BaseException) -> str:
    """The message for a user who may not create or upgrade the tables (a role granted reads
    only, a read-only server): what the database holds, and who can fix it."""
    why = con.target.hide_password(str(cause).splitlines()[0] if str(cause) else type(cause).__name__)
    who = f"user {con.target.user!r}"
    if current == 0:
        return (
            f"{con.target.shown} has no healthsim tables yet and {who} may not create them ({why}); nothing was "
            "changed; ask the database's owner to save a first scenario there, or for CREATE on its schema"
        )
    return (
        f"the healthsim tables in {con.target.shown} are at schema version {current}, older than this release's "
        f"{SCHEMA_VERSION}, and {who} may not upgrade them ({why}); nothing was changed; ask the database's owner "
        "to open it once with this release (e.g. healthsim info), or use the release that wrote it until then"
    )


def _refuse_other_encodings(con: PgConnection) -> None:
    """Refuse to make the tables in a database that is not UTF-8: a LATIN1 one cannot hold
    most of the world's text (a save of 日本 failed there, after the tables were made), and
    SQL_ASCII counts and cuts text in bytes, so checks and queries would not answer as on a
    file. (A store made before this check keeps working; its refusals say why: see
    :meth:`PgConnection.error`.)"""
    encoding = con.execute("SELECT current_setting('server_encoding')").fetchall()[0][0]
    if encoding != "UTF8":
        raise DatabaseError(
            f"{con.target.shown} is encoded {encoding}, which cannot hold all the text a scenario may; nothing "
            "was made there; create a UTF8 database for the team store (createdb -E UTF8 --locale C.UTF-8 -T template0 NAME) "
            "and use that"
        )
