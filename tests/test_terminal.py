"""What a person sees in the terminal: output cut by a closed pipe, narrow terminals, progress.

The closed-pipe tests run the installed ``healthsim`` as a real subprocess (a closed pipe
is a property of processes, not of ``CliRunner``); the layout tests run the Typer app in
this process at a fixed ``COLUMNS``; the progress tests render to a Rich console of fixed
width that believes it is a terminal.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from healthsim.state import ScenarioStore

HEALTHSIM = Path(sys.executable).parent / "healthsim"
CUT = 141  # 128 + SIGPIPE: what a shell shows for `seq 1 1000000 | head -1` (docs/decisions.md)
PIPE_BUFFER = 64 * 1024


# ---------------------------------------------------------------- output cut by a closed pipe


def wide_scenario() -> dict[str, list[dict[str, Any]]]:
    """30 types of 60 fields: a summary of well over the 64 KB a pipe holds."""
    return {
        f"type_{t:02d}": [{f"field_{f:02d}": f"value {i % 7} of field {f}" for f in range(60)} for i in range(8)]
        for t in range(30)
    }


@pytest.fixture
def big_store(isolated_home: Path, db_path: Path) -> ScenarioStore:
    store = ScenarioStore(db_path)
    patients = [
        {"mrn": f"MRN-{i:05d}", "gender": "MF"[i % 2], "birth_date": "1970-01-01", "note": "x" * 200}
        for i in range(1_000)
    ]
    store.save_scenario("big", {"patients": patients}, tags=["cohort"])
    store.add_entities("big", {"encounters": [{"encounter_id": "E1", "patient_mrn": "MRN-00001"}]})
    store.save_scenario("wide", wide_scenario())
    return store


def run_cut(args: list[str], *, read_first_line: bool) -> tuple[int, bytes, bytes]:
    """``healthsim ARGS`` writing into a pipe whose reader goes away: after one line
    (``read_first_line``, as ``| head -1`` does), or before the program writes anything (a
    pipe closed at once: the first write, or the flush at exit, meets it). Returns the exit
    status, the line read and stderr."""
    read_end, write_end = os.pipe()
    if not read_first_line:
        os.close(read_end)
    proc = subprocess.Popen([str(HEALTHSIM), *args], stdin=subprocess.DEVNULL, stdout=write_end, stderr=subprocess.PIPE)
    os.close(write_end)
    first = b""
    if read_first_line:
        with os.fdopen(read_end, "rb") as reader:
            first = reader.readline()
    _, stderr = proc.communicate(timeout=120)
    return proc.returncode, first, stderr


def test_output_larger_than_a_pipe_cut_after_one_line_ends_quietly(big_store: ScenarioStore) -> None:
    """`healthsim summary NAME | head -1` exited 1 (Rich's own exit); `load --type` said
    "error: unexpected BrokenPipeError … (please report this)". Now: exit 141, nothing on
    stderr, the first line delivered."""
    for args, first in (
        (["summary", "wide"], b"name"),
        (["load", "big", "--type", "patients", "--limit", "1000"], b'{"mrn": "MRN-00000"'),
    ):
        code, line, stderr = run_cut(args, read_first_line=True)
        assert (code, stderr) == (CUT, b""), (args, code, stderr)
        assert line.startswith(first), line


@pytest.mark.slow
@pytest.mark.parametrize(
    "args",
    [
        ["list"],
        ["list", "--json"],
        ["summary", "big"],
        ["summary", "wide", "--json"],
        ["load", "big"],
        ["load", "big", "--json"],
        ["load", "big", "--type", "patients"],
        ["history", "big"],
        ["diff", "big@1", "big"],
        ["check", "big"],
        ["query", "SELECT entity_id, data FROM patients", "--limit", "1000"],
        ["info"],
        ["token", "list"],
        ["migrate", "--status"],
        ["--help"],
        ["--version"],
    ],
)
def test_every_command_ends_quietly_when_its_reader_is_gone(big_store: ScenarioStore, args: list[str]) -> None:
    """Into a pipe closed before anything is written (small output meets it at the flush
    at exit: "Exception ignored … BrokenPipeError" and exit 120, or Rich's exit 1)."""
    code, _, stderr = run_cut(args, read_first_line=False)
    assert (code, stderr) == (CUT, b""), (args, code, stderr)


@pytest.mark.slow
@pytest.mark.parametrize(
    "args",
    [
        ["load", "big", "--json"],
        ["query", "SELECT entity_id, data FROM patients", "--limit", "1000"],
        ["query", "SELECT entity_id, data FROM patients", "--limit", "1000", "--json"],
    ],
)
def test_large_outputs_cut_after_one_line(big_store: ScenarioStore, args: list[str]) -> None:
    code, line, stderr = run_cut(args, read_first_line=True)
    assert (code, stderr) == (CUT, b""), (args, code, stderr)
    assert line.strip(), line


def test_output_read_whole_exits_0(big_store: ScenarioStore) -> None:
    """The pipe handling changes nothing for a reader that reads everything."""
    done = subprocess.run([str(HEALTHSIM), "summary", "wide"], capture_output=True, timeout=120, check=False)
    assert done.returncode == 0 and done.stderr == b"" and len(done.stdout) > PIPE_BUFFER
