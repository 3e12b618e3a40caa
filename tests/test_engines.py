"""Both engines implement the one engine interface, with its signatures (as ibis checks
its backends), and each connection knows its engine."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest

from healthsim.state._engines import Engine, engine_for
from healthsim.state._engines.duckdb.engine import DuckDBEngine
from healthsim.state._engines.postgres.engine import PostgresEngine
from healthsim.state._engines.postgres.server import TeamDatabase
from healthsim.state.database import connect

ENGINES = [DuckDBEngine, PostgresEngine]
CAPABILITIES = ["ids_from_sequence", "stages_large_writes", "keeps_key_counts", "parses_while_streaming"]


def _interface() -> dict[str, inspect.Signature]:
    return {
        name: inspect.signature(member)
        for name, member in vars(Engine).items()
        if getattr(member, "__isabstractmethod__", False)
    }


def test_the_interface_is_not_empty() -> None:
    assert {"connect", "transaction", "insert_selected", "run_query", "json_text"} <= set(_interface())


@pytest.mark.parametrize("engine", ENGINES, ids=lambda e: e.__name__)
def test_every_engine_has_the_interfaces_signatures(engine: type[Engine]) -> None:
    assert not inspect.isabstract(engine), engine.__abstractmethods__
    for name, wanted in _interface().items():
        own = inspect.signature(getattr(engine, name))
        # Same parameters, kinds and defaults (annotations may be narrower, as Any for a database).
        assert [(p.name, p.kind, p.default) for p in own.parameters.values()] == [
            (p.name, p.kind, p.default) for p in wanted.parameters.values()
        ], name
    for public in (n for n in vars(engine) if not n.startswith("_") and callable(getattr(engine, n))):
        assert public in _interface(), f"{engine.__name__}.{public} is not part of the Engine interface"


@pytest.mark.parametrize("engine", ENGINES, ids=lambda e: e.__name__)
def test_every_engine_names_its_capabilities(engine: type[Engine]) -> None:
    for flag in CAPABILITIES:
        assert isinstance(getattr(engine, flag), bool), flag
    assert engine.name in {"duckdb", "postgresql"}


def test_the_engines_differ_in_their_capabilities_not_their_type() -> None:
    duck, pg = (engine_for(Path("x.duckdb")), engine_for(TeamDatabase.parse("postgresql://u@h:5432/d")))
    assert (duck.name, pg.name) == ("duckdb", "postgresql")
    assert [getattr(duck, f) for f in CAPABILITIES] == [False, True, True, False]
    assert [getattr(pg, f) for f in CAPABILITIES] == [True, False, False, True]


def test_a_connection_knows_its_engine(tmp_path: Path) -> None:
    path = tmp_path / "e.duckdb"
    with connect(path, create=True) as con:
        assert con is not None
        assert con.engine is engine_for(path)
        assert con.engine.schema_version(con) >= 1
        assert con.execute("SELECT 41 + 1").fetchall() == [(42,)]
