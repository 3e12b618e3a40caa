"""Read-only SQL over saved scenarios, in a sandbox.

The SQL comes from people and from AI assistants, so it is treated as untrusted:

- exactly one statement, and of type SELECT (``SELECT``, ``WITH``, ``FROM t``,
  ``SUMMARIZE``, ``DESCRIBE``, ``SHOW``); ``EXPLAIN ANALYZE INSERT …`` (which executes the
  insert), ``SET``, ``PRAGMA``, ``CALL``, ``COPY``, ``ATTACH``… are refused before running;
- a read-only connection with external access disabled (no files, no network, no ATTACH,
  COPY or EXPORT, no extension install or load) and its configuration locked;
- a row cap (the total is still counted and reported) and a time limit that interrupts
  a runaway query.

Convenience views, created in the sandbox connection only (temporary):

- ``entities``: ``scenario`` (name), ``scenario_id``, ``entity_type``, ``entity_id``,
  ``data`` (the entity's JSON) for every entity of every scenario;
- one view per entity type (``patients``, ``encounters``, …) with the same columns but
  ``entity_type``, unless a table of that name exists (earlier releases had some);
- the tables ``scenarios``, ``scenario_entities`` and ``scenario_tags`` as they are.

Example: ``SELECT scenario, data->>'gender' AS gender, count(*) FROM patients GROUP BY ALL``.
"""

from __future__ import annotations

import datetime as _dt
import math
import threading
import time
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb

from .database import connect
from .errors import InvalidInputError
from .store import ScenarioStore

__all__ = ["QueryError", "query_scenarios", "DEFAULT_ROW_LIMIT", "MAX_ROW_LIMIT", "DEFAULT_TIMEOUT"]

DEFAULT_ROW_LIMIT = 1000
MAX_ROW_LIMIT = 100_000
DEFAULT_TIMEOUT = 30.0
_BATCH_ROWS = 2048

_SANDBOX_CONFIG: dict[str, object] = {
    "enable_external_access": False,
    "autoinstall_known_extensions": False,
    "autoload_known_extensions": False,
}


class QueryError(InvalidInputError):
    """A query was refused, failed, or ran past its time limit; the message says why."""


def _check_statement(sql: object) -> str:
    if not isinstance(sql, str) or not sql.strip():
        raise QueryError("sql must be one SELECT statement, e.g. SELECT count(*) FROM patients")
    try:
        statements = duckdb.extract_statements(sql)
    except duckdb.Error as exc:
        raise QueryError(f"the SQL does not parse: {str(exc).splitlines()[0]}") from None
    if len(statements) != 1:
        raise QueryError(f"send exactly one statement (found {len(statements)}); only one read-only SELECT runs")
    kind = statements[0].type
    if kind != duckdb.StatementType.SELECT:
        raise QueryError(
            f"only read-only SELECT queries run here, not {kind.name}; the database cannot be changed through query"
        )
    return sql


def _json_value(value: Any) -> Any:
    """A query result value as JSON-friendly data (lists, dicts, strings, numbers)."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, (_dt.datetime, _dt.date, _dt.time)):
        return value.isoformat()
    if isinstance(value, (Decimal, uuid.UUID, _dt.timedelta)):
        return str(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).hex()
    if isinstance(value, dict):
        return {str(k): _json_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_value(v) for v in value]
    return str(value)


def _create_views(con: duckdb.DuckDBPyConnection) -> list[str]:
    base = (
        "SELECT s.name AS scenario, e.scenario_id, e.entity_type, e.entity_id, e.entity_data AS data "
        "FROM scenario_entities e JOIN scenarios s ON s.scenario_id = e.scenario_id"
    )
    con.execute(f"CREATE TEMP VIEW entities AS {base}")
    views = ["entities"]
    taken = {row[0] for row in con.execute("SELECT table_name FROM duckdb_tables() WHERE schema_name = 'main'").fetchall()}
    types = [row[0] for row in con.execute("SELECT DISTINCT entity_type FROM scenario_entities ORDER BY 1").fetchall()]
    for entity_type in types:
        if entity_type in taken or not entity_type.isidentifier() or entity_type in views:
            continue
        con.execute(
            f'CREATE TEMP VIEW "{entity_type}" AS SELECT scenario, scenario_id, entity_id, data '
            f"FROM entities WHERE entity_type = '{entity_type}'"
        )
        views.append(entity_type)
    return views


def query_scenarios(
    sql: str,
    *,
    limit: int = DEFAULT_ROW_LIMIT,
    timeout: float = DEFAULT_TIMEOUT,
    db_path: str | Path | None = None,
) -> dict[str, Any]:
    """Run one read-only SELECT over the saved scenarios, in a sandbox.

    Args:
        sql: one SELECT statement (see the module docstring for the views).
        limit: at most this many rows are returned (1 to 100,000); ``total_rows`` still
            counts them all.
        timeout: seconds before the query is interrupted.
        db_path: the database file (default: ``HEALTHSIM_DB`` or the default file).

    Returns:
        ``{"columns": [...], "rows": [[...], ...], "row_count": n, "total_rows": N,
        "truncated": N > n, "elapsed_seconds": s, "views": [...]}``.

    Raises:
        QueryError: the SQL is not one SELECT, is refused by the sandbox, fails, or
            runs past ``timeout``; the message says which.
    """
    _check_statement(sql)
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_ROW_LIMIT:
        raise QueryError(f"limit must be a whole number from 1 to {MAX_ROW_LIMIT}, not {limit!r}")
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0:
        raise QueryError(f"timeout must be a positive number of seconds, not {timeout!r}")
    store = ScenarioStore(db_path)
    store.list_scenarios(limit=1)  # a normal open: schema upgrades, staged leftovers removed
    with connect(store.path, write=False, config=_SANDBOX_CONFIG) as con:
        if con is None:
            raise QueryError(f"there is no database at {str(store.path)!r} yet; save or import a scenario first")
        views = _create_views(con)
        con.execute("SET lock_configuration = true")  # no later SET can reopen the sandbox
        timer = threading.Timer(timeout, con.interrupt)
        started = time.monotonic()
        timer.start()
        try:
            relation = con.sql(sql)
            columns = list(relation.columns)
            rows: list[list[Any]] = []
            total = 0
            for batch in relation.to_arrow_reader(_BATCH_ROWS):
                if len(rows) < limit:
                    # Column by column: records keyed by name would merge duplicate names.
                    wanted = batch.slice(0, limit - len(rows))
                    values = [column.to_pylist() for column in wanted.columns]
                    rows.extend([_json_value(v) for v in record] for record in zip(*values, strict=True))
                total += batch.num_rows
        except duckdb.InterruptException:
            raise QueryError(
                f"the query ran longer than {timeout:g} s and was stopped; filter more or add a LIMIT"
            ) from None
        except duckdb.Error as exc:
            message = str(exc).splitlines()[0]
            if "disabled" in message or "Permission" in message:
                message += " (the query sandbox has no file, network or extension access)"
            raise QueryError(f"the query failed: {message}") from None
        finally:
            timer.cancel()
    return {
        "columns": columns,
        "rows": rows,
        "row_count": len(rows),
        "total_rows": total,
        "truncated": total > len(rows),
        "elapsed_seconds": round(time.monotonic() - started, 3),
        "views": views,
    }

