"""A team store's scenario copied into an in-memory DuckDB, for what is computed in
DuckDB's SQL (summaries, key counts, the analytics formats)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from ..base import AnalyticsConnection
from ..duckdb.engine import local_duckdb
from .connection import PgConnection
from .reading import copy_batches

__all__ = ["copied_to_duckdb"]

_TABLE = """CREATE TABLE scenario_entities (
    id INTEGER, scenario_id UUID, entity_type VARCHAR, entity_id UUID, entity_data JSON, created_at TIMESTAMP
)"""


@contextmanager
def copied_to_duckdb(source: PgConnection, rows_sql: str) -> Iterator[AnalyticsConnection]:
    """An in-memory DuckDB whose ``scenario_entities`` holds the rows of ``rows_sql`` (a
    query of ``id, scenario_id, entity_type, entity_id, entity_data`` on ``source``, text
    columns as text), in id order; closed afterwards."""
    duck = local_duckdb()
    try:
        duck.execute(_TABLE)
        _, batches = copy_batches(
            source, rows_sql + " ORDER BY id", texts=("scenario_id", "entity_type", "entity_id", "entity_data")
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
        yield duck
    finally:
        duck.close()
