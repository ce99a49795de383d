"""Which domain a request is for, through the endpoint on fake transports: a clinic served here,
the server's own address, another clinic of the same server, or a domain not served at all.

Phones are played as bytes: each request is challenged, answered with a digest computed like a
phone's, and what the server sent back (and whether the callee's phone got an INVITE) is read
from the fake transports.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from types import MappingProxyType

import pytest

from sentral.config.directory import ClinicEntry, Directory, StaffEntry
from sentral.pbx.endpoint import Endpoint
from sentral.pbx.sip.auth import compute_ha1, compute_response
from sentral.pbx.sip.message import Response, parse_message
from sentral.pbx.transport import Origin
from tests.protocol.test_presence import LISTEN, FakeTransports, endpoint_for

CLINIC = "clinic.test"
OTHER = "other.test"
SERVER = "127.0.0.1:5060"


def people(domain: str) -> dict[tuple[str, str], StaffEntry]:
    return {
        (domain, ext): StaffEntry(
            domain, ext, f"Staff {ext}", (), compute_ha1("MD5", ext, domain, f"{domain}-{ext}"), ""
        )
        for ext in ("1001", "1002")
    }


def make_endpoint(*domains: str) -> tuple[Endpoint, FakeTransports]:
    staff = {key: entry for domain in domains for key, entry in people(domain).items()}
    clinics = {domain: ClinicEntry(domain, domain, ("MD5",)) for domain in domains}
    directory = Directory(1, MappingProxyType(clinics), MappingProxyType(staff))
    return endpoint_for(lambda: directory)


@dataclass
class Answer:
    """What the server sent after one request: its final answer to the phone (None while the
    call rings), and the ports of the phones it sent an INVITE to."""

    final: Response | None
    rang: list[int]

    @property
    def status(self) -> int | None:
        return None if self.final is None else self.final.status


class Phone:
    """Extension ``ext`` of ``domain``, a phone at 192.0.2.10:port sending through the server."""

    def __init__(self, ep: Endpoint, transports: FakeTransports, ext: str, domain: str, port: int) -> None:
        self.ep, self.transports, self.ext, self.domain, self.port = ep, transports, ext, domain, port
        self.cseq = 0
        self.call_id = ""
        self.challenged_in = ""

    def send(self, method: str, uri: str, *, to: str = "", from_: str = "", auth: str = "") -> Answer:
        if not auth:
            self.call_id = uuid.uuid4().hex
        self.cseq += 1
        head = (
            f"{method} {uri} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP 192.0.2.10:{self.port};branch=z9hG4bK-{uuid.uuid4().hex};rport\r\n"
            "Max-Forwards: 70\r\n"
            f"From: <{from_ or f'sip:{self.ext}@{self.domain}'}>;tag=t{self.port}\r\n"
            f"To: <{to or uri}>\r\nCall-ID: {self.call_id}\r\nCSeq: {self.cseq} {method}\r\n"
            f"Contact: <sip:{self.ext}@192.0.2.10:{self.port}>\r\n"
            + ("Expires: 3600\r\n" if method == "REGISTER" else "")
            + ("Event: dialog\r\n" if method == "SUBSCRIBE" else "")
            + f"{auth}Content-Length: 0\r\n\r\n"
        )
        self.ep.on_message(head.encode(), Origin("udp", "192.0.2.10", self.port, LISTEN))
        sent = list(self.transports.sent)
        self.transports.sent.clear()
        finals = [
            message
            for data, target in sent
            if target.port == self.port
            and isinstance(message := parse_message(data), Response)
            and message.status >= 200
        ]
        assert len(finals) <= 1, finals
        rang = [
            target.port for data, target in sent if target.port != self.port and data.startswith(b"INVITE ")
        ]
        return Answer(finals[0] if finals else None, rang)

    def request(self, method: str, uri: str, **kwargs: str) -> Answer:
        """Send, answer a challenge as a phone does (with its own password, in whatever realm the
        server asks), and return what came of it."""
        first = self.send(method, uri, **kwargs)
        if first.final is None or first.final.status not in (401, 407):
            return first
        www = first.final.status == 401
        offer = first.final.header("www-authenticate" if www else "proxy-authenticate") or ""
        realm, nonce, opaque = (re.search(rf'{k}="([^"]+)"', offer) for k in ("realm", "nonce", "opaque"))
        assert realm and nonce and opaque, offer
        self.challenged_in = realm.group(1)
        ha1 = compute_ha1("MD5", self.ext, realm.group(1), f"{self.domain}-{self.ext}")
        response = compute_response(
            "MD5", ha1, method=method, uri=uri, nonce=nonce.group(1), nc=1, cnonce="feed"
        )
        auth = (
            f'{"Authorization" if www else "Proxy-Authorization"}: Digest username="{self.ext}", '
            f'realm="{realm.group(1)}", nonce="{nonce.group(1)}", uri="{uri}", response="{response}", '
            f'algorithm=MD5, cnonce="feed", qop=auth, nc=00000001, opaque="{opaque.group(1)}"\r\n'
        )
        return self.send(method, uri, auth=auth, **kwargs)


def registered(ep: Endpoint, transports: FakeTransports, ext: str, domain: str, port: int) -> Phone:
    phone = Phone(ep, transports, ext, domain, port)
    assert phone.request("REGISTER", f"sip:{domain}", to=f"sip:{ext}@{domain}").status == 200
    return phone


# -- calls ---------------------------------------------------------------------------------------


def test_a_call_to_a_domain_not_served_is_not_found_and_rings_no_one() -> None:
    ep, transports = make_endpoint(CLINIC)
    bob = registered(ep, transports, "1002", CLINIC, 4002)
    alice = Phone(ep, transports, "1001", CLINIC, 4001)
    answer = alice.request("INVITE", "sip:1002@other.example")
    assert alice.challenged_in == CLINIC  # authenticated first, as the caller she is
    assert (answer.status, answer.rang) == (404, [])
    # The same number in the clinic's own domain rings Bob's phone.
    assert alice.request("INVITE", f"sip:1002@{CLINIC}").rang == [bob.port]


def test_a_request_neither_from_nor_for_a_clinic_here_is_refused_without_a_challenge() -> None:
    ep, transports = make_endpoint(CLINIC)
    registered(ep, transports, "1002", CLINIC, 4002)
    stranger = Phone(ep, transports, "1001", "elsewhere.example", 4009)
    answer = stranger.send("INVITE", "sip:1002@other.example")
    assert (answer.status, answer.rang) == (403, [])
    assert answer.final is not None and answer.final.reason == "Not Relaying"


def test_a_call_to_another_clinic_on_the_same_server_is_forbidden() -> None:
    ep, transports = make_endpoint(CLINIC, OTHER)
    registered(ep, transports, "1002", OTHER, 4002)
    alice = Phone(ep, transports, "1001", CLINIC, 4001)
    answer = alice.request("INVITE", f"sip:1002@{OTHER}")
    assert alice.challenged_in == CLINIC
    assert (answer.status, answer.rang) == (403, [])
    # Watching the other clinic's lamps is refused alike.
    assert alice.request("SUBSCRIBE", f"sip:1002@{OTHER}").status == 403


@pytest.mark.parametrize("domains", [(CLINIC,), (CLINIC, OTHER)])
def test_a_call_to_the_servers_own_address_is_for_the_callers_clinic(domains: tuple[str, ...]) -> None:
    # A phone with an outbound proxy and no DNS puts the server's address in the Request-URI.
    ep, transports = make_endpoint(*domains)
    mine = registered(ep, transports, "1002", CLINIC, 4002)
    theirs = registered(ep, transports, "1002", domains[-1], 4012) if len(domains) > 1 else mine
    alice = Phone(ep, transports, "1001", domains[-1], 4001)
    answer = alice.request("INVITE", f"sip:1002@{SERVER}")
    assert alice.challenged_in == domains[-1]
    assert (answer.status, answer.rang) == (None, [theirs.port])


# -- registrations -------------------------------------------------------------------------------


def test_a_register_for_a_domain_not_served_is_not_found() -> None:
    ep, transports = make_endpoint(CLINIC)
    phone = Phone(ep, transports, "1001", "other.example", 4001)
    answer = phone.send("REGISTER", "sip:other.example", to="sip:1001@other.example")
    assert answer.status == 404
    # The clinic's domain in To with another domain in the Request-URI: not this AOR's registrar.
    answer = phone.send("REGISTER", "sip:other.example", to=f"sip:1001@{CLINIC}")
    assert answer.status == 404


def test_a_register_for_another_clinics_domain_in_the_request_uri_is_not_found() -> None:
    ep, transports = make_endpoint(CLINIC, OTHER)
    phone = Phone(ep, transports, "1001", CLINIC, 4001)
    assert phone.send("REGISTER", f"sip:{OTHER}", to=f"sip:1001@{CLINIC}").status == 404


def test_a_register_to_the_servers_address_names_its_clinic_in_to() -> None:
    ep, transports = make_endpoint(CLINIC, OTHER)
    phone = Phone(ep, transports, "1001", OTHER, 4001)
    assert phone.request("REGISTER", f"sip:{SERVER}", to=f"sip:1001@{OTHER}").status == 200
    assert phone.challenged_in == OTHER
    # With a single clinic, a phone that knows only the server's address registers too.
    ep, transports = make_endpoint(CLINIC)
    phone = Phone(ep, transports, "1001", CLINIC, 4001)
    assert phone.request("REGISTER", f"sip:{SERVER}", to=f"sip:1001@{SERVER}").status == 200
