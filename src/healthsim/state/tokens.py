"""Access tokens for the HTTP server: create, list, revoke, verify (issue 25).

A token's text is ``hst_<lookup>_<secret>``: the prefix makes a leaked token easy to grep
for (and to teach secret scanners), ``lookup`` is a random id of 16 hex digits that finds
the token's row through an index, and ``secret`` is 32 random bytes
(``secrets.token_urlsafe(32)``). The store keeps the name, scope, tags, times, the SHA-256
of the lookup id (not the id: SQL that can read the table, such as the query sandbox's,
must not learn it, see :data:`WRONG_SECRET_PAUSE`) and a salted scrypt hash of the whole
text — never the text. A check reads one row by its lookup id's SHA-256 and compares
hashes with :func:`hmac.compare_digest`; it never hashes every row.

scrypt's cost (n=2**14, r=8, p=1: 16 MiB and about 30-50 ms a hash) is paid once per token
per process: :class:`TokenVerifier` remembers, in memory only, a keyed digest of each text
it has accepted together with the stored hash it matched, and still reads the token's row
at every check, so a revocation (or a new token under the same name) takes effect at the
next request.

``last_used_at`` is written at most once a minute per token, so that a busy server does
not turn every read into a write.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import hmac
import json
import os
import re
import secrets
import threading
import time
from typing import Any, TypedDict

from ._engines import Connection
from ._engines.ddl import TOKENS, token_lookup_key
from .access import SCOPES, Grant, Scope
from .clock import utcnow
from .database import Database, connect, resolve_database
from .errors import InvalidInputError, StateError
from .transactions import transaction
from .validation import normalize_tags

__all__ = [
    "PREFIX",
    "TokenExistsError",
    "TokenInfo",
    "TokenNotFoundError",
    "TokenVerifier",
    "create_token",
    "list_tokens",
    "revoke_token",
    "verify_token",
]

#: Every token's text starts with this (greppable in logs, configs and repositories).
PREFIX = "hst_"
#: scrypt's cost parameters; recorded with each hash, so that they can change later.
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1
#: ``last_used_at`` is written again only when it is older than this.
LAST_USED_PRECISION = _dt.timedelta(minutes=1)
#: After a wrong secret for a token, other unknown texts for it are refused unhashed for
#: this long: each hash costs 16 MiB and ~50 ms of a core (it runs in a worker thread and
#: releases the GIL, but the cores and the memory are the server's), so a caller who knows a
#: token's lookup id could otherwise keep the server busy hashing wrong secrets. The other
#: side of it: such a caller can keep that token's unremembered texts refused, which is why
#: no table holds a lookup id (only its SHA-256): it is known only to whoever holds the text.
WRONG_SECRET_PAUSE = 1.0
#: A token's name: what ``history`` records as ``by``.
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@+-]{0,63}")
_TEXT = re.compile(r"hst_([0-9a-f]{16})_([A-Za-z0-9_-]{43})")


class TokenExistsError(StateError, ValueError):
    """A token of that name exists and is not revoked."""


class TokenNotFoundError(StateError, LookupError):
    """No token has that name."""


class TokenInfo(TypedDict):
    """One token as :func:`list_tokens` shows it (never its text nor its hash)."""

    name: str
    scope: str
    tags: list[str]
    created_at: str
    last_used_at: str | None
    revoked_at: str | None


def _check_name(name: object) -> str:
    if not isinstance(name, str) or not _NAME.fullmatch(name.strip()):
        raise InvalidInputError(
            f"token name {name!r} is not allowed: use 1-64 letters, digits and . _ @ + - "
            "(starting with a letter or digit), e.g. 'claude-alice'"
        )
    return name.strip()


def _check_scope(scope: object) -> Scope:
    for known in SCOPES:
        if scope == known:
            return known
    raise InvalidInputError(f"token scope {scope!r} is not one of {', '.join(SCOPES)}")


def _hash(text: str, salt: bytes) -> str:
    digest = hashlib.scrypt(
        text.encode(), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, maxmem=64 * 1024 * 1024, dklen=32
    )
    return f"scrypt$n={SCRYPT_N},r={SCRYPT_R},p={SCRYPT_P}${salt.hex()}${digest.hex()}"


def _matches(text: str, stored: str) -> bool:
    """Whether ``text`` hashes to ``stored`` (with the cost and salt ``stored`` records)."""
    try:
        kind, cost, salt, digest = stored.split("$")
        params = dict(part.split("=") for part in cost.split(","))
        computed = hashlib.scrypt(
            text.encode(),
            salt=bytes.fromhex(salt),
            n=int(params["n"]),
            r=int(params["r"]),
            p=int(params["p"]),
            maxmem=64 * 1024 * 1024,
            dklen=len(digest) // 2,
        )
    except (ValueError, KeyError):  # a row this release did not write: refuse, never crash
        return False
    return kind == "scrypt" and hmac.compare_digest(computed.hex(), digest)


def _tags(value: Any) -> list[str]:
    loaded = json.loads(value) if isinstance(value, str) else value
    return [str(tag) for tag in loaded or []]


def _shown(moment: _dt.datetime | None) -> str | None:
    return None if moment is None else moment.replace(microsecond=0).isoformat() + "Z"


def create_token(
    db: Database | str | os.PathLike[str] | None, name: str, scope: str, tags: list[str] | None = None
) -> str:
    """Make a token for the HTTP server and return its text — the only time it is shown.

    Args:
        db: the database (a DuckDB file, a ``postgresql://`` URL, or None for the default).
        name: the token's name, recorded as ``by`` in the history of what it changes.
        scope: ``read``, ``write`` or ``admin``.
        tags: when given, the token sees and changes only scenarios carrying one of them.

    Raises:
        InvalidInputError: the name, scope or a tag is not allowed.
        TokenExistsError: a token of that name exists (revoke it first; a revoked name
            can be used again).
    """
    name, checked_scope = _check_name(name), _check_scope(scope)
    cleaned = normalize_tags(tags)
    lookup = secrets.token_hex(8)
    text = f"{PREFIX}{lookup}_{secrets.token_urlsafe(32)}"
    stored = _hash(text, secrets.token_bytes(16))
    with connect(resolve_database(db), create=True) as con:
        assert con is not None  # (create=True)
        with transaction(con):
            row = con.execute(f"SELECT revoked_at FROM {TOKENS} WHERE name = ?", [name]).fetchone()
            if row is not None and row[0] is None:
                raise TokenExistsError(
                    f"a token named {name!r} exists; revoke it first (healthsim token revoke {name}) or choose another name"
                )
            if row is not None:
                con.execute(f"DELETE FROM {TOKENS} WHERE name = ?", [name])
            con.execute(
                f"INSERT INTO {TOKENS} (name, lookup, hash, scope, tags, created_at) VALUES (?, ?, ?, ?, ?, ?)",
                [name, token_lookup_key(lookup), stored, checked_scope, json.dumps(cleaned), utcnow()],
            )
    return text


def list_tokens(db: Database | str | os.PathLike[str] | None = None) -> list[TokenInfo]:
    """Every token, revoked ones too, by name: never their text nor their hash.

    Times are UTC in ISO 8601 (``…Z``); ``last_used_at`` is exact to a minute.
    """
    with connect(resolve_database(db)) as con:
        if con is None:
            return []
        rows = con.execute(
            f"SELECT name, scope, tags, created_at, last_used_at, revoked_at FROM {TOKENS} ORDER BY name"
        ).fetchall()
    return [
        TokenInfo(
            name=name,
            scope=scope,
            tags=_tags(tags),
            created_at=_shown(created) or "",
            last_used_at=_shown(used),
            revoked_at=_shown(revoked),
        )
        for name, scope, tags, created, used, revoked in rows
    ]


def revoke_token(db: Database | str | os.PathLike[str] | None, name: str) -> None:
    """Revoke a token: the next request that carries it gets 401. Its row stays (the name
    and times remain listed) with the hash erased.

    Raises:
        TokenNotFoundError: no token has that name, or it is already revoked.
    """
    with connect(resolve_database(db)) as con:
        if con is None:
            raise TokenNotFoundError(f"no token is named {name!r}; healthsim token list shows them")
        with transaction(con):
            row = con.execute(f"SELECT revoked_at FROM {TOKENS} WHERE name = ?", [name]).fetchone()
            if row is None:
                raise TokenNotFoundError(f"no token is named {name!r}; healthsim token list shows them")
            if row[0] is not None:
                raise TokenNotFoundError(f"the token {name!r} is already revoked")
            con.execute(f"UPDATE {TOKENS} SET revoked_at = ?, hash = '' WHERE name = ?", [utcnow(), name])


class TokenVerifier:
    """Checks token texts against one database, paying scrypt once per token and process.

    Thread-safe. Every check reads the token's row, so a revocation takes effect at the
    next check. A wrong secret for a token pauses hashing other texts for it for
    :data:`WRONG_SECRET_PAUSE` (they are refused; a remembered text still passes). What is
    remembered (a digest of each accepted text keyed by a random
    per-process key, and the stored hash it matched) is worthless outside this process.
    """

    #: Remembered tokens at most (the memory is cleared when it is full).
    MAX_REMEMBERED = 1024

    def __init__(self, db: Database | str | os.PathLike[str] | None = None) -> None:
        self.database = resolve_database(db)
        self._key = secrets.token_bytes(32)
        self._known: dict[str, tuple[str, bytes]] = {}
        self._wrong: dict[str, float] = {}  # lookup id: when a wrong secret for it was last hashed
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"TokenVerifier({self.database!s}, {len(self._known)} remembered)"

    def _digest(self, text: str) -> bytes:
        return hmac.digest(self._key, text.encode(), "sha256")

    def _accepts(self, lookup: str, text: str, stored: str) -> bool:
        with self._lock:
            known = self._known.get(lookup)
        if known is not None and known[0] == stored and hmac.compare_digest(known[1], self._digest(text)):
            return True
        if not stored:
            return False
        with self._lock:
            if time.monotonic() - self._wrong.get(lookup, -WRONG_SECRET_PAUSE) < WRONG_SECRET_PAUSE:
                return False
        accepted = _matches(text, stored)
        with self._lock:
            if len(self._known) >= self.MAX_REMEMBERED or len(self._wrong) >= self.MAX_REMEMBERED:
                self._known.clear()
                self._wrong.clear()
            if accepted:
                self._known[lookup] = (stored, self._digest(text))
            else:
                self._wrong[lookup] = time.monotonic()
        return accepted

    def verify(self, text: str) -> Grant | None:
        """The grant of a valid, unrevoked token; None for anything else (a malformed,
        unknown, wrong or revoked token: the caller answers all of them alike)."""
        parts = _TEXT.fullmatch(text) if isinstance(text, str) else None
        if parts is None:
            return None
        with connect(self.database) as con:
            if con is None:
                return None
            row = con.execute(
                f"SELECT name, hash, scope, tags, last_used_at FROM {TOKENS} WHERE lookup = ? AND revoked_at IS NULL",
                [token_lookup_key(parts.group(1))],
            ).fetchone()
            if row is None or not self._accepts(parts.group(1), text, row[1]):
                return None
            name, _, scope, tags, used = row
            _touch(con, name, used)
        return Grant(name=name, scope=_check_scope(scope), tags=tuple(_tags(tags)))


def _touch(con: Connection, name: str, used: _dt.datetime | None) -> None:
    """Record the token's use, at most once per :data:`LAST_USED_PRECISION`."""
    now = utcnow()
    if used is None or now - used >= LAST_USED_PRECISION:
        with transaction(con):
            con.execute(f"UPDATE {TOKENS} SET last_used_at = ? WHERE name = ?", [now, name])


def verify_token(db: Database | str | os.PathLike[str] | None, text: str) -> Grant | None:
    """The grant a token's text carries, or None when it is not a valid, unrevoked token
    of ``db`` (recording its use). A server keeps one :class:`TokenVerifier` instead, which
    hashes each token once per process."""
    return TokenVerifier(db).verify(text)
