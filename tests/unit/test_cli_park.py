"""The park lot commands, through click's runner: what the operator types and reads."""

from __future__ import annotations

import json

import pytest

from sentral.config.cdr import LiveCall, LiveCallStore
from sentral.config.db import make_engine
from sentral.config.directory import ParkLotEntry, directory_version, load_directory
from tests.unit.test_cli import fails, ok
from tests.unit.test_cli_groups import lines

CLINIC = "clinic.local"


@pytest.fixture
def db(db_url: str) -> str:
    """The demo clinic: staff at 1001-1004."""
    ok(db_url, "init", "--demo")
    return db_url


def test_park_add_list_show_set_and_remove(db: str) -> None:
    engine = make_engine(db)
    try:
        version = directory_version(engine)
        assert ok(db, "park", "add", "Main", "--number", "700", "--slots", "701-720") == (
            "Added park lot main@clinic.local on number 700 with slots 701-720 (20 slots); "
            "a parked call rings its parker again after 45s.\n"
        )
        assert directory_version(engine) > version
        assert load_directory(engine).park_lot(CLINIC, "main") == ParkLotEntry(
            CLINIC, "main", "700", "701", "720", 45.0
        )
    finally:
        engine.dispose()
    assert ok(db, "park", "add", "ward", "--number", "80", "--slots", "0081-0081", "--timeout", "120") == (
        "Added park lot ward@clinic.local on number 80 with slots 0081-0081 (1 slot); "
        "a parked call rings its parker again after 120s.\n"
    )
    assert lines(ok(db, "park", "list")) == [
        ["NAME", "NUMBER", "SLOTS", "TIMEOUT"],
        ["main", "700", "701-720", "45s"],
        ["ward", "80", "0081-0081", "120s"],
    ]
    main = {
        "domain": CLINIC, "name": "main", "number": "700", "first_slot": "701", "last_slot": "720",
        "slots": [str(n) for n in range(701, 721)], "timeout": 45,
    }  # fmt: skip
    ward = {
        "domain": CLINIC, "name": "ward", "number": "80", "first_slot": "0081", "last_slot": "0081",
        "slots": ["0081"], "timeout": 120,
    }  # fmt: skip
    assert json.loads(ok(db, "park", "list", "--json")) == [main, ward]
    # Which slots hold a call is what the running servers publish with their live calls.
    assert json.loads(ok(db, "park", "show", "MAIN", "--json")) == main | {"parked": {}}
    LiveCallStore(engine).publish(
        "server-1",
        [
            LiveCall(
                call_id="c1", domain=CLINIC, caller="1001", callee="1002", state="parked:703", started_at=1.0
            ),
            LiveCall(
                call_id="c2", domain=CLINIC, caller="1003", callee="1004", state="answered", started_at=1.0
            ),
        ],
    )
    assert json.loads(ok(db, "park", "show", "MAIN", "--json")) == main | {"parked": {"703": "c1"}}
    shown = ok(db, "park", "show", "main").splitlines()
    assert shown[:5] == [
        "Park lot main@clinic.local",
        "  park number:  700",
        "  slots:        701-720 (20 slots)",
        "  recall after: 45s",
        "",
    ]
    assert [row.split() for row in shown[5:9]] == [
        ["SLOT", "CALL"],
        ["701", "-"],
        ["702", "-"],
        ["703", "c1"],
    ]
    calls = json.loads(ok(db, "calls", "--json"))
    assert {(c["call_id"], c["state"], c["parked"]) for c in calls} == {
        ("c1", "parked", "703"),
        ("c2", "answered", None),
    }
    assert "parked on 703" in ok(db, "calls")
    LiveCallStore(engine).publish("server-1", [])

    assert ok(db, "park", "set", "main", "--slots", "701-705", "--timeout", "60") == (
        "Park lot main@clinic.local has number 700 and slots 701-705 (5 slots); "
        "a parked call rings its parker again after 60s.\n"
    )
    assert ok(db, "park", "set", "main", "--number", "799").startswith(
        "Park lot main@clinic.local has number 799 "
    )
    shown = json.loads(ok(db, "park", "show", "main", "--json"))
    assert (shown["number"], shown["slots"], shown["timeout"]) == (
        "799",
        ["701", "702", "703", "704", "705"],
        60,
    )
    # Numbers the lot gave up are anyone's again.
    ok(db, "user", "add", "710", "--name", "Per Hansen", "--password", "long-enough")

    assert ok(db, "park", "remove", "main") == "Removed park lot main@clinic.local.\n"
    assert ok(db, "park", "remove", "ward") == "Removed park lot ward@clinic.local.\n"
    assert ok(db, "park", "list") == (
        "No park lots yet; add one with `sentral park add NAME --number 700 --slots 701-720`.\n"
    )
    assert json.loads(ok(db, "park", "list", "--json")) == []


def test_park_mistakes_are_one_sentence_and_a_non_zero_exit(db: str) -> None:
    ok(db, "park", "add", "main", "--number", "700", "--slots", "701-720")
    ok(db, "group", "add", "doctors", "--number", "200")
    cases = [
        (("park", "add", "ward", "--number", "800", "--slots", "715-730"),
         "slots 715-730 overlap the slots 701-720 of park lot main in clinic.local; choose another range"),
        (("park", "add", "ward", "--number", "800", "--slots", "1000-1010"),
         "slot 1001 is already taken by extension 1001 (Ingrid Solberg) in clinic.local; "
         "choose another range than 1000-1010"),
        (("park", "add", "ward", "--number", "200", "--slots", "801-810"),
         "number 200 is already taken by group doctors in clinic.local; choose another"),
        (("park", "add", "ward", "--number", "800", "--slots", "830-801"),
         "slots 830-801 run backwards; give the lowest slot first, such as 801-830"),
        (("park", "add", "ward", "--number", "800", "--slots", "801-950"),
         "slots 801-950 are 150 slots; a park lot has at most 100"),
        (("park", "add", "ward", "--number", "800", "--slots", "98-102"),
         "slots 98-102 must have as many digits at both ends, such as 701-720 or 0098-0102"),
        (("park", "add", "ward", "--number", "800", "--slots", "eight"),
         "slots 'eight' must be a range of numbers such as 701-720"),
        (("park", "add", "ward", "--number", "805", "--slots", "801-810"),
         "the park number 805 of park lot ward is one of its slots 801-810; choose a number outside them"),
        (("park", "add", "ward", "--number", "800", "--slots", "801-810", "--timeout", "0"),
         "the park timeout must be a whole number of seconds from 10 to 3600, not 0"),
        (("park", "add", "main", "--number", "800", "--slots", "801-810"),
         "there is already a park lot called main in clinic.local; choose another name"),
        (("park", "set", "main", "--slots", "701-801"), "slots 701-801 are 101 slots; a park lot has at most 100"),
        (("park", "set", "lobby", "--timeout", "30"),
         "there is no park lot called lobby in clinic.local; see `sentral park list`"),
        (("park", "show", "lobby"), "there is no park lot called lobby in clinic.local; see `sentral park list`"),
        (("park", "remove", "lobby"), "there is no park lot called lobby in clinic.local; see `sentral park list`"),
        (("user", "add", "705", "--name", "Per Hansen", "--password", "long-enough"),
         "extension 705 is already the number of a slot of park lot main in clinic.local; choose another number"),
        (("group", "set", "doctors", "--overflow", "700"),
         "group doctors cannot overflow to 700, which is park lot main in clinic.local; "
         "choose an extension, group, function or role"),
        (("park", "list", "--domain", "nord.example"),
         "there is no clinic nord.example; known clinics: clinic.local"),
    ]  # fmt: skip
    for args, sentence in cases:
        assert fails(db, *args) == f"sentral: {sentence}\n", args
    # Usage mistakes exit 2 and say what to write instead.
    assert "say what to change, such as --timeout 60" in fails(db, "park", "set", "main", code=2)
    assert "'soon' is not a valid integer" in fails(
        db, "park", "add", "ward", "--number", "800", "--slots", "801-810", "--timeout", "soon", code=2
    )
    assert "Missing option '--slots'" in fails(db, "park", "add", "ward", "--number", "800", code=2)
    # Nothing of the failed commands was stored.
    assert json.loads(ok(db, "park", "list", "--json"))[0]["slots"][-1] == "720"
    assert [lot["name"] for lot in json.loads(ok(db, "park", "list", "--json"))] == ["main"]


def test_park_help_says_what_a_lot_is(db: str) -> None:
    assert "first free slot" in ok(db, "park", "--help")
    add_help = ok(db, "park", "add", "--help")
    assert "--slots FIRST-LAST" in add_help and "[default: 45]" in add_help
