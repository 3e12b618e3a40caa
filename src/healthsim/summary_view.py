"""A scenario's summary (``summarize_scenario``) as Rich tables with inline bars.

Used by ``healthsim summary``; kept apart from the CLI's commands because it is all
presentation: what to say of each field, and how long each bar is.
"""

from __future__ import annotations

from typing import Any

from rich.bar import Bar
from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

from ._text import safe_text

__all__ = ["render_summary"]

_BAR = 24  # characters of a full bar


def render_summary(summary: dict[str, Any], console: Console) -> None:
    """Print the summary: the scenario's header, then per type its fields (presence as
    a bar, JSON types, what the values are) and the healthcare facts that apply."""
    console.print(_header(summary))
    for entity_type, about in summary.get("types", {}).items():
        console.print()
        console.print(Text(f"{entity_type} — {about['count']:,}", style="bold"))
        if about.get("fields"):
            console.print(_fields(about))
        for fact, draw in (("age_bands", _ages), ("top_codes", _codes), ("over_time", _over_time)):
            if fact in about:
                console.print(draw(about[fact]))
        if "charges" in about:
            console.print(_charges(about["charges"]))
    if summary.get("types_omitted"):
        console.print(Text(f"{summary['types_omitted']} more types left out to keep the summary small", style="dim"))


def _header(summary: dict[str, Any]) -> Table:
    grid = Table.grid(padding=(0, 2))
    for label, value in (
        ("name", summary["name"]),
        ("version", summary["version"]),
        ("scenario_id", summary["scenario_id"]),
        ("description", summary.get("description") or ""),
        ("tags", ", ".join(summary.get("tags", []))),
        ("created", summary.get("created_at")),
        ("updated", summary.get("updated_at")),
        ("entities", f"{summary['entity_count']:,}"),
    ):
        grid.add_row(label, Text(safe_text(str(value))))
    return grid


def _bar(value: float, full: float) -> Bar:
    return Bar(size=full or 1, begin=0, end=value, width=_BAR)


def _fields(about: dict[str, Any]) -> Table:
    table = Table("field", "present", "", "types", "values", box=None, padding=(0, 1), show_edge=False)
    for path, stats in about["fields"].items():
        share = stats["present"]
        table.add_row(
            Text(safe_text(path)),
            _bar(share, 1.0),
            f"{share:.0%}",
            ", ".join(stats["types"]),
            Text(safe_text(_values(stats))),
        )
    if about.get("fields_omitted"):
        table.add_row(Text(f"… {about['fields_omitted']} more fields", style="dim"), "", "", "", "")
    return table


def _values(stats: dict[str, Any]) -> str:
    """One line on a field's values: the most frequent, the range, or the lengths."""
    parts = []
    if "format" in stats:
        parts.append(f"{stats['min']} … {stats['max']}")
    elif "top" in stats:
        parts.append(" · ".join(f"{value} {count:,}" for value, count in stats["top"]))
    if "distinct" in stats and stats["distinct"] != len(stats.get("top", ())):
        parts.append(f"{stats['distinct']:,} distinct")
    if "mean" in stats:
        parts.append(f"{stats['min']} … {stats['max']}, mean {stats['mean']:.4g}, median {stats['median']:.4g}")
    if "true" in stats:
        parts.append(f"true {stats['true']:,} · false {stats['false']:,}")
    if "length" in stats:
        parts.append(f"length {stats['length']['min']}–{stats['length']['max']}")
    return "; ".join(parts)


def _ages(ages: dict[str, Any]) -> Group:
    genders = list(ages.get("genders", {}))
    extra = sorted({g for counts in ages["bands"].values() for g in counts} - set(genders))
    columns = genders + extra
    table = Table("age", *columns, "", box=None, padding=(0, 1), show_edge=False)
    biggest = max((sum(c.values()) for c in ages["bands"].values()), default=1)
    for band, counts in ages["bands"].items():
        total = sum(counts.values())
        table.add_row(band, *(f"{counts.get(g, 0):,}" for g in columns), _bar(total, biggest))
    by = f" by {ages['by']}" if ages.get("by") else ""
    title = Text(f"  age on {ages['as_of']} (from {ages['field']}){by}", style="italic")
    return Group(title, table)


def _codes(codes: dict[str, Any]) -> Group:
    table = Table("code", "description", "count", "", box=None, padding=(0, 1), show_edge=False)
    biggest = max((n for _, _, n in codes["top"]), default=1)
    for code, text, n in codes["top"]:
        table.add_row(Text(safe_text(str(code))), Text(safe_text(text or "")), f"{n:,}", _bar(n, biggest))
    return Group(Text(f"  top {codes['field']}", style="italic"), table)


def _over_time(over: dict[str, Any]) -> Group:
    table = Table(over["unit"], "count", "", box=None, padding=(0, 1), show_edge=False)
    biggest = max((n for _, n in over["counts"]), default=1)
    for period, n in over["counts"]:
        table.add_row(period, f"{n:,}", _bar(n, biggest))
    return Group(Text(f"  per {over['unit']} of {over['field']}", style="italic"), table)


def _charges(charges: dict[str, Any]) -> Group:
    table = Table("field", "count", "total", box=None, padding=(0, 1), show_edge=False)
    for path, totals in charges.items():
        table.add_row(Text(safe_text(path)), f"{totals['count']:,}", f"{totals['total']:,.2f}")
    return Group(Text("  totals", style="italic"), table)
