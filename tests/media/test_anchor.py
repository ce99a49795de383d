"""The media anchor: SDP rewriting per leg (c=, m= ports, a=rtcp, o=, port-0 streams, ICE, hold)
and, end to end on loopback, audio, music on hold, prompts and DTMF through anchored calls."""

from __future__ import annotations

import asyncio
import math
import struct
from collections.abc import Iterator
from pathlib import Path

import pytest

from sentral.media import g711
from sentral.media.anchor import MediaAnchor, MediaError
from sentral.media.dtmf import Digit, TelephoneEvent, build_event
from sentral.media.latch import PortPool
from sentral.media.relay import Relay
from sentral.media.rtp import parse_rtp
from sentral.media.sounds import SoundLibrary
from sentral.media.wav import write_wav
from sentral.pbx.sip.errors import SipError
from sentral.pbx.sip.sdp import Direction, SessionDescription, parse_sdp
from tests.media.conftest import Runner
from tests.media.phones import Phone

HOST = "127.0.0.1"


def crlf(text: str) -> bytes:
    return text.replace("\n", "\r\n").encode()


def offer_from(host: str, port: int, *, direction: str = "sendrecv", rtcp: bool = True) -> bytes:
    """An offer shaped like pjsua's: media-level c=, a=rtcp, PCMU, PCMA and telephone-event."""
    rtcp_line = f"a=rtcp:{port + 1} IN IP4 {host}\n" if rtcp else ""
    return crlf(f"""\
v=0
o=- 3898393512 3898393512 IN IP4 {host}
s=pjmedia
t=0 0
m=audio {port} RTP/AVP 0 8 101
c=IN IP4 {host}
{rtcp_line}a={direction}
a=rtpmap:0 PCMU/8000
a=rtpmap:8 PCMA/8000
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-16
""")


def answer_from(host: str, port: int, *, codec: str = "0") -> bytes:
    """An answer shaped like a Yealink's: session-level c=, one codec and telephone-event."""
    return crlf(f"""\
v=0
o=- 20034 20034 IN IP4 {host}
s=SDP data
c=IN IP4 {host}
t=0 0
m=audio {port} RTP/AVP {codec} 101
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-15
a=ptime:20
a=sendrecv
""")


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    """An event loop the relay registers its sockets with (SDP tests need no running loop)."""
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


@pytest.fixture
def pool() -> PortPool:
    return PortPool(42000, 42099)


@pytest.fixture
def anchor(loop: asyncio.AbstractEventLoop, pool: PortPool) -> Iterator[MediaAnchor]:
    anchor = MediaAnchor(HOST, pool, relay=Relay(HOST, pool, loop=loop))
    yield anchor
    anchor.relay.close()


def test_offer_is_rewritten_to_the_legs_relay_port(anchor: MediaAnchor) -> None:
    out = parse_sdp(anchor.offer("c1", "b1", offer_from("192.168.1.23", 4000), "a"))
    (port,) = anchor.ports("c1", "b1")
    audio = out.media[0]
    assert (audio.port, audio.formats, audio.proto) == (port, ("0", "8", "101"), "RTP/AVP")
    assert str(out.media_connection(audio)) == f"IN IP4 {HOST}"
    assert audio.attribute("rtcp") == f"{port + 1} IN IP4 {HOST}"
    assert audio.attributes("rtpmap") == ["0 PCMU/8000", "8 PCMA/8000", "101 telephone-event/8000"]
    assert out.origin.username == "sentral"
    assert out.origin.address == HOST
    assert b"192.168.1.23" not in out.to_bytes()  # nothing of the caller's addresses leaks
    # The caller got a port of its own, which its phone will be told in the answer.
    assert anchor.ports("c1", "a")[0] not in (0, port)


def test_answer_goes_back_with_the_callers_port(anchor: MediaAnchor) -> None:
    anchor.offer("c1", "b1", offer_from("192.168.1.23", 4000), "a")
    out = parse_sdp(anchor.answer("c1", "a", answer_from("10.1.2.50", 11800), "b1"))
    (a_port,) = anchor.ports("c1", "a")
    assert out.media[0].port == a_port
    assert str(out.connection) == f"IN IP4 {HOST}"
    assert out.media[0].formats == ("0", "101")
    assert [line for line in out.media[0].lines if line[0] == "a"][-1] == ("a", "sendrecv")
    assert len(anchor.relay.endpoints) == 2


def test_origin_is_per_leg_and_bumps_only_on_change(anchor: MediaAnchor) -> None:
    first = parse_sdp(anchor.offer("c1", "b1", offer_from("192.168.1.23", 4000), "a")).origin
    again = parse_sdp(anchor.offer("c1", "b1", offer_from("192.168.1.23", 4000), "a")).origin
    assert again == first  # a re-offer of the same session keeps its version (RFC 3264 §8)
    changed = parse_sdp(anchor.offer("c1", "b1", offer_from("192.168.1.23", 4000, direction="sendonly"), "a"))
    assert changed.origin.version == first.version + 1
    assert changed.origin.session_id == first.session_id
    back = parse_sdp(anchor.answer("c1", "a", answer_from("10.1.2.50", 11800), "b1")).origin
    assert back.session_id != first.session_id


def test_rejected_and_unrelayable_streams_get_port_zero(anchor: MediaAnchor, pool: PortPool) -> None:
    offer = crlf("""\
v=0
o=- 1 1 IN IP4 192.168.1.23
s=-
c=IN IP4 192.168.1.23
t=0 0
m=audio 4000 RTP/AVP 0
a=rtcp-mux
m=video 0 RTP/AVP 96
a=rtpmap:96 H264/90000
m=image 4004 udptl t38
m=video 4006 RTP/AVPF 97
a=rtpmap:97 VP8/90000
""")
    out = parse_sdp(anchor.offer("c1", "b1", offer, "a"))
    assert [m.media for m in out.media] == ["audio", "video", "image", "video"]  # same lines, same order
    ports = anchor.ports("c1", "b1")
    assert ports[1] == ports[2] == 0
    assert [m.port for m in out.media] == ports
    assert ports[0] and ports[3] and ports[0] != ports[3]
    assert pool.in_use == 4  # two live streams, one port pair per leg each
    # rtcp-mux streams keep RTCP on the RTP port; no a=rtcp was added where there was none.
    assert out.media[0].attribute("rtcp") is None
    # The answer rejects the video: both legs' video endpoints go.
    answer = crlf("""\
v=0
o=- 2 2 IN IP4 10.1.2.50
s=-
c=IN IP4 10.1.2.50
t=0 0
m=audio 11800 RTP/AVP 0
a=rtcp-mux
m=video 0 RTP/AVP 96
m=image 0 udptl t38
m=video 0 RTP/AVPF 97
""")
    back = parse_sdp(anchor.answer("c1", "a", answer, "b1"))
    assert [m.port for m in back.media][1:] == [0, 0, 0]
    assert pool.in_use == 2


def test_rtcp_mux_attribute_points_at_the_rtp_port(anchor: MediaAnchor) -> None:
    offer = offer_from("192.168.1.23", 4000).replace(
        b"a=rtcp:4001 IN IP4 192.168.1.23", b"a=rtcp:4000\r\na=rtcp-mux"
    )
    out = parse_sdp(anchor.offer("c1", "b1", offer, "a"))
    (port,) = anchor.ports("c1", "b1")
    assert out.media[0].attribute("rtcp") == f"{port} IN IP4 {HOST}"


def test_ice_lines_are_dropped(anchor: MediaAnchor) -> None:
    offer = offer_from("192.168.1.23", 4000) + crlf(
        "a=ice-ufrag:abcd\na=ice-pwd:0123456789abcdefghijkl\n"
        "a=candidate:1 1 UDP 2130706431 192.168.1.23 4000 typ host\n"
    )
    out = anchor.offer("c1", "b1", offer, "a")
    assert b"candidate" not in out and b"ice-" not in out
    assert b"a=fmtp:101 0-16" in out


def test_hold_follows_the_offers(anchor: MediaAnchor) -> None:
    anchor.offer("c1", "b1", offer_from("192.168.1.23", 4000), "a")
    anchor.answer("c1", "a", answer_from("10.1.2.50", 11800), "b1")
    assert not anchor.hold_state("c1", "b1")
    anchor.offer("c1", "b1", offer_from("192.168.1.23", 4000, direction="sendonly"), "a")
    assert anchor.hold_state("c1", "b1")
    assert not anchor.hold_state("c1", "a")
    anchor.offer("c1", "b1", offer_from("192.168.1.23", 4000, direction="inactive"), "a")
    assert anchor.hold_state("c1", "b1")
    anchor.offer("c1", "b1", offer_from("192.168.1.23", 4000), "a")
    assert not anchor.hold_state("c1", "b1")
    # B puts A on hold the other way round.
    anchor.offer("c1", "a", offer_from("10.1.2.50", 11800, direction="sendonly"), "b1")
    assert anchor.hold_state("c1", "a")


def test_old_style_hold_keeps_saying_hold(anchor: MediaAnchor) -> None:
    hold = answer_from("0.0.0.0", 11800)
    out = parse_sdp(anchor.offer("c1", "a", hold, "b1"))
    assert anchor.hold_state("c1", "a")
    assert out.media[0].direction is Direction.SENDONLY
    assert str(out.connection) == f"IN IP4 {HOST}"
    assert out.is_hold()


def test_bad_sdp_gets_its_sip_status(anchor: MediaAnchor) -> None:
    with pytest.raises(SipError) as caught:
        anchor.offer("c1", "b1", b"this is not sdp", "a")
    assert caught.value.status == 400
    with pytest.raises(ValueError, match="different leg"):
        anchor.offer("c1", "a", offer_from("192.168.1.23", 4000), "a")


def test_running_out_of_ports_is_503(loop: asyncio.AbstractEventLoop) -> None:
    pool = PortPool(42200, 42203)  # two pairs: one call
    anchor = MediaAnchor(HOST, pool, relay=Relay(HOST, pool, loop=loop))
    try:
        anchor.offer("c1", "b1", offer_from("192.168.1.23", 4000), "a")
        with pytest.raises(SipError) as caught:
            anchor.offer("c2", "b1", offer_from("192.168.1.24", 4000), "a")
        assert caught.value.status == 503
        anchor.release("c1")
        anchor.release("c2")
        assert pool.in_use == 0
        anchor.offer("c3", "b1", offer_from("192.168.1.25", 4000), "a")
        assert pool.in_use == 2
    finally:
        anchor.relay.close()


def test_release_frees_every_port(anchor: MediaAnchor, pool: PortPool) -> None:
    anchor.offer("c1", "b1", offer_from("192.168.1.23", 4000), "a")
    anchor.offer("c1", "b2", offer_from("192.168.1.23", 4000), "a")  # a second fork
    assert pool.in_use == 3
    anchor.release_leg("c1", "b2")
    assert pool.in_use == 2
    anchor.release("c1")
    anchor.release("c1")
    assert pool.in_use == 0
    assert len(anchor) == 0
    with pytest.raises(MediaError, match="no media for call"):
        anchor.last_activity("c1")
    with pytest.raises(MediaError, match="no media for leg"):
        anchor.hold_state("c1", "a")


def test_unspecified_address_is_refused(pool: PortPool) -> None:
    with pytest.raises(ValueError, match="real address"):
        MediaAnchor("0.0.0.0", pool, advertise="0.0.0.0")
    with pytest.raises(ValueError, match="not an IP address"):
        MediaAnchor("pbx.clinic.test", pool)


def test_a_wildcard_relay_advertises_the_address_each_leg_reaches(
    loop: asyncio.AbstractEventLoop, pool: PortPool
) -> None:
    anchor = MediaAnchor("0.0.0.0", pool, relay=Relay("0.0.0.0", pool, loop=loop))
    try:
        assert anchor.advertise is None
        out = parse_sdp(anchor.offer("c1", "b1", offer_from("192.168.1.23", 4000), "a", advertise="10.0.0.5"))
        assert str(out.media_connection(out.media[0])) == "IN IP4 10.0.0.5"
        assert out.origin.address == "10.0.0.5"
        back = parse_sdp(
            anchor.answer("c1", "a", answer_from("10.1.2.50", 11800), "b1", advertise="192.0.2.7")
        )
        assert str(back.connection) == "IN IP4 192.0.2.7" and back.origin.address == "192.0.2.7"
        with pytest.raises(ValueError, match="name the address"):
            anchor.offer("c2", "b1", offer_from("192.168.1.23", 4000), "a")
        with pytest.raises(ValueError, match="real address"):
            anchor.offer("c2", "b1", offer_from("192.168.1.23", 4000), "a", advertise="0.0.0.0")
    finally:
        anchor.relay.close()


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("192.168.1.23", ("192.168.1.23", 4000)),
        ("phone.clinic.test", None),  # a name would need DNS on every send
        ("2001:db8::7", None),  # another family than the relay's
        ("192.168.001.23", None),  # not an IP literal as ipaddress reads them either
        ("192.168.1.256", None),
    ],
)
def test_the_phones_address_is_used_only_as_an_ip_of_the_relays_family(
    anchor: MediaAnchor, host: str, expected: tuple[str, int] | None
) -> None:
    anchor.offer("c1", "b1", offer_from(host, 4000, rtcp=False), "a")
    (stats,) = anchor.stats("c1")["a"]
    assert stats.rtp_address == expected


def test_an_rtcp_address_of_another_family_falls_back_to_the_rtp_host(anchor: MediaAnchor) -> None:
    offer = offer_from("192.168.1.23", 4000).replace(
        b"a=rtcp:4001 IN IP4 192.168.1.23", b"a=rtcp:4009 IN IP6 ::1"
    )
    anchor.offer("c1", "b1", offer, "a")
    (stats,) = anchor.stats("c1")["a"]
    assert stats.rtcp_address == ("192.168.1.23", 4009)
    offer = offer_from("192.168.1.23", 4000).replace(
        b"a=rtcp:4001 IN IP4 192.168.1.23", b"a=rtcp:4009 IN IP4 10.0.0.9"
    )
    anchor.offer("c1", "b1", offer, "a")
    (stats,) = anchor.stats("c1")["a"]
    assert stats.rtcp_address == ("10.0.0.9", 4009)


def test_an_ipv6_relay_takes_ipv6_phones_zones_included(loop: asyncio.AbstractEventLoop) -> None:
    pool = PortPool(42100, 42199)
    anchor = MediaAnchor("::1", pool, relay=Relay("::1", pool, loop=loop))
    try:
        for host, expected in (
            ("2001:db8::7", "2001:db8::7"),
            ("fe80::1%eth0", "fe80::1%eth0"),
            ("10.0.0.9", None),
        ):
            offer = offer_from(host, 4000, rtcp=False).replace(b"IN IP4", b"IN IP6")
            anchor.offer("c1", "b1", offer, "a")
            (stats,) = anchor.stats("c1")["a"]
            assert (stats.rtp_address[0] if stats.rtp_address else None) == expected, host
    finally:
        anchor.relay.close()


def test_offers_put_g711_first_and_drop_declared_sources(anchor: MediaAnchor) -> None:
    offer = offer_from("192.168.1.23", 4000).replace(b"RTP/AVP 0 8 101", b"RTP/AVP 96 9 8 101 0") + crlf(
        "a=rtpmap:96 speex/16000\na=rtpmap:9 G722/8000\na=ssrc:1234 cname:phone\n"
    )
    out = parse_sdp(anchor.offer("c1", "b1", offer, "a"))
    assert out.media[0].formats == ("8", "0", "96", "9", "101")  # G.711 in the phone's order, then the rest
    assert out.media[0].attribute("ssrc") is None
    # An answer is not reordered: it says what the answerer chose.
    answer = answer_from("10.1.2.50", 11800).replace(b"RTP/AVP 0 101", b"RTP/AVP 96 0 101")
    back = parse_sdp(anchor.answer("c1", "a", answer, "b1"))
    assert back.media[0].formats == ("96", "0", "101")


def test_music_needs_a_g711_codec_and_a_library(anchor: MediaAnchor) -> None:
    anchor.offer("c1", "b1", offer_from("192.168.1.23", 4000), "a")
    anchor.answer("c1", "a", answer_from("10.1.2.50", 11800, codec="9"), "b1")  # G.722 only
    # Neither phone may be sent G.711 now: the answer both agreed on has none.
    for leg in ("b1", "a"):
        with pytest.raises(MediaError, match=r"no G\.711 codec"):
            anchor.start_music("c1", leg)
    anchor.offer("c2", "b1", offer_from("192.168.1.23", 4000), "a")
    anchor.answer("c2", "a", answer_from("10.1.2.50", 11800), "b1")
    with pytest.raises(MediaError, match="no sound library"):
        anchor.start_music("c2", "a")


def test_music_goes_out_in_the_law_the_answer_chose(anchor: MediaAnchor) -> None:
    # The caller lists PCMU first, but the callee answers PCMA: the caller must hear PCMA.
    anchor.offer("c1", "b1", offer_from("192.168.1.23", 4000), "a")
    anchor.answer("c1", "a", answer_from("10.1.2.50", 11800, codec="8"), "b1")
    assert anchor._audio("c1", "a")[1] == g711.PCMA
    assert anchor._audio("c1", "b1")[1] == g711.PCMA


def test_a_local_answer_ends_the_callers_stream_at_the_relay(anchor: MediaAnchor, pool: PortPool) -> None:
    # Like pjsua's: telephone-event at 16 kHz listed before the 8 kHz one G.711 goes with.
    offer = offer_from("192.168.1.23", 4000).replace(b"RTP/AVP 0 8 101", b"RTP/AVP 96 8 0 100 101") + crlf(
        "a=rtpmap:96 speex/16000\na=rtpmap:100 telephone-event/16000\n"
        "m=video 4002 RTP/AVP 97\nc=IN IP4 192.168.1.23\na=rtpmap:97 H264/90000\n"
    )
    out = parse_sdp(anchor.answer_locally("c1", "a", offer))
    audio, video = out.media
    (port, no_video) = anchor.ports("c1", "a")
    assert (audio.port, audio.formats) == (port, ("8", "101"))  # the phone's first G.711 law
    assert audio.attributes("rtpmap") == ["8 PCMA/8000", "101 telephone-event/8000"]
    assert audio.attribute("fmtp") == "101 0-16"
    assert audio.direction is Direction.SENDRECV
    assert (video.port, no_video) == (0, 0)  # declined
    assert str(out.connection) == f"IN IP4 {HOST}" and out.origin.username == "sentral"
    assert pool.in_use == 1
    # Later the caller is offered to a phone: the same port goes on, paired now.
    anchor.offer("c1", "b1", offer, "a")
    back = parse_sdp(anchor.answer("c1", "a", answer_from("10.1.2.50", 11800, codec="8"), "b1"))
    assert back.media[0].port == port
    assert back.origin.session_id == out.origin.session_id and back.origin.version == out.origin.version + 1
    # A sendonly offer is answered recvonly; an offer without G.711 cannot be answered here.
    held = parse_sdp(anchor.answer_locally("c2", "a", offer_from("192.168.1.23", 4000, direction="sendonly")))
    assert held.media[0].direction is Direction.RECVONLY
    with pytest.raises(SipError) as caught:
        anchor.answer_locally("c3", "a", answer_from("192.168.1.23", 4000, codec="9"))
    assert caught.value.status == 488


def test_a_local_offer_learns_the_phone_from_its_answer(anchor: MediaAnchor) -> None:
    out = parse_sdp(anchor.offer_locally("c1", "a"))
    (port,) = anchor.ports("c1", "a")
    assert out.media[0].port == port and out.media[0].formats == ("0", "8", "101")
    anchor.answer_received("c1", "a", answer_from("10.1.2.50", 11800, codec="8"))
    (stats,) = anchor.stats("c1")["a"]
    assert stats.rtp_address == ("10.1.2.50", 11800)
    assert anchor._audio("c1", "a")[1] == g711.PCMA
    with pytest.raises(MediaError):
        anchor.answer_received("c9", "a", answer_from("10.1.2.50", 11800))


def test_a_moved_leg_keeps_its_ports_under_its_new_call_and_joins_there(
    anchor: MediaAnchor, pool: PortPool
) -> None:
    # Call 1: A (held) and B; call 2: B and C. C's leg moves into call 1 and is joined with A.
    anchor.offer("c1", "b1", offer_from("192.168.1.23", 4000), "a")
    anchor.answer("c1", "a", answer_from("10.1.2.50", 11800), "b1")
    anchor.offer("c1", "a", offer_from("10.1.2.50", 11800, direction="sendonly"), "b1")
    anchor.offer("c2", "b1", offer_from("10.1.2.50", 11900), "a")
    anchor.answer("c2", "a", answer_from("10.1.2.77", 12000), "b1")
    (c_port,) = anchor.ports("c2", "b1")
    anchor.move("c2", "b1", "c1", "t3")
    assert anchor.ports("c1", "t3") == [c_port] and pool.in_use == 4
    with pytest.raises(MediaError):
        anchor.ports("c2", "b1")
    with pytest.raises(ValueError):
        anchor.move("c1", "t3", "c1", "a")  # a leg id the call has already
    anchor.join("c1", "a", "t3")
    [a_endpoint], [c_endpoint] = anchor._find("c1", "a").streams, anchor._find("c1", "t3").streams
    assert a_endpoint is not None and a_endpoint.peer is c_endpoint
    # A was held by B; Sentral's own offer to it (sendrecv) ends that hold.
    assert anchor.hold_state("c1", "a")
    anchor.offer_locally("c1", "a", law=g711.PCMU)
    assert not anchor.hold_state("c1", "a") and anchor.ports("c1", "a")[0] != 0
    anchor.release("c2")
    assert anchor.ports("c1", "t3") == [c_port]  # the old call's end leaves the moved leg alone
    with pytest.raises(MediaError):
        anchor.move("c2", "a", "c1", "t4")


def test_on_hold_is_per_call(anchor: MediaAnchor) -> None:
    anchor.offer("c1", "b1", offer_from("192.168.1.23", 4000), "a")
    assert not anchor.on_hold("c1") and not anchor.on_hold("nope")
    anchor.offer("c1", "b1", offer_from("192.168.1.23", 4000, direction="sendonly"), "a")
    assert anchor.on_hold("c1")


# -- end to end ----------------------------------------------------------------------------------


def tone(seconds: float, hz: float) -> bytes:
    n = int(8000 * seconds)
    return struct.pack(f"<{n}h", *(round(9000 * math.sin(2 * math.pi * hz * i / 8000)) for i in range(n)))


def library(tmp_path: Path) -> SoundLibrary:
    write_wav(tmp_path / "music.wav", tone(1.0, 440))
    (tmp_path / "en").mkdir()
    write_wav(tmp_path / "en" / "please_hold.wav", tone(0.1, 600))
    return SoundLibrary([tmp_path])


def sdp_port(sdp: bytes) -> tuple[str, int]:
    parsed = SessionDescription.parse(sdp)
    connection = parsed.media_connection(parsed.media[0])
    assert connection is not None
    return connection.address, parsed.media[0].port


def test_anchored_call_end_to_end(run: Runner[None], tmp_path: Path) -> None:
    run(_end_to_end(library(tmp_path)))


async def _end_to_end(sounds: SoundLibrary) -> None:
    pool = PortPool(42300, 42399)
    digits: list[tuple[str, str, Digit]] = []
    anchor = MediaAnchor(
        HOST, pool, sounds=sounds, language="en", on_dtmf=lambda c, leg, d: digits.append((c, leg, d))
    )
    alice, bob = Phone(), Phone()
    try:
        # INVITE from Alice forwarded to Bob, Bob's 200 forwarded to Alice.
        to_bob = anchor.offer("call-1", "b1", offer_from(HOST, alice.address[1], rtcp=False), "a")
        to_alice = anchor.answer("call-1", "a", answer_from(HOST, bob.address[1], codec="8"), "b1")
        bob_sends_to, alice_sends_to = sdp_port(to_bob), sdp_port(to_alice)
        started = anchor.last_activity("call-1")

        sent = alice.send_audio(alice_sends_to, 5)
        assert [d for d, _ in await bob.expect(5)] == sent
        sent = bob.send_audio(bob_sends_to, 5)
        assert [d for d, _ in await alice.expect(5)] == sent
        assert anchor.last_activity("call-1") > started

        # Alice holds Bob: Bob hears music in A-law, the law his phone asked for.
        anchor.offer(
            "call-1", "b1", offer_from(HOST, alice.address[1], direction="sendonly", rtcp=False), "a"
        )
        assert anchor.hold_state("call-1", "b1")
        anchor.start_music("call-1", "b1")
        music = await bob.expect(5)
        assert {parse_rtp(d).header.payload_type for d, _ in music} == {8}
        assert parse_rtp(music[0][0]).payload == g711.alaw_encode(sounds.pcm("music")[:320])
        anchor.stop_music("call-1", "b1")
        await asyncio.sleep(0.05)
        bob.collect()
        sent = alice.send_audio(alice_sends_to, 2)
        assert [d for d, _ in await bob.expect(2)] == sent

        # A prompt to Alice, then her line is Bob's again.
        done = asyncio.get_running_loop().create_future()
        lasts = anchor.play("call-1", "a", ["please_hold"], on_done=lambda: done.set_result(True))
        assert lasts == pytest.approx(0.1)
        assert anchor.playing("call-1", "a")
        await asyncio.wait_for(done, 2.0)
        prompt = alice.collect()
        assert len(prompt) == 5  # 100 ms of speech is five packets
        assert not anchor.playing("call-1", "a")
        # With a lead-in, silence comes first and counts in the length.
        done = asyncio.get_running_loop().create_future()
        lasts = anchor.play("call-1", "a", ["please_hold"], lead=0.1, on_done=lambda: done.set_result(True))
        assert lasts == pytest.approx(0.2)
        await asyncio.wait_for(done, 2.0)
        led = [parse_rtp(d).payload for d, _ in alice.collect()]
        assert len(led) == 10 and set(led[0]) == {g711.alaw_encode(bytes(2))[0]}

        # Bob keys 4 (telephone-event 101): reported once, for Bob's leg.
        for end, duration in ((False, 0), (True, 800), (True, 800), (True, 800)):
            payload = build_event(TelephoneEvent(4, end, 10, duration))
            bob.send(bob_sends_to, bob.rtp(payload, payload_type=101, timestamp=16000))
        await alice.expect(4)
        assert [(c, leg, d.key) for c, leg, d in digits] == [("call-1", "b1", "4")]

        stats = anchor.stats("call-1")
        assert stats["a"][0].rtp.packets_in == 7
        assert stats["b1"][0].rtp.packets_in == 9

        # RTCP alone does not count as activity: dead media means no RTP.
        before = anchor.last_activity("call-1")
        alice.send((alice_sends_to[0], alice_sends_to[1] + 1), alice.rtcp())
        await asyncio.sleep(0.05)
        assert anchor.stats("call-1")["a"][0].rtcp.packets_in == 1
        assert anchor.last_activity("call-1") == before
    finally:
        anchor.release("call-1")
        alice.close()
        bob.close()
    assert pool.in_use == 0
