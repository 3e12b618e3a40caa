"""Text helpers shared by the library and its front ends (the CLI, the MCP server).

Both are about saying where and what without breaking the channel: JSON paths that
name a place in a document, and messages that are always valid UTF-8.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

__all__ = ["ERROR_CHARS", "cut_middle", "json_path", "name_some", "safe_text"]

#: An error text longer than this is cut in the middle (it may quote the caller's input).
ERROR_CHARS = 2_000


def json_path(parent: str, key: Any) -> str:
    """``parent`` extended by a list index (``[3]``) or member (``.name``, ``["a b"]``)."""
    if isinstance(key, int):
        return f"{parent}[{key}]"
    if isinstance(key, str) and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
        return f"{parent}.{key}"
    return f"{parent}[{json.dumps(key, ensure_ascii=False)}]"


def safe_text(text: str) -> str:
    """``text`` as valid UTF-8: every lone surrogate becomes its escape (``\\ud800``).

    Text that is already valid comes back unchanged (the common case costs one encode).
    """
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


def cut_middle(text: str, limit: int = ERROR_CHARS) -> str:
    """``text``, or when longer than ``limit`` characters its start and end around
    ``…[cut: N characters]…`` (an error that quotes a caller's 10 MB name stays short)."""
    if len(text) <= limit:
        return text
    half = limit // 2
    return f"{text[:half]}…[cut: {len(text) - 2 * half} characters]…{text[-half:]}"


#: Names an error lists at most (a scenario may hold hundreds of types).
NAMED_AT_MOST = 20


def name_some(names: Sequence[str]) -> str:
    """``names`` joined by commas, the first :data:`NAMED_AT_MOST` of them and the rest
    counted (``a, b and 280 more``), so that an error stays a line or two long."""
    if not names:
        return "none"
    shown = ", ".join(names[:NAMED_AT_MOST])
    return shown if len(names) <= NAMED_AT_MOST else f"{shown} and {len(names) - NAMED_AT_MOST} more"
