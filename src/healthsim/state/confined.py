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
both. A caller without a grant (the library, the terminal, the stdio server) queries the
store itself; every caller served over HTTP gets a copy, with tags or without, because the
store also holds what no token may read (the tokens themselves, history, staged writes).

Copying costs about 0.7 s per 100,000 entities from a DuckDB file (1.2-3.5 s from a team
store), so a copy is kept for the next query of the same grant's tags while the store holds
what it held: while every scenario's latest version and every current scenario's row are
the same (:data:`_FINGERPRINT_SQL`, read in the same snapshot as the copy, so a kept copy is
exactly the content it names; every change to a scenario makes a version, a delete and a
restore too). The same rule on both engines: a DuckDB file's identity (size, times) also
changes with what no copy holds (a token's ``last_used_at``, written about once a minute
per active token), which made an assistant's next query copy the whole store again. At most
:data:`MAX_KEPT` copies are kept, and they are removed when the process ends.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ._engines import Connection, Database
from ._engines.ddl import VERSIONS
from .access import current_grant
from .database import connect
from .errors import QueryError
from .visibility import visible_sql

__all__ = ["MAX_KEPT", "confined_copy", "drop_kept_copies"]

#: Copies kept at most (one per store and set of tags).
MAX_KEPT = 8
_NAME = "visible.duckdb"

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
    # Rows of current scenarios only: a large save stages its rows under an id no scenario
    # has (committed batch by batch), which a caller without tags would otherwise see.
    current = "" if table == "scenarios" else " AND scenario_id IN (SELECT scenario_id FROM scenarios)"
    return f"SELECT {picked} FROM {table} WHERE {visible_sql('scenario_id', params)}{current}{order}"


@dataclass
class _Copy:
    """A copy's folder, the fingerprint of the content it was made from, and its readers."""

    folder: Path
    fingerprint: tuple[Any, ...] | None
    readers: int = 1
    kept: bool = False
    #: The process that made it: a child made by ``fork`` inherits the table, and must not
    #: remove its parent's copies when it exits.
    pid: int = field(default_factory=os.getpid)


_LOCK = threading.Lock()  # tools run in worker threads
_KEPT: dict[tuple[str, tuple[str, ...]], _Copy] = {}


def _remove(copies: list[_Copy]) -> None:
    """Remove the folders of ``copies`` that this process made."""
    for copy in copies:
        if copy.pid == os.getpid():
            shutil.rmtree(copy.folder, ignore_errors=True)


def _release(copy: _Copy) -> None:
    """One reader fewer; the folder goes with the last reader of a copy no longer kept."""
    with _LOCK:
        copy.readers -= 1
        gone = copy.readers == 0 and not copy.kept
    if gone:
        _remove([copy])


def _keep(key: tuple[str, tuple[str, ...]], copy: _Copy) -> None:
    """Keep ``copy`` for the next queries of ``key``, in place of the one kept before."""
    with _LOCK:
        replaced = [_KEPT.pop(key)] if key in _KEPT else []
        if len(_KEPT) >= MAX_KEPT:
            replaced += list(_KEPT.values())
            _KEPT.clear()
        copy.kept = True
        _KEPT[key] = copy
        for old in replaced:
            old.kept = False
        unused = [old for old in replaced if old.readers == 0]
    _remove(unused)


@atexit.register
def drop_kept_copies() -> None:
    """Remove the kept copies that no query is reading (the rest go with their last reader)."""
    with _LOCK:
        dropped = list(_KEPT.values())
        _KEPT.clear()
        for copy in dropped:
            copy.kept = False
        unused = [copy for copy in dropped if copy.readers == 0]
    _remove(unused)


#: What identifies a store's content (both engines' SQL): each scenario's latest
#: version (every change to a scenario makes one, a delete and a restore too) and each
#: current scenario's row. Read in the copy's own snapshot, so a copy is exactly the
#: content its fingerprint names.
_FINGERPRINT_SQL = f"""
SELECT
    (SELECT md5(COALESCE(string_agg(CAST(scenario_id AS VARCHAR) || ':' || CAST(version AS VARCHAR), ','
                                    ORDER BY scenario_id), ''))
     FROM (SELECT scenario_id, max(version) AS version FROM {VERSIONS} GROUP BY scenario_id) AS latest),
    (SELECT md5(COALESCE(string_agg(CAST(scenario_id AS VARCHAR) || ':' || CAST(updated_at AS VARCHAR) || ':' || name,
                                    ',' ORDER BY scenario_id), ''))
     FROM scenarios)
"""


def _reuse(key: tuple[str, tuple[str, ...]], fingerprint: tuple[Any, ...] | None) -> _Copy | None:
    """The kept copy of ``key`` if it was made from content of this ``fingerprint``."""
    with _LOCK:
        found = _KEPT.get(key)
        if found is None or fingerprint is None or found.fingerprint != fingerprint:
            return None
        found.readers += 1
        return found


def _new(source: Connection, fingerprint: tuple[Any, ...] | None) -> _Copy:
    """A new copy of what ``source`` (in a snapshot) shows (its folder removed if that fails)."""
    made = _Copy(Path(tempfile.mkdtemp(prefix="healthsim-confined-")), fingerprint)  # (mode 0700)
    try:
        _fill(source, made.folder / _NAME)
    except BaseException:
        shutil.rmtree(made.folder, ignore_errors=True)
        raise
    return made


@contextmanager
def confined_copy(database: Database) -> Iterator[Path]:
    """A DuckDB file holding only the scenarios the caller's grant lets it see, for the
    block: a kept one while the store holds what it held when the copy was made, else a
    new one (kept for the next query).

    Raises:
        QueryError: there is no database yet.
    """
    grant = current_grant()
    tags = tuple(dict.fromkeys(tag.strip() for tag in grant.tags)) if grant is not None else ()
    key = (str(database), tags)
    with connect(database) as source:
        if source is None:
            raise QueryError("there is no database yet; save or import a scenario first")
        with source.engine.snapshot(source):
            # (fetchall: DuckDB refuses the next statement while a result is not read to its end)
            rows = source.execute(_FINGERPRINT_SQL).fetchall()
            fingerprint = tuple(rows[0]) if rows else None
            found = _reuse(key, fingerprint)
            if found is None:
                found = _new(source, fingerprint)
                _keep(key, found)
    try:
        yield found.folder / _NAME
    finally:
        _release(found)


def _fill(source: Connection, copy: Path) -> None:
    """Write into the new DuckDB file ``copy`` the rows the caller may see, as ``source``
    (in a snapshot) shows them."""
    with connect(copy, create=True) as target:
        assert target is not None
        for table, (columns, texts, typed) in _TABLES.items():
            params: dict[str, Any] = {}
            select = _source_sql(table, columns, texts, params)
            for chunk in source.engine.arrow_batches(source, select, params, texts=texts):
                target.engine.insert_selected(target, table, columns, f"SELECT {typed} FROM _hs_chunk", chunk)
