"""The suite's own arrangements for speed change where files go, the order of tests and which bytecode caches are
written before the programs the tests start need them, nothing else."""

from __future__ import annotations

import importlib.util
import os
import tempfile
from pathlib import Path

import pytest

import healthsim
from helpers import examples
from helpers.scheduling import ON_DISK_ENV, compile_package, memory_tempdir, rank


def test_temporary_files_stay_where_the_user_put_them(tmp_path: Path) -> None:
    assert memory_tempdir({"TMPDIR": str(tmp_path)}) is None
    assert memory_tempdir({ON_DISK_ENV: "1"}) is None
    assert memory_tempdir({}, shm=tmp_path / "missing") is None


def test_a_folder_is_used_only_with_room_for_a_full_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import helpers.scheduling as scheduling

    monkeypatch.setattr(scheduling, "MIN_FREE", 1)
    assert memory_tempdir({}, shm=tmp_path) == str(tmp_path)
    monkeypatch.setattr(scheduling, "MIN_FREE", 1 << 60)  # more than any disk has
    assert memory_tempdir({}, shm=tmp_path) is None


def test_tmp_path_is_under_the_chosen_folder(tmp_path: Path) -> None:
    assert tmp_path.resolve().is_relative_to(Path(tempfile.gettempdir()).resolve())
    assert os.environ.get("TMPDIR") in (None, tempfile.gettempdir())


def test_long_tests_are_handed_out_first() -> None:
    long = rank("tests/test_readme.py::test_readme_from_a_fresh_clone", slow=True, hypothesis=False)
    slow = rank("tests/test_x.py::test_a_kill", slow=True, hypothesis=False)
    prop = rank("tests/test_x.py::test_any_input", slow=False, hypothesis=True)
    plain = rank("tests/test_x.py::test_one_case", slow=False, hypothesis=False)
    assert long < slow < prop < plain


def test_the_quick_run_explores_a_tenth_of_each_property_and_the_whole_suite_all() -> None:
    assert examples.is_quick("not slow") and examples.is_quick("not  slow and not duckdb_only")
    assert not examples.is_quick("") and not examples.is_quick("slow") and not examples.is_quick("not slowly")
    was = examples.examples(30) != 30  # this run's choice, put back afterwards
    try:
        examples.set_quick(False)
        assert [examples.examples(n) for n in (3, 30, 1500)] == [3, 30, 1500]
        examples.set_quick(True)
        assert [examples.examples(n) for n in (3, 15, 30, 1500)] == [3, 3, 3, 150]
    finally:
        examples.set_quick(was)


def cache_is_current(source: Path) -> bool:
    """Whether ``source`` has a bytecode cache that the import system would use (its mtime and size)."""
    cached = Path(importlib.util.cache_from_source(str(source)))
    if not cached.is_file():
        return False
    header, stat = cached.read_bytes()[:16], source.stat()
    return int.from_bytes(header[8:12], "little") == int(stat.st_mtime) & 0xFFFFFFFF and int.from_bytes(
        header[12:16], "little"
    ) == (stat.st_size & 0xFFFFFFFF)


def test_every_project_module_is_compiled_when_the_run_begins() -> None:
    """The programs the tests start (PYTHONDONTWRITEBYTECODE may be set) find every project module compiled."""
    sources = sorted(Path(healthsim.__file__).parent.rglob("*.py"))
    assert len(sources) > 50 and all(cache_is_current(source) for source in sources)


def test_compiling_writes_missing_and_stale_caches_only(tmp_path: Path) -> None:
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "a.py").write_text("A = 1\n")
    (package / "b.py").write_text("B = 1\n")
    compile_package(package)
    assert cache_is_current(package / "a.py") and cache_is_current(package / "b.py")
    kept = Path(importlib.util.cache_from_source(str(package / "a.py"))).stat().st_mtime_ns
    (package / "b.py").write_text("B = 22\n")  # changed (a second later): its cache is stale
    later = (package / "b.py").stat().st_mtime + 1
    os.utime(package / "b.py", (later, later))
    assert not cache_is_current(package / "b.py")
    compile_package(package)
    assert cache_is_current(package / "b.py")
    assert Path(importlib.util.cache_from_source(str(package / "a.py"))).stat().st_mtime_ns == kept  # not rewritten


@pytest.mark.xdist_group("suite-setup")
def test_an_xdist_group_keeps_its_tests_on_one_worker(request: pytest.FixtureRequest) -> None:
    """Tests that share a fixture made once per worker carry an ``xdist_group`` mark (test_layout, test_mcp_http,
    test_terminal, test_access): with ``--dist loadgroup`` pytest-xdist sends a group to one worker by the group's
    name it adds to each test's id. With pytest 9.2 that renaming silently did nothing (pytest-dev/pytest-xdist#1386,
    pyproject pins pytest below 9.2): every group was spread over the workers, each making the shared fixture."""
    grouped = bool(getattr(request.config.option, "loadgroup", False))  # an xdist worker of a loadgroup run
    assert request.node.nodeid.endswith("@suite-setup") == grouped, request.node.nodeid
