"""Call forwarding through the real server: always, on busy and on no answer, set from the phone
with the forwarding codes and by the administrator with `sentral user set`.

Real pjsua2 softphones register to the real server on loopback. Each test asserts what people
observe: whose phone rings and whose does not, who the call seems to come from, that a code is
answered (it worked) or refused, and what the call record says of the forward.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.system.peers import Softphone, wait_until
from tests.system.server import SentralServer
from tests.system.test_groups import apply, dial, never_rings, phones, rings

DOMAIN = "clinic.test"
STAFF = ("1001", "1002", "1003", "1004")


@pytest.fixture
def clinic(tmp_path: Path) -> Iterator[SentralServer]:
    """A running server with staff 1001-1004."""
    workdir = tmp_path / "server"
    workdir.mkdir()
    server = SentralServer(f"sqlite:///{workdir / 'sentral.db'}", workdir, extra_args=("--no-answer-timeout", "20"))
    server.cli_batch(
        ("init", "--domain", DOMAIN),
        *(("user", "add", ext, "--name", f"Staff {ext}", "--password", f"secret-{ext}") for ext in STAFF),
    )
    server.start()
    try:
        yield server
    finally:
        server.stop()


def phones_of(
    factory: Callable[..., Softphone], server: SentralServer, *exts: str
) -> dict[str, Softphone]:
    """One softphone per extension: a forwarded call keeps the To of the number dialled, so a
    phone holding several accounts could not tell whose it is."""
    return {ext: phones(factory, server, f"phone{ext}", (ext,)) for ext in exts}


def record_of(server: SentralServer, callee: str, count: int = 1, timeout: float = 5.0) -> dict[str, Any]:
    """The newest of ``count`` records of calls to ``callee`` (feature codes' calls have records too)."""
    rows: list[dict[str, Any]] = []

    def enough() -> bool:
        nonlocal rows
        rows = [row for row in server.cli_json("cdr", "--limit", "0") if row["callee"] == callee]
        return len(rows) >= count

    wait_until(enough, timeout, f"{count} records of calls to {callee}", interval=0.2)
    return rows[-1]


def forwards(server: SentralServer, ext: str) -> dict[str, Any]:
    shown: dict[str, Any] = server.cli_json("user", "show", ext)["forwards"]
    return shown


def code(phone: Softphone, ext: str, dialled: str) -> dict[str, Any]:
    """Dial a forwarding code from ``ext``: it is answered (it worked) and hung up after its prompt;
    the disconnect event, whose code says how the call ended."""
    call = phone.call(ext, dial(dialled))
    phone.wait_call_state(call, "CONFIRMED")
    return phone.wait_call_state(call, "DISCONNECTED", timeout=8)


def talk_and_hang_up(caller: Softphone, out: str, callee: Softphone, incoming: str) -> None:
    callee.answer(incoming)
    caller.wait_call_state(out, "CONFIRMED")
    caller.hangup(out)
    callee.wait_call_state(incoming, "DISCONNECTED")


def test_forwarding_always_set_by_code_and_by_the_cli(
    clinic: SentralServer, softphone_factory: Callable[..., Softphone]
) -> None:
    phone = phones_of(softphone_factory, clinic, "1001", "1002", "1003", "1004")
    desk = phone["1001"]
    # From 1002's phone, with the closing '#' escaped as phones send it.
    code(phone["1002"], "1002", "*21*1003%23")
    assert forwards(clinic, "1002")["always"] == "1003"
    out = desk.call("1001", dial("1002"))
    incoming = rings(phone["1003"], "1003")
    assert "1001" in incoming["remote_uri"]  # the caller is shown, not the forwarding extension
    never_rings(phone["1002"], "1002", within=0.5)
    talk_and_hang_up(desk, out, phone["1003"], incoming["call"])
    row = record_of(clinic, "1002")
    assert row["disposition"] == "answered" and row["callee_extension"] == "1003", row
    assert row["forwarded"] == [{"from": "1002", "kind": "always", "to": "1003"}], row
    people = {person["extension"]: person for person in clinic.cli_json("presence")}
    assert people["1002"]["forwarded_to"] == "1003"
    assert "forwarded to 1003" in clinic.cli("presence").stdout

    # Cleared from the phone: 1002 rings again.
    code(phone["1002"], "1002", "%2321%23")
    assert forwards(clinic, "1002")["always"] is None
    out = desk.call("1001", dial("1002"))
    rings(phone["1002"], "1002")
    desk.hangup(out)
    desk.wait_call_state(out, "DISCONNECTED")

    # Set by the administrator, to a group: its member rings.
    apply(clinic, "group", "add", "lab", "--number", "500", "--member", "1004")
    apply(clinic, "user", "set", "1002", "--forward", "always", "500")
    out = desk.call("1001", dial("1002"))
    incoming = rings(phone["1004"], "1004")
    talk_and_hang_up(desk, out, phone["1004"], incoming["call"])
    row = record_of(clinic, "1002", count=3)
    assert row["callee_extension"] == "1004", row
    assert row["forwarded"] == [{"from": "1002", "kind": "always", "to": "500"}], row

    # A group ringing 1002 as its member rings 1002's phone: forwards are for calls to 1002.
    apply(clinic, "group", "add", "ward", "--number", "600", "--member", "1002")
    out = desk.call("1001", dial("600"))
    incoming = rings(phone["1002"], "1002")
    talk_and_hang_up(desk, out, phone["1002"], incoming["call"])
    row = record_of(clinic, "600")
    assert row["callee_extension"] == "1002" and row["forwarded"] == [], row


def test_forwarding_on_busy_set_by_the_cli_and_by_code(
    clinic: SentralServer, softphone_factory: Callable[..., Softphone]
) -> None:
    phone = phones_of(softphone_factory, clinic, "1001", "1002", "1003", "1004")
    desk = phone["1001"]
    # By the administrator: 1002 answers busy, and the call goes on to 1003.
    apply(clinic, "user", "set", "1002", "--forward", "busy", "1003")
    out = desk.call("1001", dial("1002"))
    phone["1002"].hangup(rings(phone["1002"], "1002")["call"], code=486)
    incoming = rings(phone["1003"], "1003")
    assert not desk.events("call_state", call=out, state="DISCONNECTED")
    talk_and_hang_up(desk, out, phone["1003"], incoming["call"])
    row = record_of(clinic, "1002")
    assert row["callee_extension"] == "1003", row
    assert row["forwarded"] == [{"from": "1002", "kind": "busy", "to": "1003"}], row
    assert [leg["outcome"] for leg in row["legs"][1:]] == ["busy", "answered"], row

    # From the phone, without the closing '#': while 1002 talks, a call to it goes to 1004.
    code(phone["1002"], "1002", "*67*1004")
    assert forwards(clinic, "1002")["busy"] == "1004"
    talking = phone["1002"].call("1002", dial("1003"))
    phone["1003"].answer(rings(phone["1003"], "1003")["call"])
    phone["1002"].wait_call_state(talking, "CONFIRMED")
    out = desk.call("1001", dial("1002"))
    incoming = rings(phone["1004"], "1004")
    never_rings(phone["1002"], "1002", within=0.5)
    talk_and_hang_up(desk, out, phone["1004"], incoming["call"])
    row = record_of(clinic, "1002", count=2)
    assert row["forwarded"] == [{"from": "1002", "kind": "busy", "to": "1004"}], row
    assert [leg["outcome"] for leg in row["legs"][1:]] == ["answered"], row
    phone["1002"].hangup(talking)


def test_forwarding_on_no_answer_set_by_code_and_by_the_cli(
    clinic: SentralServer, softphone_factory: Callable[..., Softphone]
) -> None:
    phone = phones_of(softphone_factory, clinic, "1001", "1002", "1003", "1004")
    desk = phone["1001"]
    # From the phone, with the seconds of ringing: 1002 rings for two seconds, then 1003.
    code(phone["1002"], "1002", "*61*1003*2%23")
    assert (forwards(clinic, "1002")["noanswer"], forwards(clinic, "1002")["after"]) == ("1003", 2)
    out = desk.call("1001", dial("1002"))
    first = rings(phone["1002"], "1002")["call"]
    rang_at = time.monotonic()
    phone["1002"].wait_call_state(first, "DISCONNECTED", timeout=5)
    incoming = rings(phone["1003"], "1003", timeout=3)
    assert 1.5 < time.monotonic() - rang_at < 4.0
    talk_and_hang_up(desk, out, phone["1003"], incoming["call"])
    row = record_of(clinic, "1002")
    assert row["forwarded"] == [{"from": "1002", "kind": "noanswer", "to": "1003"}], row
    assert [leg["outcome"] for leg in row["legs"][1:]] == ["cancelled", "answered"], row

    # By the administrator, to 1004 after 2 s; nobody answers there either, and 1004 forwards
    # on no answer back to 1002, which the call has been to: it rings 1004 until the caller hangs up.
    apply(clinic, "user", "set", "1002", "--forward", "noanswer", "1004", "--after", "2")
    apply(clinic, "user", "set", "1004", "--forward", "noanswer", "1002", "--after", "2")
    out = desk.call("1001", dial("1002"))
    rings(phone["1002"], "1002")
    at_1004 = rings(phone["1004"], "1004", timeout=4)["call"]
    never_rings(phone["1002"], "1002", within=3.0)
    assert not phone["1004"].events("call_state", call=at_1004, state="DISCONNECTED")
    desk.hangup(out)
    phone["1004"].wait_call_state(at_1004, "DISCONNECTED")
    row = record_of(clinic, "1002", count=2)
    assert row["forwarded"] == [{"from": "1002", "kind": "noanswer", "to": "1004"}], row
    assert row["disposition"] == "cancelled", row


def test_a_forwarding_loop_is_refused_and_a_forward_to_the_caller_is_ignored(
    clinic: SentralServer, softphone_factory: Callable[..., Softphone]
) -> None:
    apply(clinic, "user", "set", "1002", "--forward", "always", "1003")
    refused = clinic.cli("user", "set", "1003", "--forward", "always", "1002", check=False)
    assert refused.returncode == 1
    assert refused.stderr == (
        "sentral: forwarding 1003 always to 1002 would make a loop (1003 -> 1002 -> 1003); "
        "clear the forward of 1002 first\n"
    )
    assert forwards(clinic, "1003")["always"] is None
    phone = phones_of(softphone_factory, clinic, "1002", "1003")
    # The same from 1003's phone is refused (403), as is a number that does not exist (404).
    loop = phone["1003"].call("1003", dial("*21*1002%23"))
    assert phone["1003"].wait_call_state(loop, "DISCONNECTED")["code"] == 403
    nowhere = phone["1003"].call("1003", dial("*21*1009%23"))
    assert phone["1003"].wait_call_state(nowhere, "DISCONNECTED")["code"] == 404
    assert forwards(clinic, "1003")["always"] is None
    # 1003 calling 1002, forwarded to 1003 itself: the forward is ignored and 1002 rings.
    out = phone["1003"].call("1003", dial("1002"))
    incoming = rings(phone["1002"], "1002")
    talk_and_hang_up(phone["1003"], out, phone["1002"], incoming["call"])
    row = record_of(clinic, "1002")
    assert row["callee_extension"] == "1002" and row["forwarded"] == [], row
