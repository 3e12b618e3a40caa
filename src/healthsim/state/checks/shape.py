"""The check's answer: problems ordered and cut to fit its byte budget, and as text."""

from __future__ import annotations

import json
from typing import Any

from .rules import RULES
from .run import Found

__all__ = ["BRIEF_BYTES", "CHECK_BYTES", "brief", "brief_lines", "counted", "left_out_text", "result", "unfit_text"]

#: The answer's compact JSON (UTF-8) never exceeds this many bytes (12 KB).
CHECK_BYTES = 12 * 1024
_SHORT = 80  # characters of a name or value kept before it is cut
#: The check's counts in a summary take at most this many bytes of its budget.
BRIEF_BYTES = 1536


def _short(value: Any) -> Any:
    if isinstance(value, str) and len(value) > _SHORT:
        return value[:_SHORT] + f"…[cut: {len(value)} characters]"
    return value


def _size(value: Any) -> int:
    return len(json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode())


def result(checked: dict[str, int], found: list[Found], budget: int = CHECK_BYTES) -> dict[str, Any]:
    """``{ok, checked, problems}`` (errors first, then the largest counts), at most
    ``budget`` bytes: examples go first (the last problems' first), then whole problems
    (counted in ``problems_omitted``, their entities per severity in ``omitted_counts``),
    then the per-type counts of ``checked``."""
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
    _cut(out, budget)
    return out


def _listed(sizes: list[int]) -> int:
    """The bytes of a compact JSON list (or object) of parts of these sizes: its commas."""
    return sum(sizes) + max(len(sizes) - 1, 0)


def _cut(out: dict[str, Any], budget: int) -> None:
    """Cut ``out`` to ``budget`` bytes: the examples of the last problems first, one at a
    time, then whole problems, then the smallest per-type counts. Each step is told by
    sizes counted once and kept up to date (the bytes of compact JSON add up: a list is
    its parts and commas); measuring the whole answer after each step took minutes for a
    few thousand problems."""
    problems: list[dict[str, Any]] = out["problems"]
    examples = [[_size(e) for e in p["examples"]] for p in problems]
    heads = [_size({**p, "examples": []}) for p in problems]  # a problem less its examples
    sizes = [h + _listed(e) for h, e in zip(heads, examples, strict=True)]
    rest = _size({**out, "problems": []})
    total = rest + _listed(sizes)
    for i in reversed(range(len(problems))):
        while examples[i] and total > budget:
            problems[i]["examples"].pop()
            gone = examples[i].pop()
            total -= gone + (1 if examples[i] else 0)  # (and its comma)
            sizes[i] -= gone + (1 if examples[i] else 0)
        if total <= budget:
            return
    checked = _size(out["checked"]) - 2  # (unchanged meanwhile: measured once)
    while problems and total > budget:
        dropped = problems.pop()
        sizes.pop()
        out["problems_omitted"] = out.get("problems_omitted", 0) + 1
        # (what they counted still counts: ``omitted_counts`` per severity)
        counted = out.setdefault("omitted_counts", {"error": 0, "warning": 0})
        counted[dropped["severity"]] += dropped["count"]
        rest = _size({**out, "problems": [], "checked": {}}) + checked
        total = rest + _listed(sizes)
    counts: dict[str, int] = out["checked"]
    entries = {t: _size({t: n}) - 2 for t, n in counts.items()}  # ``"name":n``
    rest = _size({**out, "checked": {}}) - 2
    total = rest + 2 + _listed(list(entries.values()))
    for t in sorted(counts, key=lambda t: (counts[t], t)):  # (the smallest counts first)
        if total <= budget:
            return
        del counts[t]
        total -= entries.pop(t) + (1 if entries else 0)
        omitted = out.get("checked_omitted", 0)
        # (the key ``,"checked_omitted":1`` the first time, then a digit more at times)
        total += len(',"checked_omitted":1') if not omitted else _size(omitted + 1) - _size(omitted)
        out["checked_omitted"] = omitted + 1


def counted(n: int, noun: str) -> str:
    """``1 error``, ``2 errors``, ``1,000 other values``: a count and its noun, singular
    for exactly one (``noun`` is the plural; its last word loses its ``s``)."""
    return f"{n:,} {noun[:-1] if n == 1 and noun.endswith('s') else noun}"


def _fit(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def brief(answer: Any, budget: int = BRIEF_BYTES) -> dict[str, Any]:
    """The check's counts for a summary or a report: ``ok``, ``errors`` and ``warnings``
    (entities), and ``problems`` as ``[severity, rule, type, field, count]``, the first
    that fit in ``budget`` bytes (``problems_omitted`` counts the others)."""
    problems = [[p["severity"], p["rule"], p["type"][:40], p["field"][:40], p["count"]] for p in answer["problems"]]
    gone = answer.get("omitted_counts", {})
    out: dict[str, Any] = {
        "ok": answer["ok"],
        "errors": sum(p[4] for p in problems if p[0] == "error") + gone.get("error", 0),
        "warnings": sum(p[4] for p in problems if p[0] == "warning") + gone.get("warning", 0),
        "problems": problems,
    }
    omitted = answer.get("problems_omitted", 0)
    while problems and _size(out) > budget - 40:
        problems.pop()
        omitted += 1
    if omitted:
        out["problems_omitted"] = omitted
    return out


def brief_lines(check: dict[str, Any]) -> list[str]:
    """A summary's check counts as lines of text (for a terminal or a page)."""
    head = f"check: {counted(check['errors'], 'errors')}, {counted(check['warnings'], 'warnings')}"
    lines = [head if check["problems"] else "check: no problems found"]
    for severity, rule, entity_type, field, count in check["problems"]:
        lines.append(f"  {severity} {count:,} {entity_type}.{field} {rule}")
    if check.get("problems_omitted"):
        lines.append(f"  … {check['problems_omitted']:,} more (healthsim check)")
    return lines


def unfit_text(unfit: dict[str, Any]) -> str:
    """``295 dates, 5 other values such as 'unknown'``: what a summary's field holds
    besides its kind (its ``unfit``)."""
    kind = "dates" if "dates" in unfit else "numbers"
    return f"{counted(unfit[kind], kind)}, {counted(unfit['other'], 'other values')} such as {unfit['example']!r}"


def left_out_text(ages: dict[str, Any]) -> str:
    """Why a summary's age bands leave entities out (empty when they leave none)."""
    reasons = {
        "no_value": "no birth date",
        "not_a_date": "not a date",
        "partial_date": "a year or month alone",
        "born_after_as_of": "born after that day",
    }
    parts = [f"{n:,} {reasons.get(k, k)}" for k, n in ages.get("left_out", {}).items()]
    if not parts:
        return ""
    example = f" (such as {ages['left_out_example']!r})" if ages.get("left_out_example") is not None else ""
    return f"left out: {', '.join(parts)}{example}"
