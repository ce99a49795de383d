"""Hypothesis properties of the SIP parser.

1. Any bytes: ``parse_message`` raises nothing but ``SipError``, and neither do the accessors or
   ``validate()`` of whatever it returns.
2. Valid messages mutated (bytes flipped, cut short, random header lines inserted): the same.
3. Round trip: generated requests and responses serialize, parse back to the same start line,
   header fields and body, and serialize again to identical bytes.
4. ``StreamFramer``: any split of a concatenation of messages (with keep-alives between them)
   yields exactly those messages, and counts the keep-alives.
"""

from __future__ import annotations

import contextlib
import ipaddress
import string
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from sentral.pbx.sip.errors import SipError
from sentral.pbx.sip.headers import _parse_name_addr_full, parse_name_addr
from sentral.pbx.sip.message import Message, Request, Response, StreamFramer, parse_message
from sentral.pbx.sip.uri import Uri, parse_uri

T = TypeVar("T")
FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
FUZZ = settings(FAST, max_examples=500)  # cheap examples: more of them
TORTURE = Path(__file__).parent / "torture" / "rfc4475"
SEEDS = [
    (TORTURE / name).read_bytes()
    for name in ("wsinv.dat", "intmeth.dat", "esc01.dat", "escnull.dat", "longreq.dat", "mpart01.dat",
                 "unreason.dat", "transports.dat", "regescrt.dat", "inv2543.dat", "cparam01.dat")
]  # fmt: skip


def exercise(msg: Request | Response) -> None:
    """Touch every accessor a caller may use on a received message."""
    for fn in (
        lambda: msg.top_via,
        lambda: msg.vias,
        lambda: msg.from_,
        lambda: msg.to,
        lambda: msg.from_tag,
        lambda: msg.to_tag,
        lambda: msg.call_id,
        lambda: msg.cseq,
        lambda: msg.contacts,
        lambda: msg.max_forwards,
        lambda: msg.expires,
        lambda: msg.name_addrs("Route"),
        lambda: msg.name_addrs("Record-Route"),
        lambda: msg.contact_star,
        msg.validate,
    ):
        with contextlib.suppress(SipError):
            fn()
    _ = msg.content_type
    for key, name, _value in msg.fields:
        msg.header(name)
        msg.header_lines(key)
        with contextlib.suppress(SipError):
            msg.header_values(key)
            msg.tokens(key)
    if isinstance(msg, Request):
        try:
            uri = msg.uri
        except SipError:
            pass
        else:
            _ = str(uri), uri.aor(), uri.transport, uri.has_param("lr"), uri.user_unescaped
            uri.equivalent(uri)
    msg.to_bytes()


def parse_everything(data: bytes) -> None:
    """Parse ``data`` every way a transport would; only SipError may come out."""
    for datagram in (True, False):
        try:
            msg = parse_message(data, datagram=datagram)
        except SipError:
            continue
        exercise(msg)
    with contextlib.suppress(SipError):
        StreamFramer().feed(data)


# -- (1) arbitrary bytes ------------------------------------------------------------------------

SIPPY = st.sampled_from(
    [b"INVITE ", b"SIP/2.0", b" ", b"\r\n", b"\r\n\r\n", b"\r\n ", b":", b";", b",", b"<", b">", b'"', b"\\",
     b"@", b"[", b"]", b"%", b"%4", b"sip:", b"sips:", b"tel:", b"Via: SIP/2.0/UDP ", b"branch=", b"rport",
     b"tag=", b"From: ", b"To: ", b"Call-ID: ", b"CSeq: 1 ", b"Contact: ", b"*", b"Content-Length: ", b"l: ",
     b"Max-Forwards: ", b"Expires: ", b"0", b"65536", b"99999999999", b"\xc2\xb2", b"\xd9\xa3", b"\xff",
     b"\x00", b"::", b"2001:db8::1", b"?", b"&", b"=", b"\t"]
)  # fmt: skip


@FUZZ
@given(st.binary(max_size=1500))
def test_any_bytes_raise_only_sip_error(data: bytes) -> None:
    parse_everything(data)


@FUZZ
@given(st.lists(SIPPY | st.binary(max_size=8), max_size=60).map(b"".join))
def test_sip_like_bytes_raise_only_sip_error(data: bytes) -> None:
    parse_everything(data)


HEADER_NAMES = st.sampled_from(
    [b"Via", b"v", b"From", b"f", b"To", b"t", b"Contact", b"m", b"CSeq", b"Call-ID", b"i", b"Max-Forwards",
     b"Expires", b"Route", b"Record-Route", b"Content-Length", b"l", b"Content-Type", b"Require", b"X-Junk"]
)  # fmt: skip
START_LINES = st.sampled_from(
    [b"INVITE sip:bob@c.example SIP/2.0", b"REGISTER sips:[2001:db8::1]:5061 SIP/2.0", b"OPTIONS tel:+4722 SIP/2.0",
     b"SIP/2.0 200 OK", b"SIP/2.0 180 ", b"BYE x:y SIP/2.0"]
)  # fmt: skip


@st.composite
def sip_shaped(draw: st.DrawFn) -> bytes:
    """A start line and header lines whose values are SIP-ish fragments: deeper than random bytes."""
    lines = [draw(START_LINES)]
    for _ in range(draw(st.integers(0, 10))):
        value = draw(st.lists(SIPPY, min_size=1, max_size=6).map(b"".join))
        lines.append(draw(HEADER_NAMES) + draw(st.sampled_from([b": ", b":", b" : "])) + value)
    return b"\r\n".join(lines) + b"\r\n\r\n" + draw(st.binary(max_size=20))


@FUZZ
@given(sip_shaped())
def test_sip_shaped_messages_raise_only_sip_error(data: bytes) -> None:
    parse_everything(data)


# -- (2) mutations of valid messages ---------------------------------------------------------------


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "cut", "insert", "delete", "header"]))
        pos = draw(st.integers(0, len(data)))
        if kind == "flip" and pos < len(data):
            data[pos] = draw(st.integers(0, 255))
        elif kind == "cut":
            del data[pos:]
        elif kind == "insert":
            data[pos:pos] = draw(SIPPY | st.binary(min_size=1, max_size=4))
        elif kind == "delete":
            del data[pos : pos + draw(st.integers(1, 16))]
        else:
            line_start = data.find(b"\r\n", pos)
            if line_start >= 0:
                name = draw(st.sampled_from([b"Via", b"v", b"From", b"To", b"Contact", b"m", b"CSeq", b"Call-ID",
                                             b"Max-Forwards", b"Expires", b"Route", b"Content-Length", b"X-Junk"]))  # fmt: skip
                value = draw(st.lists(SIPPY, max_size=8).map(b"".join))
                data[line_start:line_start] = b"\r\n" + name + b": " + value.replace(b"\r\n", b"")
    return bytes(data)


@FUZZ
@given(mutated())
def test_mutated_messages_raise_only_sip_error(data: bytes) -> None:
    parse_everything(data)


# -- (3) round trip -------------------------------------------------------------------------------

TOKEN = st.text(alphabet=string.ascii_letters + string.digits + "-.!%*_+`'~", min_size=1, max_size=12)
URI_TOKEN = st.text(alphabet=string.ascii_letters + string.digits + "-.!*_+`'~", min_size=1, max_size=12)
LOWER_TOKEN = st.text(alphabet=string.ascii_lowercase + string.digits + "-.!*_+`'~", min_size=1, max_size=10)
METHOD = st.sampled_from(["INVITE", "ACK", "BYE", "CANCEL", "OPTIONS", "REGISTER", "REFER", "NOTIFY",
                          "SUBSCRIBE", "MESSAGE", "INFO", "PRACK", "UPDATE"]) | TOKEN  # fmt: skip
LABEL = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,8}[a-z0-9])?", fullmatch=True)
DOMAIN = (
    st.lists(LABEL, min_size=1, max_size=4).map(".".join).filter(lambda h: not h.replace(".", "").isdigit())
)
IPV4 = st.ip_addresses(v=4).map(str)
IPV6 = st.ip_addresses(v=6).map(lambda a: f"[{ipaddress.IPv6Address(a).compressed}]")
USER = st.text(
    alphabet=string.ascii_letters + string.digits + "-_.!~*'()&=+$,;?/", min_size=1, max_size=12
) | st.binary(min_size=1, max_size=4).map(lambda b: "".join(f"%{c:02X}" for c in b))
PARAM = st.tuples(LOWER_TOKEN, st.none() | URI_TOKEN)


@st.composite
def sip_uris(draw: st.DrawFn, *, with_headers: bool = False) -> Uri:
    params = tuple(draw(st.lists(PARAM, max_size=3)))
    headers: tuple[tuple[str, str], ...] = ()
    if with_headers:
        headers = tuple(draw(st.lists(st.tuples(URI_TOKEN, URI_TOKEN), max_size=2)))
    return Uri(
        scheme=draw(st.sampled_from(["sip", "sips"])),
        user=draw(st.none() | USER),
        host=draw(DOMAIN | IPV4 | IPV6),
        port=draw(st.none() | st.integers(1, 65535)),
        params=params,
        headers=headers,
    )


TEL = st.from_regex(r"\+[0-9]{4,12}", fullmatch=True).map(lambda n: Uri(scheme="tel", user=n))
REQUEST_URI = sip_uris() | TEL
TEXT = st.text(
    alphabet=st.characters(blacklist_categories=["Cs", "Cc", "Zl", "Zp"], blacklist_characters="\x85"),
    max_size=30,
).map(str.strip)
DISPLAY = st.none() | st.text(
    alphabet=st.characters(blacklist_categories=["Cs"], blacklist_characters="\r\n"), max_size=15
)


@st.composite
def name_addr_text(draw: st.DrawFn, *, tag: bool) -> str:
    uri = draw(sip_uris(with_headers=True))
    display = draw(DISPLAY)
    head = (
        f"<{uri}>"
        if display is None
        else '"' + display.replace("\\", "\\\\").replace('"', '\\"') + f'" <{uri}>'
    )
    return head + (f";tag={draw(TOKEN)}" if tag else "")


@st.composite
def via_text(draw: st.DrawFn) -> str:
    host = draw(DOMAIN | IPV4 | IPV6)
    port = draw(st.none() | st.integers(1, 65535))
    transport = draw(st.sampled_from(["UDP", "TCP", "TLS", "WS", "WSS"]))
    sent_by = host if port is None else f"{host}:{port}"
    extra = draw(st.sampled_from(["", ";rport", ";rport=5060", ";received=192.0.2.1"]))
    return f"SIP/2.0/{transport} {sent_by};branch=z9hG4bK{draw(TOKEN)}{extra}"


EXTENSION = st.tuples(st.builds(lambda t: "X-" + t, TOKEN), TEXT)


@st.composite
def common_headers(draw: st.DrawFn, method: str, *, to_tag: bool) -> list[tuple[str, str]]:
    headers = [
        (draw(st.sampled_from(["Via", "v"])), draw(via_text())) for _ in range(draw(st.integers(1, 3)))
    ]
    headers += [
        (draw(st.sampled_from(["From", "f"])), draw(name_addr_text(tag=True))),
        (draw(st.sampled_from(["To", "t"])), draw(name_addr_text(tag=to_tag))),
        (draw(st.sampled_from(["Call-ID", "i"])), draw(TOKEN) + draw(st.sampled_from(["", "@host.example"]))),
        ("CSeq", f"{draw(st.integers(0, 2**31 - 1))} {method}"),
        ("Max-Forwards", str(draw(st.integers(0, 255)))),
    ]
    headers += [("Contact", draw(name_addr_text(tag=False))) for _ in range(draw(st.integers(0, 2)))]
    headers += draw(st.lists(EXTENSION, max_size=4))
    return draw(st.permutations(headers))


@st.composite
def requests(draw: st.DrawFn) -> Request:
    method = draw(METHOD)
    return Request.build(
        method, draw(REQUEST_URI), draw(common_headers(method, to_tag=False)), draw(st.binary(max_size=200))
    )


@st.composite
def responses(draw: st.DrawFn) -> Response:
    method = draw(METHOD)
    reason = draw(st.none() | TEXT)
    return Response.build(
        draw(st.integers(100, 699)),
        reason,
        draw(common_headers(method, to_tag=True)),
        draw(st.binary(max_size=200)),
    )


def fields_of(msg: Message) -> list[tuple[str, str]]:
    return [(key, value) for key, _, value in msg.fields if key != "content-length"]


@FAST
@given(requests())
def test_request_round_trip(req: Request) -> None:
    data = req.to_bytes()
    for datagram in (True, False):
        got = parse_message(data, datagram=datagram)
        assert isinstance(got, Request)
        assert got.method == req.method and got.uri_text == req.uri_text and got.uri == req.uri
        assert fields_of(got) == fields_of(req)
        assert got.body == req.body
        got.validate()
        assert got.from_ == parse_message(data).from_
        assert got.to_bytes() == data


@FAST
@given(responses())
def test_response_round_trip(resp: Response) -> None:
    data = resp.to_bytes()
    got = parse_message(data)
    assert isinstance(got, Response)
    assert (got.status, got.reason) == (resp.status, resp.reason)
    assert fields_of(got) == fields_of(resp)
    assert got.body == resp.body
    got.validate()
    assert got.to_bytes() == data


@FAST
@given(sip_uris(with_headers=True) | TEL)
def test_uri_round_trip(uri: Uri) -> None:
    again = parse_uri(str(uri))
    assert again == uri and str(again) == str(uri) and again.equivalent(uri)


def _outcome(parse: Callable[[str], T], text: str) -> T | tuple[int, str]:
    try:
        return parse(text)
    except SipError as error:
        return error.status, error.reason


_NAME_ADDR_PIECES = st.sampled_from(
    ["<", ">", '"', "\\", " ", "\t", ";", "tag=", "=", "sip:", "a@b", "1001@127.0.0.1:5060", "transport=udp",
     ",", "?", "x", "é", "\x0b", "\x7f", ":", "[2001:db8::1]"]
)  # fmt: skip


@FUZZ
@given(
    name_addr_text(tag=True)
    | name_addr_text(tag=False)
    | st.lists(_NAME_ADDR_PIECES, max_size=14).map("".join)
    | st.tuples(name_addr_text(tag=True), st.lists(_NAME_ADDR_PIECES, max_size=3).map("".join)).map("".join)
)
@example("<sip:1001@clinic.test>;tag=1")
@example("<sip:1001@clinic.test> ;tag=1")
@example("<sip:1001@clinic.test>tag=1")
@example("<sip:1001@clinic.test>;tag=1;")
@example('"Bench 1001" <sip:1001@clinic.test>;tag=1')
@example("<sip:a@b<c>")
@example("<sip:a b@c>")
@example("<sip:a\x0bb@c>")
@example("<>")
@example("<sip:a@b>;x=<y>")
@example("<sip:a@b>;;")
def test_fast_and_full_name_addr_parsers_agree(text: str) -> None:
    assert _outcome(parse_name_addr.__wrapped__, text) == _outcome(_parse_name_addr_full, text)


# -- (4) stream framing -------------------------------------------------------------------------


@FAST
@given(
    st.lists(requests() | responses(), min_size=1, max_size=4),
    st.lists(st.sampled_from([b"", b"", b"\r\n\r\n"]), min_size=5, max_size=5),
    st.lists(st.integers(1, 200), max_size=30),
)
def test_any_split_of_a_stream_yields_the_messages(
    messages: list[Message], keepalives: list[bytes], cuts: list[int]
) -> None:
    wire = [m.to_bytes() for m in messages]
    stream = keepalives[0] + b"".join(w + keepalives[i + 1] for i, w in enumerate(wire))
    framer = StreamFramer()
    out: list[bytes] = []
    pos = 0
    for size in cuts:
        out.extend(framer.feed(stream[pos : pos + size]))
        pos += size
    out.extend(framer.feed(stream[pos:]))
    assert out == wire
    assert framer.pending == 0
    assert framer.pings == sum(1 for k in keepalives[: len(wire) + 1] if k)
