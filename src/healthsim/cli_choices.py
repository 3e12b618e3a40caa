"""The values an option of ``healthsim`` takes, checked before anything is opened.

A value outside them is bad usage (exit 2, naming the option and its choices), as Click
does for its own checks; before, ``--format xml`` reached the library and exited 1 like a
failed operation, and ``--check wrn`` answered in the library's words ("or None").
The tuples are the library's (``tests/test_first_hour.py`` keeps them equal); they are
written out here so that ``healthsim --help`` imports no database or file-format module.
"""

from __future__ import annotations

from collections.abc import Callable

import typer

__all__ = ["CHOICES", "one_of"]

CHOICES: dict[str, tuple[str, ...]] = {
    "export": ("json", "ndjson", "parquet", "csv", "fhir", "fhir-bundle"),
    "import": ("json", "fhir", "synthea-csv"),
    "query": ("csv", "parquet", "ndjson"),
    "check": ("warn", "refuse"),
    "scope": ("read", "write", "admin"),
}


def one_of(kind: str) -> Callable[[str | None], str | None]:
    """An option callback that refuses a value outside ``CHOICES[kind]`` (any case) as bad usage."""
    choices = CHOICES[kind]

    def check(value: str | None) -> str | None:
        if value is not None and value.lower() not in choices:
            raise typer.BadParameter(f"{value!r} is not one of {', '.join(choices)}")
        return value

    return check
