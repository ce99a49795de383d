"""SDP tests (RFC 8866, RFC 3264, RFC 6337): real offers from phones, hold, relay rewriting,
per-leg origins and the offer/answer state of a leg."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sentral.pbx.sip.errors import SipError
from sentral.pbx.sip.message import Request, Response, parse_message
from sentral.pbx.sip.sdp import (
    OVERLAPPING_REQUEST,
    REQUEST_PENDING,
    BodyRole,
    Connection,
    Direction,
    OfferAnswer,
    OfferState,
    OfferStateError,
    Origin,
    OriginRewriter,
    SessionDescription,
    glare_retry_window,
    parse_sdp,
)


def crlf(text: str) -> bytes:
    return text.replace("\n", "\r\n").encode()


PJSUA_OFFER = crlf("""\
v=0
o=- 3898393512 3898393512 IN IP4 192.168.1.23
s=pjmedia
b=AS:84
t=0 0
a=X-nat:0
m=audio 4000 RTP/AVP 0 8 101
c=IN IP4 192.168.1.23
b=TIAS:64000
a=rtcp:4001 IN IP4 192.168.1.23
a=sendrecv
a=rtpmap:0 PCMU/8000
a=rtpmap:8 PCMA/8000
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-16
a=ssrc:1861237162 cname:51e3a3d4302d8e1f
""")

YEALINK_OFFER = crlf("""\
v=0
o=- 20034 20034 IN IP4 10.1.2.50
s=SDP data
c=IN IP4 10.1.2.50
t=0 0
m=audio 11800 RTP/AVP 9 0 8 18 101
a=rtpmap:9 G722/8000
a=rtpmap:0 PCMU/8000
a=rtpmap:8 PCMA/8000
a=rtpmap:18 G729/8000
a=fmtp:18 annexb=no
a=ptime:20
a=sendrecv
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-15
""")

# Session-level c= and direction; video stream inactive beside live audio.
POLYCOM_OFFER = crlf("""\
v=0
o=- 1700000012 1700000012 IN IP4 10.1.2.51
s=Polycom IP Phone
c=IN IP4 10.1.2.51
b=AS:512
t=0 0
a=sendrecv
m=audio 2222 RTP/AVP 9 0 8 18 127
a=rtpmap:9 G722/8000
a=rtpmap:0 PCMU/8000
a=rtpmap:8 PCMA/8000
a=rtpmap:18 G729/8000
a=fmtp:18 annexb=no
a=rtpmap:127 telephone-event/8000
m=video 2224 RTP/AVP 109 34
b=TIAS:448000
a=rtpmap:109 H264/90000
a=fmtp:109 profile-level-id=42800d; max-mbps=40500
a=rtpmap:34 H263/90000
a=inactive
""")

WEBRTC_OFFER = crlf("""\
v=0
o=- 4611731400430051336 2 IN IP4 127.0.0.1
s=-
t=0 0
a=group:BUNDLE 0
a=extmap-allow-mixed
a=msid-semantic: WMS 6f5c1a2b
m=audio 9 UDP/TLS/RTP/SAVPF 111 63 9 0 8 13 110 126
c=IN IP4 0.0.0.0
a=rtcp:9 IN IP4 0.0.0.0
a=candidate:1467250027 1 udp 2122260223 192.168.0.196 46243 typ host generation 0 network-id 1
a=candidate:435653019 1 tcp 1518280447 192.168.0.196 9 typ host tcptype active generation 0
a=ice-ufrag:Oyef
a=ice-pwd:8tpRgbwMPg8fZLCGgvLzEWv5
a=ice-options:trickle
a=fingerprint:sha-256 49:66:12:17:0D:1C:91:AE:57:4C:C6:36:DD:D5:97:D2:7D:62:C9:9A:7F:B9:A3:F4:70:03:E7:43:91:73:23:5A
a=setup:actpass
a=mid:0
a=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level
a=extmap:2 http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time
a=extmap:3 http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01
a=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid
a=sendrecv
a=msid:6f5c1a2b 0d9e8c7b
a=rtcp-mux
a=rtpmap:111 opus/48000/2
a=rtcp-fb:111 transport-cc
a=fmtp:111 minptime=10;useinbandfec=1
a=rtpmap:63 red/48000/2
a=fmtp:63 111/111
a=rtpmap:9 G722/8000
a=rtpmap:0 PCMU/8000
a=rtpmap:8 PCMA/8000
a=rtpmap:13 CN/8000
a=rtpmap:110 telephone-event/48000
a=rtpmap:126 telephone-event/8000
a=ssrc:3735928559 cname:k3PCsIuzJ1ah5ziB
a=ssrc:3735928559 msid:6f5c1a2b 0d9e8c7b
""")

# An answer refusing the video stream: port 0, the m= line kept (RFC 3264 §6).
ANSWER_WITH_REJECTED_VIDEO = crlf("""\
v=0
o=sentral 77 1 IN IP4 10.0.0.1
s=-
t=0 0
m=audio 30000 RTP/AVP 0 101
c=IN IP4 10.0.0.1
a=rtpmap:0 PCMU/8000
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-16
a=sendrecv
m=video 0 RTP/AVP 109
a=rtpmap:109 H264/90000
""")

REAL = [PJSUA_OFFER, YEALINK_OFFER, POLYCOM_OFFER, WEBRTC_OFFER, ANSWER_WITH_REJECTED_VIDEO]


# -- parsing -------------------------------------------------------------------------------------


@pytest.mark.parametrize("data", REAL)
def test_real_sdp_round_trips_byte_for_byte(data: bytes) -> None:
    sdp = parse_sdp(data)
    assert sdp.to_bytes() == data
    assert bytes(sdp) == data
    assert parse_sdp(sdp.to_bytes()) == sdp


def test_pjsua_offer_fields() -> None:
    sdp = parse_sdp(PJSUA_OFFER)
    assert sdp.origin == Origin("-", "3898393512", 3898393512, "IN", "IP4", "192.168.1.23")
    assert sdp.connection is None
    (audio,) = sdp.media
    assert (audio.media, audio.port, audio.proto, audio.formats) == (
        "audio",
        4000,
        "RTP/AVP",
        ("0", "8", "101"),
    )
    assert audio.connection == Connection("IN", "IP4", "192.168.1.23")
    assert sdp.media_connection(audio) == audio.connection
    assert audio.attributes("rtpmap") == ["0 PCMU/8000", "8 PCMA/8000", "101 telephone-event/8000"]
    assert audio.attribute("fmtp") == "101 0-16"
    assert audio.attribute("sendrecv") is None and audio.has_attribute("sendrecv")
    assert sdp.media_direction(audio) is Direction.SENDRECV
    # An unknown session attribute is kept where it was.
    assert ("a", "X-nat:0") in sdp.lines


def test_session_level_connection_and_direction_apply_to_media() -> None:
    sdp = parse_sdp(POLYCOM_OFFER)
    audio, video = sdp.media
    assert sdp.connection == Connection("IN", "IP4", "10.1.2.51")
    assert audio.connection is None
    assert sdp.media_connection(audio) == sdp.connection
    assert sdp.direction is Direction.SENDRECV
    assert audio.direction is None
    assert sdp.media_direction(audio) is Direction.SENDRECV
    assert sdp.media_direction(video) is Direction.INACTIVE
    # One of two streams inactive is not a hold of the call.
    assert sdp.media_on_hold(video) and not sdp.media_on_hold(audio)
    assert not sdp.is_hold()


def test_media_connection_overrides_session_connection() -> None:
    data = crlf("""\
v=0
o=- 1 1 IN IP4 192.0.2.1
s=-
c=IN IP4 192.0.2.1
t=0 0
m=audio 5004 RTP/AVP 0
c=IN IP6 2001:db8::5
m=audio 5006 RTP/AVP 0
""")
    sdp = parse_sdp(data)
    a, b = sdp.media
    assert sdp.media_connection(a) == Connection("IN", "IP6", "2001:db8::5")
    assert sdp.media_connection(b) == Connection("IN", "IP4", "192.0.2.1")


def test_multicast_connection_suffix_is_kept() -> None:
    sdp = parse_sdp(crlf("v=0\no=- 1 1 IN IP4 192.0.2.1\ns=-\nc=IN IP4 233.252.0.1/127\nt=0 0\n"))
    assert sdp.connection == Connection("IN", "IP4", "233.252.0.1", "/127")
    assert str(sdp.connection) == "IN IP4 233.252.0.1/127"


def test_bare_lf_line_ends_are_accepted_and_written_as_crlf() -> None:
    sdp = parse_sdp(YEALINK_OFFER.replace(b"\r\n", b"\n"))
    assert sdp.to_bytes() == YEALINK_OFFER


def test_port_count_round_trips() -> None:
    data = crlf("v=0\no=- 1 1 IN IP4 192.0.2.1\ns=-\nc=IN IP4 192.0.2.1\nt=0 0\nm=video 49170/2 RTP/AVP 31\n")
    sdp = parse_sdp(data)
    assert sdp.media[0].port_count == 2
    assert sdp.to_bytes() == data


@pytest.mark.parametrize(
    ("data", "status"),
    [
        (b"", 400),
        (b"hello", 400),
        (crlf("o=- 1 1 IN IP4 192.0.2.1\nv=0\n"), 400),  # v= must come first
        (crlf("v=1\no=- 1 1 IN IP4 192.0.2.1\n"), 400),
        (crlf("v=0\ns=-\nt=0 0\n"), 400),  # no origin
        (crlf("v=0\no=- 1 1 IN IP4\ns=-\n"), 400),
        (crlf("v=0\no=- 1 x IN IP4 192.0.2.1\ns=-\n"), 400),
        ("v=0\r\no=- 1 \u00b2 IN IP4 192.0.2.1\r\n".encode(), 400),  # a digit to isdigit(), not to int()
        (crlf("v=0\no=- 1 1 IN IP4 192.0.2.1\no=- 1 1 IN IP4 192.0.2.1\n"), 400),
        (crlf("v=0\no=- 1 1 IN IP4 192.0.2.1\nxx\n"), 400),
        (crlf("v=0\no=- 1 1 IN IP4 192.0.2.1\nA=b\n"), 400),
        (crlf("v=0\no=- 1 1 IN IP4 192.0.2.1\nc=IN IP4\n"), 400),
        (crlf("v=0\no=- 1 1 IN IP4 192.0.2.1\nc=IN IP4 192.0.2.1\nm=audio\n"), 400),
        (crlf("v=0\no=- 1 1 IN IP4 192.0.2.1\nc=IN IP4 192.0.2.1\nm=audio 70000 RTP/AVP 0\n"), 400),
        (crlf("v=0\no=- 1 1 IN IP4 192.0.2.1\nc=IN IP4 192.0.2.1\nm=audio x RTP/AVP 0\n"), 400),
        # Parses, but a live stream has nowhere to send media to.
        (crlf("v=0\no=- 1 1 IN IP4 192.0.2.1\ns=-\nt=0 0\nm=audio 4000 RTP/AVP 0\n"), 488),
        (crlf("v=0\no=- 1 1 IN IP4 192.0.2.1\ns=-\nc=ATM NSAP 47.0005\nt=0 0\n"), 488),
        (crlf("v=0\no=- 1 1 IN IP4 192.0.2.1\ns=-\nt=0 0\nm=audio 4000 RTP/AVP 0\nc=IN IPX 1.2.3.4\n"), 488),
    ],
)
def test_bad_sdp_gets_400_or_488(data: bytes, status: int) -> None:
    with pytest.raises(SipError) as err:
        parse_sdp(data)
    assert err.value.status == status


def test_rejected_stream_needs_no_connection() -> None:
    sdp = parse_sdp(crlf("v=0\no=- 1 1 IN IP4 192.0.2.1\ns=-\nt=0 0\nm=video 0 RTP/AVP 31\n"))
    assert sdp.media[0].rejected
    assert not sdp.is_hold()


@settings(max_examples=400)
@given(st.binary(max_size=400))
def test_parse_never_raises_anything_but_sip_error_on_bytes(data: bytes) -> None:
    with contextlib.suppress(SipError):
        parse_sdp(data)


_line_value = st.text(
    alphabet=st.characters(exclude_categories=["Cs"], exclude_characters="\r\n"), max_size=30
)
_lines = st.lists(
    st.tuples(st.sampled_from("vosictbamkz"), _line_value).map(lambda t: f"{t[0]}={t[1]}"), max_size=12
)


@settings(max_examples=400)
@given(_lines)
def test_parse_never_raises_anything_but_sip_error_on_sdp_like_text(lines: list[str]) -> None:
    data = "\r\n".join(["v=0", "o=- 1 1 IN IP4 192.0.2.1", *lines]).encode()
    try:
        sdp = parse_sdp(data)
    except SipError:
        return
    assert parse_sdp(sdp.to_bytes()) == sdp


@given(st.lists(_line_value, min_size=1, max_size=8))
def test_origin_and_media_lines_never_raise_anything_but_sip_error(values: list[str]) -> None:
    for value in values:
        for kind in "ocm":
            data = f"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\nc=IN IP4 192.0.2.1\r\n{kind}={value}\r\n"
            with contextlib.suppress(SipError):
                parse_sdp(data.encode("utf-8", "surrogateescape"))


_attr = st.from_regex(r"[a-z][a-z0-9-]{0,10}(:[ -~]{0,20})?", fullmatch=True)


@st.composite
def descriptions(draw: st.DrawFn) -> bytes:
    lines = ["v=0", f"o=- {draw(st.integers(0, 2**40))} {draw(st.integers(0, 2**40))} IN IP4 192.0.2.1"]
    lines += ["s=-", "c=IN IP4 192.0.2.1", "t=0 0"]
    lines += [f"a={a}" for a in draw(st.lists(_attr, max_size=4))]
    for _ in range(draw(st.integers(0, 3))):
        port = draw(st.integers(0, 65535))
        fmts = " ".join(str(f) for f in draw(st.lists(st.integers(0, 127), min_size=1, max_size=5)))
        lines.append(f"m={draw(st.sampled_from(['audio', 'video', 'text']))} {port} RTP/AVP {fmts}")
        lines += [f"a={a}" for a in draw(st.lists(_attr, max_size=5))]
    return ("\r\n".join(lines) + "\r\n").encode()


@given(descriptions())
def test_round_trip_of_generated_sdp(data: bytes) -> None:
    sdp = parse_sdp(data)
    assert sdp.to_bytes() == data
    assert parse_sdp(sdp.to_bytes()) == sdp


# -- hold ----------------------------------------------------------------------------------------


def hold_sdp(
    direction_line: str = "", connection: str = "10.1.2.50", media_extra: str = ""
) -> SessionDescription:
    text = f"v=0\no=- 1 2 IN IP4 10.1.2.50\ns=-\nc=IN IP4 {connection}\nt=0 0\n{direction_line}"
    text += f"m=audio 11800 RTP/AVP 0\n{media_extra}"
    return parse_sdp(crlf(text))


def test_hold_detection() -> None:
    assert not hold_sdp().is_hold()
    assert hold_sdp(media_extra="a=sendonly\n").is_hold()
    assert hold_sdp(media_extra="a=inactive\n").is_hold()
    assert not hold_sdp(media_extra="a=recvonly\n").is_hold()
    # Session-level direction is the default for the stream.
    assert hold_sdp(direction_line="a=sendonly\n").is_hold()
    # ... unless the stream says otherwise.
    assert not hold_sdp(direction_line="a=sendonly\n", media_extra="a=sendrecv\n").is_hold()
    # RFC 2543 hold, still sent by old phones: c=0.0.0.0.
    assert hold_sdp(connection="0.0.0.0").is_hold()
    assert hold_sdp(media_extra="c=IN IP4 0.0.0.0\n").is_hold()


def test_webrtc_null_address_with_ice_is_not_hold() -> None:
    sdp = parse_sdp(WEBRTC_OFFER)
    assert sdp.media_connection(sdp.media[0]) == Connection("IN", "IP4", "0.0.0.0")
    assert not sdp.is_hold()
    assert sdp.with_direction(Direction.SENDONLY).is_hold()


def test_with_direction_replaces_in_place_and_keeps_rejected_streams() -> None:
    sdp = parse_sdp(POLYCOM_OFFER)
    held = sdp.with_direction(Direction.SENDONLY)
    assert held.is_hold()
    assert held.direction is Direction.SENDRECV  # session-level attribute removed
    assert ("a", "sendrecv") not in held.lines
    assert [m.direction for m in held.media] == [Direction.SENDONLY, Direction.SENDONLY]
    # The video's direction line stays where it was; everything else is untouched.
    assert held.media[1].lines[:-1] == sdp.media[1].lines[:-1]
    assert held.media[1].lines[-1] == ("a", "sendonly")
    assert held.media[0].lines[-1] == ("a", "sendonly")
    resumed = held.with_direction(Direction.SENDRECV)
    assert not resumed.is_hold()

    answer = parse_sdp(ANSWER_WITH_REJECTED_VIDEO)
    one = answer.with_direction(Direction.INACTIVE)
    assert one.media[1] == answer.media[1]  # port 0 stream left alone
    assert one.media[1].port == 0
    assert one.is_hold()


def test_with_direction_on_one_stream() -> None:
    sdp = parse_sdp(POLYCOM_OFFER).with_direction(Direction.RECVONLY, index=1)
    assert sdp.media_direction(sdp.media[0]) is Direction.SENDRECV
    assert sdp.media_direction(sdp.media[1]) is Direction.RECVONLY
    assert len(sdp.media[1].attributes("recvonly")) == 1
    assert not sdp.media[1].has_attribute("inactive")


def test_direction_reversal_for_answers() -> None:
    assert Direction.SENDONLY.reversed() is Direction.RECVONLY
    assert Direction.RECVONLY.reversed() is Direction.SENDONLY
    assert Direction.SENDRECV.reversed() is Direction.SENDRECV
    assert Direction.INACTIVE.reversed() is Direction.INACTIVE


# -- relay rewriting -----------------------------------------------------------------------------


def test_with_connection_rewrites_addresses_ports_and_rtcp() -> None:
    relayed = parse_sdp(PJSUA_OFFER).with_connection("203.0.113.5", [40000])
    audio = relayed.media[0]
    assert audio.port == 40000
    assert audio.connection == Connection("IN", "IP4", "203.0.113.5")
    assert audio.attribute("rtcp") == "40001 IN IP4 203.0.113.5"
    assert b"192.168.1.23" not in relayed.to_bytes().split(b"\r\ns=")[1]  # only o= still has it
    assert audio.attributes("rtpmap") == parse_sdp(PJSUA_OFFER).media[0].attributes("rtpmap")


def test_with_connection_session_level_and_rejected_stream() -> None:
    relayed = parse_sdp(POLYCOM_OFFER).with_connection("2001:db8::10", [50000, 50002])
    assert relayed.connection == Connection("IN", "IP6", "2001:db8::10")
    assert [m.port for m in relayed.media] == [50000, 50002]
    answer = parse_sdp(ANSWER_WITH_REJECTED_VIDEO).with_connection("203.0.113.5", [41000, 41002])
    assert [m.port for m in answer.media] == [41000, 0]
    assert answer.media[1].m_line == "video 0 RTP/AVP 109"
    assert parse_sdp(answer.to_bytes()) == answer


def test_with_connection_rtcp_mux_keeps_rtp_port() -> None:
    relayed = parse_sdp(WEBRTC_OFFER).with_connection("203.0.113.5", [42000])
    assert relayed.media[0].attribute("rtcp") == "42000 IN IP4 203.0.113.5"


def test_with_connection_needs_one_port_per_stream() -> None:
    with pytest.raises(ValueError):
        parse_sdp(POLYCOM_OFFER).with_connection("203.0.113.5", [1])


# -- origin per leg ------------------------------------------------------------------------------


def test_origin_rewriter_hides_the_other_leg_and_versions_changes() -> None:
    leg = OriginRewriter(session_id=555000111, address="10.0.0.1", version=1)
    first = leg.rewrite(parse_sdp(PJSUA_OFFER))
    assert first.origin == Origin("sentral", "555000111", 1, "IN", "IP4", "10.0.0.1")
    assert b"3898393512" not in first.to_bytes()
    # Same session again (a session refresh): same version.
    assert leg.rewrite(parse_sdp(PJSUA_OFFER)).origin.version == 1
    # The other phone bumped its own version without changing anything: still the same for us.
    bumped = PJSUA_OFFER.replace(b"3898393512 3898393512", b"3898393512 3898393513")
    assert leg.rewrite(parse_sdp(bumped)).origin.version == 1
    # A real change (hold): one up.
    held = leg.rewrite(parse_sdp(PJSUA_OFFER).with_direction(Direction.SENDONLY))
    assert held.origin.version == 2
    assert leg.version == 2
    # Back to the old content is a change as well.
    assert leg.rewrite(parse_sdp(PJSUA_OFFER)).origin.version == 3
    # Only o= differs from the input.
    assert first.media == parse_sdp(PJSUA_OFFER).media


def test_origin_rewriters_per_leg_are_independent() -> None:
    a = OriginRewriter(1, "10.0.0.1")
    b = OriginRewriter(2, "2001:db8::1")
    sdp = parse_sdp(YEALINK_OFFER)
    a.rewrite(sdp)
    a.rewrite(sdp.with_direction(Direction.INACTIVE))
    out = b.rewrite(sdp)
    assert out.origin == Origin("sentral", "2", 0, "IN", "IP6", "2001:db8::1")
    assert a.version == 1


# -- offer/answer --------------------------------------------------------------------------------

SDP_BODY = YEALINK_OFFER


def msg(start: str, cseq: str, *, body: bytes = b"", extra: tuple[str, ...] = ()) -> Request | Response:
    lines = [
        start,
        "Via: SIP/2.0/UDP 192.0.2.10:5062;branch=z9hG4bK" + cseq.replace(" ", ""),
        "From: <sip:1001@clinic.example>;tag=a",
        "To: <sip:2001@clinic.example>;tag=b",
        "Call-ID: oa-1@192.0.2.10",
        f"CSeq: {cseq}",
        *extra,
    ]
    if body:
        lines.append("Content-Type: application/sdp")
    data = ("\r\n".join(lines) + f"\r\nContent-Length: {len(body)}\r\n\r\n").encode() + body
    return parse_message(data)


def request(method: str, seq: int, *, sdp: bool = False, extra: tuple[str, ...] = ()) -> Request:
    m = msg(
        f"{method} sip:x@192.0.2.1 SIP/2.0", f"{seq} {method}", body=SDP_BODY if sdp else b"", extra=extra
    )
    assert isinstance(m, Request)
    return m


def response(
    status: int, seq: int, method: str = "INVITE", *, sdp: bool = False, extra: tuple[str, ...] = ()
) -> Response:
    m = msg(f"SIP/2.0 {status} X", f"{seq} {method}", body=SDP_BODY if sdp else b"", extra=extra)
    assert isinstance(m, Response)
    return m


RELIABLE = ("Require: 100rel", "RSeq: 1")


def state(oa: OfferAnswer) -> OfferState:
    """The leg's state, read through a call so that each assertion reads it afresh."""
    return oa.state


def test_offer_in_invite_answer_in_2xx_with_early_preview() -> None:
    oa = OfferAnswer()
    assert oa.receive(request("INVITE", 1, sdp=True)) is BodyRole.OFFER
    assert state(oa) is OfferState.REMOTE_OFFER
    assert oa.send(response(180, 1)) is BodyRole.NONE
    assert oa.send(response(183, 1, sdp=True)) is BodyRole.EARLY_ANSWER
    assert state(oa) is OfferState.REMOTE_OFFER
    assert oa.send(response(200, 1, sdp=True)) is BodyRole.ANSWER
    assert state(oa) is OfferState.STABLE
    assert oa.receive(request("ACK", 1)) is BodyRole.NONE
    assert not oa.remote_invite


def test_late_offer_in_2xx_answered_in_ack() -> None:
    oa = OfferAnswer()
    assert oa.send(request("INVITE", 1)) is BodyRole.NONE
    assert oa.receive(response(180, 1, sdp=True)) is BodyRole.NONE  # unreliable: not an offer
    assert oa.receive(response(200, 1, sdp=True)) is BodyRole.OFFER
    assert state(oa) is OfferState.REMOTE_OFFER
    # A retransmitted 2xx is not a second offer.
    assert oa.receive(response(200, 1, sdp=True)) is BodyRole.NONE
    assert oa.send(request("ACK", 1, sdp=True)) is BodyRole.ANSWER
    assert state(oa) is OfferState.STABLE


def test_late_offer_the_other_way() -> None:
    oa = OfferAnswer()
    oa.receive(request("INVITE", 5))
    assert oa.send(response(200, 5, sdp=True)) is BodyRole.OFFER
    assert state(oa) is OfferState.LOCAL_OFFER
    assert oa.receive(request("ACK", 5, sdp=True)) is BodyRole.ANSWER
    assert state(oa) is OfferState.STABLE


def test_reliable_provisional_answer_and_offer() -> None:
    oa = OfferAnswer()
    oa.send(request("INVITE", 1, sdp=True))
    assert oa.receive(response(183, 1, sdp=True, extra=RELIABLE)) is BodyRole.ANSWER
    assert state(oa) is OfferState.STABLE
    assert oa.receive(response(200, 1, sdp=True)) is BodyRole.NONE  # the same answer again

    oa = OfferAnswer()
    oa.send(request("INVITE", 1))
    assert oa.receive(response(183, 1, sdp=True, extra=RELIABLE)) is BodyRole.OFFER
    assert oa.send(request("PRACK", 2, sdp=True)) is BodyRole.ANSWER
    assert oa.receive(response(200, 1, sdp=True)) is BodyRole.NONE


def test_update_offer_and_answer() -> None:
    oa = OfferAnswer()
    assert oa.receive(request("UPDATE", 2, sdp=True)) is BodyRole.OFFER
    assert oa.send(response(200, 2, "UPDATE", sdp=True)) is BodyRole.ANSWER
    assert state(oa) is OfferState.STABLE
    assert oa.receive(request("UPDATE", 3)) is BodyRole.NONE  # a refresh without SDP


def test_rejected_offer_rolls_back() -> None:
    oa = OfferAnswer()
    oa.send(request("INVITE", 2, sdp=True))
    assert oa.receive(response(488, 2, sdp=True)) is BodyRole.NONE
    assert state(oa) is OfferState.STABLE and not oa.local_invite
    oa.send(request("UPDATE", 3, sdp=True))
    oa.receive(response(491, 3, "UPDATE"))
    assert state(oa) is OfferState.STABLE


def test_glare_gets_491_and_our_refusal_does_not_end_our_invite() -> None:
    oa = OfferAnswer()
    oa.send(request("INVITE", 2, sdp=True))
    incoming = request("INVITE", 7, sdp=True)
    assert oa.refusal(incoming) is REQUEST_PENDING
    with pytest.raises(SipError) as err:
        oa.receive(incoming)
    assert err.value.status == 491 and err.value.headers == ()
    oa.send(response(491, 7))
    assert oa.local_invite and state(oa) is OfferState.LOCAL_OFFER
    # The peer refused ours too: both back off and retry.
    oa.receive(response(491, 2))
    assert state(oa) is OfferState.STABLE and not oa.local_invite
    assert oa.receive(request("INVITE", 8, sdp=True)) is BodyRole.OFFER


def test_overlapping_reinvite_gets_500_with_retry_after() -> None:
    oa = OfferAnswer()
    oa.receive(request("INVITE", 3))  # no offer, but the INVITE is still unanswered
    second = request("INVITE", 4, sdp=True)
    assert oa.refusal(second) is OVERLAPPING_REQUEST
    with pytest.raises(SipError) as err:
        oa.receive(second, retry_after=7)
    assert err.value.status == 500
    assert err.value.headers == (("Retry-After", "7"),)
    with pytest.raises(SipError) as err:
        oa.receive(second, retry_after=99)
    assert err.value.headers == (("Retry-After", "10"),)
    oa.send(response(200, 3, sdp=True))
    oa.receive(request("ACK", 3, sdp=True))
    assert oa.refusal(second) is None


def test_update_collisions() -> None:
    oa = OfferAnswer()
    oa.receive(request("UPDATE", 2, sdp=True))
    with pytest.raises(SipError) as err:
        oa.receive(request("UPDATE", 3, sdp=True), retry_after=2)
    assert err.value.status == 500 and err.value.headers == (("Retry-After", "2"),)
    # A re-INVITE while we owe an answer to an UPDATE: also 500.
    assert oa.refusal(request("INVITE", 3, sdp=True)) is OVERLAPPING_REQUEST
    oa.send(response(200, 2, "UPDATE", sdp=True))
    oa.send(request("UPDATE", 1, sdp=True))
    assert oa.refusal(request("UPDATE", 4, sdp=True)) is REQUEST_PENDING
    assert oa.refusal(request("UPDATE", 4)) is None  # no offer, no collision


def test_send_refuses_what_the_model_forbids() -> None:
    oa = OfferAnswer()
    oa.receive(request("UPDATE", 2, sdp=True))
    assert not oa.can_offer
    with pytest.raises(OfferStateError):
        oa.send(request("UPDATE", 5, sdp=True))
    oa.send(response(200, 2, "UPDATE", sdp=True))
    oa.send(request("INVITE", 6))
    with pytest.raises(OfferStateError):
        oa.send(request("INVITE", 7))


def test_body_of_another_type_is_not_sdp() -> None:
    oa = OfferAnswer()
    data = (
        b"INFO sip:x@192.0.2.1 SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:a@h>;tag=1\r\n"
        b"To: <sip:b@h>;tag=2\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\nContent-Type: application/dtmf-relay\r\n"
        b"Content-Length: 10\r\n\r\nSignal=5\r\n"
    )
    m = parse_message(data)
    assert isinstance(m, Request)
    assert oa.receive(m) is BodyRole.NONE


def test_glare_retry_window() -> None:
    assert glare_retry_window(owns_call_id=True) == (2.1, 4.0)
    assert glare_retry_window(owns_call_id=False) == (0.0, 2.0)
