"""Which PostgreSQL database a URL names, and errors that name it without its password.

A team store is given as ``postgresql://user:password@host:port/database`` (also
``postgres://``; libpq's query parameters such as ``?sslmode=require`` pass through).
Every message about it shows :attr:`TeamDatabase.shown`: host, port and database, and
the user, never the password.
"""

from __future__ import annotations

import getpass
import os
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ...._lazy import lazy_module
from ...errors import InvalidInputError, ServerUnavailableError
from ...redaction import show_database

if TYPE_CHECKING:  # imported on first use: see healthsim._lazy
    import psycopg
else:
    psycopg = lazy_module("psycopg")

__all__ = ["SCHEMES", "SESSION_SETTINGS", "TeamDatabase", "is_team_url", "unavailable"]

SCHEMES = ("postgresql", "postgres")

#: A character no host list holds (names, IPv4, [IPv6], %-encoded socket folders,
#: ports, commas): seen there, a password or query was read as the host.
_ODD_HOST = re.compile(r"[^A-Za-z0-9._\-:\[\],%]")

#: How long to wait for a server that does not answer (seconds): fail fast, say why.
CONNECT_TIMEOUT = 10

#: TCP keepalives, unless the URL sets its own: a server gone from the network (a dropped VPN, a
#: pulled cable) sends nothing back, and an operation waiting for its answer waited for the
#: system's keepalive, two hours and more. Probes after 30 s of silence, every 10 s, 3 unanswered:
#: the loss is noticed within about a minute. (A healthy server's machine answers probes even
#: while the server works on a long statement; they are ignored on a unix socket.)
KEEPALIVES = {"keepalives": 1, "keepalives_idle": 30, "keepalives_interval": 10, "keepalives_count": 3}

#: The session settings the library's SQL and psycopg's parsing of values rely on, sent after every
#: login and every reset. A role or database may carry others (``ALTER DATABASE … SET``): with
#: ``standard_conforming_strings = off`` a ``'\\'`` in a literal is an escape (the check's
#: patterns lost their meaning, ``'\\u0000'`` failed to parse); ``extra_float_digits = -15`` sent
#: a query's 1/3 as 0.3; a non-ISO ``DateStyle`` made psycopg fail to read a timestamp. They only
#: format text, so the library sets them whatever the server says. So is the isolation of
#: its writes: they take turns by row locks, and under a default of ``repeatable read`` or
#: ``serializable`` the second of two writers of a scenario failed ("could not serialize
#: access") after waiting instead of going ahead; readers ask for their own level. (``SET``,
#: not libpq's ``options``: connection poolers such as PgBouncer refuse that startup parameter.)
SESSION_SETTINGS = (
    "SET standard_conforming_strings = on; SET extra_float_digits = 1; "
    "SET DateStyle = 'ISO, MDY'; SET IntervalStyle = 'postgres'; "
    "SET default_transaction_isolation = 'read committed'; "
    # The server's keepalives for this session, the client's numbers: a client gone mid-save
    # kept its transaction, and the locks of its scenario, on the server for the system's two hours.
    + "; ".join(
        f"SET tcp_{name} = {KEEPALIVES[name]}"
        for name in ("keepalives_idle", "keepalives_interval", "keepalives_count")
    )
)


def is_team_url(text: str) -> bool:
    """Whether ``text`` names a PostgreSQL database (``postgresql://`` or ``postgres://``)."""
    scheme, sep, _ = text.partition("://")
    return bool(sep) and scheme.lower() in SCHEMES


@dataclass(frozen=True)
class TeamDatabase:
    """A PostgreSQL database given by URL.

    Attributes:
        url: the URL as given (with its password: never print it).
        host, port, database, user: as libpq reads them from the URL (its defaults
            when it does not name them: the environment's ``PG…`` variables, else the
            local socket, 5432 and the login name). With several hosts, ``host`` lists
            them as given and ``port`` is the first one's.
    """

    url: str = field(repr=False)
    host: str
    port: int
    database: str
    user: str

    @classmethod
    def parse(cls, url: str) -> TeamDatabase:
        """Read a ``postgresql://`` URL as libpq reads it: query parameters (``?host=…``,
        ``?port=…``, ``?dbname=…``, ``?user=…``) count, and what the URL leaves out is
        libpq's default (``PGHOST``, ``PGPORT``, ``PGDATABASE``, ``PGUSER``, else the local
        socket, 5432 and the login name), so messages name the database it connects to.

        Raises:
            InvalidInputError: it is not one, its port is not a number, or libpq would
                read part of its credentials or query as the host (see :func:`_misread`).
        """
        if not is_team_url(url):
            raise InvalidInputError(f"{show_database(url)} is not a postgresql:// URL")
        if _misread(url):
            raise InvalidInputError(
                f"{show_database(url)} is not a usable PostgreSQL URL: its user name or password (or a value in "
                "its query) holds '@' or '/', which libpq would read as the end of them; write them "
                "percent-encoded (%40, %2F)"
            )
        try:
            params = psycopg.conninfo.conninfo_to_dict(url)
            ports = str(params.get("port") or os.environ.get("PGPORT") or "5432")
            port = int(ports.split(",")[0] or "5432")  # several hosts: the first one's
        except (ValueError, psycopg.Error):
            raise InvalidInputError(
                f"{show_database(url)} is not a usable PostgreSQL URL (its port is not a number, or it is malformed); "
                "write it as postgresql://user:password@host:5432/database"
            ) from None
        user = str(params.get("user") or os.environ.get("PGUSER") or _login_name())
        return cls(
            url=url,
            host=str(params.get("host") or os.environ.get("PGHOST") or "localhost"),
            port=port,
            database=str(params.get("dbname") or os.environ.get("PGDATABASE") or user),
            user=user,
        )

    @property
    def shown(self) -> str:
        """``postgresql://user@host:port/database``: what messages show of it."""
        user = f"{self.user}@" if self.user else ""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"postgresql://{user}{host}:{self.port}/{self.database}"

    def __str__(self) -> str:
        return self.shown

    def hide_password(self, text: str) -> str:
        """``text`` (e.g. a driver's error message) with this database's password, as
        libpq reads it and as the URL writes it, replaced by ``***``: messages are built
        from the parts of :attr:`shown`, and this guards the text they quote."""
        written = self.url.partition("://")[2].partition("@")[0].partition(":")[2]
        try:
            read = str(psycopg.conninfo.conninfo_to_dict(self.url).get("password") or "")
        except psycopg.Error:
            read = ""
        # A very short password would turn every message into asterisks; libpq and the
        # server do not quote passwords in what they say anyway.
        for secret in sorted({written, read}, key=len, reverse=True):
            if len(secret) >= 4:
                text = text.replace(secret, "***")
        return text

    def connect(self) -> psycopg.Connection:
        """A new connection (autocommit: the library opens its own transactions).

        Raises:
            ServerUnavailableError: the server cannot be reached, refused the login, or
                has no such database (one line naming host, port and database).
        """
        try:
            # UTF-8 whatever PGCLIENTENCODING says: COPY sends the text as UTF-8 bytes.
            given = psycopg.conninfo.conninfo_to_dict(self.url)
            keepalives = {k: v for k, v in KEEPALIVES.items() if k not in given}
            conninfo = psycopg.conninfo.make_conninfo(self.url, **keepalives)
            raw = psycopg.connect(conninfo, autocommit=True, connect_timeout=CONNECT_TIMEOUT, client_encoding="UTF8")
        except psycopg.Error as exc:
            raise unavailable(self, exc) from None
        try:
            raw.execute(SESSION_SETTINGS)
        except psycopg.Error as exc:
            raw.close()
            raise unavailable(self, exc) from None
        return raw


def _misread(url: str) -> bool:
    """Whether libpq would read part of a password, user name or query value as the host:
    it ends the user information at the first ``@`` (or ``/``, when there is none before
    it) and takes ``?`` and ``#`` in a password as they are. So an ``@`` in the host part
    after it (a password holding ``@`` or ``/``), a user name holding ``?#&=`` (an ``@`` in
    the query, no ``/`` before it), or a host part with characters no host list holds,
    would show in messages a piece of what was meant as the password."""
    rest = url.partition("://")[2]
    end = next((i for i, c in enumerate(rest) if c in "@/"), len(rest))
    has_user = end < len(rest) and rest[end] == "@"
    after = rest[end + 1 :] if has_user else rest
    user = rest[:end].partition(":")[0] if has_user else ""
    hosts = re.split(r"[/?]", after, maxsplit=1)[0]
    return "@" in after.partition("?")[0] or any(c in user for c in "?#&=") or bool(_ODD_HOST.search(hosts))


def _login_name() -> str:
    """libpq's default user: the login name ("" when the system has none to give)."""
    try:
        return getpass.getuser()
    except (OSError, KeyError):
        return ""


def unavailable(target: TeamDatabase, exc: BaseException) -> ServerUnavailableError:
    """The one-line error for a failed connection to ``target``, saying what to check.

    libpq's own text can quote the connection string, so only its kind is kept and the
    rest is worded here (never a password).
    """
    text = " ".join(str(exc).split()).lower()
    where = f"PostgreSQL database {target.database!r} on {target.host}:{target.port}"
    if "password authentication failed" in text or "no password supplied" in text or "authentication" in text:
        why = f"the server refused the login of user {target.user!r}; check the user name and password in the URL"
    elif "does not exist" in text and "database" in text:
        why = "the server has no such database; create it (createdb) or fix the database name in the URL"
    elif "role" in text and "does not exist" in text:
        why = f"the server has no user {target.user!r}; create it or fix the user name in the URL"
    elif "too many connections" in text or "too many clients" in text or "remaining connection slots" in text:
        why = (
            "the server has no connection free (its max_connections, or a connection limit on the database or "
            "user, is reached); try again shortly, or ask the server's administrator to raise the limit"
        )
    elif "starting up" in text or "shutting down" in text or "in recovery mode" in text:
        why = "the server is starting up or shutting down; try again in a moment"
    elif "timeout" in text or "timed out" in text:
        why = f"the server did not answer within {CONNECT_TIMEOUT} s; check the host, port and network"
    elif "connection refused" in text or "could not connect" in text or "no such file" in text:
        why = "no server is listening there; start it, or check the host and port in the URL"
    elif "translate host name" in text or "name or service not known" in text or "nodename" in text:
        why = f"the host name {target.host!r} is unknown; check the URL"
    elif "permission denied" in text:
        why = f"user {target.user!r} may not connect to it; ask the server's administrator for access"
    else:
        why = "the connection failed; check that the server is up and the URL is right"
    return ServerUnavailableError(f"cannot use {where}: {why}")
