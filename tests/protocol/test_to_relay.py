"""``CallControl.to_relay``: a phone with direct media is moved to the relay with a re-INVITE of
Sentral's own, before it is parked, held or transferred; message by message on a fake clock,
first against the recording media layer of test_anchoring, then against the real anchor.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from sentral.media.anchor import MediaAnchor
from sentral.media.latch import PortPool
from sentral.pbx.anchoring import AnchoredMedia
from sentral.pbx.call import Call, CallState, Leg
from sentral.pbx.sip.message import Request, Response, make_response
from sentral.pbx.sip.sdp import Direction, parse_sdp
from sentral.pbx.sip.transaction import ClientTransaction
from tests.protocol.test_anchoring import HOST, FakeMedia, _b_bye, _library, sdp_with
from tests.protocol.test_call import SDP_B, World, b_request, head_of, parse, parse_ack


def direct_call(direct: set[str]) -> tuple[World, FakeMedia, Call, Request, Response]:
    """1001 calls 1002, who answers; the legs in ``direct`` send their media past the relay."""
    w, media = World(), FakeMedia(direct=set(direct))
    w.cc.media = media
    w.invite()
    b_req, b_tx = w.b_invite()
    ok = w.answer(b_req, 200, tag="btag", sdp=SDP_B)
    w.cc.on_response(b_tx, ok, 0.5)
    w.cc.on_ack(parse_ack(w), 0.6)
    [call] = w.cc.calls.values()
    return w, media, call, b_req, ok


class Told(list[bool]):
    """What ``to_relay`` tells its ``then``: whether the phone moved, in order; and when."""

    at: list[float]

    def __init__(self) -> None:
        super().__init__()
        self.at = []

    def __call__(self, moved: bool, now: float) -> None:
        self.append(moved)
        self.at.append(now)


def moves(w: World, call: Call, leg: Leg, now: float) -> Told:
    """Ask to move ``leg``'s phone to the relay; what ``then`` is told fills the list."""
    told = Told()
    w.cc.to_relay(call, leg, now, told)
    return told


def reinvites(w: World, port: int) -> list[tuple[Request, ClientTransaction]]:
    """The re-INVITEs sent to the phone at ``port`` (its initial INVITE aside)."""
    return [(r, tx) for r, tx in w.port.sent("INVITE", port) if r.to_tag]


def reply(request: Request, status: int, sdp: bytes = b"") -> Response:
    headers = [("Contact", "<sip:1002@127.0.0.1:5001>")]
    if sdp:
        headers.append(("Content-Type", "application/sdp"))
    return make_response(request, status, headers=headers, body=sdp)


def test_an_anchored_leg_is_at_the_relay_already() -> None:
    w, media, call, _, _ = direct_call(set())
    sent = len(w.port.requests)
    assert moves(w, call, call.winner, 1.0) == [True]  # type: ignore[arg-type]
    assert len(w.port.requests) == sent and ("relay_offer", "b1") not in media.asked


def test_a_direct_phone_gets_the_relays_offer_and_is_there_once_its_answer_is_acked() -> None:
    w, media, call, b_req, _ = direct_call({"a", "b1"})
    b = call.winner
    assert b is not None
    told = moves(w, call, b, 1.0)
    [(reinvite, tx)] = reinvites(w, 5001)
    assert told == []  # not before the phone has answered
    assert b"a=fake:relay:b1" in reinvite.body and reinvite.content_type == "application/sdp"
    assert reinvite.call_id == b_req.call_id and reinvite.to_tag == "btag"
    assert reinvite.cseq.seq > b_req.cseq.seq and "INVITE" in str(reinvite.header("allow"))
    w.cc.on_response(tx, reply(reinvite, 100), 1.05)
    assert told == []
    w.cc.on_response(tx, reply(reinvite, 200, sdp_with(42002)), 1.1)
    [(ack, _)] = [(a, t) for a, t in w.port.acks if a.cseq.seq == reinvite.cseq.seq]
    assert ack.call_id == b_req.call_id and told == [True] and told.at == [1.1]
    assert ("answer_received", "b1") in media.asked and media.anchored(call, b)
    # Only that phone moved; the call goes on, and the other phone may be moved in its own turn.
    assert call.state is CallState.ANSWERED and not w.port.sent("BYE")
    assert moves(w, call, b, 1.2) == [True] and len(reinvites(w, 5001)) == 1


def test_the_callers_phone_is_moved_in_the_callers_own_dialog() -> None:
    w, _, call, _, _ = direct_call({"a", "b1"})
    told = moves(w, call, call.a, 1.0)
    [(reinvite, tx)] = [(r, tx) for r, tx in w.port.sent("INVITE", 4001)]
    assert reinvite.call_id == "a-call@phone" and reinvite.to_tag == "atag"
    assert reinvite.uri_text == "sip:1001@127.0.0.1:4001"
    assert b"a=fake:relay:a" in reinvite.body
    w.cc.on_response(tx, reply(reinvite, 200, sdp_with(40002)), 1.1)
    assert told == [True]


@pytest.mark.parametrize("status", [488, 500, 603])
def test_a_phone_that_refuses_the_move_stays_where_it_was_and_the_call_goes_on(status: int) -> None:
    w, media, call, _, _ = direct_call({"a", "b1"})
    told = moves(w, call, call.winner, 1.0)  # type: ignore[arg-type]
    [(reinvite, tx)] = reinvites(w, 5001)
    w.cc.on_response(tx, reply(reinvite, status), 1.1)
    assert told == [False] and ("relay_refused", "b1") in media.asked
    assert call.state is CallState.ANSWERED and not w.port.sent("BYE")
    w.cc.on_timer(10.0)
    assert len(reinvites(w, 5001)) == 1  # no second try after a refusal


def test_a_phone_that_does_not_answer_stays_where_it_was() -> None:
    w, media, call, _, _ = direct_call({"a", "b1"})
    told = moves(w, call, call.winner, 1.0)  # type: ignore[arg-type]
    [(_, tx)] = reinvites(w, 5001)
    w.cc.on_timeout(tx, 33.0)
    assert told == [False] and ("relay_refused", "b1") in media.asked
    assert call.state is CallState.ANSWERED and not w.port.sent("BYE")


def test_without_a_relay_nothing_is_sent_and_the_answer_is_no() -> None:
    w = World()  # OriginPerLeg: SDP passes through, nothing plays
    w.invite()
    b_req, b_tx = w.b_invite()
    w.cc.on_response(b_tx, w.answer(b_req, 200, tag="btag", sdp=SDP_B), 0.5)
    [call] = w.cc.calls.values()
    assert moves(w, call, call.winner, 1.0) == [False]  # type: ignore[arg-type]
    assert reinvites(w, 5001) == []


def test_after_a_491_the_move_is_tried_once_more_after_the_rfc_3261_wait() -> None:
    w, media, call, b_req, ok = direct_call({"a", "b1"})
    told = moves(w, call, call.winner, 1.0)  # type: ignore[arg-type]
    [(first, tx)] = reinvites(w, 5001)
    # Glare: the phone re-INVITEs too. Ours is outstanding, so its offer gets 491 ...
    theirs = b_request(b_req, ok, "INVITE", 5, sdp=sdp_with(42004))
    their_tx = w.server_tx(theirs)
    w.cc.on_request(their_tx, theirs, 1.01)
    assert w.port.statuses(their_tx) == [491]
    # ... and so does ours.
    w.cc.on_response(tx, reply(first, 491), 1.02)
    assert told == [] and ("relay_refused", "b1") in media.asked
    # We chose this dialog's Call-ID: RFC 3261 §14.1 wants 2.1 to 4 s before the retry.
    due = w.cc.next_deadline()
    assert due is not None and 1.02 + 2.1 <= due <= 1.02 + 4.0
    w.cc.on_timer(due - 0.01)
    assert len(reinvites(w, 5001)) == 1
    w.cc.on_timer(due)
    [_, (second, tx2)] = reinvites(w, 5001)
    assert second.cseq.seq > first.cseq.seq and b"a=fake:relay:b1" in second.body
    w.cc.on_response(tx2, reply(second, 200, sdp_with(42002)), due + 0.1)
    assert told == [True] and told.at == [due + 0.1]


def test_a_second_491_gives_up() -> None:
    w, _, call, _, _ = direct_call({"a", "b1"})
    told = moves(w, call, call.winner, 1.0)  # type: ignore[arg-type]
    [(first, tx)] = reinvites(w, 5001)
    w.cc.on_response(tx, reply(first, 491), 1.1)
    w.cc.on_timer(5.2)
    [_, (second, tx2)] = reinvites(w, 5001)
    w.cc.on_response(tx2, reply(second, 491), 5.3)
    assert told == [False]
    w.cc.on_timer(20.0)
    assert len(reinvites(w, 5001)) == 2 and call.state is CallState.ANSWERED


def test_an_exchange_under_way_on_the_leg_is_waited_for() -> None:
    w, _, call, _, _ = direct_call({"a", "b1"})
    _, hold = w.a_request("INVITE", sdp=sdp_with(40000))  # passed on to B, not answered yet
    [(relayed, relayed_tx)] = reinvites(w, 5001)
    told = moves(w, call, call.winner, 1.0)  # type: ignore[arg-type]
    assert len(reinvites(w, 5001)) == 1 and told == []
    w.cc.on_response(relayed_tx, reply(relayed, 200, sdp_with(42000)), 1.1)
    w.cc.on_ack(parse(head_of(hold, "ACK")), 1.2)
    w.cc.on_timer(5.1)  # the B leg's dialog is ours: at most 4 s
    [_, (mine, tx)] = reinvites(w, 5001)
    assert b"a=fake:relay:b1" in mine.body
    w.cc.on_response(tx, reply(mine, 200, sdp_with(42002)), 5.2)
    assert told == [True]


def test_a_call_that_ends_while_the_move_waits_is_told_no() -> None:
    w, _, call, b_req, ok = direct_call({"a", "b1"})
    told = moves(w, call, call.winner, 1.0)  # type: ignore[arg-type]
    [(first, tx)] = reinvites(w, 5001)
    w.cc.on_response(tx, reply(first, 491), 1.1)
    w.cc.on_request(*_b_bye(w, b_req, ok), 1.5)
    assert call.state is CallState.ENDED and told == [False]
    w.cc.on_timer(10.0)
    assert len(reinvites(w, 5001)) == 1


# -- against the relay ------------------------------------------------------------------------------


def anchored_direct_call(
    tmp_path: Path, first: int
) -> tuple[World, MediaAnchor, PortPool, Call, Request, Response]:
    """A call between two phones with direct media, through the real anchor."""
    pool = PortPool(first, first + 99)
    anchor = MediaAnchor(HOST, pool, sounds=_library(tmp_path))
    w = World()
    w.cc.media = AnchoredMedia(anchor, direct_media=lambda domain, ext: ext in ("1001", "1002"))
    w.invite()
    b_req, b_tx = w.b_invite()
    ok = w.answer(b_req, 200, tag="btag", sdp=SDP_B)
    w.cc.on_response(b_tx, ok, 0.5)
    w.cc.on_ack(parse_ack(w), 0.6)
    [call] = w.cc.calls.values()
    assert parse_sdp(b_req.body).media[0].port == 40000 and pool.in_use == 0  # direct
    return w, anchor, pool, call, b_req, ok


def test_a_moved_phone_is_offered_a_relay_port_in_the_same_session_and_hears_music(tmp_path: Path) -> None:
    async def scenario() -> None:
        w, anchor, pool, call, b_req, ok = anchored_direct_call(tmp_path, 43400)
        b = call.winner
        assert b is not None and not w.cc.media.anchored(call, b) and not w.cc.media.music(call, b, True)
        told = moves(w, call, b, 1.0)
        [(reinvite, tx)] = reinvites(w, 5001)
        offer, before = parse_sdp(reinvite.body), parse_sdp(b_req.body)
        assert 43400 <= offer.media[0].port <= 43499
        # The o= line goes on (RFC 3264 §8): the same session, one version up.
        assert offer.origin.session_id == before.origin.session_id
        assert offer.origin.version == before.origin.version + 1
        assert not w.cc.media.anchored(call, b)  # not before it has answered
        w.cc.on_response(tx, reply(reinvite, 200, sdp_with(42002)), 1.1)
        assert told == [True] and w.cc.media.anchored(call, b)
        assert not w.cc.media.anchored(call, call.a)  # the caller's phone did not move
        assert w.cc.media.music(call, b, True) and anchor.playing(call.id, "b1")
        w.cc.on_request(*_b_bye(w, b_req, ok), 2.0)
        assert pool.in_use == 0 and len(anchor) == 0

    asyncio.run(scenario())


def test_a_phone_refusing_the_move_keeps_its_direct_media_and_no_port(tmp_path: Path) -> None:
    async def scenario() -> None:
        w, _, pool, call, _, _ = anchored_direct_call(tmp_path, 43500)
        told = moves(w, call, call.winner, 1.0)  # type: ignore[arg-type]
        [(reinvite, tx)] = reinvites(w, 5001)
        assert pool.in_use > 0
        w.cc.on_response(tx, reply(reinvite, 488), 1.1)
        assert told == [False] and pool.in_use == 0
        assert not w.cc.media.anchored(call, call.winner)  # type: ignore[arg-type]
        # A's next offer still passes straight through to B.
        w.a_request("INVITE", sdp=sdp_with(40010))
        [_, (relayed, _)] = reinvites(w, 5001)
        assert parse_sdp(relayed.body).media[0].port == 40010

    asyncio.run(scenario())


def test_holding_a_direct_call_moves_both_phones_to_the_relay_and_the_held_one_hears_music(
    tmp_path: Path,
) -> None:
    async def scenario() -> None:
        w, anchor, pool, call, b_req, ok = anchored_direct_call(tmp_path, 43600)
        a_ok = w.a_response(200)
        # A holds B: B is offered the relay, not A's address, and A gets the relay's answer.
        _, hold = w.a_request("INVITE", sdp=sdp_with(40000, "sendonly"))
        [(reinvite, re_tx)] = reinvites(w, 5001)
        to_b = parse_sdp(reinvite.body)
        assert 43600 <= to_b.media[0].port <= 43699 and to_b.media[0].direction is Direction.SENDONLY
        assert to_b.origin.session_id == parse_sdp(b_req.body).origin.session_id
        w.cc.on_response(re_tx, reply(reinvite, 200, sdp_with(42000, "recvonly")), 1.0)
        [answer] = [r for t, r in w.port.responses if r.cseq.seq == hold.cseq.seq and r.status == 200]
        to_a = parse_sdp(answer.body)
        assert 43600 <= to_a.media[0].port <= 43699
        assert to_a.origin.session_id == parse_sdp(a_ok.body).origin.session_id
        assert anchor.playing(call.id, "b1") and not anchor.playing(call.id, "a")
        w.cc.on_ack(parse(head_of(hold, "ACK")), 1.1)
        # A resumes: the offer crosses the relay (the call stays anchored) and the music stops.
        _, resume = w.a_request("INVITE", sdp=sdp_with(40000))
        [_, (again, again_tx)] = reinvites(w, 5001)
        assert 43600 <= parse_sdp(again.body).media[0].port <= 43699
        assert not anchor.playing(call.id, "b1")
        w.cc.on_response(again_tx, reply(again, 200, sdp_with(42000)), 2.0)
        w.cc.on_ack(parse(head_of(resume, "ACK")), 2.1)
        assert w.cc.media.anchored(call, call.a) and w.cc.media.anchored(call, call.winner)  # type: ignore[arg-type]
        w.cc.on_request(*_b_bye(w, b_req, ok), 3.0)
        assert pool.in_use == 0 and len(anchor) == 0

    asyncio.run(scenario())


def test_an_offer_that_does_not_hold_still_passes_a_direct_call_straight_through(tmp_path: Path) -> None:
    async def scenario() -> None:
        w, _, pool, _, _, _ = anchored_direct_call(tmp_path, 43700)
        w.a_request("INVITE", sdp=sdp_with(40020))
        [(reinvite, _)] = reinvites(w, 5001)
        assert parse_sdp(reinvite.body).media[0].port == 40020 and pool.in_use == 0

    asyncio.run(scenario())
