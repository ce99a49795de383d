"""Unit tests of the SIP grammar: message framing, header fields, addresses, URIs, Via, CSeq,
limits, the stream framer and response construction (RFC 3261 §7, §8.2.6, §18.3, §19, §20,
RFC 3581, RFC 5118, RFC 5626 §4.4.1)."""

from __future__ import annotations

import gc

import pytest

from sentral.pbx.sip.errors import SipError
from sentral.pbx.sip.headers import CSeq, NameAddr, Via, parse_name_addr, parse_via
from sentral.pbx.sip.message import (
    MAX_HEADER_FIELDS,
    MAX_MESSAGE_SIZE,
    Message,
    ParseError,
    Request,
    Response,
    StreamFramer,
    make_response,
    parse_message,
)
from sentral.pbx.sip.uri import Uri, parse_uri, split_host_port

CRLF = "\r\n"


def sip(*lines: str, body: str = "") -> bytes:
    """A message from its start line and header lines, CRLF-terminated, with ``body``."""
    return (CRLF.join(lines) + CRLF + CRLF + body).encode()


def invite(*extra: str, body: str = "", content_length: str | None = None) -> bytes:
    lines = [
        "INVITE sip:bob@clinic.example SIP/2.0",
        "Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK776asdhds",
        "Max-Forwards: 70",
        "To: Bob <sip:bob@clinic.example>",
        'From: "Alice" <sip:alice@clinic.example>;tag=1928301774',
        "Call-ID: a84b4c76e66710@192.0.2.1",
        "CSeq: 314159 INVITE",
        "Contact: <sip:alice@192.0.2.1>",
        *extra,
    ]
    if content_length is not None:
        lines.append(f"Content-Length: {content_length}")
    return sip(*lines, body=body)


def request(data: bytes) -> Request:
    msg = parse_message(data)
    assert isinstance(msg, Request)
    return msg


def sip_error(fn: object, *args: object, **kwargs: object) -> SipError:
    assert callable(fn)
    with pytest.raises(SipError) as err:
        fn(*args, **kwargs)
    return err.value


# -- header fields -----------------------------------------------------------------------------


def test_compact_names_are_the_long_names() -> None:
    msg = request(
        sip(
            "OPTIONS sip:bob@clinic.example SIP/2.0",
            "v: SIP/2.0/TCP h.example;branch=z9hG4bKa",
            "f: <sip:a@clinic.example>;tag=x",
            "t: <sip:bob@clinic.example>",
            "i: call-1",
            "CSeq: 1 OPTIONS",
            "m: <sip:a@192.0.2.1>",
            "k: path, outbound",
            "c: text/plain",
            "l: 3",
            body="abc",
        )
    )
    msg.validate()
    assert msg.call_id == "call-1" and msg.header("Call-ID") == msg.header("i") == "call-1"
    assert msg.from_tag == "x" and str(msg.to.uri) == "sip:bob@clinic.example"
    assert msg.top_via.transport == "TCP"
    assert [str(c.uri) for c in msg.contacts] == ["sip:a@192.0.2.1"]
    assert msg.tokens("Supported") == ["path", "outbound"]
    assert msg.content_type == "text/plain" and msg.body == b"abc"
    # Serialized with the long names.
    assert b"\r\nCall-ID: call-1\r\n" in msg.to_bytes() and b"\r\ni:" not in msg.to_bytes()


def test_header_names_are_case_insensitive_and_keep_their_spelling() -> None:
    msg = request(invite("x-CLINIC-Room: 12", "X-Clinic-Room: 14"))
    assert msg.header_lines("X-Clinic-Room") == ["12", "14"]
    assert ("x-clinic-room", "x-CLINIC-Room", "12") in msg.fields


def test_folded_lines_are_unfolded_to_one_space() -> None:
    msg = request(invite("Subject: I know you're there,", "   pick up the phone", "\tand talk to me!"))
    assert msg.header("Subject") == "I know you're there, pick up the phone and talk to me!"


def test_whitespace_around_colon_and_values() -> None:
    msg = request(sip("OPTIONS sip:a@b SIP/2.0", "Call-ID   :   abc  ", "X-Empty:", "X-Tab:\tv\t"))
    assert msg.header("call-id") == "abc" and msg.header("x-empty") == "" and msg.header("x-tab") == "v"


def test_multiple_values_per_header_and_per_line() -> None:
    msg = request(
        invite(
            "Route: <sip:p1.example;lr>, <sip:p2.example;lr>",
            "Route: <sip:p3.example;lr>",
            "Allow: INVITE, ACK ,BYE",
            'Contact: "Desk, front" <sip:desk@192.0.2.7>;q=0.7, <sip:mobile@192.0.2.8>;q=0.3',
        )
    )
    assert [r.uri.host for r in msg.name_addrs("Route")] == ["p1.example", "p2.example", "p3.example"]
    assert msg.header_lines("Route") == ["<sip:p1.example;lr>, <sip:p2.example;lr>", "<sip:p3.example;lr>"]
    assert msg.tokens("Allow") == ["invite", "ack", "bye"]
    contacts = msg.contacts
    assert [(c.display, c.param("q")) for c in contacts] == [
        (None, None),
        ("Desk, front", "0.7"),
        (None, "0.3"),
    ]


def test_non_list_headers_are_not_split_at_commas() -> None:
    msg = request(invite('Authorization: Digest username="a", realm="b", nonce="c"', "Subject: a, b"))
    assert msg.header_values("Authorization") == ['Digest username="a", realm="b", nonce="c"']
    assert msg.header_values("Subject") == ["a, b"]


def test_contact_star() -> None:
    msg = request(invite("Contact: *").replace(b"Contact: <sip:alice@192.0.2.1>\r\n", b""))
    assert msg.contact_star
    msg.validate()
    mixed = request(invite("Contact: *"))
    assert not mixed.contact_star
    assert sip_error(lambda: mixed.contacts).status == 400


@pytest.mark.parametrize(
    "line",
    ["Bad Header: x", "Bad\x01: x", ": empty name", "no colon here"],
)
def test_bad_header_lines_are_400(line: str) -> None:
    err = sip_error(parse_message, invite(line))
    assert err.status == 400 and not err.drop


# -- display names and name-addr vs addr-spec -------------------------------------------------


@pytest.mark.parametrize(
    ("text", "display"),
    [
        ('"Dr. Nordmann" <sip:n@c.example>', "Dr. Nordmann"),
        ('"say \\"hi\\"" <sip:n@c.example>', 'say "hi"'),
        ('"back\\\\slash" <sip:n@c.example>', "back\\slash"),
        ('"" <sip:n@c.example>', ""),
        ('"comma, semi; <angle>" <sip:n@c.example>', "comma, semi; <angle>"),
        ("Kari   Nordmann <sip:n@c.example>", "Kari Nordmann"),
        ("caller<sip:n@c.example>", "caller"),
        ("<sip:n@c.example>", None),
        ('"Åse Ødegård" <sip:n@c.example>', "Åse Ødegård"),
    ],
)
def test_display_names(text: str, display: str | None) -> None:
    na = parse_name_addr(text)
    assert na.display == display and str(na.uri) == "sip:n@c.example"
    assert parse_name_addr(str(na)) == na


@pytest.mark.parametrize(
    "text",
    [
        '"unterminated <sip:n@c.example>',
        "Bell, Alexander <sip:n@c.example>",
        "< sip:n@c.example >",
        "<sip:n@c.example",
    ],
)
def test_bad_name_addrs(text: str) -> None:
    assert sip_error(parse_name_addr, text).status == 400


def test_parameters_after_the_angle_bracket_belong_to_the_header() -> None:
    na = parse_name_addr("<sip:bob@c.example;transport=tcp>;tag=abc;expires=60")
    assert na.uri.transport == "tcp" and na.uri.params == (("transport", "tcp"),)
    assert na.params == (("tag", "abc"), ("expires", "60")) and na.tag == "abc"


def test_addr_spec_parameters_belong_to_the_header() -> None:
    na = parse_name_addr("sip:bob@c.example;transport=tcp;tag=abc")
    assert na.bracketed is False and na.uri.params == ()
    assert na.params == (("transport", "tcp"), ("tag", "abc"))
    assert str(na) == "<sip:bob@c.example>;transport=tcp;tag=abc"


@pytest.mark.parametrize("text", ["sip:bob@c.example?Subject=hi", "sip:bob,x@c.example"])
def test_addr_spec_with_headers_or_comma_must_be_bracketed(text: str) -> None:
    # RFC 3261 §20.10; RFC 4475 §3.1.2.13.
    assert sip_error(parse_name_addr, text).status == 400
    assert parse_name_addr(f"<{text}>").uri.host == "c.example"


def test_with_tag_replaces_the_tag() -> None:
    na = parse_name_addr("<sip:b@c.example>;tag=1;x=y").with_tag("2")
    assert na.tag == "2" and na.params == (("x", "y"), ("tag", "2"))


def test_quoted_header_parameter_keeps_its_quotes() -> None:
    na = parse_name_addr('<sip:b@c.example>;note="a;b=c";tag=t')
    assert na.param("note") == '"a;b=c"' and na.tag == "t"


# -- URIs -----------------------------------------------------------------------------------


def test_sip_uri_parts() -> None:
    uri = parse_uri(
        "sips:alice:secret@Clinic.Example:5061;transport=TLS;lr;maddr=239.255.255.1?Subject=x&Priority=urgent"
    )
    assert (uri.scheme, uri.user, uri.password, uri.host, uri.port) == (
        "sips",
        "alice",
        "secret",
        "Clinic.Example",
        5061,
    )
    assert uri.params == (("transport", "TLS"), ("lr", None), ("maddr", "239.255.255.1"))
    assert uri.transport == "tls" and uri.has_param("lr") and uri.param("lr") is None
    assert uri.headers == (("Subject", "x"), ("Priority", "urgent"))
    assert uri.is_sip and uri.aor() == "sips:alice@clinic.example"
    assert (
        str(uri)
        == "sips:alice:secret@Clinic.Example:5061;transport=TLS;lr;maddr=239.255.255.1?Subject=x&Priority=urgent"
    )
    assert uri.without_headers().headers == ()


def test_scheme_is_case_insensitive() -> None:
    assert parse_uri("SIP:bob@c.example").scheme == "sip"


def test_escapes_in_user_part() -> None:
    uri = parse_uri("sip:%61lice%20nordmann@c.example")
    assert uri.user == "%61lice%20nordmann" and uri.user_unescaped == "alice nordmann"
    assert str(uri) == "sip:%61lice%20nordmann@c.example"
    assert parse_uri("sip:%C3%A5se@c.example").user_unescaped == "åse"
    assert parse_uri("sip:%FF@c.example").user_unescaped == "\xff"  # not UTF-8: kept as octets


@pytest.mark.parametrize(
    "text",
    [
        "sip:bob@c.example:99999",
        "sip:bob@c.example:port",
        "sip:bob@bad_host-",
        "sip:bob@c.example;=x",
        "sip:bob@c.example;transport=",
        "sip:bo%zzb@c.example",
        "sip:bob@c.example?novalue",
        "sip:bob @c.example",
        "sip:",
        "nocolon",
        "1sip:bob@c.example",
        "tel:",
        "tel:+47 2233",
        "tel:+47@x",
        "mailto:",
        'http:"x"',
    ],
)
def test_bad_uris(text: str) -> None:
    assert sip_error(parse_uri, text).status == 400


def test_tel_uri() -> None:
    uri = parse_uri("tel:+47-22-33-44-55;phone-context=+47;ext=12")
    assert uri.scheme == "tel" and uri.user == "+47-22-33-44-55"
    assert uri.param("phone-context") == "+47" and uri.param("ext") == "12"
    assert str(uri) == "tel:+47-22-33-44-55;phone-context=+47;ext=12"
    assert not uri.is_sip


def test_other_schemes_are_opaque() -> None:
    uri = parse_uri("mailto:resepsjon@clinic.example")
    assert uri.scheme == "mailto" and uri.opaque == "resepsjon@clinic.example" and uri.host == ""
    assert str(uri) == "mailto:resepsjon@clinic.example"


def test_escaped_parameter_names_are_found() -> None:
    uri = parse_uri("sip:b@c.example;%6C%72;%74ransport=%54CP")
    assert uri.has_param("lr") and uri.param("lr") is None
    assert uri.transport == "tcp"
    assert str(uri) == "sip:b@c.example;%6c%72;%74ransport=%54CP"


# RFC 3261 §19.1.4: the examples, verbatim.
EQUIVALENT = [
    ("sip:%61lice@atlanta.com;transport=TCP", "sip:alice@AtLanTa.CoM;Transport=tcp"),
    ("sip:carol@chicago.com", "sip:carol@chicago.com;newparam=5"),
    ("sip:carol@chicago.com", "sip:carol@chicago.com;security=on"),
    ("sip:carol@chicago.com;newparam=5", "sip:carol@chicago.com;security=on"),
    (
        "sip:biloxi.com;transport=tcp;method=REGISTER?to=sip:bob%40biloxi.com",
        "sip:biloxi.com;method=REGISTER;transport=tcp?to=sip:bob%40biloxi.com",
    ),
    (
        "sip:alice@atlanta.com?subject=project%20x&priority=urgent",
        "sip:alice@atlanta.com?priority=urgent&subject=project%20x",
    ),
]
NOT_EQUIVALENT = [
    ("SIP:ALICE@AtLanTa.CoM;Transport=udp", "sip:alice@AtLanTa.CoM;Transport=UDP"),
    ("sip:bob@biloxi.com", "sip:bob@biloxi.com:5060"),
    ("sip:bob@biloxi.com", "sip:bob@biloxi.com;transport=udp"),
    ("sip:bob@biloxi.com", "sip:bob@biloxi.com:6000;transport=tcp"),
    ("sip:carol@chicago.com", "sip:carol@chicago.com?Subject=next%20meeting"),
    ("sip:bob@phone21.boxesbybob.com", "sip:bob@192.0.2.4"),
    ("sip:carol@chicago.com;security=on", "sip:carol@chicago.com;security=off"),
]


@pytest.mark.parametrize(("a", "b"), EQUIVALENT)
def test_rfc3261_equivalent_uris(a: str, b: str) -> None:
    assert parse_uri(a).equivalent(parse_uri(b)) and parse_uri(b).equivalent(parse_uri(a))


@pytest.mark.parametrize(("a", "b"), NOT_EQUIVALENT)
def test_rfc3261_different_uris(a: str, b: str) -> None:
    assert not parse_uri(a).equivalent(parse_uri(b)) and not parse_uri(b).equivalent(parse_uri(a))


def test_equivalence_decodes_escapes_once_in_parameters() -> None:
    base = parse_uri("sip:a@c.example;n%61me=v%61lue%2541")
    assert base.equivalent(parse_uri("sip:a@c.example;name=value%2541"))
    assert not base.equivalent(parse_uri("sip:a@c.example;name=valueA"))
    assert parse_uri("sip:a:p%41ss@c.example").equivalent(parse_uri("sip:a:pAss@c.example"))
    assert not parse_uri("sip:a:pass@c.example").equivalent(parse_uri("sip:a:PASS@c.example"))
    assert not parse_uri("sip:a:pass@c.example").equivalent(parse_uri("sip:a@c.example"))


def test_opaque_uris_compare_by_text() -> None:
    assert parse_uri("mailto:a@b").equivalent(parse_uri("MAILTO:a@b"))
    assert not parse_uri("mailto:a@b").equivalent(parse_uri("sip:a@b"))


# -- IPv6 references (RFC 3261 §19.1.1, RFC 5118) -------------------------------------------------


@pytest.mark.parametrize(
    ("text", "host", "port"),
    [
        ("sip:[2001:db8::10]", "[2001:db8::10]", None),
        ("sip:bob@[2001:db8::10]:5070", "[2001:db8::10]", 5070),
        ("sip:[::1];transport=tcp", "[::1]", None),
        ("sip:[::ffff:192.0.2.1]:5060", "[::ffff:192.0.2.1]", 5060),
        ("sip:[2001:db8:::192.0.2.1]", "[2001:db8::192.0.2.1]", None),  # RFC 5118 §4.10
    ],
)
def test_ipv6_references(text: str, host: str, port: int | None) -> None:
    uri = parse_uri(text)
    assert (uri.host, uri.port) == (host, port)
    assert uri.host_bare == host[1:-1]


@pytest.mark.parametrize(
    "text",
    [
        "sip:2001:db8::10",
        "sip:[2001:db8::10",
        "sip:[2001:db8::g]",
        "sip:[1:2:3:4:5:6:7:8:9]",
        "sip:[2001:db8:::1]",
    ],
)
def test_bad_ipv6_references(text: str) -> None:
    assert sip_error(parse_uri, text).status == 400


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[2001:db8::1]:5060", ("[2001:db8::1]", 5060)),
        ("[2001:db8::1]", ("[2001:db8::1]", None)),
        ("  host.example:5061 ", ("host.example", 5061)),
        ("192.0.2.1", ("192.0.2.1", None)),
    ],
)
def test_split_host_port(text: str, expected: tuple[str, int | None]) -> None:
    assert split_host_port(text) == expected


@pytest.mark.parametrize("text", ["2001:db8::1", "[2001:db8::1]x", "[2001:db8::1]:", "host:70000", "host:²"])
def test_split_host_port_refuses(text: str) -> None:
    assert sip_error(split_host_port, text).status == 400


# -- Via (RFC 3261 §20.42, RFC 3581) ------------------------------------------------------------


def test_via_parts_received_and_rport() -> None:
    via = parse_via("SIP/2.0/UDP 10.0.0.7:5062;branch=z9hG4bKx;received=192.0.2.9;rport=40123")
    assert (via.protocol, via.transport, via.host, via.port) == ("SIP/2.0", "UDP", "10.0.0.7", 5062)
    assert via.branch == "z9hG4bKx" and via.received == "192.0.2.9"
    assert via.rport == 40123 and via.wants_rport and via.sent_by == "10.0.0.7:5062"
    assert str(via) == "SIP/2.0/UDP 10.0.0.7:5062;branch=z9hG4bKx;received=192.0.2.9;rport=40123"


def test_via_empty_rport_asks_for_symmetric_routing() -> None:
    via = parse_via("SIP/2.0/UDP h.example;rport;branch=z9hG4bKx")
    assert via.wants_rport and via.rport is None
    assert not parse_via("SIP/2.0/UDP h.example;branch=z9hG4bKx").wants_rport
    assert parse_via("SIP/2.0/UDP h.example;rport=²;branch=z9hG4bKx").rport is None


def test_via_with_lws_and_ipv6() -> None:
    via = parse_via("SIP / 2.0 / tcp   [2001:db8::9:1] : 6050 ;branch=z9hG4bKa")
    assert (via.transport, via.host, via.port) == ("TCP", "[2001:db8::9:1]", 6050)
    assert parse_via("SIP/2.0/UDP [2001:db8::9:1];received=[2001:db8::9:255]").received == "[2001:db8::9:255]"
    assert parse_via("SIP/2.0/UDP [2001:db8::9:1];received=2001:db8::9:255").received == "2001:db8::9:255"


def test_via_with_params_replaced() -> None:
    via = parse_via("SIP/2.0/UDP h.example;branch=z9hG4bKx;rport")
    assert (
        str(via.with_params((*via.params[:1], ("rport", "5060"))))
        == "SIP/2.0/UDP h.example;branch=z9hG4bKx;rport=5060"
    )
    assert Via.parse("SIP/2.0/UDP h.example") == Via("UDP", "h.example", None)


@pytest.mark.parametrize(
    "text",
    [
        "SIP/2.0/UDP",
        "SIP/2.0 h.example",
        "SIP/2.0/UDP h.example:70000",
        "SIP/2.0/UDP h.example;branch=",
        "SIP/2.0/UDP h.example;ttl=256",
        "SIP/2.0/UDP h.example;ttl=²",
        "SIP/2.0/UDP [2001:db8::zz]",
        "SIP/2.0/UDP 192.0.2.15;;,;,,",
    ],
)
def test_bad_vias(text: str) -> None:
    assert sip_error(parse_via, text).status == 400


def test_top_via_is_the_first_value_of_the_first_line() -> None:
    msg = request(invite("Via: SIP/2.0/TCP second.example;branch=z9hG4bKb").replace(
        b"Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK776asdhds",
        b"Via: SIP/2.0/UDP first.example;branch=z9hG4bKa, SIP/2.0/UDP middle.example;branch=z9hG4bKm",
    ))  # fmt: skip
    assert msg.top_via.host == "first.example" and msg.branch == "z9hG4bKa"
    assert [v.host for v in msg.vias] == ["first.example", "middle.example", "second.example"]


def test_missing_via_is_400() -> None:
    msg = request(invite().replace(b"Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK776asdhds\r\n", b""))
    assert sip_error(lambda: msg.top_via).status == 400
    assert sip_error(msg.validate).status == 400


# -- CSeq, Max-Forwards, Expires ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0 INVITE", CSeq(0, "INVITE")),
        (" 2147483647   ACK ", CSeq(2**31 - 1, "ACK")),
        ("0009 BYE", CSeq(9, "BYE")),
    ],
)
def test_cseq(text: str, expected: CSeq) -> None:
    assert CSeq.parse(text) == expected
    assert str(expected) == f"{expected.seq} {expected.method}"


@pytest.mark.parametrize(
    "text",
    [
        "2147483648 INVITE",
        "4294967296 INVITE",
        "36893488147419103232 REGISTER",
        "INVITE",
        "1",
        "-1 BYE",
        "1 IN VITE",
        "²1 BYE",
    ],
)
def test_bad_cseq(text: str) -> None:
    # The number must be below 2**31 (RFC 3261 §8.1.1.5).
    assert sip_error(CSeq.parse, text).status == 400


@pytest.mark.parametrize(("value", "expected"), [("0", 0), ("70", 70), ("255", 255), ("0068", 68)])
def test_max_forwards_range(value: str, expected: int) -> None:
    assert (
        request(invite().replace(b"Max-Forwards: 70", f"Max-Forwards: {value}".encode())).max_forwards
        == expected
    )


@pytest.mark.parametrize("value", ["256", "300", "-1", "seventy", "", "7 0", "\u0661"])
def test_max_forwards_out_of_range(value: str) -> None:
    msg = request(invite().replace(b"Max-Forwards: 70", f"Max-Forwards: {value}".encode()))
    assert sip_error(lambda: msg.max_forwards).status == 400
    assert sip_error(msg.validate).status == 400


def test_expires() -> None:
    assert request(invite("Expires: 3600")).expires == 3600
    assert request(invite()).expires is None
    assert request(invite("Expires: 4294967295")).expires == 2**32 - 1
    for bad in ("4294967296", "1" + "0" * 100, "soon"):
        msg = request(invite(f"Expires: {bad}"))
        assert sip_error(lambda m=msg: m.expires).status == 400


@pytest.mark.parametrize(
    "header",
    ["Call-ID: other", "CSeq: 1 INVITE", "From: <sip:x@y>;tag=2", "To: <sip:x@y>", "Max-Forwards: 1"],
)
def test_repeated_singletons_fail_validation(header: str) -> None:
    assert sip_error(request(invite(header)).validate).status == 400


def test_cseq_method_must_match() -> None:
    assert sip_error(request(invite().replace(b"314159 INVITE", b"314159 BYE")).validate).status == 400


def test_request_uri_with_headers_fails_validation() -> None:
    msg = request(
        invite().replace(b"INVITE sip:bob@clinic.example ", b"INVITE sip:bob@clinic.example?Route=x ")
    )
    assert msg.uri.headers == (("Route", "x"),)
    assert sip_error(msg.validate).status == 400


def test_call_id_must_not_be_empty_or_spaced() -> None:
    for value in (b"", b"a b"):
        msg = request(invite().replace(b"Call-ID: a84b4c76e66710@192.0.2.1", b"Call-ID: " + value))
        assert sip_error(lambda m=msg: m.call_id).status == 400


# -- start lines ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "status"),
    [
        ("INVITE sip:bob@c.example SIP/3.0", 505),
        ("INVITE sip:bob@c.example sip/2.0", None),
        ("INVITE sip:bob@c.example HTTP/1.1", 400),
        ("INVITE  sip:bob@c.example SIP/2.0", 400),
        ("INVITE sip:bob@c.example SIP/2.0 ", 400),
        ("INVITE sip:bob@c.example", 400),
        ("INV{TE sip:bob@c.example SIP/2.0", 400),
        ("INVITE bob SIP/2.0", 400),
    ],
)
def test_request_lines(line: str, status: int | None) -> None:
    data = invite().replace(b"INVITE sip:bob@clinic.example SIP/2.0", line.encode())
    if status is None:
        assert request(data).method == "INVITE"
        return
    with pytest.raises(ParseError) as err:
        parse_message(data)
    assert err.value.status == status and err.value.is_request
    assert (
        err.value.fields is not None
        and ("call-id", "Call-ID", "a84b4c76e66710@192.0.2.1") in err.value.fields
    )


@pytest.mark.parametrize(
    ("line", "status", "reason"),
    [
        ("SIP/2.0 200 OK", 200, "OK"),
        ("SIP/2.0 180 Ringing now", 180, "Ringing now"),
        ("SIP/2.0 486 ", 486, ""),
        ("SIP/2.0 100", 100, ""),
    ],
)
def test_status_lines(line: str, status: int, reason: str) -> None:
    msg = parse_message(sip(line, "Via: SIP/2.0/UDP h;branch=z9hG4bKa"))
    assert isinstance(msg, Response) and (msg.status, msg.reason) == (status, reason)


@pytest.mark.parametrize(
    "line",
    [
        "SIP/2.0 700 Nope",
        "SIP/2.0 099 Early",
        "SIP/2.0 4294967301 x",
        "SIP/2.0 2x0 OK",
        "SIP/2.0 ²00 OK",
        "SIP/3.0 200 OK",
        "SIP/2.0",
    ],
)
def test_bad_status_lines_are_dropped(line: str) -> None:
    err = sip_error(parse_message, sip(line, "Via: SIP/2.0/UDP h;branch=z9hG4bKa"))
    assert err.drop


def test_broken_response_fails_validation_with_drop() -> None:
    msg = parse_message(
        sip(
            "SIP/2.0 200 OK",
            "Via: SIP/2.0/UDP h;branch=z9hG4bKa",
            "Call-ID: c",
            "CSeq: x",
            "From: <sip:a@b>",
            "To: <sip:a@b>",
        )
    )
    err = sip_error(msg.validate)
    assert err.status == 400 and err.drop


# -- Content-Length framing for datagrams (RFC 3261 §18.3) ------------------------------------------


def test_datagram_without_content_length_takes_the_rest() -> None:
    assert request(invite(body="v=0\r\n")).body == b"v=0\r\n"


def test_datagram_content_length_smaller_cuts_the_body() -> None:
    assert request(invite(body="v=0\r\ngarbage", content_length="5")).body == b"v=0\r\n"


def test_datagram_content_length_larger_is_400() -> None:
    err = sip_error(parse_message, invite(body="v=0\r\n", content_length="6"))
    assert err.status == 400 and not err.drop


def test_stream_message_without_content_length_has_no_body() -> None:
    msg = parse_message(invite(), datagram=False)
    assert msg.body == b""


@pytest.mark.parametrize("value", ["-1", "five", "1 2", "9999999999", "\u0663", "²"])
def test_bad_content_length_is_400(value: str) -> None:
    assert sip_error(parse_message, invite(content_length=value)).status == 400


def test_two_content_lengths_are_400() -> None:
    assert sip_error(parse_message, invite("Content-Length: 0", content_length="0")).status == 400


def test_message_without_blank_line() -> None:
    msg = request(invite()[:-2])
    assert msg.call_id == "a84b4c76e66710@192.0.2.1" and msg.body == b""


def test_to_bytes_recomputes_content_length() -> None:
    msg = request(invite(body="v=0\r\n", content_length="5"))
    msg.body = b"v=0\r\ns=-\r\n"
    assert request(msg.to_bytes()).body == b"v=0\r\ns=-\r\n"
    assert msg.to_bytes().count(b"Content-Length") == 1


# -- limits ------------------------------------------------------------------------------------


def test_message_size_limit_is_513() -> None:
    big = invite(body="x" * (MAX_MESSAGE_SIZE + 1))
    assert sip_error(parse_message, big).status == 513
    fits = invite(body="x" * (MAX_MESSAGE_SIZE - len(invite())))
    assert len(fits) == MAX_MESSAGE_SIZE
    assert len(request(fits).body) == MAX_MESSAGE_SIZE - len(invite())


def test_header_count_limit_is_400() -> None:
    base = len(invite().split(b"\r\n")) - 3  # header lines in the template
    at_limit = invite(*[f"X-H: {i}" for i in range(MAX_HEADER_FIELDS - base)])
    assert len(request(at_limit).fields) == MAX_HEADER_FIELDS
    over = invite(*[f"X-H: {i}" for i in range(MAX_HEADER_FIELDS - base + 1)])
    assert sip_error(parse_message, over).status == 400


# -- StreamFramer (RFC 3261 §18.3, RFC 5626 §4.4.1) ----------------------------------------------

M1 = invite(body="hello", content_length="5")
M2 = sip("OPTIONS sip:a@b SIP/2.0", "Call-ID: 2", "l: 0")
M3 = sip("SIP/2.0 200 OK", "Call-ID: 3", "content-length  :  3", body="abc")


def test_framer_several_messages_in_one_feed() -> None:
    framer = StreamFramer()
    assert framer.feed(M1 + M2 + M3) == [M1, M2, M3]
    assert framer.pending == 0


def test_framer_message_split_across_feeds() -> None:
    framer = StreamFramer()
    data = M1 + M2
    out: list[bytes] = []
    for i in range(len(data)):
        out.extend(framer.feed(data[i : i + 1]))
        if i < len(M1) - 1:
            assert out == [] and framer.pending == i + 1
    assert out == [M1, M2] and framer.pending == 0


def test_framer_keepalives_are_pings() -> None:
    framer = StreamFramer()
    assert framer.feed(b"\r\n\r\n") == [] and framer.pings == 1
    assert framer.feed(b"\r\n\r\n" + M2 + b"\r\n\r\n") == [M2] and framer.pings == 3
    assert framer.pending == 0


def test_framer_ping_split_across_feeds() -> None:
    framer = StreamFramer()
    for part in (b"\r", b"\n", b"\r", b"\n"):
        assert framer.feed(part) == []
    assert framer.pings == 1 and framer.pending == 0


def test_framer_single_crlf_is_not_a_ping() -> None:
    framer = StreamFramer()
    assert framer.feed(b"\r\n" + M2 + b"\r\n" + M2) == [M2, M2]
    assert framer.pings == 0


@pytest.mark.parametrize("cl", ["Content-Length: -5", "Content-Length: five", "l: 9999999999"])
def test_framer_bad_content_length(cl: str) -> None:
    err = sip_error(StreamFramer().feed, sip("OPTIONS sip:a@b SIP/2.0", "Call-ID: 1", cl))
    assert err.status == 400


def test_framer_missing_content_length() -> None:
    # RFC 3261 §20.14: on a stream Content-Length is mandatory; without it framing is lost.
    err = sip_error(StreamFramer().feed, sip("OPTIONS sip:a@b SIP/2.0", "Call-ID: 1"))
    assert err.status == 400


def test_framer_two_content_lengths() -> None:
    err = sip_error(StreamFramer().feed, sip("OPTIONS sip:a@b SIP/2.0", "Content-Length: 0", "l: 0"))
    assert err.status == 400


def test_framer_oversize() -> None:
    declared = sip("OPTIONS sip:a@b SIP/2.0", f"Content-Length: {MAX_MESSAGE_SIZE}")
    assert sip_error(StreamFramer().feed, declared).status == 513
    endless = StreamFramer()
    endless.feed(b"OPTIONS sip:a@b SIP/2.0\r\n")
    assert sip_error(endless.feed, b"X: " + b"y" * MAX_MESSAGE_SIZE).status == 513


def test_framer_waits_for_the_body() -> None:
    framer = StreamFramer()
    assert framer.feed(M1[:-2]) == []
    assert framer.feed(M1[-2:]) == [M1]


# -- make_response (RFC 3261 §8.2.6) ----------------------------------------------------------


def test_make_response_copies_the_dialog_headers_and_adds_a_to_tag() -> None:
    req = request(
        invite("Via: SIP/2.0/UDP proxy.example;branch=z9hG4bKp", "Timestamp: 54", "Subject: not copied")
    )
    resp = make_response(req, 180, to_tag="as83kd9bs", headers=[("Contact", "<sip:bob@192.0.2.4>")])
    assert resp.status == 180 and resp.reason == "Ringing"
    assert resp.header_lines("Via") == req.header_lines("Via")
    assert resp.header("From") == req.header("From") and resp.call_id == req.call_id
    assert resp.cseq == req.cseq
    assert resp.to_tag == "as83kd9bs" and resp.to.uri == req.to.uri and resp.to.display == "Bob"
    assert resp.header("Subject") is None and resp.header("Timestamp") is None
    assert resp.header("Contact") == "<sip:bob@192.0.2.4>"
    again = parse_message(resp.to_bytes())
    assert isinstance(again, Response)
    again.validate()
    assert again.to_tag == "as83kd9bs"


def test_make_response_100_has_no_to_tag_but_the_timestamp() -> None:
    req = request(invite("Timestamp: 54"))
    resp = make_response(req, 100, to_tag="x")
    assert resp.to_tag is None and resp.header("Timestamp") == "54" and resp.reason == "Trying"


def test_make_response_keeps_an_existing_to_tag() -> None:
    req = request(
        invite().replace(b"To: Bob <sip:bob@clinic.example>", b"To: Bob <sip:bob@clinic.example>;tag=old")
    )
    assert make_response(req, 200, to_tag="new").to_tag == "old"


def test_build_and_serialize() -> None:
    req = Request.build(
        "OPTIONS",
        Uri.parse("sip:bob@clinic.example"),
        [("Via", "SIP/2.0/UDP h;branch=z9hG4bKa"), ("From", "<sip:a@b>;tag=1"), ("To", "<sip:bob@clinic.example>"),
         ("Call-ID", "x"), ("CSeq", "1 OPTIONS"), ("Max-Forwards", "70")],
    )  # fmt: skip
    data = req.to_bytes()
    assert data.startswith(b"OPTIONS sip:bob@clinic.example SIP/2.0\r\n")
    assert data.endswith(b"Content-Length: 0\r\n\r\n")
    again = request(data)
    again.validate()
    assert again.uri == req.uri and again.to == NameAddr.parse("<sip:bob@clinic.example>")


def test_replace_top_via_keeps_every_view_of_the_via_in_step() -> None:
    request = parse_message(
        b"OPTIONS sip:clinic.test SIP/2.0\r\n"
        b"Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKa;rport, SIP/2.0/UDP proxy.test;branch=z9hG4bKb\r\n"
        b"From: <sip:a@clinic.test>;tag=1\r\nTo: <sip:b@clinic.test>\r\nCall-ID: x\r\n"
        b"CSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    )
    assert isinstance(request, Request)
    request.validate()  # parses and caches the Via values
    stamped = request.top_via.with_params((("branch", "z9hG4bKa"), ("rport", "40000"), ("received", "192.0.2.7")))
    request.replace_top_via(stamped)
    assert request.top_via == stamped
    assert [v.received for v in request.vias] == ["192.0.2.7", None]
    assert request.header_values("via")[1] == "SIP/2.0/UDP proxy.test;branch=z9hG4bKb"
    wire = parse_message(request.to_bytes())
    assert wire.top_via.received == "192.0.2.7" and wire.top_via.rport == 40000
    assert len(wire.vias) == 2


STAMPABLE = (
    b"OPTIONS sip:clinic.test SIP/2.0\r\n"
    b"v: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKa;rport\r\n"
    b"Via: SIP/2.0/UDP proxy.test;branch=z9hG4bKb\r\n"
    b"From: <sip:a@clinic.test>;tag=1\r\nTo: <sip:b@clinic.test>\r\nCall-ID: x\r\n"
    b"CSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
)


@pytest.mark.parametrize("fields_first", [False, True])
def test_fields_of_a_parsed_message_carry_the_rewritten_top_via(fields_first: bool) -> None:
    request = parse_message(STAMPABLE)
    assert isinstance(request, Request)
    if fields_first:
        assert request.fields[0] == ("via", "v", "SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKa;rport")
    stamped = request.top_via.stamped("192.0.2.7", 40000)
    assert stamped is not None
    request.replace_top_via(stamped)
    expected = "SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKa;rport=40000;received=192.0.2.7"
    assert request.fields[0] == ("via", "v", expected)
    assert request.fields[1] == ("via", "Via", "SIP/2.0/UDP proxy.test;branch=z9hG4bKb")
    assert request.header_lines("via") == [expected, "SIP/2.0/UDP proxy.test;branch=z9hG4bKb"]
    request.forget_parsed()
    assert request.top_via == stamped and request.header_lines("via")[0] == expected
    wire = parse_message(request.to_bytes())
    assert [(k, v) for k, _, v in wire.fields] == [(k, v) for k, _, v in request.fields if k != "content-length"] + [
        ("content-length", "0")
    ]


def test_forgetting_the_parse_of_a_built_message_changes_no_answer() -> None:
    req = Request.build(
        "OPTIONS",
        "sip:bob@clinic.example",
        [("Via", "SIP/2.0/UDP h;branch=z9hG4bKa"), ("f", "<sip:a@b>;tag=1"), ("To", "<sip:bob@clinic.example>"),
         ("Call-ID", "x"), ("CSeq", "1 OPTIONS"), ("Content-Type", "text/plain;charset=utf-8")],
    )  # fmt: skip
    before = (req.top_via, req.from_tag, req.to, req.call_id, req.cseq, req.content_type, req.header("from"))
    wire, fields, uri = req.to_bytes(), list(req.fields), req.uri
    req.forget_parsed()
    assert (req.top_via, req.from_tag, req.to, req.call_id, req.cseq, req.content_type, req.header("F")) == before
    assert before[5] == "text/plain"
    assert req.to_bytes() == wire and req.fields == fields and req.uri == uri


def _held(message: Message) -> list[object]:
    """What ``message`` refers to: its attribute values, compiled or not."""
    attributes = getattr(message, "__dict__", None)
    if attributes is not None:
        return list(attributes.values())
    return [o for o in gc.get_referents(message) if not isinstance(o, type)]


def test_a_forgotten_message_leaves_nothing_for_the_collector() -> None:
    """What a lingering transaction keeps is one object the garbage collector visits: no list of
    fields, no parsed URI or header values."""
    built = Request.build(
        "INVITE", "sip:bob@clinic.example",
        [("Via", "SIP/2.0/UDP h;branch=z9hG4bKa"), ("From", "<sip:a@b>;tag=1"), ("To", "<sip:bob@clinic.example>"),
         ("Call-ID", "x"), ("CSeq", "1 INVITE"), ("Contact", "<sip:a@192.0.2.1>")],
    )  # fmt: skip
    received = parse_message(built.to_bytes())
    received.replace_top_via(parse_via("SIP/2.0/UDP h;branch=z9hG4bKa;received=192.0.2.9"))
    for message in (built, received):
        wire = message.to_bytes()
        assert message.fields and message.contacts and message.cseq and message.to and message.uri
        message.forget_parsed()
        assert not [o for o in _held(message) if gc.is_tracked(o)]
        assert message.to_bytes() == wire
    assert received.top_via.received == "192.0.2.9"


@pytest.mark.parametrize(
    ("via", "host", "port", "expected"),
    [
        # Sent-by is the source and no rport: nothing to stamp.
        ("SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKa", "192.0.2.1", 5060, None),
        ("SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKa;rport", "192.0.2.1", 40000,
         "SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKa;rport=40000"),
        ("SIP/2.0/UDP phone.test;received=10.1.1.1;branch=z9hG4bKa", "192.0.2.1", 5060,
         "SIP/2.0/UDP phone.test;branch=z9hG4bKa;received=192.0.2.1"),
        ("SIP/2.0/UDP phone.test;rport;branch=z9hG4bKa", "192.0.2.1", 40000,
         "SIP/2.0/UDP phone.test;rport=40000;branch=z9hG4bKa;received=192.0.2.1"),
        ("SIP/2.0/UDP [2001:db8::1];branch=z9hG4bKa", "2001:db8::1", 5060, None),
    ],
)  # fmt: skip
def test_via_stamped_on_receipt(via: str, host: str, port: int, expected: str | None) -> None:
    stamped = parse_via(via).stamped(host, port)
    assert (None if stamped is None else str(stamped)) == expected


def test_a_built_message_with_more_fields_than_a_parse_allows_keeps_its_fields() -> None:
    """Written as header text, such a message could not be read back: it keeps its field list."""
    headers = [("Via", "SIP/2.0/UDP h;branch=z9hG4bKa"), ("Call-ID", "x"), ("CSeq", "1 OPTIONS")]
    headers += [(f"X-Extra-{i}", str(i)) for i in range(MAX_HEADER_FIELDS)]
    req = Request.build("OPTIONS", "sip:bob@clinic.example", headers)
    wire = req.to_bytes()
    req.forget_parsed()
    assert req.to_bytes() == wire and req.header("x-extra-7") == "7" and req.cseq.seq == 1
