"""Where the tests' files are (for tests and conftest alike)."""

from __future__ import annotations

from pathlib import Path

#: The tests folder.
HERE = Path(__file__).parent.parent
FIXTURES = HERE / "fixtures"
EXAMPLES = HERE.parent / "examples"
