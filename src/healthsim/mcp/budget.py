"""Byte budgets for MCP answers: every answer is cut to fit, and says so.

An assistant's context is small, so every tool answer has a budget: 12 KB for summaries
(and checks), 32 KB for everything else. The budget counts the answer's JSON as the
assistant reads it: compact UTF-8 JSON, the same value that travels as the tool's
structured content. An answer that would be larger is cut, in two steps:

1. **Whole items from the end of its main list** (query rows, scenarios, versions, a
   page's entities, ids not found): what is left is still exact, and the answer says how
   many were left out and how to get them (``offset``, ``limit``, a narrower query).
2. **Everything else, evenly** (when one item alone is too large, or the answer has no
   list, e.g. a diff or a long description): strings longer than a length are cut and
   end with ``…[cut: N characters]``, lists and objects keep their first members, and
   values nested deeper than a level become ``"[cut: nested value]"``; the largest
   length that fits is found by bisection.

Either way the answer gains ``truncated: true`` and ``truncated_note`` (what was cut,
how to get the rest). If even that cannot fit (it always can: the last resort keeps the
note alone), the note is all that is sent.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = ["SUMMARY_BUDGET", "ANSWER_BUDGET", "Cut", "answer_bytes", "answer_text", "fit"]

#: Summaries and checks.
SUMMARY_BUDGET = 12 * 1024
#: Every other answer: a query page, a type page, a history, a diff, a list.
ANSWER_BUDGET = 32 * 1024
_NOTE_ROOM = 600  # bytes kept free for truncated / truncated_note
_NESTED = "[cut: nested value]"


def answer_text(value: Any) -> str:
    """The answer as compact JSON text, non-ASCII readable; a lone surrogate (which UTF-8
    cannot carry) is written as its JSON escape, the same value."""
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return json.dumps(value, ensure_ascii=True, separators=(",", ":"))
    return text


def answer_bytes(value: Any) -> int:
    """The size of :func:`answer_text` in UTF-8 bytes."""
    return len(answer_text(value).encode("utf-8"))


@dataclass
class Cut:
    """How to cut one tool's answer: its main list, and what to say when items go.

    Attributes:
        path: keys leading to the list whose last items may go (e.g. ``("rows",)``).
        how: how to get the items left out, e.g. ``"call again with offset=40"``; a
            callable gets the number of items kept and the answer (already cut).
        after: adjusts the answer once ``kept`` items remain (e.g. a page's
            ``next_offset`` and ``returned``).
        rest: how to get the rest when values inside items had to be cut.
    """

    path: tuple[str, ...] = ()
    how: Callable[[int, dict[str, Any]], str] | None = None
    after: Callable[[dict[str, Any], int], None] | None = None
    rest: str = "ask for less (a smaller limit, a narrower query)"


def fit(answer: dict[str, Any], budget: int, cut: Cut | None = None) -> dict[str, Any]:
    """``answer`` itself when it fits ``budget`` bytes, else a copy cut to fit that says so.

    Args:
        answer: the tool's JSON answer (an object).
        budget: the most bytes of compact UTF-8 JSON the answer may take.
        cut: the tool's main list and hints; without it only step 2 applies.

    Returns:
        An answer of at most ``budget`` bytes; when cut, with ``truncated: true`` and
        ``truncated_note``.
    """
    if answer_bytes(answer) <= budget:
        return answer
    cut = cut or Cut()
    notes: list[str] = []
    room = budget - _NOTE_ROOM
    answer = dict(answer)
    items = _list_at(answer, cut.path) if cut.path else None
    if items is not None and items:
        kept = _most_items(answer, cut, items, room)
        if kept < len(items):
            _set_list(answer, cut.path, items[:kept], cut, kept)
            how = cut.how(kept, answer) if cut.how else cut.rest
            notes.append(f"{len(items) - kept} of {len(items)} {cut.path[-1]} left out; {how}")
    if answer_bytes(answer) > room:
        answer = _shrink_evenly(answer, room)
        notes.append(
            f"values marked '…[cut' or '{_NESTED}' are shortened (never save them back as they are); {cut.rest}"
        )
    limit = f"{budget // 1024} KB"
    answer["truncated"] = True
    answer["truncated_note"] = f"answer cut to fit {limit}: " + "; ".join(notes)
    if answer_bytes(answer) > budget:  # cannot happen with the room kept; never send more
        return {"truncated": True, "truncated_note": f"answer too large for {limit}; {cut.rest}"}
    return answer


def _list_at(answer: dict[str, Any], path: tuple[str, ...]) -> list[Any] | None:
    node: Any = answer
    for key in path:
        if not isinstance(node, dict) or key not in node:
            return None
        node = node[key]
    return node if isinstance(node, list) else None


def _set_list(answer: dict[str, Any], path: tuple[str, ...], items: list[Any], cut: Cut, kept: int) -> None:
    """Put ``items`` at ``path`` (copying the objects on the way) and adjust the answer."""
    node = answer
    for key in path[:-1]:
        node[key] = dict(node[key])
        node = node[key]
    node[path[-1]] = items
    if cut.after is not None:
        cut.after(answer, kept)


def _most_items(answer: dict[str, Any], cut: Cut, items: list[Any], room: int) -> int:
    """The most leading items (at least one) with which the answer fits ``room``."""
    low, high = 1, len(items)
    while low < high:
        middle = (low + high + 1) // 2
        trial = dict(answer)
        _set_list(trial, cut.path, items[:middle], cut, middle)
        if answer_bytes(trial) <= room:
            low = middle
        else:
            high = middle - 1
    return low


def _shrink_evenly(answer: dict[str, Any], room: int) -> dict[str, Any]:
    """The answer with every value shortened to the largest size that fits ``room``."""
    low, high = 0, 1 << 16
    best: dict[str, Any] = {}
    while low <= high:
        size = (low + high) // 2
        trial = _shrunk(answer, size)
        if answer_bytes(trial) <= room:
            best, low = trial, size + 1
        else:
            high = size - 1
    return best


def _shrunk(value: Any, size: int, depth: int = 0) -> Any:
    """``value`` with strings cut to ``size`` characters, lists and objects to ``size``
    members (at least one), and nesting to ``size // 8 + 2`` levels."""
    if isinstance(value, str):
        if len(value) <= size:
            return value
        return f"{value[:size]}…[cut: {len(value)} characters]"
    if isinstance(value, int) and not isinstance(value, bool) and size < 64:
        text = str(value)
        return value if len(text) <= max(size, 20) else f"{text[:size]}…[cut: a {len(text)}-digit number]"
    if not isinstance(value, (dict, list)):
        return value
    if depth > size // 8 + 2:
        return _NESTED
    keep = max(size, 1)
    if isinstance(value, list):
        return [_shrunk(item, size, depth + 1) for item in value[:keep]]
    return {
        _shrunk(key, max(size, 40), depth): _shrunk(item, size, depth + 1) for key, item in list(value.items())[:keep]
    }
