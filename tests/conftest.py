"""Shared database fixtures: every storage test runs on SQLite and on PostgreSQL.

PostgreSQL comes from ``$SENTRAL_TEST_PG`` (a ``postgresql+psycopg://`` URL). Each test gets a
schema of its own, created for it and dropped afterwards, and reaches it through ``search_path``
in the URL, so tests never see each other's rows and can run in parallel against one database.
Without ``$SENTRAL_TEST_PG`` the PostgreSQL variants skip on a workstation but fail under CI,
where a silently skipped backend would hide a broken one.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest
import structlog
from sqlalchemy import Engine, create_engine
from sqlalchemy.engine import make_url

from sentral.config.db import database_url, make_engine, migrate

PG_ENV = "SENTRAL_TEST_PG"


@pytest.fixture(autouse=True, scope="session")
def _loggers_follow_the_configuration() -> Iterator[None]:
    """The server caches each logger's configuration on its first use, which is right for a
    process configured once. Tests run the CLI in-process, each run configuring logging anew:
    a module's logger first used under one test's configuration would keep its level and
    processors for every later test (and hide events from ``capture_logs``). Here no logger
    caches, so each follows the configuration of the moment."""
    original = structlog.configure

    def configure(**settings: object) -> None:
        settings["cache_logger_on_first_use"] = False
        original(**settings)  # type: ignore[arg-type]

    structlog.configure = configure  # type: ignore[assignment]
    try:
        yield
    finally:
        structlog.configure = original


@pytest.fixture(autouse=True)
def _logging_as_found() -> Iterator[None]:
    """Whatever logging a test configured ends with it."""
    yield
    structlog.reset_defaults()


def _postgres_base_url() -> str:
    url = os.environ.get(PG_ENV)
    if url:
        return url
    if os.environ.get("CI"):
        pytest.fail(f"{PG_ENV} is not set: CI must run the storage tests against PostgreSQL too")
    pytest.skip(f"set {PG_ENV} to a postgresql+psycopg:// URL to run the PostgreSQL variant")


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The URL of an empty database, not yet migrated: an SQLite file or a fresh PostgreSQL schema."""
    if request.param == "sqlite":
        yield database_url(str(tmp_path_factory.mktemp("db") / "sentral.db"))
        return
    base = _postgres_base_url()
    schema = f"t_{uuid.uuid4().hex}"
    admin = create_engine(base)
    try:
        with admin.begin() as connection:
            connection.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
        url = make_url(base).update_query_dict({"options": f"-csearch_path={schema}"})
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.begin() as connection:
            connection.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        admin.dispose()


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    """An engine on a freshly migrated database."""
    engine = make_engine(db_url)
    migrate(engine)
    yield engine
    engine.dispose()
