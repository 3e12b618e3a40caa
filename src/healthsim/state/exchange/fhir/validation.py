"""Checking resources against the FHIR models of ``fhir.resources`` (an optional extra).

``fhir.resources`` offers R4B (4.3) models, the closest it has to R4 (4.0.1); for the
elements HealthSim writes they are the same (see docs/decisions.md).
"""

from __future__ import annotations

import importlib
from typing import Any

from ...errors import MissingDependencyError

__all__ = ["resource_problem", "require_validator"]

_EXTRA = "pip install 'healthsim-state[fhir]'"


def require_validator() -> Any:
    """The R4B model lookup of ``fhir.resources``.

    Raises:
        MissingDependencyError: the package is not installed; the message names the extra.
    """
    try:
        module = importlib.import_module("fhir.resources.R4B")
    except ImportError:
        raise MissingDependencyError(
            "validate=True checks every resource with the fhir.resources package, which is not "
            f"installed; install the extra: {_EXTRA} (or export without validate)"
        ) from None
    return module.get_fhir_model_class


def resource_problem(resource: dict[str, Any], lookup: Any) -> str | None:
    """Why ``resource`` is not valid FHIR (the models' first complaint), or None."""
    try:
        lookup(resource["resourceType"]).model_validate(resource)
    except Exception as exc:  # pydantic's ValidationError, or a ValueError of the models
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        return "not valid FHIR: " + "; ".join(lines[1:3] or lines[:1])
    return None
