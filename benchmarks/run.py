"""Benchmark: the library beside the floor raw DuckDB reaches on the same data, in one run.

    python benchmarks/run.py                    # 100,000 and 1,000,000 entities
    python benchmarks/run.py --sizes 100000     # quicker
    python benchmarks/run.py --only import      # the import rows alone (three file layouts)
    python benchmarks/run.py --only import --layouts indent2 oneline

Prints a Markdown table of seconds (best of --repeat runs), the ratio library/floor and
the target, and the resident memory of the largest size (save: added beyond its input;
import and export: peak of the process). See benchmarks/README.md for what each floor is.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from array import array
from collections.abc import Callable, Collection, Sequence
from pathlib import Path
from typing import Any

import duckdb
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).parent))
from data import generate, write_json
from healthsim.state import ScenarioStore
from healthsim.state.schema import ensure_schema

TARGETS = {
    "save": 1.5,
    "load": 1.5,
    "list": 3.0,
    "export": 2.0,
    "import": 2.0,
    "import (indent=2)": 1.5,
    "import (one line)": 1.5,
    "add 100": 3.0,
    "remove 100": 3.0,
    "rename": 3.0,
    "copy": 0.5,
    "overwrite": 2.0,
    "load previous version": 1.5,
    "diff of versions 100 apart": 1.0,
    "summary": 0.5,
    "report": 2.0,
    "parquet export": 1.5,
    "ndjson export": 1.5,
    "load_frames": 1.5,
}
# save: resident memory added beyond the input; import/export: peak resident memory of the process.
MEMORY_TARGETS_MB = {
    "save": 1536,
    "import": 800,
    "import (indent=2)": 800,
    "import (one line)": 800,
    "export": 400,
    "parquet export": 800,
}
OPERATIONS = ("save", "load", "export", "import", "list", "edit", "see", "tables")
# File layouts the import is measured on: the export's own, and the two that Python's json
# module writes (as earlier HealthSim releases did): json.dumps(doc, indent=2) and json.dumps(doc).
LAYOUTS = {"export": "import", "indent2": "import (indent=2)", "oneline": "import (one line)"}
LAYOUT_INDENT = {"indent2": 2, "oneline": None}


def best_of(repeat: int, run: Callable[[int], float]) -> float:
    """Best time of ``repeat`` runs; ``run(i)`` returns its own measured seconds."""
    times = []
    for i in range(repeat):
        gc.collect()
        times.append(run(i))
    return min(times)


def fresh_db(folder: Path, label: str) -> Path:
    path = folder / f"{label}-{uuid.uuid4().hex[:8]}.duckdb"
    con = duckdb.connect(str(path))
    ensure_schema(con)  # the floor writes into the very same table definitions
    con.close()
    return path


# ------------------------------------------------------------------------- floors


def floor_save(path: Path, entities: dict[str, list[dict[str, Any]]]) -> float:
    """orjson each entity into one buffer, Arrow table, one INSERT … SELECT, one transaction."""
    started = time.perf_counter()
    buffer = bytearray()
    ends = array("q", [0])
    types: list[str] = []
    dumps = orjson.dumps
    for entity_type, items in entities.items():
        for entity in items:
            buffer += dumps(entity)
            ends.append(len(buffer))
        types.extend([entity_type] * len(items))
    n = len(types)
    table = pa.table(
        {
            "id": pa.array(range(1, n + 1), pa.int32()),
            "entity_type": pa.array(types, pa.string()),
            "entity_data": pa.LargeStringArray.from_buffers(n, pa.py_buffer(ends), pa.py_buffer(buffer)),
        }
    )
    con = duckdb.connect(str(path))
    con.execute("BEGIN TRANSACTION")
    con.register("chunk", table)
    con.execute(
        "INSERT INTO scenario_entities SELECT id, $sid, entity_type, gen_random_uuid(), entity_data, $now FROM chunk",
        {"sid": uuid.uuid4(), "now": dt.datetime(2026, 1, 1)},
    )
    con.execute("COMMIT")
    con.close()
    return time.perf_counter() - started


def floor_load(path: Path) -> float:
    """Select the scenario's entity_data as Arrow, orjson-parse every row (GC paused)."""
    gc.disable()  # as the library does: the collector would rescan the new dicts
    started = time.perf_counter()
    con = duckdb.connect(str(path))
    sid = con.execute("SELECT scenario_id FROM scenario_entities LIMIT 1").fetchall()[0][0]
    column = (
        con.sql("SELECT entity_data FROM scenario_entities WHERE scenario_id = $sid", params={"sid": sid})
        .to_arrow_table()
        .column(0)
    )
    con.close()
    loads = orjson.loads
    parsed = [loads(text) for text in column.to_pylist()]
    elapsed = time.perf_counter() - started
    gc.enable()
    assert parsed
    return elapsed


def floor_list(path: Path) -> float:
    """Open the file, one GROUP BY of entity counts per scenario and type, close."""
    started = time.perf_counter()
    con = duckdb.connect(str(path))
    rows = con.execute("SELECT scenario_id, entity_type, count(*) FROM scenario_entities GROUP BY ALL").fetchall()
    con.close()
    elapsed = time.perf_counter() - started
    assert rows
    return elapsed


def floor_export(db: Path, out: Path) -> float:
    """The stored JSON text spliced into a file: one query, one buffer write per chunk,
    and fsync, which the issue requires of the export (an atomic, durable file)."""
    started = time.perf_counter()
    con = duckdb.connect(str(db))
    sid = con.execute("SELECT scenario_id FROM scenarios WHERE name = 'bench'").fetchall()[0][0]
    column = (
        con.sql("SELECT entity_data FROM scenario_entities WHERE scenario_id = $sid", params={"sid": sid})
        .to_arrow_table()
        .column(0)
    )
    con.close()
    separator = pa.scalar(",\n", pa.large_string())
    with out.open("wb") as file:
        file.write(b'{"schema_version":"1.0","name":"bench","entities":{"all":[\n')
        for chunk in column.chunks:
            joined = pc.binary_join_element_wise(
                chunk.cast(pa.large_string()), pa.scalar("", pa.large_string()), separator
            )
            file.write(joined.buffers()[2])
        file.write(b"]}}\n")
        file.flush()
        os.fsync(file.fileno())
    return time.perf_counter() - started


def floor_import(path: Path, db: Path) -> float:
    """orjson on the whole file (GC paused), then the floor's bulk insert of every entity."""
    gc.disable()
    started = time.perf_counter()
    document = orjson.loads(path.read_bytes())
    parsed = time.perf_counter() - started
    gc.enable()
    return parsed + floor_save(db, document["entities"])


# ------------------------------------------------------------------------- library


def lib_save(path: Path, entities: dict[str, list[dict[str, Any]]]) -> float:
    store = ScenarioStore(path)
    started = time.perf_counter()
    store.save_scenario("bench", entities)
    return time.perf_counter() - started


def lib_load(path: Path, expected: int) -> float:
    store = ScenarioStore(path)
    started = time.perf_counter()
    loaded = store.load_scenario("bench")
    elapsed = time.perf_counter() - started
    assert loaded["entity_count"] == expected
    return elapsed


def lib_export(db: Path, out: Path) -> float:
    started = time.perf_counter()
    ScenarioStore(db).export_scenario_to_json("bench", out)
    return time.perf_counter() - started


def lib_import(path: Path, db: Path, expected: int) -> float:
    store = ScenarioStore(db)
    started = time.perf_counter()
    sid = store.import_scenario_from_json(path, name="imported")
    elapsed = time.perf_counter() - started
    with store.open_scenario(sid) as reader:
        assert sum(reader.counts.values()) == expected
    return elapsed


def lib_list(path: Path, expected: int) -> float:
    store = ScenarioStore(path)
    started = time.perf_counter()
    listed = store.list_scenarios(limit=expected)
    elapsed = time.perf_counter() - started
    assert len(listed["scenarios"]) == expected
    return elapsed


# ------------------------------------------------------------------------- memory


def _rss_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def memory_child(mode: str, args: list[str]) -> None:
    """Run in a subprocess, print resident memory figures as JSON.

    save N FOLDER: memory a save adds beyond its input (peak during the save - before it).
    import FILE DB / export DB FILE: the process's peak resident memory.
    """
    if mode == "save":
        entities = generate(int(args[0]))
        gc.collect()
        before = _rss_kb("VmRSS")
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM (peak RSS) to now
        ScenarioStore(Path(args[1]) / "memory.duckdb").save_scenario("bench", entities)
        print(json.dumps({"mb": (_rss_kb("VmHWM") - before) / 1024, "before_mb": before / 1024}))
    elif mode == "import":
        ScenarioStore(args[1]).import_scenario_from_json(args[0], name="memory")
        print(json.dumps({"mb": _rss_kb("VmHWM") / 1024}))
    elif mode == "export":
        ScenarioStore(args[0]).export_scenario_to_json("bench", args[1])
        print(json.dumps({"mb": _rss_kb("VmHWM") / 1024}))
    elif mode == "parquet":
        ScenarioStore(args[0]).export_scenario("bench", args[1], format="parquet")
        print(json.dumps({"mb": _rss_kb("VmHWM") / 1024}))


def write_layouts(exported: Path, targets: list[tuple[str, Path]]) -> None:
    """Write the exported document again in other layouts (run in a child process).

    The document is the export's, parsed whole (GC paused: a million dicts, no cycles);
    each file is then written one entity at a time, byte for byte what
    ``json.dumps(doc, indent=2)`` or ``json.dumps(doc)`` would return.
    """
    gc.disable()
    document = orjson.loads(exported.read_bytes())
    for layout, path in targets:
        started = time.perf_counter()
        size = write_json(document, path, LAYOUT_INDENT[layout])
        print(
            f"#   {LAYOUTS[layout]}: wrote {size / 1e6:,.0f} MB in {time.perf_counter() - started:.1f} s",
            file=sys.stderr,
        )


def lib_load_named(path: Path, name: str, version: str) -> float:
    """Load a scenario, or one of its versions ("" for the current one)."""
    store = ScenarioStore(path)
    started = time.perf_counter()
    store.load_scenario(name, int(version) if version else None)
    return time.perf_counter() - started


def lib_diff(path: Path, a: str, b: str) -> float:
    store = ScenarioStore(path)
    started = time.perf_counter()
    store.diff_scenarios(a, b)
    return time.perf_counter() - started


def lib_summary(path: Path) -> float:
    started = time.perf_counter()
    summary = ScenarioStore(path).summarize_scenario("bench")
    elapsed = time.perf_counter() - started
    assert len(json.dumps(summary, ensure_ascii=False, separators=(",", ":")).encode()) <= 12 * 1024
    return elapsed


def lib_report(path: Path, out: Path) -> float:
    started = time.perf_counter()
    ScenarioStore(path).report_scenario("bench", out)
    return time.perf_counter() - started


def lib_export_format(db: Path, out: Path, fmt: str) -> float:
    started = time.perf_counter()
    ScenarioStore(db).export_scenario("bench", out, format=fmt)
    return time.perf_counter() - started


def floor_parquet(ndjson: Path, folder: Path) -> float:
    """DuckDB alone: per type, read our NDJSON export with read_json (its own type
    inference) and COPY the entities of that type to Parquet, in one process."""
    started = time.perf_counter()
    con = duckdb.connect()
    types = [
        t
        for (t,) in con.execute(
            f"SELECT DISTINCT entity_type FROM read_json('{ndjson}', format='newline_delimited', columns={{entity_type: 'VARCHAR'}})"
        ).fetchall()
    ]
    folder.mkdir(exist_ok=True)
    for entity_type in types:
        con.execute(
            f"COPY (SELECT entity_id, unnest(data) FROM read_json('{ndjson}', format='newline_delimited') "
            f"WHERE entity_type = '{entity_type}') TO '{folder / entity_type}.parquet' (FORMAT parquet)"
        )
    con.close()
    return time.perf_counter() - started


def lib_frames(db: Path) -> float:
    started = time.perf_counter()
    frames = ScenarioStore(db).load_frames("bench")
    elapsed = time.perf_counter() - started
    assert sum(t.num_rows for t in frames.values()) > 0
    return elapsed


def floor_frames(folder: Path) -> float:
    """pyarrow reading the Parquet files of the library's export."""
    started = time.perf_counter()
    tables = {p.stem: pq.read_table(p) for p in sorted(folder.glob("*.parquet"))}
    elapsed = time.perf_counter() - started
    assert sum(t.num_rows for t in tables.values()) > 0
    return elapsed


TIMED = {
    "lib-export-format": lambda a: lib_export_format(Path(a[0]), Path(a[1]), a[2]),
    "floor-parquet": lambda a: floor_parquet(Path(a[0]), Path(a[1])),
    "lib-frames": lambda a: lib_frames(Path(a[0])),
    "floor-frames": lambda a: floor_frames(Path(a[0])),
    "lib-summary": lambda a: lib_summary(Path(a[0])),
    "lib-report": lambda a: lib_report(Path(a[0]), Path(a[1])),
    "lib-load-named": lambda a: lib_load_named(Path(a[0]), a[1], a[2] if len(a) > 2 else ""),
    "lib-diff": lambda a: lib_diff(Path(a[0]), a[1], a[2]),
    "lib-load": lambda a: lib_load(Path(a[0]), int(a[1])),
    "floor-load": lambda a: floor_load(Path(a[0])),
    "lib-export": lambda a: lib_export(Path(a[0]), Path(a[1])),
    "floor-export": lambda a: floor_export(Path(a[0]), Path(a[1])),
    "lib-import": lambda a: lib_import(Path(a[0]), fresh_db(Path(a[1]), "import"), int(a[2])),
    "floor-import": lambda a: floor_import(Path(a[0]), fresh_db(Path(a[1]), "floor-import")),
}


def timed_in_child(mode: str, *args: str) -> float:
    """Seconds of one run in a fresh process: the parent's million input objects would
    otherwise make Python's garbage collector slow down whichever side runs after them."""
    out = subprocess.run(
        [sys.executable, __file__, "--time-child", mode, *args], check=True, capture_output=True, text=True
    ).stdout
    return float(out.strip().splitlines()[-1])


def measure_memory(mode: str, *args: str) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, __file__, "--memory-child", mode, *args],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


# ------------------------------------------------------------------------- main


def bench_size(
    n: int,
    folder: Path,
    repeat: int,
    memory: dict[str, float] | None,
    only: Collection[str] = OPERATIONS,
    layouts: Sequence[str] = tuple(LAYOUTS),
) -> list[tuple[str, str, float, float, float]]:
    """Save, load, export and import of ``n`` entities beside their floors.

    Args:
        memory: where to put the import/export peak memory figures (None: skip them).
        only: the operations to measure; what the others would have made (the saved
            file, the exported file) is still made once, untimed, when needed.
        layouts: the file layouts to measure the import on (keys of ``LAYOUTS``).
    """
    if not set(only) & {"save", "load", "export", "import"}:
        return []
    entities = generate(n)
    print(f"# {n:,} entities, {bytes_per_entity(entities):.0f} bytes of JSON per entity", file=sys.stderr)
    lib_paths: list[Path] = []
    floor_paths: list[Path] = []

    def run_lib_save(_: int) -> float:
        lib_paths.append(folder / f"lib-{uuid.uuid4().hex[:8]}.duckdb")
        return lib_save(lib_paths[-1], entities)

    def run_floor_save(_: int) -> float:
        floor_paths.append(fresh_db(folder, "floor"))
        return floor_save(floor_paths[-1], entities)

    size = f"{n:,}"
    results: list[tuple[str, str, float, float, float]] = []
    if "save" in only:
        results.append(("save", size, best_of(repeat, run_lib_save), best_of(repeat, run_floor_save), TARGETS["save"]))
    else:  # untimed: the files the other operations read
        run_lib_save(0)
        if "load" in only:
            run_floor_save(0)
    entities.clear()  # the rest runs in child processes: free the input here
    gc.collect()
    db, exported = str(lib_paths[0]), str(folder / "exported.json")
    if "load" in only:
        floor_db = str(floor_paths[0])
        results.append(
            (
                "load",
                size,
                best_of(repeat, lambda _: timed_in_child("lib-load", db, str(n))),
                best_of(repeat, lambda _: timed_in_child("floor-load", floor_db)),
                TARGETS["load"],
            )
        )
    if "export" in only:
        results.append(
            (
                "export",
                size,
                best_of(repeat, lambda _: timed_in_child("lib-export", db, exported)),
                best_of(repeat, lambda _: timed_in_child("floor-export", db, str(folder / "floor-export.json"))),
                TARGETS["export"],
            )
        )
    elif "import" in only:
        timed_in_child("lib-export", db, exported)  # untimed: the file the import reads
    if "import" in only:
        results += bench_imports(n, folder, repeat, memory, Path(exported), layouts)
    if memory is not None and "export" in only:
        memory["export"] = measure_memory("export", db, str(folder / "mem-export.json"))["mb"]
    for path in [*lib_paths, *floor_paths, *folder.glob("*import*.duckdb"), *folder.glob("*.json")]:
        path.unlink(missing_ok=True)
    return results


def bench_imports(
    n: int, folder: Path, repeat: int, memory: dict[str, float] | None, exported: Path, layouts: Sequence[str]
) -> list[tuple[str, str, float, float, float]]:
    """The import of ``n`` entities in each layout beside its floor (the same floor for all:
    orjson of the whole file, then the save floor's bulk insert).

    The files in the other layouts hold the exported document; they are written once, in a
    child process (the parsed document would otherwise linger in this one), and deleted
    once measured: at 1,000,000 entities the indent=2 file is about 0.7 GB.
    """
    files = {"export": exported}
    written = [(layout, folder / f"layout-{layout}.json") for layout in layouts if layout != "export"]
    if written:
        subprocess.run(
            [sys.executable, __file__, "--write-layouts", str(exported), *(f"{k}={p}" for k, p in written)],
            check=True,
        )
        files.update(written)

    def timed(mode: str, *args: str) -> float:
        return best_of(repeat, lambda _: timed_in_child(mode, *args))

    results = []
    for layout in layouts:
        row, path = LAYOUTS[layout], str(files[layout])
        results.append(
            (
                row,
                f"{n:,}",
                timed("lib-import", path, str(folder), str(n)),
                timed("floor-import", path, str(folder)),
                TARGETS[row],
            )
        )
        if memory is not None:
            memory[row] = measure_memory("import", path, str(fresh_db(folder, "mem-import")))["mb"]
        for stale in folder.glob("*import*.duckdb"):  # a million-entity file each
            stale.unlink()
        if layout != "export":
            files[layout].unlink()
    return results


def bench_edits(n: int, folder: Path, repeat: int) -> list[tuple[str, str, float, float, float]]:
    """Edits of a scenario of ``n`` entities, in the file that holds it.

    Floors: saving a new 100-entity scenario into the same file (what a small write costs
    there: open, check, one transaction, close) for add, remove and rename; the first save
    of the ``n`` entities for copy.
    """
    db = folder / "edit.duckdb"
    store = ScenarioStore(db)
    entities = generate(n)
    started = time.perf_counter()
    store.save_scenario("big", entities)
    first_save = time.perf_counter() - started
    entities.clear()
    gc.collect()
    small = generate(100)
    counter = iter(range(10**6))

    def timed(action: Callable[[], object]) -> float:
        started = time.perf_counter()
        action()
        return time.perf_counter() - started

    def small_save(_: int) -> float:
        return timed(lambda: store.save_scenario(f"small-{next(counter)}", small))

    def add(_: int) -> float:
        """100 new entities (fresh ids: an upsert of existing ones costs more, see README)."""
        k = next(counter)
        fresh = {"patients": "patient_id", "encounters": "encounter_id", "claims": "claim_id"}
        batch = {
            t: [{**e, **({fresh[t]: f"ADD-{k}-{i}"} if t in fresh else {}), "batch": k} for i, e in enumerate(v)]
            for t, v in small.items()
        }
        return timed(lambda: store.add_entities(current[0], batch))

    removable = iter(range(0, 10**6, 100))

    def remove(_: int) -> float:
        first = next(removable)
        ids = [f"MRN-{i:08d}" for i in range(first, first + 100)]  # patients of the generated data
        return timed(lambda: store.remove_entities(current[0], "patients", ids))

    names = iter(f"big-{k}" for k in range(10**6))
    current = ["big"]

    def rename(_: int) -> float:
        new = next(names)
        spent = timed(lambda: store.update_scenario(current[0], new_name=new))
        current[0] = new
        return spent

    def copy(_: int) -> float:
        spent = timed(lambda: store.copy_scenario(current[0], "the-copy"))
        store.delete_scenario("the-copy")  # untimed: keep the file at one large scenario
        return spent

    floor = best_of(repeat + 2, small_save)
    size = f"{n:,}"
    rows = [
        ("add 100", size, best_of(repeat + 2, add), floor, TARGETS["add 100"]),
        ("remove 100", size, best_of(repeat + 2, remove), floor, TARGETS["remove 100"]),
        ("rename", size, best_of(repeat + 2, rename), floor, TARGETS["rename"]),
        ("copy", size, best_of(repeat, copy), first_save, TARGETS["copy"]),
    ]
    # History: what 10 adds of 100 cost the file, loading the version before the last add,
    # and a diff of the two (100 entities apart), all beside loading the current version.
    before = db.stat().st_size
    for _ in range(10):
        add(0)
    growth = (db.stat().st_size - before) / before
    print(f"# history: 10 adds of 100 grew the file by {growth:.2%} (target < 5%)", file=sys.stderr)
    name = current[0]
    version = store.scenario_history(name, limit=1)["versions"][0]["version"]
    load_current = best_of(repeat, lambda _: timed_in_child("lib-load-named", str(db), name))
    rows.append(
        (
            "load previous version",
            size,
            best_of(repeat, lambda _: timed_in_child("lib-load-named", str(db), name, str(version - 1))),
            load_current,
            TARGETS["load previous version"],
        )
    )
    rows.append(
        (
            "diff of versions 100 apart",
            size,
            best_of(repeat, lambda _: timed_in_child("lib-diff", str(db), f"{name}@{version - 1}", name)),
            load_current,
            TARGETS["diff of versions 100 apart"],
        )
    )
    entities = generate(n)
    started = time.perf_counter()
    store.save_scenario(name, entities, overwrite=True)
    rows.append(("overwrite", size, time.perf_counter() - started, first_save, TARGETS["overwrite"]))
    entities.clear()
    db.unlink()
    db.with_name(db.name + ".wal").unlink(missing_ok=True)
    return rows


def _cold(db: Path, action: Callable[[], float]) -> Callable[[int], float]:
    """``action`` with nothing kept of the scenario's versions (the first call's cost)."""

    def run(_: int) -> float:
        shutil.rmtree(db.with_name(db.name + ".frames"), ignore_errors=True)
        return action()

    return run


def bench_see(n: int, folder: Path, repeat: int) -> list[tuple[str, str, float, float, float]]:
    """Seeing a scenario of ``n`` entities: its summary beside loading it, and its HTML
    report beside its summary (each in a fresh process, as a front end would); the first
    call (computed from the entities) and a later one (read from what the first kept). The
    report is measured with nothing kept, beside the summary measured so."""
    db = folder / "see.duckdb"
    ScenarioStore(db).save_scenario("bench", generate(n))
    gc.collect()
    page = str(folder / "report.html")
    load = best_of(repeat, lambda _: timed_in_child("lib-load", str(db), str(n)))
    summary = best_of(repeat, _cold(db, lambda: timed_in_child("lib-summary", str(db))))
    report = best_of(repeat, _cold(db, lambda: timed_in_child("lib-report", str(db), page)))
    timed_in_child("lib-summary", str(db))  # kept from here on
    kept_summary = best_of(repeat, lambda _: timed_in_child("lib-summary", str(db)))
    shutil.rmtree(db.with_name(db.name + ".frames"), ignore_errors=True)
    db.unlink()
    size = f"{n:,}"
    return [
        ("summary (first)", size, summary, load, TARGETS["summary"]),
        ("summary (again)", size, kept_summary, load, TARGETS["summary"]),
        ("report", size, report, summary, TARGETS["report"]),
    ]


def bench_tables(
    n: int, folder: Path, repeat: int, memory: dict[str, float] | None
) -> list[tuple[str, str, float, float, float]]:
    """Analytics formats of a scenario of ``n`` entities: Parquet beside DuckDB converting
    our NDJSON export, NDJSON beside the JSON export, load_frames beside pyarrow reading
    the Parquet files (each in a fresh process)."""
    db = folder / "tables.duckdb"
    ScenarioStore(db).save_scenario("bench", generate(n))
    gc.collect()
    ndjson, parquet = folder / "bench.ndjson", folder / "bench-parquet"
    size = f"{n:,}"

    def timed(mode: str, *args: str) -> float:
        return best_of(repeat, lambda _: timed_in_child(mode, *args))

    ndjson_export = timed("lib-export-format", str(db), str(ndjson), "ndjson")
    json_export = timed("lib-export", str(db), str(folder / "bench.json"))
    parquet_export = timed("lib-export-format", str(db), str(parquet), "parquet")
    parquet_floor = timed("floor-parquet", str(ndjson), str(folder / "floor-parquet"))
    frames = best_of(repeat, _cold(db, lambda: timed_in_child("lib-frames", str(db))))
    timed_in_child("lib-frames", str(db))  # kept from here on
    kept_frames = timed("lib-frames", str(db))
    frames_floor = timed("floor-frames", str(parquet))
    shutil.rmtree(db.with_name(db.name + ".frames"), ignore_errors=True)
    if memory is not None:
        memory["parquet export"] = measure_memory("parquet", str(db), str(folder / "mem-parquet"))["mb"]
    for leftover in (db, ndjson, folder / "bench.json"):
        leftover.unlink(missing_ok=True)
    return [
        ("parquet export", size, parquet_export, parquet_floor, TARGETS["parquet export"]),
        ("ndjson export", size, ndjson_export, json_export, TARGETS["ndjson export"]),
        ("load_frames (first)", size, frames, frames_floor, TARGETS["load_frames"]),
        ("load_frames (again)", size, kept_frames, frames_floor, TARGETS["load_frames"]),
    ]


def bytes_per_entity(entities: dict[str, list[dict[str, Any]]]) -> float:
    sizes = [len(orjson.dumps(e)) for items in entities.values() for e in items[:2000]]
    return sum(sizes) / len(sizes)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--list-scenarios", type=int, default=1000)
    parser.add_argument("--no-memory", action="store_true")
    parser.add_argument(
        "--only",
        nargs="+",
        choices=OPERATIONS,
        default=list(OPERATIONS),
        metavar="OPERATION",
        help=f"measure only these operations ({', '.join(OPERATIONS)}); default: all",
    )
    parser.add_argument(
        "--layouts",
        nargs="+",
        choices=list(LAYOUTS),
        default=list(LAYOUTS),
        metavar="LAYOUT",
        help="file layouts of the import rows: export (the export's own, row 'import'), indent2 "
        "(json.dumps(doc, indent=2)), oneline (json.dumps(doc)); default: all three",
    )
    parser.add_argument("--memory-child", nargs="+", help=argparse.SUPPRESS)
    parser.add_argument("--time-child", nargs="+", help=argparse.SUPPRESS)
    parser.add_argument("--write-layouts", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.time_child:
        print(TIMED[args.time_child[0]](args.time_child[1:]))
        return
    if args.memory_child:
        memory_child(args.memory_child[0], args.memory_child[1:])
        return
    if args.write_layouts:
        source, *targets = args.write_layouts
        write_layouts(Path(source), [(k, Path(p)) for k, p in (t.split("=", 1) for t in targets)])
        return
    only = set(args.only)
    layouts = [layout for layout in LAYOUTS if layout in args.layouts]

    results: list[tuple[str, str, float, float, float]] = []
    memory: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="healthsim-bench-") as tmp:
        folder = Path(tmp)
        for n in args.sizes:
            results += bench_size(
                n,
                folder,
                args.repeat,
                memory if not args.no_memory and n == max(args.sizes) else None,
                only,
                layouts,
            )

        if "edit" in only:
            results += bench_edits(max(args.sizes), folder, args.repeat)
        if "see" in only:
            results += bench_see(max(args.sizes), folder, args.repeat)
        if "tables" in only:
            results += bench_tables(max(args.sizes), folder, args.repeat, None if args.no_memory else memory)
        if "list" in only:
            count = args.list_scenarios
            list_db = folder / "list.duckdb"
            store = ScenarioStore(list_db)
            small = generate(100)
            for i in range(count):
                store.save_scenario(f"scenario-{i:04d}", small, tags=[f"t{i % 7}"])
            results.append(
                (
                    "list",
                    f"{count:,} scenarios",
                    best_of(args.repeat + 2, lambda _: lib_list(list_db, count)),
                    best_of(args.repeat + 2, lambda _: floor_list(list_db)),
                    TARGETS["list"],
                )
            )
        if not args.no_memory and "save" in only:
            memory["save"] = measure_memory("save", str(max(args.sizes)), str(folder))["mb"]

    print("| operation | size | library (s) | floor (s) | ratio | target |")
    print("|---|---|---:|---:|---:|---:|")
    for op, size, lib, floor, target in results:
        ratio = lib / floor
        verdict = "ok" if ratio <= target else "OVER"
        print(f"| {op} | {size} | {lib:.3f} | {floor:.3f} | {ratio:.2f}x | <= {target}x {verdict} |")
    if memory:
        print(f"\n| memory, {max(args.sizes):,} entities | MB | target |")
        print("|---|---:|---:|")
        for op in MEMORY_TARGETS_MB:  # save, the three imports, the exports
            if op in memory:
                label = "added beyond the input" if op == "save" else "peak of the process"
                verdict = "ok" if memory[op] < MEMORY_TARGETS_MB[op] else "OVER"
                print(f"| {op} ({label}) | {memory[op]:.0f} | < {MEMORY_TARGETS_MB[op]} {verdict} |")


if __name__ == "__main__":
    main()
