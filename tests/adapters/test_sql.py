"""The sql adapter against real SQLite and PostgreSQL databases holding numbers typed every way."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from types import MappingProxyType

import pytest
from sqlalchemy import create_engine, text
from structlog.testing import capture_logs

from sentral.adapters import AdapterError, CallerKind, LookupChain, Match
from sentral.adapters.sql import SqlAdapter
from sentral.config.directory import AdapterEntry, ClinicEntry, Directory

# Everyone's number is +47 912 34 5NN, each written another way; the last row is Swedish.
PATIENTS = [
    (1, "Ola Nordmann", "+4791234501", "15076500565"),
    (2, "Kari Nordmann", "4791234502", None),
    (3, "Per Hansen", "004791234503", None),
    (4, "Anne Olsen", "91234504", None),
    (5, "Nils Berg", "912 34 505", None),
    (6, "Eva Lie", "+47 912 34 506", None),
    (7, "Jon Dahl", "(+47) 912-34-507", None),
    (8, "Siri Moe", "912.34.508", None),
    (9, "Sven Svensson", "+46 70 123 45 67", None),
]
# Numbers given at the card terminal, kept in a table of their own.
TERMINAL = [(10, "Liv Strand", "004791234510")]

BY_NUMBER = """
SELECT name, 'patient', 'P' || id FROM patients
WHERE replace(replace(replace(replace(replace(phone, ' ', ''), '-', ''), '(', ''), ')', ''), '.', '')
      IN (:number, :digits, :zero_zero, :national)
UNION ALL
SELECT name, kind, '' FROM terminal WHERE phone IN (:number, :digits, :zero_zero, :national)
"""
BY_ID = "SELECT name, 'patient', 'P' || id FROM patients WHERE national_id = :national_id"


@pytest.fixture
def records(db_url: str) -> Iterator[str]:
    """A database URL whose patients and terminal tables are filled."""
    engine = create_engine(db_url)
    with engine.begin() as connection:
        connection.execute(
            text("CREATE TABLE patients (id INTEGER PRIMARY KEY, name TEXT, phone TEXT, national_id TEXT)")
        )
        connection.execute(text("CREATE TABLE terminal (id INTEGER PRIMARY KEY, name TEXT, phone TEXT, kind TEXT)"))
        connection.execute(
            text("INSERT INTO patients VALUES (:id, :name, :phone, :national_id)"),
            [dict(zip(("id", "name", "phone", "national_id"), row, strict=True)) for row in PATIENTS],
        )
        connection.execute(
            text("INSERT INTO terminal VALUES (:id, :name, :phone, 'contact')"),
            [dict(zip(("id", "name", "phone"), row, strict=True)) for row in TERMINAL],
        )
    engine.dispose()
    yield db_url


def adapter(url: str, query_number: str | None = BY_NUMBER, query_id: str | None = BY_ID) -> SqlAdapter:
    return SqlAdapter(AdapterEntry("clinic.test", "journal", "sql", 1, url, query_number, query_id))


def test_numbers_written_in_any_format_match(records: str) -> None:
    sql = adapter(records)

    async def look_up_all() -> list[Match | None]:
        try:
            found = [await sql.by_number(f"+47912345{n:02}") for n in range(1, 9)]
            found.append(await sql.by_number("+46701234567"))
            found.append(await sql.by_number("+4791234510"))
            found.append(await sql.by_number("+4791234599"))
            return found
        finally:
            await sql.close()

    found = asyncio.run(look_up_all())
    names = [match.name if match else None for match in found]
    assert names[:8] == [row[1] for row in PATIENTS[:8]]
    assert names[8] == "Sven Svensson"  # a foreign number, written with its country code
    assert found[9] == Match("Liv Strand", CallerKind.CONTACT, "", "journal")
    assert names[10] is None
    assert found[0] == Match("Ola Nordmann", CallerKind.PATIENT, "P1", "journal")


def test_national_forms_follow_the_clinics_country(records: str) -> None:
    sql = adapter(records)
    clinic = ClinicEntry("clinic.test", "Klinik", ("SHA-256",), country="SE")
    sql.use_directory(Directory(1, MappingProxyType({clinic.domain: clinic}), MappingProxyType({})))
    query = "SELECT name FROM patients WHERE replace(phone, ' ', '') IN (:number, :national_spaced, :international_spaced)"
    swedish = adapter(records, query)
    swedish.use_directory(Directory(1, MappingProxyType({clinic.domain: clinic}), MappingProxyType({})))

    async def look_up() -> Match | None:
        try:
            return await swedish.by_number("+46701234567")
        finally:
            await swedish.close()
            await sql.close()

    match = asyncio.run(look_up())
    assert match is not None and match.name == "Sven Svensson"


def test_by_national_id(records: str) -> None:
    sql = adapter(records)

    async def look_up() -> tuple[Match | None, Match | None]:
        try:
            return await sql.by_national_id("15076500565"), await sql.by_national_id("01010112345")
        finally:
            await sql.close()

    found, missing = asyncio.run(look_up())
    assert found == Match("Ola Nordmann", CallerKind.PATIENT, "P1", "journal")
    assert missing is None


def test_a_broken_query_is_a_logged_miss_that_never_shows_the_national_id(records: str) -> None:
    broken = adapter(records, "SELECT name FROM nowhere WHERE phone = :number", "SELECT nope FROM x WHERE y = :national_id")
    chain = LookupChain([broken])

    async def look_up() -> tuple[Match | None, Match | None]:
        try:
            return await chain.by_number("+4791234501"), await chain.by_national_id("15076500565")
        finally:
            await chain.close()

    with capture_logs() as logs:
        assert asyncio.run(look_up()) == (None, None)
    assert [entry["event"] for entry in logs if entry["log_level"] == "warning"] == ["lookup_failed"] * 2
    assert "15076500565" not in repr(logs)
    assert "+4791234501" not in repr([entry for entry in logs if entry["log_level"] != "debug"])


def test_a_configuration_without_a_url_or_query_is_refused() -> None:
    with pytest.raises(AdapterError, match="--url"):
        SqlAdapter(AdapterEntry("clinic.test", "journal", "sql", 1, None, BY_NUMBER))
    with pytest.raises(AdapterError, match="--query-number"):
        SqlAdapter(AdapterEntry("clinic.test", "journal", "sql", 1, "sqlite://"))
    with pytest.raises(AdapterError, match="SQLAlchemy URL"):
        SqlAdapter(AdapterEntry("clinic.test", "journal", "sql", 1, "nosuchdb://x", BY_NUMBER))
