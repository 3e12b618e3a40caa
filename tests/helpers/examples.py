"""How many examples a Hypothesis property explores: all of them in the whole suite, a tenth in the quick run.

The whole suite (CI, the README's test command) explores each property with the count its test names. The
quick run of the edit loop (``pytest -m "not slow"``) explores each with a tenth of it (at least
:data:`QUICK_MINIMUM`), as Hypothesis' own advice has a small "dev" and a large "ci" profile: every property
still runs, with its ``@example`` cases, and the shrunk failures kept in ``.hypothesis/`` are replayed first.
``conftest.pytest_configure`` says which run this is.
"""

from __future__ import annotations

import re

#: The quick run explores this share of each property's examples...
QUICK_SHARE = 10
#: ...but never fewer than this many.
QUICK_MINIMUM = 3

_quick = False


def is_quick(markexpr: str) -> bool:
    """Whether a run with this ``-m`` expression is the quick run: it leaves out the slow tests."""
    return re.search(r"\bnot\s+slow\b", markexpr) is not None


def set_quick(quick: bool) -> None:
    """Explore a share of each property's examples (``True``: the quick run) or all of them."""
    global _quick
    _quick = quick


def examples(count: int) -> int:
    """``count`` in the whole suite; a tenth of it (at least :data:`QUICK_MINIMUM`) in the quick run."""
    return max(min(count, QUICK_MINIMUM), count // QUICK_SHARE) if _quick else count
