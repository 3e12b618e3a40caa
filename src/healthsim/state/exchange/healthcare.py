"""Format dispatch of ``import_scenario``: the JSON exchange format, FHIR, Synthea CSV."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING

from ..errors import InvalidInputError

if TYPE_CHECKING:
    from ..store import ScenarioStore

__all__ = ["IMPORT_FORMATS", "import_formatted"]

IMPORT_FORMATS = ("json", "fhir", "synthea-csv")


def import_formatted(
    store: ScenarioStore,
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
        return store.import_scenario_from_json(
            path, name, overwrite, description=description, tags=tags, progress=progress
        )
    if chosen == "fhir":
        from .fhir.load import import_fhir

        return import_fhir(store, path, name, overwrite, progress=progress, description=description, tags=tags)
    if chosen == "synthea-csv":
        from .synthea_csv import import_synthea_csv

        return import_synthea_csv(store, path, name, overwrite, progress=progress, description=description, tags=tags)
    raise InvalidInputError(f"unknown import format {format!r}; use one of: {', '.join(IMPORT_FORMATS)}")
