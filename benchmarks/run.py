"""Benchmark: the library beside the floor raw DuckDB reaches on the same data, in one run.

    python benchmarks/run.py                    # 100,000 and 1,000,000 entities
    python benchmarks/run.py --sizes 100000     # quicker
    python benchmarks/run.py --only import      # the import rows alone (three file layouts)
    python benchmarks/run.py --only import --layouts indent2 oneline
    python benchmarks/run.py --only team        # the PostgreSQL team store, on a throwaway server
    python benchmarks/run.py --only query       # a trivial query: library and MCP (issue 21)
    python benchmarks/run.py --only startup     # how long `healthsim --version` and `healthsim list` take
    python benchmarks/run.py --only fhir --sizes 100000   # FHIR Bulk export and import (issue 23)
    python benchmarks/run.py --only http        # list_scenarios over HTTP with a token vs stdio (issue 25)

Prints a Markdown table of seconds (best of --repeat runs), the ratio library/floor and
the target, and the resident memory of the largest size (save: added beyond its input;
import and export: peak of the process). See benchmarks/README.md for what each floor is.

The ``team`` group measures the PostgreSQL team store on a private server started from the
tests' helper (tests/helpers/pg_server.py, same settings: fsync off); its floors are plain
psycopg on the same server and database.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from array import array
from collections.abc import Callable, Collection, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import duckdb
import orjson
import psycopg
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).parent))
from data import generate, write_json
from healthsim.state import ScenarioStore
from healthsim.state._engines.duckdb.schema import ensure_schema
from healthsim.state.database import connect, resolve_database

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
    "check": 0.5,
    "add 100 with check='warn'": 2.0,
    "report": 2.0,
    "parquet export": 1.5,
    "ndjson export": 1.5,
    "load_frames": 1.5,
    "team save": 1.5,
    "team load": 1.5,
    "team list": 3.0,
    "team add 100": 3.0,
    "team 8 clients": 5.0,
    "upsert": 3.0,
    "load version before upserts": 1.5,
    "team upsert": 3.0,
    "team load version before upserts": 1.5,
    "fhir export": 3.0,
    "fhir import": 3.0,
    "fhir import peak memory": 1.5,
    "fhir export peak memory": 1.5,
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
OPERATIONS = (
    "save",
    "load",
    "export",
    "import",
    "list",
    "edit",
    "see",
    "check",
    "tables",
    "team",
    "upsert",
    "team-upsert",
    "query",
    "startup",
    "fhir",
    "http",
)
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


def lib_save(path: Path | str, entities: dict[str, list[dict[str, Any]]]) -> float:
    store = ScenarioStore(path)
    started = time.perf_counter()
    store.save_scenario("bench", entities)
    return time.perf_counter() - started


def lib_load(path: Path | str, expected: int) -> float:
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


def lib_list(path: Path | str, expected: int) -> float:
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

    save N FOLDER: memory a save adds beyond its input (peak during the save - before it),
        and the process's peak; FOLDER may be a postgresql:// URL (the team store's save).
    import FILE DB / export DB FILE: the process's peak resident memory.
    """
    if mode == "save":
        entities = generate(int(args[0]))
        gc.collect()
        before = _rss_kb("VmRSS")
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM (peak RSS) to now
        target = args[1] if args[1].startswith("postgresql://") else Path(args[1]) / "memory.duckdb"
        ScenarioStore(target).save_scenario("bench", entities)
        peak = _rss_kb("VmHWM")
        print(json.dumps({"mb": (peak - before) / 1024, "before_mb": before / 1024, "peak_mb": peak / 1024}))
    elif mode == "import":
        ScenarioStore(args[1]).import_scenario_from_json(args[0], name="memory")
        print(json.dumps({"mb": _rss_kb("VmHWM") / 1024}))
    elif mode == "export":
        ScenarioStore(args[0]).export_scenario_to_json("bench", args[1])
        print(json.dumps({"mb": _rss_kb("VmHWM") / 1024}))
    elif mode == "parquet":
        ScenarioStore(args[0]).export_scenario("bench", args[1], format="parquet")
        print(json.dumps({"mb": _rss_kb("VmHWM") / 1024}))
    elif mode == "fhir-import":
        ScenarioStore(args[1]).import_scenario(args[0], "memory", format="fhir")
        print(json.dumps({"mb": _rss_kb("VmHWM") / 1024}))
    elif mode == "fhir-export":
        ScenarioStore(args[0]).export_scenario("bench", args[1], format="fhir")
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


def floor_summary(path: Path) -> float:
    """A lower bound of an exact summary that learns the keys first, in raw DuckDB: the
    least work its per-field statistics need, and less than a summary does. One pass for
    the top-level keys of every entity, then per type one parse of every entity into its
    top-level fields and one query of count, min, max and exact distinct count per field,
    two types at once on two cursors (as the library runs them). No field one level into
    objects, no date check, median, top value, healthcare fact or sample. (Right after a
    save the library reads every entity once instead: the save counted the keys.)"""
    started = time.perf_counter()
    con = duckdb.connect(str(path), read_only=True)
    keys: dict[str, list[str]] = {}
    for t, k in con.execute(
        "SELECT DISTINCT entity_type, k FROM (SELECT entity_type, unnest(json_keys(entity_data)) AS k "
        "FROM scenario_entities)"
    ).fetchall():
        keys.setdefault(t, []).append(k)

    def measure(entity_type: str) -> None:
        cursor = con.cursor()
        spec = json.dumps(dict.fromkeys(keys[entity_type], "JSON")).replace("'", "''")
        fields = [f'r."{k}"' for k in keys[entity_type]]
        measures = ", ".join(f"count({f}), min({f}), max({f}), count(DISTINCT {f})" for f in fields)
        cursor.execute(
            f"SELECT {measures} FROM (SELECT from_json(entity_data, '{spec}') AS r FROM scenario_entities "
            f"WHERE entity_type = '{entity_type}')"
        ).fetchall()
        cursor.close()

    with ThreadPoolExecutor(2) as pool:
        list(pool.map(measure, keys))
    con.close()
    return time.perf_counter() - started


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
    "lib-check": lambda a: lib_check(Path(a[0])),
    "floor-check": lambda a: floor_check(Path(a[0])),
    "floor-summary": lambda a: floor_summary(Path(a[0])),
    "lib-report": lambda a: lib_report(Path(a[0]), Path(a[1])),
    "lib-load-named": lambda a: lib_load_named(Path(a[0]), a[1], a[2] if len(a) > 2 else ""),
    "lib-load-version": lambda a: lib_load_version(a[0], a[1], a[2], int(a[3])),
    "lib-diff": lambda a: lib_diff(Path(a[0]), a[1], a[2]),
    "lib-load": lambda a: lib_load(Path(a[0]), int(a[1])),
    "floor-load": lambda a: floor_load(Path(a[0])),
    "lib-export": lambda a: lib_export(Path(a[0]), Path(a[1])),
    "floor-export": lambda a: floor_export(Path(a[0]), Path(a[1])),
    "lib-import": lambda a: lib_import(Path(a[0]), fresh_db(Path(a[1]), "import"), int(a[2])),
    "floor-import": lambda a: floor_import(Path(a[0]), fresh_db(Path(a[1]), "floor-import")),
    "team-lib-load": lambda a: lib_load(a[0], int(a[1])),
    "team-floor-load": lambda a: team_floor_load(a[0], int(a[1])),
    "lib-import-fhir": lambda a: lib_import_fhir(Path(a[0]), fresh_db(Path(a[1]), "fhir-import"), int(a[2])),
}


def lib_import_fhir(path: Path, db: Path, expected: int) -> float:
    store = ScenarioStore(db)
    started = time.perf_counter()
    sid = store.import_scenario(path, "imported", format="fhir")
    elapsed = time.perf_counter() - started
    with store.open_scenario(sid) as reader:
        assert sum(reader.counts.values()) == expected
    return elapsed


def bench_fhir(
    n: int, folder: Path, repeat: int, memory: dict[str, float] | None
) -> list[tuple[str, str, float, float, float]]:
    """FHIR R4 (issue 23) on ``n`` entities of the benchmark's cohort mix: the Bulk export
    beside our NDJSON export, the import of that export beside our JSON import of the same
    entities, and the peak memory of both beside the JSON import's (each in a fresh process)."""
    db = folder / "fhir.duckdb"
    ScenarioStore(db).save_scenario("bench", generate(n))
    gc.collect()
    size = f"{n:,}"

    def timed(mode: str, *args: str) -> float:
        return best_of(repeat, lambda _: timed_in_child(mode, *args))

    bulk, ndjson, exported = folder / "bench-fhir", folder / "bench.ndjson", folder / "bench.json"
    fhir_export = timed("lib-export-format", str(db), str(bulk), "fhir")
    ndjson_export = timed("lib-export-format", str(db), str(ndjson), "ndjson")
    timed_in_child("lib-export", str(db), str(exported))  # untimed: the JSON the floor imports
    fhir_import = timed("lib-import-fhir", str(bulk), str(folder), str(n))
    json_import = timed("lib-import", str(exported), str(folder), str(n))
    rows = [
        ("fhir export", size, fhir_export, ndjson_export, TARGETS["fhir export"]),
        ("fhir import", size, fhir_import, json_import, TARGETS["fhir import"]),
    ]
    if memory is not None:
        json_mb = measure_memory("import", str(exported), str(fresh_db(folder, "mem-json")))["mb"]
        import_mb = measure_memory("fhir-import", str(bulk), str(fresh_db(folder, "mem-fhir")))["mb"]
        export_mb = measure_memory("fhir-export", str(db), str(folder / "mem-fhir-export"))["mb"]
        rows.append(("fhir import peak memory", f"{size} (MB)", import_mb, json_mb, TARGETS["fhir import peak memory"]))
        rows.append(("fhir export peak memory", f"{size} (MB)", export_mb, json_mb, TARGETS["fhir export peak memory"]))
    shutil.rmtree(bulk, ignore_errors=True)
    for leftover in (db, ndjson, exported, *folder.glob("*import*.duckdb"), *folder.glob("mem-*")):
        if leftover.is_dir():
            shutil.rmtree(leftover, ignore_errors=True)
        else:
            leftover.unlink(missing_ok=True)
    return rows


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


def fresh_batch(small: dict[str, list[dict[str, Any]]], k: int) -> dict[str, list[dict[str, Any]]]:
    """``small`` with fresh ids (``ADD-k-i``) for the types that have ids, and ``"batch": k``."""
    fresh = {"patients": "patient_id", "encounters": "encounter_id", "claims": "claim_id"}
    return {
        t: [{**e, **({fresh[t]: f"ADD-{k}-{i}"} if t in fresh else {}), "batch": k} for i, e in enumerate(v)]
        for t, v in small.items()
    }


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
        batch = fresh_batch(small, next(counter))
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


def id_entities(count: int) -> dict[str, list[dict[str, Any]]]:
    """``count`` entities of the benchmark data that have ids of their own (its patients,
    encounters and claims; the last type trimmed to make the count exact)."""
    data = generate(2 * count + 100)  # about half of the generated entities have ids
    kept = {t: data[t] for t in ("patients", "encounters", "claims")}
    extra = sum(map(len, kept.values())) - count
    assert extra >= 0, extra
    del kept["claims"][len(kept["claims"]) - extra :]
    return kept


def lib_load_version(location: str, name: str, version: str, expected: int) -> float:
    """Load a scenario or one of its versions ("" for the current one) from a file or URL."""
    store = ScenarioStore(location)
    started = time.perf_counter()
    loaded = store.load_scenario(name, int(version) if version else None)
    elapsed = time.perf_counter() - started
    assert loaded["entity_count"] == expected, loaded["entity_count"]
    return elapsed


def bench_upserts(
    count: int, repeat: int, new_store: Callable[[], str], prefix: str = ""
) -> list[tuple[str, str, float, float, float]]:
    """An add that replaces ``count`` entities in place, in a scenario of ``count``
    entities that all have ids, beside an add that appends ``count`` new ones to a copy of
    that scenario (``upsert=False``: no lookup at all); then loading the version before the
    upserts beside loading the current one (both ``count`` entities, fresh processes).

    ``new_store`` makes an empty store (a DuckDB file or a team database) for each repeat;
    the two adds take turns at going first.
    """
    entities = id_entities(count)
    changed = {t: [{**e, "batch": 2} for e in v] for t, v in entities.items()}
    fresh = {t: [{**e, f"{t[:-1]}_id": f"NEW-{i}", "batch": 2} for i, e in enumerate(v)] for t, v in entities.items()}
    upserts: list[float] = []
    appends: list[float] = []
    location = ""
    for i in range(repeat):
        location = new_store()
        store = ScenarioStore(location)
        store.save_scenario("upserted", entities)
        store.save_scenario("appended", entities)

        def upsert(store: ScenarioStore = store) -> float:
            started = time.perf_counter()
            result = store.add_entities("upserted", changed)
            spent = time.perf_counter() - started
            assert sum(result["updated"].values()) == count and not result["added"], result
            return spent

        def append(store: ScenarioStore = store) -> float:
            started = time.perf_counter()
            result = store.add_entities("appended", fresh, upsert=False)
            spent = time.perf_counter() - started
            assert sum(result["added"].values()) == count, result
            return spent

        for times, run in [(upserts, upsert), (appends, append)][:: 1 if i % 2 == 0 else -1]:
            gc.collect()
            times.append(run())
    size = f"{count:,} of {count:,}"
    print(f"# {prefix}upsert: {upserts}; append: {appends}", file=sys.stderr)
    old = best_of(repeat, lambda _: timed_in_child("lib-load-version", location, "upserted", "1", str(count)))
    current = best_of(repeat, lambda _: timed_in_child("lib-load-version", location, "upserted", "", str(count)))
    started = time.perf_counter()
    ScenarioStore(location).delete_scenario("upserted")
    print(f"# {prefix}delete after the upserts: {time.perf_counter() - started:.3f} s", file=sys.stderr)
    return [
        (f"{prefix}upsert", size, min(upserts), min(appends), TARGETS[f"{prefix}upsert"]),
        (
            f"{prefix}load version before upserts",
            f"{count:,}",
            old,
            current,
            TARGETS[f"{prefix}load version before upserts"],
        ),
    ]


def _cold(db: Path, action: Callable[[], float], *, saved: bool = True) -> Callable[[int], float]:
    """``action`` with nothing kept of the scenario's versions but what the save kept
    (the first call's cost right after a save); with ``saved=False``, not even that (a
    scenario written by the earlier release, or copied from another store)."""

    def run(_: int) -> float:
        kept = db.with_name(db.name + ".frames")
        if not saved:
            shutil.rmtree(kept, ignore_errors=True)
        for path in sorted(kept.glob("*/*/*")) if kept.is_dir() else []:
            if path.name != "keys.json":
                path.unlink()
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
    exact_floor = best_of(repeat, lambda _: timed_in_child("floor-summary", str(db)))
    report = best_of(repeat, _cold(db, lambda: timed_in_child("lib-report", str(db), page)))
    timed_in_child("lib-summary", str(db))  # kept from here on
    kept_summary = best_of(repeat, lambda _: timed_in_child("lib-summary", str(db)))
    # Last: it removes what the save kept.
    unsaved = best_of(repeat, _cold(db, lambda: timed_in_child("lib-summary", str(db)), saved=False))
    shutil.rmtree(db.with_name(db.name + ".frames"), ignore_errors=True)
    db.unlink()
    size = f"{n:,}"
    return [
        ("summary (first)", size, summary, load, TARGETS["summary"]),
        ("summary (first, keys not counted by a save)", size, unsaved, load, TARGETS["summary"]),
        ("two-parse summary's lower bound (raw DuckDB)", size, exact_floor, load, TARGETS["summary"]),
        ("summary (again)", size, kept_summary, load, TARGETS["summary"]),
        ("report", size, report, summary, TARGETS["report"]),
    ]


def lib_check(path: Path) -> float:
    """check_scenario of the scenario "bench" (its answer must be clean: the data is)."""
    store = ScenarioStore(path)
    started = time.perf_counter()
    answer = store.check_scenario("bench")
    spent = time.perf_counter() - started
    assert answer["ok"], answer["problems"][:3]
    return spent


def floor_check(path: Path) -> float:
    """A lower bound of the check in raw DuckDB: every entity parsed once, reading the
    fields the check of its type reads (the kind and the text of each: ``json_type`` and
    ``json_extract_string`` of the same pointers, as the library does), and nothing
    computed of them: no rule, no id table of a referenced type, no grouping."""
    from healthsim.state.checks.plan import plan_type

    started = time.perf_counter()
    con = duckdb.connect(str(path), read_only=True)
    for entity_type, keys in con.execute(
        "SELECT entity_type, list_distinct(flatten(list(json_keys(entity_data)))) FROM "
        "(SELECT * FROM scenario_entities LIMIT 100000) GROUP BY ALL"
    ).fetchall():
        plan = plan_type(entity_type, keys)
        for name in [*plan.dates, *plan.numbers, *plan.genders, *plan.references, *plan.own_ids]:
            plan.column(name)
        for names in [*plan.codes.values(), *plan.identifiers.values()]:
            for name in names:
                plan.column(name)
        pointers = ", ".join("'/" + "/".join(p) + "'" for p in plan.paths)
        con.execute(
            f"SELECT count(y[1]), count(s[1]) FROM (SELECT json_type(entity_data, [{pointers}]) AS y, "
            f"json_extract_string(entity_data, [{pointers}]) AS s FROM scenario_entities "
            f"WHERE entity_type = '{entity_type}')"
        ).fetchall()
    con.close()
    return time.perf_counter() - started


def bench_check(n: int, folder: Path, repeat: int) -> list[tuple[str, str, float, float, float]]:
    """Checking a scenario of ``n`` entities beside loading it (each in a fresh process);
    an add of 100 entities with ``check="warn"`` beside the same add without (alternated,
    fresh ids each time)."""
    db = folder / "check.duckdb"
    store = ScenarioStore(db)
    store.save_scenario("bench", generate(n))
    gc.collect()
    load = best_of(repeat, lambda _: timed_in_child("lib-load", str(db), str(n)))
    # Cold each time: a check is kept beside the database for its version and day, so a second
    # run read the first's answer (0.05 s at 1,000,000) and the row measured no check at all.
    checked = best_of(repeat, _cold(db, lambda: timed_in_child("lib-check", str(db))))
    parsed = best_of(repeat, lambda _: timed_in_child("floor-check", str(db)))
    small = generate(100)
    counter = iter(range(10**6))

    def add(check: str | None) -> Callable[[int], float]:
        def run(_: int) -> float:
            batch = fresh_batch(small, next(counter))
            for patient in batch["patients"]:  # (an MRN of its own too: a shared one is an error)
                patient["mrn"] = patient["patient_id"]
            started = time.perf_counter()
            result = store.add_entities("bench", batch, check=check)
            spent = time.perf_counter() - started
            assert check is None or result["check"]["ok"], result["check"]["problems"][:3]
            return spent

        return run

    plain, warned = [], []
    for _ in range(repeat + 2):
        plain.append(add(None)(0))
        warned.append(add("warn")(0))
    db.unlink()
    db.with_name(db.name + ".wal").unlink(missing_ok=True)
    size = f"{n:,}"
    return [
        ("check", size, checked, load, TARGETS["check"]),
        ("check's lower bound: one parse of its fields (raw DuckDB)", size, parsed, load, TARGETS["check"]),
        ("add 100 with check='warn'", size, min(warned), min(plain), TARGETS["add 100 with check='warn'"]),
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


# ------------------------------------------------------------------------- team store (PostgreSQL)

#: The "8 clients" row: this many processes, each saving this many scenarios of this many entities.
TEAM_CLIENTS, TEAM_CLIENT_SAVES, TEAM_CLIENT_SIZE = 8, 25, 1000
#: The columns the library's save sends (``id`` comes from the table's sequence).
TEAM_COLUMNS = "scenario_id, entity_type, entity_id, entity_data, created_at"
#: Memory rows of the team group: (key, label); the issue sets no target for them.
TEAM_MEMORY_ROWS = (("team save", "added beyond the input"), ("team save peak", "peak of the process"))
# COPY's text format escapes these in values (it writes no other escape on output).
_COPY_UNESCAPE = {
    b"\\\\": b"\\",
    b"\\n": b"\n",
    b"\\r": b"\r",
    b"\\t": b"\t",
    b"\\b": b"\b",
    b"\\f": b"\f",
    b"\\v": b"\v",
}
_COPY_ESCAPE = re.compile(rb"\\[\\nrtbfv]")


def start_pg_server() -> Any:
    """The tests' throwaway PostgreSQL server (tests/helpers/pg_server.py, its settings:
    fsync, synchronous_commit and full_page_writes off), started; the caller stops it."""
    tests = str(Path(__file__).resolve().parent.parent / "tests")
    if tests not in sys.path:
        sys.path.insert(0, tests)
    from helpers.pg_server import PgServer

    return PgServer().start()


def _dbname(url: str) -> str:
    return url.rsplit("/", 1)[1]


def team_database(server: Any) -> str:
    """A new database owned by the tests' plain role, with the library's schema (made by
    opening it read-write with ``create=True``, as a save does): its URL."""
    url = server.new_database()
    with connect(resolve_database(url), create=True):
        pass
    return url


def team_settle(server: Any, url: str) -> None:
    """Untimed, before every timed run: VACUUM ANALYZE what earlier writes left (autovacuum
    then has nothing to start during the run) and CHECKPOINT (no dirty pages pending)."""
    with server.admin_connect(_dbname(url)) as admin:
        admin.execute("VACUUM ANALYZE")
        admin.execute("CHECKPOINT")


def team_copy_text(entities: dict[str, list[dict[str, Any]]]) -> bytes:
    """What the save floor sends, made before its timing starts: one COPY text line per
    entity with the library's five columns (a scenario id; the type; a random entity id;
    the entity's orjson text with COPY's backslash escaped; a timestamp), in saved order."""
    sid = str(uuid.uuid4()).encode()
    created = b"2026-01-01 00:00:00"
    dumps, uuid4 = orjson.dumps, uuid.uuid4
    lines = []
    for entity_type, items in entities.items():
        prefix = sid + b"\t" + entity_type.encode() + b"\t"
        for entity in items:
            data = dumps(entity)  # never a raw tab or newline: orjson escapes control characters
            if b"\\" in data:
                data = data.replace(b"\\", b"\\\\")
            lines.append(b"%s%s\t%s\t%s\n" % (prefix, str(uuid4()).encode(), data, created))
    return b"".join(lines)


def team_floor_save(url: str, text: bytes, expected: int) -> float:
    """psycopg: connect, one ``COPY floor_entities (…) FROM STDIN`` of the prepared text, commit, close."""
    started = time.perf_counter()
    with psycopg.connect(url) as con:  # not autocommit: the COPY is one transaction
        with con.cursor() as cur:
            with cur.copy(f"COPY floor_entities ({TEAM_COLUMNS}) FROM STDIN") as copy:
                copy.write(text)
            written = cur.rowcount
        con.commit()
    elapsed = time.perf_counter() - started
    assert written == expected, (written, expected)
    return elapsed


def team_floor_load(url: str, expected: int) -> float:
    """psycopg: connect, find the scenario, ``COPY (SELECT entity_type, entity_data … ORDER BY
    id) TO STDOUT``; each line split at its tab, COPY's escapes undone, ``orjson.loads`` of
    the entity into its type's list (GC paused, as the library and the DuckDB floor do)."""
    gc.disable()
    started = time.perf_counter()
    by_type: dict[bytes, list[Any]] = {}
    loads, unescape, escaped = orjson.loads, _COPY_UNESCAPE.__getitem__, _COPY_ESCAPE.sub
    with psycopg.connect(url, autocommit=True) as con:
        row = con.execute("SELECT scenario_id FROM scenarios WHERE name = 'bench'").fetchone()
        assert row is not None
        query = (
            "COPY (SELECT entity_type, entity_data FROM scenario_entities "
            f"WHERE scenario_id = '{row[0]}' ORDER BY id) TO STDOUT"
        )
        with con.cursor() as cur, cur.copy(query) as copy:
            for block in copy:  # libpq hands over COPY output one whole line (row) at a time
                line = bytes(block)
                tab = line.index(b"\t")
                data = line[tab + 1 : -1]
                if b"\\" in data:
                    data = escaped(lambda m: unescape(m.group()), data)
                entity_type = line[:tab]
                items = by_type.get(entity_type)
                if items is None:
                    items = by_type[entity_type] = []
                items.append(loads(data))
    entities = {t.decode(): items for t, items in by_type.items()}
    elapsed = time.perf_counter() - started
    gc.enable()
    assert sum(map(len, entities.values())) == expected
    return elapsed


def team_floor_list(url: str, expected: int) -> float:
    """psycopg: connect, one ``SELECT … FROM scenarios ORDER BY updated_at DESC LIMIT n``, fetch, close."""
    started = time.perf_counter()
    with psycopg.connect(url, autocommit=True) as con:
        rows = con.execute(
            "SELECT scenario_id, name, description, created_at, updated_at, metadata FROM scenarios "
            "ORDER BY updated_at DESC LIMIT %s",
            [expected],
        ).fetchall()
    elapsed = time.perf_counter() - started
    assert len(rows) == expected
    return elapsed


def team_clients(url: str, clients: int) -> float:
    """Seconds from starting ``clients`` processes (benchmarks/team_client.py) together to
    the last one's exit; each saves TEAM_CLIENT_SAVES scenarios of TEAM_CLIENT_SIZE entities."""
    script = str(Path(__file__).with_name("team_client.py"))
    argv = [str(TEAM_CLIENT_SAVES), str(TEAM_CLIENT_SIZE)]
    started = time.perf_counter()
    procs = [subprocess.Popen([sys.executable, script, url, f"client{k}", *argv]) for k in range(clients)]
    codes = [p.wait() for p in procs]
    elapsed = time.perf_counter() - started
    if any(codes):
        raise RuntimeError(f"a team client failed: exit codes {codes}")
    listed = ScenarioStore(url).list_scenarios(limit=1000)["total_count"]
    assert listed == clients * TEAM_CLIENT_SAVES, listed
    return elapsed


def bench_team(
    n: int, repeat: int, list_count: int, memory: dict[str, float] | None
) -> list[tuple[str, str, float, float, float]]:
    """The PostgreSQL team store beside plain psycopg on the same private server.

    Save: the library and the floor (COPY of prepared text into ``floor_entities``, made
    ``LIKE scenario_entities INCLUDING ALL``) write into empty tables of one fresh database
    per repeat, taking turns at going first. Load, add 100: the last repeat's database.
    List: 1,000 small scenarios in their own database. 8 clients: a fresh database per run.
    Before each timed run the database is vacuumed and checkpointed (untimed).
    """
    server = start_pg_server()
    try:
        with server.admin_connect() as admin:
            version = admin.execute("SHOW server_version").fetchone()[0]
            settings = admin.execute(
                "SELECT string_agg(name || '=' || setting, ', ' ORDER BY name) FROM pg_settings "
                "WHERE name IN ('fsync', 'synchronous_commit', 'full_page_writes', 'shared_buffers')"
            ).fetchone()[0]
        print(f"# team: PostgreSQL {version} ({settings})", file=sys.stderr)
        size = f"{n:,}"
        rows: list[tuple[str, str, float, float, float]] = []

        # -- save of n
        entities = generate(n)
        text = team_copy_text(entities)
        print(f"# team: {n:,} entities, {len(text) / n:.0f} bytes of COPY text per entity", file=sys.stderr)
        lib_times: list[float] = []
        floor_times: list[float] = []
        big = ""
        for i in range(repeat):
            url = team_database(server)
            with psycopg.connect(url, autocommit=True) as con:
                con.execute("CREATE TABLE floor_entities (LIKE scenario_entities INCLUDING ALL)")
            runs = [
                (lib_times, lambda u=url: lib_save(u, entities)),
                (floor_times, lambda u=url: team_floor_save(u, text, n)),
            ]
            for times, run in runs if i % 2 == 0 else runs[::-1]:  # each side goes first in turn
                team_settle(server, url)
                gc.collect()
                times.append(run())
            print(
                f"# team: save {i + 1}: library {lib_times[-1]:.2f} s, floor {floor_times[-1]:.2f} s", file=sys.stderr
            )
            with psycopg.connect(url, autocommit=True) as con:
                con.execute("DROP TABLE floor_entities")
            if big:
                server.drop_database(_dbname(big))
            big = url
        rows.append(("team save", size, min(lib_times), min(floor_times), TARGETS["team save"]))
        entities.clear()
        text = b""  # free the prepared COPY text
        gc.collect()
        if memory is not None:
            url = team_database(server)
            measured = measure_memory("save", str(n), url)
            memory["team save"], memory["team save peak"] = measured["mb"], measured["peak_mb"]
            server.drop_database(_dbname(url))

        # -- load of that scenario (fresh processes, as for DuckDB)
        team_settle(server, big)
        rows.append(
            (
                "team load",
                size,
                best_of(repeat, lambda _: timed_in_child("team-lib-load", big, str(n))),
                best_of(repeat, lambda _: timed_in_child("team-floor-load", big, str(n))),
                TARGETS["team load"],
            )
        )

        # -- add 100 to it, beside saving a new 100-entity scenario
        store = ScenarioStore(big)
        small = generate(100)
        counter = iter(range(10**6))

        def small_save(_: int) -> float:
            name = f"small-{next(counter)}"
            started = time.perf_counter()
            store.save_scenario(name, small)
            return time.perf_counter() - started

        def add(_: int) -> float:
            batch = fresh_batch(small, next(counter))
            started = time.perf_counter()
            store.add_entities("bench", batch)
            return time.perf_counter() - started

        floor = best_of(repeat + 2, small_save)
        rows.append(("team add 100", size, best_of(repeat + 2, add), floor, TARGETS["team add 100"]))
        server.drop_database(_dbname(big))

        # -- list of list_count small scenarios
        url = team_database(server)
        store = ScenarioStore(url)
        tiny = generate(3)
        for i in range(list_count):
            store.save_scenario(f"scenario-{i:04d}", tiny, tags=[f"t{i % 7}"])
        team_settle(server, url)
        rows.append(
            (
                "team list",
                f"{list_count:,} scenarios",
                best_of(repeat + 2, lambda _: lib_list(url, list_count)),
                best_of(repeat + 2, lambda _: team_floor_list(url, list_count)),
                TARGETS["team list"],
            )
        )
        server.drop_database(_dbname(url))

        # -- eight clients at once, beside one client alone (same code, same run)
        def clients_run(clients: int) -> Callable[[int], float]:
            def run(_: int) -> float:
                url = team_database(server)
                team_settle(server, url)
                spent = team_clients(url, clients)
                server.drop_database(_dbname(url))
                return spent

            return run

        one = best_of(repeat, clients_run(1))
        eight = best_of(repeat, clients_run(TEAM_CLIENTS))
        rows.append(
            (
                f"team {TEAM_CLIENTS} clients",
                f"{TEAM_CLIENTS} × {TEAM_CLIENT_SAVES} saves of {TEAM_CLIENT_SIZE:,}",
                eight,
                one,
                TARGETS[f"team {TEAM_CLIENTS} clients"],
            )
        )
        return rows
    finally:
        server.stop()


# ------------------------------------------------------------------------- query latency (issue 21)

#: Absolute targets, in seconds, of a trivial query (issue 21, point 21).
QUERY_TARGETS = {
    "query_scenarios (trivial)": 0.15,
    "MCP query (trivial, in-process client)": 0.15,
    "MCP list_scenarios (20 scenarios)": 0.1,
    "MCP list_scenarios (deleted=true: reads the file each time)": 0.1,
}


def _python_start() -> float:
    """Seconds for a bare ``python -c pass`` (the reference of issue 21)."""
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", "pass"], check=True)
    return time.perf_counter() - started


def bench_query(folder: Path, repeat: int) -> list[tuple[str, float, float, float]]:
    """A trivial ``query_scenarios`` call, and the MCP ``query`` tool over the SDK's
    in-process client, each after a first call (the sandbox's worker process is started
    once per server, not per query), beside a bare Python start: (row, seconds, python
    start, target seconds)."""
    import asyncio

    from mcp import Client

    from healthsim.mcp_server import build_server
    from healthsim.state import query_scenarios

    db = folder / "query.duckdb"
    ScenarioStore(db).save_scenario("bench", generate(100))
    python = best_of(repeat + 2, lambda _: _python_start())
    sql = "SELECT count(*) FROM patients"

    def library(_: int) -> float:
        started = time.perf_counter()
        query_scenarios(sql, db_path=db)
        return time.perf_counter() - started

    query_scenarios(sql, db_path=db)  # the first call starts the worker
    lib = best_of(repeat + 2, library)

    store = ScenarioStore(db)
    for i in range(19):  # 20 scenarios to list, as an assistant's library might hold
        store.save_scenario(f"bench-{i:02d}", generate(50), tags=["bench"])
    store.delete_scenario("bench-18")  # one in the trash
    time.sleep(2.1)  # the saves are a moment ago: a list is kept only once the file is quiet

    async def over_mcp(tool: str, arguments: dict[str, object]) -> float:
        async with Client(build_server(db), mode="legacy", cache=None) as client:
            await client.call_tool(tool, arguments)
            times = []
            for _ in range(repeat + 2):
                started = time.perf_counter()
                result = await client.call_tool(tool, arguments)
                times.append(time.perf_counter() - started)
                assert not result.is_error, result
            return min(times)

    mcp_time = asyncio.run(over_mcp("query", {"sql": sql}))
    listing = asyncio.run(over_mcp("list_scenarios", {}))
    trash = asyncio.run(over_mcp("list_scenarios", {"deleted": True}))
    return [
        ("MCP list_scenarios (20 scenarios)", listing, python, QUERY_TARGETS["MCP list_scenarios (20 scenarios)"]),
        (
            "MCP list_scenarios (deleted=true: reads the file each time)",
            trash,
            python,
            QUERY_TARGETS["MCP list_scenarios (deleted=true: reads the file each time)"],
        ),
        ("query_scenarios (trivial)", lib, python, QUERY_TARGETS["query_scenarios (trivial)"]),
        (
            "MCP query (trivial, in-process client)",
            mcp_time,
            python,
            QUERY_TARGETS["MCP query (trivial, in-process client)"],
        ),
    ]


# ------------------------------------------------------------------------- start-up (issue 21)

# Seconds a command may take beyond a bare `python -c pass` of the same interpreter, in the same run.
STARTUP_TARGETS = {"healthsim --version": 0.25, "healthsim list": 0.6}


def run_seconds(argv: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Wall time of one real subprocess, from spawn to exit (what a person waits), and the
    CPU time (user + system) it used: on a busy machine the wall time grows with the
    queue for a core, the CPU time hardly."""
    import resource

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    subprocess.run(argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, check=True)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def bench_startup(
    folder: Path, repeat: int, scenarios: int = 20
) -> list[tuple[str, float, float, float, float, float]]:
    """The installed `healthsim` as a person runs it: `--version`, and `list` of a file with
    ``scenarios`` scenarios of 100 entities, each beside `python -c pass`. The three commands
    take turns in every round (so a busy moment of the machine hits all of them alike); each
    figure is the best of the rounds. Returns (command, seconds, bare python, target, CPU
    seconds, bare python's CPU seconds)."""
    db = folder / "startup.duckdb"
    store = ScenarioStore(db)
    small = generate(100)
    for i in range(scenarios):
        store.save_scenario(f"startup-{i:02d}", small, tags=["startup"])
    home = folder / "startup-home"
    home.mkdir(exist_ok=True)
    env = {**os.environ, "HEALTHSIM_DB": str(db), "HOME": str(home), "COLUMNS": "80"}
    healthsim = str(Path(sys.executable).parent / "healthsim")
    commands = {
        "python -c pass": [sys.executable, "-c", "pass"],
        "healthsim --version": [healthsim, "--version"],
        "healthsim list": [healthsim, "list"],
    }
    times: dict[str, list[tuple[float, float]]] = {label: [] for label in commands}
    for _ in range(max(repeat, 1) + 4):
        for label, argv in commands.items():
            times[label].append(run_seconds(argv, env))
    bare = times.pop("python -c pass")
    bare_wall, bare_cpu = min(w for w, _ in bare), min(c for _, c in bare)
    return [
        (label, min(w for w, _ in t), bare_wall, STARTUP_TARGETS[label], min(c for _, c in t), bare_cpu)
        for label, t in times.items()
    ]


def print_startup(rows: list[tuple[str, float, float, float, float, float]]) -> None:
    print("\n| command | seconds | `python -c pass` (s) | beyond it (s) | target | CPU s (beyond python) |")
    print("|---|---:|---:|---:|---:|---:|")
    for label, seconds, bare, target, cpu, bare_cpu in rows:
        verdict = "ok" if seconds - bare <= target else "OVER"
        print(
            f"| `{label}` | {seconds:.3f} | {bare:.3f} | +{seconds - bare:.3f} | <= +{target} {verdict} "
            f"| {cpu:.3f} (+{cpu - bare_cpu:.3f}) |"
        )
    print(
        f"(load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores: wall times grow with it, CPU times hardly)"
    )


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
        "--upserts", type=int, default=40_000, help="entities replaced in place by the upsert rows (default 40,000)"
    )
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
    startup: list[tuple[str, float, float, float, float, float]] = []
    memory: dict[str, float] = {}
    latency: list[tuple[str, float, float, float]] = []
    http_rows: list[tuple[str, float, float, float]] = []
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
        if "check" in only:
            results += bench_check(max(args.sizes), folder, args.repeat)
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
        if "upsert" in only:
            names = iter(range(10**6))
            results += bench_upserts(args.upserts, args.repeat, lambda: str(folder / f"upsert-{next(names)}.duckdb"))
        if "team-upsert" in only:
            server = start_pg_server()
            try:
                results += bench_upserts(args.upserts, args.repeat, lambda: team_database(server), "team ")
            finally:
                server.stop()
        if "query" in only:
            latency = bench_query(folder, args.repeat)
        if "team" in only:
            results += bench_team(max(args.sizes), args.repeat, args.list_scenarios, None if args.no_memory else memory)
        if "startup" in only:
            startup = bench_startup(folder, args.repeat)
        if "http" in only:  # issue 25: DuckDB, and the team store on a throwaway server
            from http_bench import bench_http

            server = start_pg_server()
            try:
                http_rows = bench_http(folder, args.repeat, team_database(server))
            finally:
                server.stop()
        if "fhir" in only:
            results += bench_fhir(max(args.sizes), folder, args.repeat, None if args.no_memory else memory)
        if not args.no_memory and "save" in only:
            memory["save"] = measure_memory("save", str(max(args.sizes)), str(folder))["mb"]

    if results or not (startup or http_rows):
        print("| operation | size | library (s) | floor (s) | ratio | target |")
        print("|---|---|---:|---:|---:|---:|")
    for op, size, lib, floor, target in results:
        ratio = lib / floor
        verdict = "ok" if ratio <= target else "OVER"
        print(f"| {op} | {size} | {lib:.3f} | {floor:.3f} | {ratio:.2f}x | <= {target}x {verdict} |")
    if latency:
        print("\n| call (best of runs after the first) | s | bare `python -c pass` (s) | target |")
        print("|---|---:|---:|---:|")
        for op, seconds, python, target in latency:
            verdict = "ok" if seconds <= target else "OVER"
            print(f"| {op} | {seconds:.3f} | {python:.3f} | <= {target} s {verdict} |")
    if memory:
        print(f"\n| memory, {max(args.sizes):,} entities | MB | target |")
        print("|---|---:|---:|")
        for op in MEMORY_TARGETS_MB:  # save, the three imports, the exports
            if op in memory:
                label = "added beyond the input" if op == "save" else "peak of the process"
                verdict = "ok" if memory[op] < MEMORY_TARGETS_MB[op] else "OVER"
                print(f"| {op} ({label}) | {memory[op]:.0f} | < {MEMORY_TARGETS_MB[op]} {verdict} |")
        for op, label in TEAM_MEMORY_ROWS:  # the team store's save: no target set
            if op in memory:
                print(f"| {op.removesuffix(' peak')} ({label}) | {memory[op]:.0f} | none set |")
    if startup:
        print_startup(startup)
    if http_rows:
        from http_bench import print_http

        print_http(http_rows)


if __name__ == "__main__":
    main()
