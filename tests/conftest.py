"""Shared fixtures: every test gets its own home folder and database file.

The team store: in the modules of :data:`BOTH_ENGINES`, every test that takes ``store``
runs twice, on a DuckDB file and on a fresh database of a real PostgreSQL server (the
test ids end in ``[duckdb]`` and ``[postgresql]``), and ``HEALTHSIM_DB`` names the same
database, so the module functions, CLI and MCP server in such a test use it too. A test
that looks inside the DuckDB file itself (``db_path``) runs on DuckDB only.
In such a module a test of one engine's own behaviour says so with ``@pytest.mark.duckdb_only``
or ``@pytest.mark.postgresql_only``.

The suite runs in parallel (pytest-xdist, ``-n auto`` in pyproject's addopts): each worker process
starts its own PostgreSQL server (its own folder from mkdtemp, a free port) and every test has its
own tmp_path and HOME, so nothing here is shared between workers.

Plain helper functions (``orphan_rows``, ``hold_database``, Hypothesis strategies, paths)
live in ``tests/helpers/``: test files import those, never this file or each other.
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

import healthsim
from healthsim.state import ScenarioStore
from helpers.examples import is_quick, set_quick
from helpers.paths import FIXTURES
from helpers.pg_server import PgServer
from helpers.scheduling import compile_package, memory_tempdir, rank

sys.path.insert(0, str(FIXTURES))  # fixture builders such as legacy_db

# pytest rewrites the asserts of every test module when it imports it, and keeps the result in
# __pycache__ unless bytecode writing is off. With PYTHONDONTWRITEBYTECODE set (this machine sets it)
# every worker of every run rewrote all of them again: ~4.5 s of CPU each before the first test. The
# suite's own processes keep the caches; the user's setting is left as it is for every other program,
# the ones the tests start included.
sys.dont_write_bytecode = False

# Temporary files (tmp_path, the PostgreSQL server's folder, the README test's programs) in memory
# when there is room: see helpers.scheduling. Set before pytest first asks for its base folder, and
# in the environment so that the processes the tests start use it too.
if (_memory_tmp := memory_tempdir()) is not None:
    os.environ["TMPDIR"] = tempfile.tempdir = _memory_tmp


#: The README test that runs every block in this environment, and the one that runs every block
#: after the install line on a fresh clone: the second does all the first does, and more.
README_IN_ORDER = "tests/test_readme.py::test_readme_examples_run_in_order"
README_FRESH_CLONE = "tests/test_readme.py::test_readme_from_a_fresh_clone"


def pytest_configure(config: pytest.Config) -> None:
    """A run that leaves out the slow tests (``-m "not slow"``) is the quick run: see helpers.examples."""
    set_quick(is_quick(config.getoption("markexpr") or ""))
    if not hasattr(config, "workerinput"):  # once, in the main process, before any worker starts a program
        compile_package(Path(healthsim.__file__).parent)


@pytest.hookimpl(trylast=True)  # after -m and -k have deselected what they deselect
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Long tests first (see helpers.scheduling.rank), each group in file order.

    With ``--dist loadgroup`` pytest-xdist hands out the tests in this order, an ``xdist_group`` as
    one unit where its first test stands (``--no-loadscope-reorder``: xdist would otherwise put the
    groups of many tests first), a test or group to a worker as it runs short; a long test met late
    ran on one worker while the other had finished (the README's fresh-clone test, ~2.5 min, was
    collected near the end). Every worker sorts alike (the key depends on the test only), so the
    workers' collections stay equal, as xdist requires.
    """
    # A run that takes the fresh-clone README test (the whole suite, CI) leaves out the in-order
    # one, which runs the same blocks without the install (~25 s); both are slow, and a run of
    # the README tests alone (`pytest tests/test_readme.py -k in_order`) still takes the in-order one.
    ids = {item.nodeid for item in items}
    if README_IN_ORDER in ids and README_FRESH_CLONE in ids:
        dropped = [item for item in items if item.nodeid == README_IN_ORDER]
        items[:] = [item for item in items if item.nodeid != README_IN_ORDER]
        config.hook.pytest_deselected(items=dropped)
    items.sort(
        key=lambda item: rank(
            item.nodeid,
            slow=item.get_closest_marker("slow") is not None,
            hypothesis=getattr(getattr(item, "function", None), "is_hypothesis_test", False),
        )
    )


def _encodable(text: str) -> str:
    """``text`` with lone surrogates escaped (``\\udcff``), so it can be encoded as UTF-8."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """Escape lone surrogates in a test's report before a parallel worker sends it.

    Tests of undecodable names (``\\udcff``) log and capture such text; pytest-xdist sends every
    report to the main process as UTF-8 and a lone surrogate crashed the worker (the session then
    stopped with an INTERNALERROR). The text stays readable, escaped; the test's outcome is untouched.
    """
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    report.sections = [(title, _encodable(content)) for title, content in report.sections]
    if report.longrepr is not None:
        text = str(report.longrepr)
        if _encodable(text) != text:
            report.longrepr = _encodable(text)


@pytest.fixture(autouse=True)
def isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point HOME and HEALTHSIM_DB at tmp_path so no test touches the real ~/.healthsim."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("HEALTHSIM_DB", str(home / ".healthsim" / "healthsim.duckdb"))
    monkeypatch.delenv("HEALTHSIM_LOCK_TIMEOUT", raising=False)
    return home


@pytest.fixture
def db_path(isolated_home: Path) -> Path:
    return Path(os.environ["HEALTHSIM_DB"])


#: Test modules whose ``store`` tests run on both engines.
BOTH_ENGINES = {
    "test_store",
    "test_export",
    "test_import",
    "test_editing",
    "test_history",
    "test_summaries",
    "test_formats",
    "test_version_cache",
    "test_legacy",
    "test_team_store",
    "test_entity_kinds",
    "test_diff_fields",
    "test_query",
    "test_checks",
    "test_checks_data",
    "test_many_types",
    "test_fhir_exchange",
    "test_tokens",
    "test_first_hour_query",
    "test_hunt_everyday",
    "test_hunt_seeing",
}


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "store" not in metafunc.fixturenames:
        return
    engines = ["duckdb"]
    module = metafunc.module.__name__.rsplit(".", 1)[-1]
    if module in BOTH_ENGINES and "db_path" not in metafunc.fixturenames:
        engines.append("postgresql")
    # An engine-specific test in a both-engines module says so with a mark (see pyproject's markers).
    if metafunc.definition.get_closest_marker("duckdb_only"):
        engines = ["duckdb"]
    elif metafunc.definition.get_closest_marker("postgresql_only"):
        engines = ["postgresql"]
    # The quick run (-m "not slow") checks a behaviour both engines have on DuckDB; the whole
    # suite (CI, the README's command) on both. Tests of PostgreSQL's own behaviour
    # (postgresql_only, and those that reach a server without the store fixture) stay in the quick run.
    params = [pytest.param(e, marks=pytest.mark.slow) if e == "postgresql" and len(engines) > 1 else e for e in engines]
    metafunc.parametrize("engine", params, indirect=True)


@pytest.fixture
def engine(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, isolated_home: Path) -> str:
    """``duckdb`` or ``postgresql``: the engine of this test's ``store`` (and of HEALTHSIM_DB)."""
    name: str = getattr(request, "param", "duckdb")
    if name == "postgresql":
        monkeypatch.setenv("HEALTHSIM_DB", request.getfixturevalue("pg_url"))
    return name


@pytest.fixture
def store(engine: str) -> ScenarioStore:
    """The store of this test's engine: the DuckDB file in its home, or a fresh PostgreSQL database."""
    return ScenarioStore(os.environ["HEALTHSIM_DB"])


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    """One private PostgreSQL server for the whole session, started only if a test asks for it (~1 s).

    Fails (does not skip) without PostgreSQL binaries, with a message naming the package: a skipped
    team store suite would look green while testing nothing. The server is also stopped at interpreter
    exit should the session end without tearing down fixtures.
    """
    server = PgServer().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def pg_url(pg_server: PgServer) -> Iterator[str]:
    """A fresh empty database for this test, owned by the plain role: its URL (with the password).

    ``postgresql://healthsim:hs-test-pw@127.0.0.1:<port>/<db>``. The database is dropped afterwards with
    FORCE, so connections the test (or the code under test) left open do not fail the teardown.
    """
    url = pg_server.new_database()
    try:
        yield url
    finally:
        pg_server.drop_database(url.rsplit("/", 1)[1])
