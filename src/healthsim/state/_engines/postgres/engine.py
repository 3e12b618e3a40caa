"""The team store's answers to :class:`~healthsim.state._engines.base.Engine`."""

from __future__ import annotations

import datetime as _dt
import hashlib
import os
import uuid
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, closing, contextmanager, nullcontext
from pathlib import Path
from typing import Any, cast

import pyarrow as pa

from ...errors import DatabaseLockedError
from ...validation import storable
from ..base import AnalyticsConnection, Connection, Engine, Params
from ..duckdb.engine import local_duckdb
from .bulk import chunk_text, copy_rows, copy_text, insert_text
from .connection import PgConnection, open_connection
from .reading import copy_batches, fetch_arrow
from .sandbox import check_statement, run_query, run_to_file
from .schema import ENTITY_IDS, SCHEMA_VERSION, ensure_schema, schema_version
from .server import TeamDatabase
from .snapshot import copied_to_duckdb
from .transactions import transaction

__all__ = ["POSTGRES", "PostgresEngine"]

# What tells a server database apart, as any user may read it: when its server started
# (to the microsecond), the port it listens on, and the database's own id there.
_SERVER_DATABASE = (
    "SELECT pg_postmaster_start_time(), current_setting('port'), "
    "(SELECT oid FROM pg_database WHERE datname = current_database())"
)


def _parsable(column: str) -> str:
    """SQL: the JSON ``column`` as PostgreSQL's JSON functions can read it. They refuse the
    escape ``\\u0000`` (no text type holds a NUL: "unsupported Unicode escape sequence"),
    which stored entities may hold (``json`` keeps the text as given); where it is found it
    is read as ``\\u0001``, which keeps every value's kind and the text valid JSON (also
    after an escaped backslash). Only what is computed sees the change: the stored text
    is never altered."""
    return (
        f"(CASE WHEN strpos({column}::text, '\\u0000') > 0 "
        f"THEN regexp_replace({column}::text, '\\\\u0000', '\\\\u0001', 'g')::json ELSE {column}::json END)"
    )


def _team(database: object) -> TeamDatabase:
    if not isinstance(database, TeamDatabase):  # (engine_for gave this engine a URL's database)
        raise TypeError(f"{database!r} is not a PostgreSQL database")
    return database


def _pg(con: Connection) -> PgConnection:
    """``con`` as the PostgreSQL connection it is (this engine only hands out those)."""
    return cast(PgConnection, con)


class PostgresEngine(Engine):
    """Scenarios on a PostgreSQL server that several clients write at once."""

    name = "postgresql"
    ids_from_sequence = True
    stages_large_writes = False
    keeps_key_counts = False
    parses_while_streaming = True
    concurrent_cursors = False  # (one connection runs one statement at a time)

    # ------------------------------------------------------------------ the database

    @contextmanager
    def connect(
        self, database: Any, *, create: bool, read_only: bool, config: dict[str, Any] | None
    ) -> Iterator[Connection | None]:
        # (``config`` is DuckDB's; the server has its own settings)
        with open_connection(_team(database), self) as pg:
            if not read_only:
                current = schema_version(pg)
                if not create and current == 0:
                    yield None  # nothing saved there yet: as a missing file, reads create nothing
                    return
                if current != SCHEMA_VERSION:
                    ensure_schema(pg)
            yield pg

    def shown(self, database: Any) -> str:
        return _team(database).shown

    def same_database(self, a: Any, b: Any) -> bool:
        x, y = _team(a), _team(b)
        if (x.host.lower(), x.port, x.database) == (y.host.lower(), y.port, y.database):
            return True
        # A host named two ways (localhost and 127.0.0.1) reaches one server: ask it.
        first = self._server_database(x)
        return first is not None and first == self._server_database(y)

    def _server_database(self, team: TeamDatabase) -> tuple[Any, ...] | None:
        """The server database ``team`` reaches, or None when it holds no scenarios (then
        it cannot be a source's database)."""
        with self.connect(team, create=False, read_only=False, config=None) as con:
            return None if con is None else con.execute(_SERVER_DATABASE).fetchone()

    def cache_folder(self, database: Any) -> Path:
        """``~/.cache/healthsim-state/teams/{host}-{port}-{database}-{hash}``: one folder per
        server database (its versions are the same for every user of it)."""
        team = _team(database)
        base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
        key = f"{team.host}:{team.port}/{team.database}"
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in f"{team.host}-{team.port}-{team.database}")
        return base / "healthsim-state" / "teams" / f"{safe[:80]}-{hashlib.sha256(key.encode()).hexdigest()[:12]}"

    def describe(self, database: Any, con: Connection | None) -> dict[str, Any]:
        # reachable (or connect raised); "exists" once the library made its tables
        details: dict[str, Any] = {"database": _team(database).shown, "engine": self.name, "exists": con is not None}
        if con is not None:
            version = _pg(con).raw.info.server_version  # e.g. 150018
            details["server_version"] = f"{version // 10000}.{version % 10000}"
            details["size_bytes"] = con.execute("SELECT pg_database_size(current_database())").fetchall()[0][0]
            details["schema_version"] = self.schema_version(con)
        return details

    def schema_version(self, con: Connection) -> int:
        return schema_version(_pg(con))

    # ------------------------------------------------------------------ transactions, locks

    def transaction(self, con: Connection) -> AbstractContextManager[Connection]:
        return transaction(_pg(con))

    @contextmanager
    def snapshot(self, con: Connection) -> Iterator[None]:
        with _pg(con).snapshot():
            yield

    def lock_name(self, con: Connection, name: str) -> None:
        """Wait for, then hold until the transaction ends, the advisory lock of ``name``."""
        if storable(name):  # (no valid name holds a NUL or a lone surrogate)
            try:
                con.execute("SELECT pg_advisory_xact_lock(hashtextextended(?, 7261))", ["healthsim-state:" + name])
            except DatabaseLockedError as exc:  # another client saves to that name past the lock timeout
                raise exc.for_scenario(name) from exc

    def lock_scenarios(self, con: Connection, scenario_ids: list[Any]) -> None:
        # Always in the same order, so that two changes of the same scenarios in another
        # order wait instead of deadlocking.
        if scenario_ids:
            con.execute(
                "SELECT 1 FROM scenarios WHERE scenario_id = ANY(?) ORDER BY scenario_id FOR UPDATE",
                [list(scenario_ids)],
            )

    def row_lock(self, con: Connection) -> str:
        # Inside a change's transaction only: not outside one, nor in a reader's snapshot.
        pg = _pg(con)
        return " FOR UPDATE" if pg.in_transaction and not pg.reading else ""

    # ------------------------------------------------------------------ the SQL sandbox

    def check_query(self, sql: object) -> str:
        return check_statement(sql)

    def run_query(self, database: Any, sql: str, *, limit: int, max_bytes: int, timeout: float) -> dict[str, Any]:
        return run_query(_team(database), sql, limit=limit, max_bytes=max_bytes, timeout=timeout)

    def query_to_file(self, database: Any, sql: str, output: dict[str, str], *, timeout: float) -> dict[str, Any]:
        return run_to_file(_team(database), sql, output, timeout=timeout)

    # ------------------------------------------------------------------ staged writes
    # A save is one transaction here (several clients write at once; a crash rolls it
    # back): nothing is ever staged, and the shared code never asks.

    def begin_staging(self, con: Connection, staging_id: uuid.UUID, now: _dt.datetime) -> None:
        raise NotImplementedError("the team store does not stage writes (stages_large_writes is False)")

    def end_staging(self, con: Connection, staging_id: uuid.UUID) -> None:
        raise NotImplementedError("the team store does not stage writes (stages_large_writes is False)")

    def discard_staging(self, con: Connection, staging_id: uuid.UUID) -> None:
        raise NotImplementedError("the team store does not stage writes (stages_large_writes is False)")

    # ------------------------------------------------------------------ work in threads

    def worker_cursor(self, con: Connection) -> AbstractContextManager[Connection]:
        raise NotImplementedError("a PostgreSQL connection runs one statement at a time")

    def share_threads(self, con: Connection) -> AbstractContextManager[None]:
        return nullcontext()

    def shared_table(self, con: Connection, name: str) -> str | None:
        return None  # (no worker cursors: a temporary table serves)

    # ------------------------------------------------------------------ SQL fragments

    def create_temp(self, con: Connection, name: str) -> str:
        # PostgreSQL has no CREATE OR REPLACE TABLE: the old one is dropped first.
        con.execute(f"DROP TABLE IF EXISTS pg_temp.{name}")
        return f"CREATE TEMP TABLE {name}"

    def has_scalar(self, column: str, field: str) -> str:
        key = field.replace("'", "''")
        return f"json_typeof({_parsable(column)} -> '{key}') IN ('string', 'number')"

    def matches(self, column: str, pattern: str) -> str:
        return f"({column})::TEXT ~ '{pattern}'"

    def contains_text(self, column: str, literal: str) -> str:
        return f"strpos(({column})::TEXT, '{literal}') > 0"

    def json_equal(self, a: str, b: str) -> str:
        # Not jsonb: it takes 1e2 for 100.
        return f"({a}::TEXT = {b}::TEXT)"

    def json_text_in(self, column: str, param: str) -> str:
        return f"EXISTS (SELECT 1 FROM json_array_elements_text({column}) AS t(v) WHERE lower(t.v) = {param})"

    def json_text(self, column: str, keys: Sequence[str]) -> str:
        return f"({column}::json #>> '{{{','.join(keys)}}}')"

    def json_fields(
        self, source: str, keep: str, paths: Sequence[Sequence[str]], keyed: Sequence[str] = (), few: bool = False
    ) -> str:
        if not paths and not keyed:
            return f"SELECT {keep} FROM ({source}) AS _hs_src"
        # jsonb: parsed once per row, then each path is a lookup.
        columns = [
            f"jsonb_typeof(_hs_d #> '{{{','.join(p)}}}') AS k{i}, (_hs_d #>> '{{{','.join(p)}}}') AS t{i}"
            for i, p in enumerate(paths)
        ] + [f"(_hs_d -> '{k}') AS e{j}" for j, k in enumerate(keyed)]
        return (
            f"SELECT {keep}, {', '.join(columns)} FROM (SELECT {keep}, {_parsable('entity_data')}::jsonb AS _hs_d "
            f"FROM ({source}) AS _hs_src) AS _hs_parsed"
        )

    def top_level_keys(self, source: str) -> str:
        return (
            f"SELECT DISTINCT json_object_keys(d) AS k FROM (SELECT {_parsable('entity_data')} AS d "
            f"FROM ({source}) AS _hs_src) AS _hs_parsed WHERE json_typeof(d) = 'object'"
        )

    def top_level_key_kinds(self, source: str) -> str:
        # (json_each of an object only: the CASE keeps other JSON values from it)
        objects = "CASE WHEN json_typeof(d) = 'object' THEN d ELSE '{}'::json END"
        return (
            "SELECT e.key AS k, bool_or(json_typeof(e.value) = 'string') AS s FROM "
            f"(SELECT {_parsable('entity_data')} AS d FROM ({source}) AS _hs_src) AS _hs_parsed, "
            f"json_each({objects}) AS e GROUP BY e.key"
        )

    def top_level_values(self, source: str, keep: str) -> str:
        # (jsonb, as json_fields reads: parsed once; an object only, the CASE keeps others out)
        objects = "CASE WHEN jsonb_typeof(d) = 'object' THEN d ELSE '{}'::jsonb END"
        return (
            f"SELECT {keep}, e.key AS k, jsonb_typeof(e.value) AS kind, "
            "e.value #>> '{}' AS text "
            f"FROM (SELECT {keep}, {_parsable('entity_data')}::jsonb AS d FROM ({source}) AS _hs_src) AS _hs_parsed, "
            f"jsonb_each({objects}) AS e"
        )

    def instant(self, text: str) -> str:
        return f"CAST({text} AS TIMESTAMPTZ)"

    def first_rows(self, order: str) -> str:
        return f" ORDER BY {order}"  # a (parallel) scan gives rows in no set order

    def stored_entity_id(self, entity_type: str, text: str) -> str | None:
        return None  # PostgreSQL has no SHA-1 without an extension: ids are derived in DuckDB

    # ------------------------------------------------------------------ rows in and out

    def next_entity_id(self, con: Connection) -> int:
        # The lowest the sequence can still give (other clients may take ids from there
        # on too, but a scenario's new rows get no lower one).
        sql = f"SELECT CASE WHEN is_called THEN last_value + 1 ELSE last_value END FROM {ENTITY_IDS}"
        return int(con.execute(sql).fetchall()[0][0])

    def insert_selected(self, con: Connection, table: str, columns: list[str], select: str, chunk: pa.Table) -> None:
        # The rows are made in a local DuckDB and sent with COPY.
        text = copy_text(f"SELECT * FROM ({select}) AS c", columns, _hs_chunk=chunk)
        copy_rows(_pg(con), table, columns, text)

    def encode_entity_chunk(self, chunk: pa.Table, scenario_id: uuid.UUID, now: _dt.datetime) -> bytes:
        # In the caller's thread (a local DuckDB, which releases the GIL), so the writer
        # only streams to the server.
        return chunk_text(chunk, scenario_id, now)

    def insert_entity_chunk(self, con: Connection, encoded: Any, scenario_id: uuid.UUID, now: _dt.datetime) -> None:
        insert_text(_pg(con), encoded)  # COPY, ids from the sequence

    def fetch_arrow(self, con: Connection, sql: str, params: Params = None, *, texts: Sequence[str] = ()) -> pa.Table:
        return fetch_arrow(_pg(con), sql, params, texts=texts)

    def arrow_batches(
        self, con: Connection, sql: str, params: Params = None, *, texts: Sequence[str] = ()
    ) -> Iterator[pa.Table]:
        return copy_batches(_pg(con), sql, params, texts=texts)[1]

    def computing(self, con: Connection | None) -> AbstractContextManager[AnalyticsConnection]:
        return closing(local_duckdb())  # the server's rows are not there: a private DuckDB

    def analysed(self, con: Connection, rows_sql: str) -> AbstractContextManager[AnalyticsConnection | None]:
        return copied_to_duckdb(_pg(con), rows_sql)


#: The team store's engine (it keeps no state: one for every server).
POSTGRES = PostgresEngine()
