"""``healthsim mcp --http``: the same tools over MCP's Streamable HTTP transport, for a team.

Built from the official SDK's parts: its Streamable HTTP app (one session per client, many
at once), its bearer-token middleware (a request without a valid token gets 401 and
reaches no tool) fed by :class:`StoreTokens` (the store's tokens,
``healthsim.state.tokens``), and its Host/Origin check against an allow-list (DNS
rebinding). Around it, :class:`BodyLimit` refuses request bodies over the server's limit
(default 16 MB) with an error that says the limit and what to do, and reads each request
as strictly as the stdio server does (``mcp.wire``): the SDK's JSON reader keeps the last
of repeated keys, so ``{"a": 1, "a": 2}`` in an entity was saved as ``{"a": 2}``.

Safe by default: it binds to loopback; another address needs ``allow_remote`` and the
server then says that TLS belongs in a reverse proxy in front (it speaks plain HTTP).
The token's secret is never logged, never in an error and never in the SDK's record of
the caller (see ``mcp.caller``).
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import logging
import os
import sys
from collections import OrderedDict, deque
from collections.abc import Hashable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
from mcp.server.auth.provider import AccessToken
from mcp.server.auth.settings import AuthSettings
from mcp.server.transport_security import TransportSecuritySettings
from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..state import InvalidInputError, StateError
from ..state.tokens import TokenVerifier
from .caller import access_token_for
from .listing import ListingCache
from .wire import answer_for, screen

__all__ = [
    "DEFAULT_MAX_BODY",
    "DEFAULT_PORT",
    "SESSIONS_PER_TOKEN",
    "UNAVAILABLE",
    "BodyLimit",
    "HttpOptions",
    "SessionCap",
    "StoreTokens",
    "build_app",
    "serve_http",
    "unavailable_answer",
]

log = logging.getLogger("healthsim.mcp")

DEFAULT_PORT = 8765
#: The largest request body taken, by default (16 MB; the SDK's own default is 4 MiB).
DEFAULT_MAX_BODY = 16_000_000
_LOOPBACK_NAMES = ("localhost",)


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an address or ``localhost``) is this machine only."""
    if host.lower() in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class StoreTokens:
    """The SDK's token verifier over the store's tokens.

    Each request's token is checked against its row in the store, so a revoked token
    gets 401 at its next request. On a DuckDB file the answer is reused while the file
    is byte for byte unchanged (``mcp.listing``'s test: a revocation writes the file);
    scrypt is paid once per token (``TokenVerifier``). A team store is read every time.
    """

    def __init__(self, db: str | os.PathLike[str] | None) -> None:
        self._verifier = TokenVerifier(db)
        self.database = self._verifier.database
        self._seen = ListingCache()
        self._key = os.urandom(32)

    def __repr__(self) -> str:
        return f"StoreTokens({self._verifier.database!s})"

    def _check(self, text: str) -> dict[str, Any]:
        grant = self._verifier.verify(text)
        if grant is None:
            return {"grant": None}
        return {"grant": grant, "lookup": text.split("_")[1]}

    def check(self, text: str) -> AccessToken | None:
        """The SDK's record of a valid token (blocking)."""
        # Kept by a keyed digest of the text, not the text: a memory dump shows no token.
        key: Hashable = ("token", hashlib.blake2b(text.encode(), key=self._key).hexdigest())
        found = self._seen.get(self._verifier.database, key, lambda: self._check(text))
        return None if found["grant"] is None else access_token_for(found["grant"], found["lookup"])

    async def verify_token(self, token: str) -> AccessToken | None:
        """The SDK's ``TokenVerifier`` protocol: None answers 401."""
        return await anyio.to_thread.run_sync(self.check, token)


class BodyLimit:
    """ASGI middleware: a request body over ``limit`` bytes gets 413 and a JSON-RPC error
    that says the limit and what to do; nothing behind it runs. A body within the limit is
    read whole and screened as the stdio server screens a line (:func:`.wire.screen`: a
    repeated key, NaN, an integer over 4,300 digits, a lone surrogate, nesting over 120
    levels): such a request is answered with the same error (a tool error for a tool
    call, a JSON-RPC error otherwise) and never reaches a tool.

    A request without a valid token (checked by ``tokens``, when given) gets the SDK's
    401 instead, whatever its size or content: every request without a valid token gets
    401. The token is checked only for a body refused here, so other requests pay nothing more.
    """

    def __init__(self, app: ASGIApp, limit: int, tokens: StoreTokens | None = None) -> None:
        self.app = app
        self.limit = limit
        self.tokens = tokens

    async def _authorised(self, scope: Scope) -> bool:
        """Whether the request carries a valid token (as the SDK's bearer check reads it)."""
        if self.tokens is None:
            return True
        header = Headers(scope=scope).get("authorization") or ""
        if not header.lower().startswith("bearer "):
            return False
        return await self.tokens.verify_token(header[7:]) is not None

    async def _too_large(self, scope: Scope, send: Send, size: str) -> None:
        """413 for a caller with a valid token; else the app answers, unread body and all:
        its bearer check answers 401 before reading any of it."""
        if await self._authorised(scope):
            await self._refuse(send, size)
            return

        async def nothing() -> Message:
            return {"type": "http.request", "body": b"", "more_body": False}

        await self.app(scope, nothing, send)

    async def _refuse(self, send: Send, size: str) -> None:
        text = (
            f"the request body ({size}) is over this server's limit of {self.limit:,} bytes; "
            "send less in one call (add_entities takes entities in batches) "
            "or start the server with a larger --max-body-mb"
        )
        body = json.dumps({"jsonrpc": "2.0", "id": None, "error": {"code": -32600, "message": text}}).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 413, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracked(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self._serve(scope, receive, tracked)
        except StateError as exc:
            # The store could not check the token (a team store down, a DuckDB file locked
            # or broken): one line in the log, 503 for the caller (the SDK's layers have
            # answered already when it came through them: see unavailable_answer).
            log.error("a request could not be served: %s", exc)
            if not started:
                await unavailable_answer(Request(scope), exc)(scope, receive, send)

    async def _serve(self, scope: Scope, receive: Receive, send: Send) -> None:
        declared = Headers(scope=scope).get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            await self._too_large(scope, send, f"{int(declared):,} bytes")
            return
        # A body without a length (chunked) is read up to the limit before anything runs.
        messages: deque[Message] = deque()
        size = 0
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                break
            size += len(message.get("body", b""))
            if size > self.limit:
                await self._too_large(scope, send, f"more than {self.limit:,} bytes")
                return
            if not message.get("more_body", False):
                break

        if scope.get("method") == "POST" and await self._refused(scope, send, messages):
            return

        async def replay() -> Message:
            return messages.popleft() if messages else await receive()

        await self.app(scope, replay, send)

    async def _refused(self, scope: Scope, send: Send, messages: deque[Message]) -> bool:
        """Answer a request the strict reading refuses (for a caller with a valid token);
        whether it was answered."""
        body = b"".join(m.get("body", b"") for m in messages if m["type"] == "http.request")
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            return False  # the SDK answers text that is not UTF-8 (a parse error)
        # Python's json reads a 16 MB body in about a second: not on the event loop.
        envelope, problem = await anyio.to_thread.run_sync(screen, text)
        answer = None if problem is None else answer_for(envelope, problem)
        if answer is None or not await self._authorised(scope):
            return False  # nothing wrong, nobody waits for an answer, or the app's 401
        log.warning("answered a refused request with an error")
        payload = answer.model_dump_json(by_alias=True, exclude_none=True).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
        session = Headers(scope=scope).get("mcp-session-id")
        if session is not None:
            headers.append((b"mcp-session-id", session.encode("latin-1")))
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": payload})
        return True


#: What a caller is told when the store cannot be used (it names no host or database:
#: anyone may send a bearer header, and the server's log says which store and why).
UNAVAILABLE = "the server cannot reach its store just now; try again in a moment (the server's log says why)"


def unavailable_answer(request: Request, exc: Exception) -> Response:
    """The answer to a request that failed outside a tool (the token's check, mostly):
    503 with a JSON-RPC error when the store could not be used, else a plain 500.

    Installed as the SDK app's error handler: without it a team store that was down gave
    every request a bare 500 "Internal Server Error", which a client cannot tell from a bug.
    """
    if isinstance(exc, StateError):
        body = {"jsonrpc": "2.0", "id": None, "error": {"code": -32603, "message": UNAVAILABLE}}
        return JSONResponse(body, status_code=503, headers={"Retry-After": "5"})
    body = {
        "jsonrpc": "2.0",
        "id": None,
        "error": {"code": -32603, "message": "internal error (the server's log says why)"},
    }
    return JSONResponse(body, status_code=500)


#: Sessions one token keeps open at most; opening one more ends its least recently used.
SESSIONS_PER_TOKEN = 64


class SessionCap:
    """ASGI middleware: each token keeps at most :data:`SESSIONS_PER_TOKEN` sessions open.

    The SDK keeps up to 10,000 sessions, each until 30 idle minutes pass (about 70 KB of
    memory each, measured): one token, a client that opens a session per call and never
    ends it, or a leaked one, filled them in a minute, and every other client got 503.
    This layer remembers which sessions each bearer header opened (by a keyed digest of
    it, never the text), in order of last use, and when a token opens one too many it ends
    the least recently used one with the SDK's own ``DELETE``, sent with the same header:
    a client that never reuses its sessions keeps working, and other tokens are untouched.
    A session the SDK ended itself (idle) is forgotten when its turn comes (its ``DELETE``
    gets 404). A header the SDK refuses (401) opens nothing and is never recorded.
    """

    def __init__(self, app: ASGIApp, per_token: int = SESSIONS_PER_TOKEN) -> None:
        self.app = app
        self.per_token = per_token
        self._key = os.urandom(32)
        self._sessions: dict[str, OrderedDict[str, None]] = {}

    def _who(self, authorization: str) -> str:
        return hashlib.blake2b(authorization.encode("utf-8", "surrogateescape"), key=self._key).hexdigest()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = Headers(scope=scope) if scope["type"] == "http" else Headers()  # (lifespan has none)
        authorization = headers.get("authorization")
        if not authorization:
            await self.app(scope, receive, send)
            return
        who = self._who(authorization)
        session = headers.get("mcp-session-id")
        if session is not None:
            kept = self._sessions.get(who)
            if kept is not None and session in kept:
                if scope.get("method") == "DELETE":
                    del kept[session]
                else:
                    kept.move_to_end(session)
            await self.app(scope, receive, send)
            return
        opened: list[str] = []

        async def noting(message: Message) -> None:
            if message["type"] == "http.response.start" and message.get("status") == 200:
                opened.extend(v.decode("latin-1") for k, v in message.get("headers", []) if k == b"mcp-session-id")
            await send(message)

        await self.app(scope, receive, noting)
        if opened:
            kept = self._sessions.setdefault(who, OrderedDict())
            kept[opened[0]] = None
            while len(kept) > self.per_token:
                oldest, _ = kept.popitem(last=False)
                await self._end(scope, oldest)

    async def _end(self, scope: Scope, session: str) -> None:
        """End ``session`` as its client would: the SDK's DELETE, with the request's headers
        (its token, Host and Origin, which the SDK checks) and the session's id."""
        keep = (b"authorization", b"host", b"origin", b"mcp-protocol-version")
        headers = [(k, v) for k, v in scope["headers"] if k in keep]
        headers += [(b"mcp-session-id", session.encode("latin-1")), (b"accept", b"application/json, text/event-stream")]
        ending = {**scope, "method": "DELETE", "headers": headers, "query_string": b""}

        async def nothing() -> Message:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def dropped(message: Message) -> None:
            return None

        try:
            await self.app(ending, nothing, dropped)
        except Exception:  # a session that is already gone: nothing to end
            log.info("ending a session over the per-token limit failed", exc_info=True)


@dataclass
class HttpOptions:
    """How ``healthsim mcp --http`` serves: address, limits and the allow-lists."""

    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    allow_remote: bool = False
    max_body: int = DEFAULT_MAX_BODY
    #: Host header values taken besides the loopback ones (e.g. the reverse proxy's name).
    allowed_hosts: list[str] = field(default_factory=list)
    #: Origin header values taken besides the loopback ones (browsers send one).
    allowed_origins: list[str] = field(default_factory=list)

    def check(self) -> None:
        """Refuse an address other than loopback without ``allow_remote``.

        Raises:
            InvalidInputError: the address is not loopback and ``allow_remote`` is off.
        """
        if not is_loopback(self.host) and not self.allow_remote:
            raise InvalidInputError(
                f"--host {self.host} would serve other machines; the server speaks plain HTTP, so put a "
                "reverse proxy with TLS in front and pass --allow-remote (or keep the default 127.0.0.1)"
            )
        if not 1 <= self.max_body:
            raise InvalidInputError(f"the body limit must be at least 1 byte, not {self.max_body}")

    def security(self) -> TransportSecuritySettings:
        """The Host and Origin allow-lists: loopback, the bound address, and those given."""
        hosts = ["127.0.0.1:*", "localhost:*", "[::1]:*"]
        for host in self.allowed_hosts:  # a bare name: on its default port and on any other
            hosts += [host] if host.endswith("]") or host.count(":") == 1 else [host, f"{host}:*"]
        origins = ["http://127.0.0.1:*", "http://localhost:*", "http://[::1]:*", *self.allowed_origins]
        if not is_loopback(self.host) and self.host not in ("0.0.0.0", "::"):
            shown = f"[{self.host}]" if ":" in self.host else self.host
            hosts.append(f"{shown}:*")
        return TransportSecuritySettings(
            enable_dns_rebinding_protection=True, allowed_hosts=hosts, allowed_origins=origins
        )

    @property
    def url(self) -> str:
        shown = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{shown}:{self.port}/mcp"


def build_app(db: str | os.PathLike[str] | None, options: HttpOptions, tokens: StoreTokens | None = None) -> ASGIApp:
    """The ASGI app serving every tool over ``db``, each request checked by ``tokens``
    (default: the store's tokens)."""
    from ..mcp_server import build_server

    # The SDK's auth settings describe an OAuth server; here the store issues the tokens,
    # so there is no authorization server to advertise (nor resource metadata).
    auth = AuthSettings(issuer_url=options.url, resource_server_url=None)  # type: ignore[arg-type]
    tokens = tokens or StoreTokens(db)
    server = build_server(db, auth=auth, token_verifier=tokens)
    app = server.streamable_http_app(
        max_request_body_size=options.max_body + 1,  # ours (BodyLimit) decides, with a clearer answer
        transport_security=options.security(),
        host=options.host,
        json_response=True,  # one JSON answer per call, no SSE stream: a third less per call (no tool streams)
    )
    app.add_exception_handler(Exception, unavailable_answer)  # (the SDK's Starlette app: its last resort)
    return BodyLimit(SessionCap(app), options.max_body, tokens)


REMOTE_NOTE = """healthsim mcp: serving other machines on {host}:{port} over plain HTTP. Bearer tokens
cross the network in the clear unless TLS is in front: put a reverse proxy (nginx, Caddy)
with TLS before this server and let clients reach only the proxy. Requests must name this
server in their Host header as loopback or as an --allowed-host (e.g. --allowed-host mcp.example.org)."""


def serve_http(db: str | os.PathLike[str] | None, options: HttpOptions) -> None:
    """Serve until interrupted (``healthsim mcp --http``); messages go to stderr."""
    import uvicorn

    options.check()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")  # stderr
    tokens = StoreTokens(db)
    app = build_app(db, options, tokens)
    shown = tokens.database if isinstance(tokens.database, Path) else "a PostgreSQL team store"
    print(
        f"healthsim mcp: serving MCP over Streamable HTTP at {options.url} ({shown}); "
        "every request needs a token (healthsim token create NAME --scope read). Ctrl-C stops.",
        file=sys.stderr,
        flush=True,
    )
    if not is_loopback(options.host):
        print(REMOTE_NOTE.format(host=options.host, port=options.port), file=sys.stderr, flush=True)
    # log_config=None: uvicorn's lines (the access log too) go to the root logger, on stderr.
    config = uvicorn.Config(app, host=options.host, port=options.port, log_config=None, access_log=True)
    anyio.run(uvicorn.Server(config).serve)
