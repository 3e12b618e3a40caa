"""Export: the 1.0 format, default and explicit paths, atomic and streamed writing."""

from __future__ import annotations

import errno
import json
import os
import socket
import stat
import subprocess
import sys
import tempfile
from importlib import resources
from pathlib import Path

import duckdb
import jsonschema
import pytest

from healthsim.state import (
    InvalidInputError,
    ScenarioNotFoundError,
    ScenarioStore,
    export_scenario_to_json,
    save_scenario,
)
from healthsim.state.exchange import export as export_module
from healthsim.state.exchange.export import safe_file_name
from healthsim.state.reading import ScenarioReader
from helpers.legacy_files import claims
from helpers.paths import NO_SUCH_USER, no_such_user
from helpers.processes import kill_while_working
from helpers.sample import diabetes_cohort

SCHEMA = json.loads(
    resources.files("healthsim.state").joinpath("schemas/scenario-1.0.schema.json").read_text(encoding="utf-8")
)


def validate(document: dict) -> None:
    jsonschema.Draft202012Validator(SCHEMA, format_checker=jsonschema.FormatChecker()).validate(document)


def test_schema_is_valid_draft_2020_12() -> None:
    jsonschema.Draft202012Validator.check_schema(SCHEMA)


def test_export_format_and_default_path(store: ScenarioStore, isolated_home: Path) -> None:
    # HEALTHSIM_DB names the store's database, on either engine.
    entities = {**diabetes_cohort(3), "members": [], "claims": claims(2)}
    sid = save_scenario("diabetes-cohort", entities, "Type 2 cohort", ["diabetes"])
    path = export_scenario_to_json("diabetes-cohort")
    assert path == isolated_home / "Downloads" / "diabetes-cohort.json"
    assert path.is_absolute()
    document = json.loads(path.read_text(encoding="utf-8"))
    validate(document)
    assert list(document) == [
        "schema_version",
        "scenario_id",
        "name",
        "description",
        "created_at",
        "updated_at",
        "tags",
        "metadata",
        "entities",
    ]
    assert document["schema_version"] == "1.0"
    assert document["scenario_id"] == sid
    assert document["name"] == "diabetes-cohort" and document["description"] == "Type 2 cohort"
    assert document["tags"] == ["diabetes"]
    assert document["created_at"].endswith("Z")
    assert document["entities"] == entities
    assert list(document["entities"]) == list(entities)
    assert document["entities"]["patients"][0]["_provenance"]["source_type"] == "generated"
    assert store.load_scenario(sid)["entities"] == entities


def test_export_keeps_exotic_values_and_validates(store: ScenarioStore, tmp_path: Path) -> None:
    entities = {"patients": [{"patient_id": "A", "big": 2**90, "z": "\u0000 é 🎉", "f": 0.1, "n": None, "e": {}}]}
    store.save_scenario("exotic", entities)
    path = store.export_scenario_to_json("exotic", tmp_path / "exotic.json")
    text = path.read_text(encoding="utf-8")
    validate(json.loads(text))
    assert json.loads(text)["entities"] == entities
    assert "1237940039285380274899124224" in text  # 2**90 written exactly


def test_explicit_paths(store: ScenarioStore, tmp_path: Path) -> None:
    store.save_scenario("x", {"patients": [{"patient_id": "A"}]})
    nested = store.export_scenario_to_json("x", tmp_path / "a" / "b" / "custom.json")
    assert nested == tmp_path / "a" / "b" / "custom.json" and nested.exists()
    into_folder = store.export_scenario_to_json("x", tmp_path)
    assert into_folder == tmp_path / "x.json"
    new_folder = store.export_scenario_to_json("x", f"{tmp_path}/new-folder/")
    assert new_folder == tmp_path / "new-folder" / "x.json"
    relative = Path(os.path.relpath(tmp_path / "rel.json"))
    assert store.export_scenario_to_json("x", relative) == tmp_path / "rel.json"
    umask = os.umask(0o027)
    try:
        shared = store.export_scenario_to_json("x", tmp_path / "umask.json")
    finally:
        os.umask(umask)
    assert stat.S_IMODE(shared.stat().st_mode) == 0o640  # a normal file, following the umask
    again = store.export_scenario_to_json("x", nested)  # replaces an earlier export
    assert again == nested and json.loads(nested.read_text())["name"] == "x"


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("diabetes-cohort", "diabetes-cohort.json"),
        ("../../etc/passwd", "____etc_passwd.json"),
        ("a/b\\c", "a_b_c.json"),
        ("..", "_.json"),
        (".hidden", "hidden.json"),
        ("tab\tname", "tab_name.json"),
        ('win:*?"<>|', "win_______.json"),
        ("x" * 300, "x" * 120 + ".json"),
        ("Cohorte médica", "Cohorte médica.json"),
    ],
)
def test_safe_file_name(name: str, expected: str) -> None:
    assert safe_file_name(name) == expected
    assert "/" not in safe_file_name(name) and ".." not in safe_file_name(name)


def test_default_path_for_unsafe_name(store: ScenarioStore, isolated_home: Path) -> None:
    # HEALTHSIM_DB names the store's database, on either engine.
    save_scenario("../escape", {})
    path = export_scenario_to_json("../escape")
    assert path.parent == isolated_home / "Downloads"
    assert path.name == "__escape.json"
    assert json.loads(path.read_text())["scenario_id"] == store.load_scenario("../escape")["scenario_id"]


def test_export_by_uuid_and_not_found(store: ScenarioStore, tmp_path: Path) -> None:
    sid = store.save_scenario("by-id", {})
    assert json.loads(store.export_scenario_to_json(sid, tmp_path / "f.json").read_text())["name"] == "by-id"
    with pytest.raises(ScenarioNotFoundError, match="'ghost'"):
        store.export_scenario_to_json("ghost", tmp_path / "ghost.json")
    assert not (tmp_path / "ghost.json").exists()


def test_export_streams_in_chunks(store: ScenarioStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ScenarioReader, "CHUNK_ROWS", 7)  # force many chunks
    entities = {"patients": [{"patient_id": f"P{i}", "i": i} for i in range(50)], "claims": [{"claim_id": "C"}]}
    store.save_scenario("chunked", entities)
    path = store.export_scenario_to_json("chunked", tmp_path / "c.json")
    assert json.loads(path.read_text())["entities"] == entities


# DuckDB only: a file with an earlier release's DuckDB tables (the legacy_db fixture).
def test_export_of_legacy_interleaved_rows(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import legacy_db

    db = tmp_path / "legacy.duckdb"
    legacy_db.build(str(db))
    monkeypatch.setattr(ScenarioReader, "CHUNK_ROWS", 1)
    path = ScenarioStore(db).export_scenario_to_json("legacy-diabetes", tmp_path / "l.json")
    document = json.loads(path.read_text())
    validate(document)
    assert [p["patient_id"] for p in document["entities"]["patients"]] == [
        "MRN-00012345",
        "3f2b8c1e-9d4a-4e7b-8c6f-1a2b3c4d5e6f",
    ]
    assert document["entities"]["patients"][1]["big"] == 123456789012345678901234567890


EXPORT_SCRIPT = """
import sys
from healthsim.state import ScenarioStore
print("exporting", flush=True)
ScenarioStore(sys.argv[1]).export_scenario_to_json("big", sys.argv[2])
print("exported", flush=True)
"""


@pytest.mark.slow
def test_kill_during_export_leaves_no_half_file(store: ScenarioStore, tmp_path: Path) -> None:
    store.save_scenario("big", {"patients": [{"patient_id": f"P{i}", "pad": "x" * 400} for i in range(150_000)]})
    target = tmp_path / "out" / "big.json"
    for delay in (0.05, 0.2, 0.4):
        proc = subprocess.Popen(
            [sys.executable, "-c", EXPORT_SCRIPT, str(store.path), str(target)], stdout=subprocess.PIPE, text=True
        )
        kill_while_working(proc, "exporting", delay)
        if target.exists():  # the rename happened: the file must be whole
            assert len(json.loads(target.read_text())["entities"]["patients"]) == 150_000
            target.unlink()
    leftovers = [p.name for p in (tmp_path / "out").iterdir()] if (tmp_path / "out").exists() else []
    assert all(name.endswith(".partial") for name in leftovers)  # never a half file at the target


def tree(folder: Path) -> list[str]:
    """Every file and folder under ``folder`` (to check an export left nothing behind)."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


@pytest.mark.parametrize("output", ["file.txt/out.json", "file.txt/", "file.txt/sub/deeper/out.json"])
def test_export_under_a_regular_file_is_invalid_input(store: ScenarioStore, tmp_path: Path, output: str) -> None:
    # Was a raw FileExistsError / NotADirectoryError ("unexpected ... please report this").
    store.save_scenario("x", {"patients": [{"patient_id": "A"}]})
    work = tmp_path / "work"
    work.mkdir()
    (work / "file.txt").write_text("not a folder")
    before = tree(work)
    with pytest.raises(InvalidInputError) as caught:
        store.export_scenario_to_json("x", f"{work}/{output}")
    message = str(caught.value)
    assert f"'{work / 'file.txt'}' is a file, not a folder" in message, message
    assert "choose another output path" in message and "nothing was written" in message
    assert tree(work) == before and (work / "file.txt").read_text() == "not a folder"


@pytest.mark.parametrize(
    ("failing", "code", "hint"),
    [
        ("mkstemp", errno.EACCES, "permission denied in"),
        ("mkstemp", errno.EROFS, "is on a read-only file system"),
        ("replace", errno.ENOSPC, "no space left on the disk"),
        ("replace", errno.EIO, "choose another output path"),
        ("mkdir", errno.EACCES, "permission denied in"),
    ],
)
def test_export_the_file_system_refuses_is_invalid_input_and_leaves_nothing(
    store: ScenarioStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, failing: str, code: int, hint: str
) -> None:
    # Permissions cannot be tested for real as root, so the file system's refusal is simulated.
    store.save_scenario("x", {"patients": [{"patient_id": "A"}]})
    work = tmp_path / "work"
    work.mkdir()

    def refuse(*args: object, **kwargs: object) -> None:
        raise OSError(code, os.strerror(code), str(args[0]) if args else None)

    if failing == "mkstemp":
        monkeypatch.setattr(tempfile, "mkstemp", refuse)  # (the file rules are in healthsim.state.files)
    elif failing == "replace":
        monkeypatch.setattr(export_module.os, "replace", refuse)
    else:
        original_mkdir = Path.mkdir

        def mkdir(self: Path, *args: object, **kwargs: object) -> None:
            if self.name == "deeper":  # "new" is made, then "deeper" is refused
                refuse(self)
            original_mkdir(self, *args, **kwargs)  # type: ignore[arg-type]

        monkeypatch.setattr(Path, "mkdir", mkdir)
    target = work / "new" / "deeper" / "out.json"
    with pytest.raises(InvalidInputError) as caught:
        store.export_scenario_to_json("x", target)
    message = str(caught.value)
    assert message.startswith(f"cannot export to '{target}': ") and hint in message, message
    assert message.endswith("nothing was written")
    assert tree(work) == []  # no temporary file, no folder made for the export


def test_export_path_with_a_lone_surrogate_is_invalid_input(store: ScenarioStore, tmp_path: Path) -> None:
    # Was a raw UnicodeEncodeError from the file system call.
    store.save_scenario("x", {})
    before = tree(tmp_path)
    with pytest.raises(InvalidInputError, match=r"output_path '.*\\ud800.json' holds a lone surrogate"):
        store.export_scenario_to_json("x", f"{tmp_path}/\ud800.json")
    assert tree(tmp_path) == before


def duckdb_database(path: Path) -> Path:
    """A small DuckDB database at ``path`` (not a scenario store): one table, ``kept``."""
    with duckdb.connect(str(path)) as con:
        con.execute("CREATE TABLE kept AS SELECT 42 AS answer")
    return path


def still_holds_its_table(path: Path) -> bool:
    with duckdb.connect(str(path), read_only=True) as con:
        return con.execute("SELECT answer FROM kept").fetchall() == [(42,)]


@pytest.mark.parametrize("how", ["file", "wal", "link", "module"])
def test_export_onto_the_scenario_database_is_refused_and_keeps_it(
    store: ScenarioStore, db_path: Path, tmp_path: Path, how: str
) -> None:
    # Was data loss: the export was renamed over the database file, and the store was gone.
    entities = {"patients": [{"patient_id": "A"}]}
    store.save_scenario("x", entities)
    target = {"file": db_path, "wal": Path(f"{db_path}.wal"), "link": tmp_path / "link.duckdb"}.get(how, db_path)
    if how == "link":
        target.symlink_to(db_path)
    before = tree(tmp_path)
    with pytest.raises(InvalidInputError) as caught:
        if how == "module":  # the module function, on the store HEALTHSIM_DB names
            export_scenario_to_json("x", db_path)
        else:
            store.export_scenario_to_json("x", target)
    message = str(caught.value)
    assert message.startswith(f"cannot export to '{target}': "), message
    expected = "the write-ahead log of the scenario database" if how == "wal" else "the scenario database itself"
    assert expected in message and message.endswith("choose another file; nothing was written"), message
    assert tree(tmp_path) == before  # no temporary file, the WAL not made
    assert ScenarioStore(db_path).load_scenario("x")["entities"] == entities


@pytest.mark.parametrize("how", ["file", "folder", "wal"])
def test_export_onto_any_duckdb_database_is_refused(store: ScenarioStore, tmp_path: Path, how: str) -> None:
    # Another DuckDB file (another store, an analyst's database): replacing it is surely a mistake.
    store.save_scenario("x", {"patients": [{"patient_id": "A"}]})
    work = tmp_path / "work"
    work.mkdir()
    database = duckdb_database(work / ("x.json" if how == "folder" else "other.duckdb"))
    output = {"file": database, "folder": work, "wal": Path(f"{database}.wal")}[how]
    target = work / "x.json" if how == "folder" else output
    before = tree(work)
    with pytest.raises(InvalidInputError) as caught:
        store.export_scenario_to_json("x", output)
    message = str(caught.value)
    assert message.startswith(f"cannot export to '{target}': "), message
    expected = f"the write-ahead log of the DuckDB database '{database}'" if how == "wal" else "a DuckDB database"
    assert expected in message and message.endswith("choose another file; nothing was written"), message
    assert tree(work) == before
    assert still_holds_its_table(database)


def test_export_still_replaces_a_file_that_only_mentions_duckdb(store: ScenarioStore, tmp_path: Path) -> None:
    # The check reads DuckDB's magic bytes where DuckDB puts them (offset 8), nothing else.
    store.save_scenario("x", {"patients": [{"patient_id": "A"}]})
    for text in ("DUCK", "DUCKDB notes", "12345678DUCX and more"):
        target = tmp_path / "notes.json"
        target.write_text(text)
        assert store.export_scenario_to_json("x", target) == target
        assert json.loads(target.read_text())["name"] == "x"


# --- targets that are not regular files, and paths no file can have -----------------------------

NOT_REGULAR = "it is not a regular file (a pipe, device or socket); choose a file path; nothing was written"


def special_file(path: Path, kind: str) -> Path:
    """Make a pipe (``fifo``) or a Unix socket file (``socket``) at ``path``, never a device."""
    if kind == "fifo":
        os.mkfifo(path)
    else:  # a Unix socket's path is limited to ~108 bytes: bind a name relative to its folder
        sock = socket.socket(socket.AF_UNIX)
        cwd = os.getcwd()
        os.chdir(path.parent)
        try:
            sock.bind(path.name)
        finally:
            os.chdir(cwd)
        sock.close()  # the socket file stays
    return path


def export_with(store: ScenarioStore, writer: str, output: str | Path) -> Path:
    if writer == "json":
        return store.export_scenario_to_json("x", output)
    if writer == "ndjson":
        return store.export_scenario("x", output, format="ndjson")
    return store.report_scenario("x", output)


@pytest.mark.parametrize(
    ("writer", "kind", "via"),
    [
        ("json", "fifo", "path"),
        ("json", "fifo", "folder"),
        ("json", "fifo", "link"),
        ("json", "socket", "path"),
        ("ndjson", "fifo", "path"),
        ("ndjson", "socket", "link"),
        ("report", "fifo", "path"),
        ("report", "fifo", "link"),
    ],
)
def test_export_onto_a_pipe_or_socket_is_refused_and_keeps_it(
    store: ScenarioStore, tmp_path: Path, writer: str, kind: str, via: str
) -> None:
    # Was a silent replacement: the pipe (a device, a socket) became a regular file.
    store.save_scenario("x", {"patients": [{"patient_id": "A"}]})
    work = tmp_path / "work"
    work.mkdir()
    name = {"json": "x.json", "ndjson": "x.ndjson", "report": "x-report.html"}[writer]
    special = special_file(work / (name if via == "folder" else f"special-{name}"), kind)
    output = {"path": special, "folder": work, "link": work / f"link-{name}"}[via]
    if via == "link":  # the link is followed: what it names is what would be replaced
        output.symlink_to(special)
    target = work / name if via == "folder" else output
    before = tree(work)
    with pytest.raises(InvalidInputError) as caught:
        export_with(store, writer, output)
    assert str(caught.value) == f"cannot export to '{target}': {NOT_REGULAR}"
    assert tree(work) == before  # no temporary file
    mode = os.lstat(special).st_mode
    assert (stat.S_ISFIFO if kind == "fifo" else stat.S_ISSOCK)(mode)  # still what it was
    if via == "link":
        assert os.readlink(output) == str(special)


def test_export_onto_a_link_to_a_file_still_replaces_the_link(store: ScenarioStore, tmp_path: Path) -> None:
    # What a link to a regular file gets is unchanged: the export replaces the link itself
    # and leaves the file it named alone; a link to a pipe is refused.
    store.save_scenario("x", {"patients": [{"patient_id": "A"}]})
    real, link = tmp_path / "real.json", tmp_path / "link.json"
    real.write_text("kept")
    link.symlink_to(real)
    assert store.export_scenario_to_json("x", link) == link
    assert not link.is_symlink() and json.loads(link.read_text())["name"] == "x"
    assert real.read_text() == "kept"
    pipe_link = tmp_path / "pipe-link.json"
    pipe_link.symlink_to(special_file(tmp_path / "pipe", "fifo"))
    with pytest.raises(InvalidInputError, match="not a regular file"):
        store.export_scenario_to_json("x", pipe_link)
    assert pipe_link.is_symlink()


def test_export_onto_a_device_is_refused(store: ScenarioStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # No device node is made or touched: the target is a plain path that os.stat reports
    # as a character device (as /dev/null is).
    store.save_scenario("x", {"patients": [{"patient_id": "A"}]})
    target = tmp_path / "work" / "device.json"
    target.parent.mkdir()
    real_stat = os.stat

    def fake_stat(path: object, *args: object, **kwargs: object) -> os.stat_result:
        if os.fspath(path) == str(target):  # type: ignore[call-overload]
            return os.stat_result((stat.S_IFCHR | 0o666, 1, 1, 1, 0, 0, 0, 0, 0, 0))
        return real_stat(path, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(export_module.os, "stat", fake_stat)
    with pytest.raises(InvalidInputError) as caught:
        store.export_scenario_to_json("x", target)
    monkeypatch.undo()
    assert str(caught.value) == f"cannot export to '{target}': {NOT_REGULAR}"
    assert tree(target.parent) == []


def test_a_real_device_is_refused_by_a_read_only_check() -> None:
    # Only stat: the check never opens, writes or replaces what it is given.
    null = Path("/dev/null")
    if not null.exists() or not stat.S_ISCHR(os.stat(null).st_mode):
        pytest.skip("no /dev/null character device here")
    with pytest.raises(InvalidInputError, match="not a regular file"):
        export_module.refuse_special_file(null)


@pytest.mark.parametrize("writer", ["json", "ndjson", "report"])
@pytest.mark.parametrize(
    ("case", "expected"),
    [
        pytest.param(
            "nul",
            r"output_path '.*/a\\x00b\.\w+' holds a NUL character \(\\x00\), which no file name can; remove it",
            id="nul",
        ),
        pytest.param(
            "user",
            rf"cannot export to '~{NO_SUCH_USER}/x\.\w+': there is no user '{NO_SUCH_USER}', "
            rf"so '~{NO_SUCH_USER}' names no folder",
            id="unknown-user",
        ),
        pytest.param(
            "long-file", r"cannot export to '.*/y{300}\.\w+': the path or a name in it is too long", id="long-file"
        ),
        pytest.param(
            "long-folder",
            r"cannot export to '.*/y{300}/x\.\w+': the path or a name in it is too long",
            id="long-folder",
        ),
    ],
)
def test_export_to_a_path_no_file_can_have_is_invalid_input(
    store: ScenarioStore, tmp_path: Path, writer: str, case: str, expected: str
) -> None:
    # Were raw ValueError, RuntimeError and OSError ("unexpected error ... please report this").
    no_such_user()  # (skipped where such a user exists)
    store.save_scenario("x", {"patients": [{"patient_id": "A"}]})
    work = tmp_path / "work"
    work.mkdir()
    suffix = {"json": ".json", "ndjson": ".ndjson", "report": ".html"}[writer]
    output = {
        "nul": f"{work}/a\x00b{suffix}",
        "user": f"~{NO_SUCH_USER}/x{suffix}",
        "long-file": f"{work}/{'y' * 300}{suffix}",
        "long-folder": f"{work}/{'y' * 300}/x{suffix}",
    }[case]
    with pytest.raises(InvalidInputError, match=expected) as caught:
        export_with(store, writer, output)
    assert str(caught.value).endswith("nothing was written"), caught.value
    assert tree(work) == []


def test_export_to_the_longest_file_name_works(store: ScenarioStore, tmp_path: Path) -> None:
    # Was "File name too long": the temporary file's name (the target's with a prefix and
    # suffix) did not fit where the target's own name of 255 bytes does.
    store.save_scenario("x", {"patients": [{"patient_id": "A"}]})
    target = tmp_path / "work" / ("é" * 124 + "yy.json")  # 255 bytes in UTF-8
    assert len(os.fsencode(target.name)) == 255
    assert store.export_scenario_to_json("x", target) == target
    assert json.loads(target.read_text())["name"] == "x"
    assert tree(target.parent) == [target.name]
