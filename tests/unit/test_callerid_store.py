"""Storage of caller ID on SQLite and PostgreSQL: adapters in chain order, contacts (an import adds
all or none), a clinic's lookup budget, a public number's national-ID prompt, the CDR's caller
columns and migration 0011."""

from __future__ import annotations

from dataclasses import replace

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, text

from sentral.config.callerid import AdapterSettings, CallerIdStore
from sentral.config.cdr import CallRecord, CdrStore
from sentral.config.db import MIGRATIONS, StoreError, make_engine, migrate, writing
from sentral.config.directory import AdapterEntry, ContactEntry, directory_version, load_directory
from sentral.config.models import Base
from sentral.config.store import ConfigStore, PublicNumberSettings

DOMAIN = "fjordheim.example"
SQL = AdapterSettings("sql", url="sqlite:///journal.db", query_number="SELECT name FROM p WHERE phone = :number")


@pytest.fixture
def store(engine: Engine) -> CallerIdStore:
    config = ConfigStore(engine)
    config.create_clinic(DOMAIN, "Fjordheim legesenter")
    config.add_staff(DOMAIN, "1001", "Kari Nordmann", "fjord-secret-1")
    return CallerIdStore(engine)


def test_adapters_keep_their_chain_order_and_reach_the_directory(store: CallerIdStore, engine: Engine) -> None:
    before = directory_version(engine)
    store.add_adapter(DOMAIN, "Journal", SQL)
    store.add_adapter(DOMAIN, "list", AdapterSettings("csv", file="/srv/patients.csv"))
    store.add_adapter(DOMAIN, "own", AdapterSettings("contacts"), position=1)
    assert [(a.name, a.position) for a in store.adapters(DOMAIN)] == [("own", 1), ("journal", 2), ("list", 3)]
    moved = store.change_adapter(DOMAIN, "own", AdapterSettings("contacts"), position=9)
    assert moved.position == 3
    store.remove_adapter(DOMAIN, "journal")
    directory = load_directory(engine)
    assert directory.version > before
    assert directory.adapters[DOMAIN] == (
        AdapterEntry(DOMAIN, "list", "csv", 1, file="/srv/patients.csv"),
        AdapterEntry(DOMAIN, "own", "contacts", 2),
    )


def test_adapter_mistakes_are_refused_in_words(store: CallerIdStore) -> None:
    store.add_adapter(DOMAIN, "journal", SQL)
    with pytest.raises(StoreError, match="already has an adapter journal"):
        store.add_adapter(DOMAIN, "journal", SQL)
    with pytest.raises(StoreError, match="needs --file PATH"):
        store.add_adapter(DOMAIN, "list", AdapterSettings("csv"))
    with pytest.raises(StoreError, match="needs --query-number SQL"):
        store.add_adapter(DOMAIN, "db", AdapterSettings("sql", url="sqlite://"))
    with pytest.raises(StoreError, match="must start with a letter"):
        store.add_adapter(DOMAIN, "1st", AdapterSettings("contacts"))
    with pytest.raises(StoreError, match="no adapter nope"):
        store.change_adapter(DOMAIN, "nope", AdapterSettings("contacts"))
    with pytest.raises(StoreError, match="no clinic"):
        store.adapters("nowhere.example")
    with pytest.raises(StoreError, match="--position must be 1"):
        store.change_adapter(DOMAIN, "journal", SQL, position=0)


def test_contacts_are_added_all_or_none(store: CallerIdStore, engine: Engine) -> None:
    store.add_contacts(DOMAIN, [("Apotek 1", "+4722334455", "contact")])
    with pytest.raises(StoreError, match="already has a contact 'Apotek 1'"):
        store.add_contacts(DOMAIN, [("NAV Fjordheim", "+4755556666", "contact"), ("apotek 1", "+4799999999", "contact")])
    with pytest.raises(StoreError, match="given twice"):
        store.add_contacts(DOMAIN, [("NAV", "+4755556666", "contact"), ("nav", "+4755556667", "contact")])
    with pytest.raises(StoreError, match="must be one of"):
        store.add_contacts(DOMAIN, [("NAV", "+4755556666", "wizard")])
    with pytest.raises(StoreError, match="international form"):
        store.add_contacts(DOMAIN, [("NAV", "55556666", "contact")])
    assert [c.name for c in store.contacts(DOMAIN)] == ["Apotek 1"]
    store.add_contacts(DOMAIN, [("Ola Nordmann", "+4791234567", "patient")])
    assert load_directory(engine).contacts[DOMAIN] == (
        ContactEntry(DOMAIN, "Apotek 1", "+4722334455", "contact"),
        ContactEntry(DOMAIN, "Ola Nordmann", "+4791234567", "patient"),
    )
    assert store.remove_contact(DOMAIN, "apotek 1").name == "Apotek 1"
    with pytest.raises(StoreError, match="no contact"):
        store.contact(DOMAIN, "Apotek 1")


def test_lookup_budget_and_national_id_prompt_reach_the_directory(store: CallerIdStore, engine: Engine) -> None:
    config = ConfigStore(engine)
    assert load_directory(engine).clinics[DOMAIN].lookup_budget == pytest.approx(0.150)
    assert config.set_clinic_outside(DOMAIN, lookup_budget_ms=400).lookup_budget == pytest.approx(0.4)
    with pytest.raises(StoreError, match="from 0 to 2000"):
        config.set_clinic_outside(DOMAIN, lookup_budget_ms=5000)
    entry = config.add_public_number(DOMAIN, "+4722334400", PublicNumberSettings("1001"))
    assert entry.ask_id is False
    changed = config.change_public_number("+4722334400", replace(PublicNumberSettings.of(entry), ask_id=True))
    assert changed.ask_id is True
    assert load_directory(engine).public_numbers["+4722334400"].ask_id is True


def test_call_records_keep_who_the_lookup_found(engine: Engine) -> None:
    found = CallRecord(
        call_id="c1", domain=DOMAIN, caller="+4791234567", callee="+4722334400", started_at=1000.0,
        ended_at=1010.0, disposition="answered", hangup_reason="BYE", status_to_caller=200,
        caller_name="Ola Nordmann", caller_kind="patient", caller_reference="Patient/ola", caller_source="journal",
    )  # fmt: skip
    unknown = replace(found, call_id="c2", caller_name=None, caller_kind=None, caller_reference=None, caller_source=None)
    cdr = CdrStore(engine)
    cdr.write([found, unknown])
    assert cdr.list() == [found, unknown]


def _alembic(engine: Engine, action: str, revision: str) -> None:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with writing(engine).begin() as connection:
        config.attributes["connection"] = connection
        getattr(command, action)(config, revision)


def test_migration_0011_keeps_what_was_there_and_goes_back(db_url: str) -> None:
    engine = make_engine(db_url)
    try:
        _alembic(engine, "upgrade", "0010")
        ConfigStore(engine).create_clinic(DOMAIN)
        with writing(engine).begin() as connection:
            connection.execute(
                text(
                    "INSERT INTO call_record (call_id, domain, caller, callee, started_at, ended_at, disposition, "
                    "hangup_reason, status_to_caller) VALUES ('old', :d, '1001', '1002', 1, 2, 'busy', 'x', 486)"
                ),
                {"d": DOMAIN},
            )
        migrate(engine)
        assert load_directory(engine).clinics[DOMAIN].lookup_budget == pytest.approx(0.150)
        assert CdrStore(engine).list()[0].caller_kind is None
        CallerIdStore(engine).add_adapter(DOMAIN, "own", AdapterSettings("contacts"))
        CallerIdStore(engine).add_contacts(DOMAIN, [("Apotek 1", "+4722334455", "contact")])
        _alembic(engine, "downgrade", "0010")
        with engine.connect() as connection:
            assert connection.execute(text("SELECT count(*) FROM call_record")).scalar_one() == 1
        migrate(engine)
        assert CallerIdStore(engine).adapters(DOMAIN) == []
    finally:
        engine.dispose()


def test_the_migrated_caller_id_tables_are_the_models(engine: Engine) -> None:
    tables = ("clinic", "public_number", "call_record", "caller_adapter", "contact")
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        differences = [
            diff for diff in compare_metadata(context, Base.metadata) if any(f"'{t}'" in repr(diff) for t in tables)
        ]
    assert differences == []
