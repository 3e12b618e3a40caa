"""Benchmark: the library beside the floor raw DuckDB reaches on the same data, in one run.

    python benchmarks/run.py                    # 100,000 and 1,000,000 entities
    python benchmarks/run.py --sizes 100000     # quicker

Prints a Markdown table of seconds (best of --repeat runs), the ratio library/floor and
the target, and the resident memory a 1,000,000-entity save adds beyond its input. See
benchmarks/README.md for what each floor is.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import json
import subprocess
import sys
import tempfile
import time
import uuid
from array import array
from collections.abc import Callable
from pathlib import Path
from typing import Any

import duckdb
import orjson
import pyarrow as pa

sys.path.insert(0, str(Path(__file__).parent))
from data import generate  # noqa: E402

from healthsim.state import ScenarioStore  # noqa: E402
from healthsim.state.schema import ensure_schema  # noqa: E402

TARGETS = {"save": 1.5, "load": 1.5, "list": 3.0}
MEMORY_TARGET_MB = 1536


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
    column = con.sql(
        "SELECT entity_data FROM scenario_entities WHERE scenario_id = $sid", params={"sid": sid}
    ).to_arrow_table().column(0)
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
    rows = con.execute(
        "SELECT scenario_id, entity_type, count(*) FROM scenario_entities GROUP BY ALL"
    ).fetchall()
    con.close()
    elapsed = time.perf_counter() - started
    assert rows
    return elapsed


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


def memory_child(n: int, folder: str) -> None:
    """Run in a subprocess: resident memory a save adds beyond its input (peak - before)."""
    entities = generate(n)
    gc.collect()
    before = _rss_kb("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM (peak RSS) to now
    store = ScenarioStore(Path(folder) / "memory.duckdb")
    store.save_scenario("bench", entities)
    peak = _rss_kb("VmHWM")
    print(json.dumps({"added_mb": (peak - before) / 1024, "input_rss_mb": before / 1024}))


def measure_memory(n: int, folder: Path) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, __file__, "--memory-child", str(n), "--folder", str(folder)],
        check=True, capture_output=True, text=True,
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


# ------------------------------------------------------------------------- main


def bytes_per_entity(entities: dict[str, list[dict[str, Any]]]) -> float:
    sizes = [len(orjson.dumps(e)) for items in entities.values() for e in items[:2000]]
    return sum(sizes) / len(sizes)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--list-scenarios", type=int, default=1000)
    parser.add_argument("--no-memory", action="store_true")
    parser.add_argument("--memory-child", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--folder", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_child:
        memory_child(args.memory_child, args.folder)
        return

    results: list[tuple[str, str, float, float, float]] = []
    with tempfile.TemporaryDirectory(prefix="healthsim-bench-") as tmp:
        folder = Path(tmp)
        for n in args.sizes:
            entities = generate(n)
            print(f"# {n:,} entities, {bytes_per_entity(entities):.0f} bytes of JSON per entity", file=sys.stderr)
            repeat = args.repeat if n <= 200_000 else max(1, args.repeat - 1)
            lib_paths: list[Path] = []
            floor_paths: list[Path] = []

            def run_lib_save(_: int) -> float:
                lib_paths.append(folder / f"lib-{uuid.uuid4().hex[:8]}.duckdb")
                return lib_save(lib_paths[-1], entities)

            def run_floor_save(_: int) -> float:
                floor_paths.append(fresh_db(folder, "floor"))
                return floor_save(floor_paths[-1], entities)

            results.append(("save", f"{n:,}", best_of(repeat, run_lib_save), best_of(repeat, run_floor_save), TARGETS["save"]))
            results.append((
                "load", f"{n:,}",
                best_of(repeat, lambda _: lib_load(lib_paths[0], n)),
                best_of(repeat, lambda _: floor_load(floor_paths[0])),
                TARGETS["load"],
            ))
            for path in lib_paths + floor_paths:
                path.unlink(missing_ok=True)
            del entities
            gc.collect()

        count = args.list_scenarios
        list_db = folder / "list.duckdb"
        store = ScenarioStore(list_db)
        small = generate(100)
        for i in range(count):
            store.save_scenario(f"scenario-{i:04d}", small, tags=[f"t{i % 7}"])
        results.append((
            "list", f"{count:,} scenarios",
            best_of(args.repeat + 2, lambda _: lib_list(list_db, count)),
            best_of(args.repeat + 2, lambda _: floor_list(list_db)),
            TARGETS["list"],
        ))
        memory = None if args.no_memory else measure_memory(max(args.sizes), folder)

    print("| operation | size | library (s) | floor (s) | ratio | target |")
    print("|---|---|---:|---:|---:|---:|")
    for op, size, lib, floor, target in results:
        ratio = lib / floor
        verdict = "ok" if ratio <= target else "OVER"
        print(f"| {op} | {size} | {lib:.3f} | {floor:.3f} | {ratio:.2f}x | <= {target}x {verdict} |")
    if memory is not None:
        verdict = "ok" if memory["added_mb"] <= MEMORY_TARGET_MB else "OVER"
        print(
            f"\nsave of {max(args.sizes):,} entities adds {memory['added_mb']:.0f} MB resident memory beyond its "
            f"input ({memory['input_rss_mb']:.0f} MB before); target < {MEMORY_TARGET_MB} MB: {verdict}"
        )


if __name__ == "__main__":
    main()
