"""Format dispatch of ``import_scenario``: the JSON exchange format, FHIR, Synthea CSV."""

from __future__ import annotations

import os
from collections.abc import Callable

from ..errors import InvalidInputError
from .importer import SaveScenario, import_scenario

__all__ = ["IMPORT_FORMATS", "import_formatted"]

IMPORT_FORMATS = ("json", "fhir", "synthea-csv")


def import_formatted(
    save: SaveScenario,
    path: str | os.PathLike[str],
    name: str | None,
    overwrite: bool,
    *,
    format: str,
    description: str | None = None,
    tags: list[str] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> str:
    """Import ``path`` in ``format``; see :meth:`ScenarioStore.import_scenario`."""
    chosen = format.lower() if isinstance(format, str) else format
    if chosen == "json":
        return import_scenario(save, path, name, overwrite, progress=progress, description=description, tags=tags)
    if chosen == "fhir":
        from .fhir.load import import_fhir

        return import_fhir(save, path, name, overwrite, progress=progress, description=description, tags=tags)
    if chosen == "synthea-csv":
        from .synthea_csv import import_synthea_csv

        return import_synthea_csv(save, path, name, overwrite, progress=progress, description=description, tags=tags)
    raise InvalidInputError(f"unknown import format {format!r}; use one of: {', '.join(IMPORT_FORMATS)}")
