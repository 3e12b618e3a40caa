"""The folders an assistant may write to and read from over MCP.

The library and the command line write and read any path their user names. Over MCP the
path comes from an assistant, whose text may come from entity data or a web page, so:

- **Exports** go only inside the export folder, ``HEALTHSIM_EXPORT_DIR`` (default
  ``~/Downloads``). A relative ``output_path`` is taken inside it; any other path must
  lie inside it once ``~``, ``..`` and symbolic links are resolved. A parquet or csv
  export never replaces the export folder itself (it writes a folder there, replaced whole).
- An export **never replaces what is not an earlier export of ours**. Ours are
  recognised by their first bytes, which no other program writes by chance:
  ``{"schema_version":"…","scenario_id":"`` for json (the header line our exporter writes
  first); ``{"entity_type":"…","entity_id":"<uuid>","data":`` for ndjson; for parquet
  and csv a folder holding the library's export manifest (``.healthsim-export.json``;
  the library refuses one that also holds files the export did not write), or an empty
  folder (nothing to lose). Anything
  else — an empty file, a key file, a folder with one foreign file — is refused, and
  nothing is written.
- **Imports** read only files inside the import folders, ``HEALTHSIM_IMPORT_DIRS``
  (``os.pathsep``-separated, default ``~/Downloads`` and ``~/.healthsim``), resolved the
  same way; a relative ``file_path`` is looked for in each folder in turn.

Both variables are read at each call, as ``HEALTHSIM_DB`` is. A folder in them must be
an absolute path (``~`` allowed); anything else is refused with the variable's name.

Over HTTP many tokens share these folders, and the export folder is an import folder by
default: a token limited to some tags could import what another token exported, and so
read scenarios it cannot see. A **token with tags** therefore exports into a folder of
its own, ``<export folder>/<token name>-<digest of its tags>/``, and reads nothing else of
the export folder (its own folder is looked in first for a bare name). A token without tags sees every
scenario anyway and keeps the whole export folder.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path

from ..state import InvalidInputError
from ..state.access import current_grant
from ..state.exchange.export import home_folder_problem, safe_file_name
from ..state.exchange.formats import MANIFEST, is_export_folder

__all__ = ["EXPORT_DIR_VARIABLE", "IMPORT_DIRS_VARIABLE", "export_folder", "export_target", "import_source"]

EXPORT_DIR_VARIABLE = "HEALTHSIM_EXPORT_DIR"
IMPORT_DIRS_VARIABLE = "HEALTHSIM_IMPORT_DIRS"
_OUR_JSON = re.compile(rb'\{"schema_version":"[^"\\]{1,20}","scenario_id":"')
_OUR_NDJSON = re.compile(rb'\{"entity_type":"[a-z][a-z0-9_]*","entity_id":"[0-9a-f-]{36}","data":')
_FOLDER_FORMATS = ("parquet", "csv", "fhir", "fhir-bundle")


def _folder(text: str, variable: str) -> Path:
    """One folder named in ``variable``, ``~`` expanded, links and ``..`` resolved."""
    problem = home_folder_problem(text)
    if problem is not None:
        raise InvalidInputError(f"{variable} names {text!r}: {problem}")
    path = Path(text).expanduser()
    if not path.is_absolute():
        raise InvalidInputError(f"{variable} names {text!r}, which is not an absolute path; write the full path")
    return Path(os.path.realpath(path))


def export_folder() -> Path:
    """The export folder: ``HEALTHSIM_EXPORT_DIR``, else ``~/Downloads`` (resolved)."""
    return _folder(os.environ.get(EXPORT_DIR_VARIABLE) or "~/Downloads", EXPORT_DIR_VARIABLE)


def _own_folder(folder: Path) -> Path | None:
    """The caller's own folder inside the export ``folder`` when its grant has tags, else None:
    ``<token name>-<digest of its tags>`` (a token's name is letters, digits and ``._@+-``,
    starting with a letter or digit). The tags are part of it because a revoked token's name
    may be given to a new token: with other tags, it must not read the old one's exports."""
    grant = current_grant()
    if grant is None or not grant.tags:
        return None
    tags = sorted({tag.strip().lower() for tag in grant.tags})  # (tags match in any case)
    digest = hashlib.sha256(json.dumps(tags).encode()).hexdigest()[:8]
    return folder / f"{grant.name}-{digest}"


def import_folders() -> list[Path]:
    """The import folders: ``HEALTHSIM_IMPORT_DIRS``, else ``~/Downloads`` and ``~/.healthsim``."""
    raw = os.environ.get(IMPORT_DIRS_VARIABLE)
    names = [n for n in raw.split(os.pathsep) if n.strip()] if raw else ["~/Downloads", "~/.healthsim"]
    return [_folder(name, IMPORT_DIRS_VARIABLE) for name in names]


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def _resolved(text: str, base: Path) -> Path:
    """``text`` (``~`` expanded; relative to ``base``) with links and ``..`` resolved."""
    if "\x00" in text:
        raise InvalidInputError(f"path {text!r} holds a NUL character, which no file name can; remove it")
    problem = home_folder_problem(text)
    if problem is not None:
        raise InvalidInputError(f"cannot use {text!r}: {problem}")
    path = Path(text).expanduser()
    return Path(os.path.realpath(base / path))  # an absolute path replaces base


def export_target(name: str, output_path: str | None, format: str) -> Path:
    """The checked path to export scenario ``name`` to over MCP.

    Args:
        name: the scenario's name (names the default file or folder).
        output_path: as the assistant gave it (None: the default name in the export folder).
        format: ``json``, ``ndjson``, ``parquet`` or ``csv``.

    Returns:
        An absolute path inside the export folder, links resolved: the file (json,
        ndjson) or folder (parquet, csv) to write, which is absent or an earlier export.

    Raises:
        InvalidInputError: the path leads outside the export folder, or names something
            that is not an earlier export of ours; nothing is written.
    """
    folder = export_folder()
    own = _own_folder(folder)
    if own is not None:
        try:
            own.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            why = exc.strerror or exc
            raise InvalidInputError(f"cannot make this token's export folder {str(own)!r}: {why}") from None
        folder = Path(os.path.realpath(own))
    suffix = f"-{format}" if format in _FOLDER_FORMATS else f".{format}"
    target = folder if output_path is None else _resolved(output_path, folder)
    if not _inside(target, folder):
        raise InvalidInputError(
            f"cannot export to {output_path!r}: over MCP exports go only inside the export folder "
            f"{str(folder)!r} ({EXPORT_DIR_VARIABLE}); give a file name or a path inside it; nothing was written"
        )
    if target == folder or (target.is_dir() and format not in _FOLDER_FORMATS):
        target = target / safe_file_name(name, suffix)  # as the library names it inside a folder
    problem = _not_ours(target, format)
    if problem is not None:
        raise InvalidInputError(
            f"cannot export to {str(target)!r}: {problem}, and an export over MCP replaces only an earlier "
            "export of HealthSim; choose another name in the export folder; nothing was written"
        )
    return target


def _not_ours(target: Path, format: str) -> str | None:
    """Why ``target`` (which an export would replace) is not an earlier export, or None."""
    if not os.path.lexists(target):
        return None
    if format in _FOLDER_FORMATS:
        if not target.is_dir():
            return "it is a file, not an export folder"
        # An earlier export holds the library's manifest; the library itself then refuses
        # one that also holds files the export did not write.
        if is_export_folder(target) or not any(target.iterdir()):
            return None
        return f"it is a folder without the {MANIFEST} that marks an earlier export"
    if not target.is_file():
        return "it is not a regular file"
    head = _head(target, 200)
    pattern = _OUR_JSON if format == "json" else _OUR_NDJSON
    if pattern.match(head) is None:
        return f"it is not a {format} export of HealthSim (its first bytes differ)"
    return None


def _head(path: Path, size: int) -> bytes:
    try:
        with open(path, "rb") as file:
            return file.read(size)
    except OSError:
        return b""


def import_source(file_path: str) -> Path:
    """The checked file to import over MCP: inside one of the import folders.

    A relative ``file_path`` is looked for in each import folder in turn (the first
    that has it wins); any other is resolved (``~``, ``..``, links) and must lie inside one.

    Raises:
        InvalidInputError: the file is outside every import folder; nothing is read.
    """
    folders = import_folders()
    exports = export_folder()
    own = _own_folder(exports)
    if own is not None:
        folders = [own, *folders]
    candidates = [_resolved(file_path, folder) for folder in folders]
    if not Path(file_path).expanduser().is_absolute():
        existing = [c for c in candidates if os.path.exists(c)]
        candidates = existing[:1] or candidates[:1]
    path = candidates[0]
    if not any(_inside(path, folder) for folder in folders):
        shown = ", ".join(repr(str(f)) for f in folders)
        raise InvalidInputError(
            f"cannot import {file_path!r}: over MCP imports read only files inside the import folders "
            f"{shown} ({IMPORT_DIRS_VARIABLE}); move the file into one of them; nothing was read"
        )
    if own is not None and _inside(path, exports) and not _inside(path, own):
        grant = current_grant()
        raise InvalidInputError(
            f"cannot import {file_path!r}: in the export folder this token ({grant.name if grant else ''}) reads "
            f"only its own folder {str(own)!r}, where its exports go (other tokens' exports may hold scenarios "
            "it cannot see); nothing was read"
        )
    return path
