"""`sentral backup` and `sentral restore`, through click's runner, on SQLite files a server holds open."""

from __future__ import annotations

import json
import sqlite3
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from sentral.config.backup import schema_revisions
from sentral.config.cdr import CallRecord, CdrStore, TransferRecord
from sentral.config.db import database_url, make_engine
from sentral.config.spool import CDR_SPOOL
from tests.unit.test_cli import fails, ok, run


@pytest.fixture(autouse=True)
def no_host_config(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Keep the machine's own config file and environment out of these tests."""
    monkeypatch.setattr("sentral.config.file.DEFAULT_CONFIG", tmp_path / "etc" / "sentral.toml")
    for name in ("SENTRAL_CONFIG", "SENTRAL_DB", "SENTRAL_SPOOL"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def db(tmp_path: Path) -> str:
    """An SQLite database with two members of staff."""
    path = str(tmp_path / "live" / "sentral.db")
    Path(path).parent.mkdir()
    ok(path, "init")
    ok(path, "user", "add", "1001", "--name", "Kari Nordmann", "--password", "correct-horse-1")
    ok(path, "user", "add", "1002", "--name", "Ola Nordmann", "--password", "correct-horse-2")
    return path


@pytest.fixture
def server(db: str) -> Iterator[Engine]:
    """The database as a running server holds it: a pooled connection stays open, and recent
    commits sit in the WAL, not yet checkpointed into the main file."""
    engine = make_engine(database_url(db))
    with engine.begin() as connection:
        connection.exec_driver_sql("PRAGMA wal_autocheckpoint=0")
        connection.execute(text("UPDATE staff SET name = 'Kari Solberg' WHERE extension = '1001'"))
    yield engine
    engine.dispose()


def extensions(db: str) -> dict[str, str]:
    return {entry["extension"]: entry["name"] for entry in json.loads(ok(db, "user", "list", "--json"))}


def test_backup_copies_what_a_running_server_committed(db: str, server: Engine, tmp_path: Path) -> None:
    assert Path(db + "-wal").stat().st_size > 0  # the change is in the WAL only
    copy = tmp_path / "backups" / "monday.db"
    copy.parent.mkdir()
    out = ok(db, "backup", str(copy))
    assert out.startswith(f"Backed up {db} to {copy} (") and f"schema version {schema_revisions()[-1]}" in out
    assert sorted(p.name for p in copy.parent.iterdir()) == ["monday.db"]  # no temporary left, no WAL
    assert stat.S_IMODE(copy.stat().st_mode) == 0o600  # it holds password hashes
    with sqlite3.connect(copy) as connection:
        assert connection.execute("PRAGMA journal_mode").fetchone() == ("delete",)
    assert extensions(str(copy)) == {"1001": "Kari Solberg", "1002": "Ola Nordmann"}


def test_backup_never_overwrites_unless_forced(db: str, tmp_path: Path) -> None:
    copy = tmp_path / "copy.db"
    copy.write_text("an older backup")
    assert fails(db, "backup", str(copy)) == (
        f"sentral: {copy} already exists; give another name or --force to replace it\n"
    )
    assert copy.read_text() == "an older backup"
    ok(db, "backup", str(copy), "--force")
    assert extensions(str(copy)) == {"1001": "Kari Nordmann", "1002": "Ola Nordmann"}
    assert (
        fails(db, "backup", db, "--force")
        == f"sentral: {db} is the database itself; give the backup another name\n"
    )


def test_backup_explains_what_it_cannot_do(db: str, tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "copy.db"
    assert fails(db, "backup", str(missing)) == (
        f"sentral: the directory {missing.parent} does not exist; create it first\n"
    )
    absent = str(tmp_path / "absent.db")
    assert fails(absent, "backup", str(tmp_path / "copy.db")) == (
        f"sentral: there is no database at {absent}; point --db at the one the server uses\n"
    )
    url = "postgresql+psycopg://sentral:s3cret@db.example.no/sentral"
    err = fails(url, "backup", str(tmp_path / "copy.db"))
    assert err == (
        "sentral: sentral backup copies SQLite databases; back up postgresql+psycopg://sentral:***@db.example.no/"
        "sentral with pg_dump, e.g. pg_dump --format=custom --file=sentral.dump "
        "'postgresql://sentral:***@db.example.no/sentral'\n"
    )
    assert "s3cret" not in err


def test_backup_warns_when_the_spool_holds_what_the_database_has_not(db: str, tmp_path: Path) -> None:
    spool = Path(db + "-spool")
    spool.mkdir()
    (spool / CDR_SPOOL).write_text('{"call_id": "a"}\n{"call_id": "b"}\n')
    result = run(db, "backup", str(tmp_path / "copy.db"))
    assert result.exit_code == 0, result.output
    assert result.stderr == (
        f"sentral: warning: 2 call records and 0 registration changes wait in the spool {spool} for the "
        "database; they are not in this backup: back up that directory too, or back up again once the "
        "server has stored them\n"
    )


def test_restore_into_a_new_path_and_over_a_database_kept_aside(db: str, tmp_path: Path) -> None:
    copy = tmp_path / "copy.db"
    ok(db, "backup", str(copy))
    fresh = str(tmp_path / "new" / "sentral.db")
    Path(fresh).parent.mkdir()
    assert (
        ok(fresh, "restore", str(copy))
        == f"Restored {fresh} from {copy} (schema version {schema_revisions()[-1]}).\n"
    )
    assert extensions(fresh) == {"1001": "Kari Nordmann", "1002": "Ola Nordmann"}

    ok(db, "user", "remove", "1002")
    out = ok(db, "restore", str(copy))
    assert f"The database it replaced is kept as {db}.before-restore." in out
    assert extensions(db) == {"1001": "Kari Nordmann", "1002": "Ola Nordmann"}
    assert extensions(db + ".before-restore") == {"1001": "Kari Nordmann"}
    assert fails(db, "restore", str(copy)) == (
        f"sentral: {db}.before-restore is there from an earlier restore; move it away first, or give --no-keep\n"
    )
    ok(db, "user", "remove", "1001")
    assert "kept" not in ok(db, "restore", str(copy), "--no-keep")
    assert extensions(db) == {"1001": "Kari Nordmann", "1002": "Ola Nordmann"}
    assert extensions(db + ".before-restore") == {"1001": "Kari Nordmann"}


def test_call_records_come_back_from_a_backup_with_their_transfers(db: str, tmp_path: Path) -> None:
    started = 1_740_816_000.0
    moved = CallRecord(
        call_id="c1", domain="clinic.local", caller="1001", callee="1002", started_at=started,
        answered_at=started + 3, ended_at=started + 60, disposition="answered", hangup_reason="BYE",
        status_to_caller=200,
        transfers=(TransferRecord(at=started + 20, by="1002", kind="blind", target="1003", outcome="answered"),),
    )  # fmt: skip
    engine = make_engine(database_url(db))
    try:
        CdrStore(engine).write([moved])
    finally:
        engine.dispose()
    copy = tmp_path / "copy.db"
    ok(db, "backup", str(copy))
    fresh = str(tmp_path / "new" / "sentral.db")
    Path(fresh).parent.mkdir()
    ok(fresh, "restore", str(copy))
    [record] = json.loads(ok(fresh, "cdr", "--json"))
    assert record["transfers"] == [
        {"at": "2025-03-01T08:00:20.000Z", "at_epoch": started + 20, "by": "1002", "kind": "blind",
         "target": "1003", "outcome": "answered"},
    ]  # fmt: skip


def test_restore_refuses_while_a_server_has_the_database_open(
    db: str, server: Engine, tmp_path: Path
) -> None:
    copy = tmp_path / "copy.db"
    ok(db, "backup", str(copy))
    assert fails(db, "restore", str(copy)) == (
        f"sentral: the database {db} is in use (a running server or another sentral command has it open); "
        "stop the server before restoring\n"
    )
    assert not Path(db + ".before-restore").exists()
    server.dispose()  # the server stops
    ok(db, "restore", str(copy))
    assert extensions(db + ".before-restore") == {"1001": "Kari Solberg", "1002": "Ola Nordmann"}


def test_restore_takes_only_a_sentral_database_it_knows(db: str, tmp_path: Path) -> None:
    target = str(tmp_path / "target.db")
    text_file = tmp_path / "notes.txt"
    text_file.write_text("not a database at all")
    assert fails(target, "restore", str(text_file)) == (
        f"sentral: {text_file} is not an SQLite database; give a file made by `sentral backup`\n"
    )
    other = tmp_path / "other.db"
    with sqlite3.connect(other) as connection:
        connection.execute("CREATE TABLE t (x)")
    assert fails(target, "restore", str(other)) == (
        f"sentral: {other} is an SQLite database but not a Sentral one (it has no Sentral schema)\n"
    )
    newer = tmp_path / "newer.db"
    ok(db, "backup", str(newer))
    with sqlite3.connect(newer) as connection:
        connection.execute("UPDATE alembic_version SET version_num = '9999'")
    assert "carries schema version 9999, which this Sentral does not know" in fails(
        target, "restore", str(newer)
    )
    assert not Path(target).exists()
    url = "postgresql+psycopg://sentral:s3cret@db.example.no/sentral"
    assert "pg_restore --clean --if-exists --dbname=URL FILE" in fails(url, "restore", str(newer))


def test_restoring_an_older_schema_says_to_upgrade_it(db: str, tmp_path: Path) -> None:
    older = tmp_path / "older.db"
    ok(db, "backup", str(older))
    first = schema_revisions()[0]
    with sqlite3.connect(older) as connection:
        connection.execute("UPDATE alembic_version SET version_num = ?", (first,))
    target = str(tmp_path / "target.db")
    out = ok(target, "restore", str(older))
    assert f"(schema version {first})" in out
    assert "run `sentral init --domain DOMAIN` (the clinic's domain) to upgrade it before serving" in out
