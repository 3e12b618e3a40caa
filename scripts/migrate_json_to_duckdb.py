#!/usr/bin/env python3
"""Migrate the JSON scenarios of older HealthSim tools into the DuckDB database.

    python scripts/migrate_json_to_duckdb.py --status    # how many files, how many migrated
    python scripts/migrate_json_to_duckdb.py --dry-run   # what would happen; changes nothing
    python scripts/migrate_json_to_duckdb.py             # asks, then migrates (--yes: no question)

Reads ~/.healthsim/scenarios/*.json and ~/.healthsim/workspaces/*.json (or --source DIR),
backs every file up to ~/.healthsim/scenarios_backup/ first, never changes an original.
Exit code 0 when every file migrated (or nothing was to do), 1 when any failed or the
question was not answered yes. The same is `healthsim migrate`.
"""

from __future__ import annotations

import sys

from healthsim.migrate_cli import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
