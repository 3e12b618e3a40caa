"""Where the suite keeps its temporary files, in which order the parallel workers take tests, and the
project's bytecode caches written before the programs the tests start need them.

All only change how fast the suite runs, never what a test does or asserts.
"""

from __future__ import annotations

import compileall
import os
from pathlib import Path

#: Memory-backed file system that Linux mounts for everyone.
SHM = Path("/dev/shm")
#: Room the suite wants there before it uses it: a full run writes up to ~1 GB at once (the README's
#: fresh virtual environment, megabyte exports), and a small /dev/shm (Docker's default is 64 MB) must
#: not turn into "no space left" failures.
MIN_FREE = 4 << 30
#: Set to 1 to keep the temporary files on disk (under TMPDIR or /tmp) even when /dev/shm has room.
ON_DISK_ENV = "HEALTHSIM_TEST_TMP_ON_DISK"


def memory_tempdir(environ: os._Environ[str] | dict[str, str] = os.environ, shm: Path = SHM) -> str | None:
    """``/dev/shm`` when the tests' temporary files may go there, else None (stay where they are).

    Every store operation opens and closes its DuckDB file, and a close checkpoints with fsync; on a
    disk shared with other busy processes those syncs were a large part of a test's time, in memory
    they are free. The code paths are the same (fsync is still called); only what the tests never
    check, surviving a power cut, is not exercised. Not used when TMPDIR is set (the user chose),
    when opted out, or when /dev/shm is missing, read-only, mounted noexec (the README test runs
    programs from its temporary folder) or short of :data:`MIN_FREE`.
    """
    if environ.get("TMPDIR") or environ.get(ON_DISK_ENV, "").strip() not in ("", "0"):
        return None
    try:
        stats = os.statvfs(shm)
    except OSError:
        return None
    if stats.f_flag & (os.ST_RDONLY | getattr(os, "ST_NOEXEC", 0)) or not os.access(shm, os.W_OK | os.X_OK):
        return None
    if stats.f_bavail * stats.f_frsize < MIN_FREE:
        return None
    return str(shm)


#: Tests measured to take longest (seconds on the 2-core machine), started first in this order so that
#: no worker is left with one of them at the end. A name that no longer matches costs nothing.
LONGEST = (
    "tests/test_readme.py::test_readme_from_a_fresh_clone",  # ~40-100: a new venv and pip install
    "tests/test_crash_and_concurrency.py::test_kill_during_overwrite_leaves_old_or_new",  # 2 x ~5
    "tests/test_terminal.py::",  # one xdist group: ~15 s (~7 s in the quick run) on one worker
    "tests/test_readme.py::test_readme_examples_run_in_order",  # ~20: ~40 CLI processes
    "tests/test_export_files.py::test_ctrl_c_during_an_export",
    "tests/test_export_files.py::test_kill_9_during_an_export",
    "tests/test_crash_and_concurrency.py::test_kill_during_import",
    "tests/test_summaries.py::test_one_parse_and_two_parses_give_one_summary",  # ~11
    "tests/test_mcp_budgets.py::test_every_tool_fits_its_budget_on_oversized_data",  # ~5
    "tests/test_import.py::test_provenance_stays_flat_however_often",
    "tests/test_summaries.py::test_many_types_drop_whole_types",
)


def rank(nodeid: str, *, slow: bool, hypothesis: bool) -> int:
    """Where a test goes in the order: :data:`LONGEST` first, then slow, Hypothesis, other tests."""
    for i, prefix in enumerate(LONGEST):
        if nodeid.startswith(prefix):
            return i
    return len(LONGEST) + (0 if slow else 1 if hypothesis else 2)


def compile_package(folder: Path) -> None:
    """Write the bytecode caches of every module under ``folder`` that lacks an up-to-date one.

    The suite starts a few hundred Python programs (the CLI, crash workers, MCP servers), and with
    PYTHONDONTWRITEBYTECODE set (this machine sets it; the tests leave it as it is for the programs they
    start) none of them writes a cache: each compiled again every project module it imported that the
    suite's own processes had not (measured: ~0.1 s of CPU per ``healthsim list``). Compiling the package
    once, ~1 s, when a run begins (a second run finds them up to date) spares that. What the programs run
    is the same source: a cache whose source changed is not used.
    """
    compileall.compile_dir(folder, quiet=1, workers=1)
