"""A scenario's summary (``summarize_scenario``) as Rich tables with inline bars, and
tables that fit the terminal (``healthsim list``, ``history``).

Used by ``healthsim summary``; kept apart from the CLI's commands because it is all
presentation: what to say of each field, how long each bar is, and which column gives
way when the terminal is narrow.

Every string of the summary (names, descriptions, tags, field paths, values, codes,
gender labels) is the scenario's data, so each reaches Rich as :class:`~rich.text.Text`,
never as a ``str`` Rich would read as markup (``[/]`` raises, ``[bold]`` restyles) or
emoji codes. Numbers may be None (a sum beyond ``DECIMAL(38, 6)``, the mean of no
number) or text (a number beyond a double's range): those are shown, not formatted.
"""

from __future__ import annotations

import datetime as _dt
import re
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from rich import box
from rich.bar import Bar
from rich.cells import cell_len, set_cell_size
from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

from ._text import safe_text

__all__ = ["check_table", "fitted_table", "minute", "render_summary"]

_BAR = 24  # characters of a full bar
_MISSING = "—"  # a number the summary could not give (None)


def render_summary(summary: dict[str, Any], console: Console) -> None:
    """Print the summary: the scenario's header, then per type its fields (presence as
    a bar, JSON types, what the values are) and the healthcare facts that apply."""
    console.print(_header(summary))
    for entity_type, about in summary.get("types", {}).items():
        console.print()
        console.print(_text(f"{entity_type} — {_number(about['count'])}", style="bold"))
        if about.get("fields"):
            console.print(_fields(about))
        for fact, draw in (("age_bands", _ages), ("top_codes", _codes), ("over_time", _over_time)):
            if fact in about:
                console.print(draw(about[fact]))
        if "charges" in about:
            console.print(_charges(about["charges"]))
        if about.get("values_by_code", {}).get("codes"):
            console.print(_values_by_code(about["values_by_code"]))
    if summary.get("types_omitted"):
        omitted = _number(summary["types_omitted"])
        console.print(_text(f"{omitted} more types left out to keep the summary small", style="dim"))
    if isinstance(summary.get("check"), dict):  # the check's counts (issue 24)
        from .state.checks.shape import brief_lines

        console.print()
        for i, line in enumerate(brief_lines(summary["check"])):
            console.print(_text(line, style="bold" if i == 0 else ""))


# ------------------------------------------------------------------ fitted tables

# Characters that would break a row (or move the cursor) in a terminal: shown escaped.
_LINE_BREAKING = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_GAP = 3  # between two columns of a fitted table: the divider and a space either side


def minute(timestamp: str) -> str:
    """An ISO 8601 UTC timestamp (``2026-12-06T23:04:49.723116Z``) to the minute, as a
    person reads it in a table: ``2026-12-06 23:04``. Anything else is returned as it is."""
    try:
        moment = _dt.datetime.fromisoformat(timestamp.replace("Z", "+00:00"))
    except (ValueError, AttributeError):
        return str(timestamp)
    return moment.strftime("%Y-%m-%d %H:%M")


def _share(natural: Sequence[int], weights: Sequence[int], available: int) -> list[int]:
    """Widths for the flexible columns: each at most its natural width, the room shared
    out by ``weights`` (a column that needs less gives the rest to the others)."""
    widths = [0] * len(natural)
    spare = max(available, len(natural))  # at least one character each
    while spare > 0:
        needy = [i for i, n in enumerate(natural) if widths[i] < n]
        if not needy:
            break
        for i in needy:
            step = min(weights[i], natural[i] - widths[i], spare)
            widths[i] += step
            spare -= step
            if spare == 0:
                break
    return [max(w, 1) for w in widths]


def fitted_table(
    headers: Sequence[str],
    rows: Sequence[Sequence[str]],
    width: int,
    *,
    flexible: dict[int, int],
    right: Sequence[int] = (),
) -> Table:
    """A table of one line per row, at most ``width`` characters wide.

    Columns not in ``flexible`` (counts, dates, versions) are always shown whole; the
    ``flexible`` ones (``{column: weight}``: names, types, tags) share what is left, in
    proportion to their weights, and a value that does not fit ends in ``…``. Every value
    is literal text, never markup.
    """
    natural = [max([cell_len(h), *(cell_len(r[i]) for r in rows)]) for i, h in enumerate(headers)]
    fixed = sum(n for i, n in enumerate(natural) if i not in flexible)
    order = sorted(flexible)
    room = width - fixed - _GAP * (len(headers) - 1)
    shared = _share([natural[i] for i in order], [flexible[i] for i in order], room)
    widths = list(natural)
    for i, w in zip(order, shared, strict=True):
        widths[i] = w
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, header_style="bold")
    for i, header in enumerate(headers):
        table.add_column(
            _cut(header, widths[i]),
            width=widths[i],
            no_wrap=True,
            overflow="ellipsis",
            justify="right" if i in right else "left",
        )
    for row in rows:
        table.add_row(*(_text(_cut(value, widths[i])) for i, value in enumerate(row)))
    return table


_NUMBER_CHARS = frozenset("0123456789,.")
_NUMBER_END = re.compile(r"[0-9][0-9,.]*$")


def _cut(value: str, width: int) -> str:
    """``value`` in at most ``width`` terminal cells (wide characters count two), ``…`` if cut."""
    value = _LINE_BREAKING.sub(lambda m: f"\\u{ord(m.group()):04x}", safe_text(value))
    if cell_len(value) <= width:
        return value
    head = set_cell_size(value, max(width - 1, 0)).rstrip(" ")
    if head and len(head) < len(value) and value[len(head)] in _NUMBER_CHARS:
        head = _NUMBER_END.sub("", head).rstrip(" ")  # a number is shown whole or not at all
    return head + "…"


# Control characters of the scenario's text that a terminal would act on (an escape
# sequence sets colours or the window's title): shown escaped; line breaks and tabs stay.
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def _text(value: Any, style: str = "") -> Text:
    """``value`` as literal text: never markup, no control characters, always valid UTF-8."""
    return Text(_CONTROL.sub(lambda m: f"\\u{ord(m.group()):04x}", safe_text(str(value))), style=style)


def _number(value: Any, spec: str = ",") -> str:
    """``value`` formatted by ``spec`` if it is a number, else shown as it is (None as a dash).

    Integers are formatted as decimals: exact (``,.2f`` would go through a float), and
    never an OverflowError for one beyond a float's range (``10**400``).
    """
    if value is None:
        return _MISSING
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    try:
        return format(Decimal(value) if isinstance(value, int) else value, spec)
    except (ArithmeticError, ValueError):  # no such format for it: its plain text
        return str(value)


def _table(*headers: Any) -> Table:
    """A borderless table whose column headers are literal text."""
    table = Table(box=None, padding=(0, 1), show_edge=False)
    for header in headers:
        table.add_column(_text(header))
    return table


def _header(summary: dict[str, Any]) -> Table:
    grid = Table.grid(padding=(0, 2))
    for label, value in (
        ("name", summary["name"]),
        ("version", summary["version"]),
        ("scenario_id", summary["scenario_id"]),
        ("description", summary.get("description") or ""),
        ("tags", ", ".join(map(str, summary.get("tags", [])))),
        ("created", summary.get("created_at")),
        ("updated", summary.get("updated_at")),
        ("entities", _number(summary["entity_count"])),
    ):
        grid.add_row(label, _text(value))
    return grid


def _bar(value: float, full: float) -> Bar:
    return Bar(size=full or 1, begin=0, end=value, width=_BAR)


def _fields(about: dict[str, Any]) -> Table:
    table = _table("field", "present", "", "types", "values")
    for path, stats in about["fields"].items():
        share = stats["present"]
        table.add_row(
            _text(path),
            _bar(share, 1.0),
            _text(_number(share, ".0%")),
            _text(", ".join(map(str, stats["types"]))),
            _text(_values(stats)),
        )
    if about.get("fields_omitted"):
        table.add_row(_text(f"… {_number(about['fields_omitted'])} more fields", style="dim"), "", "", "", "")
    return table


def _values(stats: dict[str, Any]) -> str:
    """One line on a field's values: the most frequent, the range, or the lengths."""
    parts = []
    if "format" in stats:
        parts.append(f"{_number(stats['min'], '')} … {_number(stats['max'], '')}")
    elif "top" in stats:
        parts.append(" · ".join(f"{value} {_number(count)}" for value, count in stats["top"]))
    if "distinct" in stats and stats["distinct"] != len(stats.get("top", ())):
        parts.append(f"{_number(stats['distinct'])} distinct")
    if "mean" in stats:
        low, high = _number(stats["min"], ""), _number(stats["max"], "")
        parts.append(f"{low} … {high}, mean {_number(stats['mean'], '.4g')}, median {_number(stats['median'], '.4g')}")
    if "true" in stats:
        parts.append(f"true {_number(stats['true'])} · false {_number(stats['false'])}")
    if "length" in stats:
        parts.append(f"length {_number(stats['length']['min'], '')}–{_number(stats['length']['max'], '')}")
    if "unfit" in stats:
        from .state.checks.shape import unfit_text

        parts.append(unfit_text(stats["unfit"]))
    return "; ".join(parts)


def _ages(ages: dict[str, Any]) -> Group:
    genders = list(ages.get("genders", {}))
    extra = sorted({g for counts in ages["bands"].values() for g in counts} - set(genders))
    columns = genders + extra
    table = _table("age", *columns, "")  # the gender labels are the data's values
    biggest = max((sum(c.values()) for c in ages["bands"].values()), default=1)
    for band, counts in ages["bands"].items():
        total = sum(counts.values())
        table.add_row(_text(band), *(_text(_number(counts.get(g, 0))) for g in columns), _bar(total, biggest))
    by = f" by {ages['by']}" if ages.get("by") else ""
    title = _text(f"  age on {ages['as_of']} (from {ages['field']}){by}", style="italic")
    from .state.checks.shape import left_out_text

    left = left_out_text(ages)
    return Group(title, table, _text(f"  {left}", style="dim")) if left else Group(title, table)


def _codes(codes: dict[str, Any]) -> Group:
    table = _table("code", "description", "count", "")
    biggest = max((n for _, _, n in codes["top"]), default=1)
    for code, text, n in codes["top"]:
        table.add_row(_text(code), _text(text or ""), _text(_number(n)), _bar(n, biggest))
    return Group(_text(f"  top {codes['field']}", style="italic"), table)


def _over_time(over: dict[str, Any]) -> Group:
    table = _table(over["unit"], "count", "")
    biggest = max((n for _, n in over["counts"]), default=1)
    for period, n in over["counts"]:
        table.add_row(_text(period), _text(_number(n)), _bar(n, biggest))
    return Group(_text(f"  per {over['unit']} of {over['field']}", style="italic"), table)


def _values_by_code(tests: dict[str, Any]) -> Group:
    """A number field per code (a lab's value per test): the field's own range mixes units."""
    table = _table("code", "name", "unit", "count", "min", "median", "mean", "max")
    for code, name, unit, n, low, high, mean, median in (row[:8] for row in tests["codes"]):
        numbers = (_number(v, ",.6g") if isinstance(v, float) else _number(v) for v in (low, median, mean, high))
        table.add_row(_text(code), _text(name or ""), _text(unit or ""), _text(_number(n)), *map(_text, numbers))
    return Group(_text(f"  {tests['field']} per {tests['by']}", style="italic"), table)


def _charges(charges: dict[str, Any]) -> Group:
    table = _table("field", "count", "total")
    for path, totals in charges.items():
        # The total is None past DECIMAL(38, 6), or may be the text of a number: shown as is.
        table.add_row(_text(path), _text(_number(totals["count"])), _text(_number(totals["total"], ",.2f")))
    return Group(_text("  totals", style="italic"), table)


def check_table(answer: dict[str, Any], width: int = 80) -> str:
    """The answer as a readable table of at most ``width`` columns."""
    checked = ", ".join(f"{t} {n:,}" for t, n in answer["checked"].items()) or "nothing"
    # (the problems cut from the answer still count: their entities are in omitted_counts)
    gone = answer.get("omitted_counts", {})
    errors = sum(p["count"] for p in answer["problems"] if p["severity"] == "error") + gone.get("error", 0)
    warnings = sum(p["count"] for p in answer["problems"] if p["severity"] == "warning") + gone.get("warning", 0)
    lines = [_cut_to(f"Checked: {checked}", width)]
    if not answer["problems"]:
        lines.append("No problems found.")
        return "\n".join(lines)
    from .state.checks.shape import counted

    lines.append(f"{'ok' if answer['ok'] else 'NOT OK'}: {counted(errors, 'errors')}, {counted(warnings, 'warnings')}")
    lines.append("")
    # A narrow terminal cut each problem to "warning  5  claims.member_id  …", losing the
    # rule: there, the rule stays on the problem's line and the field goes on the next.
    wide = width >= 48 + max(len(p["rule"]) for p in answer["problems"])
    header = f"{'severity':<8} {'count':>9}  {'type.field':<28} rule" if wide else "severity  count  rule / type.field"
    lines.append(_cut_to(header, width))
    for p in answer["problems"]:
        if wide:
            where = _cut_to(f"{p['type']}.{p['field']}", 28)
            lines.append(_cut_to(f"{p['severity']:<8} {p['count']:>9,}  {where:<28} {p['rule']}", width))
        else:
            lines.append(_cut_to(f"{p['severity']:<8} {p['count']:>6,}  {p['rule']}", width))
            lines.append(_cut_to(f"{'':4}{p['type']}.{p['field']}", width))
        if p["examples"]:
            shown = "; ".join(
                f"{e['id']}: {e['value']!r}" if e["value"] is not None else str(e["id"]) for e in p["examples"]
            )
            lines.append(_cut_to(f"{' ' * (19 if wide else 4)}e.g. {shown}", width))
    if answer.get("problems_omitted"):
        lines.append(f"… and {counted(answer['problems_omitted'], 'more problems')} (use --json)")
    return "\n".join(lines)


def _cut_to(text: str, width: int) -> str:
    # (ids and values are the scenario's text: a control character would reach the terminal)
    text = _LINE_BREAKING.sub(lambda m: f"\\u{ord(m.group()):04x}", safe_text(text))
    return text if len(text) <= width else text[: width - 1] + "…"
