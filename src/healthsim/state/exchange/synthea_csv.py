"""``import_scenario(folder, format="synthea-csv")``: a Synthea CSV folder as a scenario.

Synthea (any 3.x) writes one CSV file per kind of record; their columns differ between
versions (3.0 has no ``FIPS``/``INCOME`` in ``patients.csv``, later ones do), so columns
are read by name, in any order and case. Rows of ``patients``, ``encounters``,
``conditions``, ``observations``, ``medications``, ``procedures``, ``immunizations`` and
``allergies`` become canonical entities (patients, encounters, diagnoses, vital_signs or
lab_results, medications, procedures, immunizations, allergies); columns with no canonical
field are kept in the entity under their own name. Files with no canonical home
(``careplans.csv``, ``claims.csv``, ``payers.csv``…, and any unknown file) are kept whole,
one entity per row, under ``synthea_{file}`` (``synthea_careplans``), and so are the rows of
a mapped file that have none (observations not coded in LOINC: Synthea's QALY, DALY and QOLS
measures, as ``synthea_observations``). So every row can be found again.

Ids are Synthea's: a patient's ``mrn`` and ``patient_id`` are its ``Id``, an encounter's
``encounter_id`` its ``Id``; Synthea's FHIR output uses the same ids, so the CSV and the
FHIR output of one run import to the same patients, encounters and conditions.

The folder is read file by file, row by row, in one transaction; a problem names the file
and line, and nothing is saved.
"""

from __future__ import annotations

import csv
import io
import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from ..entities import normalize_type
from ..errors import InvalidEntityError, InvalidScenarioFileError
from .fhir.common import SYSTEMS
from .fhir.load import folder_hint, list_folder, save_source
from .fhir.vitals import VITAL_BY_CODE
from .importer import SaveScenario

__all__ = ["import_synthea_csv"]

_CHUNK = 2_000
_CLASSES = {"inpatient": "I", "ambulatory": "O", "outpatient": "O", "wellness": "O", "emergency": "E"}
_CLASSES |= {"urgentcare": "U", "virtual": "O", "home": "O", "hospice": "I", "snf": "I"}
_SYSTEM_NAMES = {"SNOMED-CT": SYSTEMS["snomed"], "RXNORM": SYSTEMS["rxnorm"], "LOINC": SYSTEMS["loinc"]}

#: file -> (entity type, column -> canonical field); a file not here is kept whole.
_MAPS: dict[str, tuple[str, dict[str, str]]] = {
    "patients": (
        "patients",
        {
            "ID": "mrn",
            "BIRTHDATE": "birth_date",
            "DEATHDATE": "death_date",
            "SSN": "ssn",
            "GENDER": "gender",
            "RACE": "race",
            # read into name and address by _patient:
            **dict.fromkeys(("FIRST", "LAST", "PREFIX", "SUFFIX", "ADDRESS", "CITY", "STATE", "ZIP"), ""),
        },
    ),
    "encounters": (
        "encounters",
        {
            "ID": "encounter_id",
            "PATIENT": "patient_mrn",
            "START": "admission_time",
            "STOP": "discharge_time",
            "DESCRIPTION": "encounter_type",
            "REASONDESCRIPTION": "chief_complaint",
        },
    ),
    "conditions": (
        "diagnoses",
        {
            "PATIENT": "patient_mrn",
            "ENCOUNTER": "encounter_id",
            "CODE": "code",
            "DESCRIPTION": "description",
            "START": "diagnosed_date",
            "STOP": "resolved_date",
        },
    ),
    "medications": (
        "medications",
        {
            "PATIENT": "patient_mrn",
            "ENCOUNTER": "encounter_id",
            "CODE": "code",
            "DESCRIPTION": "name",
            "START": "start_date",
            "STOP": "end_date",
            "REASONDESCRIPTION": "indication",
        },
    ),
    "procedures": (
        "procedures",
        {
            "PATIENT": "patient_mrn",
            "ENCOUNTER": "encounter_id",
            "CODE": "code",
            "DESCRIPTION": "description",
            "START": "performed_date",
        },
    ),
    "immunizations": (
        "immunizations",
        {
            "PATIENT": "patient_mrn",
            "ENCOUNTER": "encounter_id",
            "CODE": "vaccine_code",
            "DESCRIPTION": "description",
            "DATE": "date",
        },
    ),
    "allergies": (
        "allergies",
        {
            "PATIENT": "patient_mrn",
            "ENCOUNTER": "encounter_id",
            "CODE": "code",
            "DESCRIPTION": "substance",
            "START": "date",
        },
    ),
    "observations": (
        "lab_results",
        {
            "PATIENT": "patient_mrn",
            "ENCOUNTER": "encounter_id",
            "CODE": "loinc_code",
            "DESCRIPTION": "test_name",
            "VALUE": "value",
            "UNITS": "unit",
            "DATE": "collected_time",
        },
    ),
}
# Read first, so a scenario lists its types in the usual order.
_ORDER = [
    "patients",
    "encounters",
    "conditions",
    "observations",
    "medications",
    "procedures",
    "immunizations",
    "allergies",
]


def _csv_files(folder: Path) -> list[Path]:
    """The CSV files of the folder, mapped ones first.

    Raises:
        InvalidScenarioFileError: not a folder, or no ``patients.csv`` in it.
    """
    if not folder.is_dir():
        raise InvalidScenarioFileError(
            folder, "a Synthea CSV import reads a folder (Synthea's output/csv); give its path"
        )
    files: dict[str, Path] = {}
    for path in sorted(list_folder(folder)):
        # Hidden files are passed over, as by the FHIR import (macOS's "._patients.csv").
        if path.suffix.lower() != ".csv" or path.name.startswith(".") or not path.is_file():
            continue
        stem = path.stem.lower()
        if stem in files:  # one would be read in place of the other
            raise InvalidScenarioFileError(
                path, f"its name differs from {files[stem].name!r} only in case; merge or rename one of them"
            )
        files[stem] = path
    if "patients" not in files:
        hint = folder_hint(folder, (".csv",), "synthea-csv") if not files else ""
        hint = hint or folder_hint(folder, (".json", ".ndjson"), "fhir")
        raise InvalidScenarioFileError(
            folder,
            "this folder has no patients.csv, so it is not a Synthea CSV export; give the folder Synthea wrote "
            f"(output/csv){hint}",
        )
    return [files[s] for s in _ORDER if s in files] + [p for s, p in sorted(files.items()) if s not in _ORDER]


def _patient(entity: dict[str, Any], row: dict[str, str]) -> None:
    if "mrn" in entity:
        entity["patient_id"] = entity["mrn"]
    name = {
        k: row[c]
        for c, k in (("FIRST", "given_name"), ("LAST", "family_name"), ("PREFIX", "prefix"), ("SUFFIX", "suffix"))
        if row.get(c)
    }
    if name:
        entity["name"] = name
    address = {
        k: row[c]
        for c, k in (("ADDRESS", "street_address"), ("CITY", "city"), ("STATE", "state"), ("ZIP", "postal_code"))
        if row.get(c)
    }
    if address:
        entity["address"] = address
    if row.get("DEATHDATE"):
        entity["deceased"] = True


def _special(stem: str, entity_type: str, entity: dict[str, Any], row: dict[str, str]) -> str:
    """File-specific fields; returns the entity type (an observation may be a vital sign)."""
    if stem == "patients":
        _patient(entity, row)
    elif stem == "encounters":
        entity["status"] = "finished" if row.get("STOP") else "in-progress"
        if row.get("ENCOUNTERCLASS"):  # an absent or empty value is no field, as for every column
            entity["class_code"] = _CLASSES.get(row["ENCOUNTERCLASS"].lower(), row["ENCOUNTERCLASS"])
    elif stem in ("conditions", "procedures", "allergies"):
        entity["code_system"] = _SYSTEM_NAMES.get(row.get("SYSTEM", "").upper(), SYSTEMS["snomed"])
    elif stem == "medications":
        entity["status"] = "completed" if row.get("STOP") else "active"
    elif stem == "observations":
        field = VITAL_BY_CODE.get(row.get("CODE", ""))
        if row.get("CATEGORY") == "vital-signs" and field is not None:
            try:
                value: Any = float(row.get("VALUE", ""))
            except ValueError:
                return entity_type
            for moved in ("loinc_code", "test_name", "value", "unit"):
                entity.pop(moved, None)
            if "collected_time" in entity:
                entity["observation_time"] = entity.pop("collected_time")
            entity[field] = value
            return "vital_signs"
    return entity_type


def _rows(path: Path, counter: list[int]) -> Iterator[tuple[int, dict[str, str]]]:
    """The rows of one CSV file as dicts by column name.

    Raises:
        InvalidScenarioFileError: the file cannot be read, is not UTF-8 or CSV, its header
            would lose a column, or a row's values do not match the header (the line named).
    """
    try:
        yield from _read_rows(path, counter)
    except OSError as exc:
        raise InvalidScenarioFileError(path, f"cannot be read: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise InvalidScenarioFileError(
            path, f"line {_first_non_utf8_line(path)}: not UTF-8 text; Synthea writes UTF-8, convert the file to it"
        ) from None


def _first_non_utf8_line(path: Path) -> int:
    """The number of the first line that is not UTF-8 (the decoder reads ahead in blocks,
    so its error does not say; this runs only once the file has failed)."""
    with path.open("rb") as raw:
        for number, line in enumerate(raw, 1):
            try:
                line.decode("utf-8")
            except UnicodeDecodeError:
                return number
    return 1


# Python's csv refuses values over 128 KiB by default; Synthea's are text of any length.
# The limit is the csv module's own (process-wide): it is only ever raised here.
_FIELD_LIMIT = 2**31 - 1


def _header(path: Path, header: list[str]) -> list[str]:
    """The column names, without surrounding spaces.

    Raises:
        InvalidScenarioFileError: a column without a name, or one named twice (in any case):
            a value of it would be lost.
    """
    names = [name.strip() for name in header]
    seen: dict[str, int] = {}
    for position, name in enumerate(names, 1):
        if not name:
            raise InvalidScenarioFileError(path, f"line 1: column {position} has no name; name it")
        if name.upper() in seen:
            raise InvalidScenarioFileError(
                path, f"line 1: the header names {name.upper()!r} twice (columns {seen[name.upper()]} and {position})"
            )
        seen[name.upper()] = position
    return names


def _read_rows(path: Path, counter: list[int]) -> Iterator[tuple[int, dict[str, str]]]:
    csv.field_size_limit(max(csv.field_size_limit(), _FIELD_LIMIT))
    with path.open("rb") as raw, io.TextIOWrapper(raw, encoding="utf-8-sig", newline="") as text:
        # strict: an unclosed quote is an error, not the rest of the file read into one value
        reader = csv.reader(text, strict=True)
        rows = iter(reader)
        start = 1
        try:
            first = next(rows, None)
            if first is None:
                return
            header = _header(path, first)
            start = reader.line_num + 1  # where the next row starts (a quoted value may span lines)
            for row in rows:
                counter[0] = raw.tell()
                if row and len(row) != len(header):
                    raise InvalidScenarioFileError(
                        path, f"line {reader.line_num}: {len(row)} values where the header names {len(header)} columns"
                    )
                if row:
                    yield reader.line_num, dict(zip(header, row, strict=True))
                start = reader.line_num + 1
        except csv.Error as exc:
            hint = " (a quoted value is not closed)" if "end of data" in str(exc) else ""
            raise InvalidScenarioFileError(path, f"line {start}: not CSV: {exc}{hint}") from None


def _kept_type(path: Path) -> str:
    """The type the rows of a file with no canonical home are kept under (``synthea_careplans``).

    Raises:
        InvalidScenarioFileError: its name makes no type name.
    """
    try:
        return normalize_type(f"synthea_{path.stem.lower()}")
    except InvalidEntityError:
        raise InvalidScenarioFileError(
            path, "its name makes no entity type name (letters, digits, '_', '-' and spaces); rename the file"
        ) from None


# Fields the file-specific reading (_special) sets, beyond the column map's.
_SET_BY_READING = frozenset(
    {"patient_id", "name", "address", "deceased", "status", "class_code", "code_system", "observation_time"}
)


def _check_unknown_columns(path: Path, header: Any, columns: dict[str, str]) -> None:
    """Refuse an unknown column (kept under its own name) named like a field the reading
    fills: one of the two values would be lost."""
    filled = set(columns.values()) | _SET_BY_READING
    for name in header:
        if name.upper() not in columns and name in filled:
            raise InvalidScenarioFileError(
                path, f"line 1: the column {name!r} is named like a field the import fills; rename it"
            )


# A LOINC code: digits, a dash, the check digit. Synthea's observations are LOINC-coded but
# for its own quality-of-life measures (QALY, DALY, QOLS: no category, no encounter), which
# are neither lab results nor vital signs, so they are kept whole.
_LOINC_SHAPE = re.compile(r"[0-9]{1,7}-[0-9]")


def _has_home(stem: str, upper: dict[str, str]) -> bool:
    """Whether a row of a mapped file (its columns by upper-case name) has a canonical home
    (an observation needs a LOINC code)."""
    return stem != "observations" or _LOINC_SHAPE.fullmatch(upper.get("CODE", "")) is not None


def _entities(path: Path, counter: list[int]) -> Iterator[tuple[str, dict[str, Any]]]:
    stem = path.stem.lower()
    mapped = _MAPS.get(stem)
    kept = _kept_type(path)  # rows of a mapped file with no canonical home are kept whole too
    checked = False
    for _, row in _rows(path, counter):
        upper = {k.upper(): v for k, v in row.items()} if mapped is not None else {}
        if mapped is None or not _has_home(stem, upper):
            yield kept, {k: v for k, v in row.items() if v != ""}
            continue
        entity_type, columns = mapped
        if not checked:
            _check_unknown_columns(path, row.keys(), columns)
            checked = True
        entity: dict[str, Any] = {}
        for column, value in row.items():
            field = columns.get(column.upper(), column)
            if value != "" and field:
                entity[field] = value
        yield _special(stem, entity_type, entity, upper), entity


def import_synthea_csv(
    save: SaveScenario,
    folder_path: str | os.PathLike[str],
    name: str | None = None,
    overwrite: bool = False,
    *,
    progress: Callable[[int, int], None] | None = None,
    description: str | None = None,
    tags: list[str] | None = None,
) -> str:
    """Import a Synthea CSV folder as one scenario; see :meth:`ScenarioStore.import_scenario`.

    Raises:
        InvalidScenarioFileError: not a Synthea CSV folder (no ``patients.csv``), or a
            malformed row (the file and line named). Nothing is saved.
    """
    folder = Path(os.fsdecode(folder_path)).expanduser().absolute()
    files = _csv_files(folder)
    total = sum(p.stat().st_size for p in files)
    done, counter, rows = [0], [0], [0]

    def typed() -> Iterator[tuple[str, list[dict[str, Any]]]]:
        for path in files:
            current, chunk = "", list[dict[str, Any]]()
            for entity_type, entity in _entities(path, counter):
                rows[0] += 1
                if (entity_type != current or len(chunk) >= _CHUNK) and chunk:
                    yield current, chunk
                    chunk = []
                    if progress is not None:
                        progress(done[0] + counter[0], total)
                current = entity_type
                chunk.append(entity)
            if chunk:
                yield current, chunk
            done[0] += path.stat().st_size
        if progress is not None:
            progress(total, total)

    return save_source(
        save,
        folder,
        typed(),
        source_format="synthea-csv",
        name=name,
        overwrite=overwrite,
        description=description,
        tags=tags,
        facts=lambda: {"rows_read": rows[0], "files": [p.name for p in files]},
    )
