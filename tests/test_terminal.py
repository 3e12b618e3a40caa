"""What a person sees in the terminal: output cut by a closed pipe, narrow terminals, progress.

The closed-pipe tests run the installed ``healthsim`` as a real subprocess (a closed pipe
is a property of processes, not of ``CliRunner``); the layout tests run the Typer app in
this process at a fixed ``COLUMNS``; the progress tests render to a Rich console of fixed
width that believes it is a terminal.
"""

from __future__ import annotations

import io
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rich.cells import cell_len
from rich.console import Console
from typer.testing import CliRunner

from healthsim.cli import app
from healthsim.progress import new_progress
from healthsim.state import ScenarioStore
from healthsim.summary_view import render_summary, wrapped
from helpers.examples import examples

HEALTHSIM = Path(sys.executable).parent / "healthsim"
CUT = 141  # 128 + SIGPIPE: what a shell shows for `seq 1 1000000 | head -1` (docs/decisions.md)
PIPE_BUFFER = 64 * 1024
# One worker takes the module: the databases the tests copy (big_folder, walked_folder) are made
# once per run rather than once per worker.
pytestmark = pytest.mark.xdist_group("terminal")


# ---------------------------------------------------------------- output cut by a closed pipe


def wide_scenario() -> dict[str, list[dict[str, Any]]]:
    """10 types of 30 fields: a summary of well over the 64 KB a pipe holds (~115 KB drawn)."""
    return {
        f"type_{t:02d}": [{f"field_{f:02d}": f"value {i % 7} of field {f}" for f in range(30)} for i in range(8)]
        for t in range(10)
    }


@pytest.fixture(scope="session")
def big_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A database folder with the scenarios the closed-pipe tests print, made once (the module
    is one xdist group; each test gets a copy: saving and summarizing them took most of each
    test's time).
    Session-scoped: the suite orders tests by length across modules, which would make a
    module's fixture again each time the order comes back to the module."""
    folder = tmp_path_factory.mktemp("big") / ".healthsim"
    store = ScenarioStore(folder / "healthsim.duckdb")
    patients = [
        {"mrn": f"MRN-{i:05d}", "gender": "MF"[i % 2], "birth_date": "1970-01-01", "note": "x" * 200}
        for i in range(1_000)
    ]
    store.save_scenario("big", {"patients": patients}, tags=["cohort"])
    store.add_entities("big", {"encounters": [{"encounter_id": "E1", "patient_mrn": "MRN-00001"}]})
    store.save_scenario("wide", wide_scenario())
    # The summaries the CLI draws, kept beside the database and copied with it (3 s of each
    # test that prints one).
    for args in (["summary", "big"], ["summary", "wide"], ["summary", "wide", "--json"]):
        kept = CliRunner().invoke(app, args, env={"HEALTHSIM_DB": str(folder / "healthsim.duckdb")})
        assert kept.exit_code == 0, kept.output
    return folder


@pytest.fixture
def big_store(isolated_home: Path, db_path: Path, big_folder: Path) -> ScenarioStore:
    shutil.copytree(big_folder, db_path.parent)  # (the database and what it keeps beside it)
    return ScenarioStore(db_path)


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


# ---------------------------------------------------------------- narrow terminals

runner = CliRunner()


def at_width(width: int, *args: str) -> str:
    """``healthsim ARGS`` in this process at ``COLUMNS=width``: its stdout (exit 0, or 1 for
    a check that finds errors; stderr empty)."""
    result = runner.invoke(app, list(args), env={"COLUMNS": str(width)}, catch_exceptions=False)
    assert result.exit_code == (1 if args[0] == "check" else 0), result.stdout + result.stderr
    assert result.stderr == ""
    return result.stdout


def assert_fits(output: str, width: int) -> list[str]:
    lines = output.splitlines()
    for line in lines:
        assert cell_len(line) <= width, f"{cell_len(line)} > {width}: {line!r}\n{output}"
    return lines


HEALTHCARE = {
    "patients": [
        {
            "mrn": f"MRN-{i:03d}",
            "gender": "MFOU"[i % 4],
            "birth_date": f"19{40 + i:02d}-03-0{1 + i % 9}",
            "name": {"given_name": "Alexandra", "family_name": "Montgomery-Worthington"},
            "address": {"postal_code_of_the_primary_residence_for_billing": "62701"},
        }
        for i in range(40)
    ],
    "diagnoses": [
        {
            "patient_mrn": f"MRN-{i:03d}",
            "code": "E11.65",
            "description": "Type 2 diabetes mellitus with hyperglycemia and a rather long description",
            "diagnosed_date": "2024-02-01",
        }
        for i in range(10)
    ],
    "lab_results": [
        {
            "patient_mrn": f"MRN-{i:03d}",
            "test_name": "Hemoglobin A1c/Hemoglobin.total in Blood",
            "loinc_code": "4548-4",
            "value": 6.5 + i / 10,
            "unit": "%",
            "collected_time": f"2024-0{1 + i % 5}-15T09:00:00Z",
        }
        for i in range(12)
    ],
    "claims": [{"claim_id": f"C{i}", "patient_mrn": f"MRN-{i:03d}", "total_charge": 125.5 * i} for i in range(6)],
}


def test_summary_at_40_columns_is_a_list_with_every_fact_whole(isolated_home: Path) -> None:
    """At 40 columns the fields table cut every path to six letters ("patien…", "prese…"),
    the id to "386b3ba6-ad49-45c1-826b-16…" and wrapped values a word a line. Now every line
    fits, paths and the id are whole, and the values read as a sentence."""
    ScenarioStore().save_scenario("cohort", HEALTHCARE, tags=["diabetes"])
    scenario_id = ScenarioStore().scenario_summary("cohort")["scenario_id"]
    output = at_width(40, "summary", "cohort")
    lines = [line.strip() for line in assert_fits(output, 40)]
    assert scenario_id in lines  # whole, on a line of its own
    for path in ("mrn", "gender", "birth_date", "name.given_name", "name.family_name", "test_name", "total_charge"):
        assert path in lines, output  # a field's path: a line of its own, whole
    assert "address.postal_code_of_the_primary_re…" in lines  # too long for a line: cut, with the mark
    assert "1940-03-01 … 1979-03-04; 40 distinct" in lines
    assert "F 10 · M 10 · O 10 · U 10" in lines
    assert re.search(r"^ 50-59 +2 +3 +2 +3 +█+ *$", output, re.M), output  # ages: every count, and a bar
    assert "E11.65 10" in " ".join(lines) and "hyperglycemia" in output
    assert "4548-4 Hemoglobin A1c/Hemoglobin.total" in lines and "in Blood (%)" in lines
    assert "total_charge: count 6, total 1,882.50" in lines
    assert not any(line.endswith(("prese…", "patien…")) for line in lines)


def test_summary_wide_layout_unchanged_at_80_columns(isolated_home: Path) -> None:
    ScenarioStore().save_scenario("cohort", HEALTHCARE)
    output = at_width(80, "summary", "cohort")
    assert re.search(r"^ field +present +types +values", output, re.M), output
    assert "code    name" in output or re.search(r"code +name +unit +count", output), output


@given(width=st.integers(20, 200))
@settings(max_examples=examples(40), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_summary_fits_every_width(summarized: dict[str, Any], width: int) -> None:
    console = Console(file=io.StringIO(), width=width, force_terminal=False, soft_wrap=True, markup=False)
    render_summary(summarized, console)
    output = console.file.getvalue()  # type: ignore[attr-defined]
    lines = assert_fits(output, width)
    if width >= 38:  # the id is never cut where a line can hold it
        assert any(summarized["scenario_id"] in line for line in lines), output
    assert "total_charge" in output and "4548-4" in output


@pytest.fixture
def summarized(isolated_home: Path) -> dict[str, Any]:
    store = ScenarioStore()
    wide = dict(HEALTHCARE)
    wide["notes"] = [{"text": "日本語のテキスト " * 8, "mark": "x" * 90} for _ in range(3)]
    store.save_scenario("cohort", wide, description="A cohort " * 20, tags=["t" * 30, "diabetes"])
    store.check_scenario("cohort")
    return dict(store.summarize_scenario("cohort", samples=1, max_bytes=512 * 1024))


LONG_NAME = "cohort-copy-with-a-rather-long-name-for-the-test"


@pytest.fixture(scope="session")
def walked_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A database folder with something in every listing: versions, a deleted scenario, a
    problem the check finds, a token. Made once (the module is one xdist group), copied for
    each of the 23 tests that print it: making it took ~0.3 s of each."""
    from healthsim.state.tokens import create_token

    folder = tmp_path_factory.mktemp("walked") / ".healthsim"
    store = ScenarioStore(folder / "healthsim.duckdb")
    store.save_scenario("cohort", HEALTHCARE, tags=["diabetes", "reviewed-by-the-clinical-team"])
    store.add_entities(
        "cohort", {"encounters": [{"encounter_id": f"E{i}", "patient_mrn": "MRN-999"} for i in range(3)]}
    )
    store.copy_scenario("cohort", LONG_NAME)
    store.delete_scenario(LONG_NAME)
    create_token(folder / "healthsim.duckdb", "claude-alice", "read", tags=["diabetes"])
    return folder


@pytest.fixture
def walked(isolated_home: Path, db_path: Path, walked_folder: Path) -> ScenarioStore:
    shutil.copytree(walked_folder, db_path.parent)  # (the database and what it keeps beside it)
    return ScenarioStore(db_path)


def test_load_info_history_check_at_40_columns_keep_their_facts(walked: ScenarioStore) -> None:
    """At 40 columns `load` folded the id mid-word ("…-2bc" / "a6af71e39"), `info` the
    database path, `history` cut the changes to "+5: lab_results 2, p…" and `check` the
    types it checked to "diag…"."""
    scenario_id = walked.scenario_summary("cohort")["scenario_id"]
    loaded = [line.strip() for line in assert_fits(at_width(40, "load", "cohort"), 40)]
    assert scenario_id in loaded
    assert any(re.fullmatch(r"lab_results +12 +\{.*…", line) for line in loaded), loaded  # type whole, a line
    info = [line.strip() for line in assert_fits(at_width(40, "info"), 40)]
    path = os.environ["HEALTHSIM_DB"]
    assert "".join(info[info.index("database") + 1 : info.index("database") + 1 + len(path) // 38 + 2]).startswith(
        path
    ), info  # whole, broken after a "/" only
    history = " ".join(line.strip() for line in assert_fits(at_width(40, "history", "cohort"), 40))
    assert "71 entities; +3 encounters" in history
    assert "+68: patients 40, diagnoses 10, lab_results 12, claims 6" in history, history
    checked = " ".join(line.strip() for line in assert_fits(at_width(40, "check", "cohort"), 40))
    assert "Checked: patients 40, diagnoses 10, lab_results 12, claims 6, encounters 3" in checked, checked
    assert "e.g. E0: 'MRN-999'" in checked and "E2: 'MRN-999'" in checked  # every example, none cut


def test_query_at_40_columns_shows_records_when_a_table_would_cut(walked: ScenarioStore) -> None:
    """Eight columns at 40: headers were cut to "dd…", "ee…" and a value to "a…"."""
    sql = "SELECT 1 AS a, 'x' AS bb, 3.5 AS ccc, 'a long text value here' AS dddd, 5 AS eeeee, 6 AS ffffff"
    lines = assert_fits(at_width(40, "query", sql), 40)
    assert lines[0] == "-[ row 1 ]" + "-" * 30
    assert "dddd    a long text value here" in lines and "ffffff  6" in lines
    assert lines[-1] == "1 of 1 row(s)"
    # A result that fits stays a table; at 80 the eight columns do too.
    assert at_width(40, "query", "SELECT 1 AS a, 2 AS b").splitlines()[0].split() == ["a", "b"]
    assert at_width(80, "query", sql).splitlines()[0].split() == ["a", "bb", "ccc", "dddd", "eeeee", "ffffff"]


def test_list_at_40_columns_never_cuts_a_name(walked: ScenarioStore) -> None:
    """`list --deleted` at 40 showed "cohort-copy-with-a-rather-lo…", a name that cannot be
    typed back into `healthsim restore`; now a name too long for its column is a line of
    its own (broken after a "-" only where it is longer than the terminal)."""
    lines = assert_fits(at_width(40, "list", "--deleted"), 40)
    assert lines[0] + lines[1] == LONG_NAME, lines
    assert "entities" in lines[2] and "deleted" in lines[2]
    listed = assert_fits(at_width(40, "list"), 40)
    assert listed[0].split() == ["name", "entities", "updated", "(UTC)"]  # short names: still the table


@pytest.mark.parametrize("width", [40, 80])
@pytest.mark.parametrize(
    "args",
    [
        ["list"],
        ["list", "--deleted"],
        ["history", "cohort"],
        ["diff", "cohort@1", "cohort"],
        ["check", "cohort"],
        ["query", "SELECT scenario, entity_id, data FROM patients LIMIT 3"],
        ["summary", "cohort"],
        ["load", "cohort"],
        ["info"],
        ["token", "list"],
    ],
)
def test_every_listing_fits_40_and_80_columns(walked: ScenarioStore, args: list[str], width: int) -> None:
    output = at_width(width, *args)
    assert output.strip()
    assert_fits(output, width)


# ---------------------------------------------------------------- progress from the first frame


def first_frame(label: str, *, unit_bytes: bool, total: int | None, width: int = 80) -> str:
    """What the bar shows before the library's first report, on a terminal ``width`` wide."""
    console = Console(file=io.StringIO(), width=width, force_terminal=True, color_system=None)
    progress, _ = new_progress(label, unit_bytes=unit_bytes, total=total, console=console)
    console.print(progress.make_tasks_table(progress.tasks))
    return console.file.getvalue()  # type: ignore[attr-defined]


def test_progress_shows_the_file_and_its_size_before_the_first_report() -> None:
    """The first second of an import showed "importing ━━━━ 0/? bytes" (and "-:--:--")."""
    frame = first_frame("importing cohort.json", unit_bytes=True, total=12_345_678)
    assert "importing cohort.json" in frame and "0.0/12.3 MB" in frame, frame
    assert "?" not in frame and "-:--" not in frame, frame


def test_progress_without_a_total_says_it_is_starting() -> None:
    """An export learns its total with its first report: "starting…" until then, not "0/?"."""
    frame = first_frame("exporting [red]{name}[/]", unit_bytes=False, total=None)
    assert "exporting [red]{name}[/]" in frame and "starting…" in frame, frame  # the label as written
    assert "?" not in frame and "-:--" not in frame, frame
    assert cell_len(first_frame("importing " + "x" * 200 + ".json", unit_bytes=True, total=10, width=40)) <= 41


def pty_stderr(args: list[str]) -> str:
    """``healthsim ARGS`` with stderr on a pseudo-terminal 80 columns wide: everything it
    drew there (every frame of its progress bar), as text."""
    import fcntl
    import pty
    import struct
    import termios

    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
    env = {**os.environ, "COLUMNS": "80", "TERM": "xterm"}
    proc = subprocess.Popen(
        [str(HEALTHSIM), *args], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=follower, env=env
    )
    os.close(follower)
    drawn = b""
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # the program has exited and closed the terminal
            break
        if not chunk:
            break
        drawn += chunk
    os.close(leader)
    proc.communicate(timeout=120)
    assert proc.returncode == 0, drawn
    return re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", drawn.decode("utf-8", "replace"))


@pytest.mark.slow
def test_import_on_a_terminal_never_shows_a_question_mark(isolated_home: Path, tmp_path: Path) -> None:
    """The real program on a terminal: from its first frame the bar names the file and
    counts bytes of its size (the first frame is drawn before any byte is read)."""
    source = tmp_path / "cohort.json"
    ScenarioStore().save_scenario("cohort", wide_scenario())
    ScenarioStore().export_scenario("cohort", source)
    drawn = pty_stderr(["import", str(source), "--name", "again"])
    assert "importing cohort.json" in drawn, drawn
    assert re.search(r"\d/\d+(\.\d)? [kM]B", drawn), drawn
    assert "?" not in drawn and "-:--:--" not in drawn, drawn


@given(
    words=st.lists(
        st.text(alphabet=st.sampled_from("abcXYZ09/-,.日本é"), min_size=1, max_size=30), min_size=0, max_size=12
    ),
    width=st.integers(6, 90),
    indent=st.integers(0, 4),
)
@settings(max_examples=examples(300), deadline=None)
def test_wrapped_lines_fit_and_split_words_only_with_a_mark(words: list[str], width: int, indent: int) -> None:
    """Every line fits; a word is whole on a line, broken after a "/", "," or "-", or cut
    with "…" — never split anywhere else without a mark."""
    text = " ".join(words)
    lines = wrapped(text, width, indent=indent, hang=indent + 2)
    for line in lines:
        assert cell_len(line) <= width, (line, width)
    pieces = [line.strip() for line in lines]
    if not any("…" in piece for piece in pieces):  # nothing cut: every character is there, in order
        assert "".join(pieces).replace(" ", "") == text.replace(" ", "")
        # a line ends at the end of a word or right after a break character
        ends = {sum(len(w) for w in words[: i + 1]) for i in range(len(words))}
        done = 0
        for piece in pieces[:-1]:
            done += len(piece.replace(" ", ""))
            assert done in ends or piece[-1] in "/,-", (piece, pieces)
