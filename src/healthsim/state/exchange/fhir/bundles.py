"""``format="fhir-bundle"``: one ``transaction`` Bundle per patient.

Every entry has ``fullUrl`` ``urn:uuid:{id}`` and a ``request`` (``PUT {type}/{id}``: the
ids are stable, so sending a re-export updates the resources instead of duplicating them).
References to resources in the same bundle become its ``urn:uuid:`` full URLs; one to a
resource outside it (a claim's coverage of a member not in the scenario) keeps only its
identifier (a logical reference), so every literal reference resolves inside the bundle.

Resources are grouped by the Patient they belong to. To stay within bounded memory for
any scenario, they are first written to an on-disk DuckDB table and read back sorted by
patient; only one patient's resources are in memory at a time.
"""

from __future__ import annotations

import json
import re
import tempfile
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa

from ..._engines import AnalyticsConnection
from ...reading import ScenarioReader
from .carry import PART
from .common import EXTENSION_URL, resource_id
from .mapping import copy_resource, recarry, resource_entity
from .writing import ExportReport, map_entities

__all__ = ["bundle_of", "write_bundles"]

_BATCH = 20_000
_OWNER_FIELDS = ("subject", "patient", "beneficiary", "individual")


def _owner(resource: dict[str, Any]) -> str:
    """The id of the Patient a resource belongs to ("" for none)."""
    if resource["resourceType"] == "Patient":
        return str(resource["id"])
    for field in _OWNER_FIELDS:
        ref = resource.get(field)
        target = ref.get("reference") if isinstance(ref, dict) else None
        if isinstance(target, str) and target.startswith("Patient/"):
            return target[len("Patient/") :]
    return ""


def _rewrite(value: Any, inside: set[str]) -> None:
    """References to ``inside`` become ``urn:uuid:``; others keep only their identifier."""
    if isinstance(value, dict):
        target = value.get("reference")
        # "urn:uuid:x": a reference of a source bundle (kept under _fhir), which names no entry here.
        if isinstance(target, str) and ("/" in target or target.startswith("urn:")):
            rid = target.rsplit("/", 1)[1] if "/" in target else ""
            if rid in inside:
                value["reference"] = f"urn:uuid:{rid}"
            elif "identifier" in value or "display" in value:
                del value["reference"]
            else:
                value["display"] = target
                del value["reference"]
        for item in value.values():
            _rewrite(item, inside)
    elif isinstance(value, list):
        for item in value:
            _rewrite(item, inside)


_SAFE_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")


def _file_name(group: str) -> str:
    """The file of a patient's Bundle: named by its Patient's id, which is ours (a UUID)
    unless a kept reference names the patient (any text: then a UUID of it, so the name
    never leaves the folder nor passes the file system's limits)."""
    if not group:
        return "other.json"
    if _SAFE_ID.fullmatch(group):
        return f"Patient-{group}.json"
    return f"Patient-{resource_id('bundle', group)}.json"


def _outside(value: Any, inside: set[str]) -> bool:
    """Whether :func:`_rewrite` would make a reference of ``value`` display-only."""
    if isinstance(value, dict):
        target = value.get("reference")
        if isinstance(target, str) and ("/" in target or target.startswith("urn:")):
            if (target.rsplit("/", 1)[1] if "/" in target else "") not in inside:
                return True
        return any(_outside(item, inside) for item in value.values())
    if isinstance(value, list):
        return any(_outside(item, inside) for item in value)
    return False


def _primary(resource: dict[str, Any]) -> bool:
    """Whether the resource carries an entity (our extension, not that of a part)."""
    extensions = resource.get("extension")
    return isinstance(extensions, list) and any(
        isinstance(e, dict) and e.get("url") == EXTENSION_URL and e != PART for e in extensions
    )


def bundle_of(resources: list[dict[str, Any]]) -> dict[str, Any]:
    """The transaction Bundle of one patient's resources.

    A resource whose references to resources outside the bundle become display-only no
    longer reads back as its entity (a kept reference of a Synthea encounter to its
    organization, say): its extension is made again, so the import still gives the entity
    back equal.
    """
    inside = {str(r["id"]) for r in resources}
    entries = []
    for resource in resources:
        before = copy_resource(resource) if _primary(resource) and _outside(resource, inside) else None
        _rewrite(resource, inside)
        found = resource_entity(before) if before is not None else None
        if found is not None:
            recarry(resource, *found)
        entries.append(
            {
                "fullUrl": f"urn:uuid:{resource['id']}",
                "resource": resource,
                "request": {"method": "PUT", "url": f"{resource['resourceType']}/{resource['id']}"},
            }
        )
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}


class _Sorter:
    """Resources kept on disk by patient, read back one patient at a time."""

    def __init__(self, con: AnalyticsConnection, report: ExportReport) -> None:
        self.con = con  # a private DuckDB to sort in (it spills to disk past its memory)
        self.con.execute("CREATE TABLE r (grp VARCHAR, first BOOLEAN, seq BIGINT, res VARCHAR)")
        self.rows: list[tuple[str, bool, int, str]] = []
        self.seq = 0
        self.report = report

    def __call__(self, entity_type: str, resources: list[dict[str, Any]]) -> None:
        group = _owner(resources[0])
        for resource in resources:
            kind = resource["resourceType"]
            self.report.resources[kind] = self.report.resources.get(kind, 0) + 1
            is_patient = kind == "Patient" and str(resource["id"]) == group
            self.rows.append((group, is_patient, self.seq, orjson.dumps(resource).decode("utf-8", "surrogatepass")))
            self.seq += 1
        if len(self.rows) >= _BATCH:
            self.flush()

    def flush(self) -> None:
        if self.rows:
            columns = list(zip(*self.rows, strict=True))
            table = pa.table({"grp": columns[0], "first": columns[1], "seq": columns[2], "res": columns[3]})
            self.con.register("batch", table)
            self.con.execute("INSERT INTO r SELECT * FROM batch")
            self.con.unregister("batch")
            self.rows = []

    def groups(self) -> Any:
        self.flush()
        current: str | None = None
        members: list[dict[str, Any]] = []
        for batch in self.con.sql("SELECT grp, res FROM r ORDER BY grp, first DESC, seq").to_arrow_reader(_BATCH):
            for group, text in zip(batch.column(0).to_pylist(), batch.column(1).to_pylist(), strict=True):
                if group != current and members:
                    yield current, members
                    members = []
                current = group
                members.append(orjson.loads(text))
        if members:
            yield current, members


def write_bundles(
    reader: ScenarioReader, staging: Path, types: list[str] | None, options: dict[str, Any]
) -> tuple[list[str], ExportReport]:
    """Write one Bundle file per patient into ``staging``; returns the files and the report."""
    report = ExportReport()
    written: list[str] = []
    engine = reader.connection.engine
    with tempfile.TemporaryDirectory(prefix="healthsim-fhir-sort-") as scratch, engine.computing(None) as duck:
        quoted = scratch.replace("'", "''")
        duck.execute(f"SET temp_directory = '{quoted}'")  # a large sort spills there, not in memory
        sorter = _Sorter(duck, report)
        map_entities(reader, types, sorter, report, validate=options["validate"], progress=options["progress"])
        for group, resources in sorter.groups():
            name = _file_name(group)
            bundle = bundle_of(resources)
            try:
                data = json.dumps(bundle, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
            except UnicodeEncodeError:  # a lone surrogate in some text: kept as its escape
                data = json.dumps(bundle, separators=(",", ":")).encode("ascii")
            (staging / name).write_bytes(data + b"\n")
            written.append(name)
    return written, report
