"""Access tokens (issue 25): the library and ``healthsim token``, on both engines.

In :data:`conftest.BOTH_ENGINES`: every test that takes ``store`` runs on a DuckDB file and
on a fresh PostgreSQL database (HEALTHSIM_DB points at it).
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from healthsim.state import InvalidInputError, ScenarioStore, StateError
from healthsim.state.access import Grant
from healthsim.state.tokens import (
    TokenExistsError,
    TokenNotFoundError,
    TokenVerifier,
    create_token,
    list_tokens,
    revoke_token,
    verify_token,
)
from helpers.examples import examples

HEALTHSIM = str(Path(sys.executable).parent / "healthsim")
TEXT = re.compile(r"hst_[0-9a-f]{16}_[A-Za-z0-9_-]{43}")


def db() -> str:
    return os.environ["HEALTHSIM_DB"]


def test_a_token_is_made_verified_listed_and_revoked(store: ScenarioStore) -> None:
    text = create_token(db(), "claude-alice", "write", ["team-a", " team-b ", "team-a"])
    assert TEXT.fullmatch(text)
    assert verify_token(db(), text) == Grant("claude-alice", "write", ("team-a", "team-b"))
    [listed] = list_tokens(db())
    assert listed["name"] == "claude-alice" and listed["scope"] == "write" and listed["tags"] == ["team-a", "team-b"]
    assert listed["last_used_at"] is not None and listed["revoked_at"] is None
    assert set(listed) == {"name", "scope", "tags", "created_at", "last_used_at", "revoked_at"}
    revoke_token(db(), "claude-alice")
    assert verify_token(db(), text) is None
    assert list_tokens(db())[0]["revoked_at"] is not None


def test_wrong_and_malformed_texts_are_refused(store: ScenarioStore) -> None:
    text = create_token(db(), "t", "read")
    lookup = text.split("_")[1]
    wrong = [
        "",
        "hst_",
        text + "x",
        text[:-1] + ("A" if text[-1] != "A" else "B"),
        f"hst_{lookup}_" + "A" * 43,
        f"hst_{'0' * 16}_" + text[21:],
        text.upper(),
        "Bearer " + text,
    ]
    for candidate in wrong:
        assert verify_token(db(), candidate) is None, candidate
    assert verify_token(db(), text) == Grant("t", "read")


@settings(max_examples=examples(60), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.text(max_size=90))
def test_no_other_text_verifies(store: ScenarioStore, candidate: str) -> None:
    verifier = shared_verifier(db())
    assert verifier.verify(candidate) is None or candidate == verifier_text[db()]


verifier_text: dict[str, str] = {}
_verifiers: dict[str, TokenVerifier] = {}


def shared_verifier(database: str) -> TokenVerifier:
    if database not in _verifiers:
        verifier_text[database] = create_token(database, "fuzzed", "admin")
        _verifiers[database] = TokenVerifier(database)
    return _verifiers[database]


def test_the_store_keeps_only_a_salted_hash(store: ScenarioStore) -> None:
    first = create_token(db(), "one", "read")
    second = create_token(db(), "two", "read")
    rows = sql(db(), "SELECT name, lookup, hash FROM healthsim_state_tokens ORDER BY name")
    assert [r[0] for r in rows] == ["one", "two"]
    for (_, key, stored), text in zip(rows, (first, second), strict=True):
        # The row is found by the lookup id's SHA-256; the id itself is in no column.
        assert key == hashlib.sha256(text.split("_")[1].encode()).hexdigest()
        assert stored.startswith("scrypt$n=16384,r=8,p=1$") and text[21:] not in stored
    every_value = repr(sql(db(), "SELECT * FROM healthsim_state_tokens"))
    assert first.split("_")[1] not in every_value and second.split("_")[1] not in every_value
    assert rows[0][2].split("$")[2] != rows[1][2].split("$")[2]  # a salt per token


def test_a_token_made_before_lookups_were_hashed_still_verifies(store: ScenarioStore) -> None:
    """A store whose tokens table still holds lookup ids in the clear (made by the release
    before migration 6 on DuckDB, 5 on PostgreSQL) is upgraded at its next open: the id is
    replaced by its SHA-256 and the token's text verifies as before."""
    text = create_token(db(), "older", "write", ["team-a"])
    lookup = text.split("_")[1]
    version = 6 if "://" not in db() else 5
    # The row and the schema as the earlier release left them.
    statements = [
        f"UPDATE healthsim_state_tokens SET lookup = '{lookup}' WHERE name = 'older'",
        f"DELETE FROM healthsim_state_schema_version WHERE version = {version}",
    ]
    if "://" in db():
        import psycopg

        with psycopg.connect(db()) as con:
            for statement in statements:
                con.execute(statement)
    else:
        import duckdb

        with duckdb.connect(db()) as con:
            for statement in statements:
                con.execute(statement)
    assert sql(db(), "SELECT lookup FROM healthsim_state_tokens") == [(lookup,)]
    assert verify_token(db(), text) == Grant("older", "write", ("team-a",))  # (the open upgrades first)
    assert sql(db(), "SELECT lookup FROM healthsim_state_tokens") == [(hashlib.sha256(lookup.encode()).hexdigest(),)]
    assert sql(db(), "SELECT max(version) FROM healthsim_state_schema_version") == [(version,)]


def sql(database: str, statement: str) -> list[tuple[object, ...]]:
    if "://" in database:
        import psycopg

        with psycopg.connect(database) as con:
            return [tuple(r) for r in con.execute(statement).fetchall()]
    import duckdb

    with duckdb.connect(database) as con:
        return con.execute(statement).fetchall()


def test_bad_names_scopes_tags_and_duplicates_are_clear_errors(store: ScenarioStore) -> None:
    with pytest.raises(InvalidInputError, match=r"token scope 'root' is not one of read, write, admin"):
        create_token(db(), "a", "root")
    with pytest.raises(InvalidInputError, match=r"token name 'two words' is not allowed"):
        create_token(db(), "two words", "read")
    with pytest.raises(InvalidInputError, match=r"tags must be a list of strings"):
        create_token(db(), "a", "read", "solo")  # type: ignore[arg-type]
    create_token(db(), "a", "read")
    with pytest.raises(TokenExistsError, match=r"a token named 'a' exists; revoke it first"):
        create_token(db(), "a", "write")
    with pytest.raises(TokenNotFoundError, match=r"no token is named 'b'; healthsim token list shows them"):
        revoke_token(db(), "b")
    revoke_token(db(), "a")
    with pytest.raises(TokenNotFoundError, match=r"already revoked"):
        revoke_token(db(), "a")
    assert isinstance(TokenExistsError("x"), StateError)


def test_a_revoked_name_can_be_used_again_and_the_old_text_stays_dead(store: ScenarioStore) -> None:
    old = create_token(db(), "bot", "admin")
    revoke_token(db(), "bot")
    new = create_token(db(), "bot", "read", ["x"])
    assert verify_token(db(), old) is None
    assert verify_token(db(), new) == Grant("bot", "read", ("x",))
    assert [t["name"] for t in list_tokens(db())] == ["bot"]


def test_a_verifier_sees_a_revocation_at_the_next_check(store: ScenarioStore) -> None:
    text = create_token(db(), "kept", "write")
    verifier = TokenVerifier(db())
    assert verifier.verify(text) is not None
    started = time.perf_counter()
    assert verifier.verify(text) is not None  # remembered: no second scrypt
    assert time.perf_counter() - started < 1.0
    revoke_token(db(), "kept")
    assert verifier.verify(text) is None
    assert "kept" not in repr(verifier) and text not in repr(verifier)


def test_last_used_is_written_at_most_once_a_minute(store: ScenarioStore) -> None:
    text = create_token(db(), "busy", "read")
    assert list_tokens(db())[0]["last_used_at"] is None
    verifier = TokenVerifier(db())
    verifier.verify(text)
    first = sql(db(), "SELECT last_used_at FROM healthsim_state_tokens")[0][0]
    verifier.verify(text)
    assert sql(db(), "SELECT last_used_at FROM healthsim_state_tokens")[0][0] == first


def test_no_database_means_no_tokens(tmp_path: Path) -> None:
    missing = tmp_path / "none.duckdb"
    assert list_tokens(missing) == []
    assert verify_token(missing, "hst_0123456789abcdef_" + "A" * 43) is None
    assert not missing.exists()


def test_an_older_database_gains_the_tokens_table(tmp_path: Path) -> None:
    """A file made before the tokens (schema version 4) upgrades in place."""
    import duckdb

    path = tmp_path / "old.duckdb"
    ScenarioStore(path).save_scenario("kept", {"patients": [{"patient_id": "A"}]})
    with duckdb.connect(str(path)) as con:
        con.execute("DROP TABLE healthsim_state_tokens")
        con.execute("DELETE FROM healthsim_state_schema_version WHERE version >= 5")
    text = create_token(path, "after", "read")
    assert verify_token(path, text) == Grant("after", "read")
    assert ScenarioStore(path).load_scenario("kept")["entities"] == {"patients": [{"patient_id": "A"}]}


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([HEALTHSIM, *args], capture_output=True, text=True, env={**os.environ, "COLUMNS": "80"})


@pytest.mark.slow  # runs the installed program in processes
def test_the_cli_creates_lists_and_revokes(store: ScenarioStore) -> None:
    made = run("token", "create", "claude-alice", "--scope", "write", "--tag", "team-a", "--tag", "team-b")
    assert made.returncode == 0, made.stderr
    text = made.stdout.strip()
    assert TEXT.fullmatch(text)
    assert "cannot be shown again" in made.stderr and text not in made.stderr
    assert verify_token(db(), text) == Grant("claude-alice", "write", ("team-a", "team-b"))
    listed = run("token", "list")
    assert listed.returncode == 0
    lines = listed.stdout.splitlines()
    assert all(len(line) <= 80 for line in lines)
    assert "claude-alice" in listed.stdout and "team-a, team-b" in listed.stdout and text[21:] not in listed.stdout
    revoked = run("token", "revoke", "claude-alice")
    assert revoked.returncode == 0 and "revoked" in revoked.stdout
    assert verify_token(db(), text) is None
    again = run("token", "revoke", "claude-alice")
    assert again.returncode == 1 and again.stderr.startswith("error: the token 'claude-alice' is already revoked")
    bad = run("token", "create", "x", "--scope", "root")
    assert bad.returncode == 2 and "'root' is not one of read, write, admin" in bad.stderr  # bad usage


@pytest.mark.slow  # runs the installed program in processes
def test_the_cli_refuses_a_remote_address_without_allow_remote(tmp_path: Path) -> None:
    refused = run("mcp", "--http", "--host", "0.0.0.0", "--port", "1")
    assert refused.returncode == 2
    assert "reverse proxy with TLS" in refused.stderr and "--allow-remote" in refused.stderr


@pytest.mark.slow  # waits out the one-second pause
def test_wrong_secrets_for_one_token_are_hashed_once_a_second(
    store: ScenarioStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A hash costs 16 MiB and ~50 ms of a core: a caller who knows a token's lookup id
    must not be able to make the server hash at will. The token's own, already
    remembered text still passes meanwhile."""
    import hashlib

    text = create_token(db(), "target", "read")
    verifier = TokenVerifier(db())
    assert verifier.verify(text) is not None  # remembered
    calls: list[int] = []
    real = hashlib.scrypt

    def counted(*args: object, **kwargs: object) -> bytes:
        calls.append(1)
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(hashlib, "scrypt", counted)
    wrong = [text[:21] + f"{i:02d}" + text[23:] for i in range(10)]
    assert [verifier.verify(w) for w in wrong] == [None] * 10
    assert len(calls) == 1
    assert verifier.verify(text) is not None and len(calls) == 1
    time.sleep(1.05)
    assert verifier.verify(wrong[0]) is None and len(calls) == 2


def test_the_token_functions_are_public_api(store: ScenarioStore) -> None:
    """``healthsim.state`` exports the token functions (loaded on first use, like the other
    heavy names): the same objects as ``healthsim.state.tokens``'."""
    import healthsim.state as state
    from healthsim.state import tokens

    for name in ("create_token", "list_tokens", "revoke_token", "verify_token"):
        assert name in state.__all__ and getattr(state, name) is getattr(tokens, name), name
    text = state.create_token(db(), "public", "read", ["team-a"])
    assert state.verify_token(db(), text) == Grant("public", "read", ("team-a",))
    assert [t["name"] for t in state.list_tokens(db())] == ["public"]
    state.revoke_token(db(), "public")
    assert state.verify_token(db(), text) is None
