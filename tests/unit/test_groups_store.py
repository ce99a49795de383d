"""Storage of groups, functions, role numbers, logins, phones and line states, on SQLite and PostgreSQL."""

from __future__ import annotations

import time
from dataclasses import replace
from types import MappingProxyType

import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, text

from sentral.config.db import MIGRATIONS, make_engine, migrate, writing
from sentral.config.directory import (
    Directory,
    GroupEntry,
    GroupKind,
    MemberEntry,
    RoleEntry,
    Strategy,
    directory_version,
    load_directory,
)
from sentral.config.models import GROUP_KINDS, LINE_STATES, STRATEGIES
from sentral.config.store import (
    BindingRow,
    BindingStore,
    ConfigStore,
    GroupSettings,
    LineState,
    LineStateStore,
    LineStatus,
    LoginToggle,
    RoleSummary,
    StoreError,
    parse_strategy,
)

DOMAIN = "fjordheim.example"
GROUP = GroupKind.GROUP
FUNCTION = GroupKind.FUNCTION


@pytest.fixture
def store(engine: Engine) -> ConfigStore:
    """A clinic with two doctors, a nurse and a medical secretary."""
    store = ConfigStore(engine)
    store.create_clinic(DOMAIN, "Fjordheim legesenter")
    store.add_staff(DOMAIN, "1001", "Ingrid Solberg", "fjord-secret-1", ["doctor"])
    store.add_staff(DOMAIN, "1002", "Magnus Haugen", "fjord-secret-2", ["doctor"])
    store.add_staff(DOMAIN, "1003", "Silje Nilsen", "fjord-secret-3", ["nurse"])
    store.add_staff(DOMAIN, "1004", "Kari Johansen", "fjord-secret-4", ["medical-secretary"])
    return store


def members(group: GroupEntry) -> list[tuple[str, bool, str | None]]:
    return [(m.extension, m.logged_in, m.via_role) for m in group.members]


# -- schema --------------------------------------------------------------------------------------


def test_the_schema_allows_exactly_the_kinds_strategies_and_line_states_the_code_knows() -> None:
    assert set(GROUP_KINDS) == {kind.value for kind in GroupKind}
    assert set(STRATEGIES) == {strategy.value for strategy in Strategy}
    assert set(LINE_STATES) == {state.value for state in LineStatus}


def _alembic(engine: Engine, action: str, revision: str) -> None:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with writing(engine).begin() as connection:
        config.attributes["connection"] = connection
        getattr(command, action)(config, revision)


def test_migration_0002_keeps_the_staff_and_roles_of_a_0001_database(db_url: str) -> None:
    engine = make_engine(db_url)
    try:
        _alembic(engine, "upgrade", "0001")
        released = ConfigStore(engine)
        # The 0001 schema has no phone_on column yet: write the rows the way a 0001 release did.
        with engine.begin() as connection:
            connection.execute(
                text(
                    "INSERT INTO clinic (domain, name, digest_algorithms, created_at, updated_at) "
                    "VALUES (:d, 'Fjordheim', 'SHA-256,MD5', CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"
                ),
                {"d": DOMAIN},
            )
            connection.execute(
                text(
                    "INSERT INTO staff (clinic_id, extension, name, ha1_md5, ha1_sha256, created_at, updated_at) "
                    "SELECT id, '1001', 'Ingrid Solberg', 'm', 's', CURRENT_TIMESTAMP, CURRENT_TIMESTAMP FROM clinic"
                )
            )
            connection.execute(text("INSERT INTO role (clinic_id, name) SELECT id, 'doctor' FROM clinic"))
            connection.execute(
                text("INSERT INTO staff_role (staff_id, role_id) SELECT staff.id, role.id FROM staff, role")
            )
        migrate(engine)
        (entry,) = released.staff(DOMAIN)
        assert (entry.extension, entry.roles, entry.phone_on) == ("1001", ("doctor",), True)
        assert released.roles(DOMAIN) == [RoleSummary(DOMAIN, "doctor", None, 1)]
        _alembic(engine, "downgrade", "0001")
        with engine.connect() as connection:
            assert connection.execute(text("SELECT count(*) FROM staff_role")).scalar_one() == 1
        migrate(engine)
        assert released.staff(DOMAIN)[0].roles == ("doctor",)
    finally:
        engine.dispose()


# -- groups --------------------------------------------------------------------------------------


def test_a_group_keeps_its_settings_and_members_in_order_logged_in(store: ConfigStore) -> None:
    settings = GroupSettings(
        number="200",
        acute_number="201",
        strategy=Strategy.LINEAR,
        member_timeout=15,
        ring_timeout=45,
        overflow="1004",
        ring_busy=True,
        max_wait=120,
    )
    added = store.add_group(DOMAIN, " Doctors ", GROUP, settings, ["1002", "1001"])
    assert added == GroupEntry(
        domain=DOMAIN,
        name="doctors",
        kind=GROUP,
        number="200",
        acute_number="201",
        strategy=Strategy.LINEAR,
        member_timeout=15.0,
        ring_timeout=45.0,
        overflow="1004",
        ring_busy=True,
        max_wait=120.0,
        members=(MemberEntry("1002", True), MemberEntry("1001", True)),
    )
    assert store.group(DOMAIN, "DOCTORS") == added
    assert GroupSettings.of(added) == settings


def test_defaults_and_a_function_member_is_logged_out_until_they_log_in(store: ConfigStore) -> None:
    function = store.add_group(DOMAIN, "reception", FUNCTION, members=["1004"])
    assert (function.number, function.strategy, function.member_timeout, function.ring_timeout) == (
        None, Strategy.RINGALL, 20.0, 60.0
    )  # fmt: skip
    assert (function.overflow, function.ring_busy, function.max_wait) == (None, False, 300.0)
    assert members(function) == [("1004", False, None)]
    group = store.add_group(DOMAIN, "doctors", GROUP, GroupSettings(number="200"))
    assert members(store.add_member(DOMAIN, "doctors", "1001", GROUP)) == [("1001", True, None)]
    assert members(store.add_member(DOMAIN, "reception", "1003", FUNCTION))[1] == ("1003", False, None)
    assert [g.name for g in store.groups(DOMAIN)] == ["doctors", "reception"]
    assert [g.name for g in store.groups(DOMAIN, FUNCTION)] == ["reception"]
    assert group.members == ()


def test_members_join_at_the_end_and_the_others_keep_their_order(store: ConfigStore) -> None:
    store.add_group(DOMAIN, "team", GROUP, GroupSettings(number="200"), ["1001", "1002", "1003"])
    store.remove_member(DOMAIN, "team", "1002", GROUP)
    store.add_member(DOMAIN, "team", "1004", GROUP)
    assert [m.extension for m in store.add_member(DOMAIN, "team", "1002", GROUP).members] == [
        "1001", "1003", "1004", "1002"
    ]  # fmt: skip
    with pytest.raises(StoreError, match=r"^extension 1001 is already a member of group team$"):
        store.add_member(DOMAIN, "team", "1001", GROUP)
    with pytest.raises(StoreError, match=r"^there is no extension 1009 in fjordheim.example"):
        store.add_member(DOMAIN, "team", "1009", GROUP)
    store.remove_member(DOMAIN, "team", "1003")
    with pytest.raises(
        StoreError, match=r"^extension 1003 is not a member of group team in fjordheim.example"
    ):
        store.remove_member(DOMAIN, "team", "1003")


def test_names_are_shared_by_groups_and_functions_and_kinds_are_not_mixed_up(store: ConfigStore) -> None:
    store.add_group(DOMAIN, "reception", FUNCTION)
    with pytest.raises(StoreError) as caught:
        store.add_group(DOMAIN, "Reception", GROUP, GroupSettings(number="200"))
    assert str(caught.value) == (
        "there is already a function called reception in fjordheim.example; choose another name"
    )
    with pytest.raises(StoreError) as caught:
        store.group(DOMAIN, "reception", GROUP)
    assert str(caught.value) == (
        "reception in fjordheim.example is a function, not a group; see `sentral function show reception`"
    )
    with pytest.raises(
        StoreError, match=r"^there is no group called lab in fjordheim.example; see `sentral group list`$"
    ):
        store.remove_group(DOMAIN, "lab", GROUP)
    with pytest.raises(StoreError, match=r"^function name 'front desk' must start with a letter"):
        store.add_group(DOMAIN, "front desk", FUNCTION)
    with pytest.raises(StoreError, match=r"^give group lab a number, such as --number 200$"):
        store.add_group(DOMAIN, "lab", GROUP)


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (GroupSettings(number="2a0"), r"^number '2a0' must be 2 to 10 digits, such as 200$"),
        (GroupSettings(number="*45"), r"^number '\*45' must be 2 to 10 digits"),
        (GroupSettings(number="200", acute_number="9"), r"^acute number '9' must be 2 to 10 digits"),
        (GroupSettings(number="200", acute_number="200"), r"^the acute number of group lab must differ from its number 200$"),
        (GroupSettings(number="200", ring_timeout=-5), r"^the ring timeout must be a whole number of seconds from 1 to 3600, not -5$"),
        (GroupSettings(number="200", member_timeout=0), r"^the member timeout must be a whole number of seconds from 1 to 600, not 0$"),
        (GroupSettings(number="200", max_wait=-1), r"^the longest wait must be a whole number of seconds from 0 to 86400, not -1$"),
        (GroupSettings(number="200", overflow="voicemail"), r"^overflow 'voicemail' must be busy or a number of the clinic"),
        (GroupSettings(number="200", overflow="200"), r"^group lab cannot overflow to its own number 200$"),
        (GroupSettings(number="200", overflow="999"), r"^group lab cannot overflow to 999: no extension, group, function or role has that number in fjordheim.example$"),
    ],
)  # fmt: skip
def test_bad_group_settings_are_refused_with_a_sentence_and_nothing_is_stored(
    store: ConfigStore, engine: Engine, settings: GroupSettings, message: str
) -> None:
    version = directory_version(engine)
    with pytest.raises(StoreError, match=message):
        store.add_group(DOMAIN, "lab", GROUP, settings)
    assert store.groups(DOMAIN) == []
    assert directory_version(engine) == version


def test_strategies_are_parsed_by_name() -> None:
    assert parse_strategy(" LeastRecent ") is Strategy.LEASTRECENT
    with pytest.raises(
        StoreError, match=r"^strategy 'roundrobin' is not known; choose one of ringall, linear, "
    ):
        parse_strategy("roundrobin")


def test_overflow_may_be_busy_or_any_number_of_the_clinic(store: ConfigStore) -> None:
    store.add_group(DOMAIN, "doctors", GROUP, GroupSettings(number="200", acute_number="201"))
    store.set_role_number(DOMAIN, "nurse", "300")
    for target in ("BUSY", "1004", "200", "201", "300"):
        group = store.add_group(DOMAIN, f"lab{target.lower()}", FUNCTION, GroupSettings(overflow=target))
        assert group.overflow == target.lower()


def test_a_number_is_taken_once_in_a_clinic_whatever_has_it(store: ConfigStore) -> None:
    store.add_group(DOMAIN, "doctors", GROUP, GroupSettings(number="200", acute_number="201"))
    store.set_role_number(DOMAIN, "nurse", "300")
    cases = [
        ("1001", "extension 1001 (Ingrid Solberg)"),
        ("200", "group doctors"),
        ("201", "the acute number of group doctors"),
        ("300", "role nurse"),
    ]
    for number, owner in cases:
        expected = f"number {number} is already taken by {owner} in fjordheim.example; choose another"
        with pytest.raises(StoreError) as caught:
            store.add_group(DOMAIN, "lab", FUNCTION, GroupSettings(acute_number=number))
        assert str(caught.value) == expected
        with pytest.raises(StoreError) as caught:
            store.set_role_number(DOMAIN, "doctor", number)
        assert str(caught.value) == expected
    with pytest.raises(StoreError) as caught:
        store.add_staff(DOMAIN, "201", "Per Hansen", "long-enough")
    assert str(caught.value) == (
        "extension 201 is already the number of the acute number of group doctors in fjordheim.example; "
        "choose another number"
    )
    with pytest.raises(StoreError, match="already the number of role nurse"):
        store.add_staff(DOMAIN, "300", "Per Hansen", "long-enough")
    # Another clinic has numbers of its own.
    store.create_clinic("nord.example")
    store.add_staff("nord.example", "200", "Per Hansen", "long-enough")
    # A group keeps its own numbers when it is changed, and may swap them.
    doctors = store.group(DOMAIN, "doctors")
    swapped = store.change_group(
        DOMAIN, "doctors", GROUP, replace(GroupSettings.of(doctors), number="201", acute_number="200")
    )
    assert (swapped.number, swapped.acute_number) == ("201", "200")


def test_what_an_overflow_points_at_cannot_go_away_first(store: ConfigStore) -> None:
    store.add_group(DOMAIN, "doctors", GROUP, GroupSettings(number="200"))
    store.set_role_number(DOMAIN, "nurse", "300")
    store.add_group(DOMAIN, "a-lab", GROUP, GroupSettings(number="210", overflow="1004"))
    store.add_group(DOMAIN, "b-lab", GROUP, GroupSettings(number="220", overflow="200"))
    store.add_group(DOMAIN, "c-lab", GROUP, GroupSettings(number="230", overflow="300"))
    with pytest.raises(StoreError) as caught:
        store.remove_staff(DOMAIN, "1004")
    assert str(caught.value) == (
        "group a-lab in fjordheim.example overflows to 1004; change its overflow before removing or "
        "renumbering extension 1004"
    )
    with pytest.raises(
        StoreError, match=r"^group b-lab in fjordheim.example overflows to 200; .* group doctors$"
    ):
        store.remove_group(DOMAIN, "doctors", GROUP)
    doctors = GroupSettings.of(store.group(DOMAIN, "doctors"))
    with pytest.raises(StoreError, match=r"group b-lab in fjordheim\.example overflows to 200"):
        store.change_group(DOMAIN, "doctors", GROUP, replace(doctors, number="202"))
    with pytest.raises(
        StoreError, match=r"group c-lab in fjordheim\.example overflows to 300; .* role nurse$"
    ):
        store.set_role_number(DOMAIN, "nurse", None)
    store.change_group(
        DOMAIN, "b-lab", GROUP, replace(GroupSettings.of(store.group(DOMAIN, "b-lab")), overflow="busy")
    )
    store.remove_group(DOMAIN, "doctors", GROUP)
    # A group that overflows to itself through a changed number is refused like a new one.
    lab = GroupSettings.of(store.group(DOMAIN, "a-lab"))
    with pytest.raises(StoreError, match="cannot overflow to its own number 1004"):
        store.change_group(DOMAIN, "a-lab", GROUP, replace(lab, number="1004"))


def test_removing_a_group_or_a_member_of_staff_removes_the_memberships(
    store: ConfigStore, engine: Engine
) -> None:
    store.add_group(DOMAIN, "doctors", GROUP, GroupSettings(number="200"), ["1001", "1002"])
    store.add_group(DOMAIN, "reception", FUNCTION, members=["1004"], roles=["medical-secretary"])
    store.remove_staff(DOMAIN, "1001")
    assert [m.extension for m in store.group(DOMAIN, "doctors").members] == ["1002"]
    store.remove_group(DOMAIN, "doctors", GROUP)
    store.remove_group(DOMAIN, "reception", FUNCTION)
    with engine.connect() as connection:
        assert connection.execute(text("SELECT count(*) FROM group_member")).scalar_one() == 0
        assert connection.execute(text("SELECT count(*) FROM function_role")).scalar_one() == 0
    assert store.groups(DOMAIN) == []


# -- roles give functions ------------------------------------------------------------------------


def test_a_linked_role_makes_its_holders_members_now_and_when_granted(store: ConfigStore) -> None:
    store.add_group(DOMAIN, "reception", FUNCTION, members=["1003"])
    linked = store.link_role(DOMAIN, "reception", "Medical-Secretary")
    assert linked.roles == ("medical-secretary",)
    assert members(linked) == [("1003", False, None), ("1004", False, "medical-secretary")]
    store.add_roles(DOMAIN, "1002", ["medical-secretary"])
    store.add_staff(DOMAIN, "1005", "Per Hansen", "long-enough", ["medical-secretary"])
    assert members(store.group(DOMAIN, "reception")) == [
        ("1003", False, None),
        ("1004", False, "medical-secretary"),
        ("1002", False, "medical-secretary"),
        ("1005", False, "medical-secretary"),
    ]
    # Revoking the role takes the membership it gave, and the others keep their order.
    store.remove_roles(DOMAIN, "1004", ["medical-secretary"])
    assert [m.extension for m in store.group(DOMAIN, "reception").members] == ["1003", "1002", "1005"]


def test_a_member_listed_by_hand_stays_when_the_role_goes(store: ConfigStore) -> None:
    store.add_group(DOMAIN, "reception", FUNCTION, members=["1004"], roles=["medical-secretary"])
    store.add_roles(DOMAIN, "1003", ["medical-secretary"])
    # Adding by hand someone a role gave keeps their place and makes them stay.
    assert members(store.add_member(DOMAIN, "reception", "1003")) == [
        ("1004", False, None), ("1003", False, None)
    ]  # fmt: skip
    store.remove_roles(DOMAIN, "1003", ["medical-secretary"])
    unlinked = store.unlink_role(DOMAIN, "reception", "medical-secretary")
    assert (unlinked.roles, members(unlinked)) == ((), [("1004", False, None), ("1003", False, None)])


def test_a_member_two_roles_give_stays_until_both_are_gone(store: ConfigStore) -> None:
    store.add_group(DOMAIN, "triage", FUNCTION, roles=["doctor", "nurse"])
    store.add_roles(DOMAIN, "1003", ["doctor"])
    store.login(DOMAIN, "1003", "triage")
    # The membership keeps the role that gave it first, its place and its login.
    assert members(store.group(DOMAIN, "triage")) == [
        ("1001", False, "doctor"), ("1002", False, "doctor"), ("1003", True, "nurse")
    ]  # fmt: skip
    store.remove_roles(DOMAIN, "1003", ["nurse"])
    assert members(store.group(DOMAIN, "triage"))[2] == ("1003", True, "doctor")
    store.remove_roles(DOMAIN, "1003", ["doctor"])
    store.add_roles(DOMAIN, "1003", ["nurse"])
    store.unlink_role(DOMAIN, "triage", "nurse")
    assert [m.extension for m in store.group(DOMAIN, "triage").members] == ["1001", "1002"]
    assert members(store.set_function_roles(DOMAIN, "triage", ["nurse"])) == [("1003", False, "nurse")]
    assert store.set_function_roles(DOMAIN, "triage", []).members == ()


def test_role_links_are_checked(store: ConfigStore) -> None:
    store.add_group(DOMAIN, "doctors", GROUP, GroupSettings(number="200"))
    store.add_group(DOMAIN, "reception", FUNCTION, roles=["medical-secretary"])
    with pytest.raises(StoreError, match=r"^doctors in fjordheim.example is a group, not a function"):
        store.link_role(DOMAIN, "doctors", "doctor")
    with pytest.raises(StoreError, match=r"^roles can be linked to functions only, not to groups$"):
        store.add_group(DOMAIN, "lab", GROUP, GroupSettings(number="210"), roles=["doctor"])
    with pytest.raises(StoreError) as caught:
        store.link_role(DOMAIN, "reception", "docter")
    assert str(caught.value) == (
        "there is no role docter in fjordheim.example; known roles: doctor, medical-secretary, nurse"
    )
    with pytest.raises(StoreError, match=r"^role medical-secretary already gives function reception$"):
        store.link_role(DOMAIN, "reception", "medical-secretary")
    with pytest.raises(StoreError, match=r"^role nurse does not give function reception$"):
        store.unlink_role(DOMAIN, "reception", "nurse")
    with pytest.raises(StoreError) as caught:
        store.remove_member(DOMAIN, "reception", "1004")
    assert str(caught.value) == (
        "extension 1004 holds the role medical-secretary, which makes them a member of function reception; "
        "take the role away or unlink it first"
    )


# -- logging in and out, phones ------------------------------------------------------------------


def test_login_and_logout_of_one_group_or_function(store: ConfigStore, engine: Engine) -> None:
    store.add_group(DOMAIN, "reception", FUNCTION, members=["1004"])
    store.add_group(DOMAIN, "doctors", GROUP, GroupSettings(number="200"), ["1001"])
    version = directory_version(engine)
    assert store.login(DOMAIN, "1004", "Reception") is True
    assert directory_version(engine) > version
    version = directory_version(engine)
    assert store.login(DOMAIN, "1004", "reception") is False
    assert directory_version(engine) == version
    assert store.logout(DOMAIN, "1001", "doctors") is True
    assert members(store.group(DOMAIN, "doctors")) == [("1001", False, None)]
    with pytest.raises(StoreError) as caught:
        store.login(DOMAIN, "1003", "reception")
    assert str(caught.value) == (
        "extension 1003 is not a member of function reception in fjordheim.example; add them with "
        "`sentral function member add reception 1003`"
    )
    with pytest.raises(StoreError, match=r"^there is no group or function called lab in fjordheim.example"):
        store.logout(DOMAIN, "1004", "lab")
    with pytest.raises(StoreError, match=r"^there is no extension 1009 in fjordheim.example"):
        store.login(DOMAIN, "1009", "reception")


def test_the_feature_code_toggle_logs_in_to_all_or_out_of_all(store: ConfigStore) -> None:
    for name in ("reception", "triage", "lab"):
        store.add_group(DOMAIN, name, FUNCTION, members=["1004"])
    store.add_group(DOMAIN, "doctors", GROUP, GroupSettings(number="200"), ["1004"])
    store.login(DOMAIN, "1004", "triage")
    # Logged in to one function: the toggle logs out of all functions, and leaves groups alone.
    assert store.toggle_logged_in(DOMAIN, "1004", FUNCTION) == LoginToggle(False, ("triage",))
    assert store.toggle_logged_in(DOMAIN, "1004", FUNCTION) == LoginToggle(
        True, ("lab", "reception", "triage")
    )
    assert members(store.group(DOMAIN, "doctors")) == [("1004", True, None)]
    assert store.toggle_logged_in(DOMAIN, "1004", GROUP) == LoginToggle(False, ("doctors",))
    assert store.set_logged_in_all(DOMAIN, "1004", FUNCTION, True) == []
    assert store.set_logged_in_all(DOMAIN, "1004", FUNCTION, False) == ["lab", "reception", "triage"]
    assert all(not m.logged_in for g in store.groups(DOMAIN) for m in g.members)
    with pytest.raises(
        StoreError, match=r"^extension 1003 in fjordheim.example is not a member of any function$"
    ):
        store.toggle_logged_in(DOMAIN, "1003", FUNCTION)


def test_a_phone_is_logged_off_and_on(store: ConfigStore, engine: Engine) -> None:
    assert store.set_phone(DOMAIN, "1002", False) is True
    assert store.set_phone(DOMAIN, "1002", False) is False
    assert [s.phone_on for s in store.staff(DOMAIN)] == [True, False, True, True]
    staff = load_directory(engine).staff_for(DOMAIN, "1002")
    assert staff is not None and staff.phone_on is False
    assert store.set_phone(DOMAIN, "1002", True) is True
    with pytest.raises(StoreError, match="there is no extension 1009"):
        store.set_phone(DOMAIN, "1009", True)


# -- roles ---------------------------------------------------------------------------------------


def test_roles_list_numbers_holders_and_functions(store: ConfigStore) -> None:
    store.add_roles(DOMAIN, "1003", ["doctor"])
    assert store.set_role_number(DOMAIN, "Doctor", "300") == RoleEntry(DOMAIN, "doctor", "300")
    store.add_group(DOMAIN, "reception", FUNCTION, roles=["medical-secretary"])
    store.remove_roles(DOMAIN, "1003", ["nurse"])
    assert store.roles(DOMAIN) == [
        RoleSummary(DOMAIN, "doctor", "300", 3),
        RoleSummary(DOMAIN, "medical-secretary", None, 1, ("reception",)),
        RoleSummary(DOMAIN, "nurse", None, 0),
    ]
    assert [s.extension for s in store.holders(DOMAIN, "doctor")] == ["1001", "1002", "1003"]
    assert store.set_role_number(DOMAIN, "doctor", None).number is None
    with pytest.raises(StoreError, match=r"^the number of role doctor 'x1' must be 2 to 10 digits"):
        store.set_role_number(DOMAIN, "doctor", "x1")
    with pytest.raises(StoreError, match=r"^there is no role surgeon in fjordheim.example; known roles: "):
        store.set_role_number(DOMAIN, "surgeon", "301")
    with pytest.raises(StoreError, match=r"^there is no role surgeon"):
        store.holders(DOMAIN, "surgeon")


# -- the directory -------------------------------------------------------------------------------


def test_load_directory_gives_groups_roles_and_the_number_index(store: ConfigStore, engine: Engine) -> None:
    store.add_group(
        DOMAIN, "doctors", GROUP,
        GroupSettings(number="200", acute_number="201", strategy=Strategy.RRMEMORY, overflow="busy"),
        ["1002", "1001"],
    )  # fmt: skip
    store.add_group(
        DOMAIN, "reception", FUNCTION, GroupSettings(number="210"), ["1003"], ["medical-secretary"]
    )
    store.login(DOMAIN, "1004", "reception")
    store.set_role_number(DOMAIN, "nurse", "300")
    store.set_phone(DOMAIN, "1001", False)
    store.create_clinic("nord.example")
    store.add_staff("nord.example", "200", "Per Hansen", "long-enough", ["doctor"])

    directory = load_directory(engine)
    doctors = GroupEntry(
        DOMAIN, "doctors", GROUP, "200", "201", Strategy.RRMEMORY, 20.0, 60.0, "busy", False, 300.0,
        (MemberEntry("1002", True), MemberEntry("1001", True)),
    )  # fmt: skip
    reception = GroupEntry(
        DOMAIN, "reception", FUNCTION, "210", None, Strategy.RINGALL, 20.0, 60.0, None, False, 300.0,
        (MemberEntry("1003", False), MemberEntry("1004", True, "medical-secretary")), ("medical-secretary",),
    )  # fmt: skip
    nurse = RoleEntry(DOMAIN, "nurse", "300")
    assert dict(directory.groups) == {(DOMAIN, "doctors"): doctors, (DOMAIN, "reception"): reception}
    assert dict(directory.roles) == {
        (DOMAIN, "doctor"): RoleEntry(DOMAIN, "doctor", None),
        (DOMAIN, "medical-secretary"): RoleEntry(DOMAIN, "medical-secretary", None),
        (DOMAIN, "nurse"): nurse,
        ("nord.example", "doctor"): RoleEntry("nord.example", "doctor", None),
    }
    assert dict(directory.numbers) == {
        (DOMAIN, "200"): doctors,
        (DOMAIN, "201"): doctors,
        (DOMAIN, "210"): reception,
        (DOMAIN, "300"): nurse,
    }
    assert directory.number("Fjordheim.example", "201") is directory.groups[(DOMAIN, "doctors")]
    assert directory.number("nord.example", "200") is None
    assert directory.staff_for("nord.example", "200") is not None
    assert directory.memberships(DOMAIN, "1004") == (reception,)
    assert [s.extension for s in directory.holders(DOMAIN, "doctor")] == ["1001", "1002"]
    assert [directory.staff[(DOMAIN, ext)].phone_on for ext in ("1001", "1002")] == [False, True]
    assert isinstance(directory.groups, MappingProxyType) and isinstance(directory.numbers, MappingProxyType)


def test_every_group_change_bumps_the_version_and_failures_do_not(store: ConfigStore, engine: Engine) -> None:
    seen = [directory_version(engine)]

    def changed() -> None:
        seen.append(directory_version(engine))
        assert seen[-1] > seen[-2]

    store.add_group(DOMAIN, "doctors", GROUP, GroupSettings(number="200"))
    changed()
    store.change_group(DOMAIN, "doctors", GROUP, GroupSettings(number="200", ring_timeout=30))
    changed()
    store.add_member(DOMAIN, "doctors", "1001", GROUP)
    changed()
    store.remove_member(DOMAIN, "doctors", "1001", GROUP)
    changed()
    store.add_group(DOMAIN, "reception", FUNCTION)
    changed()
    store.link_role(DOMAIN, "reception", "medical-secretary")
    changed()
    store.login(DOMAIN, "1004", "reception")
    changed()
    store.toggle_logged_in(DOMAIN, "1004", FUNCTION)
    changed()
    store.set_logged_in_all(DOMAIN, "1004", FUNCTION, True)
    changed()
    store.logout(DOMAIN, "1004", "reception")
    changed()
    store.unlink_role(DOMAIN, "reception", "medical-secretary")
    changed()
    store.set_function_roles(DOMAIN, "reception", ["nurse"])
    changed()
    store.set_phone(DOMAIN, "1003", False)
    changed()
    store.set_role_number(DOMAIN, "doctor", "300")
    changed()
    store.remove_group(DOMAIN, "doctors", GROUP)
    changed()
    for failing in (
        lambda: store.add_group(DOMAIN, "reception", FUNCTION),
        lambda: store.add_member(DOMAIN, "reception", "1009"),
        lambda: store.login(DOMAIN, "1001", "reception"),
        lambda: store.set_role_number(DOMAIN, "nurse", "300"),
        lambda: store.link_role(DOMAIN, "reception", "nobody"),
    ):
        with pytest.raises(StoreError):
            failing()
    assert store.set_logged_in_all(DOMAIN, "1001", FUNCTION, True) == []
    assert directory_version(engine) == seen[-1]


def test_a_directory_without_groups_still_builds_and_the_call_path_defaults_hold() -> None:
    empty = Directory(1, MappingProxyType({}), MappingProxyType({}))
    assert (empty.group(DOMAIN, "x"), empty.number(DOMAIN, "200"), empty.role(DOMAIN, "doctor")) == (
        None,
        None,
        None,
    )


# -- registrations and line states ---------------------------------------------------------------


def test_registered_counts_only_unexpired_bindings_of_the_clinic(engine: Engine) -> None:
    now = time.time()

    def binding(domain: str, extension: str, expires_at: float) -> BindingRow:
        return BindingRow(domain, extension, f"k{extension}{expires_at}", f"<sip:{extension}@192.0.2.1>", expires_at,
                          "c", 1, "udp", "192.0.2.1", 5060, "udp:0.0.0.0:5060", now)  # fmt: skip

    bindings = BindingStore(engine)
    bindings.apply(
        [binding(DOMAIN, "1001", now + 60), binding(DOMAIN, "1001", now + 90), binding(DOMAIN, "1002", now - 1),
         binding("nord.example", "1003", now + 60)],
        [],
    )  # fmt: skip
    assert bindings.registered(DOMAIN, now) == {"1001"}


def test_line_states_are_replaced_as_a_whole_and_read_per_clinic(engine: Engine) -> None:
    lines = LineStateStore(engine)
    now = 1_740_816_000.0
    lines.replace(
        [
            LineState(DOMAIN, "1002", LineStatus.RINGING),
            LineState(DOMAIN, "1001", LineStatus.RINGING),
            LineState(DOMAIN, "1001", LineStatus.BUSY, acute=True),
            LineState("nord.example", "1001", LineStatus.BUSY),
        ],
        now=now,
    )
    assert lines.list(DOMAIN) == [
        LineState(DOMAIN, "1001", LineStatus.BUSY, True, now),
        LineState(DOMAIN, "1002", LineStatus.RINGING, False, now),
    ]
    assert len(lines.list()) == 3
    lines.replace([LineState(DOMAIN, "1003", LineStatus.BUSY)], now=now + 10)
    assert [(line.extension, line.state) for line in lines.list()] == [("1003", LineStatus.BUSY)]
    # A server that stopped publishing: its lines age out of readers that give a maximum age.
    assert lines.list(DOMAIN, max_age=5, now=now + 16) == []
    lines.touch(now=now + 16)
    assert [line.updated_at for line in lines.list(DOMAIN, max_age=5, now=now + 16)] == [now + 16]
    lines.clear()
    assert lines.list() == []


def test_line_states_refused_by_the_database_are_a_sentence_without_the_row(engine: Engine) -> None:
    with engine.begin() as connection:
        connection.execute(text("DROP TABLE line_state"))
    with pytest.raises(StoreError, match=r"^the line states were not published: ") as caught:
        LineStateStore(engine).replace([LineState(DOMAIN, "1001", LineStatus.BUSY)])
    assert "\n" not in str(caught.value)
