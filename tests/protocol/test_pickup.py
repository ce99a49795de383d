"""Call pickup: ``**EXT``, ``*8`` and a busy-lamp key's INVITE with Replaces, who may pick up,
what the phones that rang are told, the lines and the record, message by message on a fake clock
(the clinic of tests/protocol/clinic.py, with a group and its hunt added here)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from types import MappingProxyType

from sentral.config.directory import Directory, GroupEntry, GroupKind, MemberEntry, Strategy
from sentral.pbx.call import Call, CallControl, CallState, LegState, OriginPerLeg
from sentral.pbx.features import standard as standard_features
from sentral.pbx.features.pickup import COMPLETED_ELSEWHERE, CallPickup
from sentral.pbx.hunting import Hunting
from sentral.pbx.sip.dialog_info import DialogIds
from sentral.pbx.sip.errors import SipError
from sentral.pbx.sip.message import Response, make_response
from sentral.pbx.sip.transaction import RequestReceived, ServerTransaction
from sentral.routing.dialplan import DialPlan
from sentral.routing.pickup import Pickup, PickupResolver, Ringing, first_to_pick
from tests.protocol.clinic import DIRECTORY, DOMAIN, Clinic, Lines
from tests.protocol.test_call import parse

# 1002 and 1003 are in reception (number 500, acute 599) and the lab (600); 1003 is logged out of
# both, so a call to either rings 1002 alone and 1003 may pick it up with *8.
RECEPTION = GroupEntry(
    domain=DOMAIN,
    name="reception",
    kind=GroupKind.GROUP,
    number="500",
    acute_number="599",
    strategy=Strategy.RINGALL,
    member_timeout=10.0,
    ring_timeout=60.0,
    overflow=None,
    ring_busy=True,
    max_wait=300.0,
    members=(MemberEntry("1002", True), MemberEntry("1003", False)),
)
LAB = replace(RECEPTION, name="lab", number="600", acute_number=None)


def clinic(*, staff: tuple[str, ...] = ("1001", "1002", "1003"), reception: GroupEntry = RECEPTION) -> Clinic:
    """The protocol tests' clinic with reception, its hunt, and only ``staff`` as members of staff."""
    c = Clinic()
    directory = Directory(
        2,
        DIRECTORY.clinics,
        MappingProxyType({key: entry for key, entry in DIRECTORY.staff.items() if key[1] in staff}),
        MappingProxyType({(DOMAIN, "reception"): reception, (DOMAIN, "lab"): LAB}),
        numbers=MappingProxyType(
            {**DIRECTORY.numbers, (DOMAIN, "500"): reception, (DOMAIN, "599"): reception, (DOMAIN, "600"): LAB}
        ),
        park_lots=DIRECTORY.park_lots,
    )
    c.cc = CallControl(
        c.port,
        DialPlan(),
        lambda: directory,
        lambda aor: c.bindings.get(aor, []),
        media=c.media,
        groups=Hunting(lambda: directory, lambda aor: c.bindings.get(aor, []), lambda d, e: (d, e) in c.cc.busy),
        lines=c.lines,
        features=standard_features,
    )
    return c


def last_response(c: Clinic, tx: ServerTransaction) -> Response:
    return [response for t, response in c.port.responses if t is tx][-1]


def lamps(c: Clinic) -> Lines:
    return c.lines


def ring(c: Clinic, extension: str, now: float, index: int = -1) -> Response:
    """``extension``'s phone rings for the INVITE it got (180 with its tag)."""
    request, tx = c.invites(extension)[index]
    response = make_response(request, 180, to_tag=f"ring-{extension}{index}")
    c.cc.on_response(tx, response, now)
    return response


def ringing_call(c: Clinic, number: str = "1002", now: float = 0.0) -> tuple[ServerTransaction, Call]:
    """1001 calls ``number``; 1002's phone rings."""
    tx = c.dial("1001", number, now)
    ring(c, "1002", now + 0.1)
    call = next(call for call in c.cc.calls.values() if call.a.call_id == tx.request.call_id)
    return tx, call


def bye_from(c: Clinic, tx: ServerTransaction, now: float) -> None:
    """The phone whose INVITE was ``tx`` hangs up."""
    invite = tx.request
    ok = next(r for t, r in c.port.responses if t is tx and r.status == 200)
    port = invite.top_via.port
    bye = parse(
        "BYE sip:sentral@127.0.0.1:5060 SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bK-bye-{port}\r\nMax-Forwards: 70\r\n"
        f"From: {invite.header('from')}\r\nTo: <sip:x@{DOMAIN}>;tag={ok.to_tag}\r\n"
        f"Call-ID: {invite.call_id}\r\nCSeq: 2 BYE\r\n"
    )
    [event, *_] = c.layer.receive(bye, ("127.0.0.1", port or 5060), False, now)
    assert isinstance(event, RequestReceived)
    c.cc.on_request(event.tx, bye, now)


# -- the dial plan and the choice -------------------------------------------------------------------


def test_the_codes_decide_a_pickup_and_the_oldest_acute_call_is_picked_first() -> None:
    @dataclass
    class Dialled:
        number: str

    resolver = PickupResolver()
    assert resolver.resolve(Dialled("*8")) == Pickup()
    assert resolver.resolve(Dialled("**1002")) == Pickup("1002")
    assert resolver.resolve(Dialled("**")) is None and resolver.resolve(Dialled("*81")) is None
    calls = [Ringing("old", False, 1.0), Ringing("acute", True, 5.0), Ringing("acute-old", True, 3.0)]
    assert first_to_pick(calls) == calls[2]
    assert first_to_pick(calls[:1]) == calls[0] and first_to_pick([]) is None


# -- directed pickup ---------------------------------------------------------------------------------


def test_directed_pickup_answers_the_caller_bridges_the_picker_and_cancels_the_ringing_phone() -> None:
    c = clinic()
    caller_tx, call = ringing_call(c)
    picker_tx = c.dial("1003", "**1002", 2.0)
    # The phone that rang is cancelled as answered elsewhere, not as a missed call.
    assert c.port.cancel_reasons == [COMPLETED_ELSEWHERE]
    assert call.b_legs[0].state is LegState.CANCELLED
    # Both answered from the relay, the picker in the caller's codec, then joined.
    assert ("answer_locally", "a") in c.media.asked
    assert ("answer_locally", "p2", "like:a") in c.media.asked
    assert c.media.asked[-1] == ("join", "a", "p2")
    assert c.port.statuses(caller_tx)[-1] == 200 and c.port.statuses(picker_tx)[-1] == 200
    assert b"a=fake:local:a" in last_response(c, caller_tx).body
    assert b"a=fake:local:p2" in last_response(c, picker_tx).body
    # The picker's call dissolved into the picked-up one.
    assert list(c.cc.calls.values()) == [call] and call.state is CallState.ANSWERED
    assert call.winner is not None and call.winner.extension == "1003"
    assert c.cc.busy == {(DOMAIN, "1001"): 1, (DOMAIN, "1003"): 1}
    seen = lamps(c).seen
    assert seen.index(("1002", call.id, "early")) < seen.index(("1002", call.id, "terminated"))
    assert ("1003", call.id, "confirmed") in seen and ("1001", call.id, "confirmed") in seen
    c.ack(caller_tx, 2.1)
    c.ack(picker_tx, 2.1)
    bye_from(c, picker_tx, 30.0)
    assert len(c.byes("1001")) == 1 and call.state is CallState.ENDED
    [report] = c.port.reports
    assert [(leg.leg, leg.side, leg.outcome, leg.answered is not None) for leg in report.legs] == [
        ("a", "a", "answered", True),
        ("b1", "b", "cancelled", False),
        ("p2", "b", "picked up", True),  # the picker answered: the callee's side of the record
    ]
    assert report.answered_by == "1003" and report.caller == "1001" and report.callee == "1002"
    assert report.status == 200 and report.answered == 2.0 and report.hangup_by == "callee"
    assert c.cc.busy == {}


def test_a_caller_whose_invite_had_no_offer_gets_one_and_answers_in_its_ack() -> None:
    c = clinic()
    caller_tx = c.dial("1001", "1002", 0.0, sdp=b"")
    ring(c, "1002", 0.1)
    c.dial("1003", "**1002", 1.0)
    assert ("offer_locally", "a") in c.media.asked and ("answer_locally", "p2", "like:a") in c.media.asked
    assert c.port.statuses(caller_tx)[-1] == 200
    ok = last_response(c, caller_tx)
    assert ok.content_type == "application/sdp" and b"a=fake:local:a" in ok.body  # our offer


def test_nothing_ringing_there_is_404_and_the_refused_call_has_its_record() -> None:
    c = clinic()
    tx = c.dial("1003", "**1002", 1.0)
    assert c.port.statuses(tx)[-1] == 404 and not c.cc.calls
    nobody = c.dial("1003", "**4711", 2.0)
    assert c.port.statuses(nobody)[-1] == 404
    assert [report.status for report in c.port.reports] == [404, 404]


def test_an_answered_call_is_not_picked_up() -> None:
    c = clinic()
    call = c.talking()
    tx = c.dial("1003", "**1002", 1.0)
    assert c.port.statuses(tx)[-1] == 404 and call.winner is call.b_legs[0]


def test_the_caller_cannot_pick_up_their_own_call_and_it_rings_on() -> None:
    c = clinic()
    _, call = ringing_call(c)
    tx = c.dial("1001", "**1002", 1.0)
    assert c.port.statuses(tx)[-1] == 403
    assert call.state is CallState.RINGING and call.b_legs[0].state is LegState.EARLY
    assert c.port.cancel_reasons == []


def test_only_staff_pick_up() -> None:
    c = clinic(staff=("1001", "1002"))
    _, call = ringing_call(c)
    tx = c.dial("1003", "**1002", 1.0)
    assert c.port.statuses(tx)[-1] == 403 and call.state is CallState.RINGING


def test_media_the_relay_refuses_refuses_the_picker_and_the_call_rings_on() -> None:
    c = clinic()
    _, call = ringing_call(c)
    c.media.refuse["local"] = SipError(488, "Not Acceptable Here")
    tx = c.dial("1003", "**1002", 1.0)
    assert c.port.statuses(tx)[-1] == 488
    assert call.state is CallState.RINGING and call.b_legs[0].state is LegState.EARLY
    assert len(c.cc.calls) == 1


def test_without_the_relay_nothing_is_picked_up() -> None:
    c = clinic()
    c.cc.media = OriginPerLeg()
    _, call = ringing_call(c)
    tx = c.dial("1003", "**1002", 1.0)
    assert c.port.statuses(tx)[-1] == 488 and call.state is CallState.RINGING


# -- group pickup ------------------------------------------------------------------------------------


def test_group_pickup_takes_the_acute_call_first_then_the_longest_ringing() -> None:
    c = clinic()
    first_tx = c.dial("1001", "600", 0.0)
    ring(c, "1002", 0.1, index=0)
    acute_tx = c.dial("1001", "599", 3.0)
    ring(c, "1002", 3.1, index=1)
    picker = c.dial("1003", "*8", 5.0)
    assert c.port.statuses(picker)[-1] == 200
    assert c.port.statuses(acute_tx)[-1] == 200 and c.port.statuses(first_tx)[-1] == 180
    again = c.dial("1003", "*8", 6.0)
    assert c.port.statuses(again)[-1] == 200 and c.port.statuses(first_tx)[-1] == 200
    assert c.port.cancel_reasons == [COMPLETED_ELSEWHERE, COMPLETED_ELSEWHERE]


def test_group_pickup_is_for_members_and_not_for_calls_ringing_nobody() -> None:
    c = clinic()
    _, call = ringing_call(c, "500")
    outsider = c.dial("1001", "*8", 1.0)  # 1001 is in no group
    assert c.port.statuses(outsider)[-1] == 404 and call.state is CallState.RINGING
    # A direct call to a member is not the group's.
    c2 = clinic()
    ringing_call(c2, "1002")
    assert c2.port.statuses(c2.dial("1003", "*8", 1.0))[-1] == 404


def test_a_caller_waiting_in_the_queue_with_no_phone_ringing_is_not_picked_up() -> None:
    c = clinic(reception=replace(RECEPTION, ring_busy=False))
    talking = c.talking()  # 1002, the one member logged in, is busy: a caller to 500 waits
    waiting_tx = c.dial("1001", "500", 1.0)
    [call] = [call for call in c.cc.calls.values() if call is not talking]
    assert not call.b_legs and call.state is CallState.RINGING
    tx = c.dial("1003", "*8", 2.0)
    assert c.port.statuses(tx)[-1] == 404 and c.port.statuses(waiting_tx)[-1] == 183


# -- a busy-lamp key's INVITE with Replaces -----------------------------------------------------------


def replaces_from_lamp(c: Clinic, extension: str, from_tag: str | None = None) -> str:
    """The Replaces header a busy-lamp key builds from the dialog-info ids of a ringing line."""
    ids = lamps(c).ids[extension]
    return f"Replaces: {ids.call_id};to-tag={ids.remote_tag};from-tag={from_tag or ids.local_tag}\r\n"


def test_a_busy_lamp_key_picks_up_with_replaces_built_from_the_dialog_info_ids() -> None:
    c = clinic()
    caller_tx, call = ringing_call(c)
    ids = lamps(c).ids["1002"]
    leg = call.b_legs[0]
    assert ids == DialogIds(leg.call_id, "ring-1002-1", leg.local_tag)
    tx = c.dial("1003", "1002", 1.0, headers=replaces_from_lamp(c, "1002"))
    assert c.port.statuses(tx)[-1] == 200 and c.port.statuses(caller_tx)[-1] == 200
    assert c.port.cancel_reasons == [COMPLETED_ELSEWHERE]
    assert list(c.cc.calls.values()) == [call] and call.winner is not None
    assert call.winner.extension == "1003" and call.winner.outcome == "picked up"


def test_replaces_with_another_tag_names_no_ringing_dialog_481() -> None:
    c = clinic()
    _, call = ringing_call(c)
    tx = c.dial("1003", "1002", 1.0, headers=replaces_from_lamp(c, "1002", from_tag="other"))
    assert c.port.statuses(tx)[-1] == 481 and call.state is CallState.RINGING


def test_replaces_for_ones_own_call_is_403() -> None:
    c = clinic()
    _, call = ringing_call(c)
    tx = c.dial("1001", "1002", 1.0, headers=replaces_from_lamp(c, "1002"))
    assert c.port.statuses(tx)[-1] == 403 and call.state is CallState.RINGING


def test_a_confirmed_dialog_is_not_picked_up() -> None:
    c = clinic()
    c.cc.features = tuple(f for f in c.cc.features if isinstance(f, CallPickup))  # pickup alone
    call = c.talking()
    leg = call.b_legs[0]
    assert leg.dialog is not None
    replaces = f"Replaces: {leg.call_id};to-tag={leg.local_tag};from-tag={leg.dialog.remote_tag}\r\n"
    tx = c.dial("1003", "1002", 1.0, headers=replaces)
    assert c.port.statuses(tx)[-1] == 481  # an attended transfer's to take over, not pickup's
    assert call.winner is leg and call.state is CallState.ANSWERED

