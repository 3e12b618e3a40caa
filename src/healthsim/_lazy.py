"""Modules imported on first use, to keep the start of ``healthsim`` quick.

psycopg (only a team store on PostgreSQL needs it) and ``pyarrow.compute`` cost about a
tenth of a second each to import; most commands never touch them. A module that needs
one writes::

    if TYPE_CHECKING:
        import psycopg
    else:
        psycopg = lazy_module("psycopg")

and uses ``psycopg.X`` as before: the real import happens at the first attribute read.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any

__all__ = ["lazy_module"]


class _LazyModule(ModuleType):
    """Stands for a module until an attribute is read, then copies the module's names in.

    Unlike :class:`importlib.util.LazyLoader`, nothing is put in ``sys.modules`` (the real
    module is imported normally, under the import system's own per-module locks), so
    threads and other importers of the module are unaffected; two threads reading at once
    both get the one module's objects, and no lock of ours can deadlock with an import.
    """

    def __getattr__(self, attr: str) -> Any:
        module = importlib.import_module(self.__name__)
        # Later reads find the names directly; submodules imported later are still
        # looked up here.
        self.__dict__.update({k: v for k, v in vars(module).items() if not k.startswith("__")})
        return getattr(module, attr)


def lazy_module(name: str) -> Any:
    """A stand-in for the module ``name`` that imports it on the first attribute read."""
    return _LazyModule(name)
