"""Call forwarding at the CLI: `sentral user set EXT --forward ...`, and what listings show."""

from __future__ import annotations

import dataclasses
import json
import re

import pytest

from sentral.config.db import make_engine
from sentral.config.directory import Forwards, directory_version, load_directory
from tests.unit.test_cli import T0, _record, _store_records, downgrade, fails, ok

CLINIC = "clinic.local"


@pytest.fixture
def db(db_url: str) -> str:
    """The demo clinic: staff at 1001-1004, and a group on 200."""
    ok(db_url, "init", "--demo")
    ok(db_url, "group", "add", "reception", "--number", "200", "--member", "1003")
    return db_url


def forwards(db: str, extension: str) -> Forwards:
    engine = make_engine(db)
    try:
        staff = load_directory(engine).staff_for(CLINIC, extension)
        assert staff is not None
        return staff.forwards
    finally:
        engine.dispose()


def version(db: str) -> int:
    engine = make_engine(db)
    try:
        return directory_version(engine)
    finally:
        engine.dispose()


def test_each_forward_is_set_shown_and_cleared_on_its_own(db: str) -> None:
    assert ok(db, "user", "set", "1001", "--forward", "always", "1002") == "1001@clinic.local forwards always 1002.\n"
    assert ok(db, "user", "set", "1001", "--forward", "busy", "200") == (
        "1001@clinic.local forwards always 1002, busy 200.\n"
    )
    assert ok(db, "user", "set", "1001", "--forward", "noanswer", "1003", "--after", "2") == (
        "1001@clinic.local forwards always 1002, busy 200, noanswer 1003 after 2 s.\n"
    )
    assert forwards(db, "1001") == Forwards("1002", "200", "1003", 2.0)
    # Setting a no-answer target again keeps the time given before.
    ok(db, "user", "set", "1001", "--forward", "noanswer", "1004")
    assert forwards(db, "1001") == Forwards("1002", "200", "1004", 2.0)
    assert forwards(db, "1002") == Forwards()

    shown = json.loads(ok(db, "user", "show", "1001", "--json"))
    assert shown["forwards"] == {"always": "1002", "busy": "200", "noanswer": "1004", "after": 2}
    assert re.search(
        r"^  forwards:\s+always 1002, busy 200, noanswer 1004 after 2 s$", ok(db, "user", "show", "1001"), re.MULTILINE
    )
    assert re.search(r"^  forwards:\s+-$", ok(db, "user", "show", "1002"), re.MULTILINE)
    listed = {u["extension"]: u["forwards"] for u in json.loads(ok(db, "user", "list", "--json"))}
    assert listed["1002"] == {"always": None, "busy": None, "noanswer": None, "after": 20}
    assert re.search(r"^1001\s.*always 1002, busy 200, noanswer 1004 after 2 s$", ok(db, "user", "list"), re.MULTILINE)

    assert ok(db, "user", "set", "1001", "--no-forward", "busy") == (
        "1001@clinic.local forwards always 1002, noanswer 1004 after 2 s.\n"
    )
    assert ok(db, "user", "set", "1001", "--no-forward") == "1001@clinic.local forwards nothing.\n"
    assert forwards(db, "1001") == Forwards()


def test_a_forward_reaches_the_running_directory(db: str) -> None:
    before = version(db)
    ok(db, "user", "set", "1002", "--forward", "always", "1003")
    assert version(db) > before
    before = version(db)
    ok(db, "user", "set", "1002", "--no-forward", "always")
    assert version(db) > before


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (("--forward", "always", "1009"), "'1009' is not an extension, group, function or role number of clinic.local"),
        (("--forward", "always", "+4722334455"), "forwarding to outside numbers needs a trunk"),
        (("--forward", "busy", "1001"), "extension 1001 cannot forward to itself"),
        (("--forward", "sometimes", "1002"), "forward 'sometimes': choose always, busy or noanswer"),
        (("--forward", "noanswer", "1002", "--after", "0"), "from 1 to 180, not 0"),
        (("--forward", "noanswer", "1002", "--after", "600"), "from 1 to 180, not 600"),
        (("--forward", "busy", "1002", "--after", "5"), "--after goes with a no-answer forward"),
        (("--no-forward", "never"), "forward 'never': choose always, busy or noanswer"),
    ],
)
def test_a_bad_forward_is_refused_in_one_sentence_and_nothing_is_written(
    db: str, args: tuple[str, ...], says: str
) -> None:
    before = version(db)
    stderr = fails(db, "user", "set", "1001", *args)
    assert says in stderr
    assert stderr.startswith("sentral: ") and stderr.count("\n") == 1
    assert forwards(db, "1001") == Forwards()
    assert version(db) == before


def test_a_forward_that_would_make_a_loop_is_refused(db: str) -> None:
    ok(db, "user", "set", "1002", "--forward", "always", "1003")
    ok(db, "user", "set", "1003", "--forward", "always", "1001")
    before = version(db)
    assert fails(db, "user", "set", "1001", "--forward", "always", "1002") == (
        "sentral: forwarding 1001 always to 1002 would make a loop (1001 -> 1002 -> 1003 -> 1001); "
        "clear the forward of 1003 first\n"
    )
    assert forwards(db, "1001") == Forwards()
    assert version(db) == before
    # Forwards on busy or no answer may point at each other: the two cover for one another, and
    # a call follows them only as far as it has not been already.
    ok(db, "user", "set", "1001", "--forward", "noanswer", "1002")
    ok(db, "user", "set", "1002", "--forward", "noanswer", "1001")


def test_an_unknown_extension_gets_a_sentence(db: str) -> None:
    assert "there is no extension 1009 in clinic.local" in fails(db, "user", "set", "1009", "--forward", "busy", "1002")


def test_the_upgrade_that_brings_forwarding_starts_everyone_without_forwards(db: str) -> None:
    ok(db, "user", "set", "1001", "--forward", "busy", "1002")
    downgrade(db, "0006")  # and back up: the forwards go with the table
    assert "from schema 0006 to " in ok(db, "init")
    assert forwards(db, "1001") == Forwards()
    ok(db, "user", "set", "1001", "--forward", "busy", "1002")
    assert forwards(db, "1001") == Forwards(busy="1002")


def test_the_call_record_says_where_a_forwarded_call_went(db: str) -> None:
    record = dataclasses.replace(
        _record("f1", T0), callee="1002", callee_extension="1004", forwarded="1002 always 1003, 1003 noanswer 1004"
    )
    _store_records(db, [record])
    [listed] = json.loads(ok(db, "cdr", "--json"))
    assert listed["callee"] == "1002" and listed["callee_extension"] == "1004"
    assert listed["forwarded"] == [
        {"from": "1002", "kind": "always", "to": "1003"},
        {"from": "1003", "kind": "noanswer", "to": "1004"},
    ]
    assert re.search(r"\s1002 => 1003 \(always\) => 1004 \(noanswer\)\s+answered\s", ok(db, "cdr"))


def test_presence_shows_where_calls_are_forwarded(db: str) -> None:
    ok(db, "user", "set", "1002", "--forward", "always", "1003")
    ok(db, "user", "set", "1004", "--forward", "busy", "200")
    people = {p["extension"]: p for p in json.loads(ok(db, "presence", "--json"))}
    assert people["1002"]["forwarded_to"] == "1003"
    assert (people["1004"]["forwarded_to"], people["1004"]["forwards"]["busy"]) == (None, "200")
    table = {line.split()[0]: line for line in ok(db, "presence").splitlines()[1:]}
    assert table["1002"].endswith("forwarded to 1003")
    assert table["1004"].endswith("busy 200")
    assert table["1001"].endswith(" -")
