"""The check's answer: problems ordered and cut to fit its byte budget, and as text."""

from __future__ import annotations

import json
from typing import Any

from .rules import RULES
from .run import Found

__all__ = ["CHECK_BYTES", "result"]

#: The answer's compact JSON (UTF-8) never exceeds this many bytes (12 KB).
CHECK_BYTES = 12 * 1024
_SHORT = 80  # characters of a name or value kept before it is cut


def _short(value: Any) -> Any:
    if isinstance(value, str) and len(value) > _SHORT:
        return value[:_SHORT] + f"…[cut: {len(value)} characters]"
    return value


def _size(value: Any) -> int:
    return len(json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode())


def result(checked: dict[str, int], found: list[Found], budget: int = CHECK_BYTES) -> dict[str, Any]:
    """``{ok, checked, problems}`` (errors first, then the largest counts), at most
    ``budget`` bytes: examples go first (the last problems' first), then whole problems
    (counted in ``problems_omitted``), then the per-type counts of ``checked``."""
    ranked = sorted(found, key=lambda f: (RULES[f.rule][0] != "error", -f.count, f.entity_type, f.field, f.rule))
    problems = [
        {
            "rule": f.rule,
            "severity": RULES[f.rule][0],
            "type": _short(f.entity_type),
            "field": _short(f.field),
            "count": f.count,
            "examples": [{"id": _short(i), "value": _short(v)} for i, v in f.examples],
        }
        for f in ranked
    ]
    out: dict[str, Any] = {
        "ok": not any(p["severity"] == "error" for p in problems),
        "checked": {_short(t): n for t, n in checked.items()},
        "problems": problems,
    }
    if _size(out) <= budget:
        return out
    out["truncated"] = True
    for p in reversed(problems):
        while p["examples"] and _size(out) > budget:
            p["examples"].pop()
    while problems and _size(out) > budget:
        problems.pop()
        out["problems_omitted"] = out.get("problems_omitted", 0) + 1
    counts: dict[str, int] = out["checked"]
    while counts and _size(out) > budget:
        del counts[min(counts, key=lambda t: (counts[t], t))]
        out["checked_omitted"] = out.get("checked_omitted", 0) + 1
    return out
