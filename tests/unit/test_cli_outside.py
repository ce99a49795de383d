"""Outside lines at the CLI: `sentral trunk`, `number`, `holiday`, `clinic set/countries`, `user set --dial`."""

from __future__ import annotations

import json
import re
import time

import pytest

from sentral.config.db import make_engine
from sentral.config.directory import DialPermission, NumberFormat, directory_version, load_directory
from sentral.config.store import TrunkState, TrunkStateStore
from tests.unit.test_cli import fails, ok, run

CLINIC = "clinic.local"
SECRET = "carrier-s3cret"


@pytest.fixture
def db(db_url: str) -> str:
    """The demo clinic: staff at 1001-1004, and a group on 200 with an acute number 113."""
    ok(db_url, "init", "--demo")
    ok(db_url, "group", "add", "reception", "--number", "200", "--acute-number", "290", "--member", "1003")
    return db_url


def version(db: str) -> int:
    engine = make_engine(db)
    try:
        return directory_version(engine)
    finally:
        engine.dispose()


def refused(db: str, *args: str, says: str) -> None:
    """The command fails with one sentence containing ``says`` and changes nothing."""
    before = version(db)
    stderr = fails(db, *args)
    assert says in stderr
    assert stderr.startswith("sentral: ") and stderr.count("\n") == 1
    assert version(db) == before


# -- trunks --------------------------------------------------------------------------------------


def test_trunks_are_added_listed_shown_changed_and_removed_without_printing_the_password(db: str) -> None:
    added = ok(
        db, "trunk", "add", "Telenor", "--host", "sip.telenor.example", "--register",
        "--username", "4722334455", "--password", SECRET, "--clinic", CLINIC,
    )  # fmt: skip
    assert added == "Added trunk telenor@clinic.local: sip.telenor.example:5060 over udp, priority 10, registers as 4722334455.\n"
    ok(
        db, "trunk", "add", "backup", "--host", "[2001:db8::5]:5080", "--transport", "TCP", "--priority", "20",
        "--address", "192.0.2.0/24", "--address", "198.51.100.7", "--format", "national", "--disable",
    )  # fmt: skip
    listed = ok(db, "trunk", "list")
    assert re.search(r"^telenor\s+clinic.local\s+sip.telenor.example:5060\s+udp\s+10\s+yes\s+yes\s+unknown\s+-$", listed, re.M)
    assert re.search(r"^backup\s+clinic.local\s+\[2001:db8::5\]:5080\s+tcp\s+20\s+no\s+no\s+unknown\s+-$", listed, re.M)
    shown = ok(db, "trunk", "show", "telenor")
    assert re.search(r"^  password:\s+\(set\)$", shown, re.M)
    assert re.search(r"^  password:\s+-$", ok(db, "trunk", "show", "backup"), re.M)
    as_json = json.loads(ok(db, "trunk", "list", "--json"))
    assert [t["name"] for t in as_json] == ["telenor", "backup"]
    assert as_json[0]["password_set"] is True and "password" not in as_json[0]
    assert as_json[1]["addresses"] == ["192.0.2.0/24", "198.51.100.7"] and as_json[1]["format"] == "national"
    for output in (added, listed, shown, json.dumps(as_json), ok(db, "trunk", "show", "telenor", "--json")):
        assert SECRET not in output

    changed = ok(db, "trunk", "set", "telenor", "--transport", "tls", "--priority", "30", "--realm", "telenor")
    assert changed == "Trunk telenor@clinic.local: sip.telenor.example:5061 over tls, priority 30, registers as 4722334455.\n"
    ok(db, "trunk", "set", "backup", "--no-address", "--enable", "--format", "00")
    engine = make_engine(db)
    try:
        backup, telenor = load_directory(engine).trunks[CLINIC]
    finally:
        engine.dispose()
    assert (telenor.password, telenor.realm, telenor.port) == (SECRET, "telenor", 5061)
    assert backup.addresses == () and backup.enabled and backup.number_format is NumberFormat.INTERNATIONAL_00
    assert ok(db, "trunk", "remove", "backup") == "Removed trunk backup@clinic.local.\n"
    assert [t["name"] for t in json.loads(ok(db, "trunk", "list", "--json"))] == ["telenor"]


def test_the_password_can_be_piped_in(db: str) -> None:
    result = run(
        db, "trunk", "add", "telenor", "--host", "sip.telenor.example", "--register", "--username", "u1",
        "--password-stdin", input=SECRET + "\n",
    )  # fmt: skip
    assert result.exit_code == 0 and SECRET not in result.output
    engine = make_engine(db)
    try:
        assert load_directory(engine).trunks[CLINIC][0].password == SECRET
    finally:
        engine.dispose()


def test_trunk_lists_show_the_state_a_running_server_published_and_unknown_when_it_is_old(db: str) -> None:
    ok(db, "trunk", "add", "telenor", "--host", "sip.telenor.example")
    ok(db, "trunk", "add", "backup", "--host", "192.0.2.9")
    engine = make_engine(db)
    try:
        TrunkStateStore(engine).publish(
            [
                TrunkState(CLINIC, "telenor", "failed", 403, "Forbidden", 0),
                TrunkState(CLINIC, "backup", "up", None, None, 3),
            ]
        )
        listed = ok(db, "trunk", "list")
        assert re.search(r"^telenor\s.*\sfailed \(403 Forbidden\)\s+0$", listed, re.M)
        assert re.search(r"^backup\s.*\sup\s+3$", listed, re.M)
        shown = json.loads(ok(db, "trunk", "show", "telenor", "--json"))
        assert (shown["state"], shown["last_status"], shown["detail"], shown["calls"]) == ("failed", 403, "Forbidden", 0)
        # A server that stopped publishing long ago tells nothing about the trunks now.
        TrunkStateStore(engine).touch(now=time.time() - 60)
        assert {t["state"] for t in json.loads(ok(db, "trunk", "list", "--json"))} == {"unknown"}
    finally:
        engine.dispose()


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (("add", "x", "--host", "h.example", "--clinic", "nope.example"), "there is no clinic nope.example"),
        (("add", "telenor", "--host", "h.example"), "there is already a trunk called telenor in clinic.local"),
        (("add", "x", "--host", "bad host"), "neither a host name nor an address"),
        (("add", "x", "--host", "h.example:99999"), "must be a number from 1 to 65535"),
        (("add", "x", "--host", "h.example:sip"), "must be a number from 1 to 65535"),
        (("add", "x", "--host", "h.example", "--transport", "sctp"), "transport 'sctp' is not known"),
        (("add", "x", "--host", "h.example", "--register"), "needs a username and a password"),
        (("add", "x", "--host", "h.example", "--register", "--username", "u"), "needs a username and a password"),
        (("add", "x", "--host", "h.example", "--format", "dots"), "number format 'dots' is not known"),
        (("add", "x", "--host", "h.example", "--address", "10.0.0.300"), "is not an IP address or network"),
        (("add", "x", "--host", "h.example", "--priority", "5000"), "priority of trunk x must be"),
        (("add", "9x", "--host", "h.example"), "must start with a letter"),
        (("set", "nope", "--priority", "1"), "there is no trunk called nope"),
        (("set", "telenor", "--register"), "needs a username and a password"),
        (("set", "telenor", "--address", "192.0.2.1", "--no-address"), "either --address or --no-address"),
        (("show", "nope"), "there is no trunk called nope"),
        (("remove", "nope"), "there is no trunk called nope"),
    ],
)
def test_trunk_mistakes_get_one_sentence_and_change_nothing(db: str, args: tuple[str, ...], says: str) -> None:
    ok(db, "trunk", "add", "telenor", "--host", "sip.telenor.example")
    refused(db, "trunk", *args, says=says)


def test_trunk_set_without_a_change_is_a_usage_error(db: str) -> None:
    ok(db, "trunk", "add", "telenor", "--host", "sip.telenor.example")
    assert "say what to change" in fails(db, "trunk", "set", "telenor", code=2)


# -- public numbers ------------------------------------------------------------------------------


def test_public_numbers_are_taken_as_written_and_stored_in_e164(db: str) -> None:
    before = version(db)
    assert ok(
        db, "number", "add", "22 33 44 55", "--to", "200", "--hours", "mon-fri 08:00-16:00; sat 09:00-12:00",
        "--closed-to", "004711611700",
    ) == (
        "Added public number +4722334455 to clinic.local: goes to 200, mon-fri 08:00-16:00; sat 09:00-12:00, "
        "else to +4711611700.\n"
    )  # fmt: skip
    assert version(db) > before
    ok(db, "number", "add", "+4722334456", "--to", "290")  # the acute number
    ok(db, "number", "add", "004722334457", "--to", "announcement:summer", "--hours", "mon 08:00-09:00")
    ok(db, "number", "add", "22334458", "--to", "1001", "--hours", "mon-fri 08:00-16:00", "--closed-to", "200")
    listed = json.loads(ok(db, "number", "list", "--json"))
    assert [(n["number"], n["to"], n["closed_to"]) for n in listed] == [
        ("+4722334455", "200", "+4711611700"),
        ("+4722334456", "290", None),
        ("+4722334457", "announcement:summer", None),
        ("+4722334458", "1001", "200"),
    ]
    assert re.search(r"^\+4722334456\s+clinic.local\s+290\s+always open\s+-$", ok(db, "number", "list"), re.M)
    assert json.loads(ok(db, "number", "show", "22334455", "--json"))["hours"] == "mon-fri 08:00-16:00; sat 09:00-12:00"
    assert re.search(r"^  closed to:\s+the closed message$", ok(db, "number", "show", "+4722334457"), re.M)

    assert ok(db, "number", "set", "+47 22 33 44 55", "--to", "1002", "--no-hours") == (
        "Public number +4722334455 of clinic.local goes to 1002, always open.\n"
    )
    ok(db, "number", "set", "22334458", "--no-closed-to")
    engine = make_engine(db)
    try:
        numbers = load_directory(engine).public_numbers
    finally:
        engine.dispose()
    assert (numbers["+4722334455"].destination, numbers["+4722334455"].hours) == ("1002", None)
    assert numbers["+4722334458"].closed_to is None
    assert ok(db, "number", "remove", "22334456") == "Removed public number +4722334456 from clinic.local.\n"
    assert "+4722334456" not in ok(db, "number", "list")


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (("add", "22334455", "--to", "200"), "+4722334455 is already a public number of clinic.local"),
        (("add", "12", "--to", "200"), "number '12' is not a phone number"),
        (("add", "phone", "--to", "200"), "number 'phone' is not a phone number"),
        (("add", "22334466", "--to", "999"), "cannot lead to '999'"),
        (("add", "22334466", "--to", "announcement:"), "must name a prompt"),
        (("add", "22334466", "--to", "200", "--hours", "someday 08:00-16:00"), "--hours 'someday 08:00-16:00'"),
        (("add", "22334466", "--to", "200", "--hours", "mon 16:00-08:00"), "--hours 'mon 16:00-08:00'"),
        (("add", "22334466", "--to", "200", "--closed-to", "999"), "--closed-to '999' is neither a number"),
        (("add", "22334466", "--to", "200", "--clinic", "nope.example"), "there is no clinic nope.example"),
        (("set", "22334499", "--to", "200"), "there is no public number +4722334499"),
        (("set", "22334455", "--to", "555"), "cannot lead to '555'"),
        (("set", "22334455", "--hours", "mon 8-9", "--no-hours"), "not both"),
        (("show", "22334499"), "there is no public number +4722334499"),
        (("remove", "22334499"), "there is no public number +4722334499"),
    ],
)
def test_public_number_mistakes_get_one_sentence_and_change_nothing(db: str, args: tuple[str, ...], says: str) -> None:
    ok(db, "number", "add", "22334455", "--to", "200")
    refused(db, "number", *args, says=says)


def test_a_number_a_public_number_leads_to_cannot_be_removed(db: str) -> None:
    ok(db, "number", "add", "22334455", "--to", "1003")
    refused(db, "user", "remove", "1003", says="public number +4722334455 of clinic.local leads to 1003")


def test_a_public_number_is_read_in_the_clinics_country(db: str) -> None:
    ok(db, "clinic", "set", CLINIC, "--country", "SE")
    ok(db, "number", "add", "08-123 456 78", "--to", "200")
    assert [n["number"] for n in json.loads(ok(db, "number", "list", "--json"))] == ["+46812345678"]


# -- closed days ---------------------------------------------------------------------------------


def test_closed_days_are_added_listed_and_removed(db: str) -> None:
    assert "public holidays of NO are closed anyway" in ok(db, "holiday", "list")
    assert ok(db, "holiday", "add", "2026-12-24", "--name", "Christmas Eve") == (
        "clinic.local is closed on 2026-12-24 (Christmas Eve).\n"
    )
    ok(db, "holiday", "add", "2026-06-19", "--clinic", CLINIC)
    assert json.loads(ok(db, "holiday", "list", "--json")) == [
        {"domain": CLINIC, "date": "2026-06-19", "name": "Closed"},
        {"domain": CLINIC, "date": "2026-12-24", "name": "Christmas Eve"},
    ]
    assert re.search(r"^2026-12-24\s+Christmas Eve$", ok(db, "holiday", "list"), re.M)
    refused(db, "holiday", "add", "2026-12-24", says="2026-12-24 is already a closed day of clinic.local")
    refused(db, "holiday", "add", "24.12.2026", says="date '24.12.2026' is not a date")
    refused(db, "holiday", "add", "2026-02-30", says="date '2026-02-30' is not a date")
    refused(db, "holiday", "add", "2026-12-31", "--clinic", "nope.example", says="there is no clinic nope.example")
    assert ok(db, "holiday", "remove", "2026-12-24") == "clinic.local is no longer closed on 2026-12-24.\n"
    refused(db, "holiday", "remove", "2026-12-24", says="2026-12-24 is not a closed day of clinic.local")
    engine = make_engine(db)
    try:
        assert {d.isoformat() for d in load_directory(engine).holidays[CLINIC]} == {"2026-06-19"}
    finally:
        engine.dispose()


# -- the clinic's country, main number and open countries ----------------------------------------


def test_a_clinic_gets_its_country_main_number_and_time_zone(db: str) -> None:
    assert ok(db, "clinic", "set", CLINIC, "--country", "no", "--main-number", "22 33 44 00") == (
        "Clinic clinic.local is in NO (+47), calls out as +4722334400, and keeps opening hours in the server's "
        "time zone.\n"
    )
    ok(db, "clinic", "set", CLINIC, "--timezone", "Europe/Oslo")
    [shown] = json.loads(ok(db, "clinic", "list", "--json"))
    assert (shown["country"], shown["main_number"], shown["timezone"], shown["open_countries"]) == (
        "NO", "+4722334400", "Europe/Oslo", [47]
    )  # fmt: skip
    # The digest choice is still set the way it was.
    assert "challenges with MD5" in ok(db, "clinic", "set", CLINIC, "--digest", "md5")
    refused(db, "clinic", "set", CLINIC, "--country", "XX", says="country 'XX' is not known")
    refused(db, "clinic", "set", CLINIC, "--main-number", "12", says="main number '12' is not a phone number")
    refused(db, "clinic", "set", CLINIC, "--timezone", "Mars/Olympus", says="time zone 'Mars/Olympus' is not known")
    refused(db, "clinic", "set", "nope.example", "--country", "NO", says="there is no clinic nope.example")
    assert "say what to change" in fails(db, "clinic", "set", CLINIC, code=2)


def test_countries_are_opened_and_closed_by_calling_code_or_country(db: str) -> None:
    assert json.loads(ok(db, "clinic", "countries", "list", CLINIC, "--json")) == [
        {"code": 47, "region": "NO", "open": True, "own": True}
    ]
    assert ok(db, "clinic", "countries", "allow", CLINIC, "46", "DK", "+1") == (
        "Clinic clinic.local calls out to: +1, +45, +46, +47.\n"
    )
    assert ok(db, "clinic", "countries", "deny", CLINIC, "no", "1") == "Clinic clinic.local calls out to: +45, +46.\n"
    listed = ok(db, "clinic", "countries", "list", CLINIC)
    assert re.search(r"^\+47\s+NO \(own\)\s+no$", listed, re.M)
    assert re.search(r"^\+46\s+SE\s+yes$", listed, re.M)
    engine = make_engine(db)
    try:
        clinic = load_directory(engine).clinic(CLINIC)
    finally:
        engine.dispose()
    assert clinic is not None and clinic.open_countries == {45, 46}
    refused(db, "clinic", "countries", "allow", CLINIC, "46", "999", says="country '999' is not known")
    refused(db, "clinic", "countries", "allow", CLINIC, "ZZ", says="country 'ZZ' is not known")
    refused(db, "clinic", "countries", "deny", CLINIC, "sweden", says="country 'sweden' is not known")
    refused(db, "clinic", "countries", "allow", "nope.example", "46", says="there is no clinic nope.example")
    fails(db, "clinic", "countries", "allow", CLINIC, code=2)


# -- staff ---------------------------------------------------------------------------------------


def test_a_member_of_staff_gets_a_dial_permission_and_a_number_of_their_own(db: str) -> None:
    assert json.loads(ok(db, "user", "show", "1001", "--json"))["dial"] == "national"
    assert ok(db, "user", "set", "1001", "--dial", "international", "--number", "22334499") == (
        "1001@clinic.local may dial national and open international numbers and calls out as +4722334499.\n"
    )
    shown = ok(db, "user", "show", "1001")
    assert re.search(r"^  dial:\s+international$", shown, re.M) and re.search(r"^  number:\s+\+4722334499$", shown, re.M)
    assert "internal numbers only" in ok(db, "user", "set", "1002", "--dial", "INTERNAL")
    listed = {u["extension"]: (u["dial"], u["public_number"]) for u in json.loads(ok(db, "user", "list", "--json"))}
    assert listed["1001"] == ("international", "+4722334499") and listed["1002"] == ("internal", None)
    ok(db, "user", "set", "1001", "--no-number")
    engine = make_engine(db)
    try:
        staff = load_directory(engine).staff_for(CLINIC, "1001")
    finally:
        engine.dispose()
    assert staff is not None and staff.dial is DialPermission.INTERNATIONAL and staff.public_number is None
    refused(db, "user", "set", "1001", "--dial", "sometimes", says="dial 'sometimes' is not known")
    refused(db, "user", "set", "1001", "--number", "12", says="number '12' is not a phone number")
    refused(db, "user", "set", "1001", "--number", "22334499", "--no-number", says="not both")
    refused(db, "user", "set", "1009", "--dial", "national", says="there is no extension 1009 in clinic.local")
