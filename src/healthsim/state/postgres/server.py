"""Which PostgreSQL database a URL names, and errors that name it without its password.

A team store is given as ``postgresql://user:password@host:port/database`` (also
``postgres://``; libpq's query parameters such as ``?sslmode=require`` pass through).
Every message about it shows :attr:`TeamDatabase.shown`: host, port and database, and
the user, never the password.
"""

from __future__ import annotations

import getpass
import os
import urllib.parse
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..._lazy import lazy_module
from ..errors import InvalidInputError, ServerUnavailableError

if TYPE_CHECKING:  # imported on first use: see healthsim._lazy
    import psycopg
else:
    psycopg = lazy_module("psycopg")

__all__ = ["SCHEMES", "TeamDatabase", "is_team_url", "unavailable"]

SCHEMES = ("postgresql", "postgres")

#: How long to wait for a server that does not answer (seconds): fail fast, say why.
CONNECT_TIMEOUT = 10


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
            InvalidInputError: it is not one, or its port is not a number.
        """
        try:
            scheme = urllib.parse.urlsplit(url).scheme
        except ValueError:  # e.g. an unbalanced "[" in the host
            scheme = url.partition(":")[0]
        if scheme.lower() not in SCHEMES:
            raise InvalidInputError(f"{_redacted(url)} is not a postgresql:// URL")
        location = url.partition("://")[2].partition("?")[0]
        user_info = location.rpartition("@")[0]
        if "@" in user_info or "/" in user_info:
            # libpq ends the user information at the first "/" or "@": the rest of a
            # password would be read as host and port, and shown in messages.
            raise InvalidInputError(
                f"{_redacted(url)} is not a usable PostgreSQL URL: its user name or password holds '@' or '/'; "
                "write them percent-encoded (%40, %2F)"
            )
        try:
            params = psycopg.conninfo.conninfo_to_dict(url)
            ports = str(params.get("port") or os.environ.get("PGPORT") or "5432")
            port = int(ports.split(",")[0] or "5432")  # several hosts: the first one's
        except (ValueError, psycopg.Error):
            raise InvalidInputError(
                f"{_redacted(url)} is not a usable PostgreSQL URL (its port is not a number, or it is malformed); "
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

    def connect(self) -> psycopg.Connection:
        """A new connection (autocommit: the library opens its own transactions).

        Raises:
            ServerUnavailableError: the server cannot be reached, refused the login, or
                has no such database (one line naming host, port and database).
        """
        try:
            # UTF-8 whatever PGCLIENTENCODING says: COPY sends the text as UTF-8 bytes.
            return psycopg.connect(self.url, autocommit=True, connect_timeout=CONNECT_TIMEOUT, client_encoding="UTF8")
        except psycopg.Error as exc:
            raise unavailable(self, exc) from None


def _login_name() -> str:
    """libpq's default user: the login name ("" when the system has none to give)."""
    try:
        return getpass.getuser()
    except (OSError, KeyError):
        return ""


def _redacted(url: str) -> str:
    from ..database import redact_url  # (database imports this module)

    return redact_url(url)


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
