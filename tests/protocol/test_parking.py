"""Parking inside calls: the in-call park code, retrieving from a slot, recall and its limits,
slot lamps and the record, message by message on a fake clock (phones played by hand as in
test_call, media by the recording fake of test_anchoring)."""

from __future__ import annotations

from sentral.pbx.call import PROMPT_TAIL, TRANSFER_HANGUP, Call, CallState
from sentral.pbx.features.park import PARK_CODE
from sentral.pbx.sip.message import Request, make_response
from sentral.pbx.sip.transaction import ClientTransaction, RequestReceived
from tests.protocol.clinic import DIRECTORY, DOMAIN, PHONES, PROMPT, Clinic, refer
from tests.protocol.test_call import SDP_A, b_request, parse


def parked_by_the_callee(c: Clinic) -> Call:
    call = c.talking()
    c.key(call, "b1", PARK_CODE, 1.0)
    return call


def test_the_park_code_parks_the_other_phone_announces_the_slot_and_byes_the_parker() -> None:
    c = Clinic()
    call = parked_by_the_callee(c)
    assert call.parked == "701" and call.a.extension == "1001" and call.winner is None
    assert ("music", "a", "on") in c.media.asked
    assert ("play", "b1", "call_parked_on", "digit_7", "digit_0", "digit_1") in c.media.asked
    assert [live.parked for live in c.cc.live()] == ["701"]
    assert ("701", call.id, "confirmed") in c.lines.seen
    assert ("1002", call.id, "terminated") in c.lines.seen
    assert (DOMAIN, "1002") not in c.cc.busy and c.cc.busy[(DOMAIN, "1001")] == 1
    c.tick(1.4 + PROMPT + PROMPT_TAIL - 0.05)
    assert c.byes("1002") == []  # still hearing the slot
    c.tick(1.4 + PROMPT + PROMPT_TAIL)
    assert len(c.byes("1002")) == 1 and c.byes("1001") == []
    assert ("release_leg", "b1") in c.media.asked and call.state is CallState.ANSWERED


def test_keys_that_are_not_the_code_or_come_too_slowly_park_nothing() -> None:
    c = Clinic()
    call = c.talking()
    c.key(call, "b1", "#7", 1.0)
    c.key(call, "b1", "2", 5.0)  # more than KEY_GAP after the 7
    c.key(call, "b1", "1#73", 6.0)
    assert not call.parked and call.winner is not None


def test_the_caller_can_park_the_callee_whose_leg_then_becomes_the_a_leg() -> None:
    c = Clinic()
    call = c.talking()
    c.key(call, "a", PARK_CODE, 1.0)
    assert call.parked == "701" and call.a.id == "b1" and call.a.extension == "1002"
    assert ("music", "b1", "on") in c.media.asked and (
        "play",
        "a",
        "call_parked_on",
        "digit_7",
        "digit_0",
        "digit_1",
    ) in c.media.asked
    c.tick(10.0)
    assert len(c.byes("1001")) == 1 and c.byes("1002") == []
    c.tick(11.4)  # the recall rings the parker, 1001, though the call was made to 1002
    [(recall, _)] = c.invites("1001")
    assert "<sip:1001@" in str(recall.header("to")) and "<sip:701@" in str(recall.header("from"))


def test_dialling_the_slot_joins_the_parked_call_and_the_record_keeps_every_leg() -> None:
    c = Clinic()
    call = parked_by_the_callee(c)
    c.tick(5.0)
    tx = c.dial("1003", "701", 6.0)
    assert c.port.statuses(tx)[-1] == 200
    ok = c.port.responses[-1][1]
    assert b"a=fake:local:r2" in ok.body
    assert ("answer_locally", "r2", "like:a") in c.media.asked
    assert c.media.asked[-2:] == [("music", "a", "off"), ("join", "a", "r2")]
    assert len(c.cc.calls) == 1 and not call.parked and call.winner is not None
    assert [live.parked for live in c.cc.live()] == [""]
    assert ("701", call.id, "terminated") in c.lines.seen
    assert ("1003", call.id, "confirmed") in c.lines.seen
    assert c.cc.busy == {(DOMAIN, "1001"): 1, (DOMAIN, "1003"): 1}
    c.ack(tx, 6.1)
    # The retriever hangs up: the parked phone gets the BYE and one record tells the whole story.
    bye = parse(
        "BYE sip:sentral@127.0.0.1:5060 SIP/2.0\r\n"
        "Via: SIP/2.0/UDP 127.0.0.1:5003;branch=z9hG4bK-bye-c\r\nMax-Forwards: 70\r\n"
        f"From: <sip:1003@{DOMAIN}>;tag=from2\r\nTo: <sip:701@{DOMAIN}>;tag={ok.to_tag}\r\n"
        "Call-ID: call-2@1003\r\nCSeq: 2 BYE\r\n"
    )
    [event, *_] = c.layer.receive(bye, ("127.0.0.1", 5003), False, 20.0)
    assert isinstance(event, RequestReceived)
    c.cc.on_request(event.tx, bye, 20.0)
    assert len(c.byes("1001")) == 1 and call.state is CallState.ENDED
    [report] = c.port.reports
    assert [(leg.leg, leg.outcome) for leg in report.legs] == [
        ("a", "answered"),
        ("b1", "parked"),
        ("r2", "retrieved"),
    ]
    assert report.caller == "1001" and report.callee == "1002" and c.cc.busy == {}


def test_an_empty_slot_is_404_and_the_park_number_dialled_is_403() -> None:
    c = Clinic()
    assert c.port.statuses(c.dial("1003", "702"))[-1] == 404
    assert c.port.statuses(c.dial("1003", "700"))[-1] == 403
    assert [report.status for report in c.port.reports] == [404, 403]


def test_unretrieved_the_call_rings_its_parker_and_answering_connects_them() -> None:
    c = Clinic()
    call = parked_by_the_callee(c)
    c.tick(5.0)
    assert c.invites("1002")[1:] == []
    c.tick(11.4)  # parked at 1.4 (the third key), recall after 10 s
    [(recall, _)] = c.invites("1002")[1:]
    assert recall.header("from") is not None and "Parked 701" in str(recall.header("from"))
    assert ("offer_locally", "b2", "like:a") in c.media.asked
    assert call.parked == "701"  # still on its slot while the parker's phone rings
    c.answer("1002", 12.0)
    assert not call.parked and call.winner is not None and call.winner.id == "b2"
    assert c.media.asked[-2:] == [("music", "a", "off"), ("join", "a", "b2")]
    assert ("701", call.id, "terminated") in c.lines.seen
    assert len(c.port.acks) >= 2


def test_unanswered_recalls_repark_the_call_and_after_the_last_one_it_is_hung_up() -> None:
    c = Clinic()
    call = parked_by_the_callee(c)
    now = 1.4
    for attempt in range(3):
        now += 10.0
        c.tick(now)
        assert len(c.invites("1002")) == 2 + attempt, attempt
        now += 10.0  # the recall rings for as long as the lot's timeout
        c.tick(now)
        if attempt < 2:
            assert call.parked == "701" and call.state is CallState.ANSWERED
    assert call.state is CallState.ENDED
    assert len(c.byes("1001")) == 1
    [report] = c.port.reports
    assert report.cause == "park timeout" and report.hangup_by == "system"
    assert ("701", call.id, "terminated") in c.lines.seen


def test_a_rejected_recall_puts_the_call_back_on_its_slot() -> None:
    c = Clinic()
    call = parked_by_the_callee(c)
    c.tick(11.5)
    c.answer("1002", 12.0, status=486)
    assert call.parked == "701" and call.recall_at == 22.0
    c.tick(22.0)
    assert len(c.invites("1002")) == 3


def test_a_full_lot_says_so_and_the_call_goes_on() -> None:
    c = Clinic()
    first = parked_by_the_callee(c)
    tx = c.dial("1003", "1002", 2.0)
    c.answer("1002", 2.5)
    c.ack(tx, 2.6)
    second = next(call for call in c.cc.calls.values() if call is not first)
    c.key(second, "a", PARK_CODE, 3.0)
    assert second.parked == "702"
    tx = c.dial("1001", "1003", 4.0)
    c.answer("1003", 4.5)
    c.ack(tx, 4.6)
    third = next(call for call in c.cc.calls.values() if call not in (first, second))
    c.key(third, "b1", PARK_CODE, 5.0)
    assert not third.parked and third.winner is not None
    assert ("play", "b1", "number_unavailable") in c.media.asked


def test_without_media_that_can_play_music_nothing_is_parked() -> None:
    c = Clinic()
    c.media.music = lambda call, leg, on: False  # type: ignore[method-assign]
    call = parked_by_the_callee(c)
    assert not call.parked and call.winner is not None and c.cc.lots.first(DIRECTORY, DOMAIN) is not None
    assert not c.cc.lots.first(DIRECTORY, DOMAIN).occupied()  # type: ignore[union-attr]


def test_the_parked_phone_refreshing_its_session_is_answered_by_sentral() -> None:
    c = Clinic()
    call = parked_by_the_callee(c)
    invite = c.invites("1002")[0][0]
    # The parked phone is the caller here (1001): its re-INVITE comes on the A leg.
    a_ok = next(r for t, r in c.port.responses if r.status == 200)
    reinvite = parse(
        "INVITE sip:sentral@127.0.0.1:5060 SIP/2.0\r\n"
        "Via: SIP/2.0/UDP 127.0.0.1:4001;branch=z9hG4bK-reinv\r\nMax-Forwards: 70\r\n"
        f"From: <sip:1001@{DOMAIN}>;tag=from1\r\nTo: <sip:1002@{DOMAIN}>;tag={a_ok.to_tag}\r\n"
        "Call-ID: call-1@1001\r\nCSeq: 2 INVITE\r\nContact: <sip:1001@127.0.0.1:4001>\r\n"
        "Content-Type: application/sdp\r\n",
        SDP_A,
    )
    [event, *_] = c.layer.receive(reinvite, ("127.0.0.1", 4001), False, 5.0)
    assert isinstance(event, RequestReceived)
    c.cc.on_request(event.tx, reinvite, 5.0)
    assert c.port.statuses(event.tx)[-1] == 200
    assert ("answer_locally", "a", "like:a") in c.media.asked
    assert invite is not None and call.parked == "701"


def test_the_parker_hanging_up_during_the_announcement_leaves_the_call_parked() -> None:
    c = Clinic()
    call = parked_by_the_callee(c)
    b_req, _ = c.invites("1002")[0]
    ok = make_response(b_req, 200, to_tag="tag-1002--1")
    bye = b_request(b_req, ok, "BYE", 2)
    [event, *_] = c.layer.receive(bye, ("127.0.0.1", 5002), False, 2.0)
    assert isinstance(event, RequestReceived)
    c.cc.on_request(event.tx, bye, 2.0)
    assert c.port.statuses(event.tx)[-1] == 200
    assert call.state is CallState.ANSWERED and call.parked == "701" and c.byes("1001") == []
    c.tick(10.0)
    assert c.byes("1002") == []  # already gone: no BYE of ours follows


def test_a_blind_transfer_to_the_park_number_parks_the_other_phone() -> None:
    c = Clinic()
    call = c.talking()
    tx = refer(c, f"<sip:700@{DOMAIN}>", 1.0)
    assert c.port.statuses(tx) == [202]
    assert call.parked == "701" and ("music", "a", "on") in c.media.asked
    assert not [a for a in c.media.asked if a[0] == "play"]  # the transferring phone is not told the slot
    [(notify, _)] = c.port.sent("NOTIFY", PHONES["1002"])
    assert notify.header("event") == "refer" and notify.body == b"SIP/2.0 200 OK\r\n"
    assert (notify.header("subscription-state") or "").startswith("terminated")
    assert notify.content_type == "message/sipfrag"
    # The phone would hang up now; when it does not, Sentral does after a while.
    c.tick(1.0 + TRANSFER_HANGUP)
    assert len(c.byes("1002")) == 1 and call.state is CallState.ANSWERED


def test_a_transfer_to_a_refer_to_that_cannot_be_read_is_400_and_parks_nothing() -> None:
    c = Clinic()
    call = c.talking()
    assert c.port.statuses(refer(c, "<sip:700@[nonsense", 1.1, cseq=3))[-1] == 400
    assert not call.parked and call.winner is not None and c.port.sent("NOTIFY") == []


# -- phones with direct media: moved to the relay first -------------------------------------------


def _reinvites(c: Clinic, extension: str) -> list[tuple[Request, ClientTransaction]]:
    """Sentral's own re-INVITEs to ``extension``'s phone (its first INVITE aside)."""
    port = PHONES[extension]
    return [(r, tx) for r, t, tx in c.port.requests if r.method == "INVITE" and r.to_tag and t.port == port]


def _take(
    c: Clinic, extension: str, request: Request, tx: ClientTransaction, now: float, status: int = 200
) -> None:
    """``extension``'s phone answers Sentral's re-INVITE with ``status``."""
    headers = [("Contact", f"<sip:{extension}@127.0.0.1:{PHONES[extension]}>")]
    if status == 200:
        headers.append(("Content-Type", "application/sdp"))
    body = SDP_A if status == 200 else b""
    c.cc.on_response(tx, make_response(request, status, headers=headers, body=body), now)


def test_a_phone_with_direct_media_is_moved_to_the_relay_then_parked_and_the_parker_hears_the_slot() -> None:
    c = Clinic()
    c.media.direct = {"a", "b1"}
    call = c.talking()
    c.key(call, "b1", PARK_CODE, 1.0)
    # Alice's phone sends its media straight to Bob's: first it gets the relay's offer.
    [(reinvite, tx)] = _reinvites(c, "1001")
    assert b"a=fake:relay:a" in reinvite.body
    assert not call.parked and ("music", "a", "on") not in c.media.asked
    c.key(call, "b1", PARK_CODE, 1.5)  # keyed again meanwhile: nothing more happens
    assert len(_reinvites(c, "1001")) == 1
    _take(c, "1001", reinvite, tx, 1.6)
    assert call.parked == "701" and ("music", "a", "on") in c.media.asked
    assert any(a.cseq.seq == reinvite.cseq.seq for a, _ in c.port.acks)
    # Bob, the parker, is moved too, so that he hears the slot.
    [(to_bob, bob_tx)] = _reinvites(c, "1002")
    assert b"a=fake:relay:b1" in to_bob.body and not [a for a in c.media.asked if a[0] == "play"]
    _take(c, "1002", to_bob, bob_tx, 1.7)
    assert ("play", "b1", "call_parked_on", "digit_7", "digit_0", "digit_1") in c.media.asked
    c.tick(1.7 + PROMPT + PROMPT_TAIL - 0.05)
    assert c.byes("1002") == []
    c.tick(1.7 + PROMPT + PROMPT_TAIL)
    assert len(c.byes("1002")) == 1 and call.state is CallState.ANSWERED
    # Anyone dialling the slot takes the call as from any parked phone.
    tx = c.dial("1003", "701", 5.0)
    assert c.port.statuses(tx)[-1] == 200 and not call.parked


def test_a_phone_that_will_not_move_to_the_relay_is_not_parked_and_the_slot_stays_free() -> None:
    c = Clinic()
    c.media.direct = {"a", "b1"}
    call = c.talking()
    c.key(call, "b1", PARK_CODE, 1.0)
    [(reinvite, tx)] = _reinvites(c, "1001")
    _take(c, "1001", reinvite, tx, 1.1, status=488)
    assert not call.parked and call.winner is not None and ("relay_refused", "a") in c.media.asked
    assert not c.cc.lots.first(DIRECTORY, DOMAIN).occupied()  # type: ignore[union-attr]
    assert c.byes("1001") == [] and c.byes("1002") == []
    c.key(call, "b1", PARK_CODE, 5.0)  # the keys work again
    assert len(_reinvites(c, "1001")) == 2


def test_a_transfer_to_the_park_number_is_accepted_once_the_phone_is_at_the_relay() -> None:
    c = Clinic()
    c.media.direct = {"a", "b1"}
    call = c.talking()
    tx = refer(c, f"<sip:700@{DOMAIN}>", 1.0)
    assert c.port.statuses(tx) == []
    [(reinvite, re_tx)] = _reinvites(c, "1001")
    _take(c, "1001", reinvite, re_tx, 1.1)
    assert c.port.statuses(tx) == [202] and call.parked == "701"
    assert len(c.port.sent("NOTIFY", PHONES["1002"])) == 1
    assert _reinvites(c, "1002") == []  # the transferring phone hears no slot: not moved


def test_a_transfer_to_the_park_number_the_phone_cannot_follow_gets_503() -> None:
    c = Clinic()
    c.media.direct = {"a", "b1"}
    call = c.talking()
    tx = refer(c, f"<sip:700@{DOMAIN}>", 1.0)
    [(reinvite, re_tx)] = _reinvites(c, "1001")
    _take(c, "1001", reinvite, re_tx, 1.1, status=488)
    assert c.port.statuses(tx) == [503] and not call.parked and c.port.sent("NOTIFY") == []
