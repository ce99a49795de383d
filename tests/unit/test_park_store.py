"""Storage of park lots, on SQLite and PostgreSQL: ranges, number clashes both ways, the directory."""

from __future__ import annotations

import re
from contextlib import AbstractContextManager
from dataclasses import replace

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, text
from sqlalchemy.exc import IntegrityError

from sentral.config.db import MIGRATIONS, make_engine, migrate, writing
from sentral.config.directory import GroupKind, ParkLotEntry, directory_version, load_directory
from sentral.config.models import Base
from sentral.config.store import ConfigStore, GroupSettings, ParkSettings, StoreError, parse_slots

DOMAIN = "fjordheim.example"
MAIN = ParkSettings("700", "701", "720")


@pytest.fixture
def store(engine: Engine) -> ConfigStore:
    """A clinic with a doctor at 1001 and a nurse at 1003."""
    store = ConfigStore(engine)
    store.create_clinic(DOMAIN, "Fjordheim legesenter")
    store.add_staff(DOMAIN, "1001", "Ingrid Solberg", "fjord-secret-1", ["doctor"])
    store.add_staff(DOMAIN, "1003", "Silje Nilsen", "fjord-secret-3", ["nurse"])
    return store


def refused(message: str) -> AbstractContextManager[pytest.ExceptionInfo[StoreError]]:
    """Expect a StoreError carrying exactly this sentence."""
    return pytest.raises(StoreError, match=f"^{re.escape(message)}$")


# -- schema --------------------------------------------------------------------------------------


def _alembic(engine: Engine, action: str, revision: str) -> None:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with writing(engine).begin() as connection:
        config.attributes["connection"] = connection
        getattr(command, action)(config, revision)


def test_migration_0003_adds_park_lots_to_a_0002_database_and_goes_back(db_url: str) -> None:
    engine = make_engine(db_url)
    try:
        _alembic(engine, "upgrade", "0002")
        ConfigStore(engine).create_clinic(DOMAIN)
        with writing(engine).begin() as connection:
            connection.execute(text("UPDATE directory_version SET version = 7"))
        migrate(engine)
        store = ConfigStore(engine)
        store.add_park_lot(DOMAIN, "main", MAIN)
        assert [lot.name for lot in store.park_lots(DOMAIN)] == ["main"]
        _alembic(engine, "downgrade", "0002")
        with engine.connect() as connection:
            assert connection.execute(text("SELECT count(*) FROM clinic")).scalar_one() == 1
        migrate(engine)
        assert store.park_lots(DOMAIN) == []
    finally:
        engine.dispose()


def test_the_migrated_park_lot_table_is_the_model(engine: Engine) -> None:
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        differences = [
            diff
            for diff in compare_metadata(context, Base.metadata)
            if "park_lot" in repr(diff)
        ]
    assert differences == []


def test_the_database_itself_refuses_slots_of_two_widths_or_backwards(store: ConfigStore, engine: Engine) -> None:
    for first, last in (("98", "102"), ("720", "701")):
        with pytest.raises(IntegrityError, match="ck_park_lot_slots"), engine.begin() as c:
            c.execute(
                text(
                    "INSERT INTO park_lot (clinic_id, name, number, first_slot, last_slot, timeout) "
                    "SELECT id, 'x', '700', :f, :l, 45 FROM clinic"
                ),
                {"f": first, "l": last},
            )


# -- settings ------------------------------------------------------------------------------------


def test_slot_ranges_are_parsed_and_bad_ones_refused_with_a_sentence() -> None:
    assert parse_slots("701-720") == ("701", "720")
    assert parse_slots(" 701 ") == ("701", "701")
    assert parse_slots("0098-0102") == ("0098", "0102")
    cases = {
        "701..720": "slots '701..720' must be a range of numbers such as 701-720",
        "701-": "slots '701-' must be a range of numbers such as 701-720",
        "7-20": "slot 7 must be 2 to 10 digits; give a range such as 701-720",
        "98-102": "slots 98-102 must have as many digits at both ends, such as 701-720 or 0098-0102",
        "720-701": "slots 720-701 run backwards; give the lowest slot first, such as 701-720",
        "700-800": "slots 700-800 are 101 slots; a park lot has at most 100",
    }
    for text_, sentence in cases.items():
        with refused(sentence):
            parse_slots(text_)
    assert parse_slots("700-799") == ("700", "799")  # exactly 100


def test_a_lot_keeps_its_settings_and_the_timeout_defaults_to_45_seconds(store: ConfigStore) -> None:
    lot = store.add_park_lot(DOMAIN, " Main ", MAIN)
    assert lot == ParkLotEntry(DOMAIN, "main", "700", "701", "720", 45.0)
    ward = store.add_park_lot(DOMAIN, "ward", ParkSettings("80", "0081", "0089", timeout=120))
    assert store.park_lots(DOMAIN) == [lot, ward]
    assert store.park_lot(DOMAIN, "WARD") == ward
    assert ward.slots[0] == "0081" and len(ward.slots) == 9


def test_bad_lot_settings_are_refused_and_nothing_is_stored(store: ConfigStore, engine: Engine) -> None:
    version = directory_version(engine)
    cases = [
        ("main", ParkSettings("7a", "701", "720"), "park number '7a' must be 2 to 10 digits, such as 200"),
        ("main", ParkSettings("705", "701", "720"),
         "the park number 705 of park lot main is one of its slots 701-720; choose a number outside them"),
        ("main", ParkSettings("700", "720", "701"),
         "slots 720-701 run backwards; give the lowest slot first, such as 701-720"),
        ("main", ParkSettings("700", "701", "720", timeout=5),
         "the park timeout must be a whole number of seconds from 10 to 3600, not 5"),
        ("1st", MAIN,
         "park lot name '1st' must start with a letter and hold only letters, digits and hyphens, such as main"),
    ]  # fmt: skip
    for name, settings, sentence in cases:
        with refused(sentence):
            store.add_park_lot(DOMAIN, name, settings)
    with refused("there is no clinic nord.example; known clinics: fjordheim.example"):
        store.add_park_lot("nord.example", "main", MAIN)
    assert store.park_lots(DOMAIN) == []
    assert directory_version(engine) == version


# -- one name space of numbers -------------------------------------------------------------------


def test_park_numbers_and_slots_must_be_free_in_the_clinic(store: ConfigStore) -> None:
    store.add_group(DOMAIN, "doctors", GroupKind.GROUP, GroupSettings(number="200", acute_number="201"))
    store.set_role_number(DOMAIN, "nurse", "300")
    store.add_park_lot(DOMAIN, "main", MAIN)
    cases = [
        (ParkSettings("1001", "801", "810"),
         "number 1001 is already taken by extension 1001 (Ingrid Solberg) in fjordheim.example; choose another"),
        (ParkSettings("800", "195", "205"),
         "slot 200 is already taken by group doctors in fjordheim.example; choose another range than 195-205"),
        (ParkSettings("201", "801", "810"),
         "number 201 is already taken by the acute number of group doctors in fjordheim.example; choose another"),
        (ParkSettings("800", "299", "301"),
         "slot 300 is already taken by role nurse in fjordheim.example; choose another range than 299-301"),
        (ParkSettings("800", "1000", "1002"),
         "slot 1001 is already taken by extension 1001 (Ingrid Solberg) in fjordheim.example; "
         "choose another range than 1000-1002"),
        (ParkSettings("700", "801", "810"),
         "number 700 is already taken by park lot main in fjordheim.example; choose another"),
        (ParkSettings("715", "801", "810"),
         "number 715 is already taken by a slot of park lot main in fjordheim.example; choose another"),
        (ParkSettings("800", "715", "730"),
         "slots 715-730 overlap the slots 701-720 of park lot main in fjordheim.example; choose another range"),
        (ParkSettings("800", "690", "701"),
         "slots 690-701 overlap the slots 701-720 of park lot main in fjordheim.example; choose another range"),
        (ParkSettings("800", "690", "700"),
         "slot 700 is already taken by park lot main in fjordheim.example; choose another range than 690-700"),
    ]  # fmt: skip
    for settings, sentence in cases:
        with refused(sentence):
            store.add_park_lot(DOMAIN, "ward", settings)
    with refused("there is already a park lot called main in fjordheim.example; choose another name"):
        store.add_park_lot(DOMAIN, "main", ParkSettings("800", "801", "810"))
    # Slots of another width are other numbers; another clinic has numbers of its own.
    store.add_park_lot(DOMAIN, "ward", ParkSettings("80", "0701", "0720"))
    store.create_clinic("nord.example")
    store.add_park_lot("nord.example", "main", MAIN)
    assert [lot.name for lot in store.park_lots(DOMAIN)] == ["main", "ward"]


def test_other_numbers_cannot_be_given_a_park_number_or_slot(store: ConfigStore) -> None:
    store.add_park_lot(DOMAIN, "main", MAIN)
    with refused(
        "extension 700 is already the number of park lot main in fjordheim.example; choose another number"
    ):
        store.add_staff(DOMAIN, "700", "Per Hansen", "long-enough")
    with refused(
        "extension 705 is already the number of a slot of park lot main in fjordheim.example; choose another number"
    ):
        store.add_staff(DOMAIN, "705", "Per Hansen", "long-enough")
    with refused("number 720 is already taken by a slot of park lot main in fjordheim.example; choose another"):
        store.add_group(DOMAIN, "doctors", GroupKind.GROUP, GroupSettings(number="720"))
    with refused("number 700 is already taken by park lot main in fjordheim.example; choose another"):
        store.add_group(DOMAIN, "doctors", GroupKind.GROUP, GroupSettings(number="200", acute_number="700"))
    with refused("number 701 is already taken by a slot of park lot main in fjordheim.example; choose another"):
        store.set_role_number(DOMAIN, "doctor", "701")
    # A slot number of another width is free.
    store.add_staff(DOMAIN, "7010", "Per Hansen", "long-enough")


def test_a_group_cannot_overflow_to_a_park_number_or_slot(store: ConfigStore) -> None:
    store.add_park_lot(DOMAIN, "main", MAIN)
    with refused(
        "group doctors cannot overflow to 700, which is park lot main in fjordheim.example; "
        "choose an extension, group, function or role"
    ):
        store.add_group(DOMAIN, "doctors", GroupKind.GROUP, GroupSettings(number="200", overflow="700"))
    store.add_group(DOMAIN, "doctors", GroupKind.GROUP, GroupSettings(number="200", overflow="1003"))
    with refused(
        "group doctors cannot overflow to 710, which is a slot of park lot main in fjordheim.example; "
        "choose an extension, group, function or role"
    ):
        store.change_group(DOMAIN, "doctors", GroupKind.GROUP, GroupSettings(number="200", overflow="710"))


def test_changing_a_lot_keeps_its_own_numbers_and_checks_the_new_ones(store: ConfigStore, engine: Engine) -> None:
    store.add_park_lot(DOMAIN, "main", MAIN)
    store.add_park_lot(DOMAIN, "ward", ParkSettings("800", "801", "810"))
    # Moving within its own range, or swapping its number into its old range, clashes with nothing.
    changed = store.change_park_lot(DOMAIN, "main", ParkSettings("701", "702", "730", timeout=60))
    assert changed == ParkLotEntry(DOMAIN, "main", "701", "702", "730", 60.0)
    version = directory_version(engine)
    with refused("slots 760-805 overlap the slots 801-810 of park lot ward in fjordheim.example; choose another range"):
        store.change_park_lot(DOMAIN, "main", replace(ParkSettings.of(changed), first_slot="760", last_slot="805"))
    with refused("number 800 is already taken by park lot ward in fjordheim.example; choose another"):
        store.change_park_lot(DOMAIN, "main", replace(ParkSettings.of(changed), number="800"))
    with refused("there is no park lot called lobby in fjordheim.example; see `sentral park list`"):
        store.change_park_lot(DOMAIN, "lobby", MAIN)
    assert store.park_lot(DOMAIN, "main") == changed
    assert directory_version(engine) == version
    # The numbers it gave up are free for others.
    store.add_staff(DOMAIN, "700", "Per Hansen", "long-enough")


def test_removing_a_lot_frees_its_numbers(store: ConfigStore) -> None:
    store.add_park_lot(DOMAIN, "main", MAIN)
    store.remove_park_lot(DOMAIN, "Main")
    assert store.park_lots(DOMAIN) == []
    store.add_staff(DOMAIN, "710", "Per Hansen", "long-enough")
    with refused("there is no park lot called main in fjordheim.example; see `sentral park list`"):
        store.remove_park_lot(DOMAIN, "main")
    with refused("there is no park lot called main in fjordheim.example; see `sentral park list`"):
        store.park_lot(DOMAIN, "main")


# -- the directory -------------------------------------------------------------------------------


def test_the_directory_indexes_the_park_number_and_every_slot(store: ConfigStore, engine: Engine) -> None:
    store.add_group(DOMAIN, "doctors", GroupKind.GROUP, GroupSettings(number="200"))
    store.add_park_lot(DOMAIN, "main", ParkSettings("700", "701", "703", timeout=30))
    store.create_clinic("nord.example")
    store.add_park_lot("nord.example", "main", ParkSettings("90", "91", "92"))
    directory = load_directory(engine)
    lot = ParkLotEntry(DOMAIN, "main", "700", "701", "703", 30.0)
    north = ParkLotEntry("nord.example", "main", "90", "91", "92", 45.0)
    assert dict(directory.park_lots) == {(DOMAIN, "main"): lot, ("nord.example", "main"): north}
    parked_numbers = {key: value for key, value in directory.numbers.items() if isinstance(value, ParkLotEntry)}
    assert parked_numbers == {
        (DOMAIN, "700"): lot, (DOMAIN, "701"): lot, (DOMAIN, "702"): lot, (DOMAIN, "703"): lot,
        ("nord.example", "90"): north, ("nord.example", "91"): north, ("nord.example", "92"): north,
    }  # fmt: skip
    assert directory.park_lot_at(DOMAIN, "702") == lot
    assert directory.park_lot_at(DOMAIN, "91") is None
    assert directory.number(DOMAIN, "702") is None
    assert directory.number(DOMAIN, "200") is not None
    assert directory.park_lot("NORD.example", "Main") == north


def test_every_park_change_bumps_the_version_and_failures_do_not(store: ConfigStore, engine: Engine) -> None:
    seen = [directory_version(engine)]
    for change in (
        lambda: store.add_park_lot(DOMAIN, "main", MAIN),
        lambda: store.change_park_lot(DOMAIN, "main", replace(MAIN, timeout=90)),
        lambda: store.remove_park_lot(DOMAIN, "main"),
    ):
        change()
        seen.append(directory_version(engine))
        assert seen[-1] > seen[-2]
    for failing in (
        lambda: store.add_park_lot(DOMAIN, "main", ParkSettings("1001", "701", "720")),
        lambda: store.change_park_lot(DOMAIN, "main", MAIN),
        lambda: store.remove_park_lot(DOMAIN, "main"),
    ):
        with pytest.raises(StoreError):
            failing()
    assert directory_version(engine) == seen[-1]
