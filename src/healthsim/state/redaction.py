"""How a database is named in messages, ``repr`` and answers: never with its password.

A database is given as a DuckDB file's path, a ``postgresql://`` URL, or by mistake as
something else (``postgress://…``, ``postgresql:u:pw@h``, a libpq ``key=value`` string).
libpq takes ``?`` and ``#`` in a URL's password unescaped, so the password cannot be found
by parsing the URL as a web address (``urllib`` cut ``u:ab?Hunter2#x@h`` at the ``?`` and
showed ``Hunter2``). :func:`show_database` is the one place that turns such a value into
text, and it works from an allow-list: it shows the scheme, then only parts it can place
for certain outside the credentials (a plain user name, host names, digit ports, a plain
database name, the values of harmless libpq parameters), and ``***`` or ``…`` for the
rest. It over-hides rather than leaks: when an ``@`` after the credentials makes it
unclear where they end (``u:ab@Hunter2#x@h``), everything after the user is hidden.
"""

from __future__ import annotations

import os
import re
from typing import Any

__all__ = ["is_connection_string", "looks_like_url", "show_database"]

#: ``scheme:/`` or ``scheme//`` at the start (``postgresql:/…`` and ``postgresql//…`` are
#: typos of a URL). Two letters at least, so a Windows drive (``C:/…``) is not a scheme.
_PREFIX = re.compile(r"([A-Za-z][A-Za-z0-9+.\-]+)(:/+|/{2,})")
#: libpq's keywords (a ``key=value`` connection string starts with one).
_LIBPQ_KEYWORDS = frozenset(
    "host hostaddr port dbname user password passfile require_auth channel_binding connect_timeout "
    "client_encoding options application_name fallback_application_name keepalives keepalives_idle "
    "keepalives_interval keepalives_count tcp_user_timeout replication gssencmode sslmode sslnegotiation "
    "sslcompression sslcert sslkey sslpassword sslcertmode sslrootcert sslcrl sslcrldir sslsni requirepeer "
    "ssl_min_protocol_version ssl_max_protocol_version krbsrvname gsslib gssdelegation service "
    "target_session_attrs load_balance_hosts".split()
)
#: Parameters whose values are shown (when plain): none of them can hold a secret.
_SHOWN_PARAMETERS = frozenset(
    "host hostaddr port dbname user sslmode connect_timeout application_name target_session_attrs "
    "gssencmode channel_binding load_balance_hosts".split()
)
_CONNINFO = re.compile(r"\s*([A-Za-z_]+)\s*=")
#: A ``user:password@`` part without a scheme (``u:pw@h/db``, ``postgresql:u:pw@h``): not a
#: file path that starts with ``/``, ``~``, ``.``, or (on Windows only: elsewhere ``u:/pw@h``
#: is a user and a password) a drive.
_DRIVE = r"[A-Za-z]:[\\/]|" if os.name == "nt" else ""
_CREDENTIALS = re.compile(rf"(?!{_DRIVE}[/~.\\])[^@]*:.*@", re.DOTALL)
#: A password parameter, wherever it is (``u@h/db?password=…`` without a scheme).
_PASSWORD_PARAMETER = re.compile(r"(ssl)?password\s*=", re.IGNORECASE)
_PLAIN_USER = re.compile(r"[A-Za-z0-9_.\-]+")
_PLAIN_HOST = re.compile(r"[A-Za-z0-9_.\-]+|\[[0-9A-Fa-f:.]+\]")
_PLAIN_NAME = re.compile(r"[A-Za-z0-9_.\-]*")
_PLAIN_VALUE = re.compile(r"[A-Za-z0-9_.\-,]*")
HIDDEN = "…"


def is_connection_string(text: str) -> bool:
    """Whether ``text`` is a libpq ``key=value`` connection string (``host=h dbname=d``)."""
    found = _CONNINFO.match(text)
    return found is not None and found.group(1).lower() in _LIBPQ_KEYWORDS


def looks_like_url(text: str) -> bool:
    """Whether ``text`` is (or is a mistyped) URL or connection string rather than a file
    path: ``scheme:/…``, ``scheme//…``, anything with ``://``, a libpq ``key=value``
    string, a ``user:password@`` part without a scheme, or a ``password=`` parameter."""
    text = text.strip()
    return bool(
        _PREFIX.match(text)
        or "://" in text
        or is_connection_string(text)
        or _CREDENTIALS.match(text)
        or _PASSWORD_PARAMETER.search(text)
    )


def show_database(value: Any) -> str:
    """How ``value`` — a path, a URL (however mistyped), a libpq connection string, or
    anything with a ``shown`` attribute (a team store) — is written in messages.

    Paths are shown as they are; URLs and connection strings never with their password
    (see the module's description).

    Example:
        >>> show_database("postgresql://u:ab?Hunter2#x@db.example.org:5432/team")
        'postgresql://u:***@db.example.org:5432/team'
    """
    shown = getattr(value, "shown", None)
    if isinstance(shown, str):
        return shown
    if isinstance(value, (str, os.PathLike)):
        text = os.fsdecode(value)
    else:
        text = str(value)
    if not looks_like_url(text):
        return text
    text = text.strip()
    if is_connection_string(text):
        return "a libpq key=value connection string (not shown: it may hold a password)"
    prefix = _PREFIX.match(text)
    head = f"{prefix.group(1)}{prefix.group(2)}" if prefix else ""
    # "name:/x@h" may be a mistyped scheme and a user, or a user and a password starting with
    # "/": a lone user part there is hidden too.
    unsure = prefix is not None and prefix.group(2) == ":/"
    return head + _show_rest(text[prefix.end() :] if prefix else text, hide_user=unsure)


def _show_rest(rest: str, *, hide_user: bool = False) -> str:
    """What follows ``scheme://``, read as libpq reads it: the credentials end at the first
    ``@`` (unless a ``/`` comes first: then there are none)."""
    end = next((i for i, c in enumerate(rest) if c in "@/"), len(rest))
    credentials: str | None = None
    remainder = rest
    if end < len(rest) and rest[end] == "@":
        credentials, remainder = rest[:end], rest[end + 1 :]
    if "@" in remainder:  # a password (or query value) holding "@" or "/": where it ends is unclear
        user = re.split(r"[:@/?#]", rest, maxsplit=1)[0]
        secret = ":***" if ":" in rest.partition("@")[0] else ""
        return f"{_user(user)}{secret}@{HIDDEN}"
    shown = ""
    if credentials is not None:
        user, has_password, _ = credentials.partition(":")
        shown = f"{HIDDEN if hide_user and user and not has_password else _user(user)}{':***' if has_password else ''}@"
    location, question, query = remainder.partition("?")
    hosts, slash, path = location.partition("/")
    shown += ",".join(_host(part) for part in hosts.split(",")) if hosts else ""
    if slash:
        shown += "/" + (path if _PLAIN_NAME.fullmatch(path) else HIDDEN)
    if question:
        shown += "?" + _parameters(query)
    return shown


def _user(user: str) -> str:
    return user if _PLAIN_USER.fullmatch(user) else HIDDEN if user else ""


def _host(part: str) -> str:
    if part.startswith("["):
        host, bracket, port = part.partition("]")
        host, port = host + bracket, port.removeprefix(":") if port else ""
        has_port = bool(port) or part.endswith("]:")
    else:
        host, has_port_sep, port = part.partition(":")
        has_port = bool(has_port_sep)
    shown = host if _PLAIN_HOST.fullmatch(host) else HIDDEN if host else ""
    if has_port:
        shown += ":" + (port if port.isascii() and port.isdigit() else HIDDEN)
    return shown


def _parameters(query: str) -> str:
    """Query parameters: libpq's own names, the values of harmless ones when plain. After
    a secret one, nothing: a password written with a raw ``&`` would read as more
    parameters."""
    shown: list[str] = []
    parts = query.split("&")
    for i, part in enumerate(parts):
        key, equals, value = part.partition("=")
        name = key.lower()
        if name not in _LIBPQ_KEYWORDS:
            shown.append(HIDDEN)
        elif name in _SHOWN_PARAMETERS and (not equals or _PLAIN_VALUE.fullmatch(value)):
            shown.append(part)
        else:
            shown.append(f"{key}=***")
            if name not in _SHOWN_PARAMETERS and i + 1 < len(parts):
                shown.append(HIDDEN)
                break
    return "&".join(shown)
