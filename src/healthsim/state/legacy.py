"""Bring forward the JSON files that older HealthSim tools left in ``~/.healthsim/``.

:func:`migrate_legacy_files` finds ``~/.healthsim/scenarios/*.json`` and
``~/.healthsim/workspaces/*.json``, copies every one into a backup folder before anything
else, imports each file in its own transaction, and verifies each import by reading the
scenario's name and per-type entity counts back from the database and comparing them with
an independent read of the file. Originals are never moved, changed or deleted.

A file is recognised as migrated by its content (SHA-256, kept in the scenario's
``metadata["provenance"]["source_sha256"]``), not by its name, so running the migration
again imports nothing twice, and a file edited since is imported again. A bad file is
reported and skipped; the others still migrate.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import re
import shutil
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .database import connect
from .errors import StateError
from .exchange.importer import import_scenario, survey_file
from .exchange.shapes import plan_import
from .results import MigrationStatus
from .store import ScenarioStore
from .validation import MAX_NAME_LENGTH, as_uuid

# What a name may not hold (validation's rule) and what a file name may: control characters,
# line separators, and the lone surrogates of undecodable bytes.
_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")

__all__ = [
    "FileReport",
    "MigrationReport",
    "default_sources",
    "default_backup_root",
    "discover_legacy_files",
    "migrate_legacy_files",
    "migration_status",
]


def default_sources() -> list[Path]:
    """``~/.healthsim/scenarios`` and ``~/.healthsim/workspaces`` (``~`` read at each call)."""
    root = Path.home() / ".healthsim"
    return [root / "scenarios", root / "workspaces"]


def default_backup_root() -> Path:
    """``~/.healthsim/scenarios_backup``."""
    return Path.home() / ".healthsim" / "scenarios_backup"


@dataclass
class FileReport:
    """What happened to one legacy file.

    ``status`` is ``migrated``, ``already-migrated``, ``failed``, or in a dry run
    ``would-migrate``.
    """

    path: Path
    status: MigrationStatus
    scenario_name: str | None = None
    scenario_id: str | None = None
    counts: dict[str, int] = field(default_factory=dict)
    message: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "file": str(self.path),
            "status": self.status,
            "scenario_name": self.scenario_name,
            "scenario_id": self.scenario_id,
            "entities_by_type": self.counts,
            "message": self.message,
        }


@dataclass
class MigrationReport:
    """The outcome of a run (or a dry run) over every legacy file found."""

    files: list[FileReport]
    backup_dir: Path | None = None
    dry_run: bool = False

    def count(self, status: MigrationStatus) -> int:
        return sum(1 for report in self.files if report.status == status)

    @property
    def ok(self) -> bool:
        """True when no file failed (also when there was nothing to do)."""
        return self.count("failed") == 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "dry_run": self.dry_run,
            "backup_dir": str(self.backup_dir) if self.backup_dir else None,
            "found": len(self.files),
            "migrated": self.count("migrated"),
            "already_migrated": self.count("already-migrated"),
            "would_migrate": self.count("would-migrate"),
            "failed": self.count("failed"),
            "files": [report.as_dict() for report in self.files],
        }


def discover_legacy_files(sources: Iterable[Path] | None = None) -> list[Path]:
    """The ``*.json`` files directly in the source folders, sorted by path."""
    found: list[Path] = []
    for folder in default_sources() if sources is None else sources:
        try:
            folder = Path(folder).expanduser()
        except RuntimeError:  # "~nobody": no such user, so no such folder to look in
            continue
        if folder.is_dir():
            found.extend(sorted(p for p in folder.glob("*.json") if p.is_file()))
    return found


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _migrated_hashes(store: ScenarioStore) -> dict[str, str]:
    """source_sha256 -> scenario name, read without changing the database file."""
    # Read-only and without schema upgrades: --status and --dry-run touch nothing on disk.
    with connect(store.path, read_only=True) as con:
        if con is None or not con.engine.schema_version(con):  # nothing saved there yet
            return {}
        digest = con.engine.json_text("metadata", ["provenance", "source_sha256"])
        rows = con.execute(f"SELECT {digest}, name FROM scenarios WHERE {digest} IS NOT NULL").fetchall()
    return {digest: name for digest, name in rows}


def _backup(files: list[Path], root: Path) -> Path:
    """Copy every file into a fresh backup folder; originals are only read."""
    folder = root
    if folder.exists():
        stamp = _dt.datetime.now(_dt.UTC).strftime("%Y%m%dT%H%M%SZ")
        folder = root.with_name(f"{root.name}-{stamp}")
        suffix = 1
        while folder.exists():
            suffix += 1
            folder = root.with_name(f"{root.name}-{stamp}-{suffix}")
    for path in files:
        target = folder / path.parent.name / path.name  # scenarios/x.json, workspaces/x.json
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, target)
    return folder


def _usable_name(stem: str) -> str:
    """A scenario name made from a file name that is none (a UUID, too long, control characters).

    A file that holds no name takes its file name; migration cannot ask for another, and a file
    named by its id (``<uuid>.json``) otherwise failed on every run.
    """
    text = _UNPRINTABLE.sub(" ", stem).strip()[:MAX_NAME_LENGTH].strip() or "legacy file"
    return f"legacy {text}" if as_uuid(text) is not None else text


def _with_suffix(wanted: str, suffix: str) -> str:
    """``wanted`` and ``suffix``, ``wanted`` shortened so that both fit a name's length."""
    return f"{wanted[: MAX_NAME_LENGTH - len(suffix)].rstrip()}{suffix}"


def _free_name(store: ScenarioStore, wanted: str) -> str:
    existing = {s["name"] for s in store.list_scenarios(search=wanted[:100], limit=10_000)["scenarios"]}
    if wanted not in existing:
        return wanted
    candidate, n = _with_suffix(wanted, " (migrated)"), 1
    while candidate in existing:
        n += 1
        candidate = _with_suffix(wanted, f" (migrated {n})")
    return candidate


def _migrate_one(store: ScenarioStore, path: Path, digest: str, dry_run: bool) -> FileReport:
    try:
        survey = survey_file(path)  # checks the whole file, and counts independently
        plan = plan_import(path, survey, None, stem_name=_usable_name(path.stem))
        expected = dict(survey.counts)
        if dry_run:
            return FileReport(path, "would-migrate", plan.name, counts=expected)
        name = _free_name(store, plan.name)
        scenario_id = import_scenario(
            store.write_scenario, path, name, provenance={"operation": "migration", "source_sha256": digest}
        )
        with store.open_scenario(scenario_id) as reader:
            found_name, found = reader.header.name, dict(reader.counts)
        if found_name != name or found != expected:
            store.delete_scenario(scenario_id)
            return FileReport(
                path,
                "failed",
                name,
                message=f"verification failed: expected {name!r} with {expected}, "
                f"read back {found_name!r} with {found}; the import was removed",
            )
        note = f"imported as {name!r} (the name {plan.name!r} was taken)" if name != plan.name else ""
        return FileReport(path, "migrated", name, scenario_id, found, note)
    except (StateError, OSError) as exc:
        return FileReport(path, "failed", message=str(exc))


def migrate_legacy_files(
    store: ScenarioStore,
    sources: Iterable[Path] | None = None,
    *,
    dry_run: bool = False,
    backup_root: Path | None = None,
    progress: Callable[[FileReport], None] | None = None,
) -> MigrationReport:
    """Migrate every legacy JSON file into ``store``.

    Args:
        store: the database to import into.
        sources: folders to read (default: :func:`default_sources`).
        dry_run: report what would happen; change nothing on disk (no backup, no database).
        backup_root: where backups go (default: :func:`default_backup_root`); a new
            timestamped sibling folder is used when it exists already.
        progress: called with each file's report as soon as it is known.

    Returns:
        The per-file reports; ``report.ok`` is False if any file failed.
    """
    files = discover_legacy_files(sources)
    migrated = _migrated_hashes(store)
    digests = {path: _sha256(path) for path in files}
    pending = [path for path in files if digests[path] not in migrated]
    backup_dir = None
    if pending and not dry_run:
        backup_dir = _backup(files, backup_root or default_backup_root())
    reports: list[FileReport] = []
    for path in files:
        digest = digests[path]
        if digest in migrated:
            report = FileReport(path, "already-migrated", migrated[digest], message="same content already imported")
        else:
            report = _migrate_one(store, path, digest, dry_run)
            if report.status == "migrated":
                migrated[digest] = report.scenario_name or ""
        reports.append(report)
        if progress is not None:
            progress(report)
    return MigrationReport(reports, backup_dir, dry_run)


def migration_status(store: ScenarioStore, sources: Iterable[Path] | None = None) -> dict[str, int]:
    """How many legacy files exist and how many are already in the database (read-only)."""
    files = discover_legacy_files(sources)
    migrated = _migrated_hashes(store)
    done = sum(1 for path in files if _sha256(path) in migrated)
    return {"found": len(files), "migrated": done, "pending": len(files) - done}
