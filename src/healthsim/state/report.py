"""A scenario's summary as one self-contained HTML page, with charts.

:func:`render_report` turns the summary of :meth:`ScenarioStore.summarize_scenario`
into a page: a header (name, version, counts, dates, tags, description), a table of
the entity types, then per type its charts (age by gender, top codes, entities over
time, field coverage), a table of its fields' statistics, its charges and samples.
:func:`write_report` writes that page to a file atomically.

Why plotly: its JavaScript half, plotly.js, is well kept and widely used, draws
interactive SVG charts (hover, zoom, save as PNG) from one script, and ships inside the
``plotly`` Python package. That script is inlined once, so the page needs no network, no
CDN and no fonts: it opens anywhere, offline, and can be mailed as one file. Only the
script comes from the package: the figures are plain dicts (Plotly's JSON figure
format) serialised here with :func:`json.dumps`, so no ``graph_objects`` are built and
rendering stays fast; plotly is imported only when a report is made (the ``report``
extra: ``pip install 'healthsim-state[report]'``).

Every string of the summary (names, values, descriptions, field paths) is untrusted:
HTML text is escaped, figure JSON has ``<``, ``>`` and ``&`` written as ``\\u003c`` and
so on (so ``</script>`` cannot end the script), and text that plotly.js draws as its
small HTML subset is escaped for it too, so ``<b>`` in a value shows as ``<b>``. A
Content-Security-Policy allows no connection at all.
"""

from __future__ import annotations

import datetime as _dt
import functools
import html
import json
import math
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from .. import __version__
from .._text import safe_text
from .checks.shape import brief_lines, left_out_text, unfit_text
from .errors import MissingDependencyError
from .files import write_atomically

__all__ = ["render_report", "write_report"]

_NEEDS_PLOTLY = "the report needs plotly: pip install 'healthsim-state[report]'"

_FONT = 'system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", "DejaVu Sans", Arial, sans-serif'
_INK = "#1f2933"
_MUTED = "#52606d"
_GRID = "#e4e7eb"
_PALETTE = ["#3b82c4", "#e8804f", "#4fa57c", "#9b6fc2", "#d4a72c", "#5bb3c0", "#c75b7a", "#7f8c99"]
_GENDER_COLOURS = {"female": "#c75b7a", "male": "#3b82c4", "other": "#d4a72c", "unknown": "#9aa5b1"}
_COVERAGE_COLOURS = ("#4fa57c", "#d4a72c", "#d0555b")  # all present, some, none
_CODE_LABEL = 42  # characters of a description shown beside its code (all of it on hover)
_FIELD_LABEL = 48  # characters of a field path shown on the coverage chart's axis
_VALUE_TEXT = 60  # characters of a value shown in the fields table
# Room kept above every plot for plotly's tool bar (zoom, pan, reset, save as PNG), which
# shows at the top right when the pointer is over a chart: without it, the bar covered
# the coverage chart's 75% and 100% labels (and the tops of the bars).
_MODEBAR = 34

# No connection of any kind; only the page's own inline script and styles, and images
# made from data: and blob: URLs (plotly's "download as PNG").
_CSP = (
    "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
    "img-src data: blob:; font-src 'none'; connect-src 'none'; frame-src 'none'; "
    "object-src 'none'; base-uri 'none'; form-action 'none'"
)

# The mode bar keeps what works offline on bar charts: zoom, pan, reset, save as PNG.
_CONFIG: dict[str, Any] = {
    "displaylogo": False,
    "responsive": True,
    "displayModeBar": "hover",
    "modeBarButtonsToRemove": ["select2d", "lasso2d", "autoScale2d"],
    "toImageButtonOptions": {"format": "png", "scale": 2},
    "scrollZoom": False,
    "showTips": False,
}

_CSS = (
    """
:root { color-scheme: light; }
* { box-sizing: border-box; }
body { margin: 0; background: #f3f5f8; color: $ink; font: 14px/1.5 $font; }
main { max-width: 1240px; margin: 0 auto; padding: 28px 28px 48px; }
header.top { background: #fff; border: 1px solid #dde3ea; border-radius: 10px; padding: 22px 26px;
  margin-bottom: 22px; border-top: 4px solid #3b82c4; }
.kicker { margin: 0 0 2px; color: $muted; font-size: 12px; letter-spacing: .06em; text-transform: uppercase; }
h1 { margin: 0 0 6px; font-size: 26px; line-height: 1.25; overflow-wrap: anywhere; }
h2 { margin: 0; font-size: 20px; overflow-wrap: anywhere; }
h3 { margin: 22px 0 8px; font-size: 15px; }
.lead { margin: 0 0 14px; font-size: 15px; color: $muted; }
.lead b { color: $ink; }
.description { margin: 0 0 14px; max-width: 80ch; white-space: pre-wrap; overflow-wrap: anywhere; }
dl.meta { display: grid; grid-template-columns: max-content 1fr; gap: 4px 18px; margin: 0; font-size: 13px; }
dl.meta dt { color: $muted; }
dl.meta dd { margin: 0; overflow-wrap: anywhere; }
.tag { display: inline-block; margin: 0 6px 4px 0; padding: 1px 9px; border-radius: 999px; background: #e6f0fa;
  color: #1d4f7c; font-size: 12px; overflow-wrap: anywhere; }
.none { color: #9aa5b1; }
section.card { background: #fff; border: 1px solid #dde3ea; border-radius: 10px; padding: 20px 24px;
  margin-bottom: 22px; }
.card-head { display: flex; flex-wrap: wrap; align-items: baseline; gap: 4px 14px; margin-bottom: 4px; }
.card-head .count { color: $muted; }
.note { color: $muted; font-size: 13px; margin: 6px 0 0; }
.charts { display: grid; grid-template-columns: repeat(auto-fill, minmax(440px, 1fr)); gap: 18px;
  align-items: start; margin-top: 14px; }
.stack { display: flex; flex-direction: column; gap: 18px; min-width: 0; }
figure { margin: 0; min-width: 0; border: 1px solid #e8ecf0; border-radius: 8px; padding: 10px 12px 6px; }
figcaption { font-weight: 600; font-size: 14px; }
figcaption small { display: block; font-weight: 400; color: $muted; font-size: 12px; overflow-wrap: anywhere; }
.chart { width: 100%; min-height: 120px; }
table { border-collapse: collapse; width: 100%; font-size: 13px; }
table.fields { table-layout: fixed; min-width: 760px; }
table.fields td { overflow-wrap: anywhere; }
table.charges, table.tests { margin-top: 8px; }
table.charges td.num { font-size: 15px; }
th, td { text-align: left; padding: 5px 10px 5px 0; border-bottom: 1px solid #edf0f3; vertical-align: top; }
th { color: $muted; font-weight: 600; font-size: 12px; border-bottom: 1px solid #cfd6de; white-space: nowrap; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
td.path { font-family: ui-monospace, "DejaVu Sans Mono", Menlo, Consolas, monospace; font-size: 12px;
  overflow-wrap: anywhere; }
td.values { overflow-wrap: anywhere; color: #323f4b; }
td.values .mixed { color: #b45309; }
.bar { display: inline-block; width: 46px; height: 7px; margin-right: 6px; border-radius: 4px; background: #e4e7eb;
  vertical-align: middle; overflow: hidden; }
.bar i { display: block; height: 100%; background: #4fa57c; }
.tbl-wrap { overflow-x: auto; }
a { color: #1f6fb2; text-decoration: none; }
a:hover { text-decoration: underline; }
details { margin-top: 14px; }
summary { cursor: pointer; font-weight: 600; font-size: 14px; }
pre { background: #f6f8fa; border: 1px solid #e4e7eb; border-radius: 6px; padding: 10px 12px; font-size: 12px;
  overflow: auto; max-height: 420px; white-space: pre-wrap; overflow-wrap: anywhere; }
footer { color: $muted; font-size: 12px; text-align: center; margin-top: 10px; }
""".replace("$ink", _INK)
    .replace("$muted", _MUTED)
    .replace("$font", _FONT)
)

_SCRIPT = """
(function () {
  var figures = JSON.parse(document.getElementById("hs-figures").textContent);
  var config = JSON.parse(document.getElementById("hs-config").textContent);
  figures.forEach(function (f) {
    var el = document.getElementById(f.id);
    try {
      Plotly.newPlot(el, f.data, f.layout, config).then(
        function () { el.setAttribute("data-drawn", "1"); },
        function (e) { el.setAttribute("data-drawn", "error"); console.error("chart " + f.id + ": " + e); }
      );
    } catch (e) {
      el.setAttribute("data-drawn", "error");
      console.error("chart " + f.id + ": " + e);
    }
  });
})();
"""


def render_report(summary: Mapping[str, Any]) -> str:
    """The summary of a scenario as one self-contained HTML page.

    The page inlines plotly.js and its data, loads nothing from anywhere and so renders
    with the network off. Each chart is a ``<div class="chart">`` that gets
    ``data-drawn="1"`` once drawn.

    Args:
        summary: what :meth:`ScenarioStore.summarize_scenario` returns (any part of it
            may be missing: a type without entities, fields or facts is shown as such).

    Returns:
        The page's HTML text (encode it as UTF-8; the page says so).

    Raises:
        MissingDependencyError: plotly is not installed (``pip install 'healthsim-state[report]'``).
    """
    plotly_js = _plotly_js()
    return _Page(summary).render(plotly_js)


def write_report(summary: Mapping[str, Any], path: Path) -> Path:
    """Write the report of ``summary`` to ``path`` atomically and return ``path``.

    The page goes to a temporary file in the same folder (created if missing), which is
    flushed to disk and then renamed over ``path``: a reader sees the old file or the
    whole new one, never part of one, and a failure leaves no temporary file (or folder
    it created) behind.

    Raises:
        MissingDependencyError: plotly is not installed (``pip install 'healthsim-state[report]'``).
        InvalidInputError: the folder or file cannot be written (the message says why).
    """
    path = Path(path)
    data = render_report(summary).encode("utf-8")  # before anything is written: it may fail
    write_atomically(path, lambda out: out.write(data))
    return path


# --- plotly -------------------------------------------------------------------------------


@functools.lru_cache(maxsize=1)
def _plotly_js() -> str:
    """plotly.js, minified, as the installed ``plotly`` package ships it."""
    try:
        from plotly.offline import get_plotlyjs
    except ImportError as exc:
        raise MissingDependencyError(_NEEDS_PLOTLY) from exc
    script: str = get_plotlyjs()
    # Never true of the shipped bundle, but the page's script must not end early.
    return re.sub(r"</(script)", r"<\\/\1", script, flags=re.IGNORECASE)


# --- text and numbers ---------------------------------------------------------------------


def _h(value: Any) -> str:
    """``value`` as HTML text (attribute-safe too), always valid UTF-8."""
    return html.escape(safe_text(value if isinstance(value, str) else str(value)), quote=True)


def _p(value: Any) -> str:
    """``value`` as text for plotly.js, which reads its labels as a small HTML subset."""
    text = safe_text(value) if isinstance(value, str) else _value_text(value)
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _script_json(value: Any) -> str:
    """JSON that is safe inside ``<script>``: ASCII only, no ``<``, ``>`` or ``&``."""
    text = json.dumps(value, ensure_ascii=True, allow_nan=False, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _int(value: Any) -> int | None:
    """A count, or None when ``value`` is not a whole number."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return int(value)
    return None


def _real(value: Any) -> float | None:
    """A finite number, or None."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def _num(value: Any) -> str:
    """A number for people: thousands separated, about six significant digits."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return _value_text(value)
    if isinstance(value, int):
        return f"{value:,}"
    if not math.isfinite(value):
        return str(value)
    if value.is_integer() and abs(value) < 1e15:
        return f"{int(value):,}"
    if abs(value) >= 1e6:
        return f"{value:,.0f}"
    return f"{value:,.6g}"


def _count(value: Any) -> str:
    n = _int(value)
    return f"{n:,}" if n is not None else _value_text(value)


def _value_text(value: Any) -> str:
    """A JSON value as short text: strings as they are, others as JSON."""
    if isinstance(value, str):
        return safe_text(value)
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return _num(value)
    try:
        return safe_text(json.dumps(value, ensure_ascii=False, default=str))
    except (TypeError, ValueError):
        return safe_text(str(value))


def _percent(share: Any) -> str:
    number = _real(share)
    if number is None:
        return "–"
    pct = number * 100
    if 0 < pct < 0.1:
        return "<0.1%"
    if 99.9 < pct < 100:
        return ">99.9%"
    return f"{pct:.1f}%".replace(".0%", "%")


def _when(value: Any) -> str:
    """An ISO timestamp as ``2026-11-26 10:38 UTC``; anything else as it is."""
    if not isinstance(value, str):
        return "–" if value is None else _value_text(value)
    try:
        moment = _dt.datetime.fromisoformat(value)
    except ValueError:
        return value
    if moment.tzinfo is not None and moment.utcoffset() == _dt.timedelta(0):
        return moment.strftime("%Y-%m-%d %H:%M UTC")
    return moment.isoformat(sep=" ", timespec="minutes")


def _unique(labels: Iterable[str]) -> list[str]:
    """Labels made distinct (plotly merges equal categories) by numbering repeats."""
    seen: dict[str, int] = {}
    out = []
    for label in labels:
        n = seen.get(label, 0)
        seen[label] = n + 1
        out.append(label if n == 0 else f"{label} ({n + 1})")
    return out


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


# --- figures ------------------------------------------------------------------------------


def _layout(height: int, **more: Any) -> dict[str, Any]:
    layout: dict[str, Any] = {
        "height": height,
        "autosize": True,
        "margin": {"l": 8, "r": 16, "t": _MODEBAR, "b": 8, "pad": 2},
        "font": {"family": _FONT, "size": 12, "color": _INK},
        "paper_bgcolor": "#ffffff",
        "plot_bgcolor": "#ffffff",
        "colorway": _PALETTE,
        "hoverlabel": {"font": {"family": _FONT, "size": 12}, "bgcolor": "#ffffff", "bordercolor": "#9aa5b1"},
        "showlegend": False,
        "bargap": 0.25,
    }
    layout.update(more)
    return layout


def _axis(**more: Any) -> dict[str, Any]:
    axis: dict[str, Any] = {
        "automargin": True,
        "gridcolor": _GRID,
        "linecolor": "#cfd6de",
        "zerolinecolor": "#cfd6de",
        "tickfont": {"color": _MUTED},
        "fixedrange": False,
    }
    axis.update(more)
    return axis


def _count_axis(counts: Iterable[int]) -> dict[str, Any]:
    """An axis of entity counts: whole numbers only, ``20k`` for large ones."""
    most = max(counts, default=0)
    if most >= 10_000:
        return _axis(tickformat=",~s", rangemode="tozero")
    if most <= 8:
        return _axis(tickformat=",d", rangemode="tozero", tickmode="linear", tick0=0, dtick=1)
    return _axis(tickformat=",d", rangemode="tozero")


def _age_figure(facts: dict[str, Any]) -> dict[str, Any] | None:
    bands = _dict(facts.get("bands"))

    def start(label: str) -> float:
        head = label.split("-", 1)[0].rstrip("+")
        return float(head) if head.isdigit() else math.inf

    names = sorted(bands, key=lambda b: (start(b), b))
    if not names:
        return None
    groups: list[str] = []
    for counts in bands.values():
        for g in _dict(counts):
            if g not in groups:
                groups.append(g)
    order = list(_dict(facts.get("genders"))) or []
    groups.sort(key=lambda g: (order.index(g) if g in order else len(order), g in ("other", "unknown")))
    by_gender = facts.get("by") is not None
    traces: list[dict[str, Any]] = []
    x = _unique([_p(b) for b in names])
    for i, g in enumerate(groups):
        y = [_int(_dict(bands[b]).get(g)) or 0 for b in names]
        colour = _GENDER_COLOURS.get(str(g).lower(), _PALETTE[i % len(_PALETTE)])
        label = _p(g) if by_gender else "entities"
        traces.append(
            {
                "type": "bar",
                "name": label,
                "x": x,
                "y": y,
                "marker": {"color": colour if by_gender else _PALETTE[0]},
                "hovertemplate": "%{fullData.name}, age %{x}: %{y:,}<extra></extra>",
            }
        )
    legend = by_gender and len(groups) > 1
    return {
        "data": traces,
        "layout": _layout(
            300,
            barmode="group",
            showlegend=legend,
            legend={"orientation": "h", "x": 0, "y": 1.02, "yanchor": "bottom", "font": {"color": _MUTED}},
            margin={"l": 8, "r": 16, "t": _MODEBAR + (20 if legend else 0), "b": 8, "pad": 2},
            xaxis=_axis(type="category", title={"text": "age", "font": {"color": _MUTED, "size": 12}}),
            yaxis=_count_axis(n for t in traces for n in t["y"]),
        ),
    }


def _codes_figure(facts: dict[str, Any]) -> dict[str, Any] | None:
    rows = [r for r in _list(facts.get("top")) if isinstance(r, list) and len(r) >= 3]
    if not rows:
        return None
    labels, hover, counts = [], [], []
    for code, description, n in (r[:3] for r in rows):
        code_text = _value_text(code)
        if description is None:
            labels.append(_p(code_text))
            hover.append(_p(code_text))
        else:
            text = _value_text(description)
            labels.append(_p(f"{code_text} · {_cut(text, _CODE_LABEL)}"))
            hover.append(_p(f"{code_text}: {text}"))
        counts.append(_int(n) or 0)
    return {
        "data": [
            {
                "type": "bar",
                "orientation": "h",
                "x": counts,
                "y": _unique(labels),
                "customdata": hover,
                "text": [f"{n:,}" for n in counts],
                "textposition": "auto",
                "insidetextanchor": "end",
                "textfont": {"size": 11},
                "marker": {"color": _PALETTE[0]},
                "hovertemplate": "%{customdata}<br>%{x:,} entities<extra></extra>",
                "cliponaxis": False,
            }
        ],
        "layout": _layout(
            60 + 30 * len(rows),
            xaxis=_count_axis(counts),
            yaxis=_axis(type="category", autorange="reversed", gridcolor="rgba(0,0,0,0)", tickfont={"color": _INK}),
        ),
    }


def _time_figure(facts: dict[str, Any]) -> dict[str, Any] | None:
    rows = [r for r in _list(facts.get("counts")) if isinstance(r, list) and len(r) >= 2]
    if not rows:
        return None
    periods = _unique([_p(r[0]) for r in rows])
    counts = [_int(r[1]) or 0 for r in rows]
    step = math.ceil(len(periods) / 8)  # at most about 8 labels, so they never crowd
    ticks = {} if step == 1 else {"tickmode": "array", "tickvals": periods[::step], "ticktext": periods[::step]}
    return {
        "data": [
            {
                "type": "bar",
                "x": periods,
                "y": counts,
                "marker": {"color": _PALETTE[2]},
                "hovertemplate": "%{x}: %{y:,}<extra></extra>",
            }
        ],
        "layout": _layout(
            300,
            bargap=0.15 if len(rows) > 6 else 0.45 if len(rows) > 2 else 0.7,
            xaxis=_axis(type="category", tickangle=0, **ticks),
            yaxis=_count_axis(counts),
        ),
    }


def _all_present(fields: dict[str, Any]) -> bool:
    """Whether every field is present in every entity (a coverage chart would say nothing)."""
    return all(_real(_dict(st).get("present")) == 1.0 for st in fields.values())


def _coverage_figure(fields: dict[str, Any]) -> dict[str, Any] | None:
    paths = list(fields)
    if not paths or _all_present(fields):
        return None
    shares = [_real(_dict(fields[p]).get("present")) for p in paths]
    pct = [round(max(0.0, min(1.0, s)) * 100, 2) if s is not None else 0.0 for s in shares]
    colours = [
        _COVERAGE_COLOURS[0] if v >= 100 else _COVERAGE_COLOURS[1] if v > 0 else _COVERAGE_COLOURS[2] for v in pct
    ]
    return {
        "data": [
            {
                "type": "bar",
                "orientation": "h",
                "x": pct,
                "y": _unique([_p(_cut(p, _FIELD_LABEL)) for p in paths]),
                "customdata": [_p(p) for p in paths],
                "marker": {"color": colours},
                "text": ["" if v >= 100 else _percent(v / 100) for v in pct],
                "textposition": "outside",
                "textfont": {"size": 11, "color": _MUTED},
                "cliponaxis": False,
                "hovertemplate": "%{customdata}: %{x:.1f}% present<extra></extra>",
            }
        ],
        "layout": _layout(
            _MODEBAR + 64 + 19 * len(paths),
            bargap=0.3,
            # The percent labels sit above the plot: the tool bar's room above them.
            margin={"l": 8, "r": 16, "t": _MODEBAR + 22, "b": 8, "pad": 2},
            xaxis=_axis(
                range=[0, 100.5],
                tickvals=[0, 25, 50, 75, 100],
                ticktext=["0%", "25%", "50%", "75%", "100%"],
                side="top",
            ),
            yaxis=_axis(
                type="category",
                autorange="reversed",
                gridcolor="rgba(0,0,0,0)",
                tickfont={"color": _INK, "size": 11, "family": 'ui-monospace, "DejaVu Sans Mono", monospace'},
            ),
        ),
    }


def _mixed_note(tests: Any) -> tuple[str, str] | None:
    """The field whose statistics mix several tests, and a note saying where to look."""
    codes = _list(_dict(tests).get("codes"))
    if len(codes) < 2:
        return None
    units = {str(row[2]) for row in codes if isinstance(row, list) and len(row) > 2 and row[2] is not None}
    mix = f"{len(codes):,} tests" + (f" in {len(units):,} units" if len(units) > 1 else "")
    return str(_dict(tests).get("field")), f"mixes {mix}: see Values by test"


# --- the page -----------------------------------------------------------------------------


class _Page:
    """One report being written: HTML parts, and the figures its script draws."""

    def __init__(self, summary: Mapping[str, Any]) -> None:
        self.summary = dict(summary) if isinstance(summary, Mapping) else {}
        self.figures: list[dict[str, Any]] = []

    def render(self, plotly_js: str) -> str:
        s = self.summary
        name = s.get("name")
        title = f"{_value_text(name)} · HealthSim scenario" if name is not None else "HealthSim scenario"
        body = [self._header(), self._types_table()]
        types = _dict(s.get("types"))
        for i, (entity_type, about) in enumerate(types.items()):
            body.append(self._type_section(i, entity_type, _dict(about)))
        body.append(
            f"<footer>Made by HealthSim State {_h(__version__)} from a bounded summary of the scenario.</footer>"
        )
        figures = _script_json(self.figures)
        return "".join(
            [
                '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n',
                f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">\n',
                '<meta name="viewport" content="width=device-width, initial-scale=1">\n',
                '<meta name="generator" content="HealthSim State ',
                _h(__version__),
                '">\n<title>',
                _h(title),
                "</title>\n<style>",
                _CSS,
                "</style>\n</head>\n<body>\n<main>\n",
                "\n".join(body),
                "\n</main>\n",
                '<script type="application/json" id="hs-figures">',
                figures,
                "</script>\n",
                '<script type="application/json" id="hs-config">',
                _script_json(_CONFIG),
                "</script>\n",
                "<script>",
                plotly_js,
                "</script>\n<script>",
                _SCRIPT,
                "</script>\n</body>\n</html>\n",
            ]
        )

    # -- header and overview --

    def _header(self) -> str:
        s = self.summary
        name = s.get("name")
        types = _dict(s.get("entities_by_type"))
        n_types = len(types) + (_int(s.get("entities_by_type_omitted")) or 0)
        lead = []
        if s.get("version") is not None:
            lead.append(f"version <b>{_h(_value_text(s.get('version')))}</b>")
        if s.get("entity_count") is not None:
            lead.append(f"<b>{_h(_count(s.get('entity_count')))}</b> entities")
        lead.append(f"<b>{n_types:,}</b> entity type{'' if n_types == 1 else 's'}")
        tags = [t for t in _list(s.get("tags"))]
        tag_html = (
            "".join(f'<span class="tag">{_h(_value_text(t))}</span>' for t in tags) or '<span class="none">none</span>'
        )
        description = s.get("description")
        unnamed = '<span class="none">(unnamed)</span>'
        parts = [
            '<header class="top">',
            '<p class="kicker">HealthSim scenario report</p>',
            f"<h1>{_h(_value_text(name)) if name is not None else unnamed}</h1>",
            f'<p class="lead">{" · ".join(lead)}</p>',
        ]
        if description not in (None, ""):
            parts.append(f'<p class="description">{_h(_value_text(description))}</p>')
        parts.append('<dl class="meta">')
        parts.append(f"<dt>Created</dt><dd>{_h(_when(s.get('created_at')))}</dd>")
        parts.append(f"<dt>Updated</dt><dd>{_h(_when(s.get('updated_at')))}</dd>")
        parts.append(f"<dt>Tags</dt><dd>{tag_html}</dd>")
        if s.get("scenario_id") is not None:
            parts.append(f"<dt>Scenario id</dt><dd><code>{_h(_value_text(s.get('scenario_id')))}</code></dd>")
        parts.append("</dl>")
        if isinstance(s.get("check"), dict):  # the check's counts (issue 24)
            lines = brief_lines(s["check"])
            parts.append(f'<p class="lead"><b>{_h(lines[0])}</b></p>')
            parts.extend(f'<p class="note">{_h(line.strip())}</p>' for line in lines[1:])
        parts.append("</header>")
        return "\n".join(parts)

    def _types_table(self) -> str:
        s = self.summary
        counts = _dict(s.get("entities_by_type"))
        types = _dict(s.get("types"))
        total = _real(s.get("entity_count")) or sum(_real(v) or 0 for v in counts.values())
        names = list(counts) + [t for t in types if t not in counts]
        index = {t: i for i, t in enumerate(types)}
        rows = []
        for t in names:
            about = _dict(types.get(t))
            n = counts.get(t, about.get("count"))
            share = (_real(n) or 0) / total if total else None
            if t in index:
                link = f'<a href="#type-{index[t]}">{_h(_value_text(t))}</a>'
                facts = ", ".join(
                    label
                    for key, label in (
                        ("age_bands", "ages"),
                        ("top_codes", "codes"),
                        ("over_time", "over time"),
                        ("charges", "charges"),
                        ("values_by_code", "values by test"),
                    )
                    if isinstance(about.get(key), dict)
                )
                fields = _dict(about.get("fields"))
                field_text = f"{len(fields):,}"
                if _int(about.get("fields_omitted")):
                    field_text += f" (+{_int(about.get('fields_omitted')):,})"
            else:
                link = _h(_value_text(t))
                facts = "not summarised"
                field_text = "–"
            bar = (
                f'<span class="bar"><i style="width:{min(share, 1) * 100:.1f}%"></i></span>'
                if share is not None
                else ""
            )
            rows.append(
                f'<tr><td>{link}</td><td class="num">{_h(_count(n))}</td>'
                f'<td class="num">{bar}{_h(_percent(share))}</td>'
                f'<td class="num">{_h(field_text)}</td><td>{_h(facts) or "<span class=none>–</span>"}</td></tr>'
            )
        notes = []
        omitted = _int(s.get("types_omitted"))
        if omitted:
            notes.append(
                f"{omitted:,} more type{'' if omitted == 1 else 's'} left out of the summary to keep it short."
            )
        more = _int(s.get("entities_by_type_omitted"))
        if more:
            notes.append(f"{more:,} more type{'' if more == 1 else 's'} not listed.")
        if not rows:
            rows.append('<tr><td colspan="5" class="none">This scenario has no entities.</td></tr>')
        return "\n".join(
            [
                '<section class="card" id="types">',
                '<div class="card-head"><h2>Entity types</h2></div>',
                '<div class="tbl-wrap"><table>',
                '<thead><tr><th>Type</th><th class="num">Entities</th><th class="num">Share</th>'
                '<th class="num">Fields</th><th>Facts</th></tr></thead>',
                "<tbody>",
                *rows,
                "</tbody></table></div>",
                *(f'<p class="note">{_h(n)}</p>' for n in notes),
                "</section>",
            ]
        )

    # -- one type --

    def _chart(self, i: int, kind: str, figure: dict[str, Any] | None, caption: str, detail: str) -> str:
        if figure is None:
            return ""
        chart_id = f"chart-{i}-{kind}"
        self.figures.append({"id": chart_id, **figure})
        height = _int(figure["layout"].get("height")) or 300
        return (
            f"<figure><figcaption>{_h(caption)}<small>{_h(detail)}</small></figcaption>"
            f'<div class="chart" id="{chart_id}" style="height:{height}px"></div></figure>'
        )

    def _type_section(self, i: int, entity_type: str, about: dict[str, Any]) -> str:
        count = about.get("count")
        fields = _dict(about.get("fields"))
        charts: list[str] = []
        ages = about.get("age_bands")
        if isinstance(ages, dict):
            by = ages.get("by")
            detail = f"age from {_value_text(ages.get('field'))}"
            if ages.get("as_of") is not None:
                detail += f" on {_value_text(ages.get('as_of'))}"
            detail += f"; by {_value_text(by)}" if by is not None else "; no gender field"
            left = left_out_text(ages)
            detail += f"; {left}" if left else ""
            caption = "Age by gender" if by is not None else "Age"
            charts.append(self._chart(i, "age", _age_figure(ages), caption, detail))
        codes = about.get("top_codes")
        if isinstance(codes, dict):
            detail = f"codes from {_value_text(codes.get('field'))}"
            if codes.get("description") is not None:
                detail += f", described by {_value_text(codes.get('description'))}"
            charts.append(self._chart(i, "codes", _codes_figure(codes), "Top codes", detail))
        timeline = about.get("over_time")
        if isinstance(timeline, dict):
            unit = _value_text(timeline.get("unit") or "period")
            detail = f"per {unit} of {_value_text(timeline.get('field'))}"
            if timeline.get("shown"):
                detail += f" ({_value_text(timeline.get('shown'))} shown)"
            charts.append(
                self._chart(i, "time", _time_figure(timeline), f"{_value_text(entity_type)} over time", detail)
            )
        coverage = self._chart(
            i, "coverage", _coverage_figure(fields), "Field coverage", "share of entities with a non-null value"
        )
        charges = about.get("charges")
        if isinstance(charges, dict) and charges:
            charts.append(self._charges(charges))
        tests = about.get("values_by_code")
        if isinstance(tests, dict) and _list(tests.get("codes")):
            charts.append(self._values_by_code(tests))
        # Two columns: the charts beside the coverage chart, or, without one, side by side.
        columns = ["".join(charts), coverage] if coverage else charts
        parts = [
            f'<section class="card" id="type-{i}">',
            f'<div class="card-head"><h2>{_h(_value_text(entity_type))}</h2>'
            f'<span class="count">{_h(_count(count))} entit{"y" if _int(count) == 1 else "ies"}</span></div>',
        ]
        if not _int(count):
            parts.append('<p class="note">No entities of this type.</p>')
        elif not fields:
            parts.append('<p class="note">No fields were summarised for this type.</p>')
        elif _all_present(fields):  # instead of a chart of full bars
            parts.append(f'<p class="note">Every field summarised ({len(fields):,}) is present in every entity.</p>')
        if any(columns):
            parts.append(
                '<div class="charts">' + "".join(f'<div class="stack">{c}</div>' for c in columns if c) + "</div>"
            )
        if fields:
            parts.append(self._fields_table(fields, _int(about.get("fields_omitted")) or 0, _mixed_note(tests)))
        samples = _list(about.get("samples"))
        if samples:
            text = json.dumps(samples, ensure_ascii=False, indent=2, default=str)
            omitted = _int(about.get("samples_omitted")) or 0
            more = f", {omitted:,} more left out" if omitted else ""
            parts.append(
                f"<details><summary>Sample entities ({len(samples):,}{more})</summary><pre>{_h(text)}</pre></details>"
            )
        parts.append("</section>")
        return "\n".join(parts)

    def _charges(self, charges: dict[str, Any]) -> str:
        rows = []
        for path, totals in charges.items():
            t = _dict(totals)
            total = _real(t.get("total"))
            rows.append(
                f'<tr><td class="path">{_h(path)}</td><td class="num">{_h(_count(t.get("count")))}</td>'
                f'<td class="num">{_h(f"{total:,.2f}" if total is not None else _value_text(t.get("total")))}</td></tr>'
            )
        return "".join(
            [
                "<figure><figcaption>Charges<small>totals of the money fields</small></figcaption>",
                '<div class="tbl-wrap"><table class="charges">',
                '<thead><tr><th>Field</th><th class="num">Entities</th><th class="num">Total</th></tr></thead>',
                "<tbody>",
                *rows,
                "</tbody></table></div></figure>",
            ]
        )

    def _values_by_code(self, tests: dict[str, Any]) -> str:
        """Numbers per code (a lab's value per test): one field's statistics mix units."""
        rows = []
        for row in _list(tests.get("codes")):
            if not isinstance(row, list) or len(row) < 8:
                continue
            code, name, unit, n, low, high, mean, median = row[:8]
            label = _value_text(code) + (f" · {_cut(_value_text(name), _CODE_LABEL)}" if name is not None else "")
            rows.append(
                f"<tr><td>{_h(label)}</td><td>{_h(_value_text(unit) if unit is not None else '')}</td>"
                f'<td class="num">{_h(_count(n))}</td><td class="num">{_h(_num(low))}</td>'
                f'<td class="num">{_h(_num(median))}</td><td class="num">{_h(_num(mean))}</td>'
                f'<td class="num">{_h(_num(high))}</td></tr>'
            )
        detail = f"{_value_text(tests.get('field'))} per {_value_text(tests.get('by'))}"
        if tests.get("unit") is not None:
            detail += f", unit from {_value_text(tests.get('unit'))}"
        return "".join(
            [
                f"<figure><figcaption>Values by test<small>{_h(detail)}</small></figcaption>",
                '<div class="tbl-wrap"><table class="tests">',
                '<thead><tr><th>Test</th><th>Unit</th><th class="num">Results</th><th class="num">Min</th>'
                '<th class="num">Median</th><th class="num">Mean</th><th class="num">Max</th></tr></thead>',
                "<tbody>",
                *rows,
                "</tbody></table></div></figure>",
            ]
        )

    def _fields_table(self, fields: dict[str, Any], omitted: int, mixed: tuple[str, str] | None = None) -> str:
        """The fields' statistics; ``mixed``: a field whose values mix tests, and what to say of it."""
        rows = []
        for path, raw in fields.items():
            st = _dict(raw)
            kinds = ", ".join(_value_text(k) for k in _list(st.get("types")))
            if st.get("format") is not None:
                kinds += f" ({_value_text(st.get('format'))})"
            distinct = st.get("distinct")
            rows.append(
                f'<tr><td class="path">{_h(path)}</td>'
                f'<td class="num">{_h(_percent(st.get("present")))}</td>'
                f"<td>{_h(kinds)}</td>"
                f'<td class="num">{_h(_count(distinct)) if distinct is not None else ""}</td>'
                f'<td class="values">{_h(self._values(st))}'
                + (f' <span class="mixed">({_h(mixed[1])})</span>' if mixed is not None and path == mixed[0] else "")
                + "</td></tr>"
            )
        note = f'<p class="note">{omitted:,} more field{"" if omitted == 1 else "s"} left out of the summary.</p>'
        return "\n".join(
            [
                f"<details open><summary>Fields ({len(fields):,})</summary>",
                '<div class="tbl-wrap"><table class="fields">',
                '<colgroup><col style="width:27%"><col style="width:8%"><col style="width:15%">'
                '<col style="width:9%"><col></colgroup>',
                '<thead><tr><th>Field</th><th class="num">Present</th><th>Types</th>'
                '<th class="num">Distinct</th><th>Values</th></tr></thead>',
                "<tbody>",
                *rows,
                "</tbody></table></div>",
                note if omitted else "",
                "</details>",
            ]
        )

    @staticmethod
    def _values(st: dict[str, Any]) -> str:
        """The statistics of a field other than presence and type, in one line."""
        bits = []
        top = [t for t in _list(st.get("top")) if isinstance(t, list) and len(t) >= 2]
        if top:
            bits.append(" · ".join(f"{_cut(_value_text(v), _VALUE_TEXT)} ({_count(n)})" for v, n in top))
        if "min" in st or "max" in st:
            low, high = st.get("min"), st.get("max")
            fmt = _num if isinstance(low, int | float) and not isinstance(low, bool) else _value_text
            span = _cut(fmt(low), _VALUE_TEXT)
            bits.append(span if high == low else f"{span} – {_cut(fmt(high), _VALUE_TEXT)}")
        if "mean" in st:
            bits.append(f"mean {_num(st.get('mean'))}")
        if "median" in st:
            bits.append(f"median {_num(st.get('median'))}")
        if "true" in st or "false" in st:
            bits.append(f"true {_count(st.get('true', 0))} · false {_count(st.get('false', 0))}")
        length = st.get("length")
        if isinstance(length, dict):
            low, high = length.get("min"), length.get("max")
            bits.append(f"length {_count(low)}" + (f"–{_count(high)}" if high != low else ""))
        if isinstance(st.get("unfit"), dict):
            bits.append(unfit_text(st["unfit"]))
        return "; ".join(bits)
