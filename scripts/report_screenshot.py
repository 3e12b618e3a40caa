#!/usr/bin/env python3
"""Make ``docs/report-example.png``: the HTML report of a realistic scenario, as Chromium draws it.

    python scripts/report_screenshot.py                      # docs/report-example.png, 1280 x 2400
    python scripts/report_screenshot.py --entities 50000 --out /tmp/r.png --html /tmp/r.html --full

The scenario is the benchmark's (``benchmarks/data.py``, deterministic), with its dates
spread over two years so the "over time" charts have something to show. It is saved to a
temporary store, summarised, written by ``report_scenario`` (as ``healthsim report`` does) and
opened in headless Chromium (Debian's ``/usr/bin/chromium``, driven by playwright) with
the network blocked. Unless ``--full``, the fields tables are closed, so that the picture
shows more of the charts. Needs the dev extra: ``pip install -e '.[dev]'``.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

from data import generate  # noqa: E402
from healthsim.state import ScenarioStore  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


# Plausible ranges of each test's value (the benchmark draws every test from one range).
_LAB_RANGES = {"4548-4": (5.0, 11.5, 1), "2345-7": (70.0, 320.0, 0), "2160-0": (0.5, 2.4, 2)}


def scenario(n_entities: int) -> dict[str, list[dict[str, Any]]]:
    """The benchmark scenario with its dates spread over 2023-2024, lab values in each
    test's own range and unit, and some fields left out, as real cohorts have them
    (deterministic)."""
    entities = generate(n_entities)
    rng = random.Random(11)

    def day() -> str:
        return f"{2023 + rng.randrange(2)}-{1 + rng.randrange(12):02d}-{1 + rng.randrange(28):02d}"

    for e in entities["encounters"]:
        d = day()
        e["period"] = {"start": f"{d}T09:00:00Z", "end": f"{d}T09:30:00Z"}
    for e in entities["diagnoses"]:
        e["onset_date"] = f"{2015 + rng.randrange(10)}-{1 + rng.randrange(12):02d}-01"
    for e in entities["lab_results"]:
        e["effective"] = day()
        low, high, places = _LAB_RANGES.get(e.get("loinc", ""), (0.0, 1.0, 2))
        e["value"] = round(rng.uniform(low, high), places)
    for p in entities["patients"]:
        if rng.random() < 0.35:
            del p["contact"]["email"]  # not everyone gives one
        if rng.random() < 0.04:
            p["deceased_date"] = day()
    for e in entities["claims"]:
        e["service_date"] = day()
    return entities


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--entities", type=int, default=20_000, help="entities to generate (default 20000)")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "report-example.png", help="the PNG to write")
    parser.add_argument("--html", type=Path, help="also keep the report's HTML here")
    parser.add_argument("--height", type=int, default=2400, help="pixels of the page to keep (default 2400)")
    parser.add_argument("--full", action="store_true", help="the whole page, whatever its height")
    args = parser.parse_args(argv)

    from playwright.sync_api import Route, sync_playwright

    with tempfile.TemporaryDirectory() as tmp:
        store = ScenarioStore(Path(tmp) / "report.duckdb")
        store.save_scenario(
            "diabetes-cohort-demo",
            scenario(args.entities),
            description="Synthetic adults with type 2 diabetes: visits, diagnoses, labs and claims.",
            tags=["diabetes", "benchmark", "synthetic"],
        )
        # As `healthsim report` makes it (the report's summary keeps every field computed).
        page_path = store.report_scenario("diabetes-cohort-demo", args.html or Path(tmp) / "report.html").resolve()
        url = page_path.as_uri()
        blocked: list[str] = []

        def route(r: Route) -> None:
            if r.request.url == url:
                r.continue_()
            else:
                blocked.append(r.request.url)
                r.abort()

        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                page = browser.new_page(viewport={"width": 1280, "height": 900})
                page.route("**/*", route)
                page.goto(url)
                page.wait_for_function(
                    "() => [...document.querySelectorAll('.chart')].every(d => d.getAttribute('data-drawn'))",
                    timeout=30_000,
                )
                if not args.full:  # the fields tables closed, so that more charts fit
                    page.evaluate("document.querySelectorAll('details').forEach(d => d.open = false)")
                # The pointer over the first coverage chart: its tool bar shows, above the labels.
                coverage = page.query_selector("[id$='-coverage']")
                if coverage is not None:
                    coverage.hover()
                    page.wait_for_timeout(300)
                height = page.evaluate("document.documentElement.scrollHeight")
                args.out.parent.mkdir(parents=True, exist_ok=True)
                clip = None if args.full else {"x": 0, "y": 0, "width": 1280, "height": min(args.height, height)}
                page.screenshot(path=str(args.out), full_page=True, clip=clip)
            finally:
                browser.close()
    if blocked:
        print(f"the page tried to fetch {blocked}", file=sys.stderr)
        return 1
    print(f"wrote {args.out} ({args.out.stat().st_size:,} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
