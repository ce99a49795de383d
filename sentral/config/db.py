"""The database engine: where the database is, how to open it, and its schema version.

SQLite is the embedded default. Each connection runs in WAL mode with ``synchronous=NORMAL``: a
committed transaction survives a crash of the process (it may be lost only on power failure before
the next checkpoint), and readers never block the writer. Python's sqlite3 module is told to stay
out of transaction control so that this module can start write transactions with ``BEGIN
IMMEDIATE``: a deferred transaction that reads first and then writes fails at once with "database
is locked" when another process wrote in between, whereas an immediate one waits on
``busy_timeout`` like any other lock. Read-only work keeps plain ``BEGIN`` so the server's
directory polling never takes the write lock.

PostgreSQL is reached through psycopg 3 with any ``postgresql+psycopg://`` URL.

The schema is owned by Alembic; ``migrate`` runs the migrations shipped inside the package, so an
installed ``sentral`` needs no ``alembic.ini`` on disk.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, StatementError
from sqlalchemy.pool import ConnectionPoolEntry

DEFAULT_DATABASE = "sentral.db"
ENV_DATABASE = "SENTRAL_DB"
BUSY_TIMEOUT_MS = 5000
MIGRATIONS = Path(__file__).resolve().parent / "migrations"

# Execution option that marks an engine whose transactions write; see ``writing``.
WRITE_OPTION = "sentral_write"


class StoreError(Exception):
    """A configuration or storage problem, worded as one sentence an operator can act on."""


def first_line(exc: BaseException) -> str:
    """The first line of a database error: it names the failure or the constraint.

    The lines after it hold row data (PostgreSQL's DETAIL), and SQLAlchemy's own rendering of the
    error appends the statement and its parameters; neither may reach a log line.
    """
    text = str(getattr(exc, "orig", None) or exc).strip()
    return text.splitlines()[0].strip() if text else type(exc).__name__


@contextmanager
def worded(what: str) -> Iterator[None]:
    """Re-raise a database error inside the block as ``StoreError("WHAT: first line")``.

    Extensions, contacts, addresses and phone numbers are the parameters of the statements run
    here, so the error keeps none of them, and does not chain the original (a logged traceback
    would print it).
    """
    try:
        yield
    except StatementError as exc:
        raise StoreError(f"{what}: {first_line(exc)}") from None


def database_url(arg: str | None) -> str:
    """The SQLAlchemy URL to use: ``--db`` if given, else ``$SENTRAL_DB``, else ``./sentral.db``.

    A value without ``://`` is a path to an SQLite file.
    """
    value = arg or os.environ.get(ENV_DATABASE) or DEFAULT_DATABASE
    if "://" in value:
        return value
    return URL.create("sqlite+pysqlite", database=str(Path(value).expanduser().absolute())).render_as_string()


def describe_url(url: str) -> str:
    """The database as an operator would name it: the file path for SQLite, the URL without password."""
    path = sqlite_path(url)
    if path is not None:
        return path
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return url


def sqlite_path(url: str) -> str | None:
    """The file behind an SQLite URL, or None for other databases and in-memory SQLite."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        return None
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    return parsed.database


def make_engine(url: str) -> Engine:
    """Open an engine for ``url``; SQLite connections get WAL, a busy timeout and foreign keys."""
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise StoreError(
            f"{url!r} is not a database URL; give a file path or a URL such as "
            "postgresql+psycopg://user:password@host/dbname"
        ) from exc
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        engine = create_engine(parsed)
        event.listen(engine, "connect", _sqlite_connect)
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    if backend == "postgresql":
        if parsed.get_driver_name() != "psycopg":
            parsed = parsed.set(drivername="postgresql+psycopg")
        return create_engine(parsed, pool_pre_ping=True)
    raise StoreError(f"{describe_url(url)}: sentral stores its data in SQLite or PostgreSQL only")


def writing(engine: Engine) -> Engine:
    """The same engine, with transactions that take the write lock up front on SQLite."""
    return engine.execution_options(**{WRITE_OPTION: True})


def _sqlite_connect(dbapi_connection: Any, _record: ConnectionPoolEntry) -> None:
    # The driver must not open transactions by itself: ``_sqlite_begin`` does it.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys=ON")
    finally:
        cursor.close()


def _sqlite_begin(connection: Any) -> None:
    immediate = connection.get_execution_options().get(WRITE_OPTION, False)
    connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def _alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("path_separator", "os")
    return config


def migrate(engine: Engine) -> None:
    """Bring the schema up to the newest migration (creating it in an empty database)."""
    config = _alembic_config()
    with writing(engine).begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "head")


def schema_revisions(engine: Engine) -> tuple[str, ...]:
    """The migrations the database carries now; none for a database sentral has not set up."""
    with engine.connect() as connection:
        return tuple(MigrationContext.configure(connection).get_current_heads())


def newest_revision() -> str:
    """The newest migration shipped with this version of sentral."""
    head = ScriptDirectory.from_config(_alembic_config()).get_current_head()
    assert head is not None, "the migrations have one head"
    return head


def schema_is_current(engine: Engine) -> bool:
    """True when the database carries exactly the newest migration, so the server may use it."""
    heads = set(ScriptDirectory.from_config(_alembic_config()).get_heads())
    with engine.connect() as connection:
        current = set(MigrationContext.configure(connection).get_current_heads())
    return current == heads


__all__ = [
    "StoreError",
    "database_url",
    "describe_url",
    "first_line",
    "make_engine",
    "migrate",
    "newest_revision",
    "schema_is_current",
    "schema_revisions",
    "sqlite_path",
    "worded",
    "writing",
]
