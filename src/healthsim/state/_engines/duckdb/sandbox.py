"""The DuckDB file's SQL sandbox: a read-only connection in a worker process.

The rules every sandbox keeps are in :mod:`healthsim.state.query` (the public functions)
and :mod:`healthsim.state.sandbox_rules`; here is how the embedded engine keeps them:

- a read-only connection with external access disabled (no files, no network, no ATTACH,
  COPY or EXPORT, no extension install or load), a DuckDB memory limit and a private
  spill folder, and its configuration locked;
- the connection lives in a worker process (kept between queries, the database opened
  for each), so that a query DuckDB cannot interrupt (``SELECT list(range(60000000))``
  builds its list without checking for interrupts, past DuckDB's memory limit too) is
  killed at the time limit or when the process outgrows its memory cap, and the caller
  (an MCP server, say) never holds the memory itself;
- one time limit for the whole call: DuckDB is interrupted, and the conversion of the
  rows to Python checks the same deadline between bounded chunks.
"""

from __future__ import annotations

import atexit
import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, cast

import duckdb
import orjson

from ...._lazy import lazy_module
from ...errors import DatabaseError, DatabaseLockedError, QueryError, StateError
from ...sandbox_rules import (
    KILL_GRACE_SECONDS,
    NOT_ONE_SELECT,
    WRITE_BATCH_ROWS,
    ColumnKind,
    OutOfTime,
    Rows,
    failure_message,
    may_name_a_view,
    not_select_message,
    statement_count_message,
    timeout_message,
    unique_names,
    write_batches,
)
from .connection import lock_timeout, open_file, process_lock

if TYPE_CHECKING:  # imported on first use: see healthsim._lazy
    import pyarrow.compute as pc
    import pyarrow.parquet as pq
else:
    pc = lazy_module("pyarrow.compute")
    pq = lazy_module("pyarrow.parquet")


__all__ = [
    "SANDBOX_IN_CHILD_PROCESS",
    "SANDBOX_MEMORY_LIMIT_MIB",
    "SANDBOX_PROCESS_HEADROOM_MIB",
    "SANDBOX_TEMP_LIMIT_MIB",
    "check_statement",
    "run_sandboxed",
    "sandbox_memory_limit",
    "serve",
    "stop_sandbox_workers",
]

#: DuckDB's ``memory_limit`` in the sandbox (at most a quarter of the machine's memory).
#: DuckDB's default, 80 % of the machine, let one query take a shared machine's memory.
SANDBOX_MEMORY_LIMIT_MIB = 1024
#: The sandbox process is killed when its resident memory passes DuckDB's limit plus
#: this much: Python, Arrow batches and what DuckDB does not account for (the lists
#: ``range()`` builds, for one) live outside DuckDB's limit.
SANDBOX_PROCESS_HEADROOM_MIB = 1024
#: Spill space for sorts, joins and aggregates past the memory limit (at most half the
#: free space of the temporary folder), in a private folder removed after each query.
SANDBOX_TEMP_LIMIT_MIB = 4096
#: Run the sandbox in a child process (false: in this process, with no hard stop for
#: work DuckDB does not interrupt, and no memory cap beyond DuckDB's own).
SANDBOX_IN_CHILD_PROCESS = True

_BATCH_ROWS = 2048
#: How often the parent checks the child's memory and the deadline.
_POLL_SECONDS = 0.05
#: Time for the child to start (imports) on top of the wait for a locked database.
_START_SECONDS = 15.0

_SANDBOX_CONFIG: dict[str, object] = {
    "enable_external_access": False,
    "autoinstall_known_extensions": False,
    "autoload_known_extensions": False,
}


def _memory_message(limit: str, detail: str = "") -> str:
    return (
        f"the query ran out of the sandbox's memory ({limit}) and was stopped; select fewer or "
        "smaller columns (not whole data documents), aggregate in SQL (count, avg, GROUP BY), "
        "filter with WHERE or add a LIMIT" + (f" [{detail}]" if detail else "")
    )


def _physical_memory() -> int | None:
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):  # not POSIX, or not reported
        return None


def sandbox_memory_limit() -> int:
    """DuckDB's memory limit in the sandbox, in MiB.

    ``SANDBOX_MEMORY_LIMIT_MIB``, but at most a quarter of the machine's memory (and at
    least 128 MiB), so that a query cannot starve the other programs on a small machine.
    """
    physical = _physical_memory()
    limit = SANDBOX_MEMORY_LIMIT_MIB
    if physical:
        limit = min(limit, physical // 4 // (1 << 20))
    return max(128, limit)


def _temp_limit_mib(folder: str) -> int:
    try:
        free = shutil.disk_usage(folder).free // (1 << 20)
    except OSError:
        return SANDBOX_TEMP_LIMIT_MIB
    return max(0, min(SANDBOX_TEMP_LIMIT_MIB, free // 2))


def _sandbox_config(temp_dir: str) -> dict[str, object]:
    # With external access disabled DuckDB still spills to temp_directory (tested with
    # duckdb 2.0.1) while read_*, glob, COPY and ATTACH stay refused; a private folder
    # per query can be removed even when the child was killed mid-spill.
    return {
        **_SANDBOX_CONFIG,
        "memory_limit": f"{sandbox_memory_limit()}MiB",
        "temp_directory": temp_dir,
        "max_temp_directory_size": f"{_temp_limit_mib(temp_dir)}MiB",
    }


def check_statement(sql: object) -> str:
    if not isinstance(sql, str) or not sql.strip():
        raise QueryError(NOT_ONE_SELECT)
    try:
        statements = duckdb.extract_statements(sql)
    except duckdb.Error as exc:
        raise QueryError(f"the SQL does not parse: {str(exc).splitlines()[0]}") from None
    if len(statements) != 1:
        raise QueryError(statement_count_message(len(statements)))
    kind = statements[0].type
    if kind == duckdb.StatementType.MULTI:  # DuckDB runs it as several statements, one a write
        raise QueryError(
            "only read-only SELECT queries run here, and this one needs DuckDB to run several statements "
            "(a PIVOT without its values first creates a type); list the values: PIVOT … ON col IN ('a', 'b')"
        )
    if kind != duckdb.StatementType.SELECT:
        raise QueryError(not_select_message(kind.name))
    return sql


@contextmanager
def _read_only(path: Path, config: dict[str, Any]) -> Iterator[duckdb.DuckDBPyConnection]:
    """The sandbox's connection to the file, read-only with the sandbox's configuration."""
    if not path.exists():
        raise QueryError(f"there is no database at {str(path)!r} yet; save or import a scenario first")
    con = open_file(path, config, read_only=True)
    try:
        yield con
    finally:
        con.close()


def _create_views(con: duckdb.DuckDBPyConnection) -> list[str]:
    base = (
        "SELECT s.name AS scenario, e.scenario_id, e.entity_type, e.entity_id, e.entity_data AS data "
        "FROM scenario_entities e JOIN scenarios s ON s.scenario_id = e.scenario_id"
    )
    con.execute(f"CREATE TEMP VIEW entities AS {base}")
    views = ["entities"]
    taken = {
        row[0] for row in con.execute("SELECT table_name FROM duckdb_tables() WHERE schema_name = 'main'").fetchall()
    }
    types = [row[0] for row in con.execute("SELECT DISTINCT entity_type FROM scenario_entities ORDER BY 1").fetchall()]
    for entity_type in types:
        if entity_type in taken or not may_name_a_view(entity_type) or entity_type in views:
            continue
        con.execute(
            f'CREATE TEMP VIEW "{entity_type}" AS SELECT scenario, scenario_id, entity_id, data '
            f"FROM entities WHERE entity_type = '{entity_type}'"
        )
        views.append(entity_type)
    return views


def _run_sandbox(
    path: Path,
    sql: str,
    *,
    limit: int,
    max_bytes: int,
    timeout: float,
    config: dict[str, Any],
    on_ready: Callable[[], None],
    output: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Open the sandbox connection, run ``sql`` and collect the result (in this process),
    or with ``output`` (``{"path", "format"}``) write every row to that file instead.

    ``config`` comes from :func:`_sandbox_config`. ``on_ready`` is called once the
    database is open and the views exist: the time limit starts there, as waiting for a
    locked database has its own limit.
    """
    memory_limit = str(config["memory_limit"])
    with _read_only(path, config) as con:
        views = _create_views(con)
        # DuckDB draws a progress bar on stdout for long queries; the child's stdout
        # carries the answer. (A session setting: refused in the connect config.)
        con.execute("SET enable_progress_bar = false")
        con.execute("SET lock_configuration = true")  # no later SET can reopen the sandbox
        on_ready()
        started = time.monotonic()
        timer = threading.Timer(timeout, con.interrupt)
        timer.start()
        try:
            relation, kinds = _prepared(con.sql(sql), output["format"] if output is not None else None)
            columns = unique_names(relation.columns)
            if output is not None:
                reader = relation.to_arrow_reader(WRITE_BATCH_ROWS)
                written = write_batches(output, reader.schema, reader, started + timeout, kinds)
                return {
                    "path": output["path"],
                    "format": output["format"],
                    "columns": columns,
                    "rows_written": written,
                    "elapsed_seconds": round(time.monotonic() - started, 3),
                }
            rows = Rows(len(columns), limit=limit, max_bytes=max_bytes, deadline=started + timeout, kinds=kinds)
            try:
                for batch in relation.to_arrow_reader(_BATCH_ROWS):
                    rows.add(batch)
            except OSError as exc:
                # After the first batch DuckDB's errors come through Arrow's stream as an
                # OSError with DuckDB's message: its interrupt (the time limit) or a failure.
                message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                if message.startswith("INTERRUPT"):
                    raise OutOfTime from None
                raise QueryError(f"the query failed: {message}") from None
        except (duckdb.InterruptException, OutOfTime):
            raise QueryError(timeout_message(timeout)) from None
        except duckdb.OutOfMemoryException as exc:
            raise QueryError(_memory_message(memory_limit, str(exc).splitlines()[0])) from None
        except MemoryError:
            raise QueryError(_memory_message(memory_limit)) from None
        except duckdb.Error as exc:
            message = str(exc).splitlines()[0]
            if "disabled" in message or "Permission" in message:
                message += " (the query sandbox has no file, network or extension access)"
                raise QueryError(f"the query failed: {message}") from None
            raise QueryError(failure_message(str(exc), views)) from None  # a missing table: the views
        finally:
            timer.cancel()
    return rows.result(columns, round(time.monotonic() - started, 3), views)


def _prepared(relation: duckdb.DuckDBPyRelation, fmt: str | None) -> tuple[duckdb.DuckDBPyRelation, list[ColumnKind]]:
    """The query ``relation`` with the columns Arrow cannot carry as they are turned into
    text, for the answer (``fmt`` None) or a file in ``fmt``, and what each column holds.

    The rows come from ``relation`` (the SQL already parsed), never from SQL text wrapped
    around the SQL: a trailing ``;`` or ``-- comment`` would break the wrapping, and
    columns are taken by position (``#1``…), so duplicate names and a column named like
    an alias cannot pick the wrong values.
    """
    # Types Arrow gives wrong (UHUGEINT past 2**127 wraps around, HUGEINT becomes a
    # decimal, TIMETZ loses its offset, BIT and BIGNUM become DuckDB's internal bytes):
    # DuckDB's text of them; the integers' digits become integers again in JSON outputs.
    integers = {"hugeint", "uhugeint", "bignum", "varint"}
    as_text = {"bit", "time with time zone"} | integers
    nesting = {"list", "array", "struct", "map", "union"}

    def type_ids(kind: Any) -> set[str]:  # a DuckDB type and the types nested in it
        ids = {kind.id}
        if kind.id in nesting:
            for _, child in kind.children:
                if hasattr(child, "id"):  # not an array's size
                    ids |= type_ids(child)
        return ids

    parts, kinds, changed = [], [], False
    for position, (name, kind) in enumerate(zip(relation.columns, relation.types, strict=True), start=1):
        column, label = f"#{position}", '"' + name.replace('"', '""') + '"'
        ids = type_ids(kind)
        what: ColumnKind = "json" if str(kind).upper() == "JSON" else None
        if fmt is not None and kind.id in nesting and (kind.id == "union" or ids & as_text):
            # Parquet has no unions, and Arrow fails the types above inside lists and
            # structs too: JSON text (embedded as JSON in NDJSON).
            expression, what = f"CAST(to_json({column}) AS VARCHAR)", "json"
        elif fmt == "parquet" and kind.id == "hugeint":
            # Arrow's 38-digit decimal, checked: past it, a clear error rather than a
            # file that readers refuse.
            expression = f"CAST({column} AS DECIMAL(38,0))"
        elif kind.id in as_text:
            expression = f"CAST({column} AS VARCHAR)"
            what = "integer" if kind.id in integers and fmt != "parquet" else None
        else:
            parts.append(f"{column} AS {label}")
            kinds.append(what)
            continue
        parts.append(f"{expression} AS {label}")
        kinds.append(what)
        changed = True
    return (relation.project(", ".join(parts)) if changed else relation), kinds


def _dump(message: dict[str, Any]) -> bytes:
    try:
        return orjson.dumps(message)
    except TypeError:  # an integer past 64 bits, or a lone surrogate (a file name's undecodable byte)
        # ASCII escapes carry "\udce9" to the other side's json.loads as it was; UTF-8 cannot.
        return json.dumps(message).encode("ascii")


def serve() -> None:
    """The sandbox worker process: requests on stdin, JSON lines on stdout, one request
    after the other until stdin ends (the parent closed it, or exited).

    For each request (one line of JSON) it writes ``{"ready": true}`` once the database is
    open, then one of ``{"result": …}`` or ``{"error": kind, …}``. The database is opened
    for each request and closed after it, so that between queries the worker holds no lock
    on the file (a writer in another process would fail beside a read-only open). Anything
    else that would reach stdout (a progress bar, a stray print) is sent to stderr
    instead, so the answers stay parseable.
    """
    out = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())

    def send(message: dict[str, Any]) -> None:
        out.write(_dump(message) + b"\n")
        out.flush()

    for line in sys.stdin.buffer:
        if line.strip():
            send(_serve(json.loads(line), lambda: send({"ready": True})))
    out.close()


def _serve(request: dict[str, Any], on_ready: Callable[[], None]) -> dict[str, Any]:
    """One request of the worker: its answer (a result or an error)."""
    try:
        result = _run_sandbox(
            Path(request["path"]),
            request["sql"],
            limit=request["limit"],
            max_bytes=request["max_bytes"],
            timeout=request["timeout"],
            config=request["config"],
            on_ready=on_ready,
            output=request.get("output"),
        )
    except QueryError as exc:
        return {"error": "query", "message": str(exc)}
    except DatabaseLockedError as exc:
        return {"error": "locked", "timeout": exc.timeout}
    except StateError as exc:
        return {"error": "database", "message": str(exc)}
    return {"result": result}


def _rss_bytes(pid: int) -> int | None:
    """Resident memory of process ``pid`` (Linux; ``None`` where /proc is missing)."""
    try:
        with open(f"/proc/{pid}/statm", "rb") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


def _read_lines(stream: IO[bytes], lines: queue.SimpleQueue[bytes | None]) -> None:
    for line in stream:
        lines.put(line)
    lines.put(None)  # end of output: the child has exited (or closed stdout)


#: A worker whose resident memory is past this after a query is not kept for the next one
#: (Python and DuckDB keep some of what a large query took).
_WORKER_KEEP_RSS = 512 << 20
#: Idle workers kept for later queries (queries on one file take turns; more are for
#: queries on several files at once).
_IDLE_WORKERS = 2


class _Worker:
    """A sandbox process that serves one query after the other (see :func:`serve`).

    Starting Python with DuckDB and pyarrow costs about 0.3-0.5 s, most of a trivial
    query; a worker pays it once. It is killed at a query's deadline or memory cap (the
    hard stop) and a new one is started for the next query.
    """

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.owner = os.getpid()  # a forked process must not share its parent's workers
        command = [sys.executable, "-c", "from healthsim.state._engines.duckdb.sandbox import serve; serve()"]
        self.errors = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.errors, env=env
        )
        assert self.proc.stdout is not None
        self.lines: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
        # A thread reads the answers, so that the caller's thread can watch the clock and the memory.
        self.reader = threading.Thread(target=_read_lines, args=(self.proc.stdout, self.lines), daemon=True)
        self.reader.start()

    def usable(self, env: dict[str, str]) -> bool:
        """Whether this worker can take another query (alive, same environment, ours)."""
        return self.proc.poll() is None and self.env == env and self.owner == os.getpid()

    def send(self, request: dict[str, Any]) -> None:
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write(_dump(request) + b"\n")
            self.proc.stdin.flush()
        except OSError:  # the child died; its stderr says why (reported when no answer comes)
            pass

    def failure(self) -> QueryError:
        """The error to raise when the child ended without an answer."""
        proc, killed_here = self.proc, False
        try:  # stdout closed: the child is exiting (a traceback, say); give it a moment to finish
            proc.wait(timeout=2)
        except subprocess.TimeoutExpired:  # still running: nothing more will come
            proc.kill()
            proc.wait()
            killed_here = True
        self.errors.seek(0)
        lines = self.errors.read()[-4000:].decode("utf-8", "replace").strip().splitlines()
        detail = lines[-1] if lines else f"exit status {proc.returncode}"
        if proc.returncode == -getattr(signal, "SIGKILL", 9) and not killed_here:  # the out-of-memory killer, usually
            detail = "killed by the operating system, most likely for lack of memory"
        return QueryError(f"the query sandbox stopped unexpectedly ({detail}); narrow the query and try again")

    def stop(self) -> None:
        """Kill the process (a read-only sandbox can go at once) and release its pipes."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self.reader.join(timeout=5)  # the pipe is at its end now that the child is gone
        for stream in (self.proc.stdin, self.proc.stdout):
            try:
                if stream is not None:
                    stream.close()
            except OSError:
                pass
        self.errors.close()


_idle_workers: list[_Worker] = []
_workers_guard = threading.Lock()


#: Environment variables the worker is given (by name, or by prefix), and the one it is not.
_CHILD_ENV_NAMES = frozenset({"PATH", "LANG", "LANGUAGE", "TMPDIR", "TEMP", "TMP", "LD_LIBRARY_PATH", "SYSTEMROOT"})
_CHILD_ENV_PREFIXES = ("LC_", "PYTHON", "HEALTHSIM_")
_CHILD_ENV_WITHHELD = frozenset({"HEALTHSIM_DB"})


def _worker_env() -> dict[str, str]:
    """The environment of a worker process: what it reads, and nothing else.

    The worker reads its settings (``HEALTHSIM_LOCK_TIMEOUT``), the temporary folder, the
    locale and Python's own variables; the request names the database file. It is not given
    the rest: not the credentials a caller keeps in its environment (``HEALTHSIM_DB`` may hold
    a team store's password, other variables cloud keys), and not what changes with no bearing
    on a query (``HOME``, a test runner's per-test variables), so that a kept worker is
    reused whenever the variables it reads are the same. It imports healthsim and its
    dependencies from this process's ``sys.path`` (as multiprocessing's spawn does), so a
    package installed in the user's site folder is found without ``HOME``.
    """
    env = {
        name: value
        for name, value in os.environ.items()
        if (name in _CHILD_ENV_NAMES or name.startswith(_CHILD_ENV_PREFIXES)) and name not in _CHILD_ENV_WITHHELD
    }
    root = str(Path(__file__).resolve().parents[4])  # the folder healthsim is imported from
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(p for p in (root, *sys.path) if p))
    return env


def _take_worker() -> _Worker:
    """An idle worker started with this environment, or a new one."""
    env = _worker_env()
    stale: list[_Worker] = []
    found: _Worker | None = None
    with _workers_guard:
        while _idle_workers and found is None:
            worker = _idle_workers.pop()
            if worker.usable(env):
                found = worker
            else:
                stale.append(worker)
    for worker in stale:
        if worker.owner == os.getpid():
            worker.stop()
    return found or _Worker(env)


def _give_back(worker: _Worker) -> None:
    """Keep ``worker`` for the next query, unless it is gone or holds too much memory."""
    rss = _rss_bytes(worker.proc.pid)
    with _workers_guard:
        if (
            worker.proc.poll() is None
            and (rss is None or rss <= _WORKER_KEEP_RSS)
            and len(_idle_workers) < _IDLE_WORKERS
        ):
            _idle_workers.append(worker)
            return
    worker.stop()


def stop_sandbox_workers() -> None:
    """Stop the idle sandbox worker processes (they also end when this process does)."""
    with _workers_guard:
        workers = [w for w in _idle_workers if w.owner == os.getpid()]
        _idle_workers.clear()
    for worker in workers:
        worker.stop()


atexit.register(stop_sandbox_workers)


def _answer(message: dict[str, Any], path: Path) -> dict[str, Any]:
    """The result of a worker's answer, or its error raised."""
    if "result" in message:
        return cast(dict[str, Any], message["result"])
    if message["error"] == "locked":
        raise DatabaseLockedError(path, message["timeout"])
    if message["error"] == "database":
        raise DatabaseError(message["message"])
    raise QueryError(message["message"])


def _run_in_child(path: Path, request: dict[str, Any], timeout: float) -> dict[str, Any]:
    """Run the sandbox in a worker process, killed at the deadline or past its memory cap.

    The request carries everything the child needs, the DuckDB configuration included,
    so that both processes agree on the limits (read from this process's constants).
    """
    memory_cap = (sandbox_memory_limit() + SANDBOX_PROCESS_HEADROOM_MIB) << 20
    worker = _take_worker()
    answered = False
    try:
        worker.send(request)
        ready_by = time.monotonic() + lock_timeout() + _START_SECONDS
        deadline: float | None = None  # set when the child has the database open
        while True:
            stop_at = ready_by if deadline is None else deadline + KILL_GRACE_SECONDS
            try:
                line = worker.lines.get(timeout=max(0.0, min(_POLL_SECONDS, stop_at - time.monotonic())))
            except queue.Empty:
                line = b""
            if line is None:
                raise worker.failure()
            if line:
                try:
                    message = json.loads(line)
                except ValueError:  # cut short: the child died while writing
                    raise worker.failure() from None
                if message.get("ready"):
                    deadline = time.monotonic() + timeout
                    continue
                answered = True
                return _answer(message, path)
            rss = _rss_bytes(worker.proc.pid)
            if rss is not None and rss > memory_cap:
                raise QueryError(_memory_message(f"{memory_cap >> 20}MiB for the whole sandbox process"))
            if time.monotonic() >= stop_at:
                if deadline is None:
                    raise QueryError(
                        "the query sandbox did not open the database within "
                        f"{lock_timeout() + _START_SECONDS:g} s; try again"
                    )
                raise QueryError(timeout_message(timeout))
    finally:
        # An answered worker has closed the database (it must, before this process's turn on
        # the file ends) and can serve the next query; any other is killed now: the hard stop.
        if answered:
            _give_back(worker)
        else:
            worker.stop()


def run_sandboxed(
    path: Path, sql: str, *, limit: int, max_bytes: int, timeout: float, output: dict[str, str] | None = None
) -> dict[str, Any]:
    """Run ``sql`` in the sandbox (a child process unless :data:`SANDBOX_IN_CHILD_PROCESS`
    is off): its result, or with ``output`` the rows written to that file."""
    # Hold this process's turn on the file while the child has it open, as connect() does
    # (the caller prepared the file: the sandbox opens it read-only, and must never see
    # half-written data).
    with process_lock(path):
        temp_dir = tempfile.mkdtemp(prefix="healthsim-query-")
        try:
            config = _sandbox_config(temp_dir)
            if SANDBOX_IN_CHILD_PROCESS and sys.executable:
                request = {
                    "path": str(path),
                    "sql": sql,
                    "limit": limit,
                    "max_bytes": max_bytes,
                    "timeout": timeout,
                    "config": config,
                    "output": output,
                }
                return _run_in_child(path, request, timeout)
            return _run_sandbox(
                path,
                sql,
                limit=limit,
                max_bytes=max_bytes,
                timeout=timeout,
                config=config,
                on_ready=lambda: None,
                output=output,
            )
        finally:
            # The child may have been killed mid-spill: its files would stay otherwise.
            shutil.rmtree(temp_dir, ignore_errors=True)
