"""Call control and the media layer: which leg each SDP came from, what happens when the media
layer refuses one, what Sentral plays itself (prompts, queue music, music on hold), dead media,
DTMF; first against a media layer that records what it is asked, then against the real anchor.

The phones are played by hand as in test_call and test_group_calls, on a fake clock.
"""

from __future__ import annotations

import asyncio
import math
import socket
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import pytest

from sentral.media.anchor import MediaAnchor
from sentral.media.dtmf import Digit, TelephoneEvent, build_event
from sentral.media.latch import PortPool
from sentral.media.rtp import RtpHeader, build_rtp
from sentral.media.sounds import DONE_TONE, SoundLibrary
from sentral.media.wav import write_wav
from sentral.pbx.anchoring import PROMPT_LEAD, AnchoredMedia
from sentral.pbx.call import FEATURE_HANGUP, PROMPT_TAIL, Call, CallState, Leg
from sentral.pbx.features.codes import feature_prompt
from sentral.pbx.hunting import FIRST_ANNOUNCEMENT
from sentral.pbx.sip.errors import SipError
from sentral.pbx.sip.message import Request, Response, make_response
from sentral.pbx.sip.sdp import Direction, parse_sdp
from tests.protocol.test_call import SDP_A, SDP_B, World, b_request, head_of, parse, parse_ack
from tests.protocol.test_group_calls import Clinic, _bye_from_member, group

HOST = "127.0.0.1"


@dataclass
class FakeMedia:
    """A media layer that records what it is asked; the SDP it hands back says what it was."""

    asked: list[tuple[str, ...]] = field(default_factory=list)
    refuse: dict[str, SipError] = field(default_factory=dict)
    prompt: float | None = 2.0
    activity: float | None = 0.0
    held: bool = False
    playing_music: set[str] = field(default_factory=set)
    direct: set[str] = field(default_factory=set)  # legs whose phones send media past the relay
    relay: bool = True  # False: a media layer without a relay, like OriginPerLeg

    def _sdp(self, what: str, sdp: bytes) -> bytes:
        error = self.refuse.get(what.split(":")[0])
        if error is not None:
            raise error
        return sdp + f"a=fake:{what}\r\n".encode()

    def offer(self, call: Call, leg: Leg, sdp: bytes, source: Leg) -> bytes:
        self.asked.append(("offer", leg.id, source.id))
        return self._sdp(f"offer:{leg.id}<-{source.id}", sdp)

    def answer(self, call: Call, leg: Leg, sdp: bytes, source: Leg) -> bytes:
        self.asked.append(("answer", leg.id, source.id))
        return self._sdp(f"answer:{leg.id}<-{source.id}", sdp)

    def answer_locally(self, call: Call, leg: Leg, offer: bytes, like: Leg | None = None) -> bytes:
        self.asked.append(("answer_locally", leg.id) + ((f"like:{like.id}",) if like is not None else ()))
        return self._sdp(f"local:{leg.id}", SDP_B)

    def offer_locally(self, call: Call, leg: Leg, like: Leg | None = None) -> bytes:
        self.asked.append(("offer_locally", leg.id) + ((f"like:{like.id}",) if like is not None else ()))
        return self._sdp(f"local:{leg.id}", SDP_B)

    def join(self, call: Call, leg: Leg, other: Leg) -> None:
        self.asked.append(("join", leg.id, other.id))

    def move(self, call: Call, leg: Leg, into: Call, leg_id: str) -> None:
        self.asked.append(("move", leg.id, leg_id))

    def answer_received(self, call: Call, leg: Leg, sdp: bytes) -> None:
        self.asked.append(("answer_received", leg.id))
        self.direct.discard(leg.id)

    def anchored(self, call: Call, leg: Leg) -> bool:
        return self.relay and leg.id not in self.direct

    def relay_offer(self, call: Call, leg: Leg) -> bytes | None:
        self.asked.append(("relay_offer", leg.id))
        return self._sdp(f"relay:{leg.id}", SDP_B) if self.relay else None

    def relay_refused(self, call: Call, leg: Leg) -> None:
        self.asked.append(("relay_refused", leg.id))

    def play(self, call: Call, leg: Leg, names: Sequence[str]) -> float | None:
        self.asked.append(("play", leg.id, *names))
        return self.prompt

    def music(self, call: Call, leg: Leg, on: bool) -> bool:
        self.asked.append(("music", leg.id, "on" if on else "off"))
        if on:
            self.playing_music.add(leg.id)
        else:
            self.playing_music.discard(leg.id)
        return on

    def ringback(self, call: Call, leg: Leg) -> bool:
        self.asked.append(("ringback", leg.id))
        self.playing_music.add(leg.id)
        return True

    def announce(self, call: Call, leg: Leg, names: Sequence[str]) -> bool:
        self.asked.append(("announce", leg.id, *names))
        return True

    def last_activity(self, call: Call) -> float | None:
        return self.activity

    def on_hold(self, call: Call) -> bool:
        return self.held

    def release_leg(self, call: Call, leg: Leg) -> None:
        self.asked.append(("release_leg", leg.id))

    def release(self, call: Call) -> None:
        self.asked.append(("release",))


def fake_world(ports: tuple[int, ...] = (5001,)) -> tuple[World, FakeMedia]:
    world, media = World(ports=ports), FakeMedia()
    world.cc.media = media
    return world, media


def sdp_with(port: int, direction: str = "sendrecv") -> bytes:
    return (
        f"v=0\r\no=bob 222 7 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
        f"m=audio {port} RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\n"
        f"a={direction}\r\n"
    ).encode()


# -- the seam -------------------------------------------------------------------------------------


def test_every_sdp_names_the_leg_it_came_from_and_a_losing_fork_is_released() -> None:
    w, media = fake_world(ports=(5001, 5002))
    w.invite()
    (b1, tx1), (b2, tx2) = w.port.sent("INVITE")
    assert b"a=fake:offer:b1<-a" in b1.body and b"a=fake:offer:b2<-a" in b2.body
    # b2 shows early media, then b1 answers: the caller hears b2, then talks to b1.
    w.cc.on_response(tx2, w.answer(b2, 183, tag="e2", sdp=SDP_B, port=5002), 0.5)
    assert b"a=fake:answer:a<-b2" in w.a_response(183).body
    w.cc.on_response(tx1, w.answer(b1, 200, tag="w1", sdp=SDP_B), 1.0)
    assert b"a=fake:answer:a<-b1" in w.a_response(200).body
    assert ("release_leg", "b2") in media.asked and ("release_leg", "b1") not in media.asked
    w.cc.on_ack(parse_ack(w), 1.1)
    w.a_request("BYE")
    assert media.asked[-1] == ("release",)


def test_media_the_layer_cannot_set_up_refuses_the_caller_with_its_status() -> None:
    w, media = fake_world()
    media.refuse["offer"] = SipError(503, "Service Unavailable", headers=(("Retry-After", "5"),))
    w.invite()
    assert w.port.statuses(w.a_tx)[-1] == 503
    assert w.a_response(503).header("retry-after") == "5"
    assert w.port.sent("INVITE") == []  # no phone rings with media that goes nowhere
    [report] = w.port.reports
    assert report.status == 503 and report.legs[1].status == 503
    assert ("release",) in media.asked


def test_an_answer_the_layer_refuses_ends_the_callee_and_the_caller_gets_its_status() -> None:
    w, media = fake_world()
    media.refuse["answer"] = SipError(488, "Not Acceptable Here")
    w.invite()
    [(b_req, b_tx)] = w.port.sent("INVITE")
    w.cc.on_response(b_tx, w.answer(b_req, 200, tag="b", sdp=SDP_B), 1.0)
    assert w.port.statuses(w.a_tx)[-1] == 488
    [(ack, _)] = w.port.acks
    [(bye, _)] = w.port.sent("BYE")
    assert ack.to_tag == bye.to_tag == "b"
    [report] = w.port.reports
    assert report.status == 488 and report.answered is None


def test_a_reoffer_the_layer_refuses_is_answered_with_its_status_and_the_call_goes_on() -> None:
    w, media = fake_world()
    w.connect()
    w.cc.on_ack(parse_ack(w), 0.1)
    media.refuse["offer"] = SipError(488, "Not Acceptable Here")
    tx, _ = w.a_request("INVITE", sdp=SDP_A)
    assert w.port.statuses(tx)[-1] == 488
    assert w.port.sent("INVITE", 5001) == [w.b_invite()]  # nothing went to B
    del media.refuse["offer"]
    tx, _ = w.a_request("INVITE", sdp=SDP_A)
    assert w.port.statuses(tx)[-1] == 100  # the old offer is gone: a new one may pass
    assert len(w.port.sent("INVITE", 5001)) == 2


# -- what Sentral plays -----------------------------------------------------------------------------


def test_a_feature_code_plays_its_prompt_and_hangs_up_when_it_has_played() -> None:
    c = Clinic(group())
    media = FakeMedia(prompt=2.0)
    c.cc.media = media
    c.dial("*45")
    [(call, _)] = c.port.features
    c.cc.feature_done(call.id, "logged in to reception", 0.2)
    ok = c.port.responses[-1][1]
    assert ok.status == 200 and b"a=fake:local:a" in ok.body
    assert ("play", "a", "logged_in") in media.asked
    c.tick(0.2 + 2.0 + PROMPT_TAIL - 0.01)
    assert call.state is CallState.ANSWERED  # still playing
    c.tick(0.2 + 2.0 + PROMPT_TAIL)
    assert call.state is CallState.ENDED
    [report] = c.port.reports
    assert report.callee_name == "logged in to reception" and report.hangup_by == "system"


def test_without_a_prompt_a_feature_call_ends_after_the_fixed_delay() -> None:
    c = Clinic(group())
    c.cc.media = FakeMedia(prompt=None)
    c.dial("*45")
    [(call, _)] = c.port.features
    c.cc.feature_done(call.id, "logged out of every function", 0.0)
    c.tick(FEATURE_HANGUP - 0.01)
    assert call.state is CallState.ANSWERED
    c.tick(FEATURE_HANGUP)
    assert call.state is CallState.ENDED


@pytest.mark.parametrize(
    ("outcome", "prompt"),
    [
        ("logged in to reception, lab", "logged_in"),
        ("logged out of every function", "logged_out"),
        ("phone logged on", "logged_in"),
        ("phone logged off", "logged_out"),
        ("something else", DONE_TONE),
    ],
)
def test_the_prompt_says_what_the_feature_did(outcome: str, prompt: str) -> None:
    assert feature_prompt(outcome) == prompt


def test_a_late_offer_feature_call_gets_an_offer_and_its_ack_brings_the_answer() -> None:
    w, media = fake_world()
    w.invite(to="*45", sdp=b"")
    [(call, _)] = w.port.features
    w.cc.feature_done(call.id, "logged in to lab", 0.0)
    assert ("offer_locally", "a") in media.asked
    head = parse_ack(w).to_bytes().decode().split("\r\n\r\n")[0].split("\r\n")
    kept = "".join(line + "\r\n" for line in head if not line.lower().startswith("content-length"))
    w.cc.on_ack(parse(kept + "Content-Type: application/sdp\r\n", SDP_B), 0.1)
    assert ("answer_received", "a") in media.asked


def test_a_queued_caller_hears_music_as_early_media_until_a_member_answers() -> None:
    c = Clinic(group(members=("2001",)))
    media = FakeMedia()
    c.cc.media = media
    first = c.dial("500")
    c.reply("2001", 200, 0.5)
    assert c.statuses(first)[-1] == 200
    waiting = c.dial("500", 1.0)
    early = [r for t, r in c.port.responses if t is waiting and r.status == 183]
    assert len(early) == 1 and b"a=fake:local:a" in early[0].body
    assert ("music", "a", "on") in media.asked
    # The member hangs up: the waiting call rings the member with the same caller leg.
    first_request, _ = c.invites("2001")[0]
    c.cc.on_request(*_bye_from_member(c, first_request), 10.0)
    asked = len(media.asked)
    c.reply("2001", 180, 10.5, index=1)
    assert ("music", "a", "off") not in media.asked[asked:]  # music while the member's phone rings
    c.reply("2001", 200, 11.0, index=1)
    assert media.asked[asked:][:2] == [("answer", "a", "b1"), ("music", "a", "off")]
    assert c.statuses(waiting)[-1] == 200


def test_a_queued_caller_hears_the_members_early_media_rather_than_music() -> None:
    c = Clinic(group(members=("2001",)))
    media = FakeMedia()
    c.cc.media = media
    c.dial("500")
    c.reply("2001", 200, 0.5)
    c.dial("500", 1.0)
    first_request, _ = c.invites("2001")[0]
    c.cc.on_request(*_bye_from_member(c, first_request), 10.0)
    request, tx = c.invites("2001")[1]
    c.cc.on_response(tx, make_response(request, 183, to_tag="e", headers=[
        ("Contact", "<sip:2001@127.0.0.1:6001>"), ("Content-Type", "application/sdp")], body=SDP_B), 10.5)  # fmt: skip
    assert "a" not in media.playing_music


# -- dead media, DTMF --------------------------------------------------------------------------------


def test_a_call_whose_media_died_is_hung_up_and_the_record_says_no_media() -> None:
    w, media = fake_world()
    w.connect(now=0.0)
    w.cc.on_ack(parse_ack(w), 0.1)
    media.activity = 50.0
    assert w.cc.check_media(349.0, 300, 1800) == 0
    media.held = True
    assert w.cc.check_media(400.0, 300, 1800) == 0  # on hold: the longer limit
    media.held = False
    assert w.cc.check_media(350.0, 300, 1800) == 1
    assert sorted(target.port for request, target, _ in w.port.requests if request.method == "BYE") == [
        4001,
        5001,
    ]
    [report] = w.port.reports
    assert report.cause == "no media" and report.hangup_by == "system"


def test_without_a_media_layer_that_knows_nothing_is_dead() -> None:
    w, media = fake_world()
    w.connect()
    media.activity = None
    assert w.cc.check_media(1e6, 300, 1800) == 0


def test_dtmf_in_info_reaches_the_listener_and_is_still_passed_on() -> None:
    w, _ = fake_world()
    w.connect()
    w.cc.on_ack(parse_ack(w), 0.1)
    heard: list[tuple[str, str, Digit, float]] = []
    w.cc.on_dtmf = lambda call_id, leg_id, digit, now: heard.append((call_id, leg_id, digit, now))
    [call] = w.cc.calls.values()
    extra = "Content-Type: application/dtmf-relay\r\n"
    w.a_request("INFO", extra=extra, body=b"Signal=5\r\nDuration=160\r\n")
    w.a_request("INFO", extra=extra, body=b"Signal=nonsense\r\n")
    assert heard == [(call.id, "a", Digit("5", None, 160), 0.0)]
    assert len(w.port.sent("INFO")) == 2


# -- the real anchor ---------------------------------------------------------------------------------


def _library(tmp_path: Path) -> SoundLibrary:
    tone = struct.pack("<800h", *(round(8000 * math.sin(2 * math.pi * 440 * i / 8000)) for i in range(800)))
    write_wav(tmp_path / "music.wav", tone)
    return SoundLibrary([tmp_path])


def _relay_port(sdp: bytes) -> int:
    return parse_sdp(sdp).media[0].port


def _b_response(b_req: Request, ok: Response, reinvite: Request, sdp: bytes) -> Response:
    return make_response(
        reinvite,
        200,
        headers=[("Contact", "<sip:1002@127.0.0.1:5001>"), ("Content-Type", "application/sdp")],
        body=sdp,
    )


def test_anchored_calls_put_the_relay_in_every_sdp_and_hold_plays_music(tmp_path: Path) -> None:
    async def scenario() -> None:
        pool = PortPool(43000, 43099)
        anchor = MediaAnchor(HOST, pool, sounds=_library(tmp_path))
        w = World()
        w.cc.media = AnchoredMedia(anchor)
        w.invite()
        b_req, b_tx = w.b_invite()
        to_b = _relay_port(b_req.body)
        assert 43000 <= to_b <= 43099 and b"40000" not in b_req.body
        ok = w.answer(b_req, 200, tag="btag", sdp=SDP_B)
        w.cc.on_response(b_tx, ok, 0.5)
        [call] = w.cc.calls.values()
        to_a = _relay_port(w.a_response(200).body)
        assert anchor.ports(call.id, "a") == [to_a] and anchor.ports(call.id, "b1") == [to_b]
        w.cc.on_ack(parse_ack(w), 0.6)

        # A holds B: the re-INVITE crosses; once B has answered, B hears music from its port.
        _, hold = w.a_request("INVITE", sdp=sdp_with(40000, "sendonly"))
        reinvite, re_tx = w.port.sent("INVITE", 5001)[-1]
        assert parse_sdp(reinvite.body).media[0].direction is Direction.SENDONLY
        assert not anchor.playing(call.id, "b1")
        w.cc.on_response(re_tx, _b_response(b_req, ok, reinvite, sdp_with(42000, "recvonly")), 1.0)
        assert anchor.playing(call.id, "b1") and not anchor.playing(call.id, "a")
        assert w.cc.media.on_hold(call)
        w.cc.on_ack(parse(head_of(hold, "ACK")), 1.1)
        # A resumes: the music stops as the offer passes, before B has even answered.
        tx, _ = w.a_request("INVITE", sdp=sdp_with(40000))
        assert w.port.statuses(tx) == [100]
        assert not anchor.playing(call.id, "b1")

        w.cc.on_request(*_b_bye(w, b_req, ok), 2.0)
        assert pool.in_use == 0 and len(anchor) == 0

    asyncio.run(scenario())


def _b_bye(w: World, b_req: Request, ok: Response) -> tuple[object, Request]:
    bye = b_request(b_req, ok, "BYE", 9)
    return w.server_tx(bye), bye


def test_a_queued_caller_keeps_one_relay_port_from_the_music_to_the_member(tmp_path: Path) -> None:
    async def scenario() -> None:
        pool = PortPool(43100, 43199)
        anchor = MediaAnchor(HOST, pool, sounds=_library(tmp_path))
        c = Clinic(group(members=("2001",)))
        c.cc.media = AnchoredMedia(anchor)
        c.dial("500")
        c.reply("2001", 200, 0.5)
        waiting = c.dial("500", 1.0)
        [early] = [r for t, r in c.port.responses if t is waiting and r.status == 183]
        port = _relay_port(early.body)
        call = next(call for call in c.cc.calls.values() if call.state is CallState.RINGING)
        assert anchor.playing(call.id, "a")
        first_request, _ = c.invites("2001")[0]
        c.cc.on_request(*_bye_from_member(c, first_request), 10.0)
        c.reply("2001", 200, 11.0, index=1)
        ok = next(r for t, r in c.port.responses if t is waiting and r.status == 200)
        assert _relay_port(ok.body) == port
        assert not anchor.playing(call.id, "a")

    asyncio.run(scenario())


def test_a_feature_call_is_answered_from_the_relay_with_the_prompt_playing(tmp_path: Path) -> None:
    async def scenario() -> None:
        library = _library(tmp_path)
        (tmp_path / "nb").mkdir()
        write_wav(tmp_path / "nb" / "logged_in.wav", bytes(2 * 8000))  # one second
        pool = PortPool(43200, 43299)
        anchor = MediaAnchor(HOST, pool, sounds=library)
        c = Clinic(group())
        c.cc.media = AnchoredMedia(anchor)
        c.dial("*45")
        [(call, _)] = c.port.features
        c.cc.feature_done(call.id, "logged in to reception", 5.0)
        ok = c.port.responses[-1][1]
        assert _relay_port(ok.body) == anchor.ports(call.id, "a")[0]
        assert anchor.playing(call.id, "a")
        ends = 5.0 + PROMPT_LEAD + 1.0 + PROMPT_TAIL
        c.tick(ends - 0.01)
        assert call.state is CallState.ANSWERED
        c.tick(ends)
        assert call.state is CallState.ENDED and pool.in_use == 0

    asyncio.run(scenario())


def test_rfc4733_digits_from_a_phone_reach_call_control(tmp_path: Path) -> None:
    async def scenario() -> None:
        pool = PortPool(43300, 43399)
        w = World()
        anchor = MediaAnchor(HOST, pool, on_dtmf=lambda call, leg, digit: w.cc.digit(call, leg, digit, 1.0))
        w.cc.media = AnchoredMedia(anchor)
        heard: list[tuple[str, str, str]] = []
        w.cc.on_dtmf = lambda call_id, leg_id, digit, now: heard.append((call_id, leg_id, digit.key))
        phone = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        phone.bind((HOST, 0))
        try:
            w.invite()
            b_req, b_tx = w.b_invite()
            w.cc.on_response(b_tx, w.answer(b_req, 200, tag="b", sdp=sdp_with(phone.getsockname()[1])), 0.5)
            [call] = w.cc.calls.values()
            relay = ("127.0.0.1", _relay_port(b_req.body))
            for end in (False, True, True):
                payload = build_event(TelephoneEvent(7, end, 10, 800 if end else 0))
                phone.sendto(build_rtp(RtpHeader(101, 1, 8000, 99), payload), relay)
            for _ in range(100):
                if heard:
                    break
                await asyncio.sleep(0.01)
            assert heard == [(call.id, "b1", "7")]
        finally:
            phone.close()
            anchor.relay.close()

    asyncio.run(scenario())


def test_the_answer_to_sentrals_own_session_refresh_reaches_the_media_layer() -> None:
    w, media = fake_world()
    w.invite()
    b_req, b_tx = w.b_invite()
    headers = [
        ("Contact", "<sip:1002@127.0.0.1:5001>"),
        ("Require", "timer"),
        ("Session-Expires", "90;refresher=uac"),
        ("Content-Type", "application/sdp"),
    ]
    w.cc.on_response(b_tx, make_response(b_req, 200, to_tag="btag", headers=headers, body=SDP_B), 0.0)
    w.cc.on_ack(parse_ack(w), 0.1)
    w.cc.on_timer(45.0)  # we refresh the B leg at half its interval
    [(refresh, refresh_tx)] = [(r, tx) for r, tx in w.port.sent("INVITE") if r.call_id == b_req.call_id][1:]
    assert refresh.body  # the SDP last sent on the leg
    moved = sdp_with(43000)
    answer = make_response(
        refresh,
        200,
        headers=[("Contact", "<sip:1002@127.0.0.1:5001>"), ("Content-Type", "application/sdp")],
        body=moved,
    )
    w.cc.on_response(refresh_tx, answer, 45.1)
    assert media.asked[-1] == ("answer_received", "b1")


@pytest.mark.parametrize(("direct", "anchored"), [({"1001", "1002"}, False), ({"1002"}, True), (set(), True)])
def test_media_goes_direct_only_between_two_phones_with_direct_media(
    tmp_path: Path, direct: set[str], anchored: bool
) -> None:
    async def scenario() -> None:
        pool = PortPool(43100, 43199)
        anchor = MediaAnchor(HOST, pool, sounds=_library(tmp_path))
        w = World()
        media = AnchoredMedia(
            anchor, direct_media=lambda domain, ext: domain == "clinic.test" and ext in direct
        )
        w.cc.media = media
        w.invite()
        b_req, b_tx = w.b_invite()
        w.cc.on_response(b_tx, w.answer(b_req, 200, tag="btag", sdp=SDP_B), 0.5)
        [call] = w.cc.calls.values()
        to_b, to_a = parse_sdp(b_req.body), parse_sdp(w.a_response(200).body)
        # Direct: each phone is told the other's own RTP port (A offered 40000, B answered 42000).
        ports = (to_b.media[0].port, to_a.media[0].port)
        if anchored:
            assert all(43100 <= port <= 43199 for port in ports), ports
        else:
            assert ports == (40000, 42000)
        assert len(anchor) == (1 if anchored else 0) and (pool.in_use > 0) == anchored
        assert media.music(call, call.a, True) is anchored  # nothing can be played without the relay
        w.cc.on_ack(parse_ack(w), 0.6)
        w.cc.on_request(*_b_bye(w, b_req, w.answer(b_req, 200, tag="btag", sdp=SDP_B)), 2.0)
        assert pool.in_use == 0 and len(anchor) == 0

    asyncio.run(scenario())


def test_a_waiting_caller_hears_its_place_in_the_queue_between_the_music() -> None:
    c = Clinic(replace(group(members=("2001",)), announce_every=20.0))
    media = FakeMedia()
    c.cc.media = media
    c.dial("500")
    c.reply("2001", 200, 0.5)
    second = c.dial("500", 1.0)
    c.dial("500", 2.0)
    c.tick(1.0 + FIRST_ANNOUNCEMENT - 0.01)
    assert not [a for a in media.asked if a[0] == "announce"]
    c.tick(1.0 + FIRST_ANNOUNCEMENT)
    c.tick(2.0 + FIRST_ANNOUNCEMENT)
    assert [a for a in media.asked if a[0] == "announce"] == [
        ("announce", "a", "you_are_number", "digit_1", "in_the_queue"),
        ("announce", "a", "you_are_number", "digit_2", "in_the_queue"),
    ]
    # An acute call arrives: at the next round the first waiting caller hears that it is second now.
    c.dial("599", 10.0)
    c.tick(1.0 + FIRST_ANNOUNCEMENT + 20.0)
    assert media.asked[-1] == ("announce", "a", "you_are_number", "digit_2", "in_the_queue")
    assert [r.status for t, r in c.port.responses if t is second][-1] == 183


def test_without_position_announcements_a_waiting_caller_hears_only_music() -> None:
    c = Clinic(group(members=("2001",)))
    media = FakeMedia()
    c.cc.media = media
    c.dial("500")
    c.reply("2001", 200, 0.5)
    c.dial("500", 1.0)
    c.tick(100.0)
    assert not [a for a in media.asked if a[0] == "announce"] and ("music", "a", "on") in media.asked
