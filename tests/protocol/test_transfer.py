"""Blind transfer (REFER) and the recall rule, message by message on a fake clock: the transferring
phone's answers and NOTIFYs, who rings for the call and as whom, the recall on reject, on timeout
and for a group, its own failure (overflow, or prompt and hang-up), bad transfers, and the record.
Phones are played by hand as in test_parking; 1004 is a fourth phone, and 500 a ring-all group of
1003 and 1004."""

from __future__ import annotations

from dataclasses import replace
from types import MappingProxyType
from typing import Any

import pytest

from sentral.config.directory import Forwards, GroupEntry, GroupKind, MemberEntry, Strategy
from sentral.pbx.call import (
    TRANSFER_HANGUP,
    Call,
    CallControl,
    Caller,
    CallSettings,
    CallState,
    TransferReport,
)
from sentral.pbx.endpoint import Endpoint
from sentral.pbx.features import standard as standard_features
from sentral.pbx.features.park import PARK_CODE
from sentral.pbx.features.transfer import Transfer
from sentral.pbx.hunting import Hunting
from sentral.pbx.sip.message import Request, Response, make_response, parse_message
from sentral.pbx.sip.transaction import RequestReceived, ServerTransaction
from sentral.pbx.transport import Origin
from sentral.routing.dialplan import DialPlan
from tests.protocol.clinic import DIRECTORY, DOMAIN, LISTEN, PHONES, Clinic, refer
from tests.protocol.test_call import CLINIC, SDP_A, SDP_B, b_request, parse
from tests.protocol.test_presence import FakeTransports, endpoint_for

RECALL = 20.0  # --transfer-recall in these tests
NO_ANSWER = 15.0


def lab(overflow: str | None = None) -> GroupEntry:
    return GroupEntry(
        DOMAIN, "lab", GroupKind.GROUP, "500", None, Strategy.RINGALL, 10.0, 30.0, overflow, False, 300.0,
        (MemberEntry("1003", True), MemberEntry("1004", True)),
    )  # fmt: skip


class Transfers(Clinic):
    """The protocol tests' clinic with the group 500, groups rung by Hunting, and the recall after
    ``RECALL`` seconds."""

    def __init__(self, *, overflow: str | None = None, language: str = "en") -> None:
        super().__init__()
        group = lab(overflow)
        self.directory = replace(
            DIRECTORY,
            groups=MappingProxyType({(DOMAIN, "lab"): group}),
            numbers=MappingProxyType({**DIRECTORY.numbers, (DOMAIN, "500"): group}),
        )
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
            settings=CallSettings(no_answer=NO_ANSWER, transfer_recall=RECALL, language=language),
            media=self.media,
            lines=self.lines,
            groups=self.hunting,
            features=standard_features,
        )

    def notifies(self, extension: str) -> list[Request]:
        return [r for r, _ in self.port.sent("NOTIFY", PHONES[extension])]

    def byes(self, extension: str) -> list[Request]:
        return [r for r, _ in self.port.sent("BYE", PHONES[extension])]

    def feed(self, request: Request, port: int, now: float) -> ServerTransaction:
        [event, *_] = self.layer.receive(request, ("127.0.0.1", port), False, now)
        assert isinstance(event, RequestReceived)
        self.cc.on_request(event.tx, request, now)
        return event.tx

    def from_b(
        self, extension: str, method: str, cseq: int, now: float, *, sdp: bytes = b""
    ) -> ServerTransaction:
        """``extension``'s phone sends ``method`` in its (last) dialog as a callee."""
        request = self.invites(extension)[-1][0]
        response = make_response(request, 200, to_tag=f"tag-{extension}--1")  # as ``answer`` tags it
        return self.feed(b_request(request, response, method, cseq, sdp=sdp), PHONES[extension], now)

    def from_caller(
        self, method: str, cseq: int, now: float, extra: str = "", sdp: bytes = b""
    ) -> ServerTransaction:
        """1001, the caller of the first call, sends ``method`` in its dialog with Sentral."""
        ok = next(r for t, r in self.port.responses if r.status == 200 and r.cseq.method == "INVITE")
        request = parse(
            f"{method} sip:sentral@127.0.0.1:5060 SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP 127.0.0.1:4001;branch=z9hG4bK-{method}-{cseq}\r\nMax-Forwards: 70\r\n"
            f"From: <sip:1001@{DOMAIN}>;tag=from1\r\nTo: <sip:1002@{DOMAIN}>;tag={ok.to_tag}\r\n"
            f"Call-ID: call-1@1001\r\nCSeq: {cseq} {method}\r\nContact: <sip:1001@127.0.0.1:4001>\r\n"
            + extra
            + ("Content-Type: application/sdp\r\n" if sdp else ""),
            sdp,
        )
        return self.feed(request, 4001, now)


def refer_from(c: Transfers, extension: str, target: str, now: float, cseq: int = 2) -> ServerTransaction:
    """``extension``'s phone, answering for Sentral's last INVITE to it, blind-transfers to ``target``."""
    request = c.invites(extension)[-1][0]
    ok = make_response(request, 200, to_tag=f"tag-{extension}--1")
    head = b_request(request, ok, "REFER", cseq).to_bytes().decode().split("\r\n\r\n")[0]
    lines = [line for line in head.split("\r\n") if not line.lower().startswith("content-length")]
    return c.feed(
        parse("\r\n".join(lines) + f"\r\nRefer-To: <sip:{target}@{DOMAIN}>\r\n"), PHONES[extension], now
    )


def transferred(c: Transfers, target: str = "1003", now: float = 1.0) -> Call:
    """1001 calls 1002, who answers and blind-transfers the call to ``target`` at ``now``."""
    call = c.talking()
    assert c.port.statuses(refer(c, f"<sip:{target}@{DOMAIN}>", now)) == [202]
    return call


def sipfrags(c: Transfers, extension: str) -> list[tuple[bytes, str]]:
    return [(n.body, (n.header("subscription-state") or "").split(";")[0]) for n in c.notifies(extension)]


def outcomes(call_or_report: Any) -> list[tuple[str, str]]:
    return [(leg.leg, leg.outcome) for leg in call_or_report.legs]


def test_the_target_rings_as_the_caller_with_referred_by_and_answering_connects_it() -> None:
    c = Transfers()
    call = transferred(c)
    assert sipfrags(c, "1002") == [
        (b"SIP/2.0 100 Trying\r\n", "active"),
        (b"SIP/2.0 200 OK\r\n", "terminated"),
    ]
    assert all(
        n.header("event") == "refer" and n.content_type == "message/sipfrag" for n in c.notifies("1002")
    )
    [(invite, _)] = c.invites("1003")
    assert invite.header("from") is not None and '"1001" <sip:1001@clinic.test>' in str(invite.header("from"))
    assert invite.header("referred-by") == f"<sip:1002@{DOMAIN}>"
    assert "<sip:1003@" in str(invite.header("to")) and c.invites("1001") == []  # nothing reaches 1001
    assert ("music", "a", "on") in c.media.asked and ("offer_locally", "b2", "like:a") in c.media.asked
    # The transferring phone is out of the call at once: not busy, its line ended, not listed.
    assert c.cc.busy == {(DOMAIN, "1001"): 1}
    assert ("1002", call.id, "terminated") in c.lines.seen and ("1003", call.id, "trying") in c.lines.seen
    [live] = c.cc.live()
    assert (live.caller, live.callee) == ("1001", "1003")
    c.tick(1.0 + TRANSFER_HANGUP)
    assert len(c.byes("1002")) == 1 and call.state is CallState.ANSWERED
    c.answer("1003", 8.0)
    assert call.winner is call.b_legs[1] and call.holder is None
    assert c.media.asked[-2:] == [("music", "a", "off"), ("join", "a", "b2")]
    assert c.cc.busy == {(DOMAIN, "1001"): 1, (DOMAIN, "1003"): 1}
    assert ("1003", call.id, "confirmed") in c.lines.seen
    c.from_b("1003", "BYE", 2, 30.0)
    assert len(c.port.sent("BYE", 4001)) == 1
    [report] = c.port.reports
    assert outcomes(report) == [("a", "answered"), ("b1", "transferred"), ("b2", "answered")]
    assert report.transfers == (TransferReport(1.0, "1002", "blind", "1003", "answered"),)
    assert report.callee == "1002" and c.cc.busy == {}


def test_the_caller_transferring_leaves_the_callee_alone_in_the_call_as_its_a_leg() -> None:
    c = Transfers()
    call = c.talking()
    tx = c.from_caller("REFER", 2, 1.0, f"Refer-To: <sip:1003@{DOMAIN}>\r\n")
    assert c.port.statuses(tx) == [202]
    assert call.a.extension == "1002" and call.b_legs[0].extension == "1001"
    [(invite, _)] = c.invites("1003")
    assert '"Bob" <sip:1002@' in str(invite.header("from"))  # the transferee, as the directory names them
    assert invite.header("referred-by") == f"<sip:1001@{DOMAIN}>"
    assert ("music", "b1", "on") in c.media.asked  # the media layer knows the callee's leg as b1
    c.tick(1.0 + TRANSFER_HANGUP)
    assert len(c.port.sent("BYE", 4001)) == 1 and c.byes("1002") == []
    c.answer("1003", 3.0)
    assert call.peer(call.a) is call.b_legs[1] and call.b_legs[1].extension == "1003"
    [live] = c.cc.live()
    assert (live.caller, live.callee) == ("1002", "1003")


def test_a_rejected_transfer_rings_the_transferring_phone_again_shown_as_returned() -> None:
    c = Transfers()
    call = transferred(c)
    c.answer("1003", 3.0, status=486)
    [_, (recall, _)] = c.invites("1002")
    assert '"Returned: 1001" <sip:1001@' in str(recall.header("from"))
    assert recall.header("referred-by") is None
    assert [live.callee for live in c.cc.live()] == ["1002"]
    c.answer("1002", 5.0)
    assert call.winner is call.b_legs[2] and call.winner.extension == "1002" and call.holder is None
    assert c.media.asked[-1] == ("join", "a", "b3")
    c.cc.hang_up_all(9.0)
    [report] = c.port.reports
    assert outcomes(report) == [
        ("a", "answered"),
        ("b1", "transferred"),
        ("b2", "rejected"),
        ("b3", "answered"),
    ]
    assert [t.outcome for t in report.transfers] == ["returned"]


def test_a_transfer_nobody_answers_rings_back_after_the_recall_time_in_the_clinics_language() -> None:
    c = Transfers(language="nb")
    call = transferred(c)
    c.tick(1.0 + RECALL - 0.1)
    assert len(c.invites("1002")) == 1 and c.port.cancels == []
    c.tick(1.0 + RECALL)
    assert len(c.port.cancels) == 1 and call.b_legs[1].state.value == "cancelled"
    [_, (recall, _)] = c.invites("1002")
    assert '"Tilbake: 1001"' in str(recall.header("from"))


def test_an_unanswered_recall_ends_with_a_prompt_and_a_hang_up_and_never_recalls_again() -> None:
    c = Transfers()
    call = transferred(c)
    c.answer("1003", 2.0, status=603)
    c.tick(2.0 + NO_ANSWER)  # the transferring phone's own no-answer time
    assert len(c.invites("1002")) == 2 and len(c.invites("1003")) == 1
    assert ("music", "a", "off") in c.media.asked and c.media.asked[-1] == ("play", "a", "number_unavailable")
    assert call.state is CallState.ANSWERED
    c.tick(2.0 + NO_ANSWER + 3.0)  # the prompt (2 s) and its tail
    assert call.state is CallState.ENDED and len(c.port.sent("BYE", 4001)) == 1
    [report] = c.port.reports
    assert report.cause == "transfer not answered" and report.hangup_by == "system"
    assert [t.outcome for t in report.transfers] == ["failed"]
    assert outcomes(report)[1:] == [("b1", "transferred"), ("b2", "rejected"), ("b3", "cancelled")]


def test_a_transfer_to_a_group_rings_its_members_and_one_answering_takes_the_call() -> None:
    c = Transfers()
    call = transferred(c, "500")
    [(to_carol, _)] = c.invites("1003")
    [(to_dave, _)] = c.invites("1004")
    assert all(i.header("referred-by") == f"<sip:1002@{DOMAIN}>" for i in (to_carol, to_dave))
    assert all('"1001" <sip:1001@' in str(i.header("from")) for i in (to_carol, to_dave))
    c.answer("1004", 4.0)
    assert call.winner is not None and call.winner.extension == "1004"
    assert len(c.port.cancels) == 1  # Carol stops ringing; the transferring phone's leg is not touched
    c.cc.hang_up_all(9.0)
    [report] = c.port.reports
    assert outcomes(report) == [
        ("a", "answered"),
        ("b1", "transferred"),
        ("b2", "cancelled"),
        ("b3", "answered"),
    ]
    assert report.transfers[0].target == "500" and report.transfers[0].outcome == "answered"


def test_a_group_rejecting_recalls_and_an_unanswered_recall_goes_to_the_groups_overflow() -> None:
    c = Transfers(overflow="1004")
    call = transferred(c, "500")
    c.answer("1003", 2.0, status=486)
    assert len(c.invites("1002")) == 1  # Dave still rings
    c.answer("1004", 2.5, status=603)
    assert len(c.invites("1002")) == 2 and len(c.invites("1004")) == 1  # the recall, not the overflow
    c.answer("1002", 3.0, status=486)
    [_, (overflow, _)] = c.invites("1004")
    assert '"1001" <sip:1001@' in str(overflow.header("from"))
    c.answer("1004", 4.0)
    assert call.winner is not None and call.winner.extension == "1004"
    c.cc.hang_up_all(9.0)
    [report] = c.port.reports
    assert [leg.outcome for leg in report.legs] == [
        "answered",
        "transferred",
        "rejected",
        "rejected",
        "rejected",
        "answered",
    ]
    assert report.transfers[0].outcome == "answered"


def test_the_overflow_failing_too_ends_with_the_prompt_not_another_recall() -> None:
    c = Transfers(overflow="1004")
    call = transferred(c, "500")
    c.tick(1.0 + 30.0)  # the group's ring time runs out: its strategy routes to the overflow
    assert len(c.invites("1002")) == 2 and len(c.invites("1004")) == 1
    c.answer("1002", 32.0, status=486)
    c.answer("1004", 33.0, status=486)
    assert len(c.invites("1002")) == 2 and c.media.asked[-1] == ("play", "a", "number_unavailable")
    c.tick(40.0)
    assert call.state is CallState.ENDED and [t.outcome for t in c.port.reports[0].transfers] == ["failed"]


def test_a_number_nobody_has_is_404_in_the_notify_and_the_call_goes_on_and_can_be_resumed() -> None:
    c = Transfers()
    call = c.talking()
    assert c.port.statuses(refer(c, f"<sip:4999@{DOMAIN}>", 1.0)) == [202]
    assert sipfrags(c, "1002") == [(b"SIP/2.0 404 Not Found\r\n", "terminated")]
    assert call.winner is call.b_legs[0] and call.holder is None and c.invites("1003") == []
    # The phone resumes the call it held for the transfer: its re-INVITE reaches the caller.
    before = len(c.port.sent("INVITE", 4001))
    c.from_b("1002", "INVITE", 3, 2.0, sdp=SDP_B)
    assert len(c.port.sent("INVITE", 4001)) == before + 1
    c.cc.hang_up_all(5.0)
    [report] = c.port.reports
    assert report.transfers == (TransferReport(1.0, "1002", "blind", "4999", "failed"),)
    assert outcomes(report) == [("a", "answered"), ("b1", "answered")]


def test_transferring_a_call_to_itself_is_403() -> None:
    c = Transfers()
    call = c.talking()
    assert c.port.statuses(refer(c, f"<sip:1002@{DOMAIN}>", 1.0)) == [403]
    assert c.port.statuses(refer(c, f"<sip:1001@{DOMAIN}>", 1.1, cseq=3)) == [403]
    assert call.winner is not None and c.notifies("1002") == [] and call.transfers == []


def test_a_refer_without_one_refer_to_is_400() -> None:
    c = Transfers()
    call = c.talking()
    assert c.port.statuses(c.from_caller("REFER", 2, 1.0))[-1] == 400
    two = f"Refer-To: <sip:1003@{DOMAIN}>\r\nRefer-To: <sip:1004@{DOMAIN}>\r\n"
    assert c.port.statuses(c.from_caller("REFER", 3, 1.1, two))[-1] == 400
    assert call.winner is not None and c.invites("1003") == []


def test_a_second_refer_while_the_call_is_being_transferred_is_491_and_a_parked_call_403() -> None:
    c = Transfers()
    call = transferred(c)
    tx = c.from_caller("REFER", 2, 2.0, f"Refer-To: <sip:1004@{DOMAIN}>\r\n")
    assert c.port.statuses(tx) == [491] and c.invites("1004") == []
    parked = Transfers()
    call = parked.talking()
    parked.key(call, "b1", PARK_CODE, 1.0)
    assert call.parked
    tx = parked.from_caller("REFER", 2, 2.0, f"Refer-To: <sip:1003@{DOMAIN}>\r\n")
    assert parked.port.statuses(tx) == [403]


def test_a_refer_from_a_phone_of_nobody_on_the_staff_is_403() -> None:
    c = Transfers()
    # A caller the directory does not know as staff (a stand-in for a leg from outside).
    request = parse(
        f"INVITE sip:1002@{DOMAIN} SIP/2.0\r\n"
        "Via: SIP/2.0/UDP 127.0.0.1:4001;branch=z9hG4bK-guest;rport\r\nMax-Forwards: 70\r\n"
        f"From: <sip:1009@{DOMAIN}>;tag=from1\r\nTo: <sip:1002@{DOMAIN}>\r\n"
        "Call-ID: call-1@1001\r\nCSeq: 1 INVITE\r\nContact: <sip:1009@127.0.0.1:4001>\r\n"
        "Content-Type: application/sdp\r\n",
        SDP_A,
    )
    [event, *_] = c.layer.receive(request, ("127.0.0.1", 4001), False, 0.0)
    assert isinstance(event, RequestReceived)
    c.cc.on_invite(
        event.tx, request, Origin("udp", "127.0.0.1", 4001, LISTEN), Caller(CLINIC, "1009", "Guest"), 0.0
    )
    c.answer("1002", 0.5)
    c.ack(event.tx, 0.6)
    tx = c.from_caller("REFER", 2, 1.0, f"Refer-To: <sip:1003@{DOMAIN}>\r\n")
    assert c.port.statuses(tx) == [403] and c.invites("1003") == []


def test_an_attended_transfer_is_not_this_features_and_what_nobody_takes_is_501() -> None:
    c = Transfers()
    c.cc = CallControl(
        c.port, DialPlan(), lambda: c.directory, lambda aor: c.bindings.get(aor, []), media=c.media,
        features=lambda core: [Transfer(core)],
    )  # fmt: skip
    call = c.talking()
    replaces = "Replaces=abc%40h%3Bto-tag%3Dt%3Bfrom-tag%3Df"
    assert c.port.statuses(refer(c, f"<sip:1003@{DOMAIN}?{replaces}>", 1.0)) == [501]
    assert call.winner is not None and c.invites("1003") == []


def test_the_transferee_waits_with_its_session_refreshes_answered_and_may_hang_up() -> None:
    c = Transfers()
    call = transferred(c)
    tx = c.from_caller("INVITE", 2, 2.0, sdp=SDP_A)
    assert c.port.statuses(tx)[-1] == 200 and ("answer_locally", "a", "like:a") in c.media.asked
    c.from_caller("BYE", 3, 3.0)
    assert call.state is CallState.ENDED and len(c.port.cancels) == 1  # 1003 stops ringing
    assert len(c.byes("1002")) == 1  # the transferring phone had not hung up yet
    [report] = c.port.reports
    assert [t.outcome for t in report.transfers] == ["failed"]


def test_without_music_the_transfer_goes_on_in_silence() -> None:
    c = Transfers()
    c.media.music = lambda call, leg, on: False  # type: ignore[method-assign]
    call = transferred(c)
    assert len(c.invites("1003")) == 1
    c.answer("1003", 3.0)
    assert call.winner is not None and call.winner.extension == "1003"


@pytest.mark.parametrize(("to_tag", "status"), [("", 405), (";tag=nosuch", 481)])
def test_a_refer_outside_a_call_is_405_and_one_naming_no_dialog_481(to_tag: str, status: int) -> None:
    endpoint, transports = endpoint_for(lambda: DIRECTORY)
    assert isinstance(endpoint, Endpoint) and isinstance(transports, FakeTransports)
    request = (
        f"REFER sip:1002@{DOMAIN} SIP/2.0\r\n"
        "Via: SIP/2.0/UDP 192.0.2.10:5062;branch=z9hG4bK-outside;rport\r\nMax-Forwards: 70\r\n"
        f"From: <sip:1001@{DOMAIN}>;tag=x\r\nTo: <sip:1002@{DOMAIN}>{to_tag}\r\n"
        f"Call-ID: outside@phone\r\nCSeq: 1 REFER\r\nContact: <sip:1001@192.0.2.10:5062>\r\n"
        f"Refer-To: <sip:1003@{DOMAIN}>\r\nContent-Length: 0\r\n\r\n"
    )
    endpoint.on_message(request.encode(), Origin("udp", "192.0.2.10", 5062, LISTEN))
    response = parse_message(transports.sent[-1][0])
    assert isinstance(response, Response) and response.status == status


def test_the_phone_that_took_a_transfer_may_transfer_it_again_and_the_first_one_is_let_go() -> None:
    c = Transfers()
    call = transferred(c)
    c.answer("1003", 2.0)
    assert c.byes("1002") == []  # 1002 has not hung up yet, and its time is not up
    assert c.port.statuses(refer_from(c, "1003", "1004", 2.5)) == [202]
    assert len(c.byes("1002")) == 1  # let go at once: only one phone can be waited for
    [(invite, _)] = c.invites("1004")
    assert invite.header("referred-by") == f"<sip:1003@{DOMAIN}>" and '"1001"' in str(invite.header("from"))
    c.answer("1004", 3.0)
    c.tick(2.5 + TRANSFER_HANGUP)
    assert len(c.byes("1003")) == 1 and call.winner is not None and call.winner.extension == "1004"
    c.cc.hang_up_all(9.0)
    [report] = c.port.reports
    assert [(t.by, t.target, t.outcome) for t in report.transfers] == [
        ("1002", "1003", "answered"),
        ("1003", "1004", "answered"),
    ]
    assert [leg.outcome for leg in report.legs] == ["answered", "transferred", "transferred", "answered"]


def test_a_transferee_with_direct_media_is_moved_to_the_relay_and_then_hears_music() -> None:
    c = Transfers()
    c.media.direct = {"a", "b1"}
    call = transferred(c)
    # Alice's phone sent its media straight to Bob's: the relay's offer comes first, no music yet.
    [(reinvite, tx)] = [
        (r, t) for r, dest, t in c.port.requests if r.method == "INVITE" and r.to_tag and dest.port == 4001
    ]
    assert b"a=fake:relay:a" in reinvite.body and ("music", "a", "on") not in c.media.asked
    # The target rings meanwhile, offered the relay in Alice's codec.
    assert ("offer_locally", "b2", "like:a") in c.media.asked and len(c.invites("1003")) == 1
    ok = make_response(
        reinvite,
        200,
        headers=[("Contact", "<sip:1001@127.0.0.1:4001>"), ("Content-Type", "application/sdp")],
        body=SDP_A,
    )
    c.cc.on_response(tx, ok, 1.2)
    assert ("music", "a", "on") in c.media.asked
    c.answer("1003", 3.0)
    assert call.winner is call.b_legs[1] and c.media.asked[-2:] == [("music", "a", "off"), ("join", "a", "b2")]


def test_a_transfer_to_someone_forwarding_always_rings_where_the_forward_says() -> None:
    c = Transfers()
    carol = replace(c.directory.staff[(DOMAIN, "1003")], forwards=Forwards(always="1004"))
    c.directory = replace(c.directory, staff=MappingProxyType({**c.directory.staff, (DOMAIN, "1003"): carol}))
    call = transferred(c, "1003")
    assert c.invites("1003") == [] and len(c.invites("1004")) == 1
    assert call.forwarded == (("1003", "always", "1004"),)
    c.answer("1004", 2.0)
    assert call.winner is call.b_legs[-1] and call.b_legs[-1].extension == "1004"
    assert call.transfers[-1].target == "1003" and call.transfers[-1].outcome == "answered"


def test_a_transferee_held_before_the_refer_is_offered_the_relay_again_so_the_target_hears_it() -> None:
    c = Transfers()
    call = c.talking()
    # Bob's phone holds Alice first, as desk phones do before a blind transfer.
    hold = SDP_B.replace(b"o=bob 222 7", b"o=bob 222 8").replace(b"a=sendrecv", b"a=sendonly")
    held = c.from_b("1002", "INVITE", 2, 1.0, sdp=hold)
    [(relayed, relayed_tx)] = [(r, t) for r, t in c.port.sent("INVITE", 4001) if r.to_tag]
    recvonly = SDP_A.replace(b"a=sendrecv", b"a=recvonly")
    c.cc.on_response(
        relayed_tx,
        make_response(
            relayed, 200, headers=[("Contact", "<sip:1001@127.0.0.1:4001>"), ("Content-Type", "application/sdp")],
            body=recvonly,
        ),
        1.1,
    )  # fmt: skip
    assert c.port.statuses(held)[-1] == 200 and call.b_legs[0].holding
    assert c.port.statuses(refer_from(c, "1002", "1003", 2.0, cseq=3)) == [202]
    # Sentral offers Alice's phone the relay, sending and receiving, while Carol rings.
    offers = [r for r, _ in c.port.sent("INVITE", 4001) if r.to_tag and r is not relayed]
    assert [b"a=fake:local:a" in r.body for r in offers] == [True]
    assert ("music", "a", "on") in c.media.asked and len(c.invites("1003")) == 1


def test_a_transferee_not_held_gets_no_reinvite() -> None:
    c = Transfers()
    transferred(c)
    assert [r for r, _ in c.port.sent("INVITE", 4001) if r.to_tag] == []
