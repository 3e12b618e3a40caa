"""The HTML report of a scenario summary (``healthsim.state.report``).

Unit tests read the page as text and as parsed HTML: it must load nothing from anywhere,
and no string of the summary may become markup. The browser test opens the page in
headless Chromium with every request other than the page itself refused, waits for every
chart to be drawn and saves a screenshot to ``tests/artifacts/report.png``.
"""

from __future__ import annotations

import copy
import io
import json
import os
import random
import statistics
import sys
import time
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import duckdb
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rich.console import Console

from healthsim.state import InvalidInputError, MissingDependencyError, ScenarioStore
from healthsim.state import report as report_module
from healthsim.state.report import render_report, write_report
from healthsim.summary_view import render_summary
from helpers.examples import examples
from helpers.paths import EXAMPLES, HERE

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTIFACTS = HERE / "artifacts"
HOSTILE = "</script><b>&\"'"
SCRIPT_BREAK = '</script><img src=x onerror="window.__pwned=1">'

# The tags a report is made of; anything else means a string became markup.
ALLOWED_TAGS = {
    "html", "head", "meta", "title", "style", "body", "main", "header", "footer", "section", "div", "span",
    "p", "h1", "h2", "h3", "b", "i", "small", "code", "dl", "dt", "dd", "table", "thead", "tbody", "tr", "th",
    "td", "a", "figure", "figcaption", "details", "summary", "pre", "script", "colgroup", "col",
}  # fmt: skip


# --- summaries ----------------------------------------------------------------------------


def example_summary() -> dict[str, Any]:
    """A summary shaped like the library's, with every fact (from a 1M-entity scenario)."""
    return {
        "scenario_id": "76bc5667-2cd5-4c5f-aa91-640f61a0a820",
        "name": "big",
        "version": 1,
        "description": None,
        "tags": [],
        "created_at": "2026-11-26T10:38:00.669879Z",
        "updated_at": "2026-11-26T10:38:00.669879Z",
        "entity_count": 1_000_000,
        "entities_by_type": {"patients": 125_000, "diagnoses": 250_000, "claims": 125_000, "lab_results": 500_000},
        "types": {
            "patients": {
                "count": 125_000,
                "fields": {
                    "birth_date": {
                        "present": 1.0,
                        "types": ["string"],
                        "distinct": 23396,
                        "format": "date",
                        "min": "1935-01-01",
                        "max": "2004-12-28",
                    },
                    "gender": {
                        "present": 1.0,
                        "types": ["string"],
                        "distinct": 2,
                        "top": [["female", 64949], ["male", 60051]],
                    },
                    "address.line": {"present": 1.0, "types": ["array"], "length": {"min": 1, "max": 1}},
                    "deceased": {"present": 0.5, "types": ["boolean", "null"], "true": 10, "false": 62490},
                    "deceased_date": {"present": 0.0, "types": ["null"]},
                },
                "fields_omitted": 0,
                "age_bands": {
                    "field": "birth_date",
                    "as_of": "2026-11-26",
                    "by": "gender",
                    "bands": {
                        "20-29": {"female": 7488, "male": 6952},
                        "30-39": {"male": 8632, "female": 9419},
                        "90-99": {"female": 1679, "male": 1689},
                    },
                },
                "samples": [],
                "samples_omitted": 2,
            },
            "diagnoses": {
                "count": 250_000,
                "fields": {"code": {"present": 1.0, "types": ["string"], "distinct": 4}},
                "fields_omitted": 3,
                "top_codes": {
                    "field": "code",
                    "description": "display",
                    "top": [
                        ["E11.9", "Type 2 diabetes mellitus without complications", 62869],
                        ["I10", None, 62349],
                    ],
                },
                "over_time": {"field": "onset_date", "unit": "month", "counts": [["2019-05", 250000]]},
                "samples": [{"code": "E11.9"}],
            },
            "claims": {
                "count": 125_000,
                "fields": {
                    "total_charge": {
                        "present": 1.0,
                        "types": ["number"],
                        "min": 10,
                        "max": 2000.5,
                        "mean": 185.123456,
                        "median": 185,
                    }
                },
                "fields_omitted": 0,
                "over_time": {"field": "service_date", "unit": "year", "counts": [["2023", 5], ["2024", 124995]]},
                "charges": {"total_charge": {"count": 125000, "total": 23125000.0}},
                "samples": [],
            },
        },
        "types_omitted": 1,
    }


def hostile_summary() -> dict[str, Any]:
    """Every string hostile, odd shapes, empty types, and 14 types of 60 fields."""
    h = HOSTILE + " é 漢字 🙂 \ud800"
    fields = {
        f"{h}.f{j}": {
            "present": j / 59,
            "types": ["string", h],
            "distinct": j,
            "top": [[h, 3], [None, 2], [True, 1], [{"a": h}, 1]],
            "min": h,
            "max": SCRIPT_BREAK,
            "format": h,
        }
        for j in range(60)
    }
    types: dict[str, Any] = {
        f"{h} type {i}": {
            "count": 1000 + i,
            "fields": dict(fields),
            "fields_omitted": 7,
            "samples": [{h: SCRIPT_BREAK, "n": 1}],
            "samples_omitted": 1,
        }
        for i in range(14)
    }
    first = types[f"{h} type 0"]
    first["age_bands"] = {
        "field": h,
        "as_of": h,
        "by": h,
        "bands": {"0-9": {h: 1, "unknown": 2}, "10-19": {h: 3}, h: {"other": 1}},
    }
    first["top_codes"] = {
        "field": h,
        "description": h,
        "top": [[h, SCRIPT_BREAK, 5], [h, None, 4], [None, h, 3], ["%{x}", "%{customdata}", 2]],
    }
    first["over_time"] = {"field": h, "unit": h, "counts": [[h, 1], ["2024-01", 2]], "shown": h}
    first["charges"] = {h: {"count": 2, "total": 1.5}, "nan": {"count": 0, "total": None}}
    types["empty"] = {"count": 0, "fields": {}, "fields_omitted": 0, "samples": []}
    types["no facts"] = {"count": 3, "fields": {"id": {"present": float("nan"), "types": []}}, "samples": []}
    types["odd"] = {"count": "many", "fields": [], "age_bands": {"bands": []}, "top_codes": {"top": "x"}}
    return {
        "scenario_id": h,
        "name": h,
        "version": h,
        "description": f"{h}\n{SCRIPT_BREAK}",
        "tags": [h, SCRIPT_BREAK, 3],
        "created_at": h,
        "updated_at": None,
        "entity_count": float("inf"),
        "entities_by_type": {**{t: a["count"] for t, a in types.items()}, SCRIPT_BREAK: 9},
        "types": types,
        "types_omitted": 2,
        "entities_by_type_omitted": 1,
    }


class Page(HTMLParser):
    """The tags, attributes, text and script bodies of a page."""

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.scripts: list[tuple[dict[str, str | None], str]] = []
        self.text: list[str] = []
        self._in_script: dict[str, str | None] | None = None
        self.feed(text)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        if tag == "script":
            self._in_script = dict(attrs)
            self.scripts.append((self._in_script, ""))

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self._in_script = None

    def handle_data(self, data: str) -> None:
        if self._in_script is not None:
            attrs, body = self.scripts[-1]
            self.scripts[-1] = (attrs, body + data)
        else:
            self.text.append(data)

    def data_island(self, element_id: str) -> Any:
        return json.loads(next(body for attrs, body in self.scripts if attrs.get("id") == element_id))

    def ids(self, cls: str) -> list[str]:
        return [str(a.get("id")) for _, a in self.tags if cls in (a.get("class") or "").split()]


def assert_offline(html: str) -> Page:
    """The page's markup loads nothing and is only the report's own tags."""
    page = Page(html)
    assert {tag for tag, _ in page.tags} <= ALLOWED_TAGS
    assert "<script src" not in html.lower()
    assert "<link" not in html.lower()
    for tag, attrs in page.tags:
        for name, value in attrs.items():
            assert name not in ("src", "srcset", "action", "formaction", "poster", "background"), (tag, name)
            assert not name.startswith("on"), (tag, name)
            if name == "href":
                assert value is not None and value.startswith("#"), value
            assert "http://" not in (value or "") and "https://" not in (value or ""), (tag, name, value)
    [csp] = [a["content"] for t, a in page.tags if t == "meta" and a.get("http-equiv") == "Content-Security-Policy"]
    assert csp is not None and "default-src 'none'" in csp and "connect-src 'none'" in csp
    # The two data islands, plotly.js, and the script drawing the charts.
    assert [a.get("type") for a, _ in page.scripts] == ["application/json", "application/json", None, None]
    figures = page.data_island("hs-figures")
    assert [f["id"] for f in figures] == page.ids("chart")
    assert page.data_island("hs-config")["displaylogo"] is False
    html.encode("utf-8")  # always valid UTF-8 (lone surrogates were escaped)
    return page


def plotly_strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in plotly_strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in plotly_strings(v)]
    return []


# --- unit tests ---------------------------------------------------------------------------


def test_example_summary_renders_every_part() -> None:
    summary = example_summary()
    before = copy.deepcopy(summary)
    html = render_report(summary)
    assert summary == before  # the summary is read, never changed
    page = assert_offline(html)
    text = " ".join(page.text)
    for expected in (
        "big",
        "1,000,000",
        "2026-11-26 10:38 UTC",
        "Entity types",
        "Age by gender",
        "Top codes",
        "diagnoses over time",
        "Field coverage",
        "23,125,000.00",
        "female (64,949)",
        "1935-01-01 – 2004-12-28",
        "mean 185.123",
        "true 10 · false 62,490",
        "length 1",
        "3 more fields left out",
        "1 more type left out",
        "not summarised",  # lab_results is counted but not summarised
    ):
        assert expected in text, expected
    ids = page.ids("chart")
    # Coverage only where a field is missing somewhere (issue 24): diagnoses and claims
    # have every field in every entity, and say so in a line instead of full bars.
    assert ids == ["chart-0-age", "chart-0-coverage", "chart-1-codes", "chart-1-time", "chart-2-time"]
    assert text.count("Every field summarised (1) is present in every entity.") == 2
    figures = {f["id"]: f for f in page.data_island("hs-figures")}
    age = figures["chart-0-age"]["data"]
    assert [t["name"] for t in age] == ["female", "male"]
    assert age[0]["x"] == ["20-29", "30-39", "90-99"] and age[0]["y"] == [7488, 9419, 1679]
    codes = figures["chart-1-codes"]["data"][0]
    assert codes["x"] == [62869, 62349]
    assert codes["y"] == ["E11.9 · Type 2 diabetes mellitus without complica…", "I10"]
    assert codes["customdata"][0] == "E11.9: Type 2 diabetes mellitus without complications"
    coverage = figures["chart-0-coverage"]["data"][0]
    assert coverage["x"] == [100.0, 100.0, 100.0, 50.0, 0.0]


def test_real_summary_renders(real_summary: dict[str, Any]) -> None:
    page = assert_offline(render_report(real_summary))
    ids = page.ids("chart")
    assert "chart-0-age" in ids and any(i.endswith("-codes") for i in ids) and any(i.endswith("-time") for i in ids)


def test_hostile_strings_never_become_markup() -> None:
    summary = hostile_summary()
    html = render_report(summary)
    page = assert_offline(html)
    assert "</script><b>" not in html and "<img" not in html and "<b>&amp;" not in html
    # In HTML text: escaped, and read back as the very string.
    assert "&lt;/script&gt;&lt;b&gt;&amp;&quot;&#x27;" in html
    text = "".join(page.text)
    assert HOSTILE + " é 漢字 🙂 \\ud800" in text  # the lone surrogate is shown as its escape
    assert SCRIPT_BREAK in text
    # In the figures: escaped for plotly's HTML subset, so "<b>" is drawn as "<b>".
    strings = plotly_strings(page.data_island("hs-figures"))
    assert any("&lt;/script&gt;&lt;b&gt;&amp;\"'" in s for s in strings)
    assert any("&lt;/script&gt;&lt;b&gt;&amp;\"' é 漢字 🙂 \\ud800" in s for s in strings)
    assert not any("\ud800" in s for s in strings)
    assert not any("<" in s and "<extra></extra>" not in s and "<br>" not in s for s in strings)
    # Data never goes into a hover template (where "%{x}" would be read as a placeholder).
    templates = {t["hovertemplate"] for f in page.data_island("hs-figures") for t in f["data"]}
    assert not any("&lt;" in s or "type" in s for s in templates), templates


def test_hostile_summary_shapes() -> None:
    page = Page(render_report(hostile_summary()))
    ids = page.ids("chart")
    # 14 hostile types, each with a coverage chart; the first also ages, codes, time.
    assert ids[:4] == ["chart-0-age", "chart-0-codes", "chart-0-time", "chart-0-coverage"]
    assert sum(i.endswith("-coverage") for i in ids) == 15  # 14 types and "no facts"
    text = " ".join(page.text)
    assert "No entities of this type." in text
    assert "2 more types left out" in text
    figures = {f["id"]: f for f in page.data_island("hs-figures")}
    assert len(figures["chart-3-coverage"]["data"][0]["y"]) == 60
    assert figures["chart-15-coverage"]["data"][0]["x"] == [0.0]  # NaN presence drawn as 0


@pytest.mark.parametrize(
    "summary",
    [
        {},
        {"name": "x", "types": {}},
        {"name": "x", "types": None, "entities_by_type": None, "tags": None},
        {"name": "x", "types": {"a": None, "b": {"count": 1, "fields": {"f": None}}}},
        {"types": {"a": {"count": 2, "fields": {"f": {"present": 1, "types": ["string"], "top": [["v"]]}}}}},
    ],
)
def test_sparse_summaries_render(summary: dict[str, Any]) -> None:
    assert_offline(render_report(summary))


def test_render_is_fast() -> None:
    render_report(example_summary())  # plotly.js read once
    summary = hostile_summary()
    start = time.perf_counter()
    render_report(summary)
    assert time.perf_counter() - start < 0.5


def test_plotly_js_is_inlined_once() -> None:
    html = render_report(example_summary())
    assert html.count("plotly.js v") == 1
    assert html.count("<script") == 4
    assert len(html.encode()) < 6_000_000


def test_a_script_end_inside_plotly_js_cannot_end_the_page_script(monkeypatch: pytest.MonkeyPatch) -> None:
    import plotly.offline

    report_module._plotly_js.cache_clear()
    monkeypatch.setattr(plotly.offline, "get_plotlyjs", lambda: "var a = '</Script><b>x</b>';")
    try:
        html = render_report(example_summary())
    finally:
        report_module._plotly_js.cache_clear()
    assert "var a = '<\\/Script><b>x</b>';" in html
    assert len(Page(html).scripts) == 4 and "<b>x</b>" not in "".join(Page(html).text)


def test_missing_plotly_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    report_module._plotly_js.cache_clear()
    monkeypatch.setitem(sys.modules, "plotly", None)
    monkeypatch.setitem(sys.modules, "plotly.offline", None)
    try:
        with pytest.raises(MissingDependencyError) as caught:
            render_report(example_summary())
        assert str(caught.value) == "the report needs plotly: pip install 'healthsim-state[report]'"
        assert isinstance(caught.value.__cause__, ImportError)
    finally:
        report_module._plotly_js.cache_clear()


# --- writing ------------------------------------------------------------------------------


def test_write_report_creates_folders_and_leaves_only_the_file(tmp_path: Path) -> None:
    target = tmp_path / "a" / "b" / "report.html"
    summary = example_summary()
    assert write_report(summary, target) == target
    assert target.read_bytes() == render_report(summary).encode("utf-8")
    assert os.listdir(target.parent) == ["report.html"]
    assert target.stat().st_mode & 0o777 == 0o666 & ~current_umask()


def current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_write_report_replaces_whole(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "out" / "report.html"
    target.parent.mkdir()
    target.write_text("old")
    summary = example_summary()
    expected = render_report(summary).encode("utf-8")
    seen: list[tuple[bytes, bytes]] = []
    real_replace = os.replace

    def replace(src: Any, dst: Any) -> None:
        # At the rename the new page is complete on disk beside the untouched old one.
        seen.append((Path(src).read_bytes(), Path(dst).read_bytes()))
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    write_report(summary, target)
    assert seen == [(expected, b"old")]
    assert target.read_bytes() == expected
    assert os.listdir(target.parent) == ["report.html"]


@pytest.mark.parametrize("failing", ["fsync", "replace"])
def test_write_report_failure_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, failing: str) -> None:
    def fail(*args: Any) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, failing, fail)
    new = tmp_path / "new" / "report.html"
    with pytest.raises(InvalidInputError, match="no space left on the disk"):
        write_report(example_summary(), new)
    assert not new.parent.exists()  # the folder it made is gone too
    new.parent.mkdir()
    old = new.parent / "old.html"
    old.write_text("old")
    with pytest.raises(InvalidInputError):
        write_report(example_summary(), old)
    assert old.read_text() == "old"
    assert os.listdir(new.parent) == ["old.html"]


def test_write_report_render_failure_creates_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    report_module._plotly_js.cache_clear()
    monkeypatch.setitem(sys.modules, "plotly.offline", None)
    try:
        with pytest.raises(MissingDependencyError):
            write_report(example_summary(), tmp_path / "out" / "report.html")
    finally:
        report_module._plotly_js.cache_clear()
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("wal", [False, True])
def test_report_onto_the_scenario_database_is_refused_and_keeps_it(tmp_path: Path, wal: bool) -> None:
    # Was data loss: the page was renamed over the DuckDB file, and the store was gone.
    database = tmp_path / "r.duckdb"
    store = ScenarioStore(database)
    store.save_scenario("a", {"t": [{"x": 1}]})
    target = Path(f"{database}.wal") if wal else database
    store.report_scenario("a", tmp_path / "first.html")  # the summary it keeps is made now
    before = sorted(os.listdir(tmp_path))
    with pytest.raises(InvalidInputError) as caught:
        store.report_scenario("a", target)
    message = str(caught.value)
    assert message.startswith(f"cannot export to '{target}': it is "), message
    assert "write-ahead log" in message if wal else "database" in message
    assert message.endswith("choose another file; nothing was written"), message
    assert sorted(os.listdir(tmp_path)) == before
    assert ScenarioStore(database).load_scenario("a")["entities"] == {"t": [{"x": 1}]}


def test_write_report_onto_a_duckdb_database_is_refused(tmp_path: Path) -> None:
    database = tmp_path / "work" / "analysis.duckdb"
    database.parent.mkdir()
    with duckdb.connect(str(database)) as con:
        con.execute("CREATE TABLE kept AS SELECT 42 AS answer")
    with pytest.raises(InvalidInputError, match=f"'{database}': it is a DuckDB database, which this would replace"):
        write_report(example_summary(), database)
    assert os.listdir(database.parent) == ["analysis.duckdb"]
    with duckdb.connect(str(database), read_only=True) as con:
        assert con.execute("SELECT answer FROM kept").fetchall() == [(42,)]


# --- the real library's summary, in a real browser ----------------------------------------


@pytest.fixture(scope="module")
def real_summary(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The summary of the example cohort plus 300 generated patients of all ages, and a
    diagnosis whose code and text try to break out of the page."""
    entities: dict[str, list[Any]] = json.loads((EXAMPLES / "diabetes-cohort.json").read_text("utf-8"))
    rng = random.Random(3)
    genders = ["female", "male", "female", "male", "other", None]
    for i in range(300):
        entities["patients"].append(
            {
                "patient_id": f"GEN-{i:04d}",
                "birth_date": f"{1930 + rng.randrange(90)}-{1 + rng.randrange(12):02d}-{1 + rng.randrange(28):02d}",
                "gender": genders[i % len(genders)],
                "name": {"given": ["Zoë"], "family": "Ørsted"},
            }
        )
    for i in range(12):
        entities["diagnoses"].append(
            {
                "patient_id": f"GEN-{i:04d}",
                "code": "<b>X1</b>",
                "display": SCRIPT_BREAK,
                "onset_date": f"2023-0{1 + i % 9}-01",
            }
        )
    store = ScenarioStore(tmp_path_factory.mktemp("store") / "t.duckdb")
    store.save_scenario("demo", entities, description=f"Report test {HOSTILE}", tags=["diabetes", HOSTILE])
    return dict(store.summarize_scenario("demo"))


@pytest.mark.slow
def test_report_draws_in_headless_chromium_offline(real_summary: dict[str, Any], tmp_path: Path) -> None:
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium (apt-get install chromium); CI does")
    from playwright.sync_api import ConsoleMessage, Route, sync_playwright

    path = write_report(real_summary, tmp_path / "report.html")
    url = path.resolve().as_uri()
    blocked: list[str] = []
    problems: list[str] = []

    def route(r: Route) -> None:
        if r.request.url == url:
            r.continue_()
        else:
            blocked.append(r.request.url)
            r.abort()

    def console(message: ConsoleMessage) -> None:
        if message.type == "error":
            problems.append(f"console error: {message.text}")

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.on("console", console)
            page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
            page.route("**/*", route)
            page.goto(url)
            page.wait_for_function(
                "() => { const c = [...document.querySelectorAll('.chart')];"
                " return c.length > 0 && c.every(d => d.getAttribute('data-drawn')); }",
                timeout=15_000,
            )
            charts = page.evaluate(
                """() => [...document.querySelectorAll('.chart')].map(d => ({
                    id: d.id,
                    drawn: d.getAttribute('data-drawn'),
                    svg: d.querySelectorAll('svg.main-svg').length,
                    marks: [...d.querySelectorAll('svg.main-svg .barlayer .point path')]
                        .filter(p => (p.getAttribute('d') || '').length > 2).length,
                    ticks: [...d.querySelectorAll('svg.main-svg .ytick text, svg.main-svg .xtick text')]
                        .map(t => t.textContent),
                    bold: d.querySelectorAll('svg b, svg [style*="bold"]').length,
                }))"""
            )
            dom = page.evaluate(
                """() => ({
                    pwned: window.__pwned === 1,
                    imgs: document.querySelectorAll('img').length,
                    title: document.title,
                    header: document.querySelector('header').textContent,
                })"""
            )
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "report.png"), full_page=True)
        finally:
            browser.close()

    assert not blocked, f"the page tried to fetch: {blocked}"
    assert not problems, problems
    assert len(charts) >= 6
    for chart in charts:
        assert chart["drawn"] == "1", chart
        assert chart["svg"] >= 1 and chart["marks"] >= 1, chart
        assert chart["bold"] == 0, chart
    by_id = {c["id"]: c for c in charts}
    assert {"20-29", "50-59", "80-89"} <= set(by_id["chart-0-age"]["ticks"])
    codes = next(c for c in charts if c["id"].endswith("-codes"))
    # The hostile code and text are drawn as text, not as markup.
    assert any(t.startswith("<b>X1</b> · </script><img") for t in codes["ticks"]), codes["ticks"]
    assert not dom["pwned"] and dom["imgs"] == 0
    assert HOSTILE in dom["header"] and dom["title"] == "demo · HealthSim scenario"


# --- lab values per test (issue 24) --------------------------------------------------------

LAB_TESTS = {"4548-4": ("Hemoglobin A1c", "%"), "2345-7": ("Glucose", "mg/dL"), "2160-0": ("Creatinine", "mg/dL")}


@pytest.fixture(scope="module")
def lab_store(tmp_path_factory: pytest.TempPathFactory) -> ScenarioStore:
    return ScenarioStore(tmp_path_factory.mktemp("labs") / "labs.duckdb")


@given(
    labs=st.lists(
        st.tuples(
            st.sampled_from(sorted(LAB_TESTS)),
            st.one_of(st.integers(-(10**6), 10**6), st.floats(-1e9, 1e9, allow_nan=False), st.just("pending")),
        ),
        min_size=1,
        max_size=40,
    )
)
@settings(max_examples=examples(15), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_lab_values_are_summarised_per_test_code(lab_store: ScenarioStore, labs: list[tuple[str, Any]]) -> None:
    """A lab's `value` field mixes the units of every test (HbA1c in %, glucose in mg/dL):
    the summary also gives each code's count, min, max, mean and median, its unit and name,
    computed in the database; text values ("pending") are no numbers."""
    entities = [
        {"loinc_code": code, "test_name": LAB_TESTS[code][0], "value": value, "unit": LAB_TESTS[code][1]}
        for code, value in labs
    ]
    entities.append({"loinc_code": None, "value": 5})  # no code: in no test's figures
    lab_store.save_scenario("labs", {"lab_results": entities}, overwrite=True)
    got = lab_store.summarize_scenario("labs")["types"]["lab_results"]["values_by_code"]
    assert (got["field"], got["by"], got["unit"], got["name"]) == ("value", "loinc_code", "unit", "test_name")
    numbers: dict[str, list[float]] = {}
    for code, value in labs:
        if not isinstance(value, str):
            numbers.setdefault(code, []).append(float(value))
    expected = sorted(numbers.items(), key=lambda kv: (-len(kv[1]), kv[0]))
    assert [row[0] for row in got["codes"]] == [code for code, _ in expected]
    for row, (code, values) in zip(got["codes"], expected, strict=True):
        name, unit, n, low, high, mean, median = row[1:]
        assert (name, unit, n) == (*LAB_TESTS[code], len(values))
        assert (low, high) == (min(values), max(values))
        assert mean == pytest.approx(statistics.fmean(values), rel=1e-6, abs=1e-6)
        assert median == pytest.approx(statistics.median(values), rel=1e-9, abs=1e-9)


def test_the_report_shows_values_per_test_and_says_the_field_mixes_them(lab_store: ScenarioStore) -> None:
    labs = [
        {"loinc_code": "4548-4", "test_name": "Hemoglobin A1c", "value": v, "unit": "%"} for v in (6.5, 7.1, 8.0)
    ] + [{"loinc_code": "2345-7", "test_name": "Glucose", "value": v, "unit": "mg/dL"} for v in (95, 180)]
    lab_store.save_scenario("labs-report", {"lab_results": labs})
    page = assert_offline(render_report(dict(lab_store.summarize_scenario("labs-report", max_bytes=512 * 1024))))
    text = " ".join(page.text)
    assert "Values by test" in text and "value per loinc_code, unit from unit" in text
    assert "4548-4 · Hemoglobin A1c" in text and "2345-7 · Glucose" in text
    assert "mixes 2 tests in 2 units: see Values by test" in text
    # The terminal's summary shows the same table.
    console = Console(width=120, file=io.StringIO(), markup=False, emoji=False, highlight=False)
    render_summary(dict(lab_store.summarize_scenario("labs-report")), console)
    shown = console.file.getvalue()  # type: ignore[attr-defined]
    assert "value per loinc_code" in shown and "Hemoglobin A1c" in shown and "137.5" in shown


def test_the_summary_budget_keeps_values_per_test_short(lab_store: ScenarioStore) -> None:
    """Many tests with long names: the summary still fits 12 KB."""
    labs = [
        {"loinc_code": f"{i:05d}-{i % 10}", "test_name": f"test {i} " + "x" * 300, "value": i, "unit": "u" * 200}
        for i in range(40)
    ]
    lab_store.save_scenario("many-tests", {"lab_results": labs})
    summary = lab_store.summarize_scenario("many-tests")
    assert len(json.dumps(summary, separators=(",", ":"), ensure_ascii=False).encode()) <= 12 * 1024
    assert 1 <= len(summary["types"]["lab_results"].get("values_by_code", {"codes": [1]})["codes"]) <= 10


# --- the tool bar never covers labels (issue 24) ---------------------------------------------


@pytest.mark.slow
def test_the_tool_bar_covers_no_label_of_any_chart(real_summary: dict[str, Any], tmp_path: Path) -> None:
    """Plotly's tool bar shows at a chart's top right when the pointer is over it; it
    covered the coverage chart's 75% and 100% labels. Each chart is hovered in Chromium
    and the bar's box must not meet any tick label or bar text."""
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium (apt-get install chromium); CI does")
    from playwright.sync_api import sync_playwright

    path = write_report(real_summary, tmp_path / "report.html")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(path.resolve().as_uri())
            page.wait_for_function(
                "() => [...document.querySelectorAll('.chart')].every(d => d.getAttribute('data-drawn'))",
                timeout=15_000,
            )
            ids = page.evaluate("() => [...document.querySelectorAll('.chart')].map(d => d.id)")
            assert any(i.endswith("-coverage") for i in ids), ids
            overlaps = {}
            for chart_id in ids:
                page.hover(f"[id='{chart_id}']", position={"x": 40, "y": 60})
                page.wait_for_selector(f"[id='{chart_id}'] .modebar-container .modebar", state="visible")
                overlaps[chart_id] = page.evaluate(
                    """(id) => {
                        const d = document.getElementById(id);
                        const bar = d.querySelector('.modebar').getBoundingClientRect();
                        const labels = [...d.querySelectorAll('.xtick text, .ytick text, .bartext, .legendtext')];
                        const meet = (a, b) => a.left < b.right && b.left < a.right && a.top < b.bottom && b.top < a.bottom;
                        return {
                            bar: [bar.width, bar.height],
                            labels: labels.length,
                            hit: labels.filter(t => meet(bar, t.getBoundingClientRect())).map(t => t.textContent),
                        };
                    }""",
                    chart_id,
                )
        finally:
            browser.close()
    for chart_id, seen in overlaps.items():
        assert seen["bar"][0] > 0 and seen["labels"] > 0, (chart_id, seen)
        assert seen["hit"] == [], (chart_id, seen)
