"""The query sandbox of a tag-limited caller: a private copy of what it may see.

A query's SQL may name any table of the database (``main.scenarios``,
``public.scenario_entities``, the history tables), and PostgreSQL offers functions that
run a query given as text (``query_to_xml``), so views that filter the rows cannot keep a
caller with tags from the other scenarios. Instead its query runs over a copy that holds
nothing else: the rows of ``scenarios``, ``scenario_entities`` and ``scenario_tags`` of
the scenarios carrying one of its tags, copied from one snapshot of the store into a new
DuckDB file in a private temporary folder (removed afterwards), which the DuckDB sandbox
then opens as it opens any store. On a team store such a query is therefore answered in
DuckDB's SQL (the answer's ``engine`` says so); the example of the ``query`` tool works on
both. A caller without tags queries the store itself, as before.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ._engines import Database
from .database import connect
from .errors import QueryError
from .visibility import visible_sql

__all__ = ["confined_copy"]

#: Per table: (its columns, those read as text, the DuckDB expressions that type them again).
_TABLES: dict[str, tuple[list[str], list[str], str]] = {
    "scenarios": (
        ["scenario_id", "name", "description", "created_at", "updated_at", "metadata"],
        ["scenario_id", "name", "description", "created_at", "updated_at", "metadata"],
        "CAST(scenario_id AS UUID), name, description, CAST(created_at AS TIMESTAMP), "
        "CAST(updated_at AS TIMESTAMP), CAST(metadata AS JSON)",
    ),
    "scenario_entities": (
        ["id", "scenario_id", "entity_type", "entity_id", "entity_data", "created_at"],
        ["scenario_id", "entity_type", "entity_id", "entity_data", "created_at"],
        "CAST(id AS INTEGER), CAST(scenario_id AS UUID), entity_type, CAST(entity_id AS UUID), "
        "CAST(entity_data AS JSON), CAST(created_at AS TIMESTAMP)",
    ),
    "scenario_tags": (
        ["id", "scenario_id", "tag"],
        ["scenario_id", "tag"],
        "CAST(id AS INTEGER), CAST(scenario_id AS UUID), tag",
    ),
}


def _source_sql(table: str, columns: list[str], texts: list[str], params: dict[str, Any]) -> str:
    """SQL (both engines) of the visible rows of ``table``, text columns as text."""
    picked = ", ".join(f"CAST({c} AS VARCHAR) AS {c}" if c in texts else c for c in columns)
    order = " ORDER BY id" if "id" in columns else ""
    return f"SELECT {picked} FROM {table} WHERE {visible_sql('scenario_id', params)}{order}"


@contextmanager
def confined_copy(database: Database) -> Iterator[Path]:
    """A new DuckDB file holding only the scenarios the caller's grant lets it see
    (removed when the block ends).

    Raises:
        QueryError: there is no database yet.
    """
    folder = Path(tempfile.mkdtemp(prefix="healthsim-confined-"))  # (mode 0700: this user's only)
    try:
        copy = folder / "visible.duckdb"
        with connect(database) as source:
            if source is None:
                raise QueryError("there is no database yet; save or import a scenario first")
            with source.engine.snapshot(source), connect(copy, create=True) as target:
                assert target is not None
                for table, (columns, texts, typed) in _TABLES.items():
                    params: dict[str, Any] = {}
                    select = _source_sql(table, columns, texts, params)
                    for chunk in source.engine.arrow_batches(source, select, params, texts=texts):
                        target.engine.insert_selected(target, table, columns, f"SELECT {typed} FROM _hs_chunk", chunk)
        yield copy
    finally:
        shutil.rmtree(folder, ignore_errors=True)
