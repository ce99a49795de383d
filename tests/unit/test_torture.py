"""The SIP torture tests of RFC 4475 and the IPv6 torture tests of RFC 5118, fed to the parser.

Each message under ``torture/`` is a byte-exact copy from its RFC's archive appendix. ``CASES`` says
what the RFC expects of a server receiving it:

- ``VALID``: parses, ``validate()`` passes, and every Via, Contact and address in it parses too;
  the per-message checks below then look at the values that make the message interesting.
- a status code (400, 505): the parser or ``validate()`` raises ``SipError`` with that status,
  without ``drop``, so the driver answers with it.
- ``DROP``: ``SipError`` with ``drop`` set (responses that are broken: nobody is answered).

Several answers belong to the endpoint, not the parser: 416 for a Request-URI scheme it does not
serve, 420 for an unknown Require, 415, 401, 406, 483. For those the message is ``VALID`` and the
per-message check asserts the fact the endpoint decides on (the scheme, the option tags, ...).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from sentral.pbx.sip.errors import SipError
from sentral.pbx.sip.headers import NameAddr
from sentral.pbx.sip.message import BRANCH_MAGIC, Message, Request, Response, StreamFramer, parse_message
from sentral.pbx.sip.uri import SIP_SCHEMES, parse_uri, unescape

TORTURE = Path(__file__).parent / "torture"
VALID = "valid"
DROP = "drop"
Outcome = str | int


@dataclass(frozen=True)
class Case:
    file: str
    section: str
    expect: Outcome
    why: str


CASES: list[Case] = [
    # RFC 4475 §3.1.1: valid messages.
    Case("rfc4475/wsinv.dat", "4475 §3.1.1.1", VALID, "folding, LWS, escapes in quotes, compact forms"),
    Case("rfc4475/intmeth.dat", "4475 §3.1.1.2", VALID, "every token character, controls in quotes"),
    Case("rfc4475/esc01.dat", "4475 §3.1.1.3", VALID, "%-escapes in user parts and URI parameters"),
    Case("rfc4475/escnull.dat", "4475 §3.1.1.4", VALID, "escaped NULs in URIs"),
    Case("rfc4475/esc02.dat", "4475 §3.1.1.5", VALID, "% that is not an escape (endpoint: 501)"),
    Case("rfc4475/lwsdisp.dat", "4475 §3.1.1.6", VALID, "no LWS between display name and <"),
    Case("rfc4475/longreq.dat", "4475 §3.1.1.7", VALID, "long values in header fields"),
    Case("rfc4475/dblreq.dat", "4475 §3.1.1.8", VALID, "bytes past Content-Length in a datagram ignored"),
    Case("rfc4475/semiuri.dat", "4475 §3.1.1.9", VALID, "semicolons in the URI user part"),
    Case("rfc4475/transports.dat", "4475 §3.1.1.10", VALID, "varied and unknown transports"),
    Case("rfc4475/mpart01.dat", "4475 §3.1.1.11", VALID, "multipart MIME body with binary"),
    Case("rfc4475/unreason.dat", "4475 §3.1.1.12", VALID, "UTF-8 reason phrase"),
    Case("rfc4475/noreason.dat", "4475 §3.1.1.13", VALID, "empty reason phrase"),
    # RFC 4475 §3.1.2: invalid messages.
    Case("rfc4475/badinv01.dat", "4475 §3.1.2.1", 400, "extraneous header field separators"),
    Case("rfc4475/clerr.dat", "4475 §3.1.2.2", 400, "Content-Length larger than the datagram"),
    Case("rfc4475/ncl.dat", "4475 §3.1.2.3", 400, "negative Content-Length"),
    Case("rfc4475/scalar02.dat", "4475 §3.1.2.4", 400, "overlarge CSeq, Max-Forwards, Expires"),
    Case("rfc4475/scalarlg.dat", "4475 §3.1.2.5", DROP, "response with overlarge scalars: discarded"),
    Case("rfc4475/quotbal.dat", "4475 §3.1.2.6", 400, "unterminated quoted display name"),
    Case("rfc4475/ltgtruri.dat", "4475 §3.1.2.7", 400, "<> around the Request-URI"),
    Case("rfc4475/lwsruri.dat", "4475 §3.1.2.8", 400, "LWS inside the Request-URI"),
    Case("rfc4475/lwsstart.dat", "4475 §3.1.2.9", 400, "several SP between request-line elements"),
    Case("rfc4475/trws.dat", "4475 §3.1.2.10", 400, "SP at the end of the request line"),
    Case("rfc4475/escruri.dat", "4475 §3.1.2.11", 400, "escaped headers in the Request-URI"),
    Case("rfc4475/baddate.dat", "4475 §3.1.2.12", VALID, "non-GMT Date: ignored, never used"),
    Case("rfc4475/regbadct.dat", "4475 §3.1.2.13", 400, "URI with headers not enclosed in <>"),
    Case("rfc4475/badaspec.dat", "4475 §3.1.2.14", 400, "spaces inside <addr-spec>"),
    Case("rfc4475/baddn.dat", "4475 §3.1.2.15", 400, "unquoted display name with non-token chars"),
    Case("rfc4475/badvers.dat", "4475 §3.1.2.16", 505, "SIP/7.0"),
    Case("rfc4475/mismatch01.dat", "4475 §3.1.2.17", 400, "CSeq method differs from request method"),
    Case("rfc4475/mismatch02.dat", "4475 §3.1.2.18", 400, "unknown method, CSeq mismatch (400 allowed)"),
    Case("rfc4475/bigcode.dat", "4475 §3.1.2.19", DROP, "status code 4294967301"),
    # RFC 4475 §3.2, §3.3, §3.4: transaction and application semantics.
    Case("rfc4475/badbranch.dat", "4475 §3.2.1", VALID, "branch is the bare magic cookie"),
    Case("rfc4475/insuf.dat", "4475 §3.3.1", 400, "no Call-ID, From, To"),
    Case("rfc4475/unkscm.dat", "4475 §3.3.2", VALID, "unknown Request-URI scheme (endpoint: 416)"),
    Case("rfc4475/novelsc.dat", "4475 §3.3.3", VALID, "atypical Request-URI scheme (endpoint: 416)"),
    Case("rfc4475/unksm2.dat", "4475 §3.3.4", VALID, "non-SIP URIs in To/From/Contact (registrar: 400)"),
    Case("rfc4475/bext01.dat", "4475 §3.3.5", VALID, "unknown Require/Proxy-Require (endpoint: 420)"),
    Case("rfc4475/invut.dat", "4475 §3.3.6", VALID, "unknown Content-Type (endpoint: 415)"),
    Case("rfc4475/regaut01.dat", "4475 §3.3.7", VALID, "unknown Authorization scheme (registrar: 401)"),
    Case("rfc4475/multi01.dat", "4475 §3.3.8", 400, "several Call-ID, To, From, CSeq, Max-Forwards"),
    Case("rfc4475/mcl01.dat", "4475 §3.3.9", 400, "two different Content-Lengths"),
    Case("rfc4475/bcast.dat", "4475 §3.3.10", VALID, "200 OK with a broadcast Via (discarded upstream)"),
    Case("rfc4475/zeromf.dat", "4475 §3.3.11", VALID, "Max-Forwards 0 (proxy: 483)"),
    Case("rfc4475/cparam01.dat", "4475 §3.3.12", VALID, "contact-param on an addr-spec"),
    Case("rfc4475/cparam02.dat", "4475 §3.3.13", VALID, "url-parameter inside <>"),
    Case("rfc4475/regescrt.dat", "4475 §3.3.14", VALID, "escaped Route header in a Contact URI"),
    Case("rfc4475/sdp01.dat", "4475 §3.3.15", VALID, "Accept without application/sdp (endpoint: 406)"),
    Case("rfc4475/inv2543.dat", "4475 §3.4.1", VALID, "RFC 2543 syntax: no branch, tag, Content-Length"),
    # RFC 5118 §4: IPv6.
    Case("rfc5118/ipv6-good", "5118 §4.1", VALID, "IPv6 references in R-URI, Via, Contact"),
    Case("rfc5118/ipv6-bad", "5118 §4.2", 400, "IPv6 address in the R-URI without brackets"),
    Case("rfc5118/port-ambiguous", "5118 §4.3", VALID, "port inside the brackets: part of the address"),
    Case("rfc5118/port-unambiguous", "5118 §4.4", VALID, "port after the brackets"),
    Case("rfc5118/via-received-param-with-delim", "5118 §4.5", VALID, "received=[IPv6]"),
    Case("rfc5118/via-received-param-no-delim", "5118 §4.5", VALID, "received=IPv6"),
    Case("rfc5118/ipv6-in-sdp", "5118 §4.6", VALID, "IPv6 in SDP"),
    Case("rfc5118/mult-ip-in-header", "5118 §4.7", VALID, "IPv4 and IPv6 Vias mixed"),
    Case("rfc5118/mult-ip-in-sdp", "5118 §4.8", VALID, "IPv4 and IPv6 in SDP"),
    Case("rfc5118/ipv4-mapped-ipv6", "5118 §4.9", VALID, "IPv4-mapped IPv6 addresses"),
    Case("rfc5118/ipv6-bug-abnf-3-colons", "5118 §4.10", VALID, "RFC 2373's extra colon, tolerated"),
    Case("rfc5118/ipv6-correct-abnf-2-colons", "5118 §4.10", VALID, "the correct form"),
]

_CONTENT_LENGTH_LINE = re.compile(rb"^Content-Length: *[0-9]+\r\n", re.MULTILINE | re.IGNORECASE)


def _rfc5118_on_the_wire(raw: bytes) -> bytes:
    """An RFC 5118 archive message as it would travel: CRLF line ends, Content-Length true.

    The RFC 5118 archive stores its messages with bare LF line ends, which SIP does not allow
    (RFC 3261 §7), and its Content-Length values match the bodies in neither convention (ipv6-in-sdp
    declares 268 octets for a 251-octet body). Those messages test IPv6 references, not framing, so
    the line ends become CRLF and Content-Length is set to the body that follows.
    """
    data = raw.replace(b"\n", b"\r\n")
    sep = data.find(b"\r\n\r\n")
    if sep < 0:
        return data
    body_len = len(data) - (sep + 4)
    return _CONTENT_LENGTH_LINE.sub(f"Content-Length: {body_len}\r\n".encode(), data, count=1)


def load(file: str) -> bytes:
    raw = (TORTURE / file).read_bytes()
    return _rfc5118_on_the_wire(raw) if file.startswith("rfc5118/") else raw


def outcome(data: bytes) -> tuple[Outcome, Request | Response | None]:
    """What a server does with ``data`` arriving as a datagram, as the parser reports it."""
    try:
        msg = parse_message(data, datagram=True)
        msg.validate()
        _ = msg.vias
        _ = msg.from_, msg.to
        if not msg.contact_star:
            _ = msg.contacts
        for name in ("route", "record-route"):
            _ = msg.name_addrs(name)
    except SipError as exc:
        return (DROP if exc.drop else exc.status), None
    return VALID, msg


def test_the_table_covers_every_archived_message() -> None:
    on_disk = {f"{p.parent.name}/{p.name}" for p in TORTURE.glob("rfc*/*")}
    assert on_disk == {case.file for case in CASES}
    assert len(on_disk) == 49 + 12


@pytest.mark.parametrize("case", CASES, ids=[c.file.split("/")[1] for c in CASES])
def test_outcome(case: Case) -> None:
    got, msg = outcome(load(case.file))
    assert got == case.expect, f"{case.section} ({case.why})"
    check = CHECKS.get(case.file.split("/")[1])
    if case.expect == VALID:
        assert check is not None, "every valid torture message has its interesting values checked"
        assert msg is not None
        check(msg)


# -- per-message checks of the values that make each message interesting ------------------------

Check = Callable[[Message], None]
CHECKS: dict[str, Check] = {}


def check(name: str) -> Callable[[Check], Check]:
    def register(fn: Check) -> Check:
        CHECKS[name] = fn
        return fn

    return register


def req(msg: Message) -> Request:
    assert isinstance(msg, Request)
    return msg


def resp(msg: Message) -> Response:
    assert isinstance(msg, Response)
    return msg


@check("wsinv.dat")
def _wsinv(msg: Message) -> None:
    r = req(msg)
    assert r.method == "INVITE"
    assert r.uri.user == "vivekg" and r.uri.host == "chair-dnrc.example.com"
    assert r.uri.has_param("unknownparam") and r.uri.param("unknownparam") is None
    assert str(r.to.uri) == "sip:vivekg@chair-dnrc.example.com"
    assert r.to_tag == "1918181833n"
    assert r.from_.display == 'J Rosenberg \\"'
    assert r.from_tag == "98asjd8"
    assert r.max_forwards == 68
    assert r.call_id == "wsinv.ndaksdj@192.0.2.1"
    assert tuple(r.cseq) == (9, "INVITE")
    vias = [(v.protocol, v.transport, v.host, v.port, v.branch) for v in r.vias]
    assert vias == [
        ("SIP/2.0", "UDP", "192.0.2.2", None, "390skdjuw"),
        ("SIP/2.0", "TCP", "spindle.example.com", None, "z9hG4bK9ikj8"),
        ("SIP/2.0", "UDP", "192.168.255.111", None, "z9hG4bK30239"),
    ]
    assert r.top_via.branch == "390skdjuw"
    assert r.header("Subject") == ""
    assert r.header("newfangledheader") == "newfangled value continued newfangled value"
    assert r.header("UnknownHeaderWithUnusualValue") == ";;,,;;,;"
    (contact,) = r.contacts
    assert contact.display == 'Quoted string ""'
    assert str(contact.uri) == "sip:jdrosen@example.com"
    assert contact.params == (("newparam", "newvalue"), ("secondparam", None), ("q", "0.33"))
    (route,) = r.name_addrs("Route")
    assert route.uri.has_param("lr") and route.uri.param("unknownwith") == "value"
    assert r.content_type == "application/sdp" and len(r.body) == 150


@check("intmeth.dat")
def _intmeth(msg: Message) -> None:
    r = req(msg)
    method = "!interesting-Method0123456789_*+`.%indeed'~"
    assert r.method == method and r.cseq.method == method and r.cseq.seq == 139122385
    assert r.uri.user == "1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*"
    assert r.uri.password == "&it+has=1,weird!*pas$wo~d_too.(doesn't-it)"
    assert r.uri.host == "example.com"
    assert r.to.display == "BEL:\x07 NUL:\x00 DEL:\x7f"
    assert r.to.uri.user == "1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*"
    assert r.from_.display == "token1~` token2'+_ token3*%!.-"
    assert (
        r.from_.param("fromparam''~+*_!.-%")
        == '"\u0440\u0430\u0431\u043e\u0442\u0430\u044e\u0449\u0438\u0439"'
    )
    assert r.from_tag == "_token~1'+`*%!-."
    assert r.call_id == "intmeth.word%ZK-!.*_+'@word`~)(><:\\/\"][?}{"
    assert r.max_forwards == 255
    assert r.header("extensionHeader-!.%*+_`'~") == "\ufeff\u5927\u505c\u96fb"
    assert r.top_via.transport == "TCP" and r.branch == "z9hG4bK-.!%66*_+`'~"


@check("esc01.dat")
def _esc01(msg: Message) -> None:
    r = req(msg)
    assert r.uri.user_unescaped == "sips:user@example.com" and r.uri.host == "example.net"
    assert r.to.uri.user_unescaped == "user"
    assert r.to.uri.equivalent(parse_uri("sip:user@example.com"))
    assert r.from_.uri.user_unescaped == "I have spaces"
    assert r.call_id == "esc01.239409asdfakjkn23onasd0-3234" and r.content_type == "application/sdp"
    (contact,) = r.contacts
    assert contact.uri.user_unescaped == "caller"
    assert contact.uri.has_param("lr")  # written ;%6C%72
    assert unescape(contact.uri.param("name") or "") == "value%41"  # unescaped once, not twice
    assert contact.uri.equivalent(parse_uri("sip:caller@host5.example.net;lr;name=value%2541"))
    assert not contact.uri.equivalent(parse_uri("sip:caller@host5.example.net;lr;name=valueA"))


@check("escnull.dat")
def _escnull(msg: Message) -> None:
    r = req(msg)
    assert r.to.uri.user_unescaped == "null-\x00-null"
    assert r.from_.uri.user_unescaped == "null-\x00-null"
    assert [c.uri.user_unescaped for c in r.contacts] == ["\x00", "\x00\x00"]
    assert r.contacts[0].uri.aor() != r.contacts[1].uri.aor()


@check("esc02.dat")
def _esc02(msg: Message) -> None:
    r = req(msg)
    # Not REGISTER: %-escapes mean nothing in a method, so an endpoint answers 501.
    assert r.method == "RE%47IST%45R" and r.cseq.method == r.method
    assert unescape(r.method) == "REGISTER"  # what a parser that wrongly unescaped would see
    assert r.to.display == "%Z%45" and r.from_.display == "%Z%45"
    assert r.branch == "z9hG4bK209%fzsnel234"
    # "C%6Fntact" is an unknown header, not a third Contact.
    assert [str(c.uri) for c in r.contacts] == [
        "sip:alias1@host1.example.com",
        "sip:alias3@host3.example.com",
    ]
    assert r.header("C%6Fntact") == "<sip:alias2@host2.example.com>"


@check("lwsdisp.dat")
def _lwsdisp(msg: Message) -> None:
    r = req(msg)
    assert r.from_.display == "caller" and str(r.from_.uri) == "sip:caller@example.com"
    assert r.from_tag == "323"


@check("longreq.dat")
def _longreq(msg: Message) -> None:
    r = req(msg)
    assert r.to.display is not None and "extremeextreme" in r.to.display
    assert r.to.uri.port == 6000
    assert r.to.uri.param("longparamnamename" + "name" * 23) == "shortvalue"
    assert len(r.vias) == 34
    assert r.from_tag is not None and len(r.from_tag) > 100
    assert r.call_id.startswith("longreq.onereallyreally") and r.call_id.endswith("reallylongcallid")
    unknown = [v for k, _, v in r.fields if k.startswith("unknown-longlong")]
    assert len(unknown) == 1 and len(unknown[0]) > 100
    assert len(r.body) == 150


@check("dblreq.dat")
def _dblreq(msg: Message) -> None:
    r = req(msg)
    # The first request is processed; the INVITE after it in the datagram is ignored.
    assert r.method == "REGISTER" and r.body == b""
    assert r.call_id == "dblreq.0ha0isndaksdj99sdfafnl3lk233412"
    assert b"INVITE" not in r.to_bytes()


@check("semiuri.dat")
def _semiuri(msg: Message) -> None:
    r = req(msg)
    assert r.uri.user == "user;par=u%40example.net" and r.uri.host == "example.com"
    assert r.uri.params == ()
    assert r.tokens("Accept") == [
        "application/sdp", "application/pkcs7-mime", "multipart/mixed",
        "multipart/signed", "message/sip", "message/sipfrag",
    ]  # fmt: skip


@check("transports.dat")
def _transports(msg: Message) -> None:
    r = req(msg)
    assert [(v.transport, v.host) for v in r.vias] == [
        ("UDP", "t1.example.com"), ("SCTP", "t2.example.com"), ("TLS", "t3.example.com"),
        ("UNKNOWN", "t4.example.com"), ("TCP", "t5.example.com"),
    ]  # fmt: skip
    assert r.call_id == "transports.kijh4akdnaqjkwendsasfdj"


@check("mpart01.dat")
def _mpart01(msg: Message) -> None:
    r = req(msg)
    assert r.method == "MESSAGE" and r.content_type == "multipart/mixed"
    assert len(r.body) == 553 and r.body.startswith(b"--7a9cbec02ceef655\r\n")
    assert r.body.endswith(b"--7a9cbec02ceef655--\r\n")
    assert r.top_via.wants_rport and r.top_via.rport is None


@check("unreason.dat")
def _unreason(msg: Message) -> None:
    r = resp(msg)
    assert r.status == 200
    assert r.reason == (
        "= 2**3 * 5**2 \u043d\u043e \u0441\u0442\u043e \u0434\u0435\u0432\u044f\u043d\u043e\u0441\u0442\u043e "
        "\u0434\u0435\u0432\u044f\u0442\u044c - \u043f\u0440\u043e\u0441\u0442\u043e\u0435"
    )
    assert len(r.body) == 154


@check("noreason.dat")
def _noreason(msg: Message) -> None:
    r = resp(msg)
    assert r.status == 100 and r.reason == ""


@check("baddate.dat")
def _baddate(msg: Message) -> None:
    # Acceptable to reject, but only if the Date mattered; Sentral never uses it, so it is ignored.
    assert req(msg).header("Date") == "Fri, 01 Jan 2010 16:00:00 EST"


@check("badbranch.dat")
def _badbranch(msg: Message) -> None:
    # The transaction layer sees a branch that is the cookie and nothing else: it must not take
    # it as an RFC 3261 transaction key.
    assert req(msg).branch == BRANCH_MAGIC


@check("unkscm.dat")
def _unkscm(msg: Message) -> None:
    r = req(msg)
    assert r.uri.scheme not in SIP_SCHEMES  # the endpoint answers 416
    assert r.uri.scheme == "nobodyknowsthisscheme" and r.uri.opaque == "totallyopaquecontent"


@check("novelsc.dat")
def _novelsc(msg: Message) -> None:
    r = req(msg)
    assert r.uri.scheme not in SIP_SCHEMES  # the endpoint answers 416
    assert r.uri.scheme == "soap.beep"


@check("unksm2.dat")
def _unksm2(msg: Message) -> None:
    r = req(msg)
    assert r.uri.scheme == "sip"  # a proxy routes it like any other
    # A registrar answers 400: the To of a REGISTER must be a SIP or SIPS address of record.
    assert r.to.uri.scheme == "isbn" and r.to.uri.scheme not in SIP_SCHEMES
    assert r.from_.uri.scheme == "http" and r.from_tag == "3234233"
    assert [c.uri.scheme for c in r.contacts] == ["name"]


@check("bext01.dat")
def _bext01(msg: Message) -> None:
    r = req(msg)  # 420 Bad Extension, with Unsupported listing these
    assert r.tokens("Require") == ["nothingsupportsthis", "nothingsupportsthiseither"]
    assert r.tokens("Proxy-Require") == ["noproxiessupportthis", "nordoanyproxiessupportthis"]
    assert r.top_via.transport == "TLS"


@check("invut.dat")
def _invut(msg: Message) -> None:
    r = req(msg)  # an endpoint answers 415
    assert r.content_type == "application/unknownformat" and len(r.body) == 40


@check("regaut01.dat")
def _regaut01(msg: Message) -> None:
    r = req(msg)  # a registrar that authenticates challenges with 401
    assert (r.header("Authorization") or "").split()[0] == "NoOneKnowsThisScheme"


@check("bcast.dat")
def _bcast(msg: Message) -> None:
    r = resp(msg)  # parses; the broadcast Via is what makes a proxy drop it
    assert [v.host for v in r.vias] == ["192.0.2.198", "255.255.255.255"]
    assert r.status == 200 and len(r.body) == 154


@check("zeromf.dat")
def _zeromf(msg: Message) -> None:
    assert req(msg).max_forwards == 0  # a proxy answers 483; an endpoint processes it


@check("cparam01.dat")
def _cparam01(msg: Message) -> None:
    (contact,) = req(msg).contacts
    assert contact.bracketed is False
    assert contact.has_param("unknownparam")  # a contact-param ...
    assert contact.uri.params == ()  # ... not a url-parameter
    assert str(contact.uri) == "sip:+19725552222@gw1.example.net"


@check("cparam02.dat")
def _cparam02(msg: Message) -> None:
    (contact,) = req(msg).contacts
    assert contact.params == ()
    assert contact.uri.has_param("unknownparam")
    assert str(contact.uri) == "sip:+19725552222@gw1.example.net;unknownparam"


@check("regescrt.dat")
def _regescrt(msg: Message) -> None:
    (contact,) = req(msg).contacts
    assert contact.uri.headers == (("Route", "%3Csip:sip.example.com%3E"),)
    assert unescape(contact.uri.headers[0][1]) == "<sip:sip.example.com>"
    assert str(contact.uri) == "sip:user@example.com?Route=%3Csip:sip.example.com%3E"


@check("sdp01.dat")
def _sdp01(msg: Message) -> None:
    r = req(msg)  # 406 (or 400): the offer is SDP but the caller accepts no SDP answer
    assert r.tokens("Accept") == ["text/nobodyknowsthis"]
    assert r.content_type == "application/sdp"


@check("inv2543.dat")
def _inv2543(msg: Message) -> None:
    r = req(msg)
    assert r.branch is None and r.from_tag is None and r.max_forwards is None
    assert not r.has_header("Content-Length")
    assert r.body.startswith(b"v=0\r\n") and r.body.endswith(b"RTP/AVP 0\r\n") and len(r.body) == 105
    # An addr-spec ends at its first semicolon: ";user=phone" is a header parameter of To.
    assert str(r.to.uri) == "sip:+16505552222@ss1.example.net" and r.to.param("user") == "phone"
    assert r.from_.uri.param("user") == "phone"  # inside <>, a URI parameter
    (rr,) = r.name_addrs("Record-Route")
    assert rr.uri.param("maddr") == "ss1.example.com"


def _v6(msg: Message, *, uri_host: str, uri_port: int | None = None) -> Request:
    r = req(msg)
    assert r.uri.host == uri_host and r.uri.port == uri_port
    return r


@check("ipv6-good")
def _ipv6_good(msg: Message) -> None:
    r = _v6(msg, uri_host="[2001:db8::10]")
    assert r.uri.host_bare == "2001:db8::10"
    assert (r.top_via.host, r.top_via.port) == ("[2001:db8::9:1]", None)
    assert [(c.display, c.uri.host) for c in r.contacts] == [("Caller", "[2001:db8::1]")]


@check("port-ambiguous")
def _port_ambiguous(msg: Message) -> None:
    # Well-formed: the intended port is the last group of the address, not a port.
    _v6(msg, uri_host="[2001:db8::10:5070]", uri_port=None)


@check("port-unambiguous")
def _port_unambiguous(msg: Message) -> None:
    _v6(msg, uri_host="[2001:db8::10]", uri_port=5070)


@check("via-received-param-with-delim")
def _received_with_delim(msg: Message) -> None:
    r = _v6(msg, uri_host="[2001:db8::10]")
    assert r.top_via.received == "[2001:db8::9:255]" and r.top_via.branch == "z9hG4bKas3-111"


@check("via-received-param-no-delim")
def _received_no_delim(msg: Message) -> None:
    r = _v6(msg, uri_host="[2001:db8::10]")
    assert r.top_via.received == "2001:db8::9:255" and r.top_via.branch == "z9hG4bKas3"


@check("ipv6-in-sdp")
def _ipv6_in_sdp(msg: Message) -> None:
    r = _v6(msg, uri_host="[2001:db8::10]")
    assert r.uri.user == "user" and r.to.uri.host == "[2001:db8::10]"
    assert b"c=IN IP6 2001:db8::20\r\n" in r.body


@check("mult-ip-in-header")
def _mult_ip_in_header(msg: Message) -> None:
    r = req(msg)
    assert [(v.transport, v.host, v.port, v.received) for v in r.vias] == [
        ("UDP", "[2001:db8::9:1]", 6050, None),
        ("UDP", "192.0.2.1", None, None),
        ("TCP", "[2001:db8::9:255]", None, "192.0.2.200"),
    ]


@check("mult-ip-in-sdp")
def _mult_ip_in_sdp(msg: Message) -> None:
    r = _v6(msg, uri_host="[2001:db8::10]")
    assert b"c=IN IP4 192.0.2.1\r\n" in r.body and b"c=IN IP6 2001:db8::1\r\n" in r.body


@check("ipv4-mapped-ipv6")
def _ipv4_mapped(msg: Message) -> None:
    r = req(msg)
    assert [(v.host, v.port) for v in r.vias] == [
        ("[::ffff:192.0.2.10]", 19823),
        ("[::ffff:192.0.2.2]", None),
    ]
    (contact,) = r.contacts
    assert contact.display == "T. desk phone" and contact.uri.host == "[::ffff:192.0.2.2]"


@check("ipv6-bug-abnf-3-colons")
def _three_colons(msg: Message) -> None:
    r = req(msg)
    # Tolerated, and read as the correct two-colon form.
    assert r.uri.host == "[2001:db8::192.0.2.1]"
    assert r.uri.equivalent(parse_uri("sip:user@[2001:db8::192.0.2.1]"))
    assert r.to.uri.host == "[2001:db8::192.0.2.1]"


@check("ipv6-correct-abnf-2-colons")
def _two_colons(msg: Message) -> None:
    r = req(msg)
    assert r.uri.host == "[2001:db8::192.0.2.1]" and r.uri.host_bare == "2001:db8::192.0.2.1"


# -- transport-dependent outcomes and what the table does not show ------------------------------


def test_rfc5118_loader_changes_only_line_ends_and_content_length() -> None:
    for case in CASES:
        if not case.file.startswith("rfc5118/"):
            continue
        raw = (TORTURE / case.file).read_bytes()
        assert b"\r" not in raw  # the archive really uses bare LF
        wire = load(case.file)
        assert _CONTENT_LENGTH_LINE.sub(b"", wire) == _CONTENT_LENGTH_LINE.sub(
            b"", raw.replace(b"\n", b"\r\n")
        )


def test_ipv6_in_sdp_as_archived_declares_more_than_it_carries() -> None:
    # With its own Content-Length the message is clerr over again: a datagram answered 400.
    data = (TORTURE / "rfc5118/ipv6-in-sdp").read_bytes().replace(b"\n", b"\r\n")
    assert b"Content-Length: 268\r\n" in data
    with pytest.raises(SipError) as err:
        parse_message(data)
    assert err.value.status == 400 and not err.value.drop


def test_dblreq_over_a_stream_is_two_requests() -> None:
    # On a stream, the bytes past the first request's Content-Length are the next message.
    # (The archived INVITE body runs three octets past its Content-Length; those and the closing
    # CRLF are left out, or they would be framed as a third message.)
    data = load("rfc4475/dblreq.dat")
    assert data.endswith(b"LPC\r\n\r\n")
    framer = StreamFramer()
    parts = framer.feed(data[:-5])
    assert len(parts) == 2
    first, second = (parse_message(p, datagram=False) for p in parts)
    assert isinstance(first, Request) and first.method == "REGISTER"
    assert isinstance(second, Request) and second.method == "INVITE" and len(second.body) == 150
    second.validate()
    assert framer.pending == 0


def test_clerr_over_a_stream_waits_for_the_rest() -> None:
    # RFC 4475 §3.1.2.2: on a stream there is nothing to do but wait (and close on a timeout).
    framer = StreamFramer()
    assert framer.feed(load("rfc4475/clerr.dat")) == []
    assert framer.pending == len(load("rfc4475/clerr.dat"))


@pytest.mark.parametrize("file", ["rfc4475/ncl.dat", "rfc4475/mcl01.dat"])
def test_unusable_content_length_over_a_stream_breaks_the_connection(file: str) -> None:
    # RFC 4475 §3.1.2.3, §3.3.9: the framing error is not recoverable; the framer raises and the
    # transport closes the connection.
    with pytest.raises(SipError) as err:
        StreamFramer().feed(load(file))
    assert err.value.status == 400


def test_badvers_error_still_carries_the_fields_to_answer_with() -> None:
    from sentral.pbx.sip.message import ParseError, error_response_fields

    with pytest.raises(ParseError) as err:
        parse_message(load("rfc4475/badvers.dat"))
    assert err.value.status == 505 and err.value.is_request and err.value.fields is not None
    keys = [k for k, _, _ in error_response_fields(err.value.fields)]
    assert keys == ["via", "from", "to", "call-id", "cseq"]


def test_mismatch02_method_is_not_a_standard_one() -> None:
    # RFC 4475 §3.1.2.18 prefers 501 to 400: the request line alone tells the endpoint the
    # method is unknown, before validate() looks at the CSeq.
    msg = parse_message(load("rfc4475/mismatch02.dat"))
    assert isinstance(msg, Request) and msg.method == "NEWMETHOD"
    assert msg.cseq.method == "INVITE"


def test_every_valid_message_serializes_and_parses_back_the_same() -> None:
    for case in CASES:
        if case.expect != VALID:
            continue
        msg = parse_message(load(case.file))
        again = parse_message(msg.to_bytes())
        assert type(again) is type(msg)
        assert [(k, v) for k, _, v in again.fields if k != "content-length"] == [
            (k, v) for k, _, v in msg.fields if k != "content-length"
        ], case.file
        assert again.body == msg.body
        assert again.to_bytes() == msg.to_bytes()


def test_name_addr_of_each_valid_message_round_trips() -> None:
    for case in CASES:
        if case.expect != VALID:
            continue
        msg = parse_message(load(case.file))
        for value in (msg.from_, msg.to):
            assert isinstance(value, NameAddr)
            assert NameAddr.parse(str(value)) == value._replace(bracketed=True), case.file
