"""Who rings: ring groups, functions, roles, the reject rule, queues with acute priority, feature codes.

Real pjsua2 softphones register to the real server on loopback; the groups are made with the CLI
as an administrator would. Each test asserts what the staff and the caller observe: whose phone
rings, who stops ringing, what the caller hears, and what the call record says.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.system.peers import Softphone, wait_until
from tests.system.server import SentralServer

DOMAIN = "clinic.test"
CALLERS = ("1001", "1002", "1003")
MEMBERS = ("2001", "2002", "2003")


@pytest.fixture
def clinic(tmp_path: Path) -> Iterator[SentralServer]:
    """A running server with callers 1001-1003 and staff 2001-2003."""
    workdir = tmp_path / "server"
    workdir.mkdir()
    server = SentralServer(f"sqlite:///{workdir / 'sentral.db'}", workdir, extra_args=("--no-answer-timeout", "20"))
    server.cli_batch(
        ("init", "--domain", DOMAIN),
        *(
            ("user", "add", ext, "--name", f"Staff {ext}", "--password", f"secret-{ext}")
            for ext in (*CALLERS, *MEMBERS)
        ),
    )
    server.start()
    try:
        yield server
    finally:
        server.stop()


def phones(factory: Callable[..., Softphone], server: SentralServer, name: str, exts: tuple[str, ...]) -> Softphone:
    """One softphone process holding an account per extension, all registered."""
    phone = factory(name)
    for ext in exts:
        phone.add_account(ext, ext, f"secret-{ext}", DOMAIN, server.address, display=f"Staff {ext}")
    for ext in exts:
        phone.wait_registered(ext)
    return phone


def apply(server: SentralServer, *args: str) -> None:
    """A CLI change, then the half second the running server may take to pick it up."""
    server.cli(*args)
    time.sleep(0.8)


def records(server: SentralServer, count: int, timeout: float = 5.0) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []

    def enough() -> bool:
        nonlocal rows
        rows = server.cli_json("cdr", "--limit", "0")
        return len(rows) >= count

    wait_until(enough, timeout, f"{count} call records", interval=0.2)
    return rows


def rings(phone: Softphone, ext: str, timeout: float = 5.0) -> dict[str, Any]:
    return phone.wait_incoming(ext, timeout)


def never_rings(phone: Softphone, ext: str, within: float = 1.5) -> None:
    """No new call reaches ``ext`` for ``within`` seconds."""
    before = len(phone.events("incoming_call", account=ext))
    time.sleep(within)
    assert len(phone.events("incoming_call", account=ext)) == before, f"{ext} rang"


def still_ringing(phone: Softphone, call: str, within: float = 1.0) -> None:
    time.sleep(within)
    assert not phone.events("call_state", call=call, state="DISCONNECTED"), f"{call} stopped ringing"


def dial(number: str) -> str:
    return f"sip:{number}@{DOMAIN}"


def test_ringall_one_member_rejects_the_others_keep_ringing_and_one_answers(
    clinic: SentralServer, softphone_factory: Callable[..., Softphone]
) -> None:
    apply(clinic, "group", "add", "lab", "--number", "500", "--strategy", "ringall",
          *[arg for ext in MEMBERS for arg in ("--member", ext)])  # fmt: skip
    staff = phones(softphone_factory, clinic, "staff", MEMBERS)
    desk = phones(softphone_factory, clinic, "desk", ("1001",))
    out = desk.call("1001", dial("500"))
    calls = {ext: rings(staff, ext)["call"] for ext in MEMBERS}
    desk.wait_call_state(out, "EARLY")
    staff.hangup(calls["2001"], code=603)
    staff.wait_call_state(calls["2001"], "DISCONNECTED")
    still_ringing(staff, calls["2002"])
    assert not staff.events("call_state", call=calls["2003"], state="DISCONNECTED")
    assert not desk.events("call_state", call=out, state="DISCONNECTED")
    staff.answer(calls["2003"])
    desk.wait_call_state(out, "CONFIRMED")
    staff.wait_call_state(calls["2002"], "DISCONNECTED")
    desk.hangup(out)
    staff.wait_call_state(calls["2003"], "DISCONNECTED")
    [row] = records(clinic, 1)
    assert row["callee"] == "500" and row["disposition"] == "answered"
    outcomes = {leg["target"].split("@")[0].removeprefix("sip:"): leg["outcome"] for leg in row["legs"][1:]}
    assert outcomes == {"2001": "declined", "2002": "cancelled", "2003": "answered"}, row
    # The record names the number dialled and the member who answered, in the table too.
    assert row["callee_extension"] == "2003"
    [line] = clinic.cli("cdr").stdout.splitlines()[1:]
    assert re.search(r"\s1001 \(Staff 1001\)\s+500 -> 2003\s+answered\s", line), line


def test_linear_the_first_rejects_and_the_second_rings_at_once_then_a_member_times_out(
    clinic: SentralServer, softphone_factory: Callable[..., Softphone]
) -> None:
    apply(clinic, "group", "add", "lab", "--number", "500", "--strategy", "linear", "--member-timeout", "2",
          *[arg for ext in MEMBERS for arg in ("--member", ext)])  # fmt: skip
    staff = phones(softphone_factory, clinic, "staff", MEMBERS)
    desk = phones(softphone_factory, clinic, "desk", ("1001",))
    out = desk.call("1001", dial("500"))
    first = rings(staff, "2001")["call"]
    assert not staff.events("incoming_call", account="2002")
    rejected_at = time.monotonic()
    staff.hangup(first, code=486)
    second = rings(staff, "2002", timeout=1.5)["call"]
    assert time.monotonic() - rejected_at < 1.0  # at once, not after the member timeout
    # 2002 lets it ring: after the member timeout it stops and 2003 rings.
    staff.wait_call_state(second, "DISCONNECTED", timeout=4)
    third = rings(staff, "2003", timeout=2)["call"]
    staff.answer(third)
    desk.wait_call_state(out, "CONFIRMED")
    desk.hangup(out)
    [row] = records(clinic, 1)
    assert [leg["outcome"] for leg in row["legs"][1:]] == ["busy", "cancelled", "answered"], row


def test_everyone_rejecting_sends_the_call_to_the_overflow(
    clinic: SentralServer, softphone_factory: Callable[..., Softphone]
) -> None:
    apply(clinic, "group", "add", "lab", "--number", "500", "--strategy", "ringall", "--overflow", "1003",
          *[arg for ext in MEMBERS for arg in ("--member", ext)])  # fmt: skip
    staff = phones(softphone_factory, clinic, "staff", (*MEMBERS, "1003"))
    desk = phones(softphone_factory, clinic, "desk", ("1001",))
    out = desk.call("1001", dial("500"))
    for ext in MEMBERS:
        staff.hangup(rings(staff, ext)["call"], code=603)
    overflow = rings(staff, "1003")["call"]
    staff.answer(overflow)
    desk.wait_call_state(out, "CONFIRMED")
    desk.hangup(out)
    [row] = records(clinic, 1)
    assert row["disposition"] == "answered"
    assert [leg["outcome"] for leg in row["legs"][1:]] == ["declined", "declined", "declined", "answered"], row


def test_everyone_rejecting_without_an_overflow_gives_the_caller_busy(
    clinic: SentralServer, softphone_factory: Callable[..., Softphone]
) -> None:
    apply(clinic, "group", "add", "lab", "--number", "500", "--member", "2001", "--member", "2002")
    staff = phones(softphone_factory, clinic, "staff", ("2001", "2002"))
    desk = phones(softphone_factory, clinic, "desk", ("1001",))
    out = desk.call("1001", dial("500"))
    for ext in ("2001", "2002"):
        staff.hangup(rings(staff, ext)["call"], code=486)
    assert desk.wait_call_state(out, "DISCONNECTED")["code"] == 486


def test_a_logged_out_member_never_rings_until_logged_in_again(
    clinic: SentralServer, softphone_factory: Callable[..., Softphone]
) -> None:
    apply(clinic, "group", "add", "lab", "--number", "500",
          *[arg for ext in MEMBERS for arg in ("--member", ext)])  # fmt: skip
    apply(clinic, "logout", "2002", "lab")
    staff = phones(softphone_factory, clinic, "staff", MEMBERS)
    desk = phones(softphone_factory, clinic, "desk", ("1001",))
    out = desk.call("1001", dial("500"))
    rings(staff, "2001")
    rings(staff, "2003")
    never_rings(staff, "2002")
    desk.hangup(out)
    desk.wait_call_state(out, "DISCONNECTED")
    apply(clinic, "login", "2002", "lab")
    desk.call("1001", dial("500"))
    rings(staff, "2002")


def test_a_direct_call_rejected_on_one_of_two_phones_hangs_up_on_the_caller(
    clinic: SentralServer, softphone_factory: Callable[..., Softphone]
) -> None:
    desk_phone = phones(softphone_factory, clinic, "desk2001", ("2001",))
    mobile = phones(softphone_factory, clinic, "mobile2001", ("2001",))
    caller = phones(softphone_factory, clinic, "caller", ("1001",))
    out = caller.call("1001", dial("2001"))
    on_desk = rings(desk_phone, "2001")["call"]
    on_mobile = rings(mobile, "2001")["call"]
    desk_phone.hangup(on_desk, code=603)
    assert caller.wait_call_state(out, "DISCONNECTED")["code"] == 603
    mobile.wait_call_state(on_mobile, "DISCONNECTED")


def test_callers_wait_in_the_queue_and_an_acute_call_is_answered_first(
    clinic: SentralServer, softphone_factory: Callable[..., Softphone]
) -> None:
    apply(clinic, "function", "add", "reception", "--number", "600", "--acute-number", "699",
          "--member", "2001")  # fmt: skip
    apply(clinic, "login", "2001", "reception")
    reception = phones(softphone_factory, clinic, "reception", ("2001",))
    callers = phones(softphone_factory, clinic, "callers", (*CALLERS, "2002"))
    first = callers.call("1001", dial("600"))
    answered = rings(reception, "2001")["call"]
    reception.answer(answered)
    callers.wait_call_state(first, "CONFIRMED")
    # The presence list shows reception busy, and logged in to its function.
    def reception_busy() -> bool:
        rows = {row["extension"]: row for row in clinic.cli_json("presence")}
        return rows["2001"]["line"] == "busy"

    wait_until(reception_busy, 5.0, "2001 shown busy", interval=0.2)
    [row] = [r for r in clinic.cli_json("presence") if r["extension"] == "2001"]
    assert row["functions"] == ["reception"] and row["phone_on"] and row["registered"], row
    # Two normal calls, then an acute one: all wait, hearing ringback, while reception is busy.
    normal = [callers.call(ext, dial("600")) for ext in ("1002", "1003")]
    time.sleep(0.3)
    acute = callers.call("2002", dial("699"))
    for waiting in (*normal, acute):
        callers.wait_call_state(waiting, "EARLY")
    never_rings(reception, "2001", within=1.0)
    # Reception finishes the first call: the acute caller, though last in, rings first and red.
    reception.hangup(answered)
    incoming = rings(reception, "2001")
    assert "2002" in incoming["remote_uri"]
    assert incoming["headers"].get("priority") == "emergency"
    assert "urn:alert:priority:high" in incoming["headers"].get("alert-info", "")
    reception.answer(incoming["call"])
    callers.wait_call_state(acute, "CONFIRMED")
    for waiting in normal:
        assert not callers.events("call_state", call=waiting, state="CONFIRMED")
    reception.hangup(incoming["call"])
    # Then the normal callers in the order they came.
    following = rings(reception, "2001")
    assert "1002" in following["remote_uri"]


def test_calling_a_role_rings_everyone_holding_it(
    clinic: SentralServer, softphone_factory: Callable[..., Softphone]
) -> None:
    clinic.cli("user", "roles", "2001", "--add", "doctor")
    clinic.cli("user", "roles", "2003", "--add", "doctor")
    apply(clinic, "role", "set", "doctor", "--number", "700")
    members = clinic.cli_json("role", "members", "doctor")
    assert [m["extension"] for m in members] == ["2001", "2003"]
    staff = phones(softphone_factory, clinic, "staff", MEMBERS)
    desk = phones(softphone_factory, clinic, "desk", ("1001",))
    out = desk.call("1001", dial("700"))
    first = rings(staff, "2001")["call"]
    rings(staff, "2003")
    never_rings(staff, "2002", within=0.5)
    staff.hangup(first, code=603)  # one doctor declines: the other still rings
    still_ringing(desk, out, within=0.5)
    desk.hangup(out)
    out = desk.call("1001", dial("role-doctor"))
    rings(staff, "2001")
    rings(staff, "2003")


def test_a_feature_code_logs_the_caller_in_to_their_functions(
    clinic: SentralServer, softphone_factory: Callable[..., Softphone]
) -> None:
    apply(clinic, "function", "add", "reception", "--number", "600", "--member", "2001")
    staff = phones(softphone_factory, clinic, "staff", ("2001",))
    code = staff.call("2001", dial("*45"))
    staff.wait_call_state(code, "CONFIRMED")  # answered: it worked
    staff.wait_call_state(code, "DISCONNECTED", timeout=5)
    shown = clinic.cli_json("function", "show", "reception")
    assert [m["logged_in"] for m in shown["members"]] == [True], shown
    desk = phones(softphone_factory, clinic, "desk", ("1001",))
    desk.call("1001", dial("600"))
    rings(staff, "2001")


def test_a_member_calling_their_own_group_rings_the_others_and_none_of_their_own_phones(
    clinic: SentralServer, softphone_factory: Callable[..., Softphone]
) -> None:
    apply(clinic, "group", "add", "lab", "--number", "500", "--strategy", "ringall",
          "--member", "2001", "--member", "2002")  # fmt: skip
    apply(clinic, "group", "add", "solo", "--number", "600", "--member", "2001")
    desk = phones(softphone_factory, clinic, "desk", ("2001",))
    mobile = phones(softphone_factory, clinic, "mobile", ("2001",))
    colleague = phones(softphone_factory, clinic, "colleague", ("2002",))
    out = desk.call("2001", dial("500"))
    ringing = rings(colleague, "2002")["call"]
    never_rings(mobile, "2001")
    assert not desk.events("incoming_call", account="2001")
    colleague.hangup(ringing, code=486)
    assert desk.wait_call_state(out, "DISCONNECTED")["code"] == 486
    # A group of the caller alone: what a group with nobody available answers.
    alone = desk.call("2001", dial("600"))
    assert desk.wait_call_state(alone, "DISCONNECTED")["code"] == 480
    never_rings(mobile, "2001", within=0.5)
    rows = records(clinic, 2)
    assert [row["hangup_reason"] for row in rows] == ["lab: rejected by all", "solo: nobody available"], rows

