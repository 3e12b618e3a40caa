"""Where the tests' files are (for tests and conftest alike)."""

from __future__ import annotations

from pathlib import Path

#: The tests folder.
HERE = Path(__file__).parent.parent
FIXTURES = HERE / "fixtures"
EXAMPLES = HERE.parent / "examples"

#: A login name no machine running the tests should have (for ``~user`` paths naming nobody).
NO_SUCH_USER = "nosuchuser-healthsim-test"


def no_such_user() -> str:
    """:data:`NO_SUCH_USER`, after checking that no user of that name exists here (the
    calling test is skipped if one does: its ``~user`` path would name a real folder)."""
    import pwd

    import pytest

    try:
        pwd.getpwnam(NO_SUCH_USER)
    except KeyError:
        return NO_SUCH_USER
    pytest.skip(f"a user {NO_SUCH_USER!r} exists here")
