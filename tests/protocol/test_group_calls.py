"""Calls to ring groups and functions through CallControl and Hunting, message by message.

The phones are played by hand as in test_call: the controller's INVITEs to members are answered
with the statuses a phone would send, the clock is moved by calling ``on_timer``, and the tests
assert what each phone and the caller receive.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType

import pytest

from sentral.config.directory import (
    Directory,
    GroupEntry,
    GroupKind,
    MemberEntry,
    RoleEntry,
    StaffEntry,
    Strategy,
)
from sentral.config.store import BindingRow
from sentral.pbx.call import CallControl, Caller, CallState
from sentral.pbx.features import standard as standard_features
from sentral.pbx.hunting import Hunting
from sentral.pbx.presence import Direction as Party
from sentral.pbx.presence import Phase
from sentral.pbx.sip.dialog_info import DialogIds
from sentral.pbx.sip.message import Request, Response, make_response
from sentral.pbx.sip.transaction import (
    ClientTransaction,
    RequestReceived,
    ServerTransaction,
    TransactionLayer,
    new_branch,
)
from sentral.routing.dialplan import DialPlan, Feature, FeatureCode
from tests.protocol.test_call import ALICE, CALLER, CLINIC, SDP_A, SDP_B, FakePort, parse

DOMAIN = "clinic.test"
MEMBERS = ("2001", "2002", "2003")
PORTS = {"2001": 6001, "2002": 6002, "2003": 6003, "1002": 6100}


def staff(extension: str, *, roles: tuple[str, ...] = (), phone_on: bool = True) -> StaffEntry:
    return StaffEntry(DOMAIN, extension, f"Staff {extension}", roles, "", "", phone_on)


def group(
    strategy: Strategy = Strategy.RINGALL,
    *,
    members: tuple[str, ...] = MEMBERS,
    logged_out: tuple[str, ...] = (),
    overflow: str | None = None,
    max_wait: float = 300.0,
) -> GroupEntry:
    return GroupEntry(
        domain=DOMAIN,
        name="reception",
        kind=GroupKind.FUNCTION,
        number="500",
        acute_number="599",
        strategy=strategy,
        member_timeout=10.0,
        ring_timeout=60.0,
        overflow=overflow,
        ring_busy=False,
        max_wait=max_wait,
        members=tuple(MemberEntry(e, e not in logged_out) for e in members),
    )


def binding(extension: str) -> BindingRow:
    port = PORTS[extension]
    return BindingRow(
        DOMAIN, extension, f"k{port}", f"sip:{extension}@127.0.0.1:{port}", 9e9, "reg", 1, "udp", "127.0.0.1",
        port, "udp:127.0.0.1:5060", 0.0,
    )  # fmt: skip


@dataclass
class LineLog:
    """A line observer that keeps what it was told."""

    seen: list[tuple[str, str, str, bool]] = field(default_factory=list)

    def line(
        self,
        domain: str,
        extension: str,
        call_key: str,
        phase: Phase,
        direction: Party,
        acute: bool,
        now: float,
        dialog: DialogIds | None = None,
    ) -> None:
        self.seen.append((extension, phase.value, direction.value, acute))


class Clinic:
    """A controller with Hunting, members 2001-2003 registered, and a hand for every phone."""

    def __init__(self, reception: GroupEntry, *, doctors: tuple[str, ...] = ()) -> None:
        people = {
            (DOMAIN, e): staff(e, roles=("doctor",) if e in doctors else ()) for e in (*MEMBERS, "1002")
        }
        people[(DOMAIN, "1001")] = staff("1001")
        self.directory = Directory(
            1,
            MappingProxyType({DOMAIN: CLINIC}),
            MappingProxyType(people),
            MappingProxyType({(DOMAIN, "reception"): reception}),
            MappingProxyType({(DOMAIN, "doctor"): RoleEntry(DOMAIN, "doctor", "700")}),
            MappingProxyType(
                {
                    (DOMAIN, "500"): reception,
                    (DOMAIN, "599"): reception,
                    (DOMAIN, "700"): RoleEntry(DOMAIN, "doctor", "700"),
                }
            ),
        )
        self.bindings = {(DOMAIN, e): [binding(e)] for e in PORTS}
        self.port = FakePort()
        self.layer = TransactionLayer()
        self.lines = LineLog()
        self.hunting = Hunting(
            lambda: self.directory,
            lambda aor: self.bindings.get(aor, []),
            lambda d, e: (d, e) in self.cc.busy,
        )
        self.cc = CallControl(
            self.port,
            DialPlan(),
            lambda: self.directory,
            lambda aor: self.bindings.get(aor, []),
            groups=self.hunting,
            lines=self.lines,
            features=standard_features,
        )
        self.calls = 0

    def dial(
        self, number: str, now: float = 0.0, *, headers: str = "", caller: Caller = CALLER
    ) -> ServerTransaction:
        self.calls += 1
        ext = caller.extension
        request = parse(
            f"INVITE sip:{number}@clinic.test SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP 127.0.0.1:4001;branch={new_branch()};rport\r\nMax-Forwards: 70\r\n"
            f'From: "Alice" <sip:{ext}@clinic.test>;tag=a{self.calls}\r\nTo: <sip:{number}@clinic.test>\r\n'
            f"Call-ID: call-{self.calls}@phone\r\nCSeq: 1 INVITE\r\nContact: <sip:{ext}@127.0.0.1:4001>\r\n"
            f"{headers}Content-Type: application/sdp\r\n",
            SDP_A,
        )
        [event, *_] = self.layer.receive(request, (ALICE.host, ALICE.port), False, now)
        assert isinstance(event, RequestReceived)
        tx = event.tx
        self.cc.on_invite(tx, request, ALICE, caller, now, acute="Priority: emergency" in headers)
        return tx

    def invites(self, extension: str) -> list[tuple[Request, ClientTransaction]]:
        return self.port.sent("INVITE", PORTS[extension])

    def cancelled(self, extension: str) -> bool:
        return any(tx in self.port.cancels for _, tx in self.invites(extension))

    def reply(self, extension: str, status: int, now: float, *, index: int = -1) -> None:
        request, tx = self.invites(extension)[index]
        sdp = SDP_B if status == 200 else b""
        response = _answer(request, status, extension, sdp)
        self.cc.on_response(tx, response, now)

    def statuses(self, tx: ServerTransaction) -> list[int]:
        return self.port.statuses(tx)

    def tick(self, now: float) -> None:
        self.cc.on_timer(now)


def _answer(request: Request, status: int, extension: str, sdp: bytes) -> Response:
    headers = [("Contact", f"<sip:{extension}@127.0.0.1:{PORTS[extension]}>")]
    if sdp:
        headers.append(("Content-Type", "application/sdp"))
    return make_response(request, status, to_tag=f"t{extension}", headers=headers, body=sdp)


def test_ringall_a_reject_leaves_the_others_ringing_and_the_first_answer_wins() -> None:
    c = Clinic(group(Strategy.RINGALL))
    a = c.dial("500")
    assert all(len(c.invites(e)) == 1 for e in MEMBERS)
    c.reply("2001", 603, 1.0)
    assert not c.cancelled("2002") and not c.cancelled("2003")
    assert c.statuses(a)[-1] == 100  # the caller still waits
    c.reply("2002", 180, 1.5)
    c.reply("2003", 200, 2.0)
    assert c.statuses(a)[-1] == 200
    assert c.cancelled("2002")
    assert c.cc.busy == {(DOMAIN, "1001"): 1, (DOMAIN, "2003"): 1}


def test_linear_a_reject_rings_the_next_member_at_once() -> None:
    c = Clinic(group(Strategy.LINEAR))
    c.dial("500")
    assert [len(c.invites(e)) for e in MEMBERS] == [1, 0, 0]
    c.reply("2001", 486, 1.0)
    assert [len(c.invites(e)) for e in MEMBERS] == [1, 1, 0]


def test_linear_a_member_who_does_not_answer_in_time_is_cancelled_and_the_next_rings() -> None:
    c = Clinic(group(Strategy.LINEAR))
    c.dial("500")
    c.reply("2001", 180, 0.5)
    c.tick(9.9)
    assert len(c.invites("2002")) == 0
    c.tick(10.0)
    assert c.cancelled("2001") and len(c.invites("2002")) == 1


def test_everyone_rejecting_applies_the_overflow_to_another_extension() -> None:
    c = Clinic(group(Strategy.LINEAR, overflow="1002"))
    a = c.dial("500")
    for member in MEMBERS:
        c.reply(member, 603, 1.0)
    [(request, _)] = c.invites("1002")
    assert request.uri_text.startswith("sip:1002@")
    assert c.statuses(a)[-1] == 100  # still being tried
    c.reply("1002", 200, 2.0)
    assert c.statuses(a)[-1] == 200


def test_everyone_rejecting_without_an_overflow_is_486_and_the_record_says_so() -> None:
    c = Clinic(group(Strategy.RINGALL))
    a = c.dial("500")
    for member in MEMBERS:
        c.reply(member, 486, 1.0)
    assert c.statuses(a)[-1] == 486
    [report] = c.port.reports
    assert report.cause == "reception: rejected by all"


def test_nobody_answering_ends_in_480_after_the_ring_timeout() -> None:
    c = Clinic(group(Strategy.RINGALL))
    a = c.dial("500")
    c.tick(59.0)
    assert c.statuses(a)[-1] == 100
    c.tick(60.0)
    assert c.statuses(a)[-1] == 480
    assert all(c.cancelled(e) for e in MEMBERS)


def test_a_logged_out_member_never_rings() -> None:
    c = Clinic(group(Strategy.RINGALL, logged_out=("2002",)))
    c.dial("500")
    assert [len(c.invites(e)) for e in MEMBERS] == [1, 0, 1]


def test_nobody_logged_in_goes_straight_to_the_overflow() -> None:
    c = Clinic(group(Strategy.RINGALL, logged_out=MEMBERS))
    a = c.dial("500")
    assert c.statuses(a)[-1] == 480
    assert not any(c.invites(e) for e in MEMBERS)


def test_callers_wait_while_the_only_member_is_busy_and_an_acute_call_goes_first() -> None:
    c = Clinic(group(Strategy.RINGALL, members=("2001",)))
    first = c.dial("500")
    c.reply("2001", 200, 0.5)
    assert c.statuses(first)[-1] == 200
    normal1 = c.dial("500", 1.0)
    normal2 = c.dial("500", 2.0)
    acute = c.dial("599", 3.0)
    assert len(c.invites("2001")) == 1  # nobody else rings a busy member
    for waiting in (normal1, normal2, acute):
        assert c.statuses(waiting)[-1] == 180  # ringback while waiting
    # The member hangs up the first call: the acute one, though it came last, rings next.
    first_request, _ = c.invites("2001")[0]
    c.cc.on_request(*_bye_from_member(c, first_request), 10.0)
    assert len(c.invites("2001")) == 2
    second_invite, _ = c.invites("2001")[1]
    assert second_invite.header("priority") == "emergency"
    assert second_invite.header("alert-info") == "<urn:alert:priority:high>"
    assert ("2001", "early", "recipient", True) not in c.lines.seen  # not ringing yet, only invited
    c.reply("2001", 180, 10.5, index=1)
    assert ("2001", "early", "recipient", True) in c.lines.seen


def test_a_waiting_caller_gets_the_overflow_after_max_wait() -> None:
    c = Clinic(group(Strategy.RINGALL, members=("2001",), max_wait=30.0, overflow="busy"))
    c.dial("500")
    c.reply("2001", 200, 0.5)
    waiting = c.dial("500", 1.0)
    c.tick(30.9)
    assert c.statuses(waiting)[-1] == 180
    c.tick(31.0)
    assert c.statuses(waiting)[-1] == 486


def test_a_direct_call_to_a_logged_off_phone_is_480() -> None:
    c = Clinic(group())
    people = dict(c.directory.staff)
    people[(DOMAIN, "1002")] = staff("1002", phone_on=False)
    c.directory = Directory(1, c.directory.clinics, MappingProxyType(people), c.directory.groups)
    a = c.dial("1002")
    assert c.statuses(a)[-1] == 480 and not c.invites("1002")


def test_a_role_number_rings_everyone_holding_the_role_and_one_reject_leaves_the_rest() -> None:
    c = Clinic(group(), doctors=("2001", "2003"))
    a = c.dial("700")
    assert [len(c.invites(e)) for e in MEMBERS] == [1, 0, 1]
    c.reply("2001", 603, 1.0)
    assert c.statuses(a)[-1] == 100 and not c.cancelled("2003")
    c.reply("2003", 200, 2.0)
    assert c.statuses(a)[-1] == 200


def test_the_line_observer_follows_caller_and_member() -> None:
    c = Clinic(group(Strategy.RINGALL, members=("2001",)))
    c.dial("500")
    c.reply("2001", 180, 0.5)
    c.reply("2001", 200, 1.0)
    assert c.lines.seen[:4] == [
        ("1001", "trying", "initiator", False),
        ("2001", "trying", "recipient", False),
        ("1001", "early", "initiator", False),
        ("2001", "early", "recipient", False),
    ]
    assert ("2001", "confirmed", "recipient", False) in c.lines.seen
    assert ("1001", "confirmed", "initiator", False) in c.lines.seen


def test_a_feature_code_is_carried_out_then_answered_and_hung_up() -> None:
    c = Clinic(group())
    a = c.dial("*45")
    [(call, feature)] = c.port.features
    assert feature == Feature(FeatureCode.TOGGLE_FUNCTIONS)
    c.cc.feature_done(call.id, "logged in to reception", 0.2)
    ok = c.port.responses[-1][1]
    assert ok.status == 200 and b"a=inactive" in ok.body
    assert c.cc.next_deadline() is not None
    c.tick(1.3)
    assert call.state is CallState.ENDED
    [report] = c.port.reports
    assert report.callee_name == "logged in to reception"
    assert c.statuses(a)[0] == 100


def member(extension: str) -> Caller:
    """A member of staff of the clinic as the caller."""
    return Caller(CLINIC, extension, f"Staff {extension}")


@pytest.mark.parametrize("strategy", [Strategy.RINGALL, Strategy.LINEAR])
def test_calling_your_own_group_never_rings_your_own_phone(strategy: Strategy) -> None:
    c = Clinic(group(strategy))
    a = c.dial("500", caller=member("2002"))
    for other in ("2001", "2003"):
        if not c.invites(other):
            c.tick(10.0)  # a hunt: the next member's turn
        assert len(c.invites(other)) == 1
        c.reply(other, 486, 10.0)
    assert c.invites("2002") == []
    assert c.statuses(a)[-1] == 486


@pytest.mark.parametrize("overflow", [None, "1002"])
def test_a_group_of_only_the_caller_answers_as_a_group_with_nobody_available(overflow: str | None) -> None:
    nobody = Clinic(group(members=("2001",), logged_out=("2001",), overflow=overflow))
    n = nobody.dial("500")
    only_me = Clinic(group(members=("2001",), overflow=overflow))
    m = only_me.dial("500", caller=member("2001"))
    assert only_me.invites("2001") == []
    assert only_me.statuses(m) == nobody.statuses(n)
    assert len(only_me.invites("1002")) == len(nobody.invites("1002")) == (1 if overflow else 0)
    if overflow is None:
        assert [r.cause for r in only_me.port.reports] == ["reception: nobody available"]


def test_a_member_calling_their_own_queue_waits_for_a_colleague_instead_of_ringing_themselves() -> None:
    c = Clinic(group(Strategy.RINGALL, members=("2001", "2002")))
    c.dial("500")
    c.reply("2001", 200, 0.5)  # 2001 is in a call now; 2002 was cancelled
    assert c.cancelled("2002")
    mine = c.dial("500", 1.0, caller=member("2002"))
    assert len(c.invites("2002")) == 1  # only the first call's
    assert c.statuses(mine)[-1] == 180  # waiting, with ringback
    first_request, _ = c.invites("2001")[0]
    c.cc.on_request(*_bye_from_member(c, first_request), 10.0)
    assert len(c.invites("2001")) == 2 and len(c.invites("2002")) == 1


def test_calling_a_role_you_hold_rings_the_other_holders_only() -> None:
    c = Clinic(group(), doctors=("2001", "2003"))
    c.dial("700", caller=member("2001"))
    assert [len(c.invites(e)) for e in MEMBERS] == [0, 0, 1]
    alone = Clinic(group(), doctors=("2001",))
    a = alone.dial("700", caller=member("2001"))
    assert alone.invites("2001") == [] and alone.statuses(a)[-1] == 480


def _bye_from_member(c: Clinic, invite: Request) -> tuple[ServerTransaction, Request]:
    """The member's BYE on the answered leg."""
    our_tag = invite.from_tag
    bye = parse(
        f"BYE sip:sentral@127.0.0.1:5060 SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:6001;branch={new_branch()};rport\r\nMax-Forwards: 70\r\n"
        f"From: <sip:2001@clinic.test>;tag=t2001\r\nTo: <sip:1001@clinic.test>;tag={our_tag}\r\n"
        f"Call-ID: {invite.call_id}\r\nCSeq: 1 BYE\r\n"
    )
    [event, *_] = c.layer.receive(bye, ("127.0.0.1", 6001), False, 10.0)
    assert isinstance(event, RequestReceived)
    return event.tx, bye
