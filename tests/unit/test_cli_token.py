"""The API token commands, through click's runner: what the operator types and reads."""

from __future__ import annotations

import json

import pytest

from sentral.config.db import make_engine
from sentral.config.tokens import TOKEN_PREFIX, TokenStore, token_hash
from tests.unit.test_cli import fails, ok, run

CLINIC = "clinic.local"


@pytest.fixture
def db(db_url: str) -> str:
    """The demo clinic."""
    ok(db_url, "init", "--demo")
    return db_url


def test_token_add_prints_the_token_once_and_stores_only_its_hash(db: str) -> None:
    result = run(db, "token", "add", "journal")
    assert result.exit_code == 0, result.output
    token = result.stdout.strip()
    assert token.startswith(TOKEN_PREFIX) and len(token) > 40
    assert "not shown again" in result.stderr
    engine = make_engine(db)
    try:
        store = TokenStore(engine)
        found = store.find(token)
        assert found is not None and (found.domain, found.name) == (CLINIC, "journal")
        assert store.find(token + "x") is None
        with engine.connect() as connection:
            dump = "\n".join(str(row) for row in connection.exec_driver_sql("SELECT * FROM api_token"))
        assert token not in dump and token_hash(token) in dump
    finally:
        engine.dispose()
    listed = json.loads(ok(db, "token", "list", "--json"))
    assert [(t["domain"], t["name"]) for t in listed] == [(CLINIC, "journal")]
    assert token not in ok(db, "token", "list")
    assert "journal" in ok(db, "token", "list")
    assert ok(db, "token", "remove", "journal") == f"Removed token journal of {CLINIC}.\n"
    assert json.loads(ok(db, "token", "list", "--json")) == []
    assert "No API tokens" in ok(db, "token", "list")


def test_token_mistakes_are_one_sentence_and_a_non_zero_exit(db: str) -> None:
    ok(db, "token", "add", "journal")
    assert fails(db, "token", "add", "journal") == (
        f"sentral: {CLINIC} already has a token called journal; remove it first or choose another name\n"
    )
    assert "token name 'no spaces'" in fails(db, "token", "add", "no spaces")
    assert fails(db, "token", "remove", "nothing") == (
        f"sentral: {CLINIC} has no token called nothing; see `sentral token list`\n"
    )
    assert "there is no clinic elsewhere.test" in fails(db, "token", "add", "x", "--clinic", "elsewhere.test")
    ok(db, "clinic", "add", "other.test")
    assert "say which one" in fails(db, "token", "add", "another")
    assert ok(db, "token", "add", "journal", "--clinic", "other.test").startswith(TOKEN_PREFIX)
