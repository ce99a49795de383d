"""Attended and semi-attended transfer (REFER with Replaces) and taking over a call (INVITE with
Replaces), message by message on a fake clock: Alice (1001) and Bob (1002) talk, Bob holds Alice,
calls Carol (1003), and transfers (phones played by hand as in test_parking)."""

from __future__ import annotations

import asyncio
import dataclasses
from itertools import count
from pathlib import Path
from types import MappingProxyType

import pytest

from sentral.media.anchor import MediaAnchor
from sentral.media.latch import PortPool
from sentral.pbx.anchoring import AnchoredMedia
from sentral.pbx.call import (
    TRANSFER_HANGUP,
    Call,
    CallControl,
    CallSettings,
    CallState,
    Leg,
    LegState,
    OriginPerLeg,
)
from sentral.pbx.features import standard
from sentral.pbx.features.attended import AttendedTransfer
from sentral.pbx.features.transfer import RETURNED, Transfer
from sentral.pbx.sip.message import Request, Response, make_response
from sentral.pbx.sip.sdp import Direction, parse_sdp
from sentral.pbx.sip.transaction import RequestReceived, ServerTransaction
from sentral.routing.dialplan import DialPlan
from tests.protocol.clinic import DIRECTORY, DOMAIN, PHONES, Clinic
from tests.protocol.test_anchoring import HOST, _library
from tests.protocol.test_call import SDP_B, parse
from tests.protocol.test_features import clinic_with

# In-dialog requests of these tests take CSeq numbers above those of the calls' own.
_CSEQ = count(20)
HOLD = SDP_B.replace(b"a=sendrecv", b"a=sendonly")


def in_dialog(
    c: Clinic, leg: Leg, method: str, cseq: int, now: float, headers: str = "", sdp: bytes = b""
) -> ServerTransaction | None:
    """``leg``'s phone sends ``method`` in its dialog with Sentral."""
    assert leg.dialog is not None
    port = PHONES[leg.extension]
    request = parse(
        f"{method} sip:sentral@127.0.0.1:5060 SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bK-{method}-{leg.call_id}-{cseq}-{now};rport\r\n"
        f"Max-Forwards: 70\r\nFrom: <sip:{leg.extension}@{DOMAIN}>;tag={leg.dialog.remote_tag}\r\n"
        f"To: <sip:x@{DOMAIN}>;tag={leg.local_tag}\r\nCall-ID: {leg.call_id}\r\nCSeq: {cseq} {method}\r\n"
        f"Contact: <sip:{leg.extension}@127.0.0.1:{port}>\r\n"
        + headers
        + ("Content-Type: application/sdp\r\n" if sdp else ""),
        sdp,
    )
    if method == "ACK":
        c.cc.on_ack(request, now)
        return None
    [event, *_] = c.layer.receive(request, ("127.0.0.1", port), False, now)
    assert isinstance(event, RequestReceived)
    c.cc.on_request(event.tx, request, now)
    return event.tx


def replaces_of(leg: Leg, *, swapped: bool = False) -> str:
    """The Replaces a phone puts in a Refer-To for its dialog ``leg`` with Sentral, escaped; the
    tags the right way round (to-tag Sentral's) or ``swapped``."""
    assert leg.dialog is not None
    ours, theirs = leg.local_tag, leg.dialog.remote_tag
    if swapped:
        ours, theirs = theirs, ours
    return (
        f"{leg.call_id};to-tag={ours};from-tag={theirs}".replace("@", "%40")
        .replace(";", "%3B")
        .replace("=", "%3D")
    )


def transfer(c: Clinic, on: Leg, naming: Leg, now: float, *, swapped: bool = False) -> ServerTransaction:
    """Bob's phone sends, on its leg ``on``, a REFER whose Refer-To names its dialog ``naming``."""
    refer_to = f"<sip:1003@{DOMAIN}?Replaces={replaces_of(naming, swapped=swapped)}>"
    return refer(c, on, refer_to, now)


def refer(c: Clinic, on: Leg, refer_to: str, now: float) -> ServerTransaction:
    tx = in_dialog(c, on, "REFER", next(_CSEQ), now, f"Refer-To: {refer_to}\r\n")
    assert tx is not None
    return tx


def who(target: str) -> str:
    """The extension a record's leg target names ("1001@127.0.0.1:4001", "sip:1002@...")."""
    return target.removeprefix("sip:").split("@")[0]


def bob_leg(call: Call) -> Leg:
    return next(leg for leg in call.legs if leg.extension == "1002")


def answer_last(c: Clinic, extension: str, now: float, status: int = 200) -> Response:
    _, response = c.answer(extension, now, status)
    return response


def ok_with_sdp(request: Request, extension: str, sdp: bytes = SDP_B) -> Response:
    """``extension``'s phone accepts a re-INVITE with ``sdp``."""
    contact = f"<sip:{extension}@127.0.0.1:{PHONES[extension]}>"
    return make_response(
        request, 200, headers=[("Contact", contact), ("Content-Type", "application/sdp")], body=sdp
    )


def hold(c: Clinic, call: Call, now: float) -> None:
    """Bob puts the other phone of ``call`` on hold: re-INVITE across, its 200 back, Bob's ACK."""
    bob = bob_leg(call)
    other = call.peer(bob)
    assert other is not None
    in_dialog(c, bob, "INVITE", 10, now, sdp=HOLD)
    reinvite, tx = c.invites(other.extension)[-1]
    ok = ok_with_sdp(reinvite, other.extension, SDP_B.replace(b"a=sendrecv", b"a=recvonly"))
    c.cc.on_response(tx, ok, now)
    in_dialog(c, bob, "ACK", 10, now)
    assert bob.holding


def first_call(c: Clinic, *, bob_calls: bool) -> Call:
    """Alice and Bob talk (one calling the other), and Bob holds Alice."""
    caller, callee = ("1002", "1001") if bob_calls else ("1001", "1002")
    tx = c.dial(caller, callee, 0.0)
    c.answer(callee, 0.5)
    c.ack(tx, 0.6)
    [call] = c.cc.calls.values()
    hold(c, call, 1.0)
    return call


def second_call(c: Clinic, *, carol_calls: bool, answered: bool = True) -> Call:
    """Bob and Carol (one calling the other) talk, or Bob's call to Carol rings."""
    caller, callee = ("1003", "1002") if carol_calls else ("1002", "1003")
    tx = c.dial(caller, callee, 2.0)
    if answered:
        c.answer(callee, 2.5)
        c.ack(tx, 2.6)
    else:
        request, client = c.invites(callee)[-1]
        c.cc.on_response(client, make_response(request, 180, to_tag="ringing-1003"), 2.5)
    [call] = [call for call in c.cc.calls.values() if call.started == 2.0]
    return call


def notifies(c: Clinic, extension: str = "1002") -> list[bytes]:
    return [r.body for r, _ in c.port.sent("NOTIFY", PHONES[extension])]


def leg_of(call: Call, extension: str) -> Leg:
    [leg] = [leg for leg in call.legs if leg.extension == extension and not leg.done]
    return leg


def reinvites(c: Clinic, extension: str) -> list[Request]:
    return [r for r, _ in c.invites(extension) if r.to_tag]


# -- attended ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("refer_on_first", [True, False], ids=["refer-on-call-1", "refer-on-call-2"])
@pytest.mark.parametrize("bob_calls", [False, True], ids=["bob-callee-1", "bob-caller-1"])
@pytest.mark.parametrize("carol_calls", [False, True], ids=["bob-caller-2", "bob-callee-2"])
def test_an_attended_transfer_bridges_alice_and_carol_and_bob_leaves_both_calls(
    refer_on_first: bool, bob_calls: bool, carol_calls: bool
) -> None:
    c = Clinic()
    first = first_call(c, bob_calls=bob_calls)
    second = second_call(c, carol_calls=carol_calls)
    b1, b2 = bob_leg(first), bob_leg(second)
    alice, carol = leg_of(first, "1001"), leg_of(second, "1003")
    carol_id, alice_reinvites = carol.id, len(reinvites(c, "1001"))
    on, naming = (b1, b2) if refer_on_first else (b2, b1)
    tx = transfer(c, on, naming, 3.0, swapped=not refer_on_first)
    assert c.port.statuses(tx) == [202]
    assert notifies(c) == [b"SIP/2.0 200 OK\r\n"]

    # One call left, the first: Alice and Carol talk in it, Carol's leg moved with its relay ports.
    assert list(c.cc.calls.values()) == [first]
    assert first.a is alice and first.winner is carol and first.peer(carol) is alice
    assert ("move", carol_id, carol.id) in c.media.asked
    assert c.media.asked.index(("music", alice.id, "off")) < c.media.asked.index(("join", alice.id, carol.id))
    assert ("release_leg", b1.id) in c.media.asked
    # Bob had held Alice: she is offered the relay again, so that she sends and hears once more.
    [resume] = reinvites(c, "1001")[alice_reinvites:]
    assert f"a=fake:local:{alice.id}".encode() in resume.body
    assert c.cc.busy == {(DOMAIN, "1001"): 1, (DOMAIN, "1003"): 1}

    # Call 2 is over, with its own record; Bob's leg of it got a BYE at once, the other at the hang-up time.
    [report2] = c.port.reports
    assert report2.cause == "attended transfer" and report2.hangup_by == "system"
    assert sorted(leg.outcome for leg in report2.legs) == ["transferred", "transferred"]
    assert len(c.byes("1002")) == 1
    c.tick(3.0 + TRANSFER_HANGUP - 0.01)
    assert len(c.byes("1002")) == 1
    c.tick(3.0 + TRANSFER_HANGUP)
    assert len(c.byes("1002")) == 2 and c.byes("1001") == c.byes("1003") == []
    assert ("1002", first.id, "terminated") in c.lines.seen and (
        "1002",
        second.id,
        "terminated",
    ) in c.lines.seen
    assert ("1003", first.id, "confirmed") in c.lines.seen

    # Carol hangs up in her own old dialog: Alice gets the BYE, and the record keeps everyone.
    in_dialog(c, carol, "BYE", 30, 9.0)
    assert len(c.byes("1001")) == 1
    report1 = c.port.reports[-1]
    assert report1.call_id == first.id
    assert [(who(leg.target), leg.outcome) for leg in report1.legs] == [
        ("1001", "answered"),
        ("1002", "transferred"),
        ("1003", "answered"),
    ]
    [record] = report1.transfers
    assert (record.at, record.by, record.kind, record.target, record.outcome) == (
        3.0,
        "1002",
        "attended",
        "1003",
        "answered",
    )


def test_bob_hanging_up_after_the_notify_is_not_sent_a_bye_and_the_call_goes_on() -> None:
    c = Clinic()
    first = first_call(c, bob_calls=False)
    second = second_call(c, carol_calls=False)
    b1 = bob_leg(first)
    transfer(c, b1, bob_leg(second), 3.0)
    bye = in_dialog(c, b1, "BYE", 30, 3.5)
    assert bye is not None and c.port.statuses(bye) == [200]
    c.tick(3.0 + TRANSFER_HANGUP)
    assert len(c.byes("1002")) == 1  # call 2's leg only
    assert first.state is CallState.ANSWERED and first.winner is not None and first.winner.extension == "1003"
    # Alice answers Sentral's offer (her phone resumes); then re-INVITEs go between her and Carol.
    [(resume, resume_tx)] = [(r, tx) for r, tx in c.invites("1001") if r.to_tag][-1:]
    c.cc.on_response(resume_tx, ok_with_sdp(resume, "1001"), 3.6)
    assert any(ack.call_id == resume.call_id and ack.cseq.seq == resume.cseq.seq for ack, _ in c.port.acks)
    assert ("answer_received", "a") in c.media.asked
    carol = first.winner
    in_dialog(c, carol, "INVITE", 31, 4.0, sdp=SDP_B)
    assert reinvites(c, "1001")[-1].body.endswith(f"a=fake:offer:a<-{carol.id}\r\n".encode())


# -- semi-attended -----------------------------------------------------------------------------------


def test_a_semi_attended_transfer_rings_carol_again_for_alice_and_connects_them() -> None:
    c = Clinic()
    first = first_call(c, bob_calls=False)
    second = second_call(c, carol_calls=False, answered=False)
    b1 = bob_leg(first)
    rung = len(c.invites("1003"))
    tx = transfer(c, b1, second.a, 3.0)
    assert c.port.statuses(tx) == [202] and notifies(c) == [b"SIP/2.0 200 OK\r\n"]
    # Bob's ringing call is over (his phone is told so), and Carol's phone rings again, for Alice:
    # a blind transfer to the number Bob dialled goes on from here.
    assert c.port.statuses(c.txs["call-2@1002"])[-1] == 480
    assert c.port.reports[-1].cause == "attended transfer"
    assert len(c.port.cancels) == 1
    [(again, _)] = c.invites("1003")[rung:]
    assert "<sip:1001@" in str(again.header("from")) and again.header("referred-by") == f"<sip:1002@{DOMAIN}>"
    assert list(c.cc.calls.values()) == [first] and first.winner is None and first.holder is not None
    assert ("music", "a", "on") in c.media.asked and ("release_leg", b1.id) in c.media.asked
    assert ("1002", first.id, "terminated") in c.lines.seen
    [record] = first.transfers
    assert (record.by, record.kind, record.target, record.outcome) == ("1002", "semi-attended", "1003", "")
    # Bob had held Alice: she is offered the relay again while she waits.
    [resume] = [r for r in reinvites(c, "1001") if b"a=fake:local:a" in r.body]
    assert resume.to_tag

    answer_last(c, "1003", 5.0)
    carol = first.winner
    assert carol is not None and carol.extension == "1003" and first.holder is None
    assert c.media.asked[-2:] == [("music", "a", "off"), ("join", "a", carol.id)]
    assert first.transfers[0].outcome == "answered"
    assert c.cc.busy == {(DOMAIN, "1001"): 1, (DOMAIN, "1003"): 1}
    in_dialog(c, leg_of(first, "1001"), "BYE", 30, 9.0)
    assert len(c.byes("1003")) == 1
    legs = [(who(leg.target), leg.outcome) for leg in c.port.reports[-1].legs]
    assert legs == [("1001", "answered"), ("1002", "transferred"), ("1003", "answered")]


@pytest.mark.parametrize("carol", ["rejects", "does not answer"])
def test_a_semi_attended_transfer_nobody_takes_rings_bob_again(carol: str) -> None:
    c = Clinic()
    first = first_call(c, bob_calls=False)
    second = second_call(c, carol_calls=False, answered=False)
    transfer(c, bob_leg(first), second.a, 3.0)
    rung = len(c.invites("1002"))
    if carol == "rejects":
        answer_last(c, "1003", 5.0, status=603)
    else:
        recall = 3.0 + CallSettings().transfer_recall  # the blind transfer's recall time
        c.tick(recall - 0.1)
        assert len(c.invites("1002")) == rung
        c.tick(recall)
    [(recall_invite, _)] = c.invites("1002")[rung:]
    assert f'"{RETURNED["nb"]}: 1001" <sip:1001@' in str(recall_invite.header("from"))
    answer_last(c, "1002", 70.0)
    bob = first.winner
    assert bob is not None and bob.extension == "1002" and first.transfers[0].outcome == "returned"


def test_a_semi_attended_transfer_to_a_phone_that_is_gone_is_refused_and_the_calls_go_on() -> None:
    c = Clinic()
    first = first_call(c, bob_calls=False)
    second = second_call(c, carol_calls=False, answered=False)
    c.bindings[(DOMAIN, "1003")] = []  # Carol's phone unregistered while it rang
    tx = transfer(c, bob_leg(first), second.a, 3.0)
    assert c.port.statuses(tx) == [480]
    assert len(c.cc.calls) == 2 and first.winner is not None and first.transfers == []


# -- refusals ---------------------------------------------------------------------------------------


def test_a_replaces_naming_no_dialog_is_told_481_in_the_notify_and_the_calls_go_on() -> None:
    c = Clinic()
    first = first_call(c, bob_calls=False)
    second = second_call(c, carol_calls=False)
    tx = refer(c, bob_leg(first), f"<sip:1003@{DOMAIN}?Replaces=nosuch%40x%3Bto-tag%3Da%3Bfrom-tag%3Db>", 3.0)
    assert c.port.statuses(tx) == [202]
    assert notifies(c) == [b"SIP/2.0 481 Call/Transaction Does Not Exist\r\n"]
    assert len(c.cc.calls) == 2 and first.winner is not None and second.winner is not None
    assert c.byes("1002") == [] and first.transfers == []


def test_transferring_a_call_to_itself_or_to_someone_elses_call_is_403() -> None:
    c = Clinic()
    first = first_call(c, bob_calls=False)
    b1 = bob_leg(first)
    assert c.port.statuses(transfer(c, b1, b1, 3.0)) == [403]
    assert c.port.statuses(transfer(c, b1, leg_of(first, "1001"), 3.1)) == [403]
    # Carol calls Alice's other phone line... a call Bob is not in.
    tx = c.dial("1003", "1001", 4.0)
    c.answer("1001", 4.5)
    c.ack(tx, 4.6)
    other = next(call for call in c.cc.calls.values() if call is not first)
    assert c.port.statuses(transfer(c, b1, other.a, 5.0)) == [403]
    assert len(c.cc.calls) == 2 and notifies(c) == [] and c.byes("1002") == []


def test_a_malformed_replaces_in_the_refer_to_is_400() -> None:
    c = Clinic()
    first = first_call(c, bob_calls=False)
    tx = refer(c, bob_leg(first), f"<sip:1003@{DOMAIN}?Replaces=abc>", 3.0)
    assert c.port.statuses(tx) == [400]


def test_without_media_through_the_relay_an_attended_transfer_is_refused_with_501() -> None:
    c = Clinic()
    c.cc.media = OriginPerLeg()
    first = first_call(c, bob_calls=False)
    second = second_call(c, carol_calls=False)
    tx = transfer(c, bob_leg(first), bob_leg(second), 3.0)
    assert c.port.statuses(tx) == [501]
    assert len(c.cc.calls) == 2 and first.winner is not None and second.winner is not None


# -- INVITE with Replaces ------------------------------------------------------------------------


def replaces_header(leg: Leg) -> str:
    assert leg.dialog is not None
    return f"Replaces: {leg.call_id};to-tag={leg.local_tag};from-tag={leg.dialog.remote_tag}\r\n"


def test_an_invite_replacing_an_answered_leg_takes_its_place() -> None:
    c = Clinic()
    call = c.talking()  # Alice calls Bob
    bob = call.b_legs[0]
    tx = c.dial("1003", "1002", 2.0, headers=replaces_header(bob))
    assert c.port.statuses(tx)[-1] == 200
    assert ("answer_locally", "r2", "like:a") in c.media.asked
    assert c.media.asked[-2:] == [("music", "a", "off"), ("join", "a", "r2")]
    assert len(c.byes("1002")) == 1 and c.byes("1001") == []
    assert list(c.cc.calls.values()) == [call] and call.winner is not None and call.winner.extension == "1003"
    assert c.cc.busy == {(DOMAIN, "1001"): 1, (DOMAIN, "1003"): 1}
    c.ack(tx, 2.1)
    in_dialog(c, call.a, "BYE", 5, 3.0)
    assert len(c.byes("1003")) == 1
    [report] = c.port.reports
    assert [(leg.leg, leg.outcome) for leg in report.legs] == [
        ("a", "answered"),
        ("b1", "replaced"),
        ("r2", "answered"),
    ]


def test_replacing_the_callers_leg_keeps_the_callee_as_the_one_waiting() -> None:
    c = Clinic()
    call = c.talking()
    tx = c.dial("1003", "1001", 2.0, headers=replaces_header(call.a))
    assert c.port.statuses(tx)[-1] == 200
    assert call.a.extension == "1002" and call.winner is not None and call.winner.extension == "1003"
    assert len(c.byes("1001")) == 1


def test_only_staff_may_replace_and_early_dialogs_are_not_this_features() -> None:
    c = Clinic()
    staff = dict(DIRECTORY.staff)
    del staff[(DOMAIN, "1003")]
    directory = dataclasses.replace(DIRECTORY, staff=MappingProxyType(staff))
    c.cc = CallControl(
        c.port,
        DialPlan(),
        lambda: directory,
        lambda aor: c.bindings.get(aor, []),
        media=c.media,
        features=standard,
    )
    call = c.talking()
    tx = c.dial("1003", "1002", 2.0, headers=replaces_header(call.b_legs[0]))
    assert c.port.statuses(tx)[-1] == 403
    assert call.winner is call.b_legs[0] and c.byes("1002") == []


def test_an_invite_replacing_a_ringing_leg_is_not_taken_here() -> None:
    # Call pickup's to take, which this clinic lacks.
    c = clinic_with(lambda core: [AttendedTransfer(core, Transfer(core))])
    c.dial("1001", "1002", 0.0)
    request, client = c.invites("1002")[-1]
    c.cc.on_response(client, make_response(request, 180, to_tag="ringing"), 0.5)
    [call] = c.cc.calls.values()
    ringing = call.b_legs[0]
    tx = c.dial(
        "1003",
        "1002",
        1.0,
        headers=f"Replaces: {ringing.call_id};to-tag={ringing.local_tag};from-tag=ringing\r\n",
    )
    assert c.port.statuses(tx)[-1] == 481
    assert call.state is CallState.RINGING and call.b_legs[0].state is LegState.EARLY


# -- through the real relay ----------------------------------------------------------------------


def test_through_the_relay_carol_keeps_her_port_and_is_joined_with_alice_whose_music_stops(
    tmp_path: Path,
) -> None:
    async def scenario() -> None:
        pool = PortPool(43200, 43299)
        anchor = MediaAnchor(HOST, pool, sounds=_library(tmp_path))
        c = Clinic()
        c.cc.media = AnchoredMedia(anchor)
        first = first_call(c, bob_calls=False)
        assert anchor.playing(first.id, "a")  # Bob's hold: Alice hears music
        second = second_call(c, carol_calls=False)
        carol = leg_of(second, "1003")
        ports = anchor.ports(second.id, carol.id)
        transfer(c, bob_leg(first), bob_leg(second), 3.0)
        assert anchor.ports(first.id, carol.id) == ports
        assert not anchor.playing(first.id, "a")
        [to_alice], [to_carol] = anchor._find(first.id, "a").streams, anchor._find(first.id, carol.id).streams
        assert to_alice is not None and to_alice.peer is to_carol
        # Sentral's offer to Alice, at her own port, ends the hold her phone was in.
        resume, resume_tx = [(r, tx) for r, tx in c.invites("1001") if r.to_tag][-1]
        assert parse_sdp(resume.body).media[0].port == anchor.ports(first.id, "a")[0]
        assert parse_sdp(resume.body).media[0].direction is Direction.SENDRECV
        c.cc.on_response(resume_tx, ok_with_sdp(resume, "1001"), 3.5)
        assert not anchor.hold_state(first.id, "a")
        # When Carol holds Alice later, Alice hears music again.
        in_dialog(c, carol, "INVITE", next(_CSEQ), 5.0, sdp=HOLD)
        hold, hold_tx = c.invites("1001")[-1]
        c.cc.on_response(hold_tx, ok_with_sdp(hold, "1001", SDP_B.replace(b"a=sendrecv", b"a=recvonly")), 5.1)
        assert anchor.playing(first.id, "a")
        in_dialog(c, leg_of(first, "1001"), "BYE", next(_CSEQ), 6.0)
        c.tick(9.0)
        assert pool.in_use == 0 and len(anchor) == 0

    asyncio.run(scenario())


@pytest.mark.parametrize("carol_takes_it", [True, False], ids=["moved", "refused"])
def test_a_phone_with_direct_media_is_brought_to_the_relay_before_it_is_joined(carol_takes_it: bool) -> None:
    async def scenario() -> None:
        # Alice's call with Bob goes through the relay; Bob's and Carol's phones send to each other.
        anchor = MediaAnchor(HOST, PortPool(43300, 43399))
        c = Clinic()
        c.cc.media = AnchoredMedia(anchor, direct_media=lambda domain, extension: extension != "1001")
        first = first_call(c, bob_calls=False)
        second = second_call(c, carol_calls=False)
        carol = leg_of(second, "1003")
        assert not c.cc.media.anchored(second, carol)
        sent = len(c.invites("1003"))
        tx = transfer(c, bob_leg(first), bob_leg(second), 3.0)
        assert c.port.statuses(tx) == [202]
        assert notifies(c) == [b"SIP/2.0 100 Trying\r\n"]
        # Meanwhile Bob's phone cannot start another transfer of the same calls.
        assert c.port.statuses(transfer(c, bob_leg(second), bob_leg(first), 3.1)) == [491]
        [(offer, offer_tx)] = c.invites("1003")[sent:]
        assert offer.to_tag and 43300 <= parse_sdp(offer.body).media[0].port <= 43399
        if not carol_takes_it:
            c.cc.on_response(offer_tx, make_response(offer, 488), 3.2)
            assert notifies(c)[-1] == b"SIP/2.0 501 Not Implemented\r\n"
            assert len(c.cc.calls) == 2 and second.winner is not None and c.byes("1002") == []
        else:
            c.cc.on_response(offer_tx, ok_with_sdp(offer, "1003"), 3.2)
            assert notifies(c)[-1] == b"SIP/2.0 200 OK\r\n"
            assert list(c.cc.calls.values()) == [first] and first.winner is carol
            [to_alice], [to_carol] = (
                anchor._find(first.id, "a").streams,
                anchor._find(first.id, carol.id).streams,
            )
            assert to_alice is not None and to_alice.peer is to_carol
            assert len(c.byes("1002")) == 1
        c.cc.hang_up_all(4.0)
        anchor.relay.close()

    asyncio.run(scenario())
