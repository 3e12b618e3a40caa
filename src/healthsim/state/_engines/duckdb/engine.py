"""The embedded engine's answers to :class:`~healthsim.state._engines.base.Engine`."""

from __future__ import annotations

import datetime as _dt
import os
import uuid
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, closing, contextmanager, nullcontext
from pathlib import Path
from typing import Any, cast

import duckdb
import pyarrow as pa

from ...errors import DatabaseError, InvalidInputError, QueryError
from ...id_sql import entity_rows_sql, uuid_from_digest_sql, v5_digest_sql
from ..base import AnalyticsConnection, Connection, Engine, Params
from .connection import DuckConnection, opened, process_lock, restrict_permissions, transaction
from .sandbox import check_statement, run_sandboxed
from .schema import begin_staging, discard_staging, end_staging, prepare, schema_version
from .threads import THREADS

__all__ = ["DUCKDB", "DuckDBEngine", "local_duckdb"]

#: One encoder chunk (registered as ``_hs_chunk``) into ``scenario_entities``, row ids
#: as the encoder numbered them.
_INSERT_CHUNK_SQL = f"""
INSERT INTO scenario_entities (id, scenario_id, entity_type, entity_id, entity_data, created_at)
SELECT id, $scenario_id, entity_type, _uuid, entity_data, $now FROM ({entity_rows_sql()})
"""


def _file(database: object) -> Path:
    if not isinstance(database, Path):  # (engine_for gave this engine a file's path)
        raise InvalidInputError(f"{database!s} is not a DuckDB file")
    return database


class DuckDBEngine(Engine):
    """Scenarios in one DuckDB file, held whole by one writing process at a time."""

    name = "duckdb"
    ids_from_sequence = False
    stages_large_writes = True
    keeps_key_counts = True
    parses_while_streaming = False
    concurrent_cursors = True

    # ------------------------------------------------------------------ the database

    @contextmanager
    def connect(  # (one sequence: create, open, prepare, translate errors, close)
        self, database: Any, *, create: bool, read_only: bool, config: dict[str, Any] | None
    ) -> Iterator[Connection | None]:
        path = _file(database)
        with process_lock(path):
            created = not path.exists()
            if created and not create:
                yield None
                return
            if created:
                _make_folder(path)
            try:
                with (
                    opened(path, config, read_only) as raw,
                    self._made_ready(DuckConnection(raw, self), path, created, read_only) as con,
                ):
                    yield con
            finally:
                if created:  # (the write-ahead log too, if one is left)
                    restrict_permissions(path)

    @staticmethod
    @contextmanager
    def _made_ready(con: DuckConnection, path: Path, created: bool, read_only: bool) -> Iterator[DuckConnection]:
        """``con`` made ready (pending migrations applied), DuckDB's errors translated."""
        try:
            if created:
                restrict_permissions(path)
            if not read_only:
                prepare(con)
            yield con
        except duckdb.Error as exc:
            # Our callers check their input before DuckDB sees it, so this is a defect
            # (it was how a lone surrogate in an imported file's key surfaced); it still
            # ends in the library's exception tree, with what to do.
            detail = " ".join(str(exc).split())  # DuckDB's text spans lines; ours is one
            raise DatabaseError(
                f"database {str(path)!r}: DuckDB refused the operation ({type(exc).__name__}: {detail}); "
                "please report this as a bug, with what you were doing"
            ) from exc

    def shown(self, database: Any) -> str:
        return str(database)

    def same_database(self, a: Any, b: Any) -> bool:
        return os.path.realpath(_file(a)) == os.path.realpath(_file(b))

    def cache_folder(self, database: Any) -> Path:
        path = _file(database)
        return path.with_name(path.name + ".frames")

    def describe(self, database: Any, con: Connection | None) -> dict[str, Any]:
        path = _file(database)
        details: dict[str, Any] = {"database": str(path), "engine": self.name, "exists": path.exists()}
        if con is not None:
            details["size_bytes"] = path.stat().st_size
            details["schema_version"] = self.schema_version(con)
        return details

    def schema_version(self, con: Connection) -> int:
        return schema_version(_duck(con))

    # ------------------------------------------------------------------ transactions, locks

    def transaction(self, con: Connection) -> AbstractContextManager[Connection]:
        return transaction(_duck(con))

    def snapshot(self, con: Connection) -> AbstractContextManager[None]:
        return nullcontext()  # the reader holds the file: nobody writes meanwhile

    def lock_name(self, con: Connection, name: str) -> None:
        """Nothing to take: the writer holds the whole file."""

    def lock_scenarios(self, con: Connection, scenario_ids: list[Any]) -> None:
        """Nothing to take: the writer holds the whole file."""

    def row_lock(self, con: Connection) -> str:
        return ""

    # ------------------------------------------------------------------ the SQL sandbox

    def check_query(self, sql: object) -> str:
        return check_statement(sql)

    def run_query(self, database: Any, sql: str, *, limit: int, max_bytes: int, timeout: float) -> dict[str, Any]:
        return run_sandboxed(self._prepared(database), sql, limit=limit, max_bytes=max_bytes, timeout=timeout)

    def query_to_file(self, database: Any, sql: str, output: dict[str, str], *, timeout: float) -> dict[str, Any]:
        path = self._prepared(database)
        return run_sandboxed(path, sql, limit=1, max_bytes=1000, timeout=timeout, output=output)

    def _prepared(self, database: Any) -> Path:
        """The file, with pending migrations applied and an interrupted write's leftovers
        removed: the sandbox opens it read-only, and must never see half-written data."""
        path = _file(database)
        with self.connect(path, create=False, read_only=False, config=None) as con:
            if con is None:
                raise QueryError(f"there is no database at {str(path)!r} yet; save or import a scenario first")
        return path

    # ------------------------------------------------------------------ staged writes

    def begin_staging(self, con: Connection, staging_id: uuid.UUID, now: _dt.datetime) -> None:
        begin_staging(_duck(con), staging_id, now)

    def end_staging(self, con: Connection, staging_id: uuid.UUID) -> None:
        end_staging(_duck(con), staging_id)

    def discard_staging(self, con: Connection, staging_id: uuid.UUID) -> None:
        discard_staging(_duck(con), staging_id)

    # ------------------------------------------------------------------ work in threads

    @contextmanager
    def worker_cursor(self, con: Connection) -> Iterator[Connection]:
        cursor = cast(DuckConnection, con).cursor()
        try:
            yield cursor
        finally:
            cursor.raw.close()  # (its temporary tables go with it)

    def share_threads(self, con: Connection) -> AbstractContextManager[None]:
        return THREADS.shared(con)

    def shared_table(self, con: Connection, name: str) -> str | None:
        # The process's instance is an in-memory database every cursor of it reads (the file
        # is attached to it: see .instance); a file opened on an instance of its own has none.
        rows = con.execute(
            "SELECT 1 FROM duckdb_databases() WHERE database_name = 'memory' AND path IS NULL AND NOT readonly"
        ).fetchall()
        return f'memory.main."{name}_{uuid.uuid4().hex}"' if rows else None

    # ------------------------------------------------------------------ SQL fragments

    def create_temp(self, con: Connection, name: str) -> str:
        return f"CREATE OR REPLACE TEMP TABLE {name}"

    def has_scalar(self, column: str, field: str) -> str:
        key = field.replace("'", "''")
        return f"json_type({column}, '$.{key}') IN ('VARCHAR', 'BIGINT', 'UBIGINT', 'DOUBLE', 'HUGEINT')"

    def matches(self, column: str, pattern: str) -> str:
        return f"regexp_matches({column}, '{pattern}')"

    def contains_text(self, column: str, literal: str) -> str:
        # (contains() finds the first character with memchr: a literal opening with a
        # character as common as a quote in JSON text is slow; callers avoid that)
        return f"contains({column}, '{literal}')"

    def json_equal(self, a: str, b: str) -> str:
        # json() keeps key order and tells 1 from 1.0 and true: equal minified text is the same JSON.
        return f"({a}::VARCHAR = {b}::VARCHAR OR json({a}) = json({b}))"

    def json_text_in(self, column: str, param: str) -> str:
        return f"list_contains(list_transform(CAST({column} AS VARCHAR[]), lambda t: lower(t)), {param})"

    def json_text(self, column: str, keys: Sequence[str]) -> str:
        return f"json_extract_string({column}, '$.{'.'.join(keys)}')"

    def json_fields(
        self, source: str, keep: str, paths: Sequence[Sequence[str]], keyed: Sequence[str] = (), few: bool = False
    ) -> str:
        if not paths and not keyed:
            return f"SELECT {keep} FROM ({source}) AS _hs_src"

        def pointer(path: Sequence[str]) -> str:
            return "'" + "".join("/" + k.replace("~", "~0").replace("/", "~1") for k in path) + "'"

        # (a key that is a path too is looked up once: its kind tells whether it is there)
        every = list(dict.fromkeys([*(tuple(p) for p in paths), *((k,) for k in keyed)]))
        pointers = ", ".join(pointer(p) for p in every)
        types = f"json_type(entity_data, [{pointers}])"
        if few:  # (the kinds named once for the list: planning a CASE per field costs more on a few rows)
            types = f"list_transform({types}, lambda y: {_kind('y')})"

        def kind_of(at: int) -> str:
            return f"_hs_y[{at}]" if few else _kind(f"_hs_y[{at}]")

        columns = [
            f"{kind_of(every.index(tuple(p)) + 1)} AS k{i}, _hs_s[{i + 1}] AS t{i}" for i, p in enumerate(paths)
        ] + [f"_hs_y[{every.index((k,)) + 1}] AS e{j}" for j, k in enumerate(keyed)]
        texts = f"json_extract_string(entity_data, [{', '.join(pointer(p) for p in paths)}])" if paths else "NULL"
        return (
            f"SELECT {keep}, {', '.join(columns)} FROM (SELECT {keep}, {types} AS _hs_y, "
            f"{texts} AS _hs_s FROM ({source}) AS _hs_src) AS _hs_parsed"
        )

    def top_level_keys(self, source: str) -> str:
        return f"SELECT DISTINCT unnest(json_keys(entity_data)) AS k FROM ({source}) AS _hs_src"

    def top_level_key_kinds(self, source: str) -> str:
        return (
            "SELECT e.key AS k, bool_or(e.type = 'VARCHAR') AS s FROM (SELECT entity_data FROM "
            f"({source}) AS _hs_src WHERE json_type(entity_data) = 'OBJECT') AS _hs_rows, "
            "json_each(_hs_rows.entity_data) AS e GROUP BY e.key"
        )

    def top_level_values(self, source: str, keep: str) -> str:
        return (
            f"SELECT {keep}, e.key AS k, {_kind('e.type', present=True)} AS kind, "
            "json_extract_string(e.value, '$') AS text "
            f"FROM (SELECT {keep}, entity_data FROM ({source}) AS _hs_src WHERE json_type(entity_data) = 'OBJECT') "
            "AS _hs_rows, json_each(_hs_rows.entity_data) AS e"
        )

    def instant(self, text: str) -> str:
        return f"TRY_CAST({text} AS TIMESTAMPTZ)"

    def first_rows(self, order: str) -> str:
        return ""  # insertion order is kept (preserve_insertion_order): the scan stops early

    def stored_entity_id(self, entity_type: str, text: str) -> str | None:
        name = "'" + entity_type.replace("'", "''") + ":' || " + text
        return f"COALESCE(TRY_CAST({text} AS UUID), {uuid_from_digest_sql(v5_digest_sql(name))})"

    # ------------------------------------------------------------------ rows in and out

    def next_entity_id(self, con: Connection) -> int:
        return int(con.execute("SELECT COALESCE(max(id), 0) + 1 FROM scenario_entities").fetchall()[0][0])

    def insert_selected(self, con: Connection, table: str, columns: list[str], select: str, chunk: pa.Table) -> None:
        duck = _duck(con)
        duck.register("_hs_chunk", chunk)
        try:
            duck.execute(f"INSERT INTO {table} ({', '.join(columns)}) SELECT * FROM ({select})")
        finally:
            duck.unregister("_hs_chunk")

    def encode_entity_chunk(self, chunk: pa.Table, scenario_id: uuid.UUID, now: _dt.datetime) -> pa.Table:
        return chunk  # DuckDB reads the Arrow table itself

    def insert_entity_chunk(self, con: Connection, encoded: Any, scenario_id: uuid.UUID, now: _dt.datetime) -> None:
        duck = _duck(con)
        duck.register("_hs_chunk", encoded)
        try:
            duck.execute(_INSERT_CHUNK_SQL, {"scenario_id": scenario_id, "now": now})
        finally:
            duck.unregister("_hs_chunk")

    def fetch_arrow(self, con: Connection, sql: str, params: Params = None, *, texts: Sequence[str] = ()) -> pa.Table:
        return _duck(con).raw.sql(sql, params=dict(params or {})).to_arrow_table()

    def arrow_batches(
        self, con: Connection, sql: str, params: Params = None, *, texts: Sequence[str] = ()
    ) -> Iterator[pa.Table]:
        yield self.fetch_arrow(con, sql, params, texts=texts)

    def computing(self, con: Connection | None) -> AbstractContextManager[AnalyticsConnection]:
        if con is not None:
            return nullcontext(_duck(con))
        return closing(local_duckdb())

    def analysed(self, con: Connection, rows_sql: str) -> AbstractContextManager[AnalyticsConnection | None]:
        return nullcontext(None)  # the file's own connection is DuckDB already


def _duck(con: Connection) -> DuckConnection:
    """``con`` as the DuckDB connection it is (this engine only ever hands out those)."""
    return cast(DuckConnection, con)


def _make_folder(path: Path) -> None:
    folder = path.parent
    if folder.exists():
        return
    try:
        folder.mkdir(parents=True, mode=0o700)
    except OSError as exc:  # a file in the way, no permission, read-only disk
        raise DatabaseError(
            f"cannot create the folder of database {str(path)!r}: "
            f"{exc.strerror or exc} ({exc.filename or folder}); point HEALTHSIM_DB "
            "(or --db) at a file in a folder you can write to"
        ) from exc


#: The embedded engine (it keeps no state: one for every file).
DUCKDB = DuckDBEngine()


def local_duckdb(config: dict[str, Any] | None = None) -> DuckConnection:
    """A private in-memory DuckDB to compute in (closed by the caller)."""
    return DuckConnection(duckdb.connect(":memory:", config=config or {}), DUCKDB)


def _kind(duck_type: str, *, present: bool = False) -> str:
    """SQL naming the JSON kind of DuckDB's ``json_type`` name ``duck_type`` as the checks
    and summaries do (``string``, ``number``…); NULL where there is no value, unless
    ``present`` says there always is one (then one CASE less to plan)."""
    kinds = (
        f"CASE {duck_type} WHEN 'VARCHAR' THEN 'string' WHEN 'OBJECT' THEN 'object' WHEN 'ARRAY' THEN 'array' "
        "WHEN 'BOOLEAN' THEN 'boolean' WHEN 'NULL' THEN 'null' ELSE 'number' END"
    )
    return kinds if present else f"CASE WHEN {duck_type} IS NULL THEN NULL ELSE {kinds} END"
