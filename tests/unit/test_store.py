"""Storage tests, run on SQLite and PostgreSQL: schema, clinic and staff changes, bindings."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import Any, cast

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, select, text

from sentral.config.db import database_url, make_engine, migrate, schema_is_current
from sentral.config.directory import directory_version, load_directory
from sentral.config.models import Base, Binding, Staff
from sentral.config.store import (
    BindingRow,
    BindingStore,
    ConfigStore,
    StoreError,
    parse_digest_algorithms,
    parse_phone_digest,
    phone_digest_name,
)
from sentral.pbx.sip.auth import compute_ha1

DOMAIN = "fjordheim.example"


def binding(extension: str = "1001", key: str = "sip:1001@192.0.2.10:5062", **changes: Any) -> BindingRow:
    row = BindingRow(
        domain=DOMAIN,
        extension=extension,
        key=key,
        contact=f"<{key}>",
        expires_at=time.time() + 3600,
        call_id="a84b4c76e66710",
        cseq=1,
        transport="udp",
        source_host="192.0.2.10",
        source_port=5062,
        local_listen="udp:0.0.0.0:5060",
        updated_at=time.time(),
    )
    return replace(row, **changes)


@pytest.fixture
def store(engine: Engine) -> ConfigStore:
    store = ConfigStore(engine)
    store.create_clinic(DOMAIN, "Fjordheim legesenter")
    return store


# -- schema --------------------------------------------------------------------------------------


def test_schema_is_current_only_after_migrate_and_migrate_is_repeatable(db_url: str) -> None:
    engine = make_engine(db_url)
    try:
        assert not schema_is_current(engine)
        migrate(engine)
        assert schema_is_current(engine)
        migrate(engine)
        assert schema_is_current(engine)
        assert directory_version(engine) == 0
    finally:
        engine.dispose()


def test_migrations_build_exactly_the_models(engine: Engine) -> None:
    with engine.connect() as connection:
        assert compare_metadata(MigrationContext.configure(connection), Base.metadata) == []


def test_sqlite_connections_use_wal_and_enforce_foreign_keys(tmp_path: Path) -> None:
    engine = make_engine(database_url(str(tmp_path / "pragmas.db")))
    with engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert connection.exec_driver_sql("PRAGMA busy_timeout").scalar() == 5000
    engine.dispose()


# -- clinics -------------------------------------------------------------------------------------


def test_create_clinic_normalizes_domain_and_refuses_duplicates(engine: Engine) -> None:
    store = ConfigStore(engine)
    created = store.create_clinic("Fjordheim.Example.", "Fjordheim legesenter")
    assert created.domain == DOMAIN
    assert store.clinics() == [created]
    assert created.digest_algorithms == ("SHA-256", "MD5")
    with pytest.raises(StoreError, match=r"^clinic fjordheim.example already exists$"):
        store.create_clinic(DOMAIN)
    with pytest.raises(StoreError, match="not a valid domain"):
        store.create_clinic("bad domain!")


def test_clinic_name_defaults_to_its_domain(engine: Engine) -> None:
    assert ConfigStore(engine).create_clinic("nord.example").name == "nord.example"


def test_digest_algorithms_are_stored_in_order_and_reach_the_directory(store: ConfigStore, engine: Engine) -> None:
    store.set_digest_algorithms(DOMAIN, parse_digest_algorithms("md5"))
    assert load_directory(engine).clinics[DOMAIN].digest_algorithms == ("MD5",)
    store.set_digest_algorithms(DOMAIN, parse_digest_algorithms("SHA256, md5"))
    assert store.clinics()[0].digest_algorithms == ("SHA-256", "MD5")
    with pytest.raises(StoreError, match=r"there is no clinic nope.example; known clinics: fjordheim.example"):
        store.set_digest_algorithms("nope.example", ("MD5",))


def test_a_phone_digest_choice_is_stored_and_reaches_the_directory(store: ConfigStore, engine: Engine) -> None:
    store.add_staff(DOMAIN, "1001", "Kari Nordmann", "long-enough")
    store.add_staff(DOMAIN, "1002", "Per Hansen", "long-enough")
    version = directory_version(engine)
    entry = store.set_phone_digest(DOMAIN, "1001", parse_phone_digest("md5"))
    assert entry.digest_algorithms == ("MD5",)
    assert directory_version(engine) == version + 1
    directory = load_directory(engine)
    clinic = directory.clinics[DOMAIN]
    assert directory.digest_algorithms(clinic, "1001") == ("MD5",)
    assert directory.digest_algorithms(clinic, "1002") == ("SHA-256", "MD5")  # follows the clinic
    assert directory.digest_algorithms(clinic, "1999") == ("SHA-256", "MD5")  # nobody: the clinic's too
    store.set_digest_algorithms(DOMAIN, ("MD5",))
    store.set_phone_digest(DOMAIN, "1002", parse_phone_digest("SHA256"))
    directory = load_directory(engine)
    clinic = directory.clinics[DOMAIN]
    assert [directory.digest_algorithms(clinic, ext) for ext in ("1001", "1002", "1999")] == [
        ("MD5",), ("SHA-256",), ("MD5",)
    ]  # fmt: skip
    version = directory_version(engine)
    store.set_phone_digest(DOMAIN, "1002", parse_phone_digest("sha256"))  # no change: no reload
    assert directory_version(engine) == version
    assert store.set_phone_digest(DOMAIN, "1002", parse_phone_digest("both")).digest_algorithms == ("SHA-256", "MD5")
    assert store.set_phone_digest(DOMAIN, "1002", parse_phone_digest("clinic")).digest_algorithms == ()
    assert [phone_digest_name(s.digest_algorithms) for s in store.staff(DOMAIN)] == ["md5", "clinic"]
    with pytest.raises(StoreError, match=r"there is no extension 1003 in fjordheim\.example"):
        store.set_phone_digest(DOMAIN, "1003", ("MD5",))
    with pytest.raises(StoreError, match="choose sha256, md5, both"):
        store.set_phone_digest(DOMAIN, "1001", ("MD5", "SHA-256"))
    with pytest.raises(StoreError, match="choose sha256, md5, both"):
        parse_phone_digest("sha1")


@pytest.mark.parametrize("text", ["sha1", "md5,md5", "", "sha256,"])
def test_parse_digest_algorithms_rejects_bad_lists(text: str) -> None:
    with pytest.raises(StoreError, match="digest algorithms"):
        parse_digest_algorithms(text)


def test_resolve_domain_takes_the_only_clinic_and_asks_when_there_are_several(engine: Engine) -> None:
    store = ConfigStore(engine)
    with pytest.raises(StoreError, match="there is no clinic yet"):
        store.resolve_domain(None)
    store.create_clinic(DOMAIN)
    assert store.resolve_domain(None) == DOMAIN
    store.create_clinic("nord.example")
    with pytest.raises(
        StoreError, match=r"several clinics \(fjordheim.example, nord.example\); say which one with --domain"
    ):
        store.resolve_domain(None)
    assert store.resolve_domain("NORD.example") == "nord.example"
    with pytest.raises(StoreError, match=r"known clinics: fjordheim.example, nord.example"):
        store.resolve_domain("sor.example")


# -- staff ---------------------------------------------------------------------------------------


def test_add_staff_stores_only_ha1_hashes(store: ConfigStore, engine: Engine) -> None:
    entry = store.add_staff(DOMAIN, "1001", "  Ingrid   Solberg ", "fjord-secret-1", ["Doctor", "doctor"])
    assert entry.name == "Ingrid Solberg"
    assert entry.roles == ("doctor",)
    assert entry.ha1_md5 == compute_ha1("MD5", "1001", DOMAIN, "fjord-secret-1")
    assert entry.ha1_sha256 == compute_ha1("SHA-256", "1001", DOMAIN, "fjord-secret-1")
    with engine.connect() as connection:
        stored = connection.execute(select(Staff.__table__)).one()
    assert "fjord-secret-1" not in repr(tuple(stored))
    assert (stored.ha1_md5, stored.ha1_sha256) == (entry.ha1_md5, entry.ha1_sha256)


def test_duplicate_extension_is_refused_with_a_sentence(store: ConfigStore) -> None:
    store.add_staff(DOMAIN, "1001", "Ingrid Solberg", "fjord-secret-1")
    with pytest.raises(StoreError) as caught:
        store.add_staff(DOMAIN, "1001", "Magnus Haugen", "fjord-secret-2")
    assert str(caught.value) == (
        "extension 1001 already exists in fjordheim.example; choose another number or remove it first"
    )
    assert [s.name for s in store.staff()] == ["Ingrid Solberg"]


def test_same_extension_may_exist_in_two_clinics(store: ConfigStore) -> None:
    store.create_clinic("nord.example")
    store.add_staff(DOMAIN, "1001", "Ingrid Solberg", "fjord-secret-1")
    store.add_staff("nord.example", "1001", "Per Hansen", "nord-secret-1")
    assert [(s.domain, s.extension) for s in store.staff()] == [(DOMAIN, "1001"), ("nord.example", "1001")]
    assert [s.name for s in store.staff("nord.example")] == ["Per Hansen"]


@pytest.mark.parametrize(
    ("extension", "name", "password", "message"),
    [
        ("1", "Ingrid", "long-enough", "must be 2 to 10 digits"),
        ("12345678901", "Ingrid", "long-enough", "must be 2 to 10 digits"),
        ("10a1", "Ingrid", "long-enough", "must be 2 to 10 digits"),
        ("\uff11\uff10\uff10\uff11", "Ingrid", "long-enough", "must be 2 to 10 digits"),
        ("1001", "   ", "long-enough", "give extension 1001 a name"),
        ("1001", "Ingrid", "short", "at least 8 characters"),
    ],
)
def test_add_staff_validates_input(
    store: ConfigStore, extension: str, name: str, password: str, message: str
) -> None:
    with pytest.raises(StoreError, match=message):
        store.add_staff(DOMAIN, extension, name, password)
    assert store.staff() == []


def test_add_staff_refuses_bad_roles_and_unknown_clinics(store: ConfigStore) -> None:
    with pytest.raises(StoreError, match="role 'lege ansvarlig' must start with a letter"):
        store.add_staff(DOMAIN, "1001", "Ingrid", "long-enough", ["lege ansvarlig"])
    with pytest.raises(StoreError, match=r"there is no clinic sor.example; known clinics: fjordheim.example"):
        store.add_staff("sor.example", "1001", "Ingrid", "long-enough")


def test_extensions_list_in_numeric_order(store: ConfigStore) -> None:
    for extension in ("1001", "99", "200"):
        store.add_staff(DOMAIN, extension, f"Staff {extension}", "long-enough")
    assert [s.extension for s in store.staff()] == ["99", "200", "1001"]


def test_change_password_replaces_both_hashes(store: ConfigStore) -> None:
    store.add_staff(DOMAIN, "1001", "Ingrid Solberg", "fjord-secret-1")
    store.change_password(DOMAIN, "1001", "fjord-secret-2")
    (entry,) = store.staff()
    assert entry.ha1_md5 == compute_ha1("MD5", "1001", DOMAIN, "fjord-secret-2")
    assert entry.ha1_sha256 == compute_ha1("SHA-256", "1001", DOMAIN, "fjord-secret-2")
    with pytest.raises(StoreError, match="at least 8 characters"):
        store.change_password(DOMAIN, "1001", "short")
    with pytest.raises(StoreError, match=r"there is no extension 1002 in fjordheim.example"):
        store.change_password(DOMAIN, "1002", "fjord-secret-3")


def test_roles_can_be_added_and_removed(store: ConfigStore, engine: Engine) -> None:
    store.add_staff(DOMAIN, "1003", "Silje Nilsen", "fjord-secret-3", ["nurse"])
    assert store.add_roles(DOMAIN, "1003", ["medical-secretary", "nurse"]) == ("medical-secretary", "nurse")
    assert store.remove_roles(DOMAIN, "1003", ["nurse"]) == ("medical-secretary",)
    with pytest.raises(StoreError, match="does not hold the role doctor; it holds medical-secretary"):
        store.remove_roles(DOMAIN, "1003", ["doctor"])
    assert load_directory(engine).staff_for(DOMAIN, "1003").roles == ("medical-secretary",)  # type: ignore[union-attr]


def test_remove_staff_takes_roles_and_registrations_with_it(store: ConfigStore, engine: Engine) -> None:
    store.add_staff(DOMAIN, "1001", "Ingrid Solberg", "fjord-secret-1", ["doctor"])
    store.add_staff(DOMAIN, "1002", "Magnus Haugen", "fjord-secret-2", ["doctor"])
    bindings = BindingStore(engine)
    bindings.apply([binding("1001"), binding("1002", key="sip:1002@192.0.2.11")], [])
    store.remove_staff(DOMAIN, "1001")
    assert [s.extension for s in store.staff()] == ["1002"]
    assert [row.extension for row in bindings.list(time.time())] == ["1002"]
    with engine.connect() as connection:
        assert connection.execute(text("SELECT count(*) FROM staff_role")).scalar_one() == 1
    with pytest.raises(StoreError, match=r"there is no extension 1001 in fjordheim.example"):
        store.remove_staff(DOMAIN, "1001")


# -- directory -----------------------------------------------------------------------------------


def test_every_change_bumps_the_directory_version_and_failures_do_not(store: ConfigStore, engine: Engine) -> None:
    seen = [directory_version(engine)]

    def changed() -> None:
        seen.append(directory_version(engine))
        assert seen[-1] > seen[-2]

    store.add_staff(DOMAIN, "1001", "Ingrid Solberg", "fjord-secret-1")
    changed()
    store.change_password(DOMAIN, "1001", "fjord-secret-2")
    changed()
    store.add_roles(DOMAIN, "1001", ["doctor"])
    changed()
    store.remove_roles(DOMAIN, "1001", ["doctor"])
    changed()
    store.set_digest_algorithms(DOMAIN, ("MD5",))
    changed()
    store.create_clinic("nord.example")
    changed()
    store.remove_staff(DOMAIN, "1001")
    changed()
    with pytest.raises(StoreError):
        store.add_staff(DOMAIN, "1", "Nobody", "long-enough")
    with pytest.raises(StoreError):
        store.create_clinic("nord.example")
    assert directory_version(engine) == seen[-1]


def test_load_directory_is_a_frozen_snapshot(store: ConfigStore, engine: Engine) -> None:
    store.add_staff(DOMAIN, "1001", "Ingrid Solberg", "fjord-secret-1", ["doctor", "admin"])
    store.set_digest_algorithms(DOMAIN, ("MD5",))
    directory = load_directory(engine)
    assert directory.version == directory_version(engine)
    assert directory.clinic("FJORDHEIM.example") == directory.clinics[DOMAIN]
    assert directory.clinics[DOMAIN].name == "Fjordheim legesenter"
    staff = directory.staff_for(DOMAIN, "1001")
    assert staff is not None
    assert (staff.name, staff.roles) == ("Ingrid Solberg", ("admin", "doctor"))
    assert staff.ha1("MD5") == compute_ha1("MD5", "1001", DOMAIN, "fjord-secret-1")
    assert staff.ha1("SHA-256") == compute_ha1("SHA-256", "1001", DOMAIN, "fjord-secret-1")
    assert directory.staff_for(DOMAIN, "1002") is None
    store.add_staff(DOMAIN, "1002", "Magnus Haugen", "fjord-secret-2")
    assert directory.staff_for(DOMAIN, "1002") is None
    assert directory_version(engine) > directory.version
    with pytest.raises(TypeError):
        cast(dict[Any, Any], directory.staff)[(DOMAIN, "1002")] = staff


# -- bindings ------------------------------------------------------------------------------------


def test_apply_inserts_updates_and_deletes(engine: Engine) -> None:
    bindings = BindingStore(engine)
    now = time.time()
    first = binding("1001", key="<urn:uuid:00000000-0000-1000-8000-000a95a0e128>/1", instance="urn:uuid:x", reg_id=1,
                    path=("sip:edge1.example;lr", "sip:edge2.example;lr"), user_agent="Yealink T46U")  # fmt: skip
    second = binding("1002", key="sip:1002@[2001:db8::5]:5060", source_host="2001:db8::5", transport="tcp")
    bindings.apply([first, second], [])
    assert bindings.list(now) == [first, second]
    renewed = replace(first, cseq=2, expires_at=now + 7200, path=(), user_agent=None)
    bindings.apply([renewed], [second.identity])
    assert bindings.load_active(now) == [renewed]


def test_apply_keeps_the_last_of_repeated_upserts_and_deletes_before_upserting(engine: Engine) -> None:
    bindings = BindingStore(engine)
    now = time.time()
    row = binding()
    bindings.apply([row, replace(row, cseq=5)], [])
    assert [r.cseq for r in bindings.list(now)] == [5]
    bindings.apply([replace(row, cseq=6)], [row.identity])
    assert [r.cseq for r in bindings.list(now)] == [6]


def test_apply_is_one_transaction(engine: Engine) -> None:
    bindings = BindingStore(engine)
    good = binding("1001")
    bad = binding("1002", key="sip:1002@192.0.2.11", contact=cast(str, None))
    with pytest.raises(Exception, match=r"(?i)null"):
        bindings.apply([good, bad], [])
    assert bindings.list(time.time()) == []


def test_a_failed_binding_write_is_worded_without_the_rows(engine: Engine) -> None:
    # The error reaches the log (binding_write_failed): SQLAlchemy's text would add the statement's
    # parameters and PostgreSQL's DETAIL the failing row, with extensions, addresses and the phone.
    bindings = BindingStore(engine)
    bad = binding("1002", key="sip:1002@192.0.2.77:5072", contact=cast(str, None), source_host="192.0.2.77",
                  user_agent="Yealink T46U", call_id="f81d4fae7dec")  # fmt: skip
    for connection in (None, bindings.connect()):
        with pytest.raises(StoreError) as caught:
            bindings.apply([binding("1001"), bad], [(DOMAIN, "1003", "sip:1003@192.0.2.78")], connection=connection)
        message = str(caught.value)
        assert message.startswith("3 binding changes were not stored: ") and "null" in message.lower()
        for secret in ("192.0.2.77", "192.0.2.78", "Yealink", "f81d4fae7dec", "1002", "1003", "parameters", "DETAIL"):
            assert secret not in message, message
        assert "\n" not in message
        assert caught.value.__cause__ is None and caught.value.__suppress_context__
        if connection is not None:
            connection.close()


def test_expired_bindings_are_neither_loaded_nor_listed_and_purge_removes_them(engine: Engine) -> None:
    bindings = BindingStore(engine)
    now = time.time()
    live = binding("1001", expires_at=now + 60)
    stale = binding("1002", key="sip:1002@192.0.2.11", expires_at=now - 1)
    bindings.apply([live, stale], [])
    assert bindings.load_active(now) == [live]
    assert bindings.list(now) == [live]
    assert bindings.purge_expired(now) == 1
    assert bindings.purge_expired(now) == 0
    with engine.connect() as connection:
        assert connection.execute(select(Binding.extension)).scalars().all() == ["1001"]


def test_apply_sustains_well_over_3000_registrations_per_second(engine: Engine) -> None:
    bindings = BindingStore(engine)
    rows = [binding(f"{2000 + i}", key=f"sip:{2000 + i}@192.0.2.1:{10000 + i}") for i in range(3000)]
    bindings.apply(rows[:10], [])
    started = time.perf_counter()
    bindings.apply(rows, [])
    elapsed = time.perf_counter() - started
    assert len(bindings.list(time.time())) == 3000
    # One second is the budget for 3,000 REGISTERs; measured figures are a small fraction of it.
    assert elapsed < 1.0, f"3000 upserts took {elapsed:.3f}s"
