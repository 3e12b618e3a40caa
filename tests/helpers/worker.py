"""A separate process that writes scenarios, for the crash and concurrency tests.

python worker.py overwrite DB NAME VERSION SIZE   save version VERSION of NAME (SIZE entities)
python worker.py many DB PREFIX COUNT             save COUNT small scenarios PREFIX-0..
python worker.py add DB NAME PREFIX BATCHES SIZE  add BATCHES batches of SIZE patients PREFIX-b-i to NAME

With HEALTHSIM_TEST_HOLD_AFTER_SAVE set, ``overwrite`` waits that many seconds after it said ``saved``,
so that a test can kill it after its commit, before it exits.
"""

from __future__ import annotations

import os
import sys
import time

from healthsim.state import ScenarioStore, bulk

if os.environ.get("HEALTHSIM_TEST_CHUNK_ROWS"):  # tests use it to force the staged path
    bulk.CHUNK_ROWS = int(os.environ["HEALTHSIM_TEST_CHUNK_ROWS"])


def version_entities(version: int, size: int) -> dict[str, list[dict[str, object]]]:
    """Version-stamped entities: every row says which save wrote it."""
    return {
        "patients": [
            {"patient_id": f"MRN-{i}", "version": version, "name": {"given": "A", "family": f"F{i}"}}
            for i in range(size)
        ],
        "encounters": [{"encounter_id": f"E-{i}", "version": version} for i in range(size // 2)],
    }


def main(argv: list[str]) -> None:
    command, db = argv[0], argv[1]
    store = ScenarioStore(db)
    if command == "overwrite":
        name, version, size = argv[2], int(argv[3]), int(argv[4])
        entities = version_entities(version, size)
        print("saving", flush=True)
        store.save_scenario(name, entities, description=f"v{version}", overwrite=True)
        print("saved", flush=True)
        time.sleep(float(os.environ.get("HEALTHSIM_TEST_HOLD_AFTER_SAVE", "0")))
    elif command == "many":
        prefix, count = argv[2], int(argv[3])
        for i in range(count):
            store.save_scenario(
                f"{prefix}-{i}", {"patients": [{"patient_id": f"{prefix}-{i}-{j}"} for j in range(200)]}, tags=[prefix]
            )
        print("done", flush=True)
    elif command == "add":
        name, prefix, batches, size = argv[2], argv[3], int(argv[4]), int(argv[5])
        print("adding", flush=True)
        for b in range(batches):
            store.add_entities(
                name, {"patients": [{"patient_id": f"{prefix}-{b}-{i}", "batch": b} for i in range(size)]}
            )
        print("done", flush=True)
    else:
        raise SystemExit(f"unknown command {command!r}")


if __name__ == "__main__":
    main(sys.argv[1:])
