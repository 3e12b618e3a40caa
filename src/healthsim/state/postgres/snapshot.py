"""A team-store scenario copied into an in-memory DuckDB, for the work written in DuckDB's SQL.

The summary's statistics and the analytics formats' table inference are written once, in
DuckDB's SQL (``json_keys``, ``from_json``, ``json_structure``, Parquet writing), and run
on DuckDB for both engines. For a team store, the scenario's version is streamed out of
PostgreSQL with ``COPY`` into a private in-memory DuckDB (never into Python objects), and
the same code runs there: the same results on both engines, nothing installed on the
server, and the server only does what it is best at, serving rows.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import duckdb

from ..reading import ScenarioReader
from .connection import is_postgres
from .reading import copy_batches

__all__ = ["in_duckdb"]

_TABLE = """CREATE TABLE scenario_entities (
    id INTEGER, scenario_id UUID, entity_type VARCHAR, entity_id UUID, entity_data JSON, created_at TIMESTAMP
)"""


@contextmanager
def in_duckdb(reader: ScenarioReader) -> Iterator[ScenarioReader]:
    """``reader`` itself on DuckDB; on PostgreSQL, a reader of the same scenario version
    over an in-memory DuckDB holding a copy of its rows (dropped afterwards)."""
    source = reader.connection
    if not is_postgres(source):
        yield reader
        return
    duck = duckdb.connect(":memory:")
    try:
        duck.execute(_TABLE)
        columns = "id, scenario_id::TEXT AS scenario_id, entity_type, entity_id::TEXT AS entity_id, entity_data"
        _, batches = copy_batches(
            source,
            reader.rows_sql(columns=columns) + " ORDER BY id",
            texts=("scenario_id", "entity_type", "entity_id", "entity_data"),
        )
        for batch in batches:
            duck.register("_hs_batch", batch)
            try:
                duck.execute(
                    "INSERT INTO scenario_entities SELECT id, scenario_id::UUID, entity_type, entity_id::UUID, "
                    "entity_data, NULL FROM _hs_batch"
                )
            finally:
                duck.unregister("_hs_batch")
        yield ScenarioReader(duck, reader.header, reader.version, tags=reader.tags)
    finally:
        duck.close()
