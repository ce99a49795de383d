"""Storage of outside lines, on SQLite and PostgreSQL: trunks, public numbers, extra closed days, a
clinic's country and open countries, staff dial permissions, published trunk states, migration 0009."""

from __future__ import annotations

import datetime
from dataclasses import replace

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, text

from sentral.config.db import MIGRATIONS, make_engine, migrate, writing
from sentral.config.directory import (
    DialPermission,
    GroupKind,
    NumberFormat,
    PublicNumberEntry,
    directory_version,
    load_directory,
)
from sentral.config.models import Base
from sentral.config.store import (
    ConfigStore,
    GroupSettings,
    PublicNumberSettings,
    StoreError,
    TrunkSettings,
    TrunkState,
    TrunkStateStore,
    normalize_address,
    parse_host_port,
)

DOMAIN = "fjordheim.example"
OTHER = "nord.example"
CARRIER = TrunkSettings("sip.carrier.example", register=True, username="4722334455", password="s3cret-trunk")


@pytest.fixture
def store(engine: Engine) -> ConfigStore:
    store = ConfigStore(engine)
    store.create_clinic(DOMAIN, "Fjordheim legesenter")
    store.add_staff(DOMAIN, "1001", "Kari Nordmann", "fjord-secret-1")
    store.add_group(DOMAIN, "reception", GroupKind.GROUP, GroupSettings(number="200", acute_number="113"), ["1001"])
    return store


# -- trunks --------------------------------------------------------------------------------------


def test_a_trunk_is_stored_with_its_secret_and_reaches_the_directory_in_priority_order(
    store: ConfigStore, engine: Engine
) -> None:
    before = directory_version(engine)
    first = store.add_trunk(DOMAIN, "Telenor", CARRIER)
    assert first.name == "telenor" and first.port == 5060 and first.transport == "udp"
    assert first.password == "s3cret-trunk" and "s3cret" not in repr(first)
    store.add_trunk(
        DOMAIN,
        "backup",
        TrunkSettings(
            "192.0.2.50", 5080, "tcp", priority=5, number_format=NumberFormat.NATIONAL, addresses=("192.0.2.0/24",)
        ),
    )
    store.add_trunk(DOMAIN, "secure", TrunkSettings("sip.carrier.example", transport="tls", enabled=False))
    assert directory_version(engine) == before + 3
    directory = load_directory(engine)
    names = [trunk.name for trunk in directory.trunks[DOMAIN]]
    assert names == ["backup", "secure", "telenor"]  # priority 5, then 10 by name
    backup, secure, _ = directory.trunks[DOMAIN]
    assert (backup.port, backup.transport, backup.register, backup.username, backup.password) == (
        5080, "tcp", False, None, None
    )  # fmt: skip
    assert backup.number_format is NumberFormat.NATIONAL and backup.addresses == ("192.0.2.0/24",)
    assert secure.port == 5061 and not secure.enabled


def test_trunk_mistakes_are_refused_and_write_nothing(store: ConfigStore, engine: Engine) -> None:
    store.add_trunk(DOMAIN, "telenor", CARRIER)
    before = directory_version(engine)
    mistakes = [
        (lambda: store.add_trunk(DOMAIN, "telenor", CARRIER), "already a trunk called telenor"),
        (lambda: store.add_trunk(DOMAIN, "2go", CARRIER), "must start with a letter"),
        (lambda: store.add_trunk(DOMAIN, "x", TrunkSettings("bad host!")), "neither a host name nor an address"),
        (lambda: store.add_trunk(DOMAIN, "x", TrunkSettings("h.example", 70000)), "from 1 to 65535"),
        (lambda: store.add_trunk(DOMAIN, "x", TrunkSettings("h.example", transport="sctp")), "choose udp, tcp or tls"),
        (lambda: store.add_trunk(DOMAIN, "x", TrunkSettings("h.example", register=True)), "needs a username"),
        (lambda: store.add_trunk(DOMAIN, "x", TrunkSettings("h.example", addresses=("nope",))), "not an IP address"),
        (lambda: store.add_trunk(OTHER, "x", TrunkSettings("h.example")), "there is no clinic nord.example"),
        (lambda: store.trunk(DOMAIN, "nope"), "there is no trunk called nope"),
        (lambda: store.remove_trunk(DOMAIN, "nope"), "there is no trunk called nope"),
    ]
    for attempt, says in mistakes:
        with pytest.raises(StoreError, match=says):
            attempt()
    assert directory_version(engine) == before
    assert [trunk.name for trunk in store.trunks(DOMAIN)] == ["telenor"]


def test_a_trunk_is_changed_and_removed(store: ConfigStore, engine: Engine) -> None:
    store.add_trunk(DOMAIN, "telenor", CARRIER)
    changed = store.change_trunk(
        DOMAIN, "Telenor", replace(TrunkSettings.of(store.trunk(DOMAIN, "telenor")), priority=1, realm="carrier")
    )
    assert (changed.priority, changed.realm, changed.password) == (1, "carrier", "s3cret-trunk")
    with pytest.raises(StoreError, match="needs a username and a password"):
        store.change_trunk(DOMAIN, "telenor", replace(TrunkSettings.of(changed), password=None))
    assert store.remove_trunk(DOMAIN, "TELENOR") == "telenor"
    assert load_directory(engine).trunks == {}


@pytest.mark.parametrize(
    ("spec", "parsed"),
    [
        ("sip.carrier.example", ("sip.carrier.example", None)),
        ("SIP.Carrier.example:5080", ("sip.carrier.example", 5080)),
        ("192.0.2.1:5060", ("192.0.2.1", 5060)),
        ("[2001:db8::1]:5070", ("2001:db8::1", 5070)),
        ("2001:db8::1", ("2001:db8::1", None)),
    ],
)
def test_host_and_port_are_read_as_operators_write_them(spec: str, parsed: tuple[str, int | None]) -> None:
    assert parse_host_port(spec) == parsed


@pytest.mark.parametrize("spec", ["", "sip.carrier.example:0", "host:port", "[192.0.2.1]:5060", "a b", "1.2.3"])
def test_bad_hosts_and_ports_are_refused(spec: str) -> None:
    with pytest.raises(StoreError):
        parse_host_port(spec)


def test_addresses_are_kept_in_canonical_form() -> None:
    assert normalize_address("192.0.2.7/24") == "192.0.2.0/24"
    assert normalize_address("192.0.2.7") == "192.0.2.7"
    assert normalize_address("2001:DB8::1/128") == "2001:db8::1"


# -- public numbers ------------------------------------------------------------------------------


def test_public_numbers_lead_to_numbers_of_their_clinic_and_are_unique_on_the_server(
    store: ConfigStore, engine: Engine
) -> None:
    store.create_clinic(OTHER)
    main = store.add_public_number(
        DOMAIN, "+4722334455", PublicNumberSettings("200", "mon-fri 08:00-16:00", "+4711611700")
    )
    assert main == PublicNumberEntry(DOMAIN, "+4722334455", "200", "mon-fri 08:00-16:00", "+4711611700")
    store.add_public_number(DOMAIN, "+4722334456", PublicNumberSettings("113"))  # the acute number
    store.add_public_number(DOMAIN, "+4722334457", PublicNumberSettings("Announcement:Summer-closed"))
    store.add_public_number(DOMAIN, "+4722334458", PublicNumberSettings("1001", closed_to="200"))
    directory = load_directory(engine)
    assert sorted(directory.public_numbers) == ["+4722334455", "+4722334456", "+4722334457", "+4722334458"]
    assert directory.public_numbers["+4722334457"].destination == "announcement:summer-closed"
    before = directory_version(engine)
    mistakes = [
        (lambda: store.add_public_number(OTHER, "+4722334455", PublicNumberSettings("200")), "already a public number of"),
        (lambda: store.add_public_number(DOMAIN, "22334455", PublicNumberSettings("200")), "international form"),
        (lambda: store.add_public_number(DOMAIN, "+4722330000", PublicNumberSettings("999")), "cannot lead to '999'"),
        (lambda: store.add_public_number(OTHER, "+4722330000", PublicNumberSettings("200")), "cannot lead to '200'"),
        (
            lambda: store.add_public_number(DOMAIN, "+4722330000", PublicNumberSettings("announcement:")),
            "must name a prompt",
        ),
        (
            lambda: store.add_public_number(DOMAIN, "+4722330000", PublicNumberSettings("200", closed_to="555")),
            "--closed-to cannot lead to '555'",
        ),
        (lambda: store.public_number("+4799999999"), "there is no public number"),
        (lambda: store.remove_public_number("+4799999999"), "there is no public number"),
    ]
    for attempt, says in mistakes:
        with pytest.raises(StoreError, match=says):
            attempt()
    assert directory_version(engine) == before


def test_a_number_a_public_number_leads_to_cannot_be_given_up(store: ConfigStore) -> None:
    store.add_public_number(DOMAIN, "+4722334455", PublicNumberSettings("200", closed_to="1001"))
    with pytest.raises(StoreError, match=r"public number \+4722334455 of fjordheim.example leads to 1001"):
        store.remove_staff(DOMAIN, "1001")
    with pytest.raises(StoreError, match="leads to 200"):
        store.remove_group(DOMAIN, "reception", GroupKind.GROUP)
    changed = store.change_public_number("+4722334455", PublicNumberSettings("113"))
    assert (changed.destination, changed.hours, changed.closed_to) == ("113", None, None)
    store.remove_staff(DOMAIN, "1001")
    assert store.remove_public_number("+4722334455").destination == "113"
    store.remove_group(DOMAIN, "reception", GroupKind.GROUP)


def test_removing_a_clinic_with_trunks_and_numbers_needs_force(store: ConfigStore) -> None:
    store.add_trunk(DOMAIN, "telenor", CARRIER)
    store.add_public_number(DOMAIN, "+4722334455", PublicNumberSettings("200"))
    with pytest.raises(StoreError, match="1 trunk and 1 public number"):
        store.remove_clinic(DOMAIN)
    store.remove_clinic(DOMAIN, force=True)
    assert store.public_numbers() == [] and store.trunks() == []


# -- holidays, countries, staff ------------------------------------------------------------------


def test_extra_closed_days_reach_the_directory(store: ConfigStore, engine: Engine) -> None:
    day = datetime.date(2026, 12, 24)
    store.add_holiday(DOMAIN, day, "  Christmas   Eve ")
    store.add_holiday(DOMAIN, datetime.date(2026, 6, 19), "Staff day")
    assert [(h.day.isoformat(), h.name) for h in store.holidays(DOMAIN)] == [
        ("2026-06-19", "Staff day"),
        ("2026-12-24", "Christmas Eve"),
    ]
    assert load_directory(engine).holidays[DOMAIN] == {day, datetime.date(2026, 6, 19)}
    with pytest.raises(StoreError, match=r"2026-12-24 is already a closed day of fjordheim.example \(Christmas Eve\)"):
        store.add_holiday(DOMAIN, day, "again")
    store.remove_holiday(DOMAIN, day)
    with pytest.raises(StoreError, match="is not a closed day"):
        store.remove_holiday(DOMAIN, day)
    assert load_directory(engine).holidays[DOMAIN] == {datetime.date(2026, 6, 19)}


def test_a_clinic_has_its_own_country_open_unless_denied(store: ConfigStore, engine: Engine) -> None:
    clinic = load_directory(engine).clinic(DOMAIN)
    assert clinic is not None
    assert (clinic.country, clinic.main_number, clinic.timezone, clinic.open_countries) == ("NO", None, None, {47})
    store.set_clinic_outside(DOMAIN, country="se", main_number="+46812345678", timezone="Europe/Stockholm")
    store.set_countries_open(DOMAIN, [47, 45], True)
    clinic = load_directory(engine).clinic(DOMAIN)
    assert clinic is not None
    assert (clinic.country, clinic.main_number, clinic.timezone) == ("SE", "+46812345678", "Europe/Stockholm")
    assert clinic.open_countries == {46, 47, 45}
    store.set_countries_open(DOMAIN, [46, 45], False)
    assert store.country_choices(DOMAIN) == {45: False, 46: False, 47: True}
    clinic = load_directory(engine).clinic(DOMAIN)
    assert clinic is not None and clinic.open_countries == {47}
    for attempt, says in [
        (lambda: store.set_clinic_outside(DOMAIN, country="XX"), "country 'XX' is not known"),
        (lambda: store.set_clinic_outside(DOMAIN, main_number="22334455"), "international form"),
        (lambda: store.set_clinic_outside(DOMAIN, timezone="Mars/Olympus"), "time zone 'Mars/Olympus'"),
        (lambda: store.set_countries_open(DOMAIN, [1000], True), "not a country calling code"),
    ]:
        with pytest.raises(StoreError, match=says):
            attempt()


def test_staff_dial_permission_and_own_number(store: ConfigStore, engine: Engine) -> None:
    staff = load_directory(engine).staff_for(DOMAIN, "1001")
    assert staff is not None and staff.dial is DialPermission.NATIONAL and staff.public_number is None
    before = directory_version(engine)
    entry = store.set_dial(DOMAIN, "1001", DialPermission.INTERNATIONAL, "+4722334499")
    assert (entry.dial, entry.public_number) == (DialPermission.INTERNATIONAL, "+4722334499")
    assert directory_version(engine) == before + 1
    staff = load_directory(engine).staff_for(DOMAIN, "1001")
    assert staff is not None and staff.dial is DialPermission.INTERNATIONAL
    assert store.set_dial(DOMAIN, "1001", clear_number=True).public_number is None
    with pytest.raises(StoreError, match="international form"):
        store.set_dial(DOMAIN, "1001", public_number="4499")


# -- published trunk states ----------------------------------------------------------------------


def test_trunk_states_are_published_touched_aged_and_cleared(engine: Engine) -> None:
    states = TrunkStateStore(engine)
    states.publish(
        [
            TrunkState(DOMAIN, "telenor", "failed", 403, "Forbidden", 0),
            TrunkState(DOMAIN, "backup", "up", None, None, 2),
        ],
        now=1000.0,
    )
    assert states.list() == [
        TrunkState(DOMAIN, "backup", "up", None, None, 2, 1000.0),
        TrunkState(DOMAIN, "telenor", "failed", 403, "Forbidden", 0, 1000.0),
    ]
    assert states.list(max_age=5.0, now=1010.0) == []
    states.touch(now=1009.0)
    assert len(states.list(max_age=5.0, now=1010.0)) == 2
    states.publish([TrunkState(DOMAIN, "telenor", "registered", 200, None, 1)], now=1010.0)
    assert [(s.name, s.state) for s in states.list()] == [("telenor", "registered")]
    with pytest.raises(ValueError, match="not one of"):
        states.publish([TrunkState(DOMAIN, "telenor", "sleepy", None, None, 0)])
    states.clear()
    assert states.list() == []


# -- migration -----------------------------------------------------------------------------------


def _alembic(engine: Engine, action: str, revision: str) -> None:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with writing(engine).begin() as connection:
        config.attributes["connection"] = connection
        getattr(command, action)(config, revision)


def test_migration_0009_keeps_clinics_and_staff_and_goes_back(db_url: str) -> None:
    engine = make_engine(db_url)
    try:
        _alembic(engine, "upgrade", "0008")
        old = ConfigStore(engine)
        old.create_clinic(DOMAIN)
        old.add_staff(DOMAIN, "1001", "Kari Nordmann", "fjord-secret-1")
        migrate(engine)
        store = ConfigStore(engine)
        directory = load_directory(engine)
        clinic, staff = directory.clinic(DOMAIN), directory.staff_for(DOMAIN, "1001")
        assert clinic is not None and (clinic.country, clinic.open_countries) == ("NO", {47})
        assert staff is not None and staff.dial is DialPermission.NATIONAL
        store.add_trunk(DOMAIN, "telenor", CARRIER)
        store.add_public_number(DOMAIN, "+4722334455", PublicNumberSettings("1001"))
        store.add_holiday(DOMAIN, datetime.date(2026, 12, 24), "Christmas Eve")
        store.set_countries_open(DOMAIN, [46], True)
        TrunkStateStore(engine).publish([TrunkState(DOMAIN, "telenor", "registered", 200, None, 0)])
        _alembic(engine, "downgrade", "0008")
        with engine.connect() as connection:
            assert connection.execute(text("SELECT count(*) FROM staff")).scalar_one() == 1
            assert connection.execute(text("SELECT count(*) FROM clinic")).scalar_one() == 1
        migrate(engine)
        assert store.trunks() == [] and store.public_numbers() == [] and store.holidays(DOMAIN) == []
        assert TrunkStateStore(engine).list() == []
    finally:
        engine.dispose()


def test_the_migrated_outside_tables_are_the_models(engine: Engine) -> None:
    tables = ("clinic", "staff", "clinic_country", "trunk", "public_number", "holiday", "trunk_state")
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        differences = [
            diff for diff in compare_metadata(context, Base.metadata) if any(f"'{t}'" in repr(diff) for t in tables)
        ]
    assert differences == []
    assert {table for table in tables} <= set(Base.metadata.tables)
