"""The legacy migration as a command: ``scripts/migrate_json_to_duckdb.py`` and ``healthsim migrate``.

The library does the work (:mod:`healthsim.state.legacy`); this module asks before
changing anything, prints a line per file and a summary, and returns the exit code.
"""

from __future__ import annotations

import argparse
import json
import sys
from contextlib import nullcontext
from pathlib import Path
from typing import TextIO

from .progress import progress_bar
from .state import ScenarioStore, StateError
from .state.legacy import FileReport, discover_legacy_files, migrate_legacy_files, migration_status

__all__ = ["run", "main"]

_LABELS = {
    "migrated": "migrated",
    "already-migrated": "already migrated",
    "would-migrate": "would migrate",
    "failed": "FAILED",
}


def _describe(report: FileReport) -> str:
    counts = ", ".join(f"{t} {n}" for t, n in report.counts.items())
    label = f"{_LABELS[report.status]:<17}{report.path}"
    if report.status == "failed":
        return f"{label}: {report.message}"
    detail = f" -> {report.scenario_name!r}" + (f" ({counts})" if counts else "")
    return label + detail + (f"; {report.message}" if report.message and report.status == "migrated" else "")


def _confirm(question: str, stdin: TextIO, stdout: TextIO) -> bool:
    stdout.write(question)
    stdout.flush()
    answer = stdin.readline()  # "" at end of input: a closed stdin counts as no
    if not stdin.isatty():
        stdout.write("\n")  # a piped answer is not echoed: end the question's line
    return answer.strip().lower() in {"y", "yes"}


def run(
    store: ScenarioStore,
    *,
    sources: list[Path] | None = None,
    status: bool = False,
    dry_run: bool = False,
    yes: bool = False,
    as_json: bool = False,
    stdin: TextIO | None = None,
    stdout: TextIO | None = None,
) -> int:
    """Run the migration as a command would; returns the exit code (0 ok, 1 failed/declined)."""
    stdin = stdin or sys.stdin
    out = stdout or sys.stdout
    if status:
        counts = migration_status(store, sources)
        if as_json:
            out.write(json.dumps({**counts, "database": str(store.path)}) + "\n")
        else:
            out.write(
                f"{counts['found']} legacy file(s) found, {counts['migrated']} already in {store.path}, "
                f"{counts['pending']} to migrate\n"
            )
        return 0
    if not dry_run and not yes:
        files = discover_legacy_files(sources)
        if not files:
            out.write("No legacy JSON files found; nothing to do.\n")
            return 0
        if not _confirm(
            f"Migrate {len(files)} legacy file(s) into {store.path}? Every file is backed up first "
            "and no original is changed. [y/N] ",
            stdin,
            out,
        ):
            out.write("Not confirmed; nothing was changed. Run again with --yes to skip the question.\n")
            return 1
    total, done = len(discover_legacy_files(sources)), 0
    with progress_bar("migrating", total=total) if total else nullcontext() as update:

        def progress(report: FileReport) -> None:
            nonlocal done
            done += 1
            if update is not None:
                update(done, total)
            if not as_json:
                out.write(_describe(report) + "\n")

        report = migrate_legacy_files(store, sources, dry_run=dry_run, progress=progress)
    if as_json:
        out.write(json.dumps(report.as_dict(), ensure_ascii=False) + "\n")
        return 0 if report.ok else 1
    if not report.files:
        out.write("No legacy JSON files found; nothing to do.\n")
        return 0
    parts = [f"{len(report.files)} found"]
    for status_name in ("would-migrate", "migrated", "already-migrated", "failed"):
        if report.count(status_name):
            parts.append(f"{report.count(status_name)} {_LABELS[status_name].lower()}")
    out.write(("Dry run, nothing changed: " if dry_run else "Summary: ") + ", ".join(parts) + ".\n")
    if report.backup_dir:
        out.write(f"Backup of every file: {report.backup_dir}\n")
    return 0 if report.ok else 1


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``scripts/migrate_json_to_duckdb.py``."""
    parser = argparse.ArgumentParser(
        prog="migrate_json_to_duckdb.py",
        description="Migrate the JSON scenarios of older HealthSim tools (~/.healthsim/scenarios, "
        "~/.healthsim/workspaces) into the DuckDB database.",
    )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--status", action="store_true", help="count legacy files and migrated ones; change nothing")
    mode.add_argument("--dry-run", action="store_true", help="say what would happen; change nothing on disk")
    parser.add_argument("--yes", "-y", action="store_true", help="do not ask before migrating")
    parser.add_argument("--source", type=Path, action="append", help="folder of legacy JSON files (repeatable)")
    # str, not Path: Path collapses "postgresql://…" to "postgresql:/…" in the refusal's message.
    parser.add_argument("--db", help="database file (default: HEALTHSIM_DB or ~/.healthsim/healthsim.duckdb)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    args = parser.parse_args(argv)
    try:
        return run(
            ScenarioStore(args.db),
            sources=args.source,
            status=args.status,
            dry_run=args.dry_run,
            yes=args.yes,
            as_json=args.json,
        )
    except StateError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
