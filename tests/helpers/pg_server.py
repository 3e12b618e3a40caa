"""A throwaway PostgreSQL server for the team store tests.

Each test session starts its own server from the installed binaries (``initdb`` + ``pg_ctl``) in a fresh
temporary folder, so the tests never depend on, or change, a cluster the machine already runs. The tests
connect over TCP with a password as ``healthsim``, a plain role without superuser or CREATEDB, because that
is how a team member connects to a shared server: anything that only works for a superuser must fail here.
The superuser ``postgres`` has no password and only reaches the server through the unix socket in the
server's folder; the helper uses it to create and drop the per-test databases.
"""

from __future__ import annotations

import atexit
import contextlib
import glob
import os
import re
import secrets
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import psycopg
from psycopg import sql

from healthsim.state._engines.postgres.idle import close_idle_connections

#: The plain role the tests connect as.
ROLE = "healthsim"
#: Its password (test-only, the server listens on 127.0.0.1 only).
PASSWORD = "hs-test-pw"
#: The superuser, reachable only through the unix socket (trust, no password).
SUPERUSER = "postgres"
#: Where the server folders go, under tempfile.gettempdir(); the prefix also finds stale ones.
FOLDER_PREFIX = "healthsim-pg-"
#: A folder older than this whose server is gone is left over from a killed run and is removed.
STALE_AFTER_SECONDS = 600
#: Settings for a server whose data is thrown away: durability costs time and buys nothing here.
SETTINGS = {
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "max_connections": "100",
}
INSTALL_HINT = (
    "PostgreSQL server binaries (initdb, pg_ctl, postgres) not found under /usr/lib/postgresql/*/bin "
    "nor through `pg_config --bindir`; install them, on Debian: apt-get install postgresql"
)
_DB_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")


class PgServerError(RuntimeError):
    """The server could not be found, started or used; the message says why (with the server log)."""


def find_bindir() -> Path:
    """The folder of the newest installed PostgreSQL server binaries.

    Debian installs each major version side by side under /usr/lib/postgresql/<major>/bin and puts none
    of the server binaries on PATH, so look there first (highest major wins), then ask ``pg_config``.

    Raises:
        PgServerError: No ``initdb`` was found; the message says what to install.
    """

    def major(initdb: str) -> float:
        version = Path(initdb).parent.parent.name
        try:
            return float(version)  # "15", or "9.6" for old ones
        except ValueError:
            return -1.0

    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=major)
    if candidates:
        return Path(candidates[-1]).parent
    pg_config = shutil.which("pg_config")
    if pg_config:
        result = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, check=False)
        bindir = Path(result.stdout.strip())
        if result.returncode == 0 and (bindir / "initdb").exists() and (bindir / "pg_ctl").exists():
            return bindir
    raise PgServerError(INSTALL_HINT)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now (the caller retries if it is taken)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, but another user's
        return True
    return True


def sweep_stale_folders(parent: Path | None = None) -> list[Path]:
    """Remove server folders that a killed test run left behind (about 40 MB each).

    A folder is stale only when it is old enough not to be a concurrent run still in ``initdb`` and its
    server is not running (no ``postmaster.pid``, or its process is gone). A server whose process is still
    alive is never touched: it may belong to another test run.

    Returns:
        The folders removed.
    """
    parent = parent or Path(tempfile.gettempdir())
    removed = []
    for folder in parent.glob(FOLDER_PREFIX + "*"):
        try:
            if time.time() - folder.stat().st_mtime < STALE_AFTER_SECONDS:
                continue
            pid_file = folder / "data" / "postmaster.pid"
            if pid_file.exists():
                first_line = pid_file.read_text().split("\n", 1)[0].strip()
                if first_line.isdigit() and _pid_alive(int(first_line)):
                    continue
        except OSError:
            continue
        shutil.rmtree(folder, ignore_errors=True)
        removed.append(folder)
    return removed


class PgServer:
    """One private PostgreSQL server in a temporary folder, for tests.

    Usage::

        server = PgServer()
        server.start()
        url = server.new_database()  # postgresql://healthsim:hs-test-pw@127.0.0.1:<port>/<db>
        ...
        server.stop()

    The folder holds ``data/`` (the cluster), ``server.log`` and the unix socket. When run as root the
    folder belongs to the ``postgres`` user and the binaries run through ``runuser``, because ``initdb``
    and ``postgres`` refuse to run as root.
    """

    def __init__(self, bindir: Path | None = None) -> None:
        self.bindir = bindir or find_bindir()
        self.folder: Path | None = None
        self._port: int | None = None
        self._admin: psycopg.Connection | None = None
        self._lock = threading.Lock()  # one admin connection, shared by whoever creates databases
        self._owner_pid: int | None = None

    # -- where it is --------------------------------------------------------------------------------------

    @property
    def host(self) -> str:
        """The TCP host the tests connect to."""
        return "127.0.0.1"

    @property
    def port(self) -> int:
        """The TCP port (also names the unix socket file)."""
        if self._port is None:
            raise PgServerError("the server is not started")
        return self._port

    @property
    def running(self) -> bool:
        """Whether start() succeeded and stop() has not run since."""
        return self.folder is not None and self._port is not None

    def url_for(self, dbname: str) -> str:
        """The URL a test passes to the engine: the plain role, with its password, over TCP."""
        return f"postgresql://{ROLE}:{PASSWORD}@{self.host}:{self.port}/{dbname}"

    # -- life cycle ---------------------------------------------------------------------------------------

    def start(self) -> PgServer:
        """Create a fresh cluster, start it, and create the plain role.

        Returns:
            self, so ``PgServer().start()`` reads naturally.

        Raises:
            PgServerError: initdb or the server failed; the message includes the server log's tail.
        """
        if self.running:
            return self
        sweep_stale_folders()
        # Always a new folder (mkdtemp): a folder left by an earlier run is never reused.
        folder = Path(tempfile.mkdtemp(prefix=FOLDER_PREFIX))
        self.folder = folder
        self._owner_pid = os.getpid()
        # Registered before anything can fail, so a half-started server is still stopped and removed.
        atexit.register(self.stop)
        try:
            self._prepare_folder(folder)
            self._initdb(folder)
            self._start_server(folder)
            with self.admin_connect() as con:
                # Plain role: no SUPERUSER, CREATEDB or CREATEROLE, so the engine is tested with the
                # rights a real team member has. The password is stored as SCRAM (PG 14+ default).
                con.execute(
                    sql.SQL("CREATE ROLE {} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD {}").format(
                        sql.Identifier(ROLE), sql.Literal(PASSWORD)
                    )
                )
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop the server at once and remove its folder; safe to call again, or if start() failed."""
        if self._owner_pid is not None and self._owner_pid != os.getpid():
            return  # a forked child inherited this object (and the atexit hook): the server is the parent's
        with self._lock:
            if self._admin is not None:
                with contextlib.suppress(Exception):
                    self._admin.close()
                self._admin = None
        folder, self.folder, self._port = self.folder, None, None
        with contextlib.suppress(Exception):
            atexit.unregister(self.stop)
        if folder is None:
            return
        if (folder / "data" / "postmaster.pid").exists():
            # Immediate: the data is thrown away next, so a clean shutdown checkpoint is wasted time.
            self._run(["pg_ctl", "stop", "-D", str(folder / "data"), "-m", "immediate", "-w", "-t", "30"], check=False)
        shutil.rmtree(folder, ignore_errors=True)

    def __enter__(self) -> PgServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- databases ----------------------------------------------------------------------------------------

    def admin_connect(self, dbname: str = "postgres") -> psycopg.Connection:
        """A new autocommit connection as the superuser, through the unix socket in the server's folder."""
        if self.folder is None:
            raise PgServerError("the server is not started")
        return psycopg.connect(
            host=str(self.folder), port=self.port, user=SUPERUSER, dbname=dbname, autocommit=True, connect_timeout=10
        )

    def new_database(self, name: str | None = None, *, copy_of: str | None = None) -> str:
        """Create an empty database owned by the plain role (or a copy of one) and return its URL.

        The role owns the database, and so (PostgreSQL 15: ``public`` belongs to ``pg_database_owner``)
        it may create tables in ``public`` without any extra grant.

        Args:
            name: The database name (lower case letters, digits and ``_``); a unique one when omitted.
            copy_of: The name of a database of this server to copy, tables and rows (a test's data
                saved once per worker); nothing may be connected to it (close this process's idle
                connections first: ``close_idle_connections``).

        Returns:
            ``postgresql://healthsim:<PASSWORD>@127.0.0.1:<port>/<name>``.
        """
        name = name or f"hs_test_{secrets.token_hex(6)}"
        if not _DB_NAME.fullmatch(name):
            raise ValueError(f"database name {name!r}: use 1-63 lower case letters, digits and _")
        # template0 is never connected to, so CREATE DATABASE cannot fail with "source database is being
        # accessed by other users". It takes ~15 ms (fsync off): template1, STRATEGY file_copy or a prepared
        # template all measured within a few ms of it, so the simplest statement (valid before PG15) wins.
        self._admin_execute(
            sql.SQL("CREATE DATABASE {} OWNER {} TEMPLATE {}").format(
                sql.Identifier(name), sql.Identifier(ROLE), sql.Identifier(copy_of or "template0")
            )
        )
        return self.url_for(name)

    def drop_database(self, name: str) -> None:
        """Drop a database even if connections to it are still open (they are terminated); no error if absent.

        The connections this process keeps idle for its next store operation are closed first: the
        drop would wait ~0.1 s for each terminated one to end.
        """
        close_idle_connections()
        self._admin_execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))

    def _admin_execute(self, statement: sql.Composed) -> None:
        with self._lock:
            if self._admin is None or self._admin.closed:
                self._admin = self.admin_connect()
            self._admin.execute(statement)

    # -- helpers ------------------------------------------------------------------------------------------

    @staticmethod
    def _as_root() -> bool:
        return hasattr(os, "geteuid") and os.geteuid() == 0

    def _run(self, argv: list[str], *, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run a server binary, as ``postgres`` through runuser when we are root."""
        command = [str(self.bindir / argv[0]), *argv[1:]]
        if self._as_root():
            command = ["runuser", "-u", SUPERUSER, "--", *command]
        # cwd: the postgres user may not be allowed into our working directory (initdb then complains).
        result = subprocess.run(
            command, capture_output=True, text=True, check=False, cwd=self.folder or "/", timeout=120
        )
        if check and result.returncode != 0:
            raise PgServerError(
                f"{' '.join(argv[:2])} failed ({result.returncode}):\n{result.stdout}{result.stderr}{self._log_tail()}"
            )
        return result

    def _prepare_folder(self, folder: Path) -> None:
        """Give the folder to the user the server runs as (postgres, when we are root)."""
        (folder / "data").mkdir(mode=0o700)
        if self._as_root():
            try:
                shutil.chown(folder, SUPERUSER, SUPERUSER)
                shutil.chown(folder / "data", SUPERUSER, SUPERUSER)
            except LookupError as exc:
                raise PgServerError(
                    f"running as root needs a '{SUPERUSER}' system user to run the server; {INSTALL_HINT}"
                ) from exc
        # 0700 like a data folder: only the server's user (and root) reaches the socket and the log.
        folder.chmod(0o700)

    def _initdb(self, folder: Path) -> None:
        # --auth-host=scram-sha-256: over TCP everyone needs a password, which is what the tests check.
        # --auth-local=trust: the superuser has no password and only the socket in our 0700 folder.
        # --no-sync: the cluster is thrown away, fsync of ~1000 files would only cost time.
        # --locale=C, UTF8: the same on every machine, whatever LANG says.
        self._run(
            [
                "initdb",
                "-D",
                str(folder / "data"),
                "-U",
                SUPERUSER,
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                "--encoding=UTF8",
                "--locale=C",
                "--no-sync",
                "--no-instructions",
            ]
        )

    def _start_server(self, folder: Path) -> None:
        conf = folder / "data" / "postgresql.conf"
        base_conf = conf.read_text()
        for attempt in range(5):
            port = free_port()
            settings = {
                **SETTINGS,
                "listen_addresses": "'127.0.0.1'",
                "port": str(port),
                "unix_socket_directories": f"'{folder}'",
            }
            # Appended settings win over initdb's; rewritten from the original on each attempt. We write
            # as root into the postgres user's file, which keeps its owner.
            conf.write_text(base_conf + "\n# healthsim tests\n" + "".join(f"{k} = {v}\n" for k, v in settings.items()))
            result = self._run(
                ["pg_ctl", "start", "-D", str(folder / "data"), "-l", str(folder / "server.log"), "-w", "-t", "60"],
                check=False,
            )
            if result.returncode == 0:
                self._port = port
                return
            # Another process may have taken the port between free_port() and the bind: try another one.
            if "could not bind" in self._log_tail() and attempt < 4:
                continue
            raise PgServerError(
                f"pg_ctl start failed ({result.returncode}):\n{result.stdout}{result.stderr}{self._log_tail()}"
            )

    def _log_tail(self, lines: int = 30) -> str:
        if self.folder is None:
            return ""
        try:
            text = (self.folder / "server.log").read_text(errors="replace")
        except OSError:
            return ""
        return "\nserver.log (end):\n" + "\n".join(text.splitlines()[-lines:])
