"""The one exception tree of ``healthsim.state``.

Every error the library raises on purpose derives from :class:`StateError`, and the
ones a caller may want to treat like built-in errors also derive from those::

    StateError
    ├── ScenarioNotFoundError        (also LookupError)
    ├── ScenarioExistsError          (also ValueError)
    ├── InvalidInputError            (also ValueError)
    │   ├── InvalidScenarioNameError
    │   ├── InvalidEntityError
    │   ├── InvalidScenarioFileError
    │   ├── QueryError
    │   └── CheckFailedError         (a save or an add with check="refuse")
    ├── DatabaseLockedError
    ├── DatabaseError
    │   └── ServerUnavailableError   (a PostgreSQL team store)
    └── MissingDependencyError       (also ImportError)

Messages name the scenario, field or file concerned and say what to do next, so the
command line and the MCP server can show them to a person or an assistant as they are.
They are always valid UTF-8: a lone surrogate taken from the input (a JSON ``"\\ud800"``
escape, an undecodable file name) is written as its escape, ``\\ud800``, because a message
that cannot be encoded cannot be printed or sent (the MCP SDK exits when it tries).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .._text import safe_text

__all__ = [
    "StateError",
    "ScenarioNotFoundError",
    "ScenarioExistsError",
    "InvalidInputError",
    "InvalidScenarioNameError",
    "InvalidEntityError",
    "InvalidScenarioFileError",
    "QueryError",
    "CheckFailedError",
    "DatabaseLockedError",
    "DatabaseError",
    "ServerUnavailableError",
    "MissingDependencyError",
    "AccessDeniedError",
]


class StateError(Exception):
    """Base class of every error raised by ``healthsim.state``.

    Its message is always valid UTF-8 (see :func:`safe_text`), whatever the subclass
    put in it, so every caller can print or send it as it is.
    """

    def __init__(self, *args: object) -> None:
        super().__init__(*(safe_text(arg) if isinstance(arg, str) else arg for arg in args))

    def __str__(self) -> str:
        return safe_text(super().__str__())


class ScenarioNotFoundError(StateError, LookupError):
    """No scenario has the given name or UUID."""

    def __init__(self, name: str, hint: str | None = None) -> None:
        self.name = name
        self.hint = hint  # said instead of the usual "list the scenarios"
        super().__init__(
            f"scenario {name!r} not found; "
            + (hint or "list the scenarios (list_scenarios, or healthsim list) to see which exist")
        )

    def __str__(self) -> str:  # LookupError's __str__ would repr() the message
        return safe_text(str(self.args[0]))


class ScenarioExistsError(StateError, ValueError):
    """A scenario with that name exists and ``overwrite`` was not set."""

    def __init__(self, name: str, hint: str = "choose another name or pass overwrite=True to replace it") -> None:
        self.name = name
        super().__init__(f"scenario {name!r} already exists; {hint}")


class InvalidInputError(StateError, ValueError):
    """An argument given to the library is not acceptable."""


class InvalidScenarioNameError(InvalidInputError):
    """A scenario name breaks the naming rules."""


class InvalidEntityError(InvalidInputError):
    """An entity (or entity type) cannot be stored as given.

    Attributes:
        entity_type: the (normalised) entity type, when known.
        index: the entity's position in its list, when known.
        field: the JSON path inside the entity, when known.
    """

    def __init__(
        self,
        message: str,
        *,
        entity_type: str | None = None,
        index: int | None = None,
        field: str | None = None,
    ) -> None:
        self.entity_type = entity_type
        self.index = index
        self.field = field
        super().__init__(message)


class InvalidScenarioFileError(InvalidInputError):
    """A scenario file cannot be imported.

    Attributes:
        path: the file.
        location: where in the file (a JSON path, or line and column), when known.
    """

    def __init__(self, path: Path | str, problem: str, location: str | None = None) -> None:
        self.path = Path(path)
        self.location = location
        where = f" at {location}" if location else ""
        super().__init__(f"cannot import {str(path)!r}{where}: {problem}; nothing was saved")


class QueryError(InvalidInputError):
    """A query was refused, failed, ran past its time limit or out of the sandbox's memory.

    The message says which, and how to narrow the query.
    """


class CheckFailedError(InvalidInputError):
    """A save or an add with ``check="refuse"`` found errors in the entities it was
    writing, and wrote nothing. ``problems`` is the check's answer (see
    :meth:`~healthsim.state.ScenarioStore.check_scenario`)."""

    def __init__(self, name: str, first: str, problems: Any) -> None:
        self.name = name
        self.problems = problems
        super().__init__(
            f"scenario {name!r}: nothing was written, the check found errors in the entities: {first}. "
            "Fix them and try again, or save with check='warn' to keep them and see the problems"
        )


class DatabaseLockedError(StateError):
    """Another process held the database file (or, on a team store, another client held the
    scenario being changed) for longer than the lock timeout."""

    def __init__(self, path: Path | str, timeout: float, detail: str = "", *, message: str | None = None) -> None:
        self.path = path
        self.timeout = timeout
        super().__init__(
            message
            or f"database {str(path)!r} is locked by another process (waited {timeout:g} s); "
            "close the other program using it, or raise HEALTHSIM_LOCK_TIMEOUT, and try again"
            + (f" [{detail}]" if detail else "")
        )

    #: How a team store's message names the scenario waited for, until :meth:`for_scenario`.
    SAME_SCENARIO = "the same scenario"

    def for_scenario(self, name: str) -> DatabaseLockedError:
        """This error naming the scenario whose lock was waited for (the server's own error
        does not say which: the operation that asked for the lock knows)."""
        return DatabaseLockedError(
            self.path, self.timeout, message=str(self).replace(self.SAME_SCENARIO, f"scenario {name!r}", 1)
        )


class DatabaseError(StateError):
    """The database file cannot be opened or used (corrupt, unreadable, wrong schema)."""


class ServerUnavailableError(DatabaseError):
    """A PostgreSQL team store cannot be used: the server cannot be reached, refused the
    credentials, or has no such database. The message names host, port and database,
    never the password."""


class MissingDependencyError(StateError, ImportError):
    """An optional part needs a package that is not installed (the message says which
    extra to install, e.g. ``pip install 'healthsim-state[report]'``)."""


class AccessDeniedError(StateError, PermissionError):
    """The caller's grant (an HTTP token's scope or tags, see :mod:`healthsim.state.access`)
    does not allow what was asked; the message says which scope it needs or which tag
    it would lose."""
