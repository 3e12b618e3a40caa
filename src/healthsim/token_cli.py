"""``healthsim token create|list|revoke``: the HTTP server's access tokens (issue 25).

A Typer sub-app that ``cli.py`` registers as ``token``. Only Typer and Rich are imported
here; the library (``healthsim.state.tokens``) when a command runs, so ``healthsim --help``
stays quick. It does not import ``cli`` (which imports it): errors are shown as ``cli``
shows them, one line on stderr and exit 1.
"""

import functools
import json
import os
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

import typer

from ._text import safe_text
from .cli_choices import one_of
from .cli_pipes import PipeConsole, output_cut, write_out
from .state import StateError

__all__ = ["token_app"]

F = TypeVar("F", bound=Callable[..., Any])

token_app = typer.Typer(
    name="token",
    help="Tokens for the HTTP server (healthsim mcp --http): create, list, revoke.",
    no_args_is_help=True,
    rich_markup_mode=None,
)


# As cli.py's: text shown as stored (no markup, no emoji codes).
out = PipeConsole(highlight=False, soft_wrap=True, markup=False, emoji=False)
err = PipeConsole(stderr=True, highlight=False, soft_wrap=True, markup=False, emoji=False)


def _guarded(command: F) -> F:
    """Library errors: one line on stderr, exit 1 (as the other commands)."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except StateError as exc:
            err.print(f"error: {safe_text(str(exc))}", markup=False)
            raise typer.Exit(1) from None
        except BrokenPipeError:  # `healthsim token list --json | head`
            output_cut()

    return wrapper  # type: ignore[return-value]


def _db(ctx: typer.Context) -> str | None:
    obj = ctx.find_root().obj
    return obj.get("db") if isinstance(obj, dict) else None


@token_app.command("create")
@_guarded
def create(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The token's name, e.g. claude-alice (shown in history as 'by').")],
    scope: Annotated[
        str,
        typer.Option("--scope", help="read, write or admin.", callback=one_of("scope"), metavar="<read|write|admin>"),
    ],
    tag: Annotated[
        list[str] | None,
        typer.Option("--tag", metavar="<tag>", help="Limit the token to scenarios with this tag (repeatable)."),
    ] = None,
) -> None:
    """Create a token and print it once: it cannot be shown again.

    \b
    Example: healthsim token create claude-alice --scope write --tag team-a
    """
    from .state.tokens import create_token

    text = create_token(_db(ctx), name, scope, tag or [])
    out.print(text, markup=False, soft_wrap=True)
    limits = f", tags {', '.join(tag)}" if tag else ""
    err.print(
        f"token {name!r} ({scope}{limits}) created. Copy it now: it cannot be shown again "
        "(the store keeps only a hash). Give it to an assistant as the header "
        "'Authorization: Bearer <token>'.",
        markup=False,
    )


NARROW = 70  # below it, `healthsim token list` prints two lines per token instead of its table


@token_app.command("list")
@_guarded
def list_command(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON (for scripts).")] = False,
) -> None:
    """List the tokens: names, scopes, tags, created, last used, revoked (never the tokens).

    \b
    Example: healthsim token list
    """
    from .state.tokens import list_tokens
    from .summary_view import fitted_table, minute

    tokens = list_tokens(_db(ctx))
    if as_json:
        write_out(json.dumps(tokens, ensure_ascii=False, indent=2) + "\n")
        return
    if not tokens:
        out.print("no tokens (healthsim token create NAME --scope read makes one)", markup=False)
        return
    # Days for created and revoked, minutes for the last use (UTC): 80 columns hold a row.
    headers = ["name", "scope", "tags", "created", "last used (UTC)", "revoked"]
    rows = [
        [
            t["name"],
            t["scope"],
            ", ".join(t["tags"]) or "(all)",
            t["created_at"][:10],
            minute(t["last_used_at"]) if t["last_used_at"] else "never",
            (t["revoked_at"] or "")[:10],
        ]
        for t in tokens
    ]
    columns = os.environ.get("COLUMNS", "")  # read now: the console read it at import
    width = int(columns) if columns.isdigit() and int(columns) > 0 else out.width
    if width >= NARROW:
        out.print(fitted_table(headers, rows, width, flexible={0: 1, 2: 1}))
        return
    # A narrow terminal cut the names to nothing: each token on two lines instead.
    for name, scope, tags, created, used, revoked in rows:
        out.print(f"{name}  {scope}  {tags}", markup=False, no_wrap=True, overflow="ellipsis", width=width)
        dates = (f"  revoked {revoked}, " if revoked else "  ") + f"created {created}, last used {used}"
        out.print(dates, markup=False, no_wrap=True, overflow="ellipsis", width=width)


@token_app.command("revoke")
@_guarded
def revoke(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The token's name.")],
) -> None:
    """Revoke a token: its next request gets 401.

    \b
    Example: healthsim token revoke claude-alice
    """
    from .state.tokens import revoke_token

    revoke_token(_db(ctx), name)
    out.print(f"token {name!r} revoked; requests carrying it are refused from now on", markup=False)
