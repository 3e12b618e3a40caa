"""Read-only SQL over saved scenarios, in a sandbox, on either engine.

The SQL comes from people and from AI assistants, so it is treated as untrusted:

- exactly one statement, and of type SELECT (``SELECT``, ``WITH``, ``FROM t``,
  ``SUMMARIZE``, ``DESCRIBE``, ``SHOW``); ``EXPLAIN ANALYZE INSERT …`` (which executes the
  insert), ``SET``, ``PRAGMA``, ``CALL``, ``COPY``, ``ATTACH``… are refused before running;
- each engine runs it where it can do no harm: DuckDB in a read-only, locked-down
  connection in a worker process (:mod:`._engines.duckdb.sandbox`), PostgreSQL in a
  read-only transaction with a statement timeout under the caller's own role
  (:mod:`._engines.postgres.sandbox`);
- one time limit for the whole call, a row cap and a byte cap on the returned rows (the
  total is still counted and reported); values too long for the byte cap are cut before
  they reach Python, and the result says what was cut;
- one rule for every output, the answer and the files, on both engines: unique column
  names (``a``, ``a_1``), instants in UTC and ISO 8601, intervals in ISO 8601, decimals as
  exact text, blobs as hex, integers of any size as numbers, NaN and infinities as
  ``"nan"``, ``"inf"``, ``"-inf"`` (see :mod:`.sandbox_rules` and ``docs/decisions.md``).

Convenience views, created in the sandbox only (temporary):

- ``entities``: ``scenario`` (name), ``scenario_id``, ``entity_type``, ``entity_id``,
  ``data`` (the entity's JSON) for every entity of every scenario;
- one view per entity type (``patients``, ``encounters``, …) with the same columns but
  ``entity_type``, unless a table of that name exists (earlier releases had some);
- the tables ``scenarios``, ``scenario_entities`` and ``scenario_tags`` as they are.

Example (both engines): ``SELECT data->>'gender' AS gender, count(*) AS n FROM patients
WHERE scenario = 'diabetes-cohort' GROUP BY 1 ORDER BY 1``.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, cast

from ._engines import Database, TeamDatabase, engine_for
from .access import current_grant
from .confined import confined_copy
from .database import resolve_database
from .errors import InvalidInputError, QueryError
from .files import output_file_path, refuse_target
from .partials import remove_stale_partials, temp_prefix
from .results import QueryResult
from .validation import check_utf8

__all__ = [
    "DEFAULT_FILE_TIMEOUT",
    "DEFAULT_MAX_BYTES",
    "DEFAULT_ROW_LIMIT",
    "DEFAULT_TIMEOUT",
    "MAX_MAX_BYTES",
    "MAX_ROW_LIMIT",
    "MIN_MAX_BYTES",
    "QUERY_FORMATS",
    "QueryError",
    "query_scenarios",
    "query_to_file",
]

DEFAULT_ROW_LIMIT = 1000
MAX_ROW_LIMIT = 100_000
DEFAULT_TIMEOUT = 30.0
#: Bytes of compact UTF-8 JSON that the returned ``rows`` may take (an MCP answer goes
#: into an assistant's context, so a megabyte is already a lot).
DEFAULT_MAX_BYTES = 1_000_000
MIN_MAX_BYTES = 1_000
MAX_MAX_BYTES = 100_000_000


def _check_sql(sql: object, database: Database) -> str:
    """``sql`` checked as one read statement, by the rules of the engine that will run it."""
    if isinstance(sql, str):
        try:
            check_utf8(sql, "the SQL")
        except InvalidInputError as exc:
            raise QueryError(str(exc)) from None
    return engine_for(database).check_query(sql)


def query_scenarios(
    sql: str,
    *,
    limit: int = DEFAULT_ROW_LIMIT,
    timeout: float = DEFAULT_TIMEOUT,
    db_path: str | Path | TeamDatabase | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> QueryResult:
    """Run one read-only SELECT over the saved scenarios, in a sandbox.

    Args:
        sql: one SELECT statement (see the module docstring for the views).
        limit: at most this many rows are returned (1 to 100,000); ``total_rows`` still
            counts them all.
        timeout: seconds the query may run, from the moment the database is open: DuckDB's
            work and the conversion of the rows together. Past it the query is stopped
            (interrupted, or its process killed half a second later).
        db_path: the database file, or a PostgreSQL team store's ``postgresql://`` URL
            (default: ``HEALTHSIM_DB`` or the default file). On a team store the same views
            answer the same SQL in PostgreSQL's dialect, in a read-only transaction with a
            statement timeout (see :mod:`healthsim.state._engines.postgres.sandbox`).
        max_bytes: at most this many bytes of compact UTF-8 JSON in ``rows`` (1,000 to
            100,000,000; default 1,000,000). Rows are added while they fit; a string or
            blob longer than a quarter of the cap shared among the columns (at least 100
            characters) is cut to that length and ends with ``…[cut, N bytes in all]``
            (blobs as hex); a list, struct or map that large becomes
            ``[cut: a <type> value of N bytes]``.

    Returns:
        ``{"columns": [...], "rows": [[...], ...], "row_count": n, "total_rows": N,
        "truncated": N > n, "truncated_reason": None | "rows" | "bytes",
        "cut_values": k, "result_bytes": b, "elapsed_seconds": s, "views": [...],
        "engine": "duckdb" | "postgresql"}``.
        ``truncated_reason`` says which cap left rows out (``None`` when none were);
        ``cut_values`` counts the values cut short in ``rows`` (rows may be complete
        while values are cut); ``result_bytes`` is the size of ``rows`` as compact JSON.

    Raises:
        QueryError: the SQL is not one SELECT, is refused by the sandbox, fails, runs past
            ``timeout`` or out of the sandbox's memory; the message says which.
        DatabaseLockedError: another process held the database past the lock timeout.
        DatabaseError: the database cannot be opened.
        ServerUnavailableError: the team store's server cannot be reached or refused the login.
    """
    database = resolve_database(db_path)
    _check_sql(sql, database)
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_ROW_LIMIT:
        raise QueryError(f"limit must be a whole number from 1 to {MAX_ROW_LIMIT}, not {limit!r}")
    timeout = _checked_timeout(timeout)
    if isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or not MIN_MAX_BYTES <= max_bytes <= MAX_MAX_BYTES:
        raise QueryError(
            f"max_bytes must be a whole number from {MIN_MAX_BYTES:,} to {MAX_MAX_BYTES:,}, not {max_bytes!r}"
        )
    with _queried(database, sql) as queried:
        engine = engine_for(queried)
        result = engine.run_query(queried, sql, limit=limit, max_bytes=max_bytes, timeout=float(timeout))
    # The SQL dialect differs between the engines: the answer says which one ran it.
    result["engine"] = engine.name
    return cast(QueryResult, result)


@contextmanager
def _queried(database: Database, sql: str) -> Iterator[Database]:
    """The database a query runs over: the store for the person at the keyboard (no
    grant), or for a caller served over HTTP a private copy of the scenarios it may see
    (issue 25, :mod:`.confined`). A grant without tags gets a copy too: the store itself
    holds the tokens (names, scopes, tags, hashes), history and staged writes, which no
    token may read, and neither engine can hide a table from SQL run under the store's
    own role or file."""
    if current_grant() is None:
        yield database
        return
    with confined_copy(database) as copy:
        _check_sql(sql, copy)  # (a team store's query then runs in DuckDB: its rules)
        yield copy


#: The longest time limit passed on (24 days): PostgreSQL's statement_timeout is a 32-bit count of
#: milliseconds (~24.8 days), and a timer cannot wait past the platform's time_t. A longer one (or
#: infinity) means "no practical limit": passed on as it was, it failed on both engines.
MAX_TIMEOUT = 24 * 86_400.0


def _checked_timeout(timeout: object) -> float:
    """``timeout`` if it is a positive number of seconds, at most :data:`MAX_TIMEOUT`.

    Raises:
        QueryError: it is not a positive number (a bool, NaN, zero or less, not a number).
    """
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0:
        raise QueryError(f"timeout must be a positive number of seconds, not {timeout!r}")
    return min(float(timeout), MAX_TIMEOUT)


#: Formats ``query_to_file`` writes, and the file extensions that choose them.
QUERY_FORMATS = {".csv": "csv", ".parquet": "parquet", ".ndjson": "ndjson", ".jsonl": "ndjson"}
#: Seconds a query that writes a file may run by default (every row, not a page).
DEFAULT_FILE_TIMEOUT = 600.0


def query_to_file(
    sql: str,
    output_path: str | os.PathLike[str],
    *,
    format: str | None = None,
    timeout: float = DEFAULT_FILE_TIMEOUT,
    db_path: str | Path | TeamDatabase | None = None,
) -> dict[str, Any]:
    """Run one read-only SELECT in the sandbox and write every row of its result to a file.

    The SQL still runs in the sandbox (it cannot write anything itself); the rows are
    streamed, batch by batch, to a temporary file beside the target, which replaces the
    target only when it is whole.

    Args:
        sql: one SELECT statement (as for :func:`query_scenarios`).
        output_path: the file to write (its folder is created).
        format: ``csv`` (UTF-8 with a header; each cell the text of the value
            :func:`query_scenarios` gives, lists and structs as JSON text), ``parquet``
            (typed; instants in UTC, intervals as ISO 8601 text) or ``ndjson`` (one JSON
            object per row, the values :func:`query_scenarios` gives, JSON columns embedded
            as JSON); default: from the file's extension (``.csv``, ``.parquet``,
            ``.ndjson``, ``.jsonl``). Duplicate column names become ``a_1``… in every format.
        timeout: seconds the query and the writing may take (default 600).
        db_path: the database file or team store URL, as for :func:`query_scenarios`.

    Returns:
        ``{"path", "format", "columns", "rows_written", "elapsed_seconds", "engine"}``.

    Raises:
        QueryError: the SQL is refused, fails or runs past ``timeout``.
        InvalidInputError: an unknown format, a path that cannot be written, or one that
            is a DuckDB database (this store's or another) or the write-ahead log of one.
    """
    database = resolve_database(db_path)
    _check_sql(sql, database)
    timeout = _checked_timeout(timeout)
    target = Path(os.path.abspath(output_file_path(output_path)))
    if format is None:
        if target.suffix.lower() not in QUERY_FORMATS:
            raise InvalidInputError(
                f"cannot tell the format of {str(target)!r} from its extension; name it .csv, .parquet or "
                ".ndjson, or give the format (csv, parquet, ndjson)"
            )
        fmt = QUERY_FORMATS[target.suffix.lower()]
    elif isinstance(format, str) and format.lower() in set(QUERY_FORMATS.values()):
        fmt = format.lower()
    else:
        raise InvalidInputError(f"unknown query output format {format!r}; use csv, parquet or ndjson")
    try:
        folder = target.is_dir()
    except OSError as exc:  # a name too long for the file system, say
        raise InvalidInputError(f"cannot write {str(target)!r}: {exc.strerror or exc}; choose another path") from None
    if folder:
        raise InvalidInputError(f"{str(target)!r} is a folder; give the path of the file to write")
    refuse_target(target, database)  # the rename would replace a database, a pipe or a device
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_partials(target)  # what a killed earlier run left beside it
        fd, temp_name = tempfile.mkstemp(dir=target.parent, prefix=temp_prefix(target), suffix=".partial")
        os.close(fd)
    except OSError as exc:
        raise InvalidInputError(f"cannot write {str(target)!r}: {exc.strerror or exc}; choose another path") from exc
    temp = Path(temp_name)
    try:
        output = {"path": str(temp), "format": fmt}
        with _queried(database, sql) as queried:
            engine = engine_for(queried)
            result = engine.query_to_file(queried, sql, output, timeout=float(timeout))
        os.chmod(temp, 0o644)
        os.replace(temp, target)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    return {**result, "path": str(target), "engine": engine.name}
