"""Over MCP, exports stay in the export folder and replace only earlier exports of ours;
imports read only from the import folders. The CLI and the library keep full paths."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from mcp import Client, ClientSession

from healthsim.mcp_server import build_server
from healthsim.state import ScenarioStore
from healthsim.state.access import Grant, granted

KEYS = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIExample user@laptop\n"


def run(db: Path, test: Callable[[ClientSession], Awaitable[None]]) -> None:
    async def main() -> None:
        async with Client(build_server(db), mode="legacy", cache=None) as client:
            await asyncio.wait_for(test(client.session), timeout=120)

    asyncio.run(main())


async def ok(client: ClientSession, tool: str, **arguments: Any) -> dict[str, Any]:
    result = await client.call_tool(tool, arguments)
    assert not result.is_error, result.content[0].text
    answer: dict[str, Any] = json.loads(result.content[0].text)
    return answer


async def refused(client: ClientSession, tool: str, **arguments: Any) -> str:
    result = await client.call_tool(tool, arguments)
    assert result.is_error, result.content[0].text
    return result.content[0].text


@pytest.fixture
def home(isolated_home: Path, db_path: Path) -> Path:
    ScenarioStore(db_path).save_scenario("cohort", {"patients": [{"patient_id": "A", "note": KEYS}]})
    return isolated_home


def test_export_to_authorized_keys_is_refused_and_the_file_untouched(home: Path, db_path: Path) -> None:
    ssh = home / ".ssh"
    ssh.mkdir()
    keys = ssh / "authorized_keys"
    keys.write_text(KEYS)
    before = keys.stat()

    async def test(client: ClientSession) -> None:
        for path in (
            "~/.ssh/authorized_keys",
            str(keys),
            "../.ssh/authorized_keys",
            "~/Downloads/../.ssh/authorized_keys",
        ):
            for format in ("json", "ndjson", "parquet", "csv"):
                text = await refused(client, "export_scenario", name="cohort", output_path=path, format=format)
                assert "over MCP exports go only inside the export folder" in text, text
                assert str(home / "Downloads") in text and "HEALTHSIM_EXPORT_DIR" in text

    run(db_path, test)
    assert keys.read_text() == KEYS and keys.stat().st_mtime_ns == before.st_mtime_ns
    assert sorted(p.name for p in ssh.iterdir()) == ["authorized_keys"]  # no temporary file either


def test_export_goes_to_the_export_folder_and_replaces_only_our_exports(home: Path, db_path: Path) -> None:
    downloads = home / "Downloads"

    async def test(client: ClientSession) -> None:
        default = await ok(client, "export_scenario", name="cohort")
        assert default["path"] == str(downloads / "cohort.json")
        named = await ok(client, "export_scenario", name="cohort", output_path="share/c.ndjson", format="ndjson")
        assert named["path"] == str(downloads / "share" / "c.ndjson")
        for format in ("json", "ndjson"):  # an earlier export of ours is replaced (folders: below)
            first = await ok(client, "export_scenario", name="cohort", format=format)
            again = await ok(client, "export_scenario", name="cohort", format=format)
            assert first["path"] == again["path"]
        await ok(client, "export_scenario", name="cohort", format="parquet")
        foreign = downloads / "notes.json"
        foreign.write_text('{"mine": true}')
        text = await refused(client, "export_scenario", name="cohort", output_path="notes.json")
        assert "not a json export of HealthSim" in text and "nothing was written" in text
        empty = downloads / "empty.ndjson"
        empty.write_text("")
        assert "not a ndjson export" in await refused(
            client, "export_scenario", name="cohort", output_path="empty.ndjson", format="ndjson"
        )
        (downloads / "cohort-parquet" / "README.txt").write_text("mine")
        text = await refused(client, "export_scenario", name="cohort", format="parquet")
        assert "'README.txt'" in text
        # The export folder itself is never replaced by a folder export.
        assert (await ok(client, "export_scenario", name="cohort", output_path=".", format="csv"))["path"] == str(
            downloads / "cohort-csv"
        )

    run(db_path, test)
    assert (downloads / "notes.json").read_text() == '{"mine": true}' and (downloads / "empty.ndjson").read_text() == ""
    assert (downloads / "cohort-parquet" / "README.txt").read_text() == "mine"


@pytest.mark.parametrize("format", ["parquet", "csv"])
def test_a_folder_export_over_mcp_replaces_the_earlier_one(home: Path, db_path: Path, format: str) -> None:
    async def test(client: ClientSession) -> None:
        first = await ok(client, "export_scenario", name="cohort", format=format)
        again = await ok(client, "export_scenario", name="cohort", format=format)
        assert first["path"] == again["path"]
        assert sorted(p.name for p in Path(again["path"]).iterdir()) == [".healthsim-export.json", f"patients.{format}"]

    run(db_path, test)


def test_links_out_of_the_export_folder_are_resolved_and_refused(home: Path, db_path: Path, tmp_path: Path) -> None:
    downloads = home / "Downloads"
    downloads.mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    (downloads / "link").symlink_to(outside)
    (downloads / "file-link.json").symlink_to(outside / "target.json")

    async def test(client: ClientSession) -> None:
        assert "only inside the export folder" in await refused(
            client, "export_scenario", name="cohort", output_path="link/x.json"
        )
        assert "only inside the export folder" in await refused(
            client, "export_scenario", name="cohort", output_path="file-link.json"
        )

    run(db_path, test)
    assert list(outside.iterdir()) == []


def test_export_folder_from_the_environment(home: Path, db_path: Path, tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.setenv("HEALTHSIM_EXPORT_DIR", str(tmp_path / "exports"))

    async def test(client: ClientSession) -> None:
        answer = await ok(client, "export_scenario", name="cohort")
        assert answer["path"] == str(tmp_path / "exports" / "cohort.json")
        monkeypatch.setenv("HEALTHSIM_EXPORT_DIR", "relative/folder")
        assert "HEALTHSIM_EXPORT_DIR names 'relative/folder', which is not an absolute path" in await refused(
            client, "export_scenario", name="cohort"
        )

    run(db_path, test)


def test_imports_read_only_from_the_import_folders(home: Path, db_path: Path, tmp_path: Path, monkeypatch: Any) -> None:
    store = ScenarioStore(db_path)
    (home / "Downloads").mkdir()
    inside = store.export_scenario("cohort", home / "Downloads" / "c.json")
    kept = store.export_scenario("cohort", home / ".healthsim" / "k.json")
    outside = store.export_scenario("cohort", tmp_path / "elsewhere" / "e.json")
    secret = home / ".ssh" / "id.json"
    secret.parent.mkdir()
    secret.write_text(outside.read_text())

    async def test(client: ClientSession) -> None:
        assert (await ok(client, "import_scenario", file_path=str(inside), name="a"))["entity_count"] == 1
        assert (await ok(client, "import_scenario", file_path="c.json", name="b"))["name"] == "b"  # a bare name
        assert (await ok(client, "import_scenario", file_path="k.json", name="c"))["name"] == "c"
        assert kept.exists()
        for path in (str(outside), "~/.ssh/id.json", "../.ssh/id.json", "~/Downloads/../.ssh/id.json"):
            text = await refused(client, "import_scenario", file_path=path, name="x")
            assert "over MCP imports read only files inside the import folders" in text, text
            assert "HEALTHSIM_IMPORT_DIRS" in text
        monkeypatch.setenv("HEALTHSIM_IMPORT_DIRS", os.pathsep.join([str(tmp_path / "elsewhere"), "", "~/.healthsim"]))
        assert (await ok(client, "import_scenario", file_path=str(outside), name="d"))["name"] == "d"
        assert "import folders" in await refused(client, "import_scenario", file_path=str(inside), name="e")

    run(db_path, test)
    assert {s["name"] for s in store.list_scenarios()["scenarios"]} == {"cohort", "a", "b", "c", "d"}


def test_the_library_and_cli_keep_full_paths(home: Path, db_path: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from healthsim.cli import app

    target = tmp_path / "anywhere" / "c.json"
    assert ScenarioStore(db_path).export_scenario("cohort", target) == target
    done = CliRunner().invoke(app, ["export", "cohort", "-o", str(tmp_path / "cli.json")])
    assert done.exit_code == 0, done.output
    assert (tmp_path / "cli.json").exists()


def _as(grant: Grant, db: Path, test: Callable[[ClientSession], Awaitable[None]]) -> None:
    with granted(grant):
        run(db, test)


def test_a_token_with_tags_cannot_read_what_other_tokens_exported(home: Path, db_path: Path) -> None:
    """Over HTTP every token shares the export folder, which is also an import folder by
    default: a token of team-b imported ``alpha.json``, exported by team-a's token, and so
    held team-a's scenario as its own. A token with tags now exports into a folder of its
    own inside the export folder and reads nothing else there; tokens without tags (they
    see every scenario anyway) keep the whole folder."""
    store = ScenarioStore(db_path)
    store.save_scenario("alpha", {"patients": [{"patient_id": "SECRET-A"}]}, tags=["team-a"])
    downloads = home / "Downloads"

    async def export_alpha(client: ClientSession) -> None:
        made = await ok(client, "export_scenario", name="alpha")
        assert Path(made["path"]).parent.parent == downloads, made
        assert Path(made["path"]).parent.name.startswith("bot-a-"), made

    async def export_all(client: ClientSession) -> None:
        await ok(client, "export_scenario", name="alpha", output_path="everything.json")

    async def steal(client: ClientSession) -> None:
        (folder,) = downloads.glob("bot-a-*")
        for path in ("alpha.json", f"{folder.name}/alpha.json", f"../{folder.name}/alpha.json", "everything.json"):
            text = await refused(client, "import_scenario", file_path=path, name="stolen")
            assert "SECRET-A" not in text, text
        text = await refused(client, "import_scenario", file_path=str(downloads / "everything.json"), name="stolen")
        assert "bot-b" in text and "own folder" in text, text
        # Its own exports stay its own to read back.
        await ok(client, "save_scenario", name="beta", entities={"patients": [{"patient_id": "B"}]})
        await ok(client, "export_scenario", name="beta")
        again = await ok(client, "import_scenario", file_path="beta.json", name="beta-again")
        assert again["entity_count"] == 1

    async def reuse(client: ClientSession) -> None:
        # A new token under a revoked one's name, with other tags: not the old one's folder.
        text = await refused(client, "import_scenario", file_path="alpha.json", name="stolen")
        assert "SECRET-A" not in text and "no such file" in text, text

    _as(Grant("bot-a", "write", ("team-a",)), db_path, export_alpha)
    _as(Grant("all-bot", "write"), db_path, export_all)
    _as(Grant("bot-b", "write", ("team-b",)), db_path, steal)
    _as(Grant("bot-a", "write", ("team-b",)), db_path, reuse)
    _as(Grant("bot-a", "write", ("TEAM-A ",)), db_path, export_alpha)  # the same tags: the same folder
    (mine,) = (downloads).glob("bot-a-*")
    (theirs,) = (downloads).glob("bot-b-*")
    assert (mine / "alpha.json").exists() and (theirs / "beta.json").exists()
    assert not store.list_scenarios(search="stolen")["scenarios"]
