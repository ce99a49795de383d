"""The CLI for groups, functions, roles, logins, phones and presence, through click's runner."""

from __future__ import annotations

import json
import re
import time

import pytest

from sentral.config.db import make_engine
from sentral.config.directory import GroupKind, Strategy, directory_version, load_directory
from sentral.config.store import BindingRow, BindingStore, LineState, LineStateStore, LineStatus
from tests.unit.test_cli import fails, ok

CLINIC = "clinic.local"


@pytest.fixture
def db(db_url: str) -> str:
    """The demo clinic: 1001 and 1002 doctors, 1003 a nurse, 1004 a medical secretary."""
    ok(db_url, "init", "--demo")
    return db_url


def lines(text: str) -> list[list[str]]:
    """A table's rows split on runs of two or more spaces."""
    return [re.split(r"\s{2,}", line.strip()) for line in text.strip().splitlines()]


def test_group_add_list_show_set_and_remove(db: str) -> None:
    out = ok(db, "group", "add", "Doctors", "--number", "200", "--member", "1002", "--member", "1001",
             "--strategy", "linear", "--ring-timeout", "45", "--member-timeout", "15", "--overflow", "1004",
             "--acute-number", "201", "--ring-busy", "--max-wait", "120")  # fmt: skip
    assert out == "Added group doctors@clinic.local on number 200 with 2 members.\n"
    expected = {
        "domain": CLINIC, "name": "doctors", "kind": "group", "number": "200", "acute_number": "201",
        "strategy": "linear", "member_timeout": 15, "ring_timeout": 45, "overflow": "1004", "ring_busy": True,
        "max_wait": 120, "announce_position": 0,
        "members": [
            {"position": 1, "extension": "1002", "name": "Magnus Haugen", "logged_in": True, "via_role": None},
            {"position": 2, "extension": "1001", "name": "Ingrid Solberg", "logged_in": True, "via_role": None},
        ],
    }  # fmt: skip
    assert json.loads(ok(db, "group", "list", "--json")) == [expected]
    assert json.loads(ok(db, "group", "show", "doctors", "--json")) == expected
    assert lines(ok(db, "group", "list")) == [
        ["NAME", "NUMBER", "ACUTE", "STRATEGY", "LOGGED IN", "OVERFLOW"],
        ["doctors", "200", "201", "linear", "2/2", "1004"],
    ]
    shown = ok(db, "group", "show", "doctors")
    assert shown.startswith("Group doctors@clinic.local\n  number:            200\n")
    assert "  overflow:          1004\n" in shown and "  ring busy members: yes\n" in shown
    assert lines(shown.split("\n\n")[1]) == [
        ["POSITION", "EXTENSION", "NAME", "LOGGED IN", "VIA ROLE"],
        ["1", "1002", "Magnus Haugen", "yes", "-"],
        ["2", "1001", "Ingrid Solberg", "yes", "-"],
    ]

    assert "see `sentral group show doctors`" in ok(db, "group", "set", "doctors", "--skip-busy", "--strategy", "ringall",
                                                   "--no-overflow", "--no-acute-number")  # fmt: skip
    changed = json.loads(ok(db, "group", "show", "doctors", "--json"))
    assert (changed["ring_busy"], changed["strategy"], changed["overflow"], changed["acute_number"]) == (
        False, "ringall", None, None
    )  # fmt: skip
    assert (changed["ring_timeout"], changed["max_wait"], changed["number"]) == (45, 120, "200")
    assert "  announce position: never\n" in shown
    ok(db, "group", "set", "doctors", "--announce-position", "30")
    assert json.loads(ok(db, "group", "show", "doctors", "--json"))["announce_position"] == 30
    assert "  announce position: 30s\n" in ok(db, "group", "show", "doctors")
    says = fails(db, "group", "set", "doctors", "--announce-position", "5")
    assert "time between position announcements must be a whole number of seconds from 10 to 3600, not 5" in says
    ok(db, "group", "set", "doctors", "--announce-position", "0")
    assert json.loads(ok(db, "group", "show", "doctors", "--json"))["announce_position"] == 0

    assert (
        ok(db, "group", "member", "remove", "doctors", "1002")
        == "Removed 1002 from group doctors@clinic.local.\n"
    )
    assert ok(db, "group", "member", "add", "doctors", "1003") == (
        "1003 is member 2 of group doctors@clinic.local, logged in.\n"
    )
    engine = make_engine(db)
    try:
        group = load_directory(engine).group(CLINIC, "doctors")
        assert group is not None and group.strategy is Strategy.RINGALL
        assert [m.extension for m in group.members] == ["1001", "1003"]
        version = directory_version(engine)
        assert ok(db, "group", "remove", "doctors") == "Removed group doctors@clinic.local.\n"
        assert directory_version(engine) > version
        assert load_directory(engine).groups == {}
    finally:
        engine.dispose()
    assert ok(db, "group", "list").strip() == "No groups yet; add one with `sentral group add NAME`."
    assert json.loads(ok(db, "group", "list", "--json")) == []


def test_functions_with_roles_logins_and_the_staff_list(db: str) -> None:
    out = ok(
        db,
        "function",
        "add",
        "reception",
        "--number",
        "300",
        "--member",
        "1003",
        "--role",
        "medical-secretary",
    )
    assert (
        out
        == "Added function reception@clinic.local on number 300 with 2 members; roles: medical-secretary.\n"
    )
    shown = json.loads(ok(db, "function", "show", "reception", "--json"))
    assert shown["roles"] == ["medical-secretary"]
    assert [(m["extension"], m["logged_in"], m["via_role"]) for m in shown["members"]] == [
        ("1003", False, None), ("1004", False, "medical-secretary")
    ]  # fmt: skip
    assert (
        ok(db, "login", "1004", "reception") == "1004@clinic.local is now logged in to function reception.\n"
    )
    assert (
        ok(db, "login", "1004", "reception")
        == "1004@clinic.local was already logged in to function reception.\n"
    )
    assert lines(ok(db, "function", "list")) == [
        ["NAME", "NUMBER", "ACUTE", "STRATEGY", "LOGGED IN", "OVERFLOW", "ROLES"],
        ["reception", "300", "-", "ringall", "1/2", "480 (nobody answers)", "medical-secretary"],
    ]
    staff = {u["extension"]: u for u in json.loads(ok(db, "user", "list", "--json"))}
    assert staff["1004"]["functions"] == [{"name": "reception", "logged_in": True}]
    assert staff["1003"]["functions"] == [{"name": "reception", "logged_in": False}]
    assert staff["1001"]["functions"] == []
    table = ok(db, "user", "list")
    assert re.search(
        r"^1004\s+clinic\.local\s+Kari Johansen\s+medical-secretary\s+reception \(logged in\)$", table, re.M
    )

    assert ok(db, "function", "role", "add", "reception", "nurse") == (
        "Role nurse now gives function reception@clinic.local (0 through it).\n"
    )
    ok(db, "user", "roles", "1002", "--add", "nurse")
    members = json.loads(ok(db, "function", "show", "reception", "--json"))["members"]
    assert [(m["extension"], m["via_role"]) for m in members][-1] == ("1002", "nurse")
    assert ok(db, "function", "role", "remove", "reception", "nurse") == (
        "Role nurse no longer gives function reception@clinic.local.\n"
    )
    ok(db, "function", "set", "reception", "--role", "doctor", "--no-number")
    shown = json.loads(ok(db, "function", "show", "reception", "--json"))
    assert (shown["roles"], shown["number"]) == (["doctor"], None)
    assert [(m["extension"], m["via_role"]) for m in shown["members"]] == [
        ("1003", None), ("1001", "doctor"), ("1002", "doctor")
    ]  # fmt: skip
    assert ok(db, "function", "member", "add", "reception", "1004") == (
        "1004 is member 4 of function reception@clinic.local, logged out until they log in with "
        "`sentral login 1004 reception`.\n"
    )
    assert (
        ok(db, "logout", "1003", "reception")
        == "1003@clinic.local was already logged out of function reception.\n"
    )


def test_roles_numbers_and_who_holds_them(db: str) -> None:
    assert (
        ok(db, "role", "set", "doctor", "--number", "400") == "Role doctor@clinic.local now has number 400.\n"
    )
    ok(db, "function", "add", "reception", "--role", "medical-secretary")
    assert json.loads(ok(db, "role", "list", "--json")) == [
        {"domain": CLINIC, "name": "doctor", "number": "400", "holders": 2, "functions": []},
        {
            "domain": CLINIC,
            "name": "medical-secretary",
            "number": None,
            "holders": 1,
            "functions": ["reception"],
        },
        {"domain": CLINIC, "name": "nurse", "number": None, "holders": 1, "functions": []},
    ]
    assert lines(ok(db, "role", "list"))[1] == ["doctor", "400", "2", "-"]
    engine = make_engine(db)
    try:
        now = time.time()
        BindingStore(engine).apply(
            [BindingRow(CLINIC, "1001", "k1", "<sip:1001@192.0.2.10>", now + 300, "c1", 1, "udp", "192.0.2.10",
                        5060, "udp:0.0.0.0:5060", now)],
            [],
        )  # fmt: skip
        LineStateStore(engine).replace([LineState(CLINIC, "1001", LineStatus.BUSY)])
        role = load_directory(engine).number(CLINIC, "400")
        assert role is not None and role.name == "doctor"
    finally:
        engine.dispose()
    ok(db, "phone", "off", "1002")
    holders = json.loads(ok(db, "role", "members", "doctor", "--json"))
    assert [(h["extension"], h["phone_on"], h["registered"], h["line"]) for h in holders] == [
        ("1001", True, True, "busy"), ("1002", False, False, "idle")
    ]  # fmt: skip
    assert lines(ok(db, "role", "members", "doctor")) == [
        ["EXTENSION", "NAME", "PHONE", "REGISTERED", "LINE"],
        ["1001", "Ingrid Solberg", "on", "yes", "busy"],
        ["1002", "Magnus Haugen", "off", "no", "idle"],
    ]
    assert ok(db, "role", "set", "doctor", "--no-number") == "Role doctor@clinic.local has no number now.\n"
    assert json.loads(ok(db, "role", "list", "--json"))[0]["number"] is None


def test_phones_are_logged_off_and_on(db: str) -> None:
    assert ok(db, "phone", "off", "1003") == "The phone of 1003@clinic.local is now off.\n"
    assert ok(db, "phone", "off", "1003") == "The phone of 1003@clinic.local was already off.\n"
    engine = make_engine(db)
    try:
        staff = load_directory(engine).staff_for(CLINIC, "1003")
        assert staff is not None and not staff.phone_on
    finally:
        engine.dispose()
    assert ok(db, "phone", "on", "1003") == "The phone of 1003@clinic.local is now on.\n"
    assert json.loads(ok(db, "user", "list", "--json"))[2]["phone_on"] is True


def test_direct_media_is_turned_on_and_off_per_phone(db: str) -> None:
    assert json.loads(ok(db, "user", "list", "--json"))[2]["direct_media"] is False
    on = "The phone of 1003@clinic.local now sends media straight to phones with direct media.\n"
    assert ok(db, "direct-media", "on", "1003") == on
    assert ok(db, "direct-media", "on", "1003") == on.replace(" now ", " already ")
    engine = make_engine(db)
    try:
        directory = load_directory(engine)
        assert [s.extension for s in directory.staff.values() if s.direct_media] == ["1003"]
    finally:
        engine.dispose()
    assert json.loads(ok(db, "user", "list", "--json"))[2]["direct_media"] is True
    assert ok(db, "direct-media", "off", "1003") == "The phone of 1003@clinic.local now has its media relayed.\n"
    assert "4711" in fails(db, "direct-media", "on", "4711")
    assert "extension" in fails(db, "direct-media", "on", "12ab")


def test_presence_shows_phone_registration_line_and_logins(db: str) -> None:
    ok(db, "group", "add", "doctors", "--number", "200", "--member", "1001", "--member", "1002")
    ok(db, "function", "add", "reception", "--member", "1001", "--member", "1004")
    ok(db, "login", "1001", "reception")
    ok(db, "logout", "1002", "doctors")
    ok(db, "phone", "off", "1003")
    engine = make_engine(db)
    try:
        now = time.time()
        BindingStore(engine).apply(
            [BindingRow(CLINIC, "1004", "k4", "<sip:1004@192.0.2.14>", now + 300, "c4", 1, "udp", "192.0.2.14",
                        5060, "udp:0.0.0.0:5060", now)],
            [],
        )  # fmt: skip
        LineStateStore(engine).replace(
            [
                LineState(CLINIC, "1001", LineStatus.BUSY, acute=True),
                LineState(CLINIC, "1004", LineStatus.RINGING),
            ]
        )
    finally:
        engine.dispose()
    people = json.loads(ok(db, "presence", "--json"))
    assert people[0] == {
        "domain": CLINIC, "extension": "1001", "name": "Ingrid Solberg", "phone_on": True, "registered": False,
        "line": "busy", "acute": True, "groups": ["doctors"], "functions": ["reception"],
        "forwarded_to": None, "forwards": {"always": None, "busy": None, "noanswer": None, "after": 20},
    }  # fmt: skip
    assert [(p["extension"], p["phone_on"], p["registered"], p["line"], p["groups"], p["functions"]) for p in people[1:]] == [
        ("1002", True, False, "idle", [], []),
        ("1003", False, False, "idle", [], []),
        ("1004", True, True, "ringing", [], []),
    ]  # fmt: skip
    assert lines(ok(db, "presence")) == [
        ["EXTENSION", "DOMAIN", "NAME", "PHONE", "REGISTERED", "LINE", "GROUPS", "FUNCTIONS", "FORWARDS"],
        ["1001", CLINIC, "Ingrid Solberg", "on", "no", "busy (acute)", "doctors", "reception", "-"],
        ["1002", CLINIC, "Magnus Haugen", "on", "no", "idle", "-", "-", "-"],
        ["1003", CLINIC, "Silje Nilsen", "off", "no", "idle", "-", "-", "-"],
        ["1004", CLINIC, "Kari Johansen", "on", "yes", "ringing", "-", "-", "-"],
    ]
    # Lines a stopped server left behind long ago count as idle.
    engine = make_engine(db)
    try:
        LineStateStore(engine).touch(now=time.time() - 600)
    finally:
        engine.dispose()
    assert {p["line"] for p in json.loads(ok(db, "presence", "--json"))} == {"idle"}
    assert "sentral: there is no clinic nord.example" in fails(db, "presence", "--domain", "nord.example")


def test_mistakes_are_one_sentence_and_a_non_zero_exit(db: str) -> None:
    ok(db, "group", "add", "doctors", "--number", "200", "--member", "1001")
    ok(db, "function", "add", "reception", "--member", "1004")
    cases = [
        (("group", "show", "labs"),
         "there is no group called labs in clinic.local; see `sentral group list`"),
        (("group", "member", "add", "labs", "1002"),
         "there is no group called labs in clinic.local; see `sentral group list`"),
        (("group", "show", "reception"),
         "reception in clinic.local is a function, not a group; see `sentral function show reception`"),
        (("group", "add", "lab", "--number", "1001"),
         "number 1001 is already taken by extension 1001 (Ingrid Solberg) in clinic.local; choose another"),
        (("function", "add", "lab", "--number", "200"),
         "number 200 is already taken by group doctors in clinic.local; choose another"),
        (("group", "add", "lab", "--number", "210", "--strategy", "roundrobin"),
         "strategy 'roundrobin' is not known; choose one of ringall, linear, rrmemory, leastrecent, fewestcalls, random"),
        (("group", "add", "lab", "--number", "210", "--ring-timeout", "-5"),
         "the ring timeout must be a whole number of seconds from 1 to 3600, not -5"),
        (("group", "set", "doctors", "--member-timeout", "0"),
         "the member timeout must be a whole number of seconds from 1 to 600, not 0"),
        (("group", "add", "lab", "--number", "210", "--overflow", "999"),
         "group lab cannot overflow to 999: no extension, group, function or role has that number in clinic.local"),
        (("group", "add", "lab", "--number", "21a"), "number '21a' must be 2 to 10 digits, such as 200"),
        (("group", "add", "lab", "--number", "210", "--member", "1009"),
         "there is no extension 1009 in clinic.local; see `sentral user list`"),
        (("login", "1002", "doctors"),
         "extension 1002 is not a member of group doctors in clinic.local; add them with "
         "`sentral group member add doctors 1002`"),
        (("login", "1002", "labs"),
         "there is no group or function called labs in clinic.local; see `sentral group list` and "
         "`sentral function list`"),
        (("user", "add", "200", "--name", "Per Hansen", "--password", "long-enough"),
         "extension 200 is already the number of group doctors in clinic.local; choose another number"),
        (("user", "remove", "1004"), None),
        (("role", "set", "surgeon", "--number", "500"),
         "there is no role surgeon in clinic.local; known roles: doctor, medical-secretary, nurse"),
        (("role", "members", "surgeon"),
         "there is no role surgeon in clinic.local; known roles: doctor, medical-secretary, nurse"),
        (("function", "role", "add", "reception", "docter"),
         "there is no role docter in clinic.local; known roles: doctor, medical-secretary, nurse"),
        (("phone", "off", "1009"), "there is no extension 1009 in clinic.local; see `sentral user list`"),
        (("phone", "off", "x"), "extension 'x' must be 2 to 10 digits, such as 1001"),
    ]  # fmt: skip
    ok(db, "group", "set", "doctors", "--overflow", "1004")
    for args, sentence in cases:
        err = fails(db, *args)
        if sentence is None:
            assert err.startswith("sentral: group doctors in clinic.local overflows to 1004; ")
        else:
            assert err == f"sentral: {sentence}\n", args
    # Usage mistakes exit 2 and say what to write instead.
    assert "say what to change" in fails(db, "group", "set", "doctors", code=2)
    assert "give either --overflow or --no-overflow" in fails(db, "group", "set", "doctors", "--overflow", "busy",
                                                              "--no-overflow", code=2)  # fmt: skip
    assert "--ring-timeout" in fails(
        db, "group", "add", "lab", "--number", "210", "--ring-timeout", "soon", code=2
    )
    assert "--number" in fails(db, "group", "add", "lab", code=2)
    assert "give either --number NUM or --no-number" in fails(db, "role", "set", "doctor", code=2)
    assert "No such option '--role'" in fails(
        db, "group", "add", "lab", "--number", "210", "--role", "doctor", code=2
    )
    # Nothing of the failed commands was stored.
    assert [g["name"] for g in json.loads(ok(db, "group", "list", "--json"))] == ["doctors"]


def test_function_and_group_help_name_their_kind(db: str) -> None:
    assert "log in to and out of" in ok(db, "function", "--help")
    assert "--role ROLE" in ok(db, "function", "add", "--help")
    assert "--no-number" in ok(db, "function", "set", "--help")
    assert "--no-number" not in ok(db, "group", "set", "--help")
    for kind in GroupKind:
        assert f"Add the {kind.value} NAME" in ok(db, kind.value, "add", "--help")
