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

__all__ = [
    "check_table",
    "fitted_table",
    "label_lines",
    "minute",
    "record_lines",
    "reads_as_records",
    "fitted_widths",
    "render_summary",
    "wrapped",
]

_BAR = 24  # characters of a full bar
_MISSING = "—"  # a number the summary could not give (None)


NARROW = 60  # below it, `healthsim summary` lists each field on lines of its own (a table of
# five columns at 40 cut every field name to six letters and wrapped values a word a line)


def render_summary(summary: dict[str, Any], console: Console) -> None:
    """Print the summary: the scenario's header, then per type its fields (presence as
    a bar, JSON types, what the values are) and the healthcare facts that apply.

    Below ``NARROW`` columns the header and the fields are lists instead of tables; at
    any width, lines of text are wrapped at spaces to the console's width, and a word
    too long for a line ends in ``…``.
    """
    width = console.width
    narrow = width < NARROW
    console.print(_header_lines(summary, width) if narrow else _header(summary))
    bar = _BAR if not narrow else max(4, min(_BAR, width // 4))
    for entity_type, about in summary.get("types", {}).items():
        console.print()
        console.print(_lines(f"{entity_type} — {_number(about['count'])}", width, style="bold"))
        if about.get("fields"):
            console.print(_field_list(about, width) if narrow else _fields(about))
        if "age_bands" in about:
            console.print(_ages(about["age_bands"], width, bar))
        if "top_codes" in about:
            console.print(_codes(about["top_codes"], width, bar))
        if "over_time" in about:
            console.print(_over_time(about["over_time"], width, bar))
        if "charges" in about:
            console.print(_charges(about["charges"], width))
        if about.get("values_by_code", {}).get("codes"):
            tests = about["values_by_code"]
            console.print(_values_by_code_list(tests, width) if narrow else _values_by_code(tests, width))
    if summary.get("types_omitted"):
        omitted = _number(summary["types_omitted"])
        console.print(_lines(f"{omitted} more types left out to keep the summary small", width, style="dim"))
    if isinstance(summary.get("check"), dict):  # the check's counts (issue 24)
        from .state.checks.shape import brief_lines

        console.print()
        for i, line in enumerate(brief_lines(summary["check"])):
            console.print(_lines(line, width, hang=4, style="bold" if i == 0 else ""))


def wrapped(text: str, width: int, indent: int = 0, hang: int | None = None) -> list[str]:
    """``text`` as lines of at most ``width`` cells: broken at whitespace, the first line
    indented by ``indent`` (or by the text's own leading spaces), the others by ``hang``
    (default: as the first). A word longer than a line is broken after a ``/``, ``,`` or
    ``-`` (a path, a URL, compact JSON, a hyphenated name) where it has one, else it ends
    in ``…``: it is never split without a mark."""
    first = max(indent, len(text) - len(text.lstrip(" ")))
    rest = first if hang is None else hang
    first, rest = min(first, max(width - 1, 0)), min(rest, max(width - 1, 0))  # a cell of text, at least
    lines: list[str] = []
    line = ""
    for word in text.split():
        room = max(width - (rest if lines else first), 1)
        if line and cell_len(f"{line} {word}") <= room:
            line = f"{line} {word}"
            continue
        if line:
            lines.append(line)
            room = max(width - rest, 1)
        *whole, line = _pieces(word, room)
        lines.extend(whole)
    lines.append(line)
    return [
        " " * (rest if i else first) + _cut(piece, max(width - (rest if i else first), 1))
        for i, piece in enumerate(lines)
    ]


_BREAKS = re.compile(r"[/,-]")


def _pieces(word: str, room: int) -> list[str]:
    """``word`` in pieces of at most ``room`` cells, broken after a ``/``, ``,`` or ``-``
    (a path, compact JSON, a hyphenated name: every character kept); a piece still too
    long is cut by the caller, with ``…``."""
    if cell_len(word) <= room or not _BREAKS.search(word):
        return [word]
    pieces, piece = [], ""
    for part in re.findall(r"[^/,-]*[/,-]|[^/,-]+$", word):
        if piece and cell_len(piece + part) > room:
            pieces.append(piece)
            piece = ""
        piece += part
    return [*pieces, piece]


def label_lines(items: Sequence[tuple[str, str]], width: int, label_width: int = 11) -> Text:
    """``label  value`` lines for a narrow terminal: a value that does not fit beside its
    label goes on the lines under it, indented, wrapped by :func:`wrapped` (so a scenario's
    id or a database path is shown whole, not cut or folded mid-word)."""
    lines: list[str] = []
    for label, value in items:
        value = shown_text(value)  # (the scenario's text: an escape sequence would reach the terminal)
        line = f"{_cut(label, width):<{label_width}}  {value}"
        if cell_len(line) <= width and "\n" not in value:
            lines.append(line)
        else:
            lines.append(_cut(label, width))
            lines.extend(wrapped(value, width, indent=2))
    return Text("\n".join(lines))


def _lines(text: str, width: int, hang: int | None = None, style: str = "") -> Text:
    """``text`` wrapped to ``width`` (see :func:`wrapped`) as one literal Text."""
    return Text("\n".join(wrapped(text, width, hang=hang)), style=style)


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
    widths = fitted_widths(headers, rows, width, flexible)
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


def fitted_widths(
    headers: Sequence[str], rows: Sequence[Sequence[str]], width: int, flexible: dict[int, int]
) -> list[int]:
    """The column widths :func:`fitted_table` gives (see there)."""
    natural = [max([cell_len(h), *(cell_len(r[i]) for r in rows)]) for i, h in enumerate(headers)]
    fixed = sum(n for i, n in enumerate(natural) if i not in flexible)
    order = sorted(flexible)
    room = width - fixed - _GAP * (len(headers) - 1)
    shared = _share([natural[i] for i in order], [flexible[i] for i in order], room)
    widths = list(natural)
    for i, w in zip(order, shared, strict=True):
        widths[i] = w
    return widths


RECORDS_BELOW = 60  # below it, a query result wider than the terminal is shown as records


def reads_as_records(headers: Sequence[str], rows: Sequence[Sequence[str]], width: int) -> bool:
    """Whether rows read better as records (:func:`record_lines`) than as a
    :func:`fitted_table` of equal weights: when the table would cut a column's header
    (or leave a column under 6 cells), or, below ``RECORDS_BELOW`` columns, cut any value."""
    natural = [max([cell_len(h), *(cell_len(r[i]) for r in rows)]) for i, h in enumerate(headers)]
    if sum(natural) + _GAP * (len(natural) - 1) <= width:
        return False
    if width < RECORDS_BELOW:
        return True
    widths = fitted_widths(headers, rows, width, dict.fromkeys(range(len(headers)), 1))
    need = [min(n, max(cell_len(h), 6)) for h, n in zip(headers, natural, strict=True)]
    return any(w < n for w, n in zip(widths, need, strict=True)) or sum(widths) + _GAP * (len(widths) - 1) > width


def record_lines(headers: Sequence[str], rows: Sequence[Sequence[str]], width: int) -> Text:
    """Rows as records, a ``column  value`` line per column (psql's expanded display):
    for a result too wide for a table of whole headers on a narrow terminal."""
    label_width = min(max(cell_len(h) for h in headers), max(width // 3, 4))
    parts = []
    for n, row in enumerate(rows, 1):
        parts.append(_cut(f"-[ row {n:,} ]".ljust(width, "-"), width))
        parts.append(label_lines(list(zip(headers, row, strict=True)), width, label_width).plain)
    return Text("\n".join(parts))


_NUMBER_CHARS = frozenset("0123456789,.")
_NUMBER_END = re.compile(r"[0-9][0-9,.]*$")


def _code_point(match: re.Match[str]) -> str:
    """A matched character written as ``\\uXXXX``."""
    return f"\\u{ord(match.group()):04x}"


def _escaped(text: str) -> str:
    """``text`` with what would break a line or drive the terminal written as ``\\uXXXX``."""
    return _LINE_BREAKING.sub(_code_point, safe_text(text))


def _cut(value: str, width: int) -> str:
    """``value`` in at most ``width`` terminal cells (wide characters count two), ``…`` if cut."""
    value = _escaped(value)
    if cell_len(value) <= width:
        return value
    head = set_cell_size(value, max(width - 1, 0)).rstrip(" ")
    if head and len(head) < len(value) and value[len(head)] in _NUMBER_CHARS:
        head = _NUMBER_END.sub("", head).rstrip(" ")  # a number is shown whole or not at all
    return head + "…"


# Control characters of the scenario's text that a terminal would act on (an escape
# sequence sets colours or the window's title): shown escaped; line breaks and tabs stay.
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def shown_text(value: Any) -> str:
    """``value`` as text a terminal shows and does not act on: control characters written
    as ``\\uXXXX`` (line breaks and tabs stay), always valid UTF-8."""
    return _CONTROL.sub(_code_point, safe_text(str(value)))


def _text(value: Any, style: str = "") -> Text:
    """``value`` as literal text: never markup, no control characters, always valid UTF-8."""
    return Text(shown_text(value), style=style)


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


def _header_items(summary: dict[str, Any]) -> list[tuple[str, str]]:
    return [
        ("name", str(summary["name"])),
        ("version", str(summary["version"])),
        ("scenario_id", str(summary["scenario_id"])),
        ("description", str(summary.get("description") or "")),
        ("tags", ", ".join(map(str, summary.get("tags", [])))),
        ("created", str(summary.get("created_at"))),
        ("updated", str(summary.get("updated_at"))),
        ("entities", _number(summary["entity_count"])),
    ]


def _header(summary: dict[str, Any]) -> Table:
    grid = Table.grid(padding=(0, 2))
    for label, value in _header_items(summary):
        grid.add_row(label, _text(value))
    return grid


def _header_lines(summary: dict[str, Any], width: int) -> Text:
    """The header on a narrow terminal (the id whole, not cut to ``386b3ba6-ad…``)."""
    return label_lines(_header_items(summary), width)


def _bar(value: float, full: float, width: int = _BAR) -> Bar:
    return Bar(size=full or 1, begin=0, end=value, width=width)


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


def _field_list(about: dict[str, Any], width: int) -> Group:
    """The fields on a narrow terminal: per field its path, then its presence bar, share
    and JSON types, then what its values are, each wrapped to ``width``."""
    bar = max(4, min(_BAR, width - 20))
    parts: list[Any] = []
    for path, stats in about["fields"].items():
        parts.append(Text("\n".join(wrapped(path, width, indent=2))))
        row = Table.grid(padding=(0, 1))
        row.add_column(width=3)  # the indent: 4 cells with the padding
        row.add_column(width=bar, no_wrap=True)
        row.add_column(no_wrap=True, justify="right")
        row.add_column(no_wrap=True, overflow="ellipsis")
        types = ", ".join(map(str, stats["types"]))
        row.add_row("", _bar(stats["present"], 1.0, bar), _text(_number(stats["present"], ".0%")), _text(types))
        parts.append(row)
        values = _values(stats)
        if values:
            parts.append(Text("\n".join(wrapped(values, width, indent=4))))
    if about.get("fields_omitted"):
        parts.append(_lines(f"  … {_number(about['fields_omitted'])} more fields", width, style="dim"))
    return Group(*parts)


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


def _natural(rows: list[list[str]]) -> int:
    """The width a borderless table of these cells needs (one cell of padding a side)."""
    return sum(max(cell_len(row[i]) for row in rows) + 2 for i in range(len(rows[0])))


def _ages(ages: dict[str, Any], width: int, bar: int) -> Group:
    genders = list(ages.get("genders", {}))
    extra = sorted({g for counts in ages["bands"].values() for g in counts} - set(genders))
    columns = genders + extra
    cells = [["age", *map(str, columns)]]
    cells += [[str(band), *(_number(counts.get(g, 0)) for g in columns)] for band, counts in ages["bands"].items()]
    with_bar = _natural(cells) + bar + 2 <= width  # the bar gives way before a count is cut
    table = _table("age", *columns, *([""] if with_bar else []))  # the gender labels are the data's values
    biggest = max((sum(c.values()) for c in ages["bands"].values()), default=1)
    for row, counts in zip(cells[1:], ages["bands"].values(), strict=True):
        table.add_row(*map(_text, row), *([_bar(sum(counts.values()), biggest, bar)] if with_bar else []))
    by = f" by {ages['by']}" if ages.get("by") else ""
    title = _lines(f"  age on {ages['as_of']} (from {ages['field']}){by}", width, hang=4, style="italic")
    from .state.checks.shape import left_out_text

    left = left_out_text(ages)
    return Group(title, table, _lines(f"  {left}", width, hang=4, style="dim")) if left else Group(title, table)


def _codes(codes: dict[str, Any], width: int, bar: int) -> Group:
    title = _lines(f"  top {codes['field']}", width, hang=4, style="italic")
    biggest = max((n for _, _, n in codes["top"]), default=1)
    if width < NARROW:  # code, count and bar on a line, the description under them
        parts: list[Any] = [title]
        for code, text, n in codes["top"]:
            row = Table.grid(padding=(0, 1))
            row.add_column(width=1)
            row.add_column(no_wrap=True, overflow="ellipsis", max_width=max(width - bar - 12, 6))
            row.add_column(no_wrap=True, justify="right")
            row.add_column(width=bar, no_wrap=True)
            row.add_row("", _text(code), _text(_number(n)), _bar(n, biggest, bar))
            parts.append(row)
            if text:
                parts.append(Text("\n".join(wrapped(str(text), width, indent=4))))
        return Group(*parts)
    table = _table("code", "description", "count", "")
    for code, text, n in codes["top"]:
        table.add_row(_text(code), _text(text or ""), _text(_number(n)), _bar(n, biggest, bar))
    return Group(title, table)


def _over_time(over: dict[str, Any], width: int, bar: int) -> Group:
    table = _table(over["unit"], "count", "")
    biggest = max((n for _, n in over["counts"]), default=1)
    for period, n in over["counts"]:
        table.add_row(_text(period), _text(_number(n)), _bar(n, biggest, bar))
    return Group(_lines(f"  per {over['unit']} of {over['field']}", width, hang=4, style="italic"), table)


def _by_code_rows(tests: dict[str, Any]) -> list[tuple[str, str, str, str, list[str]]]:
    """Per code: code, name, unit, count, and min, median, mean, max as text."""
    rows = []
    for code, name, unit, n, low, high, mean, median in (row[:8] for row in tests["codes"]):
        numbers = [_number(v, ",.6g") if isinstance(v, float) else _number(v) for v in (low, median, mean, high)]
        rows.append((str(code), str(name or ""), str(unit or ""), _number(n), numbers))
    return rows


def _values_by_code(tests: dict[str, Any], width: int) -> Group:
    """A number field per code (a lab's value per test): the field's own range mixes units."""
    table = _table("code", "name", "unit", "count", "min", "median", "mean", "max")
    for code, name, unit, n, numbers in _by_code_rows(tests):
        table.add_row(_text(code), _text(name), _text(unit), _text(n), *map(_text, numbers))
    return Group(_lines(f"  {tests['field']} per {tests['by']}", width, hang=4, style="italic"), table)


def _values_by_code_list(tests: dict[str, Any], width: int) -> Text:
    """:func:`_values_by_code` on a narrow terminal: two wrapped lines per code."""
    lines = wrapped(f"  {tests['field']} per {tests['by']}", width, hang=4)
    for code, name, unit, n, (low, median, mean, high) in _by_code_rows(tests):
        lines += wrapped(" ".join(p for p in (code, name, f"({unit})" if unit else "") if p), width, 2, 4)
        lines += wrapped(f"count {n}: min {low}, median {median}, mean {mean}, max {high}", width, 4, 6)
    return Text("\n".join(lines), style="")


def _charges(charges: dict[str, Any], width: int) -> Group:
    title = _lines("  totals", width, style="italic")
    # The total is None past DECIMAL(38, 6), or may be the text of a number: shown as is.
    if width < NARROW:
        lines = [
            line
            for path, totals in charges.items()
            for line in wrapped(
                f"{path}: count {_number(totals['count'])}, total {_number(totals['total'], ',.2f')}", width, 2, 4
            )
        ]
        return Group(title, Text("\n".join(lines)))
    table = _table("field", "count", "total")
    for path, totals in charges.items():
        table.add_row(_text(path), _text(_number(totals["count"])), _text(_number(totals["total"], ",.2f")))
    return Group(title, table)


def check_table(answer: dict[str, Any], width: int = 80) -> str:
    """The answer as a readable table of at most ``width`` columns."""
    checked = ", ".join(f"{t} {n:,}" for t, n in answer["checked"].items()) or "nothing"
    # (the problems cut from the answer still count: their entities are in omitted_counts)
    gone = answer.get("omitted_counts", {})
    errors = sum(p["count"] for p in answer["problems"] if p["severity"] == "error") + gone.get("error", 0)
    warnings = sum(p["count"] for p in answer["problems"] if p["severity"] == "warning") + gone.get("warning", 0)
    lines = wrapped(f"Checked: {checked}", width, hang=4)  # every count (it was cut at "diag…")
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
            # (ids and values are the scenario's text: a control character would reach the terminal)
            shown = _escaped(shown)
            lines += wrapped(f"e.g. {shown}", width, indent=19 if wide else 4, hang=24 if wide else 6)
    if answer.get("problems_omitted"):
        lines.append(f"… and {counted(answer['problems_omitted'], 'more problems')} (use --json)")
    return "\n".join(lines)


def _cut_to(text: str, width: int) -> str:
    return _cut(text, width)  # in terminal cells (a wide character counts two), control characters escaped
