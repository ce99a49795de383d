"""What the endpoint answers to RFC 4475 torture messages, fed as bytes from a phone's address.

``tests/unit/test_torture.py`` checks what the parser makes of every message; these check the
answers that only the endpoint and the registrar give.
"""

from __future__ import annotations

from sentral.pbx.endpoint import Endpoint
from sentral.pbx.sip.message import Response
from sentral.pbx.transport import Origin
from tests.protocol.test_presence import DOMAIN, LISTEN, FakeTransports, endpoint
from tests.unit.test_torture import load

__all__ = ["endpoint"]  # the fixture, used here by name

UDP = Origin("udp", "192.0.2.10", 5060, LISTEN)
TCP = Origin("tcp", "192.0.2.253", 40000, LISTEN, conn_id=1)


def answers(transports: FakeTransports) -> list[tuple[int, str]]:
    out = transports.take()
    assert all(isinstance(m, Response) for m in out), out
    return [(m.status, m.reason) for m in out if isinstance(m, Response)]


def test_clerr_a_datagram_shorter_than_its_content_length_is_answered_400(
    endpoint: tuple[Endpoint, FakeTransports],
) -> None:
    # RFC 4475 §3.1.2.2: over UDP the message is complete as it is, and its header fields say
    # where the answer goes.
    ep, transports = endpoint
    ep.on_message(load("rfc4475/clerr.dat"), UDP)
    [(status, _)] = answers(transports)
    assert status == 400
    assert ep.layer.server_count == 0


def test_regaut01_credentials_of_an_unknown_scheme_are_challenged(
    endpoint: tuple[Endpoint, FakeTransports],
) -> None:
    # RFC 4475 §3.3.7: well formed; a registrar that authenticates answers 401 with a challenge
    # it understands. The archived message is for example.com: for a clinic served here, it
    # is the same message addressed to that clinic's domain.
    ep, transports = endpoint
    message = load("rfc4475/regaut01.dat").replace(b"example.com", DOMAIN.encode())
    ep.on_message(message, TCP)
    [challenge] = transports.take()
    assert isinstance(challenge, Response) and challenge.status == 401
    assert (challenge.header("www-authenticate") or "").startswith("Digest ")
    # As archived, for a domain this server does not serve: not found.
    ep.on_message(load("rfc4475/regaut01.dat").replace(b"z9hG4bKkdjuw", b"z9hG4bKkdjuw2"), TCP)
    assert answers(transports) == [(404, "Unknown Domain")]
