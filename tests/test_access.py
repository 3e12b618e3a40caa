"""What a grant means (issue 25, points 3, 4 and the tag/scope half of 6): the scope each
tool needs, and that a tag-limited caller sees and changes only scenarios carrying one of
its tags, in every operation, the query sandbox included, on both engines.

The grants are made directly with ``granted(Grant(...))``, as the HTTP server does for each
request; the MCP tools are driven by the official client, in-process. One store per engine
is shared by the module (tests that change it make scenarios of their own names).
"""

from __future__ import annotations

import asyncio
import json
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from mcp import Client, ClientSession
from typer.testing import CliRunner

from healthsim.cli import app
from healthsim.mcp import listing
from healthsim.mcp.tools import TOOLS, ToolContext, list_scenarios
from healthsim.mcp_server import build_server
from healthsim.state import QueryError, ScenarioExistsError, ScenarioNotFoundError, ScenarioStore, StateError, confined
from healthsim.state.access import Grant, granted
from healthsim.state.errors import AccessDeniedError
from healthsim.state.tokens import create_token
from healthsim.state.visibility import granted_tags, may_see
from helpers.pg_server import PgServer

# One worker takes the module: its store per engine (shared) is made once per run, not per worker.
pytestmark = pytest.mark.xdist_group("access")

TEAM_A = Grant("bot-a", "admin", ("Team-A",))
TEAM_B = Grant("bot-b", "admin", ("team-b",))
#: Every scenario's name, and the tags it is saved with.
SCENARIOS = {
    "alpha": ["team-a"],
    "beta": ["team-b"],
    "both": ["TEAM-A", "team-b"],
    "untagged": [],
}
IN_TRASH = {"gone-a": ["team-a"], "gone-b": ["team-b"]}


def _entities(name: str) -> dict[str, list[dict[str, Any]]]:
    return {
        "patients": [{"patient_id": f"{name}-P1", "gender": "F"}, {"patient_id": f"{name}-P2", "gender": "M"}],
        "encounters": [{"encounter_id": f"{name}-E1", "patient_id": f"{name}-P1"}],
    }


@pytest.fixture(scope="module", params=["duckdb", "postgresql"])
def shared(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ScenarioStore]:
    """One store per engine for the module: the scenarios of :data:`SCENARIOS`, each with
    two versions, and those of :data:`IN_TRASH` deleted."""
    if request.param == "postgresql":
        server: PgServer = request.getfixturevalue("pg_server")
        url = server.new_database()
        store = ScenarioStore(url)
    else:
        store = ScenarioStore(tmp_path_factory.mktemp("access") / "team.duckdb")
    for name, tags in {**SCENARIOS, **IN_TRASH}.items():
        store.save_scenario(name, _entities(name), tags=tags)
        store.add_entities(name, {"patients": [{"patient_id": f"{name}-P3"}]})
    for name in IN_TRASH:
        store.delete_scenario(name)
    yield store
    if request.param == "postgresql":
        server.drop_database(url.rsplit("/", 1)[1])


def _visible_to(grant: Grant) -> set[str]:
    wanted = {t.lower() for t in grant.tags}
    return {name for name, tags in SCENARIOS.items() if wanted & {t.lower() for t in tags}}


def _not_found_text(call: Any, name: str) -> str:
    """The text of the ScenarioNotFoundError that ``call(name)`` raises, with the name blanked."""
    with pytest.raises(ScenarioNotFoundError) as caught:
        call(name)
    return str(caught.value).replace(name, "<name>")


# ------------------------------------------------------------------ seeing and changing


def test_a_tag_limited_list_holds_only_its_scenarios(shared: ScenarioStore) -> None:
    with granted(TEAM_B):
        listed = shared.list_scenarios()
        names = {s["name"] for s in listed["scenarios"]}
        assert {"beta", "both"} <= names and not names & {"alpha", "untagged"}
        assert all(any(t.lower() == "team-b" for t in s["tags"]) for s in listed["scenarios"])
        assert listed["total_count"] == len(names)
        assert {s["name"] for s in shared.list_scenarios(tag="team-a")["scenarios"]} == {"both"}
        assert shared.list_scenarios(search="alpha")["scenarios"] == []
        trash = {s["name"] for s in shared.list_scenarios(deleted=True)["scenarios"]}
        assert "gone-b" in trash and "gone-a" not in trash
    everything = {s["name"] for s in shared.list_scenarios(limit=1000)["scenarios"]}
    assert set(SCENARIOS) <= everything  # no grant: no limit, as before


def test_hidden_scenarios_answer_as_missing_ones_in_every_read(shared: ScenarioStore) -> None:
    alpha_id = shared.load_scenario("alpha")["scenario_id"]
    reads = {
        "load": lambda n: shared.load_scenario(n),
        "load a version": lambda n: shared.load_scenario(n, version=1),
        "summarize": lambda n: shared.summarize_scenario(n),
        "check": lambda n: shared.check_scenario(n),
        "history": lambda n: shared.scenario_history(n),
        "open": lambda n: shared.open_scenario(n).__enter__(),
        "diff with it": lambda n: shared.diff_scenarios("beta", n),
        "diff a version": lambda n: shared.diff_scenarios(f"{n}@1", "beta"),
        "summary": lambda n: shared.scenario_summary(n),
    }
    with granted(TEAM_B):
        assert shared.load_scenario("beta")["name"] == "beta"  # its own: as before
        for what, call in reads.items():
            for hidden in ("alpha", alpha_id, alpha_id.upper(), "gone-a"):
                if hidden == "gone-a" and what not in ("history", "load a version"):
                    continue
                assert _not_found_text(call, hidden) == _not_found_text(call, "no-such-scenario"), (what, hidden)


def test_hidden_scenarios_answer_as_missing_ones_in_every_change(shared: ScenarioStore, tmp_path: Path) -> None:
    before = shared.load_scenario("alpha")
    changes = {
        "add": lambda n: shared.add_entities(n, {"patients": [{"patient_id": "X"}]}),
        "remove": lambda n: shared.remove_entities(n, "patients", ["alpha-P1"]),
        "update": lambda n: shared.update_scenario(n, description="mine now"),
        "copy from it": lambda n: shared.copy_scenario(n, "stolen-copy"),
        "merge from it": lambda n: shared.merge_scenarios(["beta", n], "stolen-merge"),
        "restore": lambda n: shared.restore_scenario(n, 1),
        "restore a copy": lambda n: shared.restore_scenario(n, 1, new_name="stolen-restore"),
        "export": lambda n: shared.export_scenario_to_json(n, tmp_path / "stolen.json"),
        "purge history": lambda n: shared.purge_history(n),
    }
    with granted(TEAM_B):
        for what, call in changes.items():
            for hidden in ("alpha", before["scenario_id"]):
                assert _not_found_text(call, hidden) == _not_found_text(call, "no-such-scenario"), (what, hidden)
        assert shared.delete_scenario("alpha") is False  # as for a missing one
        assert shared.delete_scenario(before["scenario_id"]) is False
        assert not shared.delete_scenario("alpha", purge=True)  # as for a missing one
        assert not shared.delete_scenario("gone-a", purge=True)  # the trash too
        with pytest.raises(ScenarioNotFoundError):
            shared.restore_scenario("gone-a")
        # A hidden name is still taken (names are unique), and never replaced.
        with pytest.raises(ScenarioExistsError):
            shared.save_scenario("alpha", {"patients": []}, overwrite=True)
        with pytest.raises(ScenarioExistsError):
            shared.add_entities("alpha", {"patients": [{"patient_id": "X"}]}, create=True)
    after = shared.load_scenario("alpha")
    assert after == before and not (tmp_path / "stolen.json").exists()
    names = {s["name"] for s in shared.list_scenarios(limit=1000)["scenarios"]}
    assert not names & {"stolen-copy", "stolen-merge", "stolen-restore"}
    assert "gone-a" in {s["name"] for s in shared.list_scenarios(deleted=True)["scenarios"]}


def test_the_query_sandbox_holds_only_the_grants_scenarios(shared: ScenarioStore, tmp_path: Path) -> None:
    visible = _visible_to(TEAM_A)  # (no test of the module makes scenarios with team-a)
    with granted(TEAM_A):
        result = shared.query("SELECT DISTINCT scenario FROM entities ORDER BY 1")
        assert {row[0] for row in result["rows"]} == visible
        assert {"entities", "patients", "encounters"} <= set(result["views"])
        for view in result["views"]:  # every view the sandbox offers
            rows = shared.query(f'SELECT DISTINCT scenario FROM "{view}"')["rows"]
            assert {row[0] for row in rows} <= visible, view
        for table in ("scenarios", "main.scenarios"):  # the tables themselves, by any name
            assert {r[0] for r in shared.query(f"SELECT name FROM {table}")["rows"]} == visible
        patients = shared.query("SELECT data->>'patient_id' FROM patients")["rows"]
        assert {row[0].split("-P")[0] for row in patients} == visible
        entity_owners = {r[0] for r in shared.query("SELECT DISTINCT scenario_id FROM scenario_entities")["rows"]}
        tag_owners = {r[0] for r in shared.query("SELECT DISTINCT scenario_id FROM scenario_tags")["rows"]}
        assert len(entity_owners) == len(tag_owners) == len(visible)
        # Nothing else of the store is there: no history of any scenario.
        assert shared.query("SELECT count(*) FROM healthsim_state_versions")["rows"] == [[0]]
        out = shared.query_to_file("SELECT DISTINCT scenario FROM entities", tmp_path / "q.ndjson")
        lines = Path(out["path"]).read_text().splitlines()
        assert {json.loads(line)["scenario"] for line in lines} == visible
    everything = {r[0] for r in shared.query("SELECT DISTINCT scenario FROM entities")["rows"]}
    assert set(SCENARIOS) <= everything  # no grant: the whole store, as before


def test_scenarios_a_grant_makes_get_its_tag(shared: ScenarioStore, tmp_path: Path) -> None:
    grant = Grant("maker", "write", ("team-c", "team-d"))
    source = tmp_path / "in.json"
    with granted(grant):
        shared.save_scenario("c-saved", _entities("c-saved"))
        shared.save_scenario("c-other", _entities("c-other"), tags=["cohort"])
        shared.save_scenario("c-own", {}, tags=["TEAM-D"])
        shared.add_entities("c-added", {"patients": [{"patient_id": "X"}]}, create=True)
        shared.copy_scenario("c-saved", "c-copy", tags=["elsewhere"])
        shared.merge_scenarios(["c-saved", "c-other"], "c-merged", tags=["x"])
        shared.restore_scenario("c-saved", 1, new_name="c-restored")
        shared.export_scenario_to_json("c-other", source)
        shared.import_scenario_from_json(source, "c-imported")
        tags = {s["name"]: s["tags"] for s in shared.list_scenarios(search="c-")["scenarios"]}
    assert tags["c-saved"] == ["team-c"]
    assert tags["c-other"] == ["cohort", "team-c"]
    assert tags["c-own"] == ["TEAM-D"]  # one of its tags already: nothing added
    for name in ("c-added", "c-copy", "c-merged", "c-restored", "c-imported"):
        assert "team-c" in tags[name], name
    history = shared.scenario_history("c-merged")["versions"]
    assert history[0]["by"] == "maker"


def test_a_grant_cannot_remove_the_tag_that_grants_it(shared: ScenarioStore) -> None:
    shared.save_scenario("d-kept", {}, tags=["team-e", "team-f", "other"])
    with granted(Grant("editor", "write", ("team-e",))):
        with pytest.raises(AccessDeniedError, match="d-kept.*team-e"):
            shared.update_scenario("d-kept", remove_tags=["TEAM-E"])
        shared.update_scenario("d-kept", remove_tags=["other"])  # others may go
    assert shared.load_scenario("d-kept")["tags"] == ["team-e", "team-f"]
    with granted(Grant("editor", "write", ("team-e", "team-f"))):
        shared.update_scenario("d-kept", remove_tags=["team-e"])  # team-f still grants it
        with pytest.raises(AccessDeniedError):
            shared.update_scenario("d-kept", remove_tags=["team-f"])
    assert shared.load_scenario("d-kept")["tags"] == ["team-f"]


def test_changes_record_the_grants_name(shared: ScenarioStore) -> None:
    with granted(Grant("alice-bot", "write")):
        shared.save_scenario("e-by", {"patients": [{"patient_id": "P"}]})
        shared.update_scenario("e-by", add_tags=["x"])
    versions = shared.scenario_history("e-by")["versions"]
    assert [v["by"] for v in versions] == ["alice-bot", "alice-bot"]


# ------------------------------------------------------------------ scopes, over MCP

#: Arguments of each tool that needs the write scope (each would change something if run).
WRITE_CALLS: dict[str, dict[str, Any]] = {
    "save_scenario": {"name": "f-new", "entities": {"patients": [{"patient_id": "P"}]}},
    "add_entities": {"name": "alpha", "entities": {"patients": [{"patient_id": "Q"}]}},
    "remove_entities": {"name": "alpha", "entity_type": "patients", "entity_ids": ["alpha-P1"]},
    "update_scenario": {"name": "alpha", "description": "changed"},
    "copy_scenario": {"source": "alpha", "new_name": "f-copy"},
    "merge_scenarios": {"sources": ["alpha", "beta"], "new_name": "f-merge"},
    "delete_scenario": {"name": "alpha"},
    "restore_scenario": {"name": "alpha", "version": 1},
    "import_scenario": {"file_path": "f-import.json"},
}


def _call(db: Any, grant: Grant | None, calls: list[tuple[str, dict[str, Any]]]) -> list[Any]:
    """The results of ``calls`` to a server over ``db``, made by a client under ``grant``."""

    async def main() -> list[Any]:
        async with Client(build_server(db), mode="legacy", cache=None) as client:
            session: ClientSession = client.session
            return [await session.call_tool(name, args) for name, args in calls]

    if grant is None:
        return asyncio.run(main())
    with granted(grant):
        return asyncio.run(main())


def _state(store: ScenarioStore) -> Any:
    listed = store.list_scenarios(limit=1000)["scenarios"]
    return sorted((s["name"], s["version"], s["tags"], s.get("description")) for s in listed)


def test_each_tool_declares_its_scope() -> None:
    scopes = {spec.name: spec.scope for spec in TOOLS}
    assert {name for name, scope in scopes.items() if scope == "write"} == set(WRITE_CALLS)
    assert all(scope in ("read", "write") for scope in scopes.values())  # admin: purge, inside delete


def test_every_write_tool_is_refused_for_a_read_grant(
    shared: ScenarioStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HEALTHSIM_EXPORT_DIR", str(tmp_path))
    monkeypatch.setenv("HEALTHSIM_IMPORT_DIRS", str(tmp_path))
    shared.export_scenario_to_json("beta", tmp_path / "f-import.json")
    before = _state(shared)
    results = _call(shared.path, Grant("reader", "read"), list(WRITE_CALLS.items()))
    for (name, _), result in zip(WRITE_CALLS.items(), results, strict=True):
        assert result.is_error, name
        text = result.content[0].text
        assert f"{name} needs the write scope" in text and "has read" in text, text
    assert _state(shared) == before
    reads = _call(shared.path, Grant("reader", "read"), [("list_scenarios", {}), ("export_scenario", {"name": "beta"})])
    assert not any(r.is_error for r in reads)


def test_purge_needs_the_admin_scope(shared: ScenarioStore) -> None:
    shared.save_scenario("g-kept", {})
    shared.save_scenario("g-trashed", {})
    shared.delete_scenario("g-trashed")
    before = _state(shared)
    calls = [
        ("delete_scenario", {"name": "g-kept", "purge": True}),
        ("delete_scenario", {"name": "g-trashed", "purge": True}),
    ]
    for result in _call(shared.path, Grant("writer", "write"), calls):
        assert (
            result.is_error
            and "needs the admin scope" in result.content[0].text
            and "has write" in result.content[0].text
        )
    with granted(Grant("writer", "write")):
        with pytest.raises(AccessDeniedError, match="admin scope"):
            shared.purge_history()
    with granted(Grant("admin-bot", "admin", ("team-a",))):
        with pytest.raises(AccessDeniedError, match="name a scenario"):
            shared.purge_history()  # every scenario: also those it cannot see
    assert _state(shared) == before
    assert "g-trashed" in {s["name"] for s in shared.list_scenarios(deleted=True)["scenarios"]}
    (done,) = _call(
        shared.path, Grant("admin-bot", "admin"), [("delete_scenario", {"name": "g-trashed", "purge": True})]
    )
    assert not done.is_error


def test_a_tag_limited_client_sees_only_its_scenarios_over_mcp(
    shared: ScenarioStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    exports = tmp_path / "exports"
    exports.mkdir()
    monkeypatch.setenv("HEALTHSIM_EXPORT_DIR", str(exports))
    alpha_id = shared.load_scenario("alpha")["scenario_id"]
    calls = [
        ("list_scenarios", {"limit": 100}),
        ("load_scenario", {"name": "alpha"}),
        ("load_scenario", {"name": alpha_id, "entity_type": "patients"}),
        ("diff_scenarios", {"a": "beta", "b": "alpha"}),
        ("export_scenario", {"name": alpha_id}),
        ("scenario_history", {"name": "alpha"}),
        ("merge_scenarios", {"sources": ["beta", "alpha"], "new_name": "h-merge"}),
        ("query", {"sql": "SELECT DISTINCT scenario FROM patients ORDER BY 1"}),
        ("load_scenario", {"name": "no-such-scenario"}),
    ]
    listed, *refused, rows, missing = _call(shared.path, TEAM_B, calls)
    names = {s["name"] for s in listed.structured_content["scenarios"]}
    assert {"beta", "both"} <= names and "alpha" not in names
    for result in refused:
        assert result.is_error and "not found" in result.content[0].text, result.content[0].text
    assert [r[0] for r in rows.structured_content["rows"]] == ["beta", "both"]
    assert missing.is_error
    assert not list(exports.iterdir())  # nothing exported


def test_the_listing_cache_keeps_each_grants_list_apart(shared: ScenarioStore, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(listing, "QUIET_SECONDS", 0.0)  # answers kept at once
    ctx = ToolContext(shared.path)

    def names() -> set[str]:
        return {s["name"] for s in list_scenarios(ctx, limit=100).value["scenarios"]}

    everything = names()
    with granted(TEAM_A):
        assert names() == names() and "beta" not in names() and "alpha" in names()
    with granted(TEAM_B):
        assert "alpha" not in names() and "beta" in names()
    assert names() == everything


def test_history_shows_who_changed_what(shared: ScenarioStore) -> None:
    with granted(Grant("alice-bot", "write")):
        shared.save_scenario("i-by", {"patients": [{"patient_id": "P"}]})
    (history,) = _call(shared.path, None, [("scenario_history", {"name": "i-by"})])
    assert history.structured_content["versions"][0]["by"] == "alice-bot"
    database = shared.path
    env = {"HEALTHSIM_DB": str(database) if isinstance(database, Path) else database.url}
    shown = CliRunner().invoke(app, ["history", "i-by"], env=env, catch_exceptions=False)
    assert shown.exit_code == 0 and "alice-bot" in shown.output, shown.output


def test_a_hidden_name_does_not_change_what_a_diff_side_means(shared: ScenarioStore) -> None:
    """``beta@1`` is version 1 of beta, unless a scenario has that whole name: one the
    caller cannot see has none (and its existence must not show)."""
    shared.save_scenario("beta@1", {}, tags=["team-z"])
    with granted(TEAM_B):
        diff = shared.diff_scenarios("beta@1", "beta")
    assert (diff["a"], diff["b"]) == ({"name": "beta", "version": 1}, {"name": "beta", "version": 2})


def test_database_info_counts_only_what_the_grant_sees(shared: ScenarioStore) -> None:
    with granted(Grant("nobody", "read", ("no-such-tag",))):
        info = shared.database_info()
        assert (info["scenarios"], info["entities"]) == (0, 0)
        assert shared.list_scenarios()["scenarios"] == []
        assert shared.query("SELECT count(*) FROM entities")["rows"] == [[0]]
    with granted(TEAM_A):
        info = shared.database_info()
    assert info["scenarios"] == len(_visible_to(TEAM_A)) and info["entities"] == 4 * len(
        _visible_to(TEAM_A)
    )  # 3 saved, 1 added each


def test_the_private_copy_of_a_query_is_removed(
    shared: ScenarioStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A temporary folder of this test's own: the other worker's queries make and remove
    # their copies in the shared one at the same time.
    folder = tmp_path / "tmp"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    confined.drop_kept_copies()  # (those of earlier tests, made in the shared folder)
    with granted(TEAM_A):
        shared.query("SELECT count(*) FROM entities")
        with pytest.raises(QueryError):
            shared.query("SELECT no_such_column FROM entities")
        shared.query("SELECT count(*) FROM entities")
    assert len(list(folder.glob("healthsim-confined-*"))) <= 1  # at most the one kept for the next query
    confined.drop_kept_copies()
    assert not list(folder.glob("healthsim-confined-*"))


_TAG = st.text(st.sampled_from("abAB-é "), min_size=1, max_size=4).filter(lambda t: t.strip() != "")


@given(grant_tags=st.lists(_TAG, min_size=1, max_size=3), tags=st.lists(_TAG, max_size=4))
def test_what_a_grant_writes_it_can_see(grant_tags: list[str], tags: list[str]) -> None:
    """Whatever tags a scenario is written with, the caller that wrote it sees it; tags it
    could already see with are kept as given; matching ignores case."""
    with granted(Grant("g", "write", tuple(grant_tags))):
        written = granted_tags(tags)
        assert may_see(written)
        if may_see(tags):
            assert written == tags
        else:
            assert written == [*tags, grant_tags[0].strip()]
        assert may_see([t.upper() for t in written]) and may_see([t.lower() for t in written])
    assert granted_tags(tags) == tags and may_see([])  # no grant: no limit


@pytest.mark.parametrize("engine", ["duckdb", "postgresql"])
def test_a_grant_with_a_non_ascii_tag_sees_its_scenarios_everywhere(
    engine: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """A grant's tag and a scenario's tag are compared by one lowercasing, the database's:
    Python's lower() of the grant's tag beside SQL's lower() of the stored one hid every
    scenario tagged "Äpfel" from a token of "Äpfel" on a team store in the C locale."""
    if engine == "postgresql":
        server: PgServer = request.getfixturevalue("pg_server")
        store = ScenarioStore(server.new_database())
    else:
        store = ScenarioStore(tmp_path / "umlaut.duckdb")
    store.save_scenario("fruit", _entities("fruit"), tags=["Äpfel"])
    store.save_scenario("gone", _entities("gone"), tags=["Äpfel"])
    store.delete_scenario("gone")
    store.save_scenario("other", _entities("other"), tags=["birnen"])
    with granted(Grant("fruit-bot", "read", ("Äpfel",))):
        assert [s["name"] for s in store.list_scenarios()["scenarios"]] == ["fruit"]
        assert [s["name"] for s in store.list_scenarios(deleted=True)["scenarios"]] == ["gone"]
        assert store.load_scenario("fruit")["entity_count"] == 3
        assert store.query("SELECT DISTINCT scenario FROM entities")["rows"] == [["fruit"]]
        assert store.database_info()["scenarios"] == 1


#: Tables of the store a caller served over HTTP must not read through ``query``: the
#: tokens (names, scopes, tags, hashes), history and staged writes are the store's own.
INTERNAL_TABLES = (
    "healthsim_state_tokens",
    "healthsim_state_versions",
    "healthsim_state_entity_history",
    "healthsim_state_births",
    "healthsim_state_schema_version",
)


def test_no_caller_over_http_reads_the_stores_own_tables(shared: ScenarioStore, tmp_path: Path) -> None:
    """A grant without tags sees every scenario, but not the tokens, history or schema
    tables: before, a read token could ``SELECT * FROM healthsim_state_tokens`` (its
    names, scopes, tags and hashes) because only callers with tags got a private copy."""

    database = shared.path
    create_token(database if isinstance(database, Path) else database.url, "k-other-bot", "admin", ["secret-team"])
    assert shared.query("SELECT count(*) FROM healthsim_state_tokens")["rows"][0][0] >= 1  # the owner may
    # (the private copy is a new store: its own tables are there, empty)
    counts = "SELECT " + ", ".join(f"(SELECT count(*) FROM {table})" for table in INTERNAL_TABLES[:-1])
    for grant in (Grant("k-admin", "admin"), TEAM_A):
        with granted(grant):
            qualified = counts.replace("FROM ", "FROM main.")  # (the copy is DuckDB's: no public schema)
            assert shared.query(f"{counts} UNION ALL {qualified}")["rows"] == [[0] * (len(INTERNAL_TABLES) - 1)] * 2
            with pytest.raises(QueryError):
                shared.query("SELECT count(*) FROM public.healthsim_state_tokens")
    with granted(Grant("k-reader", "read")):  # still every scenario, as before
        out = shared.query_to_file("SELECT * FROM healthsim_state_tokens", tmp_path / "t.csv")
        assert "k-other-bot" not in Path(out["path"]).read_text()
        seen = {r[0] for r in shared.query("SELECT DISTINCT scenario FROM entities")["rows"]}
        assert set(SCENARIOS) <= seen
        assert {r[0] for r in shared.query("SELECT name FROM scenarios")["rows"]} >= set(SCENARIOS)


def test_a_kept_copy_serves_only_while_the_content_is_unchanged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A DuckDB file's private copy is kept for the next query of the same tags (copying
    is ~0.7 s per 100,000 entities), and a change to a scenario makes the next one anew."""
    folder = tmp_path / "tmp"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    store = ScenarioStore(tmp_path / "kept.duckdb")
    store.save_scenario("one", _entities("one"), tags=["t"])
    count = "SELECT count(*) FROM scenarios"
    try:
        with granted(Grant("reader", "read")):
            assert store.query(count)["rows"] == [[1]]
            first = sorted(folder.glob("healthsim-confined-*"))
            assert store.query(count)["rows"] == [[1]]
            assert sorted(folder.glob("healthsim-confined-*")) == first and len(first) == 1  # the same copy
        # A write no copy holds (a token made; a token's use writes its last_used_at so, about
        # once a minute) keeps the copy: the file's identity changed, its content did not.
        create_token(tmp_path / "kept.duckdb", "k-other", "read", [])
        with granted(Grant("reader", "read")):
            assert store.query(count)["rows"] == [[1]]
            assert sorted(folder.glob("healthsim-confined-*")) == first  # still the same copy
        store.save_scenario("two", _entities("two"), tags=["u"])
        with granted(Grant("reader", "read")):
            assert store.query(count)["rows"] == [[2]]  # the change is seen
        with granted(Grant("t-reader", "read", ("T",))):
            assert store.query(count)["rows"] == [[1]]  # another grant's tags: its own copy
        assert len(list(folder.glob("healthsim-confined-*"))) == 2  # the first one went when replaced
    finally:
        confined.drop_kept_copies()
    assert not list(folder.glob("healthsim-confined-*"))


def test_a_grant_cannot_import_the_stores_own_cache(tmp_path: Path) -> None:
    """Summaries are kept as JSON beside the database file (``<db>.frames/…``, inside the
    default import folder ``~/.healthsim``), and one imported as a scenario file kept the
    whole summary, samples of entities included, in the new scenario's metadata: a token
    of team-b read team-a's patients. Under a grant the store's own files are no source."""
    store = ScenarioStore(tmp_path / "cached.duckdb")
    store.save_scenario("hidden", {"patients": [{"patient_id": "TOPSECRET-1"}]}, tags=["team-a"])
    store.summarize_scenario("hidden")
    cached = sorted(p for p in (tmp_path / "cached.duckdb.frames").rglob("*") if p.is_file())
    assert any(p.suffix == ".json" for p in cached)
    with granted(Grant("bot-b", "write", ("team-b",))):
        for path in cached:
            with pytest.raises(StateError, match="cache"):
                store.import_scenario_from_json(path, "stolen")
        with pytest.raises(StateError, match="cache"):
            store.import_scenario(cached[0].parent, "stolen", format="fhir")
    assert not store.list_scenarios(search="stolen")["scenarios"]


@pytest.mark.slow  # (a query after each kind of change: 2 s)
@pytest.mark.parametrize("engine", ["duckdb", "postgresql"])
def test_a_kept_copy_never_hides_a_change(
    engine: str, tmp_path: Path, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every kind of change another client makes is seen by the next query over HTTP, on a
    DuckDB file and on a team store (kept while every scenario's latest version and row are
    the same, read in the copy's own snapshot)."""
    if engine == "postgresql":  # (the server first: it makes its folder in the usual temporary folder)
        server: PgServer = request.getfixturevalue("pg_server")
        store = ScenarioStore(server.new_database())
    else:
        store = ScenarioStore(tmp_path / "changes.duckdb")

    folder = tmp_path / "tmp"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    store.save_scenario("k", _entities("k"), tags=["t"])
    sql = (
        "SELECT s.name, (SELECT count(*) FROM scenario_entities e WHERE e.scenario_id = s.scenario_id), "
        "(SELECT string_agg(tag, ',' ORDER BY tag) FROM scenario_tags g WHERE g.scenario_id = s.scenario_id) "
        "FROM scenarios s ORDER BY 1"
    )
    reader = Grant("reader", "read")

    def seen() -> list[list[Any]]:
        with granted(reader):
            return list(store.query(sql)["rows"])

    try:
        assert seen() == [["k", 3, "t"]]
        kept = sorted(folder.glob("healthsim-confined-*"))
        assert len(kept) == 1  # kept for the next query
        assert seen() == [["k", 3, "t"]] and sorted(folder.glob("healthsim-confined-*")) == kept  # reused
        store.add_entities("k", {"patients": [{"patient_id": "k-P9"}]})
        assert seen() == [["k", 4, "t"]]
        store.remove_entities("k", "patients", ["k-P9"])
        assert seen() == [["k", 3, "t"]]
        store.update_scenario("k", add_tags=["u"])
        assert seen() == [["k", 3, "t,u"]]
        store.update_scenario("k", new_name="k2")
        assert seen() == [["k2", 3, "t,u"]]
        store.copy_scenario("k2", "k3")
        assert seen() == [["k2", 3, "t,u"], ["k3", 3, "t,u"]]
        store.delete_scenario("k3")
        assert seen() == [["k2", 3, "t,u"]]
        store.restore_scenario("k3")
        assert seen() == [["k2", 3, "t,u"], ["k3", 3, "t,u"]]
        store.save_scenario("k3", {"patients": [{"patient_id": "only"}]}, overwrite=True)
        assert seen() == [["k2", 3, "t,u"], ["k3", 1, None]]
    finally:
        confined.drop_kept_copies()


def test_the_private_copy_holds_no_half_written_rows(tmp_path: Path) -> None:
    """A large save stages its rows in ``scenario_entities`` under an id no scenario has
    (committed batch by batch, published at the end); a token's copy held another writer's
    staged rows in ``scenario_entities``. Only rows of current scenarios are copied."""
    import duckdb

    path = tmp_path / "staged.duckdb"
    store = ScenarioStore(path)
    store.save_scenario("whole", _entities("whole"))
    con = duckdb.connect(str(path))  # what a staged write has committed so far
    con.execute(
        "INSERT INTO scenario_entities (id, scenario_id, entity_type, entity_id, entity_data, created_at) "
        "SELECT 1000, uuid(), 'patients', uuid(), '{\"patient_id\": \"HALF\"}', now()"
    )
    con.close()
    with granted(Grant("reader", "read")):
        rows = store.query("SELECT count(*), count(DISTINCT scenario_id) FROM scenario_entities")["rows"]
    assert rows == [[3, 1]]


def test_a_forked_child_leaves_its_parents_kept_copies(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The kept copies are removed at exit; a child made by ``fork`` inherits the table
    and, exiting, removed the copies its parent was still using."""
    import os

    folder = tmp_path / "tmp"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    store = ScenarioStore(tmp_path / "forked.duckdb")
    store.save_scenario("f", _entities("f"))
    try:
        with granted(Grant("reader", "read")):
            store.query("SELECT count(*) FROM entities")
        (kept,) = folder.glob("healthsim-confined-*")
        child = os.fork()
        if child == 0:  # the child: what its exit runs
            confined.drop_kept_copies()
            os._exit(0)
        assert os.waitpid(child, 0)[1] == 0
        assert kept.exists()
    finally:
        confined.drop_kept_copies()
    assert not kept.exists()
