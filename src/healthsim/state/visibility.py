"""What a grant means: the scope an action needs, and the scenarios a tag-limited caller sees.

:mod:`healthsim.state.access` holds the caller's grant (an HTTP token's name, scope and
tags); this module is what the operations ask of it. Outside a grant (the library, the
terminal, the stdio server) nothing here limits anything.

A grant with tags sees and changes only scenarios carrying at least one of them (in any
case, as tags are matched everywhere). The rule is enforced where every operation passes:
finding a scenario by name or id (:func:`~healthsim.state.reading.find_scenario`, and
:func:`~healthsim.state.history.find_deleted` for the trash), listing, and writing a
scenario's tags. A scenario outside the tags is answered exactly as a missing one is, so
a caller cannot learn that it exists (its name is still taken: names are unique in a
store, and a save under a hidden name is refused as a taken name is).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from .access import Scope, current_grant
from .errors import AccessDeniedError

if TYPE_CHECKING:
    from ._engines import Connection

__all__ = [
    "granted_tags",
    "is_visible",
    "keep_access",
    "limiting_tags",
    "may_see",
    "require_scope",
    "visible_sql",
    "visible_tags_sql",
]

_PARAM = "hs_grant_tag"


def require_scope(needed: Scope, action: str) -> None:
    """Refuse ``action`` when the caller's grant lacks the scope ``needed``.

    Raises:
        AccessDeniedError: the message names the scope needed and the one the token has.
    """
    grant = current_grant()
    if grant is not None and not grant.allows(needed):
        raise AccessDeniedError(
            f"{action} needs the {needed} scope; this token ({grant.name}) has {grant.scope}: "
            f"ask the store's owner for a token with the {needed} scope"
        )


def limiting_tags() -> tuple[str, ...] | None:
    """The caller's tags, lowercased (tags match in any case), or None when the caller
    may see every scenario."""
    grant = current_grant()
    if grant is None or not grant.tags:
        return None
    return tuple(dict.fromkeys(tag.strip().lower() for tag in grant.tags))


def may_see(tags: Iterable[str]) -> bool:
    """Whether a scenario with ``tags`` is visible to the caller."""
    wanted = limiting_tags()
    return wanted is None or any(isinstance(t, str) and t.strip().lower() in wanted for t in tags)


def _tag_params(params: dict[str, Any]) -> list[str]:
    """The caller's tags as SQL parameters (added to ``params``), each lowercased by the
    database as the stored tags are: Python's lower() of one beside SQL's of the other hid
    a tag such as "Äpfel" on a team store in the C locale (where SQL leaves "Ä" as it is)."""
    grant = current_grant()
    assert grant is not None
    names = []
    for position, tag in enumerate(dict.fromkeys(tag.strip() for tag in grant.tags)):
        params[f"{_PARAM}{position}"] = tag
        names.append(f"lower(CAST(${_PARAM}{position} AS VARCHAR))")
    return names


def visible_sql(column: str, params: dict[str, Any]) -> str:
    """SQL (both engines): whether the current scenario whose id is ``column`` is visible;
    its parameters are added to ``params`` (named ``$…`` parameters)."""
    if limiting_tags() is None:
        return "true"
    names = _tag_params(params)
    return f"{column} IN (SELECT scenario_id FROM scenario_tags WHERE lower(tag) IN ({', '.join(names)}))"


def visible_tags_sql(con: Connection, column: str, params: dict[str, Any]) -> str:
    """SQL: whether the JSON array of tags in ``column`` (a version's, for scenarios in the
    trash) holds one of the caller's; its parameters are added to ``params``."""
    if limiting_tags() is None:
        return "true"
    return "(" + " OR ".join(con.engine.json_text_in(column, name) for name in _tag_params(params)) + ")"


def is_visible(con: Connection, scenario_id: uuid.UUID) -> bool:
    """Whether the current scenario ``scenario_id`` is visible to the caller (one query
    under a tag-limited grant, none otherwise)."""
    if limiting_tags() is None:
        return True
    rows = con.execute("SELECT tag FROM scenario_tags WHERE scenario_id = ?", [scenario_id]).fetchall()
    return may_see(row[0] for row in rows)


def granted_tags(tags: list[str]) -> list[str]:
    """The tags to write for a scenario the caller makes or rewrites: ``tags``, plus the
    grant's first tag when none of its tags is there (so the caller keeps seeing it)."""
    grant = current_grant()
    if grant is None or not grant.tags or may_see(tags):
        return tags
    first = grant.tags[0].strip()
    return [*tags, first] if first else tags


def keep_access(tags: list[str], label: str) -> None:
    """Refuse a change of tags that would leave the caller without access to the scenario.

    Raises:
        AccessDeniedError: none of the grant's tags would remain; the message says which.
    """
    grant = current_grant()
    if grant is not None and grant.tags and not may_see(tags):
        granting = ", ".join(repr(t) for t in grant.tags)
        raise AccessDeniedError(
            f"removing that tag from scenario {label!r} would leave it without a tag this token ({grant.name}) "
            f"may use ({granting}): keep one of them, or ask the store's owner to change it"
        )
