"""What a FHIR export skipped, read back from its folder (the CLI's warning, the MCP answer).

A module of its own, light to import: the MCP server and the CLI read a report without
loading the mapping.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..formats import MANIFEST

__all__ = ["REPORT", "skipped_of"]

#: The report a FHIR export writes in its folder (what it wrote, what it skipped and why).
REPORT = "export-report.json"


def skipped_of(folder: Path, *, reasons: int = 3, examples: int = 3) -> dict[str, Any]:
    """What the FHIR export in ``folder`` skipped, as its report (kept in the folder's
    manifest) says: ``skipped_count`` and the ``reasons`` most frequent reasons, each with
    its count and at most ``examples`` examples (type and entity id)."""
    report = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))["report"]
    skipped = [{**s, "examples": s["examples"][:examples]} for s in report["skipped"][:reasons]]
    return {"skipped_count": report["skipped_count"], "skipped": skipped}
