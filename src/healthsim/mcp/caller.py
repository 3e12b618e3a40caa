"""Who is calling a tool: the grant of the HTTP request's token, or nobody in particular.

``healthsim mcp --http`` checks each request's bearer token (``mcp.http``) and the SDK
keeps the verified token in a context variable that reaches the tool's worker thread.
:func:`as_caller` runs a tool inside :func:`healthsim.state.access.granted` for that
token, so the operations apply its scope and tags and record its name as ``by``. Over
stdio there is no token and nothing changes.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext

from mcp.server.auth.middleware.auth_context import get_access_token
from mcp.server.auth.provider import AccessToken

from ..state.access import SCOPES, Grant, Scope, granted

__all__ = ["access_token_for", "as_caller", "grant_of"]


def access_token_for(grant: Grant, lookup: str) -> AccessToken:
    """The SDK's record of a verified token. It holds the token's name, scope, tags and
    non-secret lookup id, never its secret: the SDK keeps this object for the request, so
    its ``repr`` and anything that logs it stay free of the secret."""
    return AccessToken(
        token=f"hst_{lookup}_…",
        # The SDK binds a session to its client_id: one token's, not its name's, so a new
        # token given a revoked token's name cannot continue the revoked token's sessions.
        client_id=f"{grant.name}#{lookup}",
        scopes=[grant.scope],
        claims={"name": grant.name, "tags": list(grant.tags)},
    )


def grant_of(token: AccessToken) -> Grant:
    """The grant an :func:`access_token_for` record carries."""
    scope: Scope = next((s for s in SCOPES if s in token.scopes), "read")  # least, should a record lack it
    claims = token.claims or {}
    tags = claims.get("tags") or []
    return Grant(name=str(claims.get("name", token.client_id)), scope=scope, tags=tuple(str(t) for t in tags))


def as_caller() -> AbstractContextManager[None]:
    """Run the block as the current HTTP request's token (nothing over stdio)."""
    token = get_access_token()
    return nullcontext() if token is None else granted(grant_of(token))
